"""Slicing benchmark: the bridge against a raw `prusa-slicer --export-gcode`, and cache hits.

Run with `bash ops/bench.sh -k slicing`. Prints, per model, the median wall time of the raw
PrusaSlicer invocation (the reference), of the bridge's `PrusaSlicer.slice` (spawn, time limit,
G-code metadata parse), of a cache miss through `slice_cached` (adds hashing and storing) and
of a cache hit (target < 50 ms), with the overhead ratios. Asserts only that it ran.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trimesh

from slicer_bridge.base import SliceRequest
from slicer_bridge.cache import SliceCache, slice_cached
from slicer_bridge.profiles import load_profile
from slicer_bridge.prusaslicer import PrusaSlicer, build_slice_argv

ROUNDS = 3
HIT_ROUNDS = 20


def _median_s(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _models(root: Path) -> dict[str, Path]:
    cube = root / "calibration_cube_20mm.stl"
    trimesh.creation.box((20, 20, 20)).export(cube)
    # ~100k faces: a sphere fine enough that PrusaSlicer's own mesh work shows.
    sphere = trimesh.creation.uv_sphere(radius=30, count=[159, 159])
    dense = root / f"sphere_{len(sphere.faces)}_faces.stl"
    sphere.export(dense)
    return {"20 mm cube (12 faces)": cube, f"sphere ({len(sphere.faces)} faces)": dense}


def _bench_model(label: str, mesh: Path, profile: Path, slicer: PrusaSlicer, tmp: Path) -> None:
    request = SliceRequest(mesh, profile)
    out = tmp / f"{mesh.stem}_raw"
    out.mkdir()
    argv = build_slice_argv("prusa-slicer", request, out / "output.gcode")
    # Interleaved, so warm-up and neighbours' load fall on both alike.
    raws, bridges = [], []
    for _ in range(ROUNDS):
        raws.append(_median_s(lambda: subprocess.run(argv, capture_output=True, check=True), 1))
        bridges.append(_median_s(lambda: asyncio.run(slicer.slice(request, out)), 1))
    raw, bridge = statistics.median(raws), statistics.median(bridges)

    def miss() -> None:
        cache = SliceCache(tmp / f"cache_{time.monotonic_ns()}", 1 << 30)
        assert not asyncio.run(slice_cached(cache, slicer, request)).cached

    missed = _median_s(miss, ROUNDS)
    cache = SliceCache(tmp / f"cache_{mesh.stem}", 1 << 30)
    result = asyncio.run(slice_cached(cache, slicer, request))

    async def hits() -> list[float]:
        times = []
        for _ in range(HIT_ROUNDS):
            started = time.perf_counter()
            assert (await slice_cached(cache, slicer, request)).cached
            times.append(time.perf_counter() - started)
        return times

    hit = statistics.median(asyncio.run(hits()))
    meta = result.metadata
    print(f"  {label}: raw prusa-slicer {raw:.3f} s | bridge slice {bridge:.3f} s "
          f"(x{bridge / raw:.2f} of raw) | cache miss {missed:.3f} s (x{missed / raw:.2f}) "
          f"| cache hit {hit * 1000:.1f} ms (target < 50 ms; x{hit / raw:.1e} of raw)")
    print(f"    G-code {result.gcode_path.stat().st_size / 1e6:.2f} MB, {meta.layer_count} "
          f"layers, est. {meta.estimated_seconds / 60:.1f} min, {meta.filament_g:.1f} g")


@pytest.mark.parametrize("profile_name", ["prusa_mk3s"])
def test_bench_slicing(profile_name: str, tmp_path: Path) -> None:
    profile = load_profile(profile_name).ini_path
    slicer = PrusaSlicer()
    print(f"\nslicing benchmark, profile {profile_name}, median of {ROUNDS} "
          f"(load average {os.getloadavg()[0]:.1f})")
    for label, mesh in _models(tmp_path).items():
        _bench_model(label, mesh, profile, slicer, tmp_path)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  peak RSS of the largest prusa-slicer child: {peak_mb:.0f} MB")
