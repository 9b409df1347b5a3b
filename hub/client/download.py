"""Fetching revisions and blobs from a hub into local files, verifying as it goes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from spimeforge.v1 import designs_pb2

from hub.client.common import ClientError
from hub.client.connection import Hub
from hub.client.local import safe_target
from hub.localfiles import not_replaceable, replacing
from hub.manifest import MANIFEST_NAME
from hub.paths import CLIENT_RESERVED, fold

__all__ = ["download_blob", "plan_targets", "remove_files", "write_revision"]

_TIMEOUT = 6 * 3600.0
# Partial downloads live under .spime/, a name no revision file may take (CLIENT_RESERVED),
# named by content, so a resumed part is always a prefix of the same blob.
_PARTS = Path(".spime") / "downloading"


def plan_targets(dest: Path, files: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], Path]]:
    """Map every file of a revision to its place under ``dest``, before writing anything.

    Raises:
        ClientError: a name is unsafe or escapes ``dest``, two files share a name
            (also after case folding and Unicode normalisation, as macOS and
            Windows compare them), a path is both a file and a folder, or a file
            takes a name the client keeps for itself.
    """
    plan = [(f, safe_target(dest, f["path"])) for f in files]
    keys = [fold(f["path"]) for f, _ in plan]
    if any(k.split("/")[0] in CLIENT_RESERVED for k in keys):
        raise ClientError("refusing to write: the revision lists 'spime.toml' or '.spime/' as a file")
    if len(set(keys)) != len(keys):
        raise ClientError("refusing to write: the revision lists a file twice (names equal after case "
                          "folding and Unicode normalisation count as the same)")
    folders = {k.rsplit("/", i)[0] for k in keys for i in range(1, k.count("/") + 1)}
    if folders & set(keys):
        raise ClientError(f"refusing to write: {min(folders & set(keys))!r} is both a file and a folder")
    return plan


def download_blob(hub: Hub, sha256: str, size: int, target: Path,
                  advance: Callable[[int], None] = lambda n: None, part: Path | None = None) -> None:
    """Download one blob to ``target`` through ``part``, resuming a partial file.

    Args:
        part: the partial file (default ``target.part``); :func:`write_revision` passes one
            under ``.spime/`` so it can never be another file of the revision.

    Raises:
        ClientError: the hub sent more than ``size`` bytes (stopped at once) or bytes that do
            not hash to ``sha256``; the partial file is removed.
        HubRefused: the hub refused the download.
    """
    if problem := not_replaceable(target):
        raise ClientError(f"cannot write {target.name}: {problem}")
    part = part or target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if offset > size:
        part.unlink()
        offset = 0
    digest = _hash_prefix(part, offset)
    target.parent.mkdir(parents=True, exist_ok=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("ab") as out:
        for data in _stream(hub, sha256, offset):
            offset += len(data)
            if offset > size:  # checked before writing: a hostile hub cannot fill the disk
                out.close()
                part.unlink()
                raise ClientError(f"blob {sha256[:12]} for {target.name}: the hub sent more than "
                                  f"its {size} bytes; nothing was kept")
            out.write(data)
            digest.update(data)
            advance(len(data))
    if offset != size or digest.hexdigest() != sha256:
        part.unlink()
        raise ClientError(f"blob {sha256[:12]} for {target.name} arrived corrupted "
                          f"({offset} of {size} bytes, or a hash mismatch); nothing was kept, try again")
    os.replace(part, target)


def _hash_prefix(part: Path, length: int) -> Any:
    digest = hashlib.sha256()
    if length:
        with part.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest


def _stream(hub: Hub, sha256: str, offset: int) -> Iterator[bytes]:
    request = designs_pb2.DownloadBlobRequest(sha256=sha256, offset=offset)
    with hub.errors():
        for chunk in hub.designs.DownloadBlob(request, metadata=hub.metadata, timeout=_TIMEOUT):
            yield chunk.data


def write_revision(hub: Hub, rev: dict[str, Any], dest: Path,
                   advance: Callable[[int], None] = lambda n: None) -> list[str]:
    """Write a revision's spime.toml and files into ``dest``; return the paths written.

    Every target is checked before any byte is written; spime.toml, as every file, is
    written beside its place and renamed over it when complete.

    Raises:
        ClientError: an unsafe name, a target that is not a regular file (a link leading out
            of ``dest``, a pipe, a device), or a corrupted blob.
        HubRefused: the hub refused a download.
    """
    plan = plan_targets(dest, rev["files"])
    manifest = safe_target(dest, MANIFEST_NAME)
    parts = safe_target(dest, _PARTS.parent.name) / _PARTS.name  # .spime/ may not lead elsewhere either
    if problem := not_replaceable(manifest):
        raise ClientError(f"cannot write {MANIFEST_NAME}: {problem}")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with replacing(manifest) as fh:
            fh.write(rev["manifest_toml"].encode("utf-8"))
        for f, target in plan:
            download_blob(hub, f["sha256"], int(f["size"]), target, advance, part=parts / f"{f['sha256']}.part")
        with contextlib.suppress(OSError):
            parts.rmdir()
    except OSError as exc:
        raise ClientError(f"cannot write into {dest}: {exc.strerror or exc} ({exc.filename or ''})") from exc
    return [MANIFEST_NAME] + [f["path"] for f, _ in plan]


def remove_files(dest: Path, names: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """Remove the regular files ``names`` under ``dest``, and the folders that leaves empty.

    A name reached through a link, or that is no regular file now, is left alone: only what
    lies under ``dest`` by its own name goes. So is one that is the same file as a name in
    ``keep`` (a file renamed only in case, on a system that ignores case).

    Returns:
        the names removed.

    Raises:
        ClientError: a file could not be removed (the message names it).
    """
    root = dest.resolve()
    kept = {fold(name): root / name for name in keep}
    removed = []
    for name in names:
        path = root / name
        try:
            if path.resolve() != path or not stat.S_ISREG(path.lstat().st_mode):
                continue
            if (twin := kept.get(fold(name))) is not None and twin.exists() and path.samefile(twin):
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ClientError(f"cannot remove {name} from {dest}: {exc.strerror or exc}") from exc
        removed.append(name)
        for folder in path.parents:
            if folder == root:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or not ours to remove): the folders above are not empty either
                break
    return removed
