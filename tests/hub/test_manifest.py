"""hub.manifest: spime.toml parsing, validation and safe paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import InvalidLicense, InvalidManifest
from hub.manifest import Manifest, dump_manifest, missing_files, parse_manifest, safe_relative_path

DESIGNS = Path(__file__).resolve().parents[2] / "designs"

GOOD = '''
name = "cube"
title = "Cube"
description = "A cube."
license = "cc-by-sa-4.0"
licensor = "Ada"
version = "1.2.0"
function = "Calibrate."
tags = ["calibration"]
contributors = ["Ada", "Grace"]
documentation-language = "en"
derivative_of = ["base-cube@0123456789abcdef"]
images = ["img/cube.png"]

[[parts]]
name = "cube"
files = ["cube.stl"]
material = "PLA"
quantity = 2

[openscad]
source = "cube.scad"
parameters = { size = 20, hollow = false, label = "A" }
'''


def _with(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_parses_every_field() -> None:
    m = parse_manifest(GOOD)
    assert isinstance(m, Manifest)
    assert m.name == "cube" and m.license == "CC-BY-SA-4.0"
    assert m.parts[0].quantity == 2 and m.parts[0].files == ("cube.stl",)
    assert m.openscad is not None and dict(m.openscad.parameters)["size"] == 20
    assert m.derivative_of == ("base-cube@0123456789abcdef",)
    assert m.referenced_files() == ("cube.scad", "cube.stl", "img/cube.png")


def test_dump_round_trips_and_to_dict_is_plain() -> None:
    m = parse_manifest(GOOD)
    assert parse_manifest(dump_manifest(m)) == m
    d = m.to_dict()
    assert d["documentation-language"] == "en" and d["parts"][0]["material"] == "PLA"


def test_manifest_is_frozen() -> None:
    m = parse_manifest(GOOD)
    with pytest.raises(AttributeError):
        m.name = "other"  # type: ignore[misc]


def test_formatting_does_not_change_the_dict() -> None:
    reformatted = "\n\n" + GOOD.replace('name = "cube"\ntitle', 'name   =   "cube"\ntitle')
    assert parse_manifest(reformatted).to_dict() == parse_manifest(GOOD).to_dict()


@pytest.mark.parametrize("field", ["name", "title", "license", "licensor", "version",
                                   "function"])
def test_missing_required_field_is_named(field: str) -> None:
    lines = [ln for ln in GOOD.splitlines() if not ln.startswith(f"{field} =")]
    with pytest.raises(InvalidManifest, match=field):
        parse_manifest("\n".join(lines))


@pytest.mark.parametrize(("old", "new", "field"), [
    ('name = "cube"', 'name = "Cube Thing"', "name"),
    ('name = "cube"', "name = 3", "name"),
    ('version = "1.2.0"', 'version = ""', "version"),
    ("quantity = 2", "quantity = 0", "quantity"),
    ("quantity = 2", "quantity = true", "quantity"),
    ('files = ["cube.stl"]', "files = []", "files"),
    ('tags = ["calibration"]', 'tags = "calibration"', "tags"),
    ('derivative_of = ["base-cube@0123456789abcdef"]', 'derivative_of = ["base-cube"]',
     "derivative_of"),
    ('documentation-language = "en"', 'documentation-language = "english language"',
     "documentation-language"),
    ('source = "cube.scad"', 'source = "cube.txt"', "openscad.source"),
    ("size = 20,", "size = [1, 2],", "size"),
    ('title = "Cube"', 'title = "Cube"\ncolour = "red"', "colour"),
    ('material = "PLA"', 'material = "PLA"\ninfill = 20', "infill"),
])
def test_malformed_fields_are_named(old: str, new: str, field: str) -> None:
    with pytest.raises(InvalidManifest, match=field):
        parse_manifest(_with(GOOD, old, new))


def test_parts_must_exist() -> None:
    text = GOOD.split("[[parts]]")[0]
    with pytest.raises(InvalidManifest, match="parts"):
        parse_manifest(text)


def test_malformed_toml() -> None:
    with pytest.raises(InvalidManifest, match="not valid TOML"):
        parse_manifest('name = "cube"\ntitle = ')


@pytest.mark.parametrize("expr", ["CC-BY-FOO-9.0", "MIT AND (", "GPL-3.0-only WITH", ""])
def test_bad_license_expression(expr: str) -> None:
    with pytest.raises((InvalidLicense, InvalidManifest)):
        parse_manifest(_with(GOOD, 'license = "cc-by-sa-4.0"', f'license = "{expr}"'))


def test_license_expression_is_normalised() -> None:
    m = parse_manifest(_with(GOOD, 'license = "cc-by-sa-4.0"',
                             'license = "cc-by-sa-4.0 or gpl-3.0-or-later"'))
    assert m.license == "CC-BY-SA-4.0 OR GPL-3.0-or-later"


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "/etc/passwd", "C:/x.stl",
                                  "a\\b.stl", "a\x00b", "", "a//b", "./a", "a/./b", "a/"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidManifest, match="not allowed"):
        safe_relative_path(path)


@pytest.mark.parametrize("path", ["cube.stl", "meshes/part 1.stl", "a/b/c.scad", "..hidden"])
def test_safe_paths_pass(path: str) -> None:
    assert safe_relative_path(path) == path


def test_unsafe_path_in_manifest() -> None:
    with pytest.raises(InvalidManifest, match=r"\.\."):
        parse_manifest(_with(GOOD, 'files = ["cube.stl"]', 'files = ["../cube.stl"]'))


def test_missing_files() -> None:
    m = parse_manifest(GOOD)
    assert missing_files(m, ["cube.stl", "cube.scad"]) == ("img/cube.png",)


@pytest.mark.parametrize("folder", sorted(p.name for p in DESIGNS.iterdir() if p.is_dir()))
def test_sample_designs_parse_and_name_existing_files(folder: str) -> None:
    text = (DESIGNS / folder / "spime.toml").read_text(encoding="utf-8")
    m = parse_manifest(text)
    assert m.name == folder
    present = [p.relative_to(DESIGNS / folder).as_posix()
               for p in (DESIGNS / folder).rglob("*") if p.is_file()]
    assert missing_files(m, present) == ()
