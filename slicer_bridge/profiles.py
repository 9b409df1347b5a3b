"""Printer profiles: PrusaSlicer .ini config bundles plus what the bridge reads from them.

Shipped profiles live in `slicer_bridge/profiles/*.ini` (made by `regenerate.sh` there
with `prusa-slicer --save`). A node's config names one by its short name
(`prusa_mk3s`) or gives a path to its own .ini.

Max temperatures are not PrusaSlicer settings; a profile may state them in
`printer_notes` as `spimeforge: name=...; max_hotend_c=300; max_bed_c=120`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from slicer_bridge.base import ProfileError

__all__ = ["PROFILE_DIR", "PrinterProfile", "list_profiles", "load_profile", "parse_profile"]

PROFILE_DIR = Path(__file__).with_name("profiles")

_MAX_PROFILE_BYTES = 1_000_000
_NOTES_PREFIX = "spimeforge:"
# PrusaSlicer fills a key the --load'ed profile lacks from the input file's own config
# (a 3MF's Metadata/Slic3r_PE.config), so every key that runs a program or writes
# G-code must be stated by the profile. post_process runs a command: it must be empty.
_EMPTY_KEYS = ("post_process",)
_STATED_KEYS = ("start_gcode", "end_gcode", "before_layer_gcode", "layer_gcode",
                "toolchange_gcode", "between_objects_gcode", "color_change_gcode",
                "pause_print_gcode", "template_custom_gcode", "start_filament_gcode",
                "end_filament_gcode")


@dataclass(frozen=True, slots=True)
class PrinterProfile:
    """One printer as the bridge sees it.

    Attributes:
        name: Human name, e.g. "Prusa MK3S" (from printer_notes, else the file stem).
        build_volume_mm: (x, y, z) in millimetres: the bed polygon's bounding box and
            max_print_height.
        nozzle_mm: Nozzle diameter of the first extruder.
        ini_path: The .ini file handed to the slicer.
        sha256: Hex digest of the .ini's bytes (the slice cache keys on it).
        max_hotend_c: Highest hotend temperature, if the profile states it.
        max_bed_c: Highest bed temperature, if the profile states it.
    """

    name: str
    build_volume_mm: tuple[float, float, float]
    nozzle_mm: float
    ini_path: Path
    sha256: str
    max_hotend_c: float | None = None
    max_bed_c: float | None = None


def _parse_ini(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _number(values: dict[str, str], key: str, source: str) -> float:
    raw = values.get(key)
    if raw is None:
        raise ProfileError(f"{source}: missing {key!r}; regenerate it with prusa-slicer --save")
    try:
        number = float(raw.split(",")[0])
    except ValueError as exc:
        raise ProfileError(f"{source}: {key} = {raw!r} is not a number") from exc
    if not number > 0:
        raise ProfileError(f"{source}: {key} = {raw!r} must be positive")
    return number


def _bed_extents(raw: str | None, source: str) -> tuple[float, float]:
    if not raw:
        raise ProfileError(f"{source}: missing 'bed_shape' (e.g. 0x0,250x0,250x210,0x210)")
    try:
        points = [tuple(float(c) for c in p.split("x")) for p in raw.split(",")]
        xs, ys = zip(*points, strict=True)
    except ValueError as exc:
        raise ProfileError(f"{source}: bed_shape = {raw!r} is not a list of XxY points") from exc
    if len(points) < 3 or max(xs) <= min(xs) or max(ys) <= min(ys):
        raise ProfileError(f"{source}: bed_shape = {raw!r} does not enclose an area")
    return max(xs) - min(xs), max(ys) - min(ys)


def _notes(raw: str) -> dict[str, str]:
    # printer_notes is stored with literal "\n" escapes; our line may be any of them.
    for line in raw.replace("\\n", "\n").splitlines():
        if line.strip().startswith(_NOTES_PREFIX):
            body = line.strip()[len(_NOTES_PREFIX) :]
            pairs = (p.partition("=") for p in body.split(";"))
            return {k.strip(): v.strip() for k, sep, v in pairs if sep}
    return {}


def _optional_temp(notes: dict[str, str], key: str, source: str) -> float | None:
    if key not in notes:
        return None
    try:
        return float(notes[key])
    except ValueError as exc:
        raise ProfileError(f"{source}: printer_notes {key}={notes[key]!r} is not a number") from exc


def _check_command_keys(values: dict[str, str], source: str) -> None:
    for key in _EMPTY_KEYS:
        if key not in values:
            raise ProfileError(f"{source}: missing {key!r}; state it empty (\"{key} = \") so no "
                               "input file can set a command the slicer runs")
        if values[key]:
            raise ProfileError(f"{source}: {key} = {values[key][:60]!r} runs a program on the "
                               "node when slicing; it must be empty")
    missing = [key for key in _STATED_KEYS if key not in values]
    if missing:
        raise ProfileError(f"{source}: missing {', '.join(map(repr, missing))}; a profile must "
                           "state every G-code template (empty if unused) so no input file can "
                           "supply one; regenerate it with prusa-slicer --save")


def parse_profile(text: str, ini_path: Path, sha256: str = "") -> PrinterProfile:
    """Build a `PrinterProfile` from the text of a PrusaSlicer .ini (pure).

    Args:
        text: The .ini's content.
        ini_path: Where it came from (kept in the profile, named in errors).
        sha256: Hex digest of its bytes.

    Returns:
        The profile.

    Raises:
        ProfileError: A required key (bed_shape, max_print_height, nozzle_diameter) is
            missing or not a positive number, ``post_process`` is missing or not empty,
            or a G-code template (start_gcode, end_gcode, ...) is missing.
    """
    source = str(ini_path)
    values = _parse_ini(text)
    x, y = _bed_extents(values.get("bed_shape"), source)
    z = _number(values, "max_print_height", source)
    notes = _notes(values.get("printer_notes", ""))
    profile = PrinterProfile(
        name=notes.get("name") or ini_path.stem,
        build_volume_mm=(x, y, z),
        nozzle_mm=_number(values, "nozzle_diameter", source),
        ini_path=ini_path,
        sha256=sha256,
        max_hotend_c=_optional_temp(notes, "max_hotend_c", source),
        max_bed_c=_optional_temp(notes, "max_bed_c", source),
    )
    _check_command_keys(values, source)
    return profile


def list_profiles() -> list[str]:
    """Short names of the shipped profiles, sorted (e.g. ["creality_ender3", ...])."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.ini"))


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".ini" or path.exists():
        return path
    short = re.sub(r"[\s\-]+", "_", str(name_or_path).strip().lower())
    candidate = PROFILE_DIR / f"{short}.ini"
    if not re.fullmatch(r"[a-z0-9_]+", short) or not candidate.is_file():
        raise ProfileError(
            f"unknown printer profile {str(name_or_path)!r}; shipped profiles: "
            f"{', '.join(list_profiles())}, or give the path to a PrusaSlicer .ini"
        )
    return candidate


def load_profile(name_or_path: str | Path) -> PrinterProfile:
    """Load a shipped profile by short name ("prusa_mk3s", "Prusa-MK3S") or an .ini by path.

    Args:
        name_or_path: A name from `list_profiles()` or a path to a PrusaSlicer .ini.

    Returns:
        The profile, with the .ini's content hash.

    Raises:
        ProfileError: Unknown name, unreadable or oversized file, or missing keys.
    """
    path = _resolve(name_or_path)
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise ProfileError(f"cannot read printer profile {path}: {exc.strerror}") from exc
    if len(data) > _MAX_PROFILE_BYTES:
        raise ProfileError(f"{path}: larger than {_MAX_PROFILE_BYTES} bytes; not a profile")
    text = data.decode("utf-8", errors="replace")
    return parse_profile(text, path.resolve(), hashlib.sha256(data).hexdigest())
