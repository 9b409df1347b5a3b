"""OctoPrint's push messages (``current``, ``event``) read into plain values, every type checked.

The push socket carries JSON from another program: any value may have any type (a
temperature as a string, ``state`` as a string, ``flags`` as a list, a payload as a
number). Every read goes through the typed getters below, so a value of the wrong
type or an absurd one is ignored ("no value"), never an exception in the event loop
and never a wrong-typed value in a ``PrinterStatus``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node_agent.drivers.base import PrinterPhase, Temperatures, reading

__all__ = [
    "EVENT_PHASES",
    "Progress",
    "error_text",
    "integer",
    "mapping",
    "phase_from_state",
    "progress",
    "temperatures",
    "text",
]

#: Longest text taken from a push message (an error, a state, a firmware name).
MAX_TEXT = 300
#: Largest file position or counter believed (OctoPrint's files are far smaller).
MAX_COUNT = 1 << 53

# PrinterStateChanged events arrive at once, ``current`` messages are throttled to
# ~2/s; error states are left to ``current``/``Error``, which carry the reason.
EVENT_PHASES = {
    "OFFLINE": PrinterPhase.DISCONNECTED, "CLOSED": PrinterPhase.DISCONNECTED,
    "OPEN_SERIAL": PrinterPhase.CONNECTING, "DETECT_SERIAL": PrinterPhase.CONNECTING,
    "CONNECTING": PrinterPhase.CONNECTING, "OPERATIONAL": PrinterPhase.IDLE,
    "STARTING": PrinterPhase.PRINTING, "PRINTING": PrinterPhase.PRINTING,
    "RESUMING": PrinterPhase.PRINTING, "FINISHING": PrinterPhase.PRINTING,
    "PAUSING": PrinterPhase.PAUSED, "PAUSED": PrinterPhase.PAUSED,
    "CANCELLING": PrinterPhase.CANCELLING,
}


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def text(value: object) -> str | None:
    """``value`` if it is a string (cut to ``MAX_TEXT`` characters), else None."""
    return value[:MAX_TEXT] if isinstance(value, str) else None


def integer(value: object) -> int | None:
    """``value`` if it is an integer in 0..``MAX_COUNT`` (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        return None
    return value


def _percent(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if 0.0 <= number <= 100.0 else None  # NaN fails both comparisons


def phase_from_state(state: object) -> PrinterPhase:
    """Map OctoPrint's ``state`` object (text + flags) onto a ``PrinterPhase``."""
    state = mapping(state)
    flags = mapping(state.get("flags"))
    label = text(state.get("text")) or ""
    if flags.get("error") is True or label.startswith(("Error", "Offline after error")):
        return PrinterPhase.ERROR
    for flag, phase in (("cancelling", PrinterPhase.CANCELLING), ("paused", PrinterPhase.PAUSED),
                        ("pausing", PrinterPhase.PAUSED), ("printing", PrinterPhase.PRINTING)):
        if flags.get(flag) is True:
            return phase
    if flags.get("operational") is True:
        return PrinterPhase.PRINTING if flags.get("ready") is False else PrinterPhase.IDLE
    if label.startswith(("Offline", "Closed")) or not label:
        return PrinterPhase.DISCONNECTED
    return PrinterPhase.CONNECTING


def temperatures(temps: object, old: Temperatures) -> Temperatures:
    """The newest sample of ``current.temps``; a missing or unreadable value keeps the old one."""
    if not isinstance(temps, list) or not temps:
        return old
    last = mapping(temps[-1])
    tool, bed = mapping(last.get("tool0")), mapping(last.get("bed"))

    def pick(new: object, kept: float | None) -> float | None:
        value = reading(new)
        return kept if value is None else value

    return Temperatures(pick(tool.get("actual"), old.hotend_c),
                        pick(tool.get("target"), old.hotend_target_c),
                        pick(bed.get("actual"), old.bed_c),
                        pick(bed.get("target"), old.bed_target_c))


def error_text(state: object) -> str:
    """The reason OctoPrint gives for an error state."""
    state = mapping(state)
    return text(state.get("error")) or text(state.get("text")) or "unknown error"


@dataclass(frozen=True, slots=True)
class Progress:
    """``current.progress``: how far OctoPrint has read the file (bytes) and its percentage."""

    filepos: int
    completion: float | None


def progress(value: object) -> Progress | None:
    """``current.progress`` if its file position is readable, else None."""
    fields = mapping(value)
    filepos = integer(fields.get("filepos"))
    return None if filepos is None else Progress(filepos, _percent(fields.get("completion")))
