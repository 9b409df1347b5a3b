"""The G-code safety filter: an allow-list of what a slicer emits to print (pure).

A job may only contain the commands a slicer writes to *print*, each with the
parameters it uses for that (``ALLOW_LISTS``, documented per firmware; Marlin 2.1
with Prusa-Firmware's extras first). Everything else is refused with its file line
number: commands that change the machine rather than print on it (steps per unit,
home offsets, software endstops, pins, EEPROM, firmware update, baud rate), SD-card
printing of files the filter never saw, macros that hide other commands
(M810-M819), host-action echoes (M118), and text Marlin would not read as the
filter does (a line number of its own, a code number that wraps to another code).

Lines are parsed as Marlin parses them (see ``node_agent.gcode``), and the geometry
of the whole path is followed: absolute and relative moves (G90/G91), logical origins
(G92), homing (G28), and arcs (G2/G3) including their extent between the end points.
Every point must stay within the build volume plus a margin (slicers park or purge
just outside, e.g. PrusaSlicer's ``G1 Y-3`` on the MK3), and Z never goes below the
bed. A relative move on an axis whose position is not known yet is refused: nothing
can tell where it ends.

``Checker`` judges one line at a time (the streaming pass over a file on disk uses
it, see ``node_agent.jobfile``); ``check_lines``/``enforce`` judge a whole sequence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from node_agent.config import PrinterConfig
from node_agent.gcode import STRING_ARGS, Command, parse_command, strip_comment

__all__ = [
    "ALLOW_LISTS",
    "FORBIDDEN_COMMANDS",
    "MAX_COMMAND_CHARS",
    "Allowed",
    "Checker",
    "JobRefused",
    "SafetyLimits",
    "Violation",
    "check_lines",
    "enforce",
    "limits_for",
]

#: Marlin's MAX_CMD_SIZE is 96 bytes for the whole framed line ``N<n> <command>*<cs>``;
#: a longer line is cut and fails its checksum for ever. 80 leaves room for the frame.
MAX_COMMAND_CHARS = 80


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allow-listed command: the parameter letters it may carry and why a slicer emits it."""

    params: str
    what: str


_MOVE = "XYZEF"
_ARC = "XYZEFIJRP"
_HOT = "STRB"  # S target, R wait-target (M109), B autotemp max, T tool; F would turn autotemp on (up to
# the firmware's AUTOTEMP_MAX, not this printer's maximum), and slicers never write it

#: What PrusaSlicer (and Cura, SuperSlicer) emit to print, per firmware flavour.
#: ``marlin``: Marlin 2.1 plus the Prusa-Firmware (a Marlin fork) commands PrusaSlicer's
#: Prusa profiles use (G80, M862.x, M115 U, M601); checked against PrusaSlicer 2.5
#: output of the shipped profiles and Marlin's G-code index (marlinfw.org/meta/gcode).
ALLOW_LISTS: dict[str, dict[str, Allowed]] = {
    "marlin": {
        "G0": Allowed(_MOVE, "travel move"),
        "G1": Allowed(_MOVE, "linear move"),
        "G2": Allowed(_ARC, "clockwise arc (arc fitting)"),
        "G3": Allowed(_ARC, "counter-clockwise arc (arc fitting)"),
        "G4": Allowed("PS", "dwell (minimum layer time)"),
        "G10": Allowed("", "firmware retract"),
        "G11": Allowed("", "firmware unretract"),
        "G21": Allowed("", "millimetre units"),
        "G28": Allowed("XYZWO", "home (Prusa W: without mesh levelling)"),
        "G29": Allowed("A", "probe the bed (bare; Prusa A: activate the mesh)"),
        "G80": Allowed("N", "Prusa-Firmware mesh bed levelling"),
        "G90": Allowed("", "absolute positioning"),
        "G91": Allowed("", "relative positioning"),
        "G92": Allowed("XYZE", "set the logical position (E reset per layer)"),
        "M0": Allowed("PS", "wait for the operator"),
        "M1": Allowed("PS", "wait for the operator"),
        "M17": Allowed("XYZE", "enable steppers"),
        "M18": Allowed("XYZES", "disable steppers"),
        "M73": Allowed("PRQSCD", "progress and remaining time for the display"),
        "M82": Allowed("", "absolute extrusion"),
        "M83": Allowed("", "relative extrusion"),
        "M84": Allowed("XYZES", "disable steppers"),
        "M104": Allowed(_HOT + "T", "set hotend temperature"),
        "M105": Allowed("TR", "report temperatures"),
        "M106": Allowed("SPT", "fan speed"),
        "M107": Allowed("P", "fan off"),
        "M109": Allowed(_HOT + "T", "wait for hotend temperature"),
        "M115": Allowed("U", "firmware info (Prusa U: newest firmware version)"),
        "M117": Allowed("", "message on the display"),
        "M140": Allowed("S", "set bed temperature"),
        "M190": Allowed("SR", "wait for bed temperature"),
        "M201": Allowed("XYZETF", "maximum accelerations (machine limits)"),
        "M203": Allowed("XYZET", "maximum feed rates (machine limits)"),
        "M204": Allowed("PRTS", "accelerations (machine limits)"),
        "M205": Allowed("XYZEBSTJ", "jerk and minimum speeds (machine limits)"),
        "M220": Allowed("S", "feed-rate factor"),
        "M221": Allowed("ST", "flow factor"),
        "M400": Allowed("", "finish moves"),
        "M420": Allowed("SZ", "enable saved bed levelling, fade height"),
        "M486": Allowed("STACPU", "label objects (cancel object support)"),
        "M600": Allowed("", "filament change (colour change)"),
        "M601": Allowed("", "Prusa-Firmware pause print"),
        "M862.1": Allowed("PQAF", "Prusa check: nozzle diameter"),
        "M862.2": Allowed("PQAF", "Prusa check: printer type"),
        "M862.3": Allowed("PQAF", "Prusa check: printer model"),
        "M862.4": Allowed("PQAF", "Prusa check: firmware version"),
        "M862.5": Allowed("PQAF", "Prusa check: G-code level"),
        "M862.6": Allowed("PQAF", "Prusa check: firmware feature"),
        "M900": Allowed("KLST", "linear advance factor"),
        "M907": Allowed("E", "extruder motor current (Prusa MK3 profiles: 430/538 mA)"),
    },
}

