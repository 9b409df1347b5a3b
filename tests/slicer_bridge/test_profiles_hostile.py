"""A profile must state every command-running and G-code key, so no input file supplies one."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicer_bridge.base import ProfileError
from slicer_bridge.profiles import PROFILE_DIR, parse_profile

MK3S = (PROFILE_DIR / "prusa_mk3s.ini").read_text(encoding="utf-8")


def without(key: str) -> str:
    return "".join(line for line in MK3S.splitlines(keepends=True)
                   if not line.startswith(f"{key} ="))


@pytest.mark.parametrize(("text", "match"), [
    (without("post_process"), "missing 'post_process'; state it empty"),
    (without("post_process") + "post_process = /bin/touch /tmp/x\n",
     "post_process = '/bin/touch /tmp/x' runs a program on the node"),
    (without("start_gcode"), "missing 'start_gcode'; a profile must state every G-code template"),
    (without("end_gcode"), "missing 'end_gcode'"),
    (without("layer_gcode"), "missing 'layer_gcode'"),
    (without("toolchange_gcode"), "missing 'toolchange_gcode'"),
])
def test_a_profile_that_would_inherit_a_command_from_the_input_is_refused(text: str,
                                                                          match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        parse_profile(text, Path("mine.ini"))


def test_the_shipped_profile_states_every_command_key() -> None:
    assert parse_profile(MK3S, Path("prusa_mk3s.ini")).nozzle_mm == 0.4
