"""The render cache with the real openscad: one render per distinct design files, parameters and version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slicer_bridge.base import ParameterError
from slicer_bridge.cache import CacheError
from slicer_bridge.render_cache import RenderCache, render_key

MAIN = "include <sizes.scad>\nwidth = 20; // [10:1:40]\ncube([width, width, height]);\n"


def _design(tmp_path: Path, height: float = 3) -> Path:
    folder = tmp_path / "design"
    folder.mkdir(exist_ok=True)
    (folder / "part.scad").write_text(MAIN)
    (folder / "sizes.scad").write_text(f"height = {height};\n")
    return folder / "part.scad"


def _render(cache: RenderCache, scad: Path, out: Path, **params: object) -> bool:
    path, cached = asyncio.run(cache.render(scad, params, 120, out))
    assert path == out and out.stat().st_size > 0
    return cached


def test_the_same_design_and_parameters_render_once_even_after_a_restart(tmp_path: Path) -> None:
    scad = _design(tmp_path)
    cache = RenderCache(tmp_path / "cache", 1 << 26)
    assert [_render(cache, scad, tmp_path / f"out{i}.stl", width=25) for i in range(3)] == [False, True, True]
    assert (cache.renders, cache.hits) == (1, 2)
    again = RenderCache(tmp_path / "cache", 1 << 26)  # the node restarted
    assert _render(again, scad, tmp_path / "out3.stl", width=25) and again.renders == 0


def test_other_parameters_or_a_changed_include_render_again(tmp_path: Path) -> None:
    scad = _design(tmp_path)
    cache = RenderCache(tmp_path / "cache", 1 << 26)
    _render(cache, scad, tmp_path / "a.stl", width=25)
    assert not _render(cache, scad, tmp_path / "b.stl", width=30)
    _design(tmp_path, height=4)  # the included file changed, the main one did not
    assert not _render(cache, scad, tmp_path / "c.stl", width=25)
    assert cache.renders == 3


def test_the_openscad_version_is_part_of_the_key() -> None:
    files = [("part.scad", "ab" * 32)]
    assert render_key(files, {"w": 1.0}, "OpenSCAD version 2021.01") != render_key(
        files, {"w": 1.0}, "OpenSCAD version 2025.01")
    assert render_key(files, {"w": 1.0}, "v") != render_key(files, {"w": "1.0"}, "v")


def test_a_refused_parameter_renders_nothing_and_stores_nothing(tmp_path: Path) -> None:
    cache = RenderCache(tmp_path / "cache", 1 << 26)
    with pytest.raises(ParameterError):
        _render(cache, _design(tmp_path), tmp_path / "x.stl", width=1000)
    assert cache.renders == 0 and cache.status()["entries"] == 0


def test_the_cache_stays_within_its_size(tmp_path: Path) -> None:
    scad = _design(tmp_path)
    cache = RenderCache(tmp_path / "cache", 1 << 26)
    _render(cache, scad, tmp_path / "a.stl", width=25)
    one = int(cache.status()["bytes"])
    small = RenderCache(tmp_path / "cache", one)  # room for one entry
    _render(small, scad, tmp_path / "b.stl", width=30)
    assert small.status()["entries"] == 1 and int(small.status()["bytes"]) <= one
    with pytest.raises(CacheError):
        RenderCache(tmp_path / "other", 0)
