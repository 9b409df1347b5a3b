"""Printer profiles: the shipped .ini files load, PrusaSlicer accepts them, bad ones fail clearly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slicer_bridge.base import ProfileError
from slicer_bridge.profiles import PROFILE_DIR, list_profiles, load_profile, parse_profile

EXPECTED = {
    "prusa_mk3s": ("Prusa MK3S", (250.0, 210.0, 210.0), 300.0),
    "creality_ender3": ("Creality Ender-3", (220.0, 220.0, 250.0), 260.0),
    "prusa_mini": ("Prusa MINI", (180.0, 180.0, 180.0), 280.0),
    "generic_200": ("Generic 0.4 mm 200x200x200", (200.0, 200.0, 200.0), None),
}


def test_list_profiles_names_every_shipped_ini() -> None:
    assert list_profiles() == sorted(EXPECTED)


@pytest.mark.parametrize("short", sorted(EXPECTED))
def test_shipped_profile_loads(short: str) -> None:
    name, volume, max_hotend = EXPECTED[short]
    profile = load_profile(short)
    assert profile.name == name
    assert profile.build_volume_mm == volume
    assert profile.nozzle_mm == 0.4
    assert profile.max_hotend_c == max_hotend
    assert profile.ini_path == (PROFILE_DIR / f"{short}.ini").resolve()
    assert len(profile.sha256) == 64


def test_load_by_human_spelling_and_by_path(tmp_path: Path) -> None:
    assert load_profile("Prusa-MK3S").name == "Prusa MK3S"
    copy = tmp_path / "mine.ini"
    copy.write_bytes((PROFILE_DIR / "prusa_mini.ini").read_bytes())
    assert load_profile(copy).build_volume_mm == (180.0, 180.0, 180.0)


def test_every_shipped_profile_is_accepted_by_prusaslicer(tmp_path: Path) -> None:
    for ini in sorted(PROFILE_DIR.glob("*.ini")):
        out = tmp_path / f"{ini.stem}.ini"
        proc = subprocess.run(
            ["prusa-slicer", "--loglevel", "1", "--load", str(ini), "--save", str(out)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert out.is_file()


def test_unknown_name_lists_the_shipped_profiles() -> None:
    with pytest.raises(ProfileError, match="unknown printer profile 'bambu_x1'.*prusa_mk3s"):
        load_profile("bambu_x1")


def test_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.ini")


COMMAND_KEYS = "post_process = \n" + "".join(
    f"{key} = \n" for key in ("start_gcode", "end_gcode", "before_layer_gcode", "layer_gcode",
                              "toolchange_gcode", "between_objects_gcode", "color_change_gcode",
                              "pause_print_gcode", "template_custom_gcode",
                              "start_filament_gcode", "end_filament_gcode"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("max_print_height = 200\nnozzle_diameter = 0.4\n", "missing 'bed_shape'"),
        ("bed_shape = 0x0,1x0\nmax_print_height = 2\nnozzle_diameter = 0.4\n", "enclose"),
        ("bed_shape = a,b,c\nmax_print_height = 2\nnozzle_diameter = 0.4\n", "XxY"),
        ("bed_shape = 0x0,9x0,9x9\nnozzle_diameter = 0.4\n", "missing 'max_print_height'"),
        ("bed_shape = 0x0,9x0,9x9\nmax_print_height = -1\nnozzle_diameter = 0.4\n", "positive"),
        ("bed_shape = 0x0,9x0,9x9\nmax_print_height = 9\nnozzle_diameter = big\n", "not a number"),
        (
            (
                "bed_shape = 0x0,9x0,9x9\nmax_print_height = 9\nnozzle_diameter = 0.4\n"
                "printer_notes = spimeforge: max_bed_c=hot\n"
            ),
            "max_bed_c",
        ),
    ],
)
def test_bad_profile_text(text: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        parse_profile(text, Path("bad.ini"))


def test_multi_extruder_nozzle_takes_the_first() -> None:
    text = ("bed_shape = 0x0,9x0,9x9\nmax_print_height = 9\nnozzle_diameter = 0.6,0.4\n"
            + COMMAND_KEYS)
    assert parse_profile(text, Path("two.ini")).nozzle_mm == 0.6
