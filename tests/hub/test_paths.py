"""hub.paths: revision paths that check out on Linux, macOS and Windows (pure rules)."""

from __future__ import annotations

import pytest

from hub.errors import InvalidArgument
from hub.paths import (
    MAX_COMPONENT_BYTES,
    MAX_DEPTH,
    MAX_PATH_CHARS,
    check_path,
    check_paths,
    fold,
    path_problem,
)


@pytest.mark.parametrize(
    "path",
    ["cube.stl", "parts/base v2.stl", "docs/ÉCROU.md", "a.b.c/d-e_f.3mf", "日本語/部品.stl", ".hidden/x.stl",
     "console/x.stl", "LPT10.stl", "auxiliary.md", "é" * (MAX_COMPONENT_BYTES // 2),
     "/".join(["d"] * (MAX_DEPTH - 1) + ["f.stl"])],
)
def test_portable_paths_pass(path: str) -> None:
    assert path_problem(path) is None
    assert check_path(path) == path


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("", "PATH_EMPTY"),
        ("/etc/passwd", "PATH_ABSOLUTE"),
        ("C:/x.stl", "PATH_ABSOLUTE"),
        ("c:x.stl", "PATH_ABSOLUTE"),
        ("a/../b.stl", "PATH_PARENT_REFERENCE"),
        ("..", "PATH_PARENT_REFERENCE"),
        ("a//b.stl", "PATH_EMPTY_COMPONENT"),
        ("./a.stl", "PATH_EMPTY_COMPONENT"),
        ("a/", "PATH_EMPTY_COMPONENT"),
        ("dir\\cube.stl", "PATH_BACKSLASH"),
        ("nul\x00.stl", "PATH_CONTROL_CHARACTER"),
        ("line\nbreak.stl", "PATH_CONTROL_CHARACTER"),
        ("del\x7f.stl", "PATH_CONTROL_CHARACTER"),
        ("c1\x85.stl", "PATH_CONTROL_CHARACTER"),
        ("evil\u202egnp.stl", "PATH_CONTROL_CHARACTER"),  # right-to-left override
        ("iso\u2066late.stl", "PATH_CONTROL_CHARACTER"),
        ("zero\u200bwidth.stl", "PATH_CONTROL_CHARACTER"),
        ("bom\ufeff.stl", "PATH_CONTROL_CHARACTER"),
        ("CON", "PATH_RESERVED_NAME"),
        ("con.stl", "PATH_RESERVED_NAME"),
        ("parts/Nul.tar.gz", "PATH_RESERVED_NAME"),
        ("aux .stl", "PATH_RESERVED_NAME"),
        ("COM1", "PATH_RESERVED_NAME"),
        ("lpt9.txt", "PATH_RESERVED_NAME"),
        ("com¹.txt", "PATH_RESERVED_NAME"),
        ("CONIN$", "PATH_RESERVED_NAME"),
        ("prn/x.stl", "PATH_RESERVED_NAME"),
        ("con.d/x.stl", "PATH_RESERVED_NAME"),
        ("COM0.txt", "PATH_RESERVED_NAME"),  # reserved on recent Windows too
        ("trailing.", "PATH_TRAILING_DOT_OR_SPACE"),
        ("trailing ", "PATH_TRAILING_DOT_OR_SPACE"),
        ("dir./x.stl", "PATH_TRAILING_DOT_OR_SPACE"),
        ("what?.stl", "PATH_WINDOWS_FORBIDDEN_CHARACTER"),
        ("ab:c.stl", "PATH_WINDOWS_FORBIDDEN_CHARACTER"),
        ('say "hi".md', "PATH_WINDOWS_FORBIDDEN_CHARACTER"),
        ("pipe|x", "PATH_WINDOWS_FORBIDDEN_CHARACTER"),
        ("é" * 128, "PATH_COMPONENT_TOO_LONG"),  # 128 characters, 256 bytes
        ("/".join(["d"] * MAX_DEPTH + ["f"]), "PATH_TOO_DEEP"),
        ("a/" * (MAX_PATH_CHARS // 2) + "x", "PATH_TOO_LONG"),
    ],
)
def test_each_rule_names_the_path(path: str, rule: str) -> None:
    problem = path_problem(path)
    assert problem is not None and problem.rule == rule, problem
    with pytest.raises(InvalidArgument) as info:
        check_path(path, "files[0].path")
    assert info.value.reason == rule and info.value.field == "files[0].path"
    assert repr(path)[:40] in info.value.message or path == ""


@pytest.mark.parametrize("value", [None, 3, b"bytes.stl", ["a"]])
def test_non_text_is_refused(value: object) -> None:
    assert path_problem(value).rule == "PATH_NOT_TEXT"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("paths", "rule", "index"),
    [
        (["a.stl", "a.stl"], "PATH_DUPLICATE", 1),
        (["Cube.STL", "cube.stl"], "PATH_CASE_COLLISION", 1),
        (["caf\u00e9.stl", "cafe\u0301.stl"], "PATH_CASE_COLLISION", 1),  # NFC vs NFD
        (["STRASSE.md", "straße.md"], "PATH_CASE_COLLISION", 1),  # full case folding
        (["docs", "docs/readme.md"], "PATH_FILE_AND_FOLDER", 1),
        (["docs/readme.md", "DOCS"], "PATH_FILE_AND_FOLDER", 0),
        (["Docs/a.md", "docs/b.md"], "PATH_CASE_COLLISION", 1),
        (["x.stl", "SPIME.TOML"], "PATH_RESERVED_NAME", 1),
        ([".spime/base"], "PATH_RESERVED_NAME", 0),
    ],
)
def test_set_rules(paths: list[str], rule: str, index: int) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_paths(paths)
    assert info.value.reason == rule and info.value.field == f"files[{index}].path", info.value.message


def test_a_portable_set_passes_and_fold_is_canonical_caseless() -> None:
    paths = ["parts/a.stl", "parts/b.stl", "docs/readme.md", "café.md"]
    assert check_paths(paths) == tuple(paths)
    assert fold("CAFE\u0301") == fold("café") == "café"
