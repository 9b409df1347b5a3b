"""The interface every printer driver implements, and its vocabulary.

A driver is a thin pump between one printer and the agent: the serial driver
around the sans-IO engine in ``node_agent.protocol``, the OctoPrint driver
around a real OctoPrint server. Both pass ``tests/contract/test_printer_driver``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from node_agent.jobfile import SafeJob


class PrinterPhase(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    IDLE = "idle"
    PRINTING = "printing"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    ERROR = "error"


class PrintOutcome(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


#: Readings outside this range (°C) are broken sensors or a broken device, never a heater:
#: nothing is colder than absolute zero, and no printer heats beyond 2000 °C.
READING_RANGE_C: tuple[float, float] = (-273.15, 2000.0)


def reading(value: object) -> float | None:
    """A temperature as a driver may report it: a finite real number in ``READING_RANGE_C``.

    Anything else (a string, a bool, a list, NaN, infinity, 1e300) is None, "no reading",
    so that a broken or hostile device cannot push a wrong type or an absurd value into
    the hub's snapshot, the metrics or ``spime-node status``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = READING_RANGE_C
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) and low <= number <= high else None


@dataclass(frozen=True, slots=True)
class Temperatures:
    hotend_c: float | None = None
    hotend_target_c: float | None = None
    bed_c: float | None = None
    bed_target_c: float | None = None


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """A plain-data snapshot of one printer, safe to hand to any task."""

    phase: PrinterPhase
    temperatures: Temperatures = field(default_factory=Temperatures)
    job_name: str | None = None
    lines_total: int = 0
    lines_sent: int = 0
    bytes_sent: int = 0
    resends: int = 0
    layer: int | None = None
    percent: float = 0.0
    error: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class PrintResult:
    outcome: PrintOutcome
    lines_sent: int
    resends: int
    seconds: float
    reason: str | None = None
    retryable: bool = False


class DriverError(Exception):
    """Base of every error a driver raises; ``retryable`` tells the caller what to do."""

    retryable = False


class ConnectionFailed(DriverError):
    """The printer (port or server) cannot be reached; trying again later may work."""

    retryable = True


class AuthenticationFailed(DriverError):
    """The credentials (e.g. an OctoPrint API key) were refused; fix the config."""


class PrinterNotReady(DriverError):
    """The printer is busy, in an error state or not connected for this request."""

    retryable = True


class JobRejected(DriverError):
    """The job itself is unacceptable (e.g. it breaks the printer's safety limits)."""


class PrinterDriver(Protocol):
    """What the agent needs from one printer, whatever sits behind it."""

    name: str

    async def connect(self) -> None:
        """Open the link and wait until the printer is ready for a job.

        Raises:
            ConnectionFailed: the port or server cannot be reached.
            AuthenticationFailed: the credentials were refused.
            PrinterNotReady: the printer reports an error state.
        """

    async def close(self) -> None:
        """Release the link; idempotent, safe before connect()."""

    def status(self) -> PrinterStatus:
        """Return the current snapshot without I/O."""

    async def print_job(self, job: SafeJob) -> PrintResult:
        """Stream one safety-checked G-code file from disk and wait for its end.

        Only a ``SafeJob`` (from ``node_agent.jobfile.check_file``) is accepted, so no
        path reaches a printer around the safety filter. A file that changed since
        its check is not sent on: the job ends FAILED, not retryable.

        Raises:
            PrinterNotReady: not connected, or another job is running.
            JobRejected: the driver's own checks refused the job.
        """

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def cancel(self) -> None:
        """Stop the job and run the printer's safe end sequence."""

    async def emergency_stop(self) -> None:
        """M112 or the equivalent, ahead of anything queued."""

    def updates(self) -> AsyncIterator[PrinterStatus]:
        """Yield a new snapshot on every change (progress, temperature, phase).

        The first snapshot comes at once; the iterator ends after ``close()``.
        """
