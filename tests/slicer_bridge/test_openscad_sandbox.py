"""OpenSCAD renders only a revision's own files, with limits: escapes are refused first."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from slicer_bridge.base import RenderError
from slicer_bridge.openscad import render_scad
from slicer_bridge.scad_sandbox import (
    SandboxLimits,
    ScadReferenceError,
    check_references,
    references,
    sandbox_argv,
    sandbox_env,
)

CUBE_STL = """solid c
facet normal 0 0 -1
outer loop
vertex 0 0 0
vertex 1 1 0
vertex 1 0 0
endloop
endfacet
endsolid c
"""


def design(tmp_path: Path, main: str, files: dict[str, str] | None = None) -> Path:
    """A revision folder ``tmp_path/rev`` with ``main.scad`` and extra files; a secret beside it."""
    (tmp_path / "secret.scad").write_text("cube(99);\n", encoding="utf-8")
    (tmp_path / "secret.stl").write_text(CUBE_STL, encoding="utf-8")
    root = tmp_path / "rev"
    root.mkdir()
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    scad = root / "main.scad"
    scad.write_text(main, encoding="utf-8")
    return scad


@pytest.mark.parametrize(("main", "files", "reason"), [
    ("include </etc/passwd>\ncube(1);\n", {}, "main.scad line 1: include '/etc/passwd' is an absolute path"),
    ("use <~/lib.scad>\ncube(1);\n", {}, "use '~/lib.scad' is an absolute path"),
    ('cube(1);\nimport("../secret.stl");\n', {}, "line 2: import() '../secret.stl' is outside the design's folder"),
    ("include <../secret.scad>\n", {}, "'../secret.scad' is outside the design's folder"),
    ('surface(file = "/etc/hostname");\n', {}, "surface() '/etc/hostname' is an absolute path"),
    ('import(str("/etc/", "passwd"));\n', {}, "import() names its file with an expression"),
    ('f = "part.stl";\nimport(f);\n', {"part.stl": CUBE_STL}, "line 2: import() names its file with an expression"),
    ('linear_extrude(height = 2, file = "/tmp/x.dxf");\n', {}, "linear_extrude() '/tmp/x.dxf' is an absolute path"),
    ("use <MCAD/boxes.scad>\ncube(1);\n", {}, "is not a file of the design (OpenSCAD would search its library paths)"),
    ("include <lib/a.scad>\n", {"lib/a.scad": "include <../../secret.scad>\n"},
     "lib/a.scad line 1: include '../../secret.scad' is outside the design's folder"),
    ('import("C:/Windows/x.stl");\n', {}, "is an absolute path"),
])
def test_escapes_are_refused_before_rendering(tmp_path: Path, main: str, files: dict[str, str],
                                              reason: str) -> None:
    scad = design(tmp_path, main, files)
    with pytest.raises(ScadReferenceError) as caught:
        asyncio.run(render_scad(scad, {}, 30, tmp_path / "out.stl"))
    assert caught.value.reason.startswith("refused before rendering: ")
    assert reason in caught.value.reason, caught.value.reason
    assert not (tmp_path / "out.stl").exists()


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    scad = design(tmp_path, 'import("part.stl");\n')
    os.symlink(tmp_path / "secret.stl", scad.parent / "part.stl")
    with pytest.raises(ScadReferenceError, match="'part.stl' is or passes through a symbolic link"):
        check_references(scad, scad.parent)


def test_a_revision_staged_as_links_into_a_trusted_blob_store_renders(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "aa11").write_text('use <lib.scad>\nblock(3);\nimport("part.stl");\n', encoding="utf-8")
    (blobs / "bb22").write_text("module block(s) { cube(s); }\n", encoding="utf-8")
    (blobs / "cc33").write_text(CUBE_STL, encoding="utf-8")
    staged = tmp_path / "staged"
    staged.mkdir()
    for name, blob in (("main.scad", "aa11"), ("lib.scad", "bb22"), ("part.stl", "cc33")):
        os.symlink(blobs / blob, staged / name)
    with pytest.raises(ScadReferenceError, match="symbolic link out of the design"):
        check_references(staged / "main.scad", staged)
    out = asyncio.run(render_scad(staged / "main.scad", {}, 60, tmp_path / "out.stl",
                                  trusted_links=(blobs,)))
    assert out.stat().st_size > 0


def test_statements_in_comments_and_strings_are_not_references() -> None:
    source = ('// include </etc/passwd>\n/* use <x.scad>\n import("/y") */\n'
              'echo("import(\\"/z\\")");\nimport(file = "a.stl", convexity = 3);\n')
    assert [(line, what, name) for line, what, name in references(source)] == [
        (5, "import()", "a.stl")]


def test_the_design_renders_from_a_copy_of_just_its_files(tmp_path: Path) -> None:
    scad = design(tmp_path, 'use <lib/shapes.scad>\nblock(4);\ntranslate([10, 0, 0]) import("part.stl");\n',
                  {"lib/shapes.scad": "module block(s) { cube(s); }\n", "part.stl": CUBE_STL,
                   "unused.scad": "cube(1);\n"})
    assert [p.name for p in check_references(scad, scad.parent)] == ["main.scad", "shapes.scad",
                                                                     "part.stl"]
    out = asyncio.run(render_scad(scad, {}, 60, tmp_path / "out.stl"))
    assert out.stat().st_size > 0


def test_the_sandbox_has_no_network_no_library_path_and_its_own_home(tmp_path: Path) -> None:
    argv = sandbox_argv(["openscad", "x.scad"], SandboxLimits(memory_bytes=1 << 30, cpu_s=9.5))
    assert argv[:3] == ["unshare", "--net", "--"]  # the tests run as root, like the node
    assert argv[3:9] == ["prlimit", "--as=1073741824", "--cpu=10", "--fsize=536870912",
                         "--core=0", "--"]
    env = sandbox_env(tmp_path, {"PATH": "/usr/bin", "OPENSCADPATH": "/usr/share/x", "SECRET": "1"})
    assert env["OPENSCADPATH"] == "" and env["HOME"] == str(tmp_path) and "SECRET" not in env


def test_a_design_that_eats_memory_is_stopped_with_a_clear_error(tmp_path: Path) -> None:
    scad = design(tmp_path, "v = [for (i = [0:99999]) [for (j = [0:99999]) j]];\n"
                            "echo(len(v));\ncube(1);\n")
    limits = SandboxLimits(memory_bytes=512 << 20, cpu_s=60)
    with pytest.raises(RenderError, match="ran out of its memory limit of 0.5 GiB"):
        asyncio.run(render_scad(scad, {}, 120, tmp_path / "out.stl", limits=limits))


def test_runaway_recursion_ends_with_openscads_own_error(tmp_path: Path) -> None:
    scad = design(tmp_path, "function f(n) = n == 0 ? 0 : 1 + f(n - 1);\necho(f(100000000));\n"
                            "cube(1);\n")
    with pytest.raises(RenderError, match="Recursion detected calling function 'f'"):
        asyncio.run(render_scad(scad, {}, 60, tmp_path / "out.stl"))