FORBIDDEN_COMMANDS: dict[str, str] = {
    "M20": "lists the SD card", "M21": "mounts the SD card", "M22": "releases the SD card",
    "M23": "selects an SD-card file the filter never saw",
    "M24": "prints from the SD card (a file the filter never saw)",
    "M25": "pauses SD printing", "M26": "moves the SD-card file position",
    "M27": "reports SD printing", "M28": "writes a file to the SD card",
    "M29": "writes a file to the SD card", "M30": "deletes a file on the SD card",
    "M32": "prints an SD-card file the filter never saw",
    "M33": "reads the SD card", "M34": "sorts the SD card",
    "M42": "sets a pin", "M43": "debugs pins", "M226": "waits on a pin",
    "M80": "switches the power supply", "M81": "switches the power supply off",
    "M92": "changes steps per unit", "M110": "changes the host's line numbers",
    "M111": "changes debug output", "M112": "is an emergency stop",
    "M118": "echoes text to the host (host actions)", "M120": "changes endstops",
    "M121": "changes endstops", "M206": "changes home offsets",
    "M211": "changes software endstops", "M260": "writes to I2C devices",
    "M303": "runs a PID autotune", "M350": "changes microstepping",
    "M428": "changes home offsets", "M500": "writes settings to EEPROM",
    "M501": "reloads settings from EEPROM", "M502": "resets settings to factory defaults",
    "M503": "reports settings", "M504": "validates EEPROM", "M510": "locks the machine",
    "M511": "unlocks the machine", "M512": "sets the machine password",
    "M540": "changes endstop abort behaviour", "M575": "changes the serial baud rate",
    "M851": "changes the probe offset", "M906": "changes motor currents",
    "M928": "starts SD logging",
    "M997": "starts a firmware update", "M999": "restarts a halted printer (an operator's decision)",
    "G20": "switches to inches (slicers emit millimetres)",
    **{f"M{n}": "defines or runs a G-code macro that hides other commands"
       for n in range(810, 820)},
}
_HOTEND = frozenset({"M104", "M109"})
_BED = frozenset({"M140", "M190"})
_AXES = "XYZ"
_MOVES = frozenset({"G0", "G1", "G2", "G3"})
# Upper-case G0/G1 with single-spaced X/Y/Z/E/F numbers: what slicers write millions of.
_PLAIN_MOVE = re.compile(r"G[01](?: [XYZEF]-?(?:\d+\.?\d*|\.\d+))+", re.ASCII)
_MAX_CODE_DIGITS = 4
# Parameters as node_agent.gcode reads them. Prusa-Firmware (code_seen: strchr, then
# strtod) takes a letter's FIRST occurrence and reads 1e3, 1E3 and 0x1A whole; Marlin
# takes the last and stops at E/X. A line they would read differently is refused.
_PARAM_WORD = re.compile(r"([A-Za-z]) *([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))?")
_QUOTED_ARG = re.compile(r'([A-Za-z]) *"[^"]*"')
_EXPONENT = re.compile(r"[eE][-+]?[0-9]+")
_HEX = re.compile(r"[xX][0-9A-Fa-f.]")
_MAX_EXTRUDER_CURRENT_MA = 600.0  # Prusa's MK3 profiles use 430 and 538
_MAX_SEGMENT_US = 1_000_000.0  # M205 B: PrusaSlicer's profiles leave it at Marlin's 20,000
_MAX_JUNCTION_MM = 10.0  # M205 J: Marlin's default is 0.013
_MAX_ADVANCE_K = 250.0  # M900 K: linear advance 1.5 uses 0-2, the older 1.0 up to about 200
_LOWER = re.compile(r"[a-z]")


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """What a job may ask of one printer; ``build_volume_mm`` None skips move checks.

    Attributes:
        max_hotend_c: Hottest hotend target.
        max_bed_c: Hottest bed target.
        build_volume_mm: X, Y, Z size; None leaves moves unchecked.
        move_margin_mm: X/Y/top tolerance outside the volume (purge lines, parking).
        forbidden: Allow-listed words this printer still refuses (e.g. ``("G29",)``).
        firmware: Which ``ALLOW_LISTS`` entry applies.
        tools: Number of tools (``T0`` … ``T<n-1>`` allowed).
        max_feedrate_mm_s: Highest feed rate a move or M203 may ask for.
        max_accel_mm_s2: Highest acceleration M201/M204 may set.
        max_factor_pct: Highest M220/M221 factor.
        max_dwell_s: Longest G4 dwell.
    """

    max_hotend_c: float
    max_bed_c: float
    build_volume_mm: tuple[float, float, float] | None = None
    move_margin_mm: float = 5.0
    forbidden: tuple[str, ...] = ()
    firmware: str = "marlin"
    tools: int = 1
    max_feedrate_mm_s: float = 1000.0
    max_accel_mm_s2: float = 30000.0
    max_factor_pct: float = 200.0
    max_dwell_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.firmware not in ALLOW_LISTS:
            known = ", ".join(sorted(ALLOW_LISTS))
            raise ValueError(f"no G-code allow-list for firmware {self.firmware!r}; known: {known}")
        # A NaN limit would let everything pass (every comparison with NaN is false).
        positive = {"maximum hotend temperature": self.max_hotend_c, "maximum bed temperature": self.max_bed_c,
                    "maximum feed rate": self.max_feedrate_mm_s, "maximum acceleration": self.max_accel_mm_s2,
                    "maximum speed or flow factor": self.max_factor_pct, "longest dwell": self.max_dwell_s,
                    **{f"build volume {axis}": size for axis, size in zip("XYZ", self.build_volume_mm or ())}}
        for what, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"the {what} must be a positive number, not {value}")
        if not (math.isfinite(self.move_margin_mm) and self.move_margin_mm >= 0) or self.tools < 1:
            raise ValueError(f"the move margin must be 0 mm or more and the tool count at least 1, not "
                             f"{self.move_margin_mm} mm and {self.tools}")


