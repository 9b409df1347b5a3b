"""Mesh loading: every format, and every bad input of issue 4 is a clear MeshError."""

from __future__ import annotations

import io
import resource
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from slicer_bridge.base import SlicerBridgeError
from slicer_bridge.mesh_io import (
    ArchiveRefused,
    EmptyMesh,
    InvalidGeometry,
    LoadLimits,
    MeshError,
    MeshFormatError,
    MeshTooLarge,
    UnsupportedFormat,
    load_mesh,
    write_binary_stl,
)
from slicer_bridge.printability import Severity, check_file

TETRA_V = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=np.float64)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)


def stl(path: Path, vertices=TETRA_V, faces=TETRA_F) -> Path:
    write_binary_stl(path, vertices, faces)
    return path


def ascii_stl(vertices=TETRA_V, faces=TETRA_F, name: str = "t") -> str:
    lines = [f"solid {name}"]
    for face in faces:
        lines += ["  facet normal 0 0 0", "    outer loop"]
        lines += [f"      vertex {x:.6e} {y:.6e} {z:.6e}" for x, y, z in vertices[face]]
        lines += ["    endloop", "  endfacet"]
    return "\n".join(lines + [f"endsolid {name}", ""])


def model_xml(vertices=TETRA_V, faces=TETRA_F, unit: str = "millimeter",
              transform: str = "") -> str:
    vs = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in vertices)
    ts = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in faces)
    item = f'<item objectid="1"{f" transform={chr(34)}{transform}{chr(34)}" if transform else ""}/>'
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<model unit="{unit}" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
            f'<resources><object id="1" type="model"><mesh><vertices>{vs}</vertices>'
            f'<triangles>{ts}</triangles></mesh></object></resources>'
            f'<build>{item}</build></model>')


