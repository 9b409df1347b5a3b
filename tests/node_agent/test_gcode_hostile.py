"""Hostile G-code: what the firmware or OctoPrint would read differently from the filter."""

from __future__ import annotations

from pathlib import Path

import pytest

from node_agent.gcode import Command, parse_command
from node_agent.jobfile import check_file
from node_agent.safety import Checker, JobRefused, SafetyLimits, Violation, check_lines

MK3 = SafetyLimits(max_hotend_c=280, max_bed_c=110, build_volume_mm=(250, 210, 210))


def refusal(tmp_path: Path, data: bytes) -> JobRefused:
    path = tmp_path / "job.gcode"
    path.write_bytes(data)
    with pytest.raises(JobRefused) as caught:
        check_file(str(path), MK3)
    return caught.value


# ---------------------------------------------------------------- carriage returns, controls


def test_a_bare_cr_in_a_comment_hides_nothing(tmp_path: Path) -> None:
    refused = refusal(tmp_path, b"G28\nG90\nG1 X10 Y10 ; park\rM502\rM500\rM92 X1\rG1 Z-5\n")
    assert len(refused.violations) == 1 and refused.violations[0].line == 3
    assert "carriage return inside the line" in str(refused)


def test_a_cr_only_file_is_named_as_such(tmp_path: Path) -> None:
    refused = refusal(tmp_path, b"G28\rG90\rM500\r")
    assert "line 1" in str(refused) and "CR-only line endings" in str(refused)


def test_a_long_cr_only_file_is_named_as_such(tmp_path: Path) -> None:
    refused = refusal(tmp_path, b"G1 X1 Y1\r" * 20000)
    assert "CR-only line endings" in str(refused)


@pytest.mark.parametrize("data", [b"G28\n; note \x00 here\n", b"G28\n;\x1b[2J\n",
                                  b"G28 ; \x7f\n", b"G28\n; \x0b\n"])
def test_control_characters_are_refused_even_in_comments(tmp_path: Path, data: bytes) -> None:
    assert "control character" in str(refusal(tmp_path, data))


def test_crlf_files_and_tabs_still_pass(tmp_path: Path) -> None:
    path = tmp_path / "job.gcode"
    path.write_bytes(b"G28\r\nG90\r\nG1 X10 Y10 ; park\tthere\r\n")
    assert check_file(str(path), MK3).commands == 3


def test_refusals_show_control_characters_escaped(tmp_path: Path) -> None:
    message = str(refusal(tmp_path, b"G28\nM117 \x1b]2;owned\x07\x1b[2J hi\n"))
    assert "\x1b" not in message and "\\x1b" in message
    shown = str(Violation(3, "M92\x1b[2J\x9b", "is bad\x07"))
    assert shown == "line 3: M92\\x1b[2J\\x9b: is bad\\x07"
    found, _ = check_lines(["G28", "M117 a\rM92 X1"], MK3)
    assert "\r" not in str(found[0]) and "\\r" in str(found[0])


# ---------------------------------------------------------------- parameters as firmware reads them


@pytest.mark.parametrize(("lines", "line", "why"), [
    (["M104 S999 S200"], 1, "gives parameter S twice"),
    (["M140 S150 S60"], 1, "gives parameter S twice"),
    (["G28", "G90", "G1 Z10", "G92 Z100 Z10", "G1 Z0.2"], 4, "gives parameter Z twice"),
    (["G28", "G1 Z-50 Z1"], 2, "gives parameter Z twice"),
    (["M907 E5e3"], 1, "E5e3 has an exponent"),
    (["M203 X1e9 Y1e9"], 1, "X1e9 has an exponent"),
    (["G28", "G90", "G1 Z10", "G92 Z1e2", "G1 Z0.2"], 4, "Z1e2 has an exponent"),
    (["G28", "G1 X2.5E3"], 2, "X2.5E3 has an exponent"),
    (["M104 S2e+2"], 1, "S2e+2 has an exponent"),
    (["G28", "G1 X0x10"], 2, "is a hexadecimal number"),
])
def test_parameters_the_firmware_reads_differently_are_refused(lines: list[str], line: int,
                                                               why: str) -> None:
    found, total = check_lines(lines, MK3)
    assert total == 1 and found[0].line == line
    assert why in found[0].reason


def test_ordinary_slicer_lines_still_pass() -> None:
    found, total = check_lines(["G28", "G90", "M83", "G1 X10 Y10 Z0.2 E.5 F1800",
                                'M862.3 P "MK3S"', "M117 S1 S2 text", "G28 X Y", "G1X20Y20"], MK3)
    assert (found, total) == ([], 0)


# ---------------------------------------------------------------- G28 O


def test_g28_o_is_refused_because_it_may_not_home() -> None:
    checker = Checker(MK3)
    for line in ("G28", "G1 X200 Y200 Z100"):
        assert checker.check(line) is None
    assert "with O homes only when the printer has lost its position" in str(
        checker.check("G28 O"))


def test_only_ascii_digits_are_numbers_as_marlin_reads_them() -> None:
    """Marlin's NUMERIC() is '0'..'9': "M١٠٤" (Arabic-Indic digits) runs no M104 and "X١٠" has no value, so the
    filter reads them the same way (Python's \\d and float() would have read 104 and 10)."""
    assert parse_command("M\u0661\u0660\u0664 S200") is None
    assert parse_command("G1 X\u0661\u0660 Y5") == Command("G1", "1", {"X": None, "Y": 5.0}, "X\u0661\u0660 Y5")
