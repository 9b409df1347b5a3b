"""``spime log``, ``show``, ``get`` and ``search``: read designs from the hub."""

from __future__ import annotations

import argparse
import hashlib
import stat
from pathlib import Path
from typing import Any

from spimeforge.v1 import common_pb2, designs_pb2

from hub.client import convert
from hub.client.common import (
    EXIT_OK,
    ClientError,
    HubRefused,
    Progress,
    UsageError,
    add_hub_command,
    bounded_int,
    emit,
    split_ref,
)
from hub.client.connection import Hub, opened
from hub.client.download import plan_targets, remove_files, write_revision
from hub.client.local import hash_file, read_base, safe_target, write_base
from hub.client.statcache import StatCache
from hub.manifest import MANIFEST_NAME

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
    p.add_argument("--force", action="store_true", help="overwrite local changes in the folder, or "
                   "the files of another design there")
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
    """Download a revision into a folder, verifying every blob's hash.

    A folder fetched before from the same design is brought to the revision as a checkout
    would: the files of the revision it was fetched from that this one no longer lists are
    removed (else the next ``spime push`` would put them back). Without ``--force`` a folder
    holding another design, or files the revision would replace or remove that differ from
    the revision the folder was fetched from (local edits, or files of unknown origin), is
    refused (exit 2) before anything is written.
    """
    design, rev = split_ref(args.ref)
    dest: Path = args.output
    base = read_base(dest)
    if base and base["design"] != design and not args.force:
        raise UsageError(f"{dest} holds the design {base['design']!r}: get {design!r} into another "
                         "folder, or pass --force to write it over that one")
    with opened(args) as hub:
        revision = get_revision(hub, design, rev)
        recorded = _recorded(hub, base, revision)
        changed, dropped = _local_changes(dest, revision, recorded)
        if changed and not args.force:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise UsageError(f"{dest} has local changes that `spime get` would overwrite or remove: {shown}; "
                             "push them first, get into another folder, or pass --force to overwrite them")
        total = sum(int(f["size"]) for f in revision["files"])
        bar = Progress(total, f"downloading {len(revision['files'])} file(s)")
        written = write_revision(hub, revision, dest, bar.advance)
        bar.finish()
    removed = remove_files(dest, dropped, keep=written)
    write_base(dest, design, revision["id"])
    doc = {"design": design, "revision_id": revision["id"], "output": str(dest),
           "files": written, "removed": removed, "bytes": total, "verified": True}
    emit(args, doc, lambda d: f"{d['design']}@{d['revision_id'][:12]}: wrote {len(d['files'])} file(s) to "
                              f"{d['output']}" + (f", removed {len(d['removed'])} the revision no longer lists"
                                                   if d["removed"] else "") + ", hashes verified")
    return EXIT_OK


def _recorded(hub: Hub, base: dict[str, str], revision: dict[str, Any]) -> dict[str, str]:
    """Path -> SHA-256 of every file (spime.toml included) of the revision the folder was fetched
    from, when it is of the same design; {} when there is none or the hub no longer shows it."""
    if base.get("design") != revision["design"]:
        return {}
    old = revision
    if base["revision"] != revision["id"]:
        try:
            old = get_revision(hub, base["design"], base["revision"])
        except HubRefused:  # the base is gone or hidden: nothing vouches for the local files
            return {}
    return {MANIFEST_NAME: _sha256(old["manifest_toml"])} | {f["path"]: f["sha256"] for f in old["files"]}


def _local_changes(dest: Path, revision: dict[str, Any], recorded: dict[str, str]) -> tuple[list[str], list[str]]:
    """(the local files ``revision`` would replace or remove whose content is neither its own nor
    that of the ``recorded`` revision the folder was fetched from: local edits or strangers;
    the files of the recorded revision that ``revision`` no longer lists and that are still there).

    Raises:
        ClientError: a file name of the revision is unsafe, or spime.toml is a link leading out
            of ``dest`` (as write_revision would refuse them).
    """
    incoming = {MANIFEST_NAME: (safe_target(dest, MANIFEST_NAME), _sha256(revision["manifest_toml"]))}
    incoming |= {f["path"]: (target, f["sha256"]) for f, target in plan_targets(dest, revision["files"])}
    cache = StatCache(dest)
    changed, dropped = [], []
    for name, (target, sha) in incoming.items():
        local = _local_hash(cache, name, target)
        if local is not None and local != sha and recorded.get(name) != local:
            changed.append(name)
    for name, sha in recorded.items():
        if name in incoming or (place := _target(dest, name)) is None:
            continue
        local = _local_hash(cache, name, place)
        if local is not None:
            dropped.append(name)
            if local != sha:
                changed.append(name)
    return sorted(changed), sorted(dropped)


def _target(dest: Path, name: str) -> Path | None:
    """Where ``name`` lies under ``dest``; None when it cannot (a name this system cannot hold)."""
    try:
        return safe_target(dest, name)
    except ClientError:
        return None


def _local_hash(cache: StatCache, name: str, target: Path) -> str | None:
    """The SHA-256 of the regular file at ``target`` ("" when it cannot be read), None when no
    regular file is there (write_revision refuses a pipe or folder there, or a path the system
    cannot hold, with its own message)."""
    try:
        st = target.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        return cache.lookup(name, st) or hash_file(target)[0]
    except OSError:  # unreadable: nothing shows it unchanged
        return ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
