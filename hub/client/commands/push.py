"""``spime push DIR``: send a design folder to the hub as a new revision.

Hashes the files (reusing hashes cached in ``.spime/hashes.json`` for files
whose stat is unchanged), asks which blobs the hub lacks and uploads only those,
in client-streamed 512 KiB chunks (hub.client.upload), two blobs at a time, with a
progress bar on stderr; uploads start while later files are still being hashed.
An interrupted push resumes by hash: the blobs already stored are not sent again.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import re
import sys
import threading
import tomllib
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2

from hub.client import convert
from hub.client.common import EXIT_OK, HubRefused, UsageError, add_hub_command, emit
from hub.client.connection import Hub, opened
from hub.client.local import (
    LocalFile,
    default_key_path,
    load_key,
    read_base,
    read_local_file,
    scan_design_dir,
    write_base,
)
from hub.client.statcache import StatCache
from hub.client.upload import PARALLEL_STREAMS, Uploader
from hub.domain import FileEntry
from hub.manifest import MANIFEST_NAME, MAX_MANIFEST_CHARS, Manifest
from hub.provenance import public_key_of, revision_id, sign

__all__ = ["register", "run", "upload_missing"]

_REVISION_ID = re.compile(r"[0-9a-f]{64}")
# How long a thread keeps the GIL while another waits for it, while a push hashes and sends
# (CPython: 5 ms). The hashing and upload threads give the GIL up for every read, hash and
# send; with 5 ms each waited up to that long after each chunk behind the main thread validating
# the manifest (the licence parser is pure Python) or a full collection holding the GIL.
SWITCH_INTERVAL_S = 0.001


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime push``."""
    p = add_hub_command(
        subparsers, "push", "push a design folder as a new revision", run)
    p.add_argument("dir", type=Path, help="design folder with a spime.toml")
    p.add_argument("-m", "--message", default="", help="what changed")
    p.add_argument("--new", action="store_true", help="create the design (you become maintainer)")
    p.add_argument("--parent", type=_revision_id, default=None,
                   help="parent revision id, 64 hex digits (default: the folder's base "
                   "from `spime get`, else the hub's head)")
    p.add_argument("--key", default=None, help="signing key (default $SPIME_KEY or "
                   "~/.config/spimeforge/key; pushes are signed when it exists)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Validate, hash while uploading missing blobs, then create the revision."""
    folder: Path = args.dir
    key = load_key(default_key_path(args.key))
    with opened(args) as hub:
        # The scan validates the manifest (its errors come before any call to the hub) while
        # the first files are already being hashed; the caller only needs the design's name.
        caller = _Caller(hub, args, folder, _design_name(folder))
        text, manifest, files, blobs, sent = _hash_and_upload(hub, folder, caller,
                                                              not args.no_progress)
        author, parents = caller.resolve()
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


@dataclass
class _Caller:
    """Who pushes and onto which parent.

    The hub is asked in the background while the folder is validated and hashed (the
    connection and these round trips used to come between the first hash and the first
    upload); the answer is taken before the first blob is offered, so local errors still
    come first, then a bad token or an unknown design, and only then uploads.
    """

    hub: Hub
    args: argparse.Namespace
    folder: Path
    design: str
    pending: Future[tuple[str, list[str]]] = field(default_factory=Future)

    def start(self) -> None:
        """Ask the hub in a background thread (a daemon: a local error does not wait for it); once."""
        if self.pending.running() or self.pending.done():
            return
        self.pending.set_running_or_notify_cancel()
        threading.Thread(target=self._ask_into, name="push-caller", daemon=True).start()

    def resolve(self) -> tuple[str, list[str]]:
        """(author, parent ids), asking the hub now unless ``start`` did.

        Raises:
            HubRefused: WhoAmI or the head lookup was refused.
        """
        self.start()
        return self.pending.result()

    def _ask_into(self) -> None:
        try:
            who = self.hub.call(self.hub.accounts.WhoAmI, accounts_pb2.WhoAmIRequest()).name
            parents = [] if self.args.new else [_parent(self.hub, self.args, self.design, self.folder)]
        except BaseException as exc:  # noqa: BLE001 - handed to resolve(), which raises it
            self.pending.set_exception(exc)
        else:
            self.pending.set_result((who, parents))


@contextlib.contextmanager
def _busy_threads() -> Iterator[None]:
    """While a push hashes and sends: waiting threads get the GIL within SWITCH_INTERVAL_S,
    and the cyclic collector is paused (a full collection walks every object of the process,
    holding the GIL: ~27 ms of the benchmark's cold push). Both are restored afterwards.
    """
    interval, collecting = sys.getswitchinterval(), gc.isenabled()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if collecting:
            gc.enable()


def _hash_and_upload(hub: Hub, folder: Path, caller: _Caller, progress: bool,
                     ) -> tuple[str, Manifest, list[LocalFile], int, int]:
    cache = StatCache(folder)
    caller.start()
    with _busy_threads(), Uploader(hub, progress=progress) as uploader:
        def offer(batch: list[LocalFile]) -> None:
            caller.resolve()
            uploader.offer(batch)

        text, manifest, files = scan_design_dir(folder, cache=cache, on_hashed=offer)
        blobs, sent = uploader.finish()
    cache.save({f.path for f in files})
    return text, manifest, files, blobs, sent


def _design_name(folder: Path) -> str:
    """The manifest's ``name``, read without validating the manifest ("" if unreadable)."""
    try:  # a pipe or device is not read here: scan_design_dir refuses it, naming it
        data = read_local_file(folder / MANIFEST_NAME, 4 * MAX_MANIFEST_CHARS, "the manifest")
        name = tomllib.loads((data or b"").decode("utf-8")).get("name")
    except (UsageError, ValueError, RecursionError):  # ValueError: bad UTF-8, TOML or a huge number
        return ""
    return name if isinstance(name, str) else ""


def _revision_id(text: str) -> str:
    """An argparse ``type``: a whole revision id (a prefix names no parent the hub can check)."""
    if not _REVISION_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not a revision id (64 lowercase hex "
                                         "digits, as `spime log DESIGN --json` prints)")
    return text


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
    with Uploader(hub, streams=streams, progress=progress) as uploader:
        uploader.offer(files)
        return uploader.finish()


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
