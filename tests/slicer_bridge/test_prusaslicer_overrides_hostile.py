"""Order overrides arrive as JSON: numbers and non-ASCII digits give clear answers."""

from __future__ import annotations

import pytest

from slicer_bridge.base import ParameterError
from slicer_bridge.prusaslicer import override_args


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"perimeters": 3}, ["--perimeters=3"]),
    ({"layer_height": 0.2}, ["--layer-height=0.2"]),
    ({"brim_width": 5.0}, ["--brim-width=5"]),
])
def test_json_numbers_become_the_text_prusaslicer_reads(overrides: dict[str, object],
                                                        expected: list[str]) -> None:
    assert override_args(overrides) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("overrides", "match"), [
    ({"perimeters": "١٢"}, "'١٢' is not allowed"),
    ({"layer_height": "٠.٢"}, "is not allowed"),
    ({"fill_density": "٢٠%"}, "is not allowed"),
    ({"perimeters": None}, "None is not a value"),
    ({"perimeters": [3]}, r"\[3\] is not a value"),
    ({"layer_height": float("nan")}, "'nan' is not allowed"),
    ({3: "1"}, "is not a config key"),
])
def test_malformed_values_are_parameter_errors(overrides: dict[object, object],
                                               match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        override_args(overrides)  # type: ignore[arg-type]
