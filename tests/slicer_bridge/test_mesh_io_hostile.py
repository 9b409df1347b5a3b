"""Hostile mesh files end in the module's own errors, with bounded memory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from slicer_bridge.mesh_io import (
    ArchiveRefused,
    InvalidGeometry,
    LoadLimits,
    MeshError,
    MeshFormatError,
    MeshTooLarge,
    load_mesh,
)

NS = 'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"'
TRIANGLE = ('<vertices><vertex x="0" y="0" z="0"/><vertex x="1" y="0" z="0"/>'
            '<vertex x="0" y="1" z="0"/></vertices><triangles><triangle v1="0" v2="1" v3="2"/>'
            "</triangles>")


def three_mf(path: Path, model: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("3D/3dmodel.model", model)
    return path


def model(objects: str, build: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><model unit="millimeter" {NS}>'
            f"<resources>{objects}</resources><build>{build}</build></model>").encode()


# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (the parent's peak).
_MEASURE = """
import sys
from slicer_bridge.mesh_io import LoadLimits, MeshError, load_mesh
def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
limits = LoadLimits(max_triangles=int(sys.argv[2]), max_compression_ratio=1e9)
before = peak_kib()
try:
    load_mesh(sys.argv[1], limits)
except MeshError as exc:
    print(type(exc).__name__, (peak_kib() - before) // 1024)
"""


def peak_growth_mib(path: Path, max_triangles: int = 5_000_000) -> tuple[str, int]:
    """(error class, peak memory growth in MiB) of loading ``path`` in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(max_triangles)],
                          capture_output=True, text=True, check=True, timeout=120)
    error, growth = done.stdout.split()
    return error, int(growth)


@pytest.mark.parametrize(("transform", "where"), [
    ('<item objectid="1" transform="a b c d e f g h i j k l"/>', "build"),
    ('<item objectid="2"/>', "component"),
])
def test_a_3mf_transform_that_is_not_numbers_is_a_format_error(tmp_path: Path, transform: str,
                                                               where: str) -> None:
    objects = f'<object id="1"><mesh>{TRIANGLE}</mesh></object>'
    if where == "component":
        objects += ('<object id="2"><components><component objectid="1" transform="x y"/>'
                    "</components></object>")
    path = three_mf(tmp_path / "t.3mf", model(objects, transform))
    with pytest.raises(MeshFormatError, match="t.3mf: 3MF transform .* is not 12 numbers"):
        load_mesh(path)


def test_an_obj_index_beyond_any_integer_is_a_mesh_error(tmp_path: Path) -> None:
    path = tmp_path / "g.obj"
    path.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999999\n")
    with pytest.raises(InvalidGeometry, match="line 4: face refers to vertex 9999"):
        load_mesh(path)


def test_a_3mf_vertex_beyond_any_integer_is_a_mesh_error(tmp_path: Path) -> None:
    bad = TRIANGLE.replace('v3="2"', 'v3="99999999999999999999999"')
    path = three_mf(tmp_path / "v.3mf", model(f'<object id="1"><mesh>{bad}</mesh></object>',
                                              '<item objectid="1"/>'))
    with pytest.raises(MeshError):
        load_mesh(path)


def test_one_huge_obj_face_is_refused_without_growing_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.obj"
    path.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf " + b"1 2 3 " * 2_000_000 + b"\n")
    limits = LoadLimits(max_triangles=1000)
    with pytest.raises(MeshTooLarge, match="exceeds the limit of 1,000"):
        load_mesh(path, limits)
    # 12 MB of text: the old parser held 6 M corner strings (hundreds of MiB) first.
    error, growth = peak_growth_mib(path, 1000)
    assert error == "MeshTooLarge" and growth < 100, growth


def test_an_ascii_stl_of_only_vertex_lines_is_refused_before_collecting_them(tmp_path: Path
                                                                          ) -> None:
    path = tmp_path / "v.stl"
    path.write_bytes(b"solid x\nfacet normal 0 0 1\n" + b"vertex 1 2 3\n" * 3_000_000
                     + b"endsolid x\n")
    with pytest.raises(MeshFormatError, match="3,000,000 vertex lines for 0 facets"):
        load_mesh(path)
    error, growth = peak_growth_mib(path)
    assert error == "MeshFormatError" and growth < 100, growth


