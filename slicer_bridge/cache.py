"""A bounded, on-disk slice cache: a repeated job on the same node never re-slices.

An entry is keyed by (mesh sha256, profile sha256, slicer name and version, the
canonical set of slicer overrides) and holds the G-code plus its metadata as JSON in
`<root>/entries/<key>/`. Entries are built in `<root>/tmp/` and renamed into place,
so a reader never sees half an entry. The total size is bounded; the least recently
used entries are evicted first (recency survives restarts through meta.json's mtime).
One process may use a cache from many tasks and threads at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from slicer_bridge.base import GcodeMetadata, Slicer, SlicerBridgeError, SliceRequest, SliceResult

__all__ = ["CacheError", "SliceCache", "cache_key", "file_sha256", "slice_cached"]

_GCODE = "output.gcode"
_META = "meta.json"
_CHUNK = 1 << 20
_DIGEST_MEMO = 1024


class CacheError(SlicerBridgeError):
    """The cache directory cannot be used (the node's disk or config is at fault)."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(
    mesh_sha256: str,
    profile_sha256: str,
    slicer_name: str,
    slicer_version: str,
    overrides: Mapping[str, str],
) -> str:
    """The cache key: hex sha256 of the canonical JSON of everything that shapes the G-code."""
    canonical = json.dumps(
        {
            "mesh": mesh_sha256,
            "profile": profile_sha256,
            "slicer": slicer_name,
            "version": slicer_version,
            "overrides": sorted((str(k), str(v)) for k, v in overrides.items()),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _entry_size(entry: Path) -> int:
    return sum(p.stat().st_size for p in entry.iterdir() if p.is_file())


class SliceCache:
    """G-code and metadata on disk, bounded in bytes, least recently used evicted first.

    Args:
        root: The cache directory (created if missing).
        max_bytes: Upper bound on the total size of the entries.

    Raises:
        CacheError: `max_bytes` is not positive or `root` cannot be created.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise CacheError(f"slice cache size must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._entries = self.root / "entries"
        self._tmp = self.root / "tmp"
        try:
            self._entries.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._tmp, ignore_errors=True)  # half-built entries of a crash
            self._tmp.mkdir(exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot use {self.root} as the slice cache: {exc}") from exc
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._inflight: dict[str, asyncio.Lock] = {}
        self._digests: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self.hits = 0
        self.misses = 0
        self._load_index()

    def _load_index(self) -> None:
        found = []
        for entry in self._entries.iterdir():
            meta = entry / _META
            if entry.is_dir() and meta.is_file() and (entry / _GCODE).is_file():
                found.append((meta.stat().st_mtime_ns, entry.name, _entry_size(entry)))
            else:
                shutil.rmtree(entry, ignore_errors=True)
        for _, key, size in sorted(found):
            self._index[key] = size
            self._total += size
        with self._lock:
            self._evict()

    @property
    def total_bytes(self) -> int:
        """Bytes held by the entries."""
        return self._total

    def status(self) -> dict[str, int | str]:
        """A plain-data snapshot for the node's status report."""
        with self._lock:
            return {"root": str(self.root), "entries": len(self._index),
                    "bytes": self._total, "max_bytes": self.max_bytes,
                    "hits": self.hits, "misses": self.misses}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def key_for(self, request: SliceRequest, slicer_name: str, slicer_version: str) -> str:
        """The key of `request` sliced by that slicer (hashes the mesh and profile files).

        Raises:
            OSError: The mesh or profile cannot be read.
        """
        return cache_key(self._sha256(request.mesh_path), self._sha256(request.profile_path),
                         slicer_name, slicer_version, request.overrides)

    def _sha256(self, path: Path) -> str:
        # A repeated job hands the same file again: remember its digest by identity and
        # mtime, so a hit on a 50 MB mesh stays in milliseconds.
        st = path.stat()
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        name = str(path.resolve())
        with self._lock:
            known = self._digests.get(name)
        if known is not None and known[0] == stamp:
            return known[1]
        digest = file_sha256(path)
        with self._lock:
            self._digests[name] = (stamp, digest)
            while len(self._digests) > _DIGEST_MEMO:
                self._digests.pop(next(iter(self._digests)))
        return digest

    def get(self, key: str) -> SliceResult | None:
        """The cached result for `key` (now the most recently used), or None on a miss."""
        entry = self._entries / key
        with self._lock:
            if key not in self._index:
                self.misses += 1
                return None
            self._index.move_to_end(key)
            try:
                metadata = GcodeMetadata(**json.loads((entry / _META).read_text()))
                os.utime(entry / _META)
            except (OSError, ValueError, TypeError):
                self._drop(key)  # damaged from outside: a miss, and it goes
                self.misses += 1
                return None
            self.hits += 1
        return SliceResult(entry / _GCODE, metadata, cached=True)

    def put(self, key: str, result: SliceResult) -> SliceResult:
        """Store a copy of `result`'s G-code under `key`.

        Returns:
            The stored result (pointing into the cache), or `result` itself when it is
            larger than the whole cache.

        Raises:
            CacheError: The entry could not be written.
        """
        staging = self.staging_dir()
        try:
            shutil.copyfile(result.gcode_path, staging / _GCODE)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CacheError(f"cannot copy {result.gcode_path} into the cache: {exc}") from exc
        stored = self.adopt(key, staging, result.metadata)
        if stored is None:
            shutil.rmtree(staging, ignore_errors=True)
            return result
        return stored

    def staging_dir(self) -> Path:
        """A fresh directory inside the cache for a slicer to write into, then `adopt`."""
        return Path(tempfile.mkdtemp(dir=self._tmp))

    def adopt(self, key: str, staging: Path, metadata: GcodeMetadata) -> SliceResult | None:
        """Move a staging dir holding `output.gcode` into the cache under `key`.

        Returns:
            The stored result, or None when the entry is larger than the whole cache
            (the staging dir is then left to the caller).

        Raises:
            CacheError: The metadata could not be written.
        """
        try:
            (staging / _META).write_text(json.dumps(dataclasses.asdict(metadata)))
            size = _entry_size(staging)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CacheError(f"cannot write a cache entry in {staging}: {exc}") from exc
        if size > self.max_bytes:
            return None
        entry = self._entries / key
        with self._lock:
            if key in self._index:
                shutil.rmtree(staging, ignore_errors=True)  # another task stored it first
            else:
                os.rename(staging, entry)
                self._index[key] = size
                self._total += size
            self._index.move_to_end(key)
            self._evict(keep=key)
        return SliceResult(entry / _GCODE, metadata, cached=False)

    def _drop(self, key: str) -> None:
        self._total -= self._index.pop(key)
        shutil.rmtree(self._entries / key, ignore_errors=True)

    def _evict(self, keep: str | None = None) -> None:
        while self._total > self.max_bytes and self._index:
            oldest = next(iter(self._index))
            if oldest == keep:
                break
            self._drop(oldest)

    def _inflight_lock(self, key: str) -> asyncio.Lock:
        return self._inflight.setdefault(key, asyncio.Lock())


async def slice_cached(cache: SliceCache, slicer: Slicer, request: SliceRequest) -> SliceResult:
    """Return the cached G-code for `request`, slicing (once, even if asked concurrently) on a miss.

    Raises:
        ToolNotFound: The slicer is not installed.
        SlicerError: Slicing failed (nothing is stored).
        CacheError: The result could not be stored.
        OSError: The mesh or profile cannot be read.
    """
    version = await slicer.version()
    key = await asyncio.to_thread(cache.key_for, request, slicer.name, version)
    lock = cache._inflight_lock(key)
    async with lock:
        hit = await asyncio.to_thread(cache.get, key)
        if hit is not None:
            return hit
        staging = cache.staging_dir()
        try:
            result = await slicer.slice(request, staging)
            stored = await asyncio.to_thread(cache.adopt, key, staging, result.metadata)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    if not lock.locked():
        cache._inflight.pop(key, None)
    # Larger than the whole cache: handed over uncached, from the staging dir.
    return result if stored is None else stored
