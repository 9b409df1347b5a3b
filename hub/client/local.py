"""Local design folders, keys and downloads: the client's file-system adapter.

A design folder holds ``spime.toml`` and the files it names. Every regular file
except ``spime.toml`` and hidden entries (``.spime/``, ``.git``…) is part of a
push. ``.spime/base`` records the revision the folder was fetched from, so a
later push names it as parent and the hub can tell when someone else moved on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from hub.client.common import ClientError, UsageError
from hub.client.statcache import StatCache, now_ns, read_state_json
from hub.domain import SLUG_PATTERN
from hub.errors import HubError
from hub.limits import MAX_FILES
from hub.localfiles import FileTooLarge, NotRegularFile, read_regular, replacing
from hub.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_CHARS,
    Manifest,
    missing_files,
    parse_manifest,
    safe_relative_path,
)
from hub.paths import path_problem

__all__ = [
    "CHUNK",
    "HASH_THREADS",
    "LocalFile",
    "default_key_path",
    "hash_file",
    "iter_chunks",
    "load_key",
    "read_base",
    "read_local_file",
    "read_manifest",
    "safe_target",
    "scan_design_dir",
    "write_base",
]

CHUNK = 1024 * 1024
# hashlib releases the GIL on large buffers: one thread per core hashes files in parallel
# (more would only make every file finish later, delaying the first upload).
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
_BASE = Path(".spime") / "base"
_MAX_BASE_BYTES = 4096
_MAX_MANIFEST_BYTES = 4 * MAX_MANIFEST_CHARS  # parse_manifest counts characters; UTF-8 has up to 4 bytes each
_MAX_KEY_BYTES = 4096
_REVISION_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class LocalFile:
    """One file of a local design folder with its content hash."""

    path: str
    abspath: Path
    sha256: str
    size: int


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 hex and size of a file, read in 1 MiB chunks (never whole).

    The chunks are read into one buffer: no new object per chunk, and the thread holds the
    GIL only between a read and a hash (both release it), so a busy main thread delays it little.
    """
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    with path.open("rb", buffering=0) as fh:
        while n := fh.readinto(buffer):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def iter_chunks(path: Path, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield a file's bytes in chunks."""
    with path.open("rb") as fh:
        while data := fh.read(chunk):
            yield data


def read_local_file(path: Path, limit: int, what: str) -> bytes | None:
    """The bytes of a regular file a user named, or None when nothing is at ``path``.

    The type is checked before the file is opened (opening a serial device can reset the
    printer on it) and again on the opened file, so a pipe, socket, device or folder is
    refused instead of blocking the read or feeding it without end.

    Args:
        path: the file.
        limit: the most bytes accepted; a bigger file is refused, never read whole.
        what: what the file should hold, for messages ("the key", "the printer profile").

    Raises:
        UsageError: naming ``path`` and what is wrong (not a regular file, over ``limit``
            bytes, or the system refused it).
    """
    try:
        return read_regular(path, limit)
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        raise UsageError(f"{what} {path} is a {exc.kind}, not a regular file") from None
    except FileTooLarge:
        amount = f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"
        raise UsageError(f"{what} {path} is too big: at most {amount} are read") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise UsageError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def read_manifest(folder: Path) -> tuple[str, Manifest]:
    """Read and validate ``folder/spime.toml``.

    Raises:
        UsageError: the file is missing, not a regular file, too big or invalid (the message
            names the field).
    """
    path = folder / MANIFEST_NAME
    data = read_local_file(path, _MAX_MANIFEST_BYTES, "the manifest")
    if data is None:
        raise UsageError(f"{path} not found: create one with `spime init {folder}`")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    try:
        return text, parse_manifest(text)
    except HubError as exc:
        raise UsageError(f"{path}: {exc}") from exc


def scan_design_dir(folder: Path, *, cache: StatCache | None = None,
                    on_hashed: Callable[[list[LocalFile]], None] | None = None,
                    ) -> tuple[str, Manifest, list[LocalFile]]:
    """Validate a design folder, then hash every file in it (largest first, in parallel).

    Args:
        folder: the design folder.
        cache: hashes of files whose stat is unchanged are taken from it, and new
            ones are recorded in it.
        on_hashed: called (in this thread) with each batch of files as soon as their
            hashes are known, so uploads can start while other files are still hashed.

    Returns:
        The manifest text, the parsed manifest and the files sorted by path.

    Raises:
        UsageError: the manifest is invalid, a file it names is missing, a file
            name is not allowed, the folder holds a symlink or more files than the hub
            accepts in a revision.
        OSError: a file could not be read.
    """
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a directory")
    if not (folder / MANIFEST_NAME).is_file():
        read_manifest(folder)  # raises the usual "not found" error
    paths = _checked_paths(folder)
    if len(paths) > MAX_FILES:  # the hub would refuse the revision only after every upload
        raise UsageError(f"{folder} holds {len(paths)} files; a revision holds at most {MAX_FILES} "
                         "(the hub's limit PushRequest.files): remove files or split the design")
    files: list[LocalFile] = []
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        pending: set[Future[LocalFile]] = {pool.submit(_local_file, folder, p, rel, cache)
                                           for rel, p in paths}
        try:
            # Validating the manifest (the licence parser is pure Python) overlaps the
            # hashing threads (hashlib releases the GIL) instead of delaying them.
            text, manifest = read_manifest(folder)
            _check_named(folder, manifest, paths)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                batch = [f.result() for f in done]
                files += batch
                if on_hashed is not None:
                    on_hashed(batch)
        finally:
            for f in pending:
                f.cancel()
    return text, manifest, sorted(files, key=lambda f: f.path)


def _checked_paths(folder: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every design file, largest first, all names validated."""
    paths = [(p.relative_to(folder).as_posix(), p) for p in _walk(folder)]
    for rel, _ in paths:
        try:
            safe_relative_path(rel)
        except HubError as exc:
            raise UsageError(str(exc)) from exc
    return sorted(paths, key=lambda rp: -rp[1].stat().st_size)


def _check_named(folder: Path, manifest: Manifest, paths: list[tuple[str, Path]]) -> None:
    missing = missing_files(manifest, (rel for rel, _ in paths))
    if missing:
        raise UsageError(f"{folder / MANIFEST_NAME} names {missing[0]!r} but the folder "
                         "has no such file")


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or path == folder / MANIFEST_NAME:
                continue
            if path.is_symlink() or not path.is_file():
                raise UsageError(f"{path} is a symlink or special file; designs hold regular files")
            yield path


def _local_file(folder: Path, path: Path, rel: str, cache: StatCache | None) -> LocalFile:
    before = path.stat()
    if cache is not None and (sha := cache.lookup(rel, before)) is not None:
        return LocalFile(rel, path, sha, before.st_size)
    started = now_ns()
    sha, size = hash_file(path)
    if cache is not None:
        cache.remember(rel, before, path.stat(), sha, started)
    return LocalFile(rel, path, sha, size)


# Rules that only keep a name portable: a revision stored before the hub enforced them
# still downloads where the local system can hold the name.
_PORTABILITY_RULES = frozenset({"PATH_RESERVED_NAME", "PATH_TRAILING_DOT_OR_SPACE", "PATH_TOO_LONG",
                                "PATH_WINDOWS_FORBIDDEN_CHARACTER", "PATH_TOO_DEEP"})


def safe_target(dest: Path, name: str) -> Path:
    """Where a downloaded file named ``name`` goes under ``dest``.

    Raises:
        ClientError: the name is unsafe (``..``, absolute, NUL, control or bidi
            characters…), cannot be written on this system, or resolves outside
            ``dest``; nothing is written.
    """
    problem = path_problem(name)
    if problem is not None and (os.name == "nt" or problem.rule not in _PORTABILITY_RULES):
        raise ClientError(f"refusing to write {name!r:.300}: {problem.message}")
    target = (dest / name).resolve()
    root = dest.resolve()
    if root not in target.parents:
        raise ClientError(f"refusing to write {name!r}: it resolves outside {dest}")
    return target


def read_base(folder: Path) -> dict[str, str]:
    """The design and revision a folder was fetched from, or {} when unknown or corrupt
    (not a regular file, not JSON, or not a design name and a 64-hex revision id)."""
    data = read_state_json(folder / _BASE, _MAX_BASE_BYTES)
    if not isinstance(data, dict):
        return {}
    design, revision = data.get("design"), data.get("revision")
    if not (isinstance(design, str) and SLUG_PATTERN.fullmatch(design)
            and isinstance(revision, str) and _REVISION_ID.fullmatch(revision)):
        return {}
    return {"design": design, "revision": revision}


def write_base(folder: Path, design: str, revision: str) -> None:
    """Record the revision a folder now matches.

    Raises:
        ClientError: ``.spime`` is a link leading out of ``folder``.
        OSError: the file could not be written.
    """
    state = safe_target(folder, _BASE.parent.name)
    state.mkdir(exist_ok=True)
    with replacing(state / _BASE.name) as fh:  # replaced, never opened: a FIFO there would block
        fh.write(json.dumps({"design": design, "revision": revision}).encode() + b"\n")


def default_key_path(explicit: str | None = None) -> Path:
    """The signing key file: ``--key``, else SPIME_KEY, else ~/.config/spimeforge/key."""
    if explicit:
        return Path(explicit)
    if os.environ.get("SPIME_KEY"):
        return Path(os.environ["SPIME_KEY"])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "spimeforge" / "key"


def load_key(path: Path) -> bytes | None:
    """The raw 32-byte Ed25519 private key stored (hex) at ``path``, or None if absent.

    Raises:
        UsageError: the file exists but does not hold a key.
    """
    data = read_local_file(path, _MAX_KEY_BYTES, "the key")
    if data is None:
        return None
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read the key {path}: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"{path} does not hold a hex Ed25519 key; "
                         "make one with `spime key gen`") from exc
    if len(key) != 32:
        raise UsageError(f"{path} holds {len(key)} bytes; an Ed25519 key has 32")
    return key
