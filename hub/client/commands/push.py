"""``spime push DIR``: send a design folder to the hub as a new revision.

Hashes first: the client asks which blobs the hub lacks and uploads only those,
in client-streamed ~1 MiB chunks with a progress bar on stderr. An interrupted
push resumes by hash: the blobs already stored are not sent again.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2

from hub.client import convert
from hub.client.common import (
    EXIT_OK,
    HubRefused,
    Progress,
    add_hub_options,
    add_json_option,
    emit,
    log,
)
from hub.client.connection import Hub, opened
from hub.client.local import (
    CHUNK,
    LocalFile,
    default_key_path,
    iter_chunks,
    load_key,
    read_base,
    scan_design_dir,
    write_base,
)
from hub.domain import FileEntry
from hub.provenance import public_key_of, revision_id, sign

__all__ = ["register", "run", "upload_missing"]

_UPLOAD_TIMEOUT = 6 * 3600.0
# Concurrent blob streams: overlaps the hub's disk writes and hashing with sending.
PARALLEL_STREAMS = 2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime push``."""
    p = subparsers.add_parser("push", help="push a design folder as a new revision")
    p.add_argument("dir", type=Path, help="design folder with a spime.toml")
    p.add_argument("-m", "--message", default="", help="what changed")
    p.add_argument("--new", action="store_true", help="create the design (you become maintainer)")
    p.add_argument("--parent", default="", help="parent revision (default: the folder's base "
                   "from `spime get`, else the hub's head)")
    p.add_argument("--key", default=None, help="signing key (default $SPIME_KEY or "
                   "~/.config/spimeforge/key; pushes are signed when it exists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_hub_options(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate, hash, upload missing blobs, then create the revision."""
    folder: Path = args.dir
    text, manifest, files = scan_design_dir(folder)
    key = load_key(default_key_path(args.key))
    with opened(args) as hub:
        author = hub.call(hub.accounts.WhoAmI, accounts_pb2.WhoAmIRequest()).name
        parents = [] if args.new else [_parent(hub, args, manifest.name, folder)]
        blobs, sent = upload_missing(hub, files, progress=not args.no_progress)
        created_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries = [FileEntry(path=f.path, sha256=f.sha256, size=f.size) for f in files]
        rid = revision_id(parents, manifest.to_dict(), entries, author, created_at, args.message)
        request = designs_pb2.PushRequest(
            design=manifest.name, parent_ids=parents, manifest_toml=text,
            files=[common_pb2.FileEntry(path=e.path, sha256=e.sha256, size=e.size)
                   for e in entries],
            created_at=created_at, message=args.message, create=args.new)
        if key is not None:
            request.signature = sign(key, rid)
            request.public_key = public_key_of(key)
        resp = hub.call(hub.designs.Push, request)
    if not resp.is_proposal and read_base(folder):
        write_base(folder, manifest.name, resp.revision_id)
    doc = _summary(manifest.name, resp, blobs, sent, len(files), key is not None)
    emit(args, doc, _human)
    return EXIT_OK


def _parent(hub: Hub, args: argparse.Namespace, design: str, folder: Path) -> str:
    if args.parent:
        return str(args.parent)
    base = read_base(folder)
    if base.get("design") == design and base.get("revision"):
        return str(base["revision"])
    try:
        head = hub.call(hub.designs.GetRevision, designs_pb2.GetRevisionRequest(design=design))
    except HubRefused as exc:
        if exc.code_name == "NOT_FOUND":
            exc.hint = f"to create the design {design!r}, push with --new"
        raise
    return str(head.id)


def upload_missing(hub: Hub, files: Sequence[LocalFile], *, progress: bool = True,
                   streams: int = PARALLEL_STREAMS) -> tuple[int, int]:
    """Upload the blobs the hub lacks, a few streams at a time; return (blobs, bytes) sent.

    Raises:
        HubRefused: the hub refused a blob (hash mismatch, over the size limit…).
    """
    by_hash = {f.sha256: f for f in files}
    missing = hub.call(hub.designs.MissingBlobs,
                       designs_pb2.MissingBlobsRequest(sha256=sorted(by_hash))).sha256
    todo = sorted((by_hash[h] for h in missing if h in by_hash), key=lambda f: -f.size)
    total = sum(f.size for f in todo)
    if not todo:
        log("all blobs already on the hub: 0 bytes to send")
        return 0, 0
    bar = Progress(total, f"uploading {len(todo)} blob(s)") if progress else None
    with ThreadPoolExecutor(max_workers=max(1, min(streams, len(todo)))) as pool:
        for future in [pool.submit(_upload_one, hub, f, bar) for f in todo]:
            future.result()
    if bar:
        bar.finish()
    return len(todo), total


def _upload_one(hub: Hub, f: LocalFile, bar: Progress | None) -> None:
    with hub.errors():
        hub.designs.UploadBlob(_chunks(f, bar), metadata=hub.metadata, timeout=_UPLOAD_TIMEOUT)


def _chunks(f: LocalFile, bar: Progress | None) -> Iterator[common_pb2.BlobChunk]:
    offset = 0
    first = True
    for data in iter_chunks(f.abspath, CHUNK):
        yield _chunk(f, offset, data, first)
        first = False
        offset += len(data)
        if bar:
            bar.advance(len(data))
    if first:
        yield _chunk(f, 0, b"", True)


def _chunk(f: LocalFile, offset: int, data: bytes, first: bool) -> common_pb2.BlobChunk:
    if first:
        return common_pb2.BlobChunk(sha256=f.sha256, total_size=f.size, offset=offset, data=data)
    return common_pb2.BlobChunk(offset=offset, data=data)


def _summary(design: str, resp: designs_pb2.PushResponse, blobs: int, sent: int,
             files: int, signed: bool) -> dict[str, Any]:
    return {"design": design, "revision_id": resp.revision_id, "is_proposal": resp.is_proposal,
            "proposal_id": resp.proposal_id, "unchanged": resp.unchanged, "files": files,
            "blobs_uploaded": blobs, "bytes_uploaded": sent, "signed": signed,
            "reports": [convert.report(r) for r in resp.reports]}


def _human(d: dict[str, Any]) -> str:
    if d["unchanged"]:
        return f"{d['design']}: unchanged (head {d['revision_id'][:12]}), 0 bytes sent"
    what = f"proposal {d['proposal_id']}" if d["is_proposal"] else "revision"
    sig = "signed" if d["signed"] else "unsigned"
    lines = [(f"{d['design']}: {what} {d['revision_id'][:12]} ({sig}); "
             f"{d['blobs_uploaded']} blob(s), {d['bytes_uploaded']} bytes sent")]
    for r in d["reports"]:
        lines.append(f"  {r['path']}: {'printable' if r['ok'] else 'NOT printable'}")
        lines += [f"    {f['severity']}: {f['message']}" for f in r["findings"]]
    return "\n".join(lines)