def limits_for(printer: PrinterConfig) -> SafetyLimits:
    """The safety limits of a configured printer: every path to it (agent jobs, `spime-node print`) uses these."""
    safety = printer.safety
    return SafetyLimits(
        printer.max_hotend_c, printer.max_bed_c, printer.build_volume_mm, printer.move_margin_mm,
        forbidden=safety.forbidden_gcode, firmware=safety.firmware, tools=safety.tools,
        max_feedrate_mm_s=safety.max_feedrate_mm_s, max_accel_mm_s2=safety.max_accel_mm_s2,
        max_factor_pct=safety.max_factor_pct, max_dwell_s=safety.max_dwell_s,
    )


@dataclass(frozen=True, slots=True)
class Violation:
    line: int
    command: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {_shown(self.command)}: {_shown(self.reason)}"


def _shown(text: str) -> str:
    """``text`` safe for the operator's terminal: control characters escaped as in repr."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class JobRefused(Exception):
    """The job breaks the printer's limits; nothing was sent."""

    def __init__(self, violations: list[Violation], total: int) -> None:
        self.violations = tuple(violations)
        self.total = total
        more = f" (and {total - len(violations)} more)" if total > len(violations) else ""
        lines = "; ".join(str(v) for v in violations)
        super().__init__(f"job refused, nothing was sent: {lines}{more}")