def test_a_3mf_of_millions_of_empty_elements_is_refused_while_parsing(tmp_path: Path) -> None:
    filler = "<a/>" * 4_000_000
    path = three_mf(tmp_path / "a.3mf", model(f'<object id="1"><mesh>{TRIANGLE}</mesh>'
                                              f"</object>{filler}", '<item objectid="1"/>'))
    limits = LoadLimits(max_compression_ratio=1e9)
    with pytest.raises(MeshTooLarge, match="more than 100,0.. elements"):
        load_mesh(path, limits)
    error, growth = peak_growth_mib(path)
    assert error == "MeshTooLarge" and growth < 150, growth


@pytest.mark.parametrize(("encoding", "error"), [
    ("utf-16", ArchiveRefused), ("utf-16-le", MeshFormatError), ("utf-16-be", MeshFormatError),
    ("cp037", MeshFormatError), ("iso-8859-5", ArchiveRefused)])
def test_a_dtd_in_any_encoding_is_refused(tmp_path: Path, encoding: str,
                                          error: type[MeshError]) -> None:
    text = (f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE m [<!ENTITY a "aaaa">'
            f'<!ENTITY b "&a;&a;&a;&a;">]><model unit="millimeter" {NS}><resources/>'
            "<build/>&b;</model>")
    path = three_mf(tmp_path / "d.3mf", text.encode(encoding))
    with pytest.raises(error, match="declares a DTD or entities|malformed"):
        load_mesh(path, LoadLimits(max_compression_ratio=1e9))


def test_a_plain_3mf_still_loads(tmp_path: Path) -> None:
    path = three_mf(tmp_path / "ok.3mf", model(f'<object id="1"><mesh>{TRIANGLE}</mesh></object>',
                                               '<item objectid="1" transform="1 0 0 0 1 0 0 0 1 '
                                               '5 0 0"/>'))
    assert load_mesh(path).vertices[:, 0].max() == 6.0


def _zip_with_model(tmp_path: Path, method: int, name: str = "z.3mf") -> tuple[Path, bytearray]:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("3D/3dmodel.model", model(f'<object id="1"><mesh>{TRIANGLE}</mesh></object>',
                                                   '<item objectid="1"/>') * 4)
    return path, bytearray(path.read_bytes())


def _data_start(raw: bytearray) -> int:
    """Where the first entry's compressed bytes start (after its local header)."""
    return 30 + int.from_bytes(raw[26:28], "little") + int.from_bytes(raw[28:30], "little")


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2])
def test_a_3mf_whose_compressed_data_is_corrupt_is_refused(tmp_path: Path, method: int) -> None:
    """zlib.error and lzma.LZMAError escaped the loader (`spime check` printed a traceback)."""
    path, raw = _zip_with_model(tmp_path, method)
    start = _data_start(raw)
    raw[start + 8:start + 40] = b"\xa5" * 32
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveRefused, match="z.3mf: "):
        load_mesh(path)


def test_a_3mf_entry_marked_encrypted_is_refused(tmp_path: Path) -> None:
    """zipfile raises RuntimeError (a password is required): it escaped the loader."""
    path, raw = _zip_with_model(tmp_path, zipfile.ZIP_DEFLATED)
    raw[6] |= 1  # the local header's flags
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 8] |= 1  # the central directory's flags
    path.write_bytes(bytes(raw))
    with pytest.raises(ArchiveRefused, match="z.3mf: cannot extract"):
        load_mesh(path)


def test_a_ply_count_of_thousands_of_digits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex " + b"9" * 5000 + b"\nproperty float x\nend_header\n")
    with pytest.raises(MeshTooLarge, match="d.ply: the PLY header declares a vertex count of more than 18 digits"):
        load_mesh(path)


def test_an_obj_of_short_lines_is_read_without_a_list_of_them(tmp_path: Path) -> None:
    """One continuation line sends an OBJ to the line parser, which listed every line first: 27 times
    the file in memory (a 256 MB OBJ would need 7 GB)."""
    path = tmp_path / "lines.obj"
    path.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 \\\n3\n" + b"##\n" * 4_000_000 + b"f 1 2 9\n")
    error, growth = peak_growth_mib(path)
    assert error == "InvalidGeometry" and growth < 100, growth  # the list alone was over 300 MiB
