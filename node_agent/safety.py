"""The G-code safety filter: refuse a job before its first line is sent (pure).

Each printer's limits come from its node config: the hottest hotend and bed
it may be asked for, its build volume (plus a small margin, since slicers park
or purge just outside it, e.g. PrusaSlicer's ``G1 Y-3`` purge on the MK3), and
commands a job must never contain because they change the printer rather than
print on it (EEPROM writes, factory reset, firmware update, SD writes,
emergency stop / restart). The whole file is checked first; a refusal names
every offending line (up to a limit) with its file line number and the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.gcode import parse_words, strip_comment

__all__ = [
    "FORBIDDEN_COMMANDS",
    "JobRefused",
    "SafetyLimits",
    "Violation",
    "check_lines",
    "enforce",
]

FORBIDDEN_COMMANDS: dict[str, str] = {
    "M500": "writes settings to EEPROM",
    "M502": "resets settings to factory defaults",
    "M997": "starts a firmware update",
    "M999": "restarts a halted printer (an operator's decision)",
    "M112": "is an emergency stop",
    "M28": "writes a file to the SD card",
    "M29": "writes a file to the SD card",
    "M30": "deletes a file on the SD card",
    "M303": "runs a PID autotune",
    "M510": "locks the machine",
    "M511": "unlocks the machine",
    "M512": "sets the machine password",
    "M928": "starts SD logging",
}
_HOTEND = frozenset({"M104", "M109"})
_BED = frozenset({"M140", "M190"})
_MOVES = frozenset({"G0", "G1", "G2", "G3"})


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """What a job may ask of one printer; ``build_volume_mm`` None skips move checks."""

    max_hotend_c: float
    max_bed_c: float
    build_volume_mm: tuple[float, float, float] | None = None
    move_margin_mm: float = 5.0
    forbidden: tuple[str, ...] = tuple(FORBIDDEN_COMMANDS)


@dataclass(frozen=True, slots=True)
class Violation:
    line: int
    command: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.command}: {self.reason}"


class JobRefused(Exception):
    """The job breaks the printer's limits; nothing was sent."""

    def __init__(self, violations: list[Violation], total: int) -> None:
        self.violations = tuple(violations)
        self.total = total
        more = f" (and {total - len(violations)} more)" if total > len(violations) else ""
        lines = "; ".join(str(v) for v in violations)
        super().__init__(f"job refused, nothing was sent: {lines}{more}")


class _Position:
    """Machine position per axis (None until known), honouring G90/G91/G92/G28."""

    def __init__(self) -> None:
        self.absolute = True
        self.pos: dict[str, float | None] = {"X": None, "Y": None, "Z": None}
        self.offset = {"X": 0.0, "Y": 0.0, "Z": 0.0}

    def apply(self, word: str, params: dict[str, float]) -> dict[str, float]:
        """Update for one command; returns the machine coordinates a move reaches."""
        if word == "G90":
            self.absolute = True
        elif word == "G91":
            self.absolute = False
        elif word == "G28":
            axes = [a for a in self.pos if a in params] or list(self.pos)
            for axis in axes:
                self.pos[axis], self.offset[axis] = 0.0, 0.0
        elif word == "G92":
            for axis in self.pos:
                current = self.pos[axis]
                if axis in params and current is not None:
                    self.offset[axis] = current - params[axis]
        elif word in _MOVES:
            return self._move(params)
        return {}

    def _move(self, params: dict[str, float]) -> dict[str, float]:
        reached = {}
        for axis in self.pos:
            if axis not in params:
                continue
            current = self.pos[axis]
            if self.absolute:
                target: float | None = params[axis] + self.offset[axis]
            else:
                target = None if current is None else current + params[axis]
            self.pos[axis] = target
            if target is not None:
                reached[axis] = target
        return reached


def _temperature_problem(word: str, params: dict[str, float], limits: SafetyLimits) -> str | None:
    value = max(params.get("S", 0.0), params.get("R", 0.0))
    if word in _HOTEND and value > limits.max_hotend_c:
        return f"hotend {value:g} °C is above this printer's maximum of {limits.max_hotend_c:g} °C"
    if word in _BED and value > limits.max_bed_c:
        return f"bed {value:g} °C is above this printer's maximum of {limits.max_bed_c:g} °C"
    return None


def _volume_problem(reached: dict[str, float], limits: SafetyLimits) -> str | None:
    if limits.build_volume_mm is None:
        return None
    margin = limits.move_margin_mm
    for axis, size in zip("XYZ", limits.build_volume_mm, strict=True):
        value = reached.get(axis)
        if value is not None and not -margin <= value <= size + margin:
            return (
                f"moves {axis} to {value:g} mm, outside the build volume "
                f"(0-{size:g} mm, margin {margin:g} mm)"
            )
    return None


def _line_problem(command: str) -> str | None:
    if not command.isascii():
        return "contains non-ASCII characters, which the serial line protocol cannot carry"
    if "*" in command:
        return "contains '*', which the serial line protocol reserves for checksums"
    return None


def check_lines(
    lines: Iterable[str], limits: SafetyLimits, max_violations: int = 20
) -> tuple[list[Violation], int]:
    """Check a whole G-code file against a printer's limits.

    Args:
        lines: the file's lines (comments and blanks allowed).
        limits: the printer's limits.
        max_violations: how many violations to keep (all are counted).

    Returns:
        The first ``max_violations`` violations in file order, and the total count.
    """
    found: list[Violation] = []
    total = 0
    position = _Position()
    forbidden = frozenset(limits.forbidden)
    for lineno, line in enumerate(lines, start=1):
        command = strip_comment(line)
        if not command:
            continue
        word, params = parse_words(command)
        reason = _line_problem(command)
        if reason is None and word in forbidden:
            reason = f"{FORBIDDEN_COMMANDS.get(word, 'is not allowed in a job')}; not allowed in a job"
        reason = reason or _temperature_problem(word, params, limits)
        reason = reason or _volume_problem(position.apply(word, params), limits)
        if reason is not None:
            total += 1
            if len(found) < max_violations:
                found.append(Violation(lineno, command, reason))
    return found, total


def enforce(lines: Iterable[str], limits: SafetyLimits) -> None:
    """Refuse a job that breaks the limits, before anything is sent.

    Raises:
        JobRefused: with every violation's line number and reason (up to 20 listed).
    """
    found, total = check_lines(lines, limits)
    if found:
        raise JobRefused(found, total)
