"""``spime log``, ``show``, ``get`` and ``search``: read designs from the hub."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spimeforge.v1 import common_pb2, designs_pb2

from hub.client import convert
from hub.client.common import EXIT_OK, Progress, add_hub_command, bounded_int, emit, split_ref
from hub.client.connection import Hub, opened
from hub.client.download import write_revision
from hub.client.local import write_base

__all__ = [
    "get_revision",
    "log_revisions",
    "register",
    "run_get",
    "run_log",
    "run_search",
    "run_show",
]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime log``, ``show``, ``get`` and ``search``."""
    p = add_hub_command(subparsers, "log", "revisions of a design from its head back", run_log)
    p.add_argument("design", help="DESIGN or DESIGN@REV (start there instead of the head)")
    p.add_argument("-n", "--limit", type=bounded_int(0, 2**31 - 1), default=0, help="at most N revisions (0: all)")
    p = add_hub_command(subparsers, "show", "a design and one of its revisions", run_show)
    p.add_argument("ref", help="DESIGN or DESIGN@REV")
    p = add_hub_command(subparsers, "get", "download a revision and verify every hash", run_get)
    p.add_argument("ref", help="DESIGN or DESIGN@REV")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write into")
    p = add_hub_command(subparsers, "search", "find designs", run_search)
    p.add_argument("text", nargs="?", default="", help="words in the title or description")
    p.add_argument("--license", default="", help="SPDX id the license must contain")
    p.add_argument("--tag", action="append", default=[], help="required tag (repeatable)")
    p.add_argument("--limit", type=bounded_int(1, 500), default=50, help="results per page (max 500)")



def get_revision(hub: Hub, design: str, rev: str = "") -> dict[str, Any]:
    """One revision (head when ``rev`` is empty) as a dict.

    Raises:
        HubRefused: the design or revision does not exist, or access is refused.
    """
    msg = hub.call(hub.designs.GetRevision,
                   designs_pb2.GetRevisionRequest(design=design, revision_id=rev))
    return convert.revision(msg)


def log_revisions(hub: Hub, design: str, start: str = "", limit: int = 0) -> list[dict[str, Any]]:
    """Revisions from ``start`` (default head) back along first parents.

    Raises:
        HubRefused: the design does not exist or access is refused.
    """
    revisions: list[dict[str, Any]] = []
    token = ""
    while True:  # the hub pages its answer (at most 500 revisions and 4 MiB a page)
        wanted = min(500, limit - len(revisions)) if limit > 0 else 500
        resp = hub.call(hub.designs.Log, designs_pb2.LogRequest(
            design=design, from_revision_id=start, page=common_pb2.PageRequest(page_size=wanted, page_token=token)))
        revisions += [convert.revision(r) for r in resp.revisions]
        token = resp.next_page_token
        if not token or (limit > 0 and len(revisions) >= limit):
            return revisions


def run_log(args: argparse.Namespace) -> int:
    """Print the log."""
    design, rev = split_ref(args.design)
    with opened(args) as hub:
        revs = log_revisions(hub, design, rev, args.limit)
    emit(args, {"design": design, "revisions": revs}, _human_log)
    return EXIT_OK


def _human_log(doc: dict[str, Any]) -> str:
    lines = []
    for r in doc["revisions"]:
        sig = "signed" if r["signature"] else "unsigned"
        lines.append(f"{r['id'][:12]}  {r['created_at']}  {r['author']:<12} {r['kind']:<8} "
                     f"{sig:<8} {r['message']}")
    return "\n".join(lines) or f"{doc['design']}: no revisions"


def run_show(args: argparse.Namespace) -> int:
    """Print a design and a revision."""
    design, rev = split_ref(args.ref)
    with opened(args) as hub:
        info = convert.design(hub.call(hub.designs.GetDesign,
                                       designs_pb2.GetDesignRequest(design=design)))
        revision = get_revision(hub, design, rev)
    emit(args, {"design": info, "revision": revision}, _human_show)
    return EXIT_OK


def _human_show(doc: dict[str, Any]) -> str:
    d, r = doc["design"], doc["revision"]
    lines = [f"{d['slug']}: {d['title']}", f"license      {d['license']}",
             f"maintainers  {', '.join(d['maintainers'])}",
             f"tags         {', '.join(d['tags'])}",
             f"revision     {r['id']} ({r['kind']}, {r['author']}, {r['created_at']})",
             f"parents      {', '.join(p[:12] for p in r['parent_ids']) or '-'}",
             f"message      {r['message']}", "files:"]
    lines += [f"  {f['sha256'][:12]}  {f['size']:>10}  {f['path']}" for f in r["files"]]
    lines += [f"attribution: {a['notice']}" for a in d["attributions"]]
    return "\n".join(lines)


def run_get(args: argparse.Namespace) -> int:
    """Download a revision into a folder, verifying every blob's hash."""
    design, rev = split_ref(args.ref)
    dest: Path = args.output
    with opened(args) as hub:
        revision = get_revision(hub, design, rev)
        total = sum(int(f["size"]) for f in revision["files"])
        bar = Progress(total, f"downloading {len(revision['files'])} file(s)")
        written = write_revision(hub, revision, dest, bar.advance)
        bar.finish()
    write_base(dest, design, revision["id"])
    doc = {"design": design, "revision_id": revision["id"], "output": str(dest),
           "files": written, "bytes": total, "verified": True}
    emit(args, doc, lambda d: f"{d['design']}@{d['revision_id'][:12]}: wrote "
                              f"{len(d['files'])} file(s) to {d['output']}, hashes verified")
    return EXIT_OK


def run_search(args: argparse.Namespace) -> int:
    """Search designs by text, license and tags."""
    request = designs_pb2.SearchRequest(text=args.text, license=args.license, tags=args.tag,
                                        page=common_pb2.PageRequest(page_size=args.limit))
    with opened(args) as hub:
        resp = hub.call(hub.designs.Search, request)
    doc = {"designs": [convert.design(d) for d in resp.designs],
           "next_page_token": resp.next_page_token}
    emit(args, doc, lambda d: "\n".join(
        f"{x['slug']:<28} {x['license']:<24} {x['title']}" for x in d["designs"])
        or "no designs found")
    return EXIT_OK
