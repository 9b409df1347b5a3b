"""The local cache of an S3 hub's blobs, kept under a size cap.

Every blob this hub received or fetched stays in ``<data>/blob-cache`` for the push-time
checks, the slicer and downloads. Past ``max_bytes`` the least recently used files go
first, down to nine tenths of the cap, so trimming is rare. A file used in the last
``keep_s`` seconds is never removed: a check or a download may be about to open the path
it was just given. Everything in the cache is also in the bucket, so a removed file is
fetched again (and verified) when next needed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_CACHE_BYTES", "BlobCache", "CachedFile", "victims"]

DEFAULT_CACHE_BYTES = 10 << 30
KEEP_S = 60.0


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One cached blob: its path, size and when it was last used (seconds since the epoch)."""

    path: Path
    size: int
    used_at: float


def victims(files: Sequence[CachedFile], max_bytes: int, now: float, keep_s: float) -> list[CachedFile]:
    """The files to remove, least recently used first, to bring the total to nine tenths of
    ``max_bytes`` (nothing when it is within the cap); files used less than ``keep_s`` ago stay."""
    total = sum(f.size for f in files)
    if total <= max_bytes:
        return []
    goal, chosen = max_bytes * 9 // 10, []
    for cached in sorted(files, key=lambda f: f.used_at):
        if total <= goal or now - cached.used_at < keep_s:
            break
        chosen.append(cached)
        total -= cached.size
    return chosen


class BlobCache:
    """Size accounting and trimming of one cache directory (``ab/cdef…`` files; ``tmp`` is not counted).

    Thread-safe: uploads, fetches and readers call it from worker threads.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_CACHE_BYTES, keep_s: float = KEEP_S) -> None:
        self.root, self.max_bytes, self.keep_s = root, max_bytes, keep_s
        self._lock = threading.Lock()
        self._total = sum(f.size for f in self._files())

    @property
    def total_bytes(self) -> int:
        """Bytes of blobs in the cache, as counted since start."""
        return self._total

    def use(self, path: Path) -> bool:
        """Mark a cached blob as just used (so a trim keeps it for ``keep_s``); False when it is not cached."""
        with self._lock:
            try:
                os.utime(path)
            except FileNotFoundError:
                return False
            return True

    def added(self, size: int) -> None:
        """A blob of ``size`` bytes was just put in the cache: count it, and trim past the cap."""
        with self._lock:
            self._total += size
            if self._total > self.max_bytes:
                self._trim()

    def _trim(self) -> None:
        files = list(self._files())
        self._total = sum(f.size for f in files)
        for cached in victims(files, self.max_bytes, time.time(), self.keep_s):
            cached.path.unlink(missing_ok=True)
            self._total -= cached.size

    def _files(self) -> Iterator[CachedFile]:
        for folder in self.root.glob("[0-9a-f][0-9a-f]"):
            for entry in os.scandir(folder):
                try:
                    stat = entry.stat()
                except FileNotFoundError:
                    continue
                yield CachedFile(Path(entry.path), stat.st_size, stat.st_mtime)
