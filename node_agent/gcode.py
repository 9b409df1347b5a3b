"""G-code text helpers shared by the engine and the safety filter (pure).

A job is prepared once: comments and blank lines go, each command keeps the
number of the file line it came from (for error messages), and the slicer's
layer markers (Cura ``;LAYER:<n>``, PrusaSlicer/SuperSlicer ``;LAYER_CHANGE``)
become a short table of (command index, layer) so progress can name the layer.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PreparedJob", "parse_words", "prepare", "strip_comment"]

_HEAD = re.compile(r"([GMTgmt])(\d+)(?:\.\d+)?")
_WORD = re.compile(r"([A-Za-z])\s*([-+]?(?:\d+\.?\d*|\.\d+))")


def strip_comment(line: str) -> str:
    """Return the command part of one G-code line (``;`` comment and outer blanks removed)."""
    return line.split(";", 1)[0].strip()


def parse_words(command: str) -> tuple[str, dict[str, float]]:
    """Split a command into its word (``G1``, ``M104``) and numeric parameters.

    ``G1X10Y5`` (no spaces) works too; non-numeric parameters (``M117 text``)
    are ignored; a parameter given twice keeps its last value, as in Marlin.
    """
    text = command.strip()
    head = _HEAD.match(text)
    if head is None:
        return text.split(" ", 1)[0].upper(), {}
    word = f"{head.group(1).upper()}{int(head.group(2))}"
    if word in ("M117", "M118"):
        return word, {}
    rest = text[head.end() :]
    return word, {k.upper(): float(v) for k, v in _WORD.findall(rest)}


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A G-code job ready to stream: commands, their file lines and layer starts."""

    name: str
    commands: tuple[str, ...]
    source_lines: tuple[int, ...]
    layer_starts: tuple[int, ...] = ()
    layer_numbers: tuple[int, ...] = ()

    def layer_at(self, index: int) -> int | None:
        """The layer the command at ``index`` belongs to, or None before the first marker."""
        pos = bisect.bisect_right(self.layer_starts, index) - 1
        return self.layer_numbers[pos] if pos >= 0 else None

    @property
    def layer_count(self) -> int:
        return len(self.layer_starts)


def _layer_marker(line: str, count: int) -> int | None:
    stripped = line.strip()
    if stripped.startswith(";LAYER:"):
        value = stripped[7:].strip()
        return int(value) if value.lstrip("-").isdigit() else count
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
            layer = _layer_marker(line, len(starts))
            if layer is not None:
                starts.append(len(commands))
                numbers.append(layer)
            continue
        command = strip_comment(line)
        if command:
            commands.append(command)
            sources.append(lineno)
    return PreparedJob(name, tuple(commands), tuple(sources), tuple(starts), tuple(numbers))
