"""3MF components and build items count their expanded triangles against the limit before expanding."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from slicer_bridge.mesh_io import LoadLimits, MeshFormatError, MeshTooLarge, load_mesh
from slicer_bridge.printability import check_file
from tests.slicer_bridge.test_mesh_io import TETRA_F, TETRA_V, threemf

_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"


def _model(objects: str, items: str) -> str:
    return f'<model unit="millimeter" xmlns="{_NS}"><resources>{objects}</resources><build>{items}</build></model>'


def _tetra(object_id: int) -> str:
    vs = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in TETRA_V)
    ts = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in TETRA_F)
    return f'<object id="{object_id}"><mesh><vertices>{vs}</vertices><triangles>{ts}</triangles></mesh></object>'


def _nested(levels: int, width: int) -> str:
    """Object k+1 holds ``width`` copies of object k: width**levels tetrahedra in a few kB."""
    parts = [_tetra(1)]
    for level in range(2, levels + 2):
        copies = "".join(f'<component objectid="{level - 1}" transform="1 0 0 0 1 0 0 0 1 {i * 20} 0 0"/>'
                         for i in range(width))
        parts.append(f'<object id="{level}"><components>{copies}</components></object>')
    return _model("".join(parts), f'<item objectid="{levels + 1}"/>')


def test_nested_components_are_refused_before_expanding(tmp_path: Path) -> None:
    path = threemf(tmp_path / "bomb.3mf", _nested(levels=12, width=10))  # 4e12 triangles declared
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(MeshTooLarge, match="expands .* to 4,000,000,000,000 triangles"):
        load_mesh(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing was expanded
    report = check_file(path)
    assert not report.ok and "expands" in report.findings[0].message


def test_many_build_items_count_too(tmp_path: Path) -> None:
    items = '<item objectid="1"/>' * 300
    path = threemf(tmp_path / "items.3mf", _model(_tetra(1), items))
    with pytest.raises(MeshTooLarge, match="1,200 triangles"):
        load_mesh(path, LoadLimits(max_triangles=1000))
    assert load_mesh(path).face_count == 1200


def test_expansion_within_the_limit_loads(tmp_path: Path) -> None:
    mesh = load_mesh(threemf(tmp_path / "ok.3mf", _nested(levels=2, width=3)))
    assert mesh.face_count == 4 * 9


def test_cyclic_components_are_refused(tmp_path: Path) -> None:
    objects = ('<object id="1"><components><component objectid="2"/></components></object>'
               '<object id="2"><components><component objectid="1"/></components></object>')
    with pytest.raises(MeshFormatError, match="cyclic"):
        load_mesh(threemf(tmp_path / "cycle.3mf", _model(objects, '<item objectid="1"/>')))