def threemf(path: Path, xml: str, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("3D/3dmodel.model", xml)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


# --- good files ------------------------------------------------------------------------

def test_binary_stl_roundtrip(tmp_path: Path) -> None:
    mesh = load_mesh(stl(tmp_path / "t.stl"))
    assert mesh.format == "stl-binary"
    assert mesh.face_count == 4 and mesh.vertices.shape == (12, 3)
    faces = mesh.face_indices()
    assert np.allclose(mesh.vertices[faces].reshape(-1, 3), TETRA_V[TETRA_F].reshape(-1, 3))


def test_binary_stl_whose_header_starts_with_solid(tmp_path: Path) -> None:
    path = stl(tmp_path / "t.stl")
    data = bytearray(path.read_bytes())
    data[:10] = b"solid fake"
    path.write_bytes(bytes(data))
    assert load_mesh(path).format == "stl-binary"


def test_binary_stl_with_solid_header_and_trailing_bytes(tmp_path: Path) -> None:
    path = stl(tmp_path / "t.stl")
    data = bytearray(path.read_bytes())
    data[:10] = b"solid fake"
    path.write_bytes(bytes(data) + b"\0" * 7)
    mesh = load_mesh(path)
    assert mesh.format == "stl-binary" and mesh.face_count == 4
    assert any("ignored 7 bytes" in n for n in mesh.notes)


def test_ascii_stl(tmp_path: Path) -> None:
    path = tmp_path / "t.stl"
    path.write_text(ascii_stl())
    mesh = load_mesh(path)
    assert mesh.format == "stl-ascii"
    assert mesh.face_indices().shape == (4, 3)
    assert check_file(path).ok


def test_obj_with_polygons_slashes_and_negative_indices(tmp_path: Path) -> None:
    path = tmp_path / "cube.obj"
    path.write_text(
        "# unit cube, quads\n"
        + "".join(f"v {x} {y} {z}\n" for x in (0, 10) for y in (0, 10) for z in (0, 10))
        + "vt 0 0\nvn 0 0 1\n"
        + "f 1/1/1 2/1/1 4/1/1 3/1/1\nf 5 7 8 6\nf 1 5 6 2\nf 3 4 8 7\nf 1 3 7 5\n"
        + "f -7 -3 -1 -5\n")
    mesh = load_mesh(path)
    assert mesh.faces.shape == (12, 3)
    assert any("triangulated 6 polygons" in n for n in mesh.notes)
    report = check_file(path)
    assert report.volume_mm3 == pytest.approx(1000) or report.volume_mm3 == pytest.approx(-1000)


def test_obj_triangles_fast_and_line_parsers_agree(tmp_path: Path) -> None:
    body = "".join(f"v {x} {y} {z}\n" for x, y, z in TETRA_V)
    triangles = "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in TETRA_F)
    fast = tmp_path / "fast.obj"
    fast.write_text("# triangles only\nvn 0 0 1\n" + body + triangles.replace("\n", "\r\n"))
    slow = tmp_path / "slow.obj"  # a negative index sends it down the line-by-line path
    slow.write_text(body + triangles.replace("f 2 3 4", "f -3 -2 -1"))
    a, b = load_mesh(fast), load_mesh(slow)
    assert np.array_equal(a.faces, b.faces) and np.array_equal(a.faces, TETRA_F)
    assert np.allclose(a.vertices, b.vertices)


def test_obj_faces_may_refer_to_vertices_defined_later(tmp_path: Path) -> None:
    path = tmp_path / "later.obj"
    path.write_text("f 1 2 3\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 3 2 4\nv 0 0 1\n")
    assert load_mesh(path).face_indices().shape == (3, 3)


def test_3mf_with_unit_and_transform(tmp_path: Path) -> None:
    path = threemf(tmp_path / "t.3mf", model_xml(unit="inch", transform="1 0 0 0 1 0 0 0 1 5 0 0"))
    mesh = load_mesh(path)
    assert mesh.format == "3mf" and mesh.unit_hint == "inch"
    assert mesh.vertices[:, 0].min() == pytest.approx(5 * 25.4)
    assert mesh.vertices[:, 0].max() == pytest.approx(15 * 25.4)
    assert any("inch" in n for n in mesh.notes)


def test_3mf_components(tmp_path: Path) -> None:
    vs = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in TETRA_V)
    ts = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in TETRA_F)
    xml = ('<model unit="millimeter" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
           f'<resources><object id="1"><mesh><vertices>{vs}</vertices><triangles>{ts}</triangles>'
           '</mesh></object><object id="2"><components><component objectid="1"/>'
           '<component objectid="1" transform="1 0 0 0 1 0 0 0 1 20 0 0"/></components></object>'
           '</resources><build><item objectid="2"/></build></model>')
    mesh = load_mesh(threemf(tmp_path / "c.3mf", xml))
    assert mesh.faces.shape == (8, 3)
    assert mesh.vertices[:, 0].max() == pytest.approx(30)
    assert check_file(tmp_path / "c.3mf").bodies == 2


def test_ply(tmp_path: Path) -> None:
    path = tmp_path / "t.ply"
    header = ("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
              "property float z\nelement face 4\nproperty list uchar int vertex_indices\n"
              "end_header\n")
    body = "".join(f"{x} {y} {z}\n" for x, y, z in TETRA_V)
    body += "".join(f"3 {a} {b} {c}\n" for a, b, c in TETRA_F)
    path.write_text(header + body)
    mesh = load_mesh(path)
    assert mesh.faces.shape == (4, 3) and mesh.format == "ply"


def test_errors_are_bridge_errors() -> None:
    assert issubclass(MeshError, SlicerBridgeError)
    assert not MeshError.retryable


# --- bad input: each a clear error ----------------------------------------------------------

def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.stl"
    path.write_bytes(b"")
    with pytest.raises(EmptyMesh, match="empty"):
        load_mesh(path)
    report = check_file(path)
    assert not report.ok and report.codes() == {"empty"}


def test_ascii_stl_without_facets(tmp_path: Path) -> None:
    path = tmp_path / "none.stl"
    path.write_text("solid nothing\nendsolid nothing\n")
    with pytest.raises(EmptyMesh, match="no triangles"):
        load_mesh(path)


def test_truncated_binary_stl(tmp_path: Path) -> None:
    path = stl(tmp_path / "cut.stl")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(MeshFormatError, match="truncated"):
        load_mesh(path)


def test_shorter_than_a_header(tmp_path: Path) -> None:
    path = tmp_path / "tiny.stl"
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(MeshFormatError, match="shorter than a binary STL header"):
        load_mesh(path)


