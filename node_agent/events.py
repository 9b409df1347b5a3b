"""Events and errors of the Marlin host protocol engine (``node_agent.protocol``).

Events are what the firmware said, as frozen, slotted dataclasses named as
nouns; the engine returns them from ``next_event()``. Firmware ``Error:`` lines
that belong to the protocol are events (:class:`FirmwareError`), not exceptions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Busy",
    "ConnectionClosed",
    "Echo",
    "Event",
    "FirmwareError",
    "FirmwareInfo",
    "HostAction",
    "JobFinished",
    "JobOutcome",
    "LocalProtocolError",
    "Ok",
    "Other",
    "RemoteProtocolError",
    "Resend",
    "Start",
    "TemperatureReport",
    "Wait",
]

class LocalProtocolError(Exception):
    """We used the engine wrongly (e.g. started a job while one is running)."""


class RemoteProtocolError(Exception):
    """The firmware said something the protocol does not allow."""


@dataclass(frozen=True, slots=True)
class Start:
    """The firmware (re)started: ``start`` after a reset."""


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    """The ``M115`` report; emitted once the handshake is complete."""

    name: str | None
    fields: Mapping[str, str] = field(default_factory=dict)
    capabilities: Mapping[str, bool] = field(default_factory=dict)

    @property
    def is_marlin(self) -> bool:
        return self.name is not None and "marlin" in self.name.lower()

    def has(self, capability: str) -> bool:
        return self.capabilities.get(capability, False)


@dataclass(frozen=True, slots=True)
class Ok:
    """An acknowledgement; ``line_number``/``planner_free``/``buffer_free`` with ADVANCED_OK."""

    line_number: int | None = None
    planner_free: int | None = None
    buffer_free: int | None = None


@dataclass(frozen=True, slots=True)
class TemperatureReport:
    """A ``T:`` / ``B:`` report, pushed by ``M155`` or carried on an ``ok`` line."""

    hotend_c: float | None
    hotend_target_c: float | None
    bed_c: float | None
    bed_target_c: float | None


@dataclass(frozen=True, slots=True)
class Resend:
    """``Resend: N`` / ``rs N``; ``stale`` when it was a storm echo the engine ignored."""

    line_number: int
    stale: bool = False


@dataclass(frozen=True, slots=True)
class Busy:
    """``busy: processing`` and friends: alive, keep waiting."""

    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """``wait``: the firmware's queue has been empty for a while."""


@dataclass(frozen=True, slots=True)
class Echo:
    text: str


@dataclass(frozen=True, slots=True)
class HostAction:
    """``//action:<name>`` (pause, resume, cancel, prompt_…)."""

    action: str


@dataclass(frozen=True, slots=True)
class FirmwareError:
    """An ``Error:`` line; ``fatal`` ones stop the printer and end the job."""

    message: str
    fatal: bool
    last_line: int | None = None


@dataclass(frozen=True, slots=True)
class Other:
    text: str


class JobOutcome(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobFinished:
    """The job ended; ``retryable`` when the job itself was not at fault."""

    name: str
    outcome: JobOutcome
    reason: str | None = None
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The byte stream ended (``receive_data(b"")``)."""


Event = (
    Start | FirmwareInfo | Ok | TemperatureReport | Resend | Busy | Wait | Echo | HostAction
    | FirmwareError | Other | JobFinished | ConnectionClosed
)
