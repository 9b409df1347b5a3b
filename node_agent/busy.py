"""How long one command may keep a Marlin firmware from acknowledging it. Pure: no clock here.

Marlin's host keepalive (``HOST_KEEPALIVE_FEATURE``, ``GcodeSuite::host_keepalive()``) prints
``echo:busy: processing`` every ``DEFAULT_KEEPALIVE_INTERVAL`` (2 s; ``M113 S`` sets up to 60 s)
while a command blocks the queue, ``busy: paused for user`` / ``busy: paused for input`` while
M0/M1/M600 wait for the operator and, with ``BUSY_WHILE_HEATING``, during M109/M190 too (without
it the firmware prints only temperature reports while it heats). A keepalive proves the firmware
runs, not that the command will ever end: a heater that never reaches its target, a probe that
never triggers, a planner that never drains. So each command gets a ceiling on the time it may
stay unacknowledged, however lively the firmware sounds meanwhile; past it the job fails as a
firmware fault. The ceilings are generous: they catch a printer that is stuck, not a slow one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from node_agent.gcode import parse_words

__all__ = ["BusyLimits"]

_HEATING: Final = frozenset({"M109", "M190", "M191", "M303"})
_HOMING: Final = frozenset({"G28", "G29", "G30", "G32", "G33", "G34", "G35", "G80", "M48"})
_OPERATOR: Final = frozenset({"M0", "M1", "M600", "M226"})
_DWELL: Final = frozenset({"G4"})


@dataclass(frozen=True, slots=True)
class BusyLimits:
    """The longest time one command may stay unacknowledged (busy, or only reporting temperatures).

    Attributes:
        command_s: any other command. A move is acknowledged once it is in the planner, which
            waits at most for the moves already queued; M400 waits for all of them.
        homing_s: homing, probing and bed levelling (G28, G29, G30, G32-G35, G80, M48): a
            dense mesh with a slow probe takes minutes.
        heating_s: waiting for a temperature (M109, M190, M191) or a PID autotune (M303): a
            large bed or a chamber can take most of an hour.
        operator_s: waiting for a person (M0, M1, M600 filament change, M226 pin wait).

    A dwell (``G4 S<s>``/``G4 P<ms>``) may take what it asks for plus ``command_s``, at most
    ``operator_s``.
    """

    command_s: float = 600.0
    homing_s: float = 1800.0
    heating_s: float = 3600.0
    operator_s: float = 43200.0

    def limit_s(self, command: str) -> float:
        """The ceiling for one command (its text as sent, without line number and checksum)."""
        word, params = parse_words(command)
        if word in _HEATING:
            return self.heating_s
        if word in _HOMING:
            return self.homing_s
        if word in _OPERATOR:
            return self.operator_s
        if word in _DWELL:
            asked = max(0.0, params.get("S", 0.0)) + max(0.0, params.get("P", 0.0)) / 1000
            return min(self.command_s + asked, max(self.operator_s, self.command_s))
        return self.command_s

    def ceiling(self, commands: Iterable[str]) -> tuple[float, str | None]:
        """The most generous ceiling among the commands waiting in the firmware, and its command.

        Marlin acknowledges in order, so only the oldest is running; the most generous one is
        taken all the same, so that a lost ``ok`` can never cut a long wait short.
        """
        best, which = self.command_s, None
        for command in commands:
            limit = self.limit_s(command)
            if which is None or limit > best:
                best, which = limit, command
        return best, which