def test_header_claims_more_triangles_than_the_file_holds(tmp_path: Path) -> None:
    path = stl(tmp_path / "liar.stl")
    data = bytearray(path.read_bytes())
    data[80:84] = struct.pack("<I", 1000)
    path.write_bytes(bytes(data))
    with pytest.raises(MeshFormatError, match=r"claims 1,000 triangles.*room for 4"):
        load_mesh(path)
    assert check_file(path).codes() == {"unreadable"}


def test_truncated_ascii_stl(tmp_path: Path) -> None:
    path = tmp_path / "cut.stl"
    text = ascii_stl()
    path.write_text(text[: text.rindex("vertex")])
    with pytest.raises(MeshFormatError, match="truncated"):
        load_mesh(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vertices_in_binary_stl(tmp_path: Path, bad: float) -> None:
    vertices = TETRA_V.copy()
    vertices[2, 1] = bad
    path = stl(tmp_path / "nan.stl", vertices)
    with pytest.raises(InvalidGeometry, match="NaN or infinite"):
        load_mesh(path)
    assert check_file(path).codes() == {"invalid_geometry"}


def test_absurd_coordinates(tmp_path: Path) -> None:
    path = tmp_path / "far.obj"
    path.write_text("v 0 0 0\nv 1e30 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(InvalidGeometry, match="beyond"):
        load_mesh(path)


def test_non_finite_vertices_in_text_formats(tmp_path: Path) -> None:
    obj = tmp_path / "inf.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 inf 0\nf 1 2 3\n")
    with pytest.raises(InvalidGeometry, match="NaN or infinite"):
        load_mesh(obj)
    ascii_path = tmp_path / "nan.stl"
    ascii_path.write_text(ascii_stl().replace("1.000000e+01", "nan", 1))
    with pytest.raises(InvalidGeometry):
        load_mesh(ascii_path)


def test_3mf_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "fake.3mf"
    path.write_text(model_xml())
    with pytest.raises(ArchiveRefused, match="not one"):
        load_mesh(path)
    assert check_file(path).codes() == {"archive_refused"}


def test_3mf_zip_bomb_is_refused_by_ratio_before_extraction(tmp_path: Path) -> None:
    path = tmp_path / "bomb.3mf"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3D/3dmodel.model", model_xml())
        archive.writestr("Metadata/padding.bin", b"\0" * (64 << 20))
    with pytest.raises(ArchiveRefused, match="zip bomb"):
        load_mesh(path)
    assert path.stat().st_size < 1 << 20


def test_3mf_refused_by_declared_total_size(tmp_path: Path) -> None:
    path = threemf(tmp_path / "big.3mf", model_xml(), {"Metadata/x.bin": bytes(range(256)) * 8000})
    with pytest.raises(ArchiveRefused, match="declares .* uncompressed"):
        load_mesh(path, LoadLimits(max_archive_bytes=1 << 20))


def test_3mf_whose_entry_lies_about_its_size(tmp_path: Path) -> None:
    path = threemf(tmp_path / "lie.3mf", model_xml())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        size = archive.getinfo("3D/3dmodel.model").file_size
    # The central directory names the model last; its header starts 46 bytes before
    # the name and holds the uncompressed size at offset 24.
    header = data.rindex(b"3D/3dmodel.model") - 46
    struct.pack_into("<I", data, header + 24, size // 2)
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveRefused):
        load_mesh(path)


def test_3mf_without_a_model(tmp_path: Path) -> None:
    path = tmp_path / "nomodel.3mf"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(MeshFormatError, match="no 3D model"):
        load_mesh(path)


def test_3mf_with_entities_is_refused(tmp_path: Path) -> None:
    xml = '<!DOCTYPE m [<!ENTITY a "aaaa">]>' + model_xml()
    with pytest.raises(ArchiveRefused, match="DTD"):
        load_mesh(threemf(tmp_path / "dtd.3mf", xml))


def test_3mf_with_bad_triangle_index(tmp_path: Path) -> None:
    faces = TETRA_F.copy()
    faces[0, 0] = 9
    with pytest.raises(InvalidGeometry, match="does not exist"):
        load_mesh(threemf(tmp_path / "idx.3mf", model_xml(faces=faces)))


def test_3mf_with_malformed_xml(tmp_path: Path) -> None:
    with pytest.raises(MeshFormatError, match="malformed"):
        load_mesh(threemf(tmp_path / "xml.3mf", model_xml()[:-20]))


@pytest.mark.parametrize("face,match", [
    ("f 1 2 9", "vertex 9"), ("f 1 2 -9", "vertex -9"), ("f 0 1 2", "vertex 0"),
])
def test_obj_with_out_of_range_indices(tmp_path: Path, face: str, match: str) -> None:
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n" + face + "\n")
    with pytest.raises(InvalidGeometry, match=rf"line 5: face refers to {match}"):
        load_mesh(path)
    assert check_file(path).codes() == {"invalid_geometry"}


def test_obj_with_garbage_index(tmp_path: Path) -> None:
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n")
    with pytest.raises(MeshFormatError, match="line 4"):
        load_mesh(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "model.step"
    path.write_text("ISO-10303-21;")
    with pytest.raises(UnsupportedFormat, match="STL, OBJ, PLY or 3MF"):
        load_mesh(path)


def test_missing_file_is_a_mesh_error(tmp_path: Path) -> None:
    with pytest.raises(MeshFormatError, match="cannot read"):
        load_mesh(tmp_path / "missing.stl")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_ten_million_triangle_header_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge_header.stl"
    path.write_bytes(b"\0" * 80 + struct.pack("<I", 10_000_000) + b"\0" * 100)
    with pytest.raises(MeshTooLarge, match="10,000,000 triangles exceeds the limit"):
        load_mesh(path)


def test_ten_million_triangle_file_is_refused_fast_without_loading(tmp_path: Path) -> None:
    path = tmp_path / "huge.stl"
    with path.open("wb") as out:
        out.write(b"\0" * 80 + struct.pack("<I", 10_000_000))
        out.truncate(84 + 50 * 10_000_000)  # sparse: 500 MB that take no disk
    before = _peak_rss_mb()
    with pytest.raises(MeshTooLarge, match="decimate"):
        load_mesh(path)
    report = check_file(path)
    assert _peak_rss_mb() - before < 50
    assert report.codes(Severity.ERROR) == {"too_large"}


def test_file_size_limit(tmp_path: Path) -> None:
    path = stl(tmp_path / "t.stl")
    with pytest.raises(MeshTooLarge, match="bytes exceeds the limit"):
        load_mesh(path, LoadLimits(max_file_bytes=100))


def test_triangle_limit_on_text_formats(tmp_path: Path) -> None:
    small = LoadLimits(max_triangles=3)
    ascii_path = tmp_path / "a.stl"
    ascii_path.write_text(ascii_stl())
    obj = tmp_path / "a.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n" + "f 1 2 3\n" * 4)
    ply = tmp_path / "a.ply"
    ply.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                   "element face 99999999\nproperty list uchar int vertex_indices\nend_header\n")
    for path in (ascii_path, obj):
        with pytest.raises(MeshTooLarge):
            load_mesh(path, small)
    with pytest.raises(MeshTooLarge, match="99,999,999"):
        load_mesh(ply)
    with pytest.raises(MeshTooLarge):
        load_mesh(threemf(tmp_path / "a.3mf", model_xml()), small)


def test_text_size_limit(tmp_path: Path) -> None:
    small = LoadLimits(max_text_bytes=200)
    ascii_path = tmp_path / "a.stl"
    ascii_path.write_text(ascii_stl())
    obj = tmp_path / "a.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n" * 20 + "f 1 2 3\n")
    for path in (ascii_path, obj, threemf(tmp_path / "a.3mf", model_xml())):
        with pytest.raises(MeshTooLarge, match="text mesh formats"):
            load_mesh(path, small)
    assert load_mesh(stl(tmp_path / "b.stl"), small).face_count == 4


def test_corrupt_ply(tmp_path: Path) -> None:
    path = tmp_path / "bad.ply"
    path.write_bytes(b"not a ply at all")
    with pytest.raises(MeshFormatError, match="not a PLY"):
        load_mesh(path)


def test_exported_members() -> None:
    import slicer_bridge.mesh_io as module

    assert sorted(module.__all__) == sorted([
        "ArchiveRefused", "EmptyMesh", "InvalidGeometry", "LoadLimits", "LoadedMesh", "MeshError",
        "MeshFormatError", "MeshTooLarge", "UnsupportedFormat", "load_mesh",
        "read_binary_stl_header", "write_binary_stl"])
