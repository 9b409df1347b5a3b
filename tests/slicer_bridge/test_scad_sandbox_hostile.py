"""Hostile designs that name a file outside the revision in ways the first checker missed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from slicer_bridge.openscad import parse_parameters, render_scad
from slicer_bridge.scad_sandbox import ScadReferenceError, check_references, references
from tests.slicer_bridge.test_openscad_sandbox import CUBE_STL

SECRET_STL = CUBE_STL.replace("vertex 1 1 0", "vertex 10 10 0")


def design(tmp_path: Path, main: str) -> tuple[Path, str]:
    """A revision ``tmp_path/rev`` with ``main.scad`` and ``part.stl``; the secret's absolute path."""
    secret = tmp_path / "secret.stl"
    secret.write_text(SECRET_STL, encoding="utf-8")
    root = tmp_path / "rev"
    root.mkdir()
    (root / "part.stl").write_text(CUBE_STL, encoding="utf-8")
    scad = root / "main.scad"
    scad.write_text(main.replace("SECRET", str(secret)), encoding="utf-8")
    return scad, str(secret)


@pytest.mark.parametrize(("main", "reason"), [
    ('import_stl("SECRET");\n', "line 1: import_stl() '/"),
    ('import_off("SECRET");\n', "import_off() '/"),
    ('linear_extrude(1) import_dxf("SECRET");\n', "import_dxf() '/"),
    ('import(filename="SECRET");\n', "import() '/"),
    ('import_stl(filename="SECRET");\n', "import_stl() '/"),
    ('surface(filename="SECRET");\n', "surface() '/"),
    ('dxf_linear_extrude("SECRET");\n', "dxf_linear_extrude() '/"),
    ('dxf_rotate_extrude(file="SECRET");\n', "dxf_rotate_extrude() '/"),
    ('linear_extrude("SECRET");\n', "linear_extrude() '/"),
    ('rotate_extrude("SECRET");\n', "rotate_extrude() '/"),
    ('x = dxf_dim(file="SECRET", name="a");\ncube(1);\n', "dxf_dim() '/"),
    ('x = dxf_cross(file="SECRET");\ncube(1);\n', "dxf_cross() '/"),
    ('import("\\x2f\\x2e\\x2e/secret.stl");\n', "is an absolute path"),
    ('import(file="part.stl", file="SECRET");\n', "import() names a file more than once"),
    ('import(file="part.stl", "SECRET");\n', "import() names a file more than once"),
    ('import("part.stl", file="SECRET");\n', "import() names a file more than once"),
    ('import(file="part.stl", filename="SECRET");\n', "import() names a file more than once"),
    ('import(file="part.stl", filename="part.stl");\n', "import() names a file more than once"),
    ('linear_extrude("part.stl", file="part.stl");\n', "names a file more than once"),
    ('h = "SECRET";\nlinear_extrude(h);\n', "line 1: the string '/"),
    ('parts = ["../secret.stl"];\nlinear_extrude(parts[0]);\n', "the string '../secret.stl' is a path out"),
])
def test_every_file_reading_call_and_alias_is_checked(tmp_path: Path, main: str, reason: str) -> None:
    scad, _ = design(tmp_path, main)
    with pytest.raises(ScadReferenceError) as caught:
        check_references(scad, scad.parent)
    assert reason in caught.value.reason, caught.value.reason
    with pytest.raises(ScadReferenceError):
        asyncio.run(render_scad(scad, {}, 30, tmp_path / "out.stl"))
    assert not (tmp_path / "out.stl").exists()


@pytest.mark.parametrize("main", [
    'import(file="part.stl", convexity=3);\n',
    'import_stl("part.stl");\n',
    'import(filename="part.stl");\n',
    "thickness = 2;\nlinear_extrude(thickness) square(3);\n",
    "size = [1, 2, 3];\nlinear_extrude(size.z + 0.01) square(3);\n",
    'linear_extrude(height=2) text("1/2");\n',
])
def test_a_design_using_only_its_own_files_still_renders(tmp_path: Path, main: str) -> None:
    scad, _ = design(tmp_path, main)
    check_references(scad, scad.parent)
    out = asyncio.run(render_scad(scad, {}, 60, tmp_path / "out.stl"))
    assert out.stat().st_size > 0
    assert "vertex 10 10 0" not in out.read_text(encoding="utf-8")


def _square_dxf(side: float) -> str:
    """A DXF drawing of a square (four LINE entities), as OpenSCAD's DXF reader takes it."""
    corners = [(0, 0), (side, 0), (side, side), (0, side)]
    lines = ["0", "SECTION", "2", "ENTITIES"]
    for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True):
        lines += ["0", "LINE", "8", "0", "10", str(x1), "20", str(y1), "11", str(x2), "21", str(y2)]
    return "\n".join([*lines, "0", "ENDSEC", "0", "EOF"]) + "\n"


def test_a_file_name_computed_while_rendering_finds_nothing_outside_the_design(tmp_path: Path) -> None:
    """No reading of the source sees a name spelled with chr() at run time: bubblewrap (installed by
    ops/install.sh) shows OpenSCAD nothing of the node's files but the design's copy."""
    secret = tmp_path / "secret.dxf"
    secret.write_text(_square_dxf(10), encoding="utf-8")
    spelled = ", ".join(f"chr({ord(c)})" for c in str(secret))
    scad, _ = design(tmp_path, f"p = str({spelled});\nlinear_extrude(p);\ncube(1);\n")
    check_references(scad, scad.parent)  # nothing the checker can see
    out = asyncio.run(render_scad(scad, {}, 60, tmp_path / "out.stl"))
    assert "vertex 10 10" not in out.read_text(encoding="utf-8")  # only the 1 mm cube


# -- sources shaped to make a reader backtrack: each, at the 2 MB a file may have, is read in one pass ---------
# (pattern-based readers took minutes to hours on these, holding the hub's and the node's event loop)

MAX_SOURCE = 2_000_000


def _fill(unit: str, tail: str = "") -> str:
    return unit * ((MAX_SOURCE - len(tail)) // len(unit)) + tail


@pytest.mark.parametrize(("name", "source", "found"), [
    ("unclosed includes", _fill("include<"), []),
    ("unclosed file calls", _fill('import("part.stl",'), [(1, "import()", "part.stl")]),
    ("nested file calls", _fill("import("), [(1, "import()", None)]),
    ("escaped quotes, unclosed", '"' + _fill('\\"'), []),
    ("a reference on every line", _fill('import("part.stl");\n'), None),
])
def test_a_source_built_to_backtrack_is_read_in_one_pass(name: str, source: str,
                                                         found: list[tuple[int, str, str]] | None) -> None:
    refs = list(references(source))
    if found is None:  # every line's reference, numbered
        assert len(refs) == source.count("\n") and refs[-1][0] == len(refs)
    else:
        assert refs[:1] == found, name


def test_a_parameter_line_of_blanks_and_escapes_is_read_in_one_pass() -> None:
    schema = parse_parameters("size = 10" + " " * MAX_SOURCE + "1;\n" + 'label = "' + '\\"' * (MAX_SOURCE // 2) + '";\n'
                              + 'name = "a//b"; // [a//b, c]\n')
    assert [p.name for p in schema.parameters] == ["label", "name"]
    assert schema.parameters[1].default == "a//b"
