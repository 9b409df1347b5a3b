"""The Session protocol as frozen dataclasses: what the agent says and hears (pure).

``node_agent.hub_client`` converts these to and from the generated protos; nothing
else in the agent sees a proto. Field meanings are those of nodes.proto.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from node_agent.jobs import EventKind, JobState

__all__ = [
    "AgentMessage",
    "ArtifactRef",
    "Assigned",
    "Attribution",
    "Cancel",
    "CommandAck",
    "DeclineReason",
    "Desired",
    "DesiredJob",
    "Drain",
    "EventAck",
    "Heartbeat",
    "HeldJob",
    "Hello",
    "Hold",
    "HubCommand",
    "JobEvent",
    "JobProgress",
    "Offer",
    "OfferReply",
    "Phase",
    "Ping",
    "PrinterChanged",
    "PrinterSnapshot",
    "StartDenied",
    "StartGranted",
    "StartRequest",
    "Superseded",
    "Welcome",
]


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


class Phase(enum.Enum):
    IDLE = "idle"
    PRINTING = "printing"
    PAUSED = "paused"
    ERROR = "error"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"


class DeclineReason(enum.Enum):
    NO_CAPACITY = "no_capacity"
    NOT_PRINTABLE = "not_printable"
    MATERIAL_UNAVAILABLE = "material_unavailable"
    DEADLINE = "deadline"
    OPERATOR_DECLINED = "operator_declined"


class Desired(enum.Enum):
    UNSPECIFIED = "unspecified"
    RUN = "run"
    HOLD = "hold"
    CANCEL = "cancel"
    FORGET = "forget"


# ---------------------------------------------------------------- agent -> hub
@dataclass(frozen=True, slots=True)
class PrinterSnapshot:
    """One printer as the hub should see it (PrinterState)."""

    printer_id: str
    model: str
    build_volume_mm: tuple[float, float, float]
    nozzle_mm: float
    materials: tuple[str, ...]
    phase: Phase
    bed_clear: bool
    accepting: bool
    slicer_profile: str
    queue_depth: int = 0
    hotend_c: float = 0.0
    bed_c: float = 0.0
    rate_per_hour: tuple[str, int] | None = None   # (currency, minor units)
    rate_per_gram: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class HeldJob:
    job_id: str
    lease_epoch: int
    state: JobState
    last_agent_seq: int
    printer_id: str


@dataclass(frozen=True, slots=True)
class Hello:
    agent_id: str
    agent_version: str
    last_hub_seq_applied: int
    printers: tuple[PrinterSnapshot, ...]
    jobs: tuple[HeldJob, ...]
    location: str = ""
    latitude: float = 0.0
    longitude: float = 0.0


@dataclass(frozen=True, slots=True)
class JobProgress:
    job_id: str
    lease_epoch: int
    percent: float
    layer: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    printers: tuple[PrinterSnapshot, ...]
    progress: tuple[JobProgress, ...] = ()


@dataclass(frozen=True, slots=True)
class OfferReply:
    offer_id: str
    accept: bool
    reason: DeclineReason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StartRequest:
    job_id: str
    lease_epoch: int
    printer_id: str


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One report of the outbox; ``(agent, agent_seq)`` is its idempotency key."""

    agent_seq: int
    job_id: str
    lease_epoch: int
    kind: EventKind
    at: float                       # Unix seconds
    data: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _frozen(self.data))


@dataclass(frozen=True, slots=True)
class CommandAck:
    hub_seq: int


@dataclass(frozen=True, slots=True)
class PrinterChanged:
    printer: PrinterSnapshot


AgentMessage = (Hello | Heartbeat | OfferReply | StartRequest | JobEvent | CommandAck
                | PrinterChanged)


# ---------------------------------------------------------------- hub -> agent
@dataclass(frozen=True, slots=True)
class DesiredJob:
    job_id: str
    lease_epoch: int
    desired: Desired


@dataclass(frozen=True, slots=True)
class Welcome:
    session_epoch: int
    last_agent_seq_committed: int
    desired: tuple[DesiredJob, ...] = ()
    heartbeat_interval_s: int = 0
    lease_ttl_s: int = 0
    hub_seq: int = 0


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    sha256: str
    size: int
    kind: str                       # mesh, scad, gcode
    path: str


@dataclass(frozen=True, slots=True)
class Attribution:
    design: str
    revision_id: str
    title: str
    license: str
    licensor: str
    contributors: tuple[str, ...] = ()
    notice: str = ""


@dataclass(frozen=True, slots=True)
class Offer:
    hub_seq: int
    offer_id: str
    job_id: str
    design: str
    revision_id: str
    artifacts: tuple[ArtifactRef, ...]
    parameters: Mapping[str, str]
    material: str
    printer_id: str
    lease_epoch: int
    attributions: tuple[Attribution, ...] = ()
    bbox_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    expires_at: float = 0.0          # Unix seconds, 0 = none given

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen(self.parameters))


@dataclass(frozen=True, slots=True)
class Assigned:
    hub_seq: int
    job_id: str
    offer_id: str
    lease_epoch: int


@dataclass(frozen=True, slots=True)
class StartGranted:
    hub_seq: int
    job_id: str
    lease_epoch: int


@dataclass(frozen=True, slots=True)
class StartDenied:
    hub_seq: int
    job_id: str
    lease_epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class Cancel:
    hub_seq: int
    job_id: str
    lease_epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class Hold:
    hub_seq: int
    job_id: str
    lease_epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class EventAck:
    agent_seq: int
    hub_seq: int = 0


@dataclass(frozen=True, slots=True)
class Drain:
    """Finish the prints in hand, take no new job, for the rest of this session (the hub sends it
    again in each session while the node stays drained)."""

    hub_seq: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Superseded:
    new_session_epoch: int
    hub_seq: int = 0


@dataclass(frozen=True, slots=True)
class Ping:
    sent_unix_ms: int
    hub_seq: int = 0


HubCommand = (Welcome | Offer | Assigned | StartGranted | StartDenied | Cancel | Hold | EventAck
              | Drain | Superseded | Ping)
