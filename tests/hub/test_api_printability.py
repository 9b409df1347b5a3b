"""Push-time printability: the hub runs slicer_bridge's check on each pushed mesh and keeps the report."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import trimesh
from spimeforge.v1 import designs_pb2

from tests.hub.harness import InProcessHub, manifest_toml, start_in_process


def _stl(mesh: trimesh.Trimesh) -> bytes:
    buffer = io.BytesIO()
    mesh.export(buffer, file_type="stl")
    return buffer.getvalue()


@pytest.fixture()
def checked_api(tmp_path: Path) -> Iterator[InProcessHub]:
    hub = start_in_process(tmp_path / "data", printability="auto")
    try:
        yield hub
    finally:
        hub.stop()


def test_reports_come_back_with_the_push_and_the_revision(checked_api: InProcessHub) -> None:
    api = checked_api
    good = _stl(trimesh.creation.box(extents=(20, 20, 20)))
    broken_mesh = trimesh.creation.box(extents=(20, 20, 20))
    broken = _stl(trimesh.Trimesh(broken_mesh.vertices, broken_mesh.faces[:-2], process=False))
    files = {"good.stl": good, "broken.stl": broken, "notes.txt": b"not a mesh"}
    manifest = manifest_toml("meshes", files=("good.stl", "broken.stl"))
    pushed = api.push("alice", "meshes", files, manifest=manifest, create=True)
    reports = {r.path: r for r in pushed.reports}
    assert set(reports) == {"good.stl", "broken.stl"}
    assert reports["good.stl"].ok and reports["good.stl"].faces == 12
    assert abs(reports["good.stl"].extents_mm.x - 20) < 1e-6
    assert not reports["broken.stl"].ok
    assert any(f.severity == 3 for f in reports["broken.stl"].findings)
    stored = api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="meshes"), metadata=api.md("carol"))
    assert {r.path: r.ok for r in stored.reports} == {"good.stl": True, "broken.stl": False}
