"""G-code text helpers shared by the engine and the safety filter (pure).

A command is read the way Marlin's ``GCodeParser::parse`` (Marlin 2.1
``src/gcode/parser.cpp``) reads it, so the safety filter judges exactly what the
firmware will run: blanks before the letter and between the letter and its number
are skipped (``M 112`` is M112), letters are case-insensitive
(``GCODE_CASE_INSENSITIVE``), the code number is an unsigned 16-bit integer
(``M65648`` wraps to M112), a ``.n`` sub-code follows it (``M862.3``), and each
parameter is a letter, optional blanks, and a number that stops at ``E``/``X`` (so
``X1e3`` is X1 and E3). A parameter given twice keeps its last value.

A job is prepared once: comments and blank lines go, each command keeps the
number of the file line it came from (for error messages), and the slicer's
layer markers (Cura ``;LAYER:<n>``, PrusaSlicer/SuperSlicer ``;LAYER_CHANGE``)
become a short table of (command index, layer) so progress can name the layer.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "STRING_ARGS",
    "Command",
    "PreparedJob",
    "layer_marker",
    "parse_command",
    "parse_words",
    "prepare",
    "strip_comment",
]

_HEAD = re.compile(r"\s*([GMTgmt])\s*(\d+)(?:\.(\d*))?", re.ASCII)
# Marlin's value_float() stops at E/X: a number is a sign, digits and one dot.
_PARAM = re.compile(r"([A-Za-z]) *([-+]?(?:\d+\.?\d*|\.\d+))?", re.ASCII)
STRING_ARGS = frozenset({"M23", "M28", "M30", "M117", "M118", "M928"})
_CODE_MODULUS = 1 << 16  # Marlin's codenum is a uint16_t
# A quoted value right after its letter (Prusa's ``M862.3 P "MK3S"``) is that letter's
# string; a quote anywhere else hides nothing (Marlin reads what follows as parameters).
_QUOTED_VALUE = re.compile(r'([A-Za-z]) *"[^"]*"')


def strip_comment(line: str) -> str:
    """Return the command part of one G-code line (``;`` comment and outer blanks removed)."""
    return line.split(";", 1)[0].strip()


class Command(NamedTuple):
    """One command as Marlin parses it (immutable; a tuple because the filter makes millions).

    Attributes:
        word: ``G1``, ``M104``, ``M862.3`` (upper case, sub-code kept, number normalised).
        digits: The code number as written (``65648`` for ``M65648``), to spot wrapping.
        params: Parameter letter (upper case) to value; None when it has no number.
        text: Everything after the code (string arguments such as M117's message).
    """

    word: str
    digits: str
    params: dict[str, float | None]
    text: str = ""


def _params(rest: str) -> dict[str, float | None]:
    if '"' in rest:
        rest = _QUOTED_VALUE.sub(r"\1 ", rest)
    return {letter.upper(): float(raw) if raw else None for letter, raw in _PARAM.findall(rest)}


def parse_command(command: str) -> Command | None:
    """Parse one command (no comment) as Marlin would; None when it has no G/M/T code.

    Args:
        command: The command text, e.g. ``G1 X10 Y5`` or ``m 104 s200``.

    Returns:
        The parsed command, or None for text Marlin would not run as a G, M or T code
        (a line number ``N5 …``, a bare parameter list, ``T?``).
    """
    head = _HEAD.match(command)
    if head is None:
        return None
    letter, digits, sub = head.groups()
    if len(digits) < 5 and digits[0] != "0" and letter in "GMT":
        word = letter + digits  # the common case, already canonical
    else:
        # Refused anyway (too many digits); int() of thousands of digits is slow or refused.
        number = int(digits) % _CODE_MODULUS if len(digits) <= 20 else _CODE_MODULUS - 1
        word = letter.upper() + str(number)
    if sub:
        word += f".{int(sub)}"
    rest = command[head.end():]
    if word in STRING_ARGS:
        return Command(word, digits, {}, rest.strip())
    return Command(word, digits, _params(rest), rest.strip())


def parse_words(command: str) -> tuple[str, dict[str, float]]:
    """Split a command into its word (``G1``, ``M104``) and numeric parameters.

    ``G1X10Y5`` (no spaces) works too; parameters without a number and string
    arguments (``M117 text``) are left out; a parameter given twice keeps its last
    value, as in Marlin. Text without a G/M/T code gives its first word, upper case.
    """
    parsed = parse_command(command)
    if parsed is None:
        return command.strip().split(" ", 1)[0].upper(), {}
    word = parsed.word.split(".", 1)[0]
    return word, {k: v for k, v in parsed.params.items() if v is not None}


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A G-code job ready to stream: commands, their file lines and layer starts.

    ``commands`` may be a lazy sequence read from disk (see ``node_agent.jobfile``);
    the engine reads it in order. ``checked`` says every command is already known to
    be a single ASCII line without ``*`` (the safety filter checked it), so the engine
    need not read the whole job again before it starts.
    """

    name: str
    commands: Sequence[str]
    source_lines: Sequence[int]
    layer_starts: Sequence[int] = ()
    layer_numbers: Sequence[int] = ()
    checked: bool = False

    def layer_at(self, index: int) -> int | None:
        """The layer the command at ``index`` belongs to, or None before the first marker."""
        pos = bisect.bisect_right(self.layer_starts, index) - 1
        return self.layer_numbers[pos] if pos >= 0 else None

    @property
    def layer_count(self) -> int:
        return len(self.layer_starts)


def layer_marker(line: str, count: int) -> int | None:
    """The layer a slicer comment line starts (``;LAYER:3``, ``;LAYER_CHANGE``), else None.

    Args:
        line: One file line.
        count: Layers seen so far (the number of an unnumbered ``;LAYER_CHANGE``).
    """
    stripped = line.strip()
    if stripped.startswith(";LAYER:"):
        value = stripped[7:].strip()
        return int(value) if value.lstrip("-").isascii() and value.lstrip("-").isdigit() and len(value) < 10 else count
    if stripped.startswith(";LAYER_CHANGE"):
        return count
    return None


def prepare(name: str, lines: Iterable[str]) -> PreparedJob:
    """Prepare the lines of one G-code file for streaming.

    Args:
        name: the job's name (usually the file name).
        lines: the file's lines, with or without line endings.

    Returns:
        The commands without comments and blank lines, each with its 1-based
        file line, and the command index where each slicer layer starts.
    """
    commands: list[str] = []
    sources: list[int] = []
    starts: list[int] = []
    numbers: list[int] = []
    for lineno, line in enumerate(lines, start=1):
        if line.lstrip().startswith(";"):
            layer = layer_marker(line, len(starts))
            if layer is not None:
                starts.append(len(commands))
                numbers.append(layer)
            continue
        command = strip_comment(line)
        if command:
            commands.append(command)
            sources.append(lineno)
    return PreparedJob(name, tuple(commands), tuple(sources), tuple(starts), tuple(numbers))
