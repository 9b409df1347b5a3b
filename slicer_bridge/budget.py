"""Time budgets of the printability checks: a deadline polled between chunks of work."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from slicer_bridge.findings import Finding, Severity, Tolerances

__all__ = ["Budget", "OutOfTime", "timed", "timed_out"]


class OutOfTime(Exception):
    """Raised by `Budget.check` past the deadline; the orchestrator turns it into a finding."""


class Budget:
    """A deadline that long-running loops poll between chunks."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.perf_counter() + seconds

    def check(self) -> None:
        """Return while time is left.

        Raises:
            OutOfTime: The deadline has passed.
        """
        if time.perf_counter() > self.deadline:
            raise OutOfTime


def timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    """Call fn(), adding its wall time to timings[name] even when it raises.

    Raises:
        Whatever fn raises.
    """
    started = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


def timed_out(name: str, tol: Tolerances) -> Finding:
    """The WARNING finding of check `name` stopped at its time limit."""
    return Finding("check_timed_out", Severity.WARNING,
                   f"the {name.replace('_', ' ')} check ran out of its {tol.check_seconds:g} s "
                   "time limit and was not completed", {"check": name})