# ---------------------------------------------------------------- geometry


class _Machine:
    """Machine position per axis (None until known), honouring G90/G91/G92/G28.

    ``shift`` is machine minus logical position (G92); None when a G92 came while
    the machine position was unknown, so later absolute moves land nobody knows where.
    """

    def __init__(self) -> None:
        self.relative = False
        self.pos: dict[str, float | None] = dict.fromkeys(_AXES)
        self.shift: dict[str, float | None] = dict.fromkeys(_AXES, 0.0)

    def home(self, params: dict[str, float | None]) -> None:
        for axis in [a for a in _AXES if a in params] or list(_AXES):
            self.pos[axis], self.shift[axis] = 0.0, 0.0

    def set_logical(self, params: dict[str, float | None]) -> None:
        for axis in _AXES:
            value, current = params.get(axis), self.pos[axis]
            if value is not None:
                self.shift[axis] = None if current is None else current - value

    def forget(self) -> None:
        """After probing (G29/G80) the head is somewhere over the bed."""
        self.pos = dict.fromkeys(_AXES)

    def target(self, axis: str, value: float | None) -> tuple[float | None, str | None]:
        """Where a move's axis word takes the machine, or why nobody can tell."""
        current = self.pos[axis]
        if value is None:
            return current, None
        if self.relative:
            if current is None:
                return None, (f"moves {axis} relatively (G91) before its position is known; "
                              "home it (G28) or move to an absolute position first")
            return current + value, None
        shift = self.shift[axis]
        if shift is None:
            return None, (f"moves {axis} after G92 redefined it at an unknown position; "
                          "home it (G28) before G92")
        return value + shift, None


def _arc_points(start: tuple[float, float], end: tuple[float, float], center: tuple[float, float],
                clockwise: bool, turns: int) -> list[tuple[float, float]]:
    """The end point and every axis extreme an arc passes (its bounding points)."""
    radius = math.hypot(start[0] - center[0], start[1] - center[1])
    a0 = math.atan2(start[1] - center[1], start[0] - center[0])
    a1 = math.atan2(end[1] - center[1], end[0] - center[0])
    sweep = (a0 - a1) if clockwise else (a1 - a0)
    sweep %= 2 * math.pi
    if sweep < 1e-9:  # same start and end: Marlin draws a full circle
        sweep = 2 * math.pi
    sweep += 2 * math.pi * max(0, turns)
    points = [end]
    for k in range(4):
        extreme = k * math.pi / 2
        offset = ((a0 - extreme) if clockwise else (extreme - a0)) % (2 * math.pi)
        if offset <= sweep:
            points.append((center[0] + radius * math.cos(extreme),
                           center[1] + radius * math.sin(extreme)))
    return points


def _same_ray(start: tuple[float, float], end: tuple[float, float], center: tuple[float, float]) -> bool:
    """Whether start and end lie in the same direction from the centre: no angle to travel."""
    a = (start[0] - center[0], start[1] - center[1])
    b = (end[0] - center[0], end[1] - center[1])
    cross, dot = a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1]
    return dot > 0 and abs(cross) <= 1e-9 * math.hypot(*a) * math.hypot(*b)


def _arc_center(start: tuple[float, float], end: tuple[float, float], cmd: Command,
                clockwise: bool) -> tuple[float, float] | None:
    """Marlin's G2/G3 center: ``R`` (radius, negative for the long way) or ``I``/``J``."""
    radius = cmd.params.get("R")
    if radius is not None:
        dx, dy = (end[0] - start[0]) / 2, (end[1] - start[1]) / 2
        half = math.hypot(dx, dy)
        if half == 0:
            return None
        h2 = (radius - half) * (radius + half)
        h = math.sqrt(h2) if h2 >= 0 else 0.0
        e = -1.0 if clockwise ^ (radius < 0) else 1.0
        sx, sy = -dy / half, dx / half
        return start[0] + dx + sx * e * h, start[1] + dy + sy * e * h
    i, j = cmd.params.get("I"), cmd.params.get("J")
    if i is None and j is None:
        return None
    return start[0] + (i or 0.0), start[1] + (j or 0.0)


