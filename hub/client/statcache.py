"""A git-index-like cache of file hashes in a design folder's ``.spime/hashes.json``.

An entry maps a relative path to the file's (size, mtime_ns, ctime_ns, inode) and
its SHA-256. A file whose stat differs is hashed again; the inode change time
cannot be set from user space, so even an edit that restores size and mtime is
seen. A file changed within the file-system clock's granularity of being hashed
could keep its stat, so (as git does with "racily clean" entries) a hash is
only remembered when the file's mtime and ctime are well before hashing began;
such fresh files are hashed again next time. The cache is a speed-up only:
unreadable or corrupt, it is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["CACHE_PATH", "RACY_NS", "StatCache", "read_state_json", "stat_key"]

CACHE_PATH = Path(".spime") / "hashes.json"
# Kernel file timestamps come from a coarse clock; two seconds is far beyond its tick.
RACY_NS = 2_000_000_000
_VERSION = 1
_MAX_CACHE_BYTES = 64 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")

StatKey = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    """The stat fields that change whenever a file's content is rewritten."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class StatCache:
    """Path → (stat key, sha256) for one design folder; thread-safe."""

    def __init__(self, folder: Path, racy_ns: int = RACY_NS) -> None:
        self.path = folder / CACHE_PATH
        self.racy_ns = racy_ns
        self._entries: dict[str, tuple[StatKey, str]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._load()

    def _load(self) -> None:
        doc = read_state_json(self.path, _MAX_CACHE_BYTES)
        files = doc.get("files") if isinstance(doc, dict) and doc.get("version") == _VERSION else None
        if isinstance(files, dict):
            self._entries = dict(e for e in map(_entry, files.items()) if e is not None)

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        """The cached hash of ``rel`` if its stat is unchanged, else None."""
        with self._lock:
            entry = self._entries.get(rel)
        return entry[1] if entry is not None and entry[0] == stat_key(st) else None

    def remember(self, rel: str, before: os.stat_result, after: os.stat_result,
                 sha256: str, started_ns: int) -> None:
        """Record a hash computed between two stats, unless the file moved or is racily fresh."""
        changed = max(before.st_mtime_ns, before.st_ctime_ns)
        if stat_key(before) != stat_key(after) or changed > started_ns - self.racy_ns:
            return
        with self._lock:
            self._entries[rel] = (stat_key(after), sha256)
            self._dirty = True

    def save(self, keep: set[str]) -> None:
        """Write the entries for the paths in ``keep`` atomically; errors are ignored."""
        with self._lock:
            if not self._dirty and keep >= set(self._entries):
                return
            files = {p: [list(k), h] for p, (k, h) in sorted(self._entries.items()) if p in keep}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps({"version": _VERSION, "files": files}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _entry(item: tuple[Any, Any]) -> tuple[str, tuple[StatKey, str]] | None:
    """A well-formed cache entry, or None: a hash read back is trusted as the file's content,
    so anything but 64 lowercase hex digits (a path, a list) is dropped."""
    rel, value = item
    if not (isinstance(value, list) and len(value) == 2):
        return None
    key, sha256 = value
    if not (isinstance(key, list) and len(key) == 4
            and all(type(x) is int and x >= 0 for x in key)):
        return None
    if not (isinstance(sha256, str) and _SHA256.match(sha256)):
        return None
    return rel, ((key[0], key[1], key[2], key[3]), sha256)


def read_state_json(path: Path, limit: int) -> Any:
    """The JSON document in one of the client's own state files, or None when it is missing,
    not a regular file (a FIFO would block the read for ever), over ``limit`` bytes, or not
    valid (including nested too deep to parse): such state is a cache, ignored when corrupt."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            data = fh.read(limit + 1)
        return None if len(data) > limit else json.loads(data.decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def now_ns() -> int:
    """Wall-clock time in ns, comparable with file mtimes."""
    return time.time_ns()
