"""OpenSCAD customizer parameters: parsing, validation and rendering with the real openscad."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import trimesh

from slicer_bridge.base import ParameterError, RenderError, ToolNotFound
from slicer_bridge.openscad import (
    Choice,
    ParamKind,
    format_value,
    parse_parameters,
    render_argv,
    render_scad,
    validate,
)

SCAD = Path(__file__).resolve().parent.parent / "data" / "scad"
SCHEMA = parse_parameters((SCAD / "customizer.scad").read_text())


def _param(name: str):
    param = SCHEMA.get(name)
    assert param is not None, name
    return param


# ------------------------------------------------------------------ parsing


def test_parameters_in_file_order_up_to_the_first_module() -> None:
    names = [p.name for p in SCHEMA.parameters]
    assert names == ["width", "wall", "depth", "height", "shape", "grip", "lid", "label",
                     "note", "corners", "$fn", "secret"]


def test_slider_range_and_description_and_group() -> None:
    width = _param("width")
    assert (width.kind, width.default, width.minimum, width.maximum, width.step) == (
        ParamKind.NUMBER, 20, 10.0, 50.0, None)
    assert width.description == "Outer width of the box"
    assert width.group == "Size"
    assert not width.hidden


def test_only_ascii_digits_make_numbers_as_in_openscad() -> None:
    """float() reads Arabic-Indic "١٠" as 10; OpenSCAD reads no number there, so neither does the schema."""
    schema = parse_parameters("w = 20; // [\u0661\u0660:\u0665\u0660]\nn = \u0661\u0662;\nmodule m() {}\n")
    w = schema.get("w")
    assert w is not None and (w.minimum, w.maximum) == (None, None)
    assert schema.get("n") is None  # not a literal the customizer shows


def test_step_slider_and_max_only_slider_and_plain_number() -> None:
    wall = _param("wall")
    assert (wall.default, wall.minimum, wall.step, wall.maximum) == (1.2, 0.8, 0.4, 2.4)
    depth = _param("depth")
    assert (depth.minimum, depth.maximum) == (0.0, 40.0)
    height = _param("height")
    assert (height.minimum, height.maximum, height.choices, height.description) == (
        None, None, (), "")


def test_choices_labelled_choices_bool_string_vector() -> None:
    assert _param("shape").choices == (Choice("square", "square"), Choice("round", "round"))
    assert _param("grip").choices == (Choice(10.0, "Small"), Choice(20.0, "Large"))
    assert _param("grip").group == "Style"
    assert (_param("lid").kind, _param("lid").default) == (ParamKind.BOOL, True)
    label = _param("label")
    assert (label.kind, label.default, label.max_length) == (ParamKind.STRING, "hi", 8)
    assert _param("note").default == "a // b"
    assert [c.value for c in _param("note").choices] == ["a // b", "plain"]
    corners = _param("corners")
    assert (corners.kind, corners.default, corners.maximum) == (
        ParamKind.VECTOR, (1.0, 2.0, 3.0), 5.0)


def test_hidden_group_and_expressions() -> None:
    assert _param("secret").hidden and _param("$fn").hidden
    assert SCHEMA.get("derived") is None  # an expression, not a literal
    assert SCHEMA.get("inner") is None and SCHEMA.get("after_module") is None
    assert "secret" not in [p.name for p in SCHEMA.visible()]


def test_parse_handles_block_comments_and_nested_braces() -> None:
    source = (
        "/* a = 1; // [0:2] */\n"
        "b = 2; // [0:5]\n"
        "if (true) {\n  c = 3; // [0:9]\n}\n"
        "d = -1.5e1; // [-20:0]\n"
    )
    schema = parse_parameters(source)
    assert [p.name for p in schema.parameters] == ["b", "d"]
    assert schema.get("d").default == -15.0  # type: ignore[union-attr]


# --------------------------------------------------------------- validation


def test_valid_values_come_back_normalised() -> None:
    values = validate(SCHEMA, {"width": 30, "wall": 2.0, "shape": "round", "grip": 20,
                               "lid": False, "label": "box", "corners": [0, 5, 2.5]})
    assert values == {"corners": (0, 5, 2.5), "grip": 20, "label": "box", "lid": False,
                      "shape": "round", "wall": 2.0, "width": 30}
    assert list(values) == sorted(values)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"width": 60}, r"'width': 60 is out of range; expected a number from 10 to 50"),
        ({"width": 9.99}, r"'width'.*from 10 to 50"),
        ({"wall": 1.0}, r"'wall': 1.0 is off the step; expected .* from 0.8 to 2.4 in steps of 0.4"),
        ({"width": "30"}, r"'width': '30' is not a number"),
        ({"width": True}, r"'width': True is not a number"),
        ({"width": float("nan")}, r"'width': nan is not finite"),
        ({"shape": "hexagon"}, r"'shape': 'hexagon' is not allowed; expected one of 'square', 'round'"),
        ({"grip": 15}, r"'grip': 15 is not allowed; expected one of 10.0, 20.0"),
        ({"lid": 1}, r"'lid': 1 is not true or false"),
        ({"label": "much too long"}, r"'label': 13 characters is too long; .*at most 8"),
        ({"label": 5}, r"'label': 5 is not a string"),
        ({"label": "a\x00b"}, r"'label': contains control characters"),  # ValueError at `openscad -D` on a node
        ({"label": "a\nb"}, r"'label': contains control characters"),
        ({"corners": [1, 2]}, r"'corners'.*not a list of 3 numbers"),
        ({"corners": [1, 2, 9]}, r"'corners': 9 is out of range"),
        ({"secret": 4}, r"'secret': the design has no such parameter; it has: width, wall"),
        ({"colour": "red"}, r"'colour': the design has no such parameter"),
    ],
)
def test_bad_values_name_the_parameter_and_what_is_allowed(values: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        validate(SCHEMA, values)
    assert info.value.parameter == next(iter(values))


def test_openscad_literals_are_escaped() -> None:
    assert format_value(True) == "true"
    assert format_value(3) == "3"
    assert format_value(0.1) == "0.1"
    assert format_value((1.0, 2.5)) == "[1.0, 2.5]"
    assert format_value('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    argv = render_argv("openscad", Path("/d/x.scad"), Path("/o/x.stl"), {"w": 2, "s": "q"})
    assert argv == ["openscad", "-o", "/o/x.stl", "-D", 's="q"', "-D", "w=2", "/d/x.scad"]


# ---------------------------------------------------------------- rendering


def test_render_applies_the_parameters(tmp_path: Path) -> None:
    out = asyncio.run(render_scad(SCAD / "customizer.scad", {"width": 40, "lid": False}, 60,
                                  tmp_path / "box.stl"))
    mesh = trimesh.load(out, force="mesh")
    assert np.allclose(mesh.extents, [40, 15, 10])
    default = asyncio.run(render_scad(SCAD / "customizer.scad", {}, 60, tmp_path / "d.stl"))
    assert np.allclose(trimesh.load(default, force="mesh").extents, [20, 15, 10])


def test_render_round_choice_takes_the_other_branch(tmp_path: Path) -> None:
    out = asyncio.run(render_scad(SCAD / "customizer.scad", {"shape": "round", "width": 30},
                                  60, tmp_path / "round.stl"))
    assert np.allclose(trimesh.load(out, force="mesh").extents, [30, 30, 10], atol=0.2)


def test_out_of_range_parameter_is_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="'width'.*from 10 to 50"):
        asyncio.run(render_scad(SCAD / "customizer.scad", {"width": 500}, 60, tmp_path / "x.stl"))
    assert not (tmp_path / "x.stl").exists()


def test_syntax_error_returns_openscads_message(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as info:
        asyncio.run(render_scad(SCAD / "syntax_error.scad", {}, 60, tmp_path / "x.stl"))
    err = info.value
    assert "ERROR: Parser error" in err.reason and "line 2" in err.reason
    assert err.returncode == 1 and "openscad" in str(err) and "ERROR: Parser error" in err.stderr
    assert not err.retryable


def test_empty_design_is_a_render_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="top level object is empty"):
        asyncio.run(render_scad(SCAD / "empty.scad", {"size": 3}, 60, tmp_path / "x.stl"))


def test_design_that_loops_forever_is_killed_at_the_limit(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="killed at the time limit of 1 s") as info:
        asyncio.run(render_scad(SCAD / "loops_forever.scad", {}, 1.0, tmp_path / "x.stl"))
    assert info.value.timed_out and info.value.returncode is None


def test_missing_design_and_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="cannot read"):
        asyncio.run(render_scad(tmp_path / "nope.scad", {}, 10))
    with pytest.raises(ToolNotFound, match="ops/install.sh"):
        asyncio.run(render_scad(SCAD / "empty.scad", {}, 10, tmp_path / "x.stl",
                                binary="openscad-not-installed"))


# ------------------------------------------------ the project's own designs

DESIGNS = sorted((Path(__file__).resolve().parents[2] / "designs").glob("*/*.scad"))


def test_trailing_text_after_the_widget_is_the_description() -> None:
    schema = parse_parameters("lip_h = 5; // [3:10] height of the lip\nw = 2; // just words\n")
    lip = schema.get("lip_h")
    assert lip is not None and (lip.minimum, lip.maximum) == (3.0, 10.0)
    assert lip.description == "height of the lip"
    assert schema.get("w").description == "just words"  # type: ignore[union-attr]


@pytest.mark.parametrize("scad", DESIGNS, ids=[p.parent.name for p in DESIGNS])
def test_shipped_design_renders_with_its_defaults(scad: Path, tmp_path: Path) -> None:
    schema = parse_parameters(scad.read_text())
    assert schema.visible(), f"{scad.name} declares no customizer parameters"
    out = asyncio.run(render_scad(scad, {}, 120, tmp_path / "out.stl"))
    assert trimesh.load(out, force="mesh").is_watertight


def test_calibration_cube_size_parameter(tmp_path: Path) -> None:
    scad = next(p for p in DESIGNS if p.parent.name == "calibration-cube")
    out = asyncio.run(render_scad(scad, {"size": 30}, 120, tmp_path / "cube30.stl"))
    assert np.allclose(trimesh.load(out, force="mesh").extents, [30, 30, 30], atol=0.01)
    with pytest.raises(ParameterError, match=r"'size': 41 is out of range; .* from 10 to 40"):
        asyncio.run(render_scad(scad, {"size": 41}, 120, tmp_path / "cube41.stl"))


def test_default_output_is_a_fresh_temporary_file_not_beside_the_design() -> None:
    scad = next(p for p in DESIGNS if p.parent.name == "calibration-cube")
    shipped = scad.with_suffix(".stl")
    before = shipped.stat().st_mtime_ns
    out = asyncio.run(render_scad(scad, {"size": 12}, 120))
    try:
        assert out.parent.name.startswith("spime-render-") and out.name == "calibration-cube.stl"
        assert shipped.stat().st_mtime_ns == before
    finally:
        out.unlink()
        out.parent.rmdir()


def test_schema_as_json_is_plain_data() -> None:
    import json

    data = json.loads(json.dumps(SCHEMA.as_json()))
    assert [d["name"] for d in data] == [p.name for p in SCHEMA.visible()]
    grip = next(d for d in data if d["name"] == "grip")
    assert grip["kind"] == "number" and grip["group"] == "Style"
    assert grip["choices"] == [{"value": 10.0, "label": "Small"}, {"value": 20.0, "label": "Large"}]
    corners = next(d for d in data if d["name"] == "corners")
    assert corners["default"] == [1.0, 2.0, 3.0] and corners["maximum"] == 5.0


def test_the_last_assignment_of_a_name_wins_as_in_openscad() -> None:
    schema = parse_parameters("w = 1; // [0:5]\nh = 2;\nw = 3; // [0:9]\n")
    assert [p.name for p in schema.parameters] == ["h", "w"]
    assert (schema.get("w").default, schema.get("w").maximum) == (3, 9.0)  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["width", "height", "grip", "corners"])
def test_an_integer_beyond_the_float_range_is_out_of_range_not_a_crash(name: str) -> None:
    """A customer's "1" * 400 reads as a 400-digit int; slider, plain number, numeric choice and vector
    item compare it as a float, which overflows."""
    huge = int("1" * 400)
    value = [huge, 1, 1] if name == "corners" else huge
    with pytest.raises(ParameterError, match=rf"'{name}': 1111.*\.\.\. is (out of range|not allowed)") as info:
        validate(SCHEMA, {name: value})
    assert info.value.parameter == name


def test_a_literal_beyond_the_float_range_is_no_parameter() -> None:
    schema = parse_parameters(f"big = {'1' * 400};\nfar = 1e999;\nv = [1, 1e999];\nok = 7;\n")
    assert [p.name for p in schema.parameters] == ["ok"]