# ---------------------------------------------------------------- the checker


class Checker:
    """Judge a job line by line, keeping the machine state between lines.

    Args:
        limits: the printer's limits.
    """

    def __init__(self, limits: SafetyLimits) -> None:
        self.limits = limits
        self.allowed = ALLOW_LISTS[limits.firmware]
        self.machine = _Machine()
        self.refused_words = frozenset(limits.forbidden)

    def check(self, line: str) -> str | None:
        """The reason one file line is refused, or None when it is fine (or not a command)."""
        command = line.split(";", 1)[0].strip()
        if not command:
            return None
        problem = _text_problem(command)
        if problem:
            return problem
        if _PLAIN_MOVE.fullmatch(command) and command[:2] not in self.refused_words:
            return self._plain_move(command)
        parsed = parse_command(command)
        if parsed is None:
            return _unparsed_problem(command)
        return _parameter_problem(parsed) or self._command_problem(parsed) or _case_problem(command, parsed)

    def _plain_move(self, command: str) -> str | None:
        """The slicer's bread and butter, ``G1 X1.5 Y2 E.03 F1800``, without the general parser."""
        params: dict[str, float | None] = {w[0]: float(w[1:]) for w in command[3:].split()}
        if len(params) != command.count(" "):
            return _parameter_problem(Command(command[:2], command[1:2], params, command[3:]))
        feed = params.get("F")
        if feed is not None and feed > self.limits.max_feedrate_mm_s * 60:
            return _over(params, "F", self.limits.max_feedrate_mm_s * 60, "feed rate", " mm/min")
        return self._line_move(Command(command[:2], command[1:2], params))

    def _command_problem(self, cmd: Command) -> str | None:
        word = cmd.word
        if len(cmd.digits.lstrip("0")) > _MAX_CODE_DIGITS:
            return (f"code number {cmd.digits} is out of range (Marlin would run it as {word}); "
                    "not allowed in a job")
        if word in self.refused_words:
            return "is refused on this printer"
        if word.startswith("T"):
            return self._tool_problem(cmd)
        rule = self.allowed.get(word)
        if rule is None:
            why = FORBIDDEN_COMMANDS.get(word, "is not on the allow-list of what a slicer emits "
                                               f"to print ({self.limits.firmware})")
            return f"{why}; not allowed in a job"
        extra = [letter for letter in cmd.params if letter not in rule.params]
        if extra:
            return (f"parameter {', '.join(extra)} is not allowed with {word} in a job "
                    f"(allowed: {', '.join(rule.params) or 'none'})")
        return self._value_problem(cmd) or self._geometry_problem(cmd)

    def _tool_problem(self, cmd: Command) -> str | None:
        number = int(cmd.word[1:].split(".")[0])
        if cmd.params or "." in cmd.word or number >= self.limits.tools:
            return f"selects tool {cmd.word}, but this printer has {self.limits.tools} tool(s)"
        return None

    def _value_problem(self, cmd: Command) -> str | None:
        limits, word, p = self.limits, cmd.word, cmd.params
        if word in _MOVES:
            feed = p.get("F")
            if feed is None or feed <= limits.max_feedrate_mm_s * 60:
                return None
            return _over(p, "F", limits.max_feedrate_mm_s * 60, "feed rate", " mm/min")
        if word in _HOTEND | _BED and min(p.get("S") or 0.0, p.get("R") or 0.0, p.get("B") or 0.0) < 0:
            return ("sets a temperature below 0 °C; the firmware reads it as a 16-bit whole number that wraps "
                    "(S-65236 is 300 °C)")
        value = max(p.get("S") or 0.0, p.get("R") or 0.0, p.get("B") or 0.0)
        if word in _HOTEND and value > limits.max_hotend_c:
            return f"hotend {value:g} °C is above this printer's maximum of {limits.max_hotend_c:g} °C"
        if word in _BED and value > limits.max_bed_c:
            return f"bed {value:g} °C is above this printer's maximum of {limits.max_bed_c:g} °C"
        if word in ("M104", "M109", "M105", "M106") and (p.get("T") or 0) >= limits.tools:
            return f"names tool {p.get('T'):g}, but this printer has {limits.tools} tool(s)"
        return self._setting_problem(cmd)

    def _setting_problem(self, cmd: Command) -> str | None:
        limits, word, p = self.limits, cmd.word, cmd.params
        if word == "M203":
            return _over(p, "XYZE", limits.max_feedrate_mm_s, "maximum feed rate", " mm/s")
        if word in ("M201", "M204"):
            return _over(p, "XYZEPRTS", limits.max_accel_mm_s2, "acceleration", " mm/s²")
        if word in ("M220", "M221"):
            return _over(p, "S", limits.max_factor_pct, "factor", " %")
        if word == "M907":
            return _over(p, "E", _MAX_EXTRUDER_CURRENT_MA, "extruder motor current", " mA")
        if word == "M205":
            return (_over(p, "XYZEST", limits.max_feedrate_mm_s, "jerk or minimum speed", " mm/s")
                    or _over(p, "B", _MAX_SEGMENT_US, "minimum segment time", " µs")
                    or _over(p, "J", _MAX_JUNCTION_MM, "junction deviation", " mm"))
        if word == "M900":
            return _over(p, "K", _MAX_ADVANCE_K, "linear advance factor", "")
        if word == "G4":
            if min(p.get("S") or 0.0, p.get("P") or 0.0) < 0:
                return "dwells a negative time; the firmware reads P as an unsigned number (P-1 is 49 days)"
            seconds = max((p.get("S") or 0.0), (p.get("P") or 0.0) / 1000)
            return None if seconds <= limits.max_dwell_s else (
                f"dwells {seconds:g} s, longer than this printer's maximum of {limits.max_dwell_s:g} s")
        return None

    def _geometry_problem(self, cmd: Command) -> str | None:
        machine, word = self.machine, cmd.word
        if word == "G90":
            machine.relative = False
        elif word == "G91":
            machine.relative = True
        elif word == "G28":
            if "O" in cmd.params:  # Marlin: "home only if not trusted", maybe not at all
                return ("with O homes only when the printer has lost its position, so nobody "
                        "can tell where the head is afterwards; use G28 without O")
            machine.home(cmd.params)
        elif word == "G92":
            machine.set_logical(cmd.params)
        elif word in ("G29", "G80"):
            machine.forget()
        elif word in ("G0", "G1"):
            return self._line_move(cmd)
        elif word in ("G2", "G3"):
            return self._arc_move(cmd)
        return None

    def _line_move(self, cmd: Command) -> str | None:
        volume = self.limits.build_volume_mm
        reached: dict[str, float] = {}
        params = cmd.params
        for axis in _AXES:
            if axis not in params:
                continue
            target, problem = self.machine.target(axis, params[axis])
            if problem and volume is not None:
                return problem
            self.machine.pos[axis] = target
            if target is not None:
                reached[axis] = target
        return self._outside(reached)

    def _arc_move(self, cmd: Command) -> str | None:
        if "P" in cmd.params and (cmd.params["P"] or 0) > 100:
            return "asks for more than 100 full circles"
        machine = self.machine
        ends: dict[str, float | None] = {}
        for axis in _AXES:
            target, problem = machine.target(axis, cmd.params.get(axis))
            if problem and self.limits.build_volume_mm is not None:
                return problem
            ends[axis] = target
        start = (machine.pos["X"], machine.pos["Y"])
        end = (ends["X"], ends["Y"])
        machine.pos.update(ends)
        if self.limits.build_volume_mm is None:
            return None
        if None in start or None in end:
            return "draws an arc before the X/Y position is known; home (G28) first"
        s = (float(start[0]), float(start[1]))  # type: ignore[arg-type]
        e = (float(end[0]), float(end[1]))  # type: ignore[arg-type]
        clockwise = cmd.word == "G2"
        center = _arc_center(s, e, cmd, clockwise)
        if center is None or (cmd.params.get("R") is None and center == s) or cmd.params.get("R") == 0:
            return "is an arc without a centre (I/J) or a usable radius (R); Marlin refuses it and does not move"
        if s != e and _same_ray(s, e, center):
            return "is an arc whose end lies on its start's ray from the centre; Marlin does not move at all"
        turns = int(cmd.params.get("P") or 0)
        for x, y in _arc_points(s, e, center, clockwise, turns):
            problem = self._outside({"X": x, "Y": y}, "arc reaches")
            if problem:
                return problem
        z = ends["Z"]
        return self._outside({"Z": z} if z is not None else {})

    def _outside(self, reached: dict[str, float], verb: str = "moves") -> str | None:
        volume = self.limits.build_volume_mm
        if volume is None:
            return None
        margin = self.limits.move_margin_mm
        for axis, value in reached.items():
            size = volume[_AXES.index(axis)]
            if -margin <= value <= size + margin and (value >= 0 or axis != "Z"):
                continue
            if axis == "Z" and value < 0:
                return f"{verb} Z to {value:g} mm, below the bed (Z 0)"
            if not -margin <= value <= size + margin:
                return (f"{verb} {axis} to {value:g} mm, outside the build volume "
                        f"(0-{size:g} mm, margin {margin:g} mm)")
        return None


