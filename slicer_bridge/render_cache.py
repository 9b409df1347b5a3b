"""A bounded, on-disk cache of OpenSCAD renders: each distinct design and parameters renders once.

An order of several copies (or parts) of a parametric design becomes one job per object, and each
job rendered the same source with the same parameters again: seconds to minutes of CPU per copy.
An entry is keyed by the sha256 of every file the render reads (the main .scad first, then what it
includes, uses or imports, each with its path in the design), the parameter values and the
OpenSCAD version, and holds the STL as ``<root>/entries/<key>.stl``. Entries are written in
``<root>/tmp/`` and renamed into place, so a reader never sees half an STL; the total size is
bounded and the least recently used go first. Requests for one key at once render once: the others
wait for that render and take its result.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from slicer_bridge.base import RenderError, ToolNotFound
from slicer_bridge.cache import CacheError, file_sha256
from slicer_bridge.openscad import render_scad
from slicer_bridge.run import run
from slicer_bridge.scad_sandbox import check_references

__all__ = ["RenderCache", "render_key"]

_SUFFIX = ".stl"


def render_key(files: list[tuple[str, str]], params: Mapping[str, object], openscad_version: str) -> str:
    """Hex sha256 of the canonical JSON of what shapes a render.

    Args:
        files: (path in the design, sha256) of every file the render reads, the main file first.
        params: the parameter values passed to OpenSCAD.
        openscad_version: what ``openscad --version`` says.
    """
    canonical = json.dumps({"files": files, "params": sorted((str(k), repr(v)) for k, v in params.items()),
                            "openscad": openscad_version}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class RenderCache:
    """Rendered STLs on disk, bounded in bytes, least recently used evicted first.

    Args:
        root: the cache directory (created if missing).
        max_bytes: upper bound on the total size of the entries.
        binary: the openscad program.

    Attributes:
        renders: how many times OpenSCAD rendered for this cache (a miss that produced an STL).
        hits: how many requests were answered from the cache.

    Raises:
        CacheError: ``max_bytes`` is not positive or ``root`` cannot be used.
    """

    def __init__(self, root: Path, max_bytes: int, binary: str = "openscad") -> None:
        if max_bytes <= 0:
            raise CacheError(f"render cache size must be positive, got {max_bytes}")
        self.root, self.max_bytes, self.binary = Path(root), max_bytes, binary
        self._entries, self._tmp = self.root / "entries", self.root / "tmp"
        try:
            self._entries.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._tmp, ignore_errors=True)  # half-written renders of a crash
            self._tmp.mkdir(exist_ok=True)
            found = sorted((p.stat().st_mtime_ns, p.stem, p.stat().st_size)
                           for p in self._entries.iterdir() if p.suffix == _SUFFIX)
        except OSError as exc:
            raise CacheError(f"cannot use {self.root} as the render cache: {exc}") from exc
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict((key, size) for _, key, size in found)
        self._total = sum(self._index.values())
        self._inflight: dict[str, asyncio.Lock] = {}
        self._version: str | None = None
        self.renders = 0
        self.hits = 0
        with self._lock:
            self._evict()

    async def render(self, scad: Path, params: Mapping[str, object], timeout_s: float, out_path: Path,
                     ) -> tuple[Path, bool]:
        """``render_scad(scad, params, timeout_s, out_path)``, rendered once per key.

        Returns:
            ``out_path`` (a copy of the cached STL) and whether it came from the cache.

        Raises:
            ParameterError, ScadReferenceError, ToolNotFound, RenderError: as ``render_scad``.
            CacheError: the render could not be stored.
        """
        version = await self.openscad_version()
        key = await asyncio.to_thread(self._key, Path(os.path.abspath(scad)), params, version)
        lock = self._inflight.setdefault(key, asyncio.Lock())
        async with lock:
            entry = await asyncio.to_thread(self._get, key)
            if entry is not None:
                await asyncio.to_thread(_copy, entry, out_path)
            else:
                await self._render(key, scad, params, timeout_s, out_path)
        if not lock.locked():
            self._inflight.pop(key, None)
        return out_path, entry is not None

    async def _render(self, key: str, scad: Path, params: Mapping[str, object], timeout_s: float,
                      out_path: Path) -> None:
        staging = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            stl = await render_scad(scad, params, timeout_s, staging / "model.stl", self.binary)
            with self._lock:
                self.renders += 1
            await asyncio.to_thread(_copy, stl, out_path)
            await asyncio.to_thread(self._adopt, key, stl)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    async def openscad_version(self) -> str:
        """What ``openscad --version`` says, asked once per cache.

        Raises:
            ToolNotFound: OpenSCAD is not installed.
            RenderError: it did not state its version.
        """
        if self._version is None:
            if shutil.which(self.binary) is None:
                raise ToolNotFound(self.binary)
            done = await run([self.binary, "--version"], timeout_s=60.0, error=RenderError, check=False)
            said = (done.stdout + done.stderr).strip()
            if done.returncode != 0 or "version" not in said.lower():
                raise RenderError(done.argv, done.returncode, done.stdout, done.stderr,
                                  reason="cannot read the OpenSCAD version")
            self._version = said.splitlines()[-1][:200]
        return self._version

    def status(self) -> dict[str, int | str]:
        """A plain-data snapshot for the node's status report."""
        with self._lock:
            return {"root": str(self.root), "entries": len(self._index), "bytes": self._total,
                    "max_bytes": self.max_bytes, "hits": self.hits, "renders": self.renders}

    def _key(self, scad: Path, params: Mapping[str, object], version: str) -> str:
        folder = scad.parent
        files = [(str(p.relative_to(folder)), file_sha256(p)) for p in check_references(scad, folder)]
        return render_key(files, params, version)

    def _get(self, key: str) -> Path | None:
        entry = self._entries / f"{key}{_SUFFIX}"
        with self._lock:
            if key not in self._index:
                return None
            try:
                os.utime(entry)
            except OSError:  # removed from outside: a miss
                self._total -= self._index.pop(key)
                return None
            self._index.move_to_end(key)
            self.hits += 1
        return entry

    def _adopt(self, key: str, stl: Path) -> None:
        try:
            size = stl.stat().st_size
        except OSError as exc:
            raise CacheError(f"cannot store the render {stl}: {exc}") from exc
        if size > self.max_bytes:
            return  # larger than the whole cache: used once, not kept
        with self._lock:
            if key not in self._index:
                os.replace(stl, self._entries / f"{key}{_SUFFIX}")
                self._index[key] = size
                self._total += size
            self._index.move_to_end(key)
            self._evict(keep=key)

    def _evict(self, keep: str | None = None) -> None:
        while self._total > self.max_bytes and self._index:
            oldest = next(iter(self._index))
            if oldest == keep:
                break
            self._total -= self._index.pop(oldest)
            (self._entries / f"{oldest}{_SUFFIX}").unlink(missing_ok=True)


def _copy(source: Path, target: Path) -> None:
    """A copy, not a link: the job may change its file, the cache may evict its entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