def _over(params: dict[str, float | None], letters: str, limit: float, what: str,
          unit: str) -> str | None:
    for letter in letters:
        value = params.get(letter)
        if value is not None and value < 0:
            return (f"{what} {letter}{value:g} is negative; the firmware may read it as a whole number that "
                    "wraps to a large one")
        if value is not None and value > limit:
            return f"{what} {letter}{value:g}{unit} is above this printer's maximum of {limit:g}{unit}"
    return None


def _case_problem(command: str, cmd: Command) -> str | None:
    """Lower-case letters outside a message or a quoted value: Marlin reads only upper case unless built
    with GCODE_CASE_INSENSITIVE (off in its shipped configuration; Prusa firmware likewise), so the
    printer would skip a line this filter counted (``g1 z100`` moved only the filter's head)."""
    code = command[:len(command) - len(cmd.text)] if cmd.word in STRING_ARGS else command
    if _LOWER.search(_QUOTED_ARG.sub(r"\1", code) if '"' in code else code):
        return "has lower-case letters; Marlin reads only upper case, so it would skip what this filter counts"
    return None


def _text_problem(command: str) -> str | None:
    if not command.isascii():
        return "contains non-ASCII characters, which the serial line protocol cannot carry"
    if not command.isprintable():
        return "contains control characters (a second line for the firmware)"
    if "*" in command:
        return "contains '*', which the serial line protocol reserves for checksums"
    if len(command) > MAX_COMMAND_CHARS:
        return (f"is {len(command)} characters long; Marlin cuts lines beyond "
                f"{MAX_COMMAND_CHARS} (its 96-byte command buffer with the line frame)")
    return None


def _parameter_problem(cmd: Command) -> str | None:
    """Why the firmware could read a parameter differently from this filter, or None."""
    if not cmd.params:  # no parameters, or a string argument (M117 text)
        return None
    rest = _QUOTED_ARG.sub(r"\1 ", cmd.text) if '"' in cmd.text else cmd.text
    seen: set[str] = set()
    for word in _PARAM_WORD.finditer(rest):
        letter, number = word.group(1).upper(), word.group(2)
        if letter in seen:
            return (f"gives parameter {letter} twice; Prusa firmware reads the first, Marlin "
                    "the last, so a job must give each parameter once")
        seen.add(letter)
        if number is None:
            continue
        if (exponent := _EXPONENT.match(rest, word.end())) is not None:
            return (f"{word.group().strip()}{exponent.group()} has an exponent; Prusa "
                    "firmware reads it as a power of ten, Marlin as another parameter: write "
                    "plain decimals")
        if number.lstrip("+-") == "0" and _HEX.match(rest, word.end()):
            return (f"{word.group().strip()}{rest[word.end():word.end() + 2]}... is a hexadecimal number "
                    "to the firmware (strtod); write plain decimals")
    return None


def _unparsed_problem(command: str) -> str:
    if command[:1] in "Nn" and (command[1:2].isdigit() or command[1:2] in ("-", "+")):
        return "carries its own line number; the host numbers lines, a job must not"
    return ("is not a G, M or T command with a code number; Marlin could read it as a "
            "motion mode or ignore it, so it is not allowed in a job")


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
    checker = Checker(limits)
    for lineno, line in enumerate(lines, start=1):
        reason = checker.check(line)
        if reason is not None:
            total += 1
            if len(found) < max_violations:
                found.append(Violation(lineno, strip_comment(line), reason))
    return found, total


def enforce(lines: Iterable[str], limits: SafetyLimits) -> None:
    """Refuse a job that breaks the limits, before anything is sent.

    Raises:
        JobRefused: with every violation's line number and reason (up to 20 listed).
    """
    found, total = check_lines(lines, limits)
    if found:
        raise JobRefused(found, total)
