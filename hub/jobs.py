"""The hub's job lifecycle: states, the one transition table, timers, production data. Pure.

States are lower-case strings in the database. Every move is checked against
TRANSITIONS before any row changes (`check_transition` raises InvalidTransition);
the store then applies it as a compare-and-set on (job id, state, lease epoch).

Production data keys of `JobEvent.data` per event kind (all values are strings):

* SLICED: estimated_seconds, filament_mm, filament_g, slicer, slicer_version, profile, layer_height_mm
* COMPLETED: actual_seconds, filament_mm_used, filament_g_used, resends
* FAILED: failure_reason, retryable (true|false), detected_by (firmware|slicer|printability|agent|operator), step
* PRINTABILITY_FAILED: findings (a JSON list)
* OUTCOME: outcome (success|failed), reason, notes
* INTERRUPTED, CANCELLED: reason
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from hub.errors import InvalidArgument, InvalidTransition
from hub.limits import plain_text

__all__ = [
    "ACTIVE",
    "DEFAULT_TIMERS",
    "EVENT_KINDS",
    "HELD",
    "TERMINAL",
    "TRANSITIONS",
    "Change",
    "Command",
    "Job",
    "JobSpec",
    "JobState",
    "TimerPolicy",
    "check_data",
    "check_transition",
    "event_effect",
    "is_unstarted",
    "lost_contact_deadline",
    "production_update",
]

MAX_DATA_ENTRIES = 32
MAX_DATA_KEY = 64
MAX_DATA_VALUE = 16 * 1024
MAX_PARAMETERS = 64
MAX_PARAM_KEY = 64
MAX_PARAM_VALUE = 1024
MAX_REASON = 1024
MAX_FINDINGS = 100  # of one printability report
MAX_NUMBER = 1e9
MAX_PRINT_SECONDS = 30 * 24 * 3600  # a month: longer than any real print (a node's estimate or report)
# Event data numbers that land on the public record: (smallest value above 0, largest value). 0 means
# "not known"; a tiny estimate would make the record's relative errors (actual - estimate) / estimate
# explode, so an estimate has a floor, and no figure exceeds what one real print can use.
_BOUNDS = {
    "estimated_seconds": (1.0, MAX_PRINT_SECONDS), "actual_seconds": (0.0, MAX_PRINT_SECONDS),
    "filament_mm": (1.0, 1e7), "filament_mm_used": (0.0, 1e7),  # 10 km of filament
    "filament_g": (0.01, 1e5), "filament_g_used": (0.0, 1e5),  # 100 kg
    "layer_height_mm": (0.001, 10.0), "resends": (0.0, MAX_NUMBER),
}
MAX_LAYER = 1_000_000  # layers of one print (a metre at 1 µm); stored as a 32-bit integer


class JobState(enum.Enum):
    QUEUED = "queued"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    PREPARING = "preparing"
    READY = "ready"
    PRINTING = "printing"
    PRINTED = "printed"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST_CONTACT = "lost_contact"
    OUTCOME_UNKNOWN = "outcome_unknown"


S = JobState
_UNSTARTED = frozenset({S.ASSIGNED, S.PREPARING, S.READY})

TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.OFFERED, S.CANCELLED, S.FAILED}),
    # Back to QUEUED: declined or expired offer.
    S.OFFERED: frozenset({S.ASSIGNED, S.QUEUED, S.CANCELLED, S.FAILED}),
    # Back to QUEUED (new epoch): the lease of an unstarted job ran out.
    S.ASSIGNED: frozenset({S.PREPARING, S.READY, S.PRINTING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.PREPARING: frozenset({S.READY, S.PRINTING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.READY: frozenset({S.PRINTING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.PRINTING: frozenset({S.PRINTED, S.FAILED, S.CANCELLED, S.LOST_CONTACT}),
    S.PRINTED: frozenset({S.DONE, S.FAILED}),
    # The agent came back (same epoch): its word counts again.
    S.LOST_CONTACT: frozenset({S.PRINTING, S.PRINTED, S.FAILED, S.CANCELLED, S.OUTCOME_UNKNOWN}),
    # A person decides (requeue bumps the epoch); a late word of the same epoch still counts.
    S.OUTCOME_UNKNOWN: frozenset({S.QUEUED, S.FAILED, S.PRINTING, S.PRINTED, S.CANCELLED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),  # only by an admin's requeue
    S.CANCELLED: frozenset(),
}

TERMINAL = frozenset({S.DONE, S.FAILED, S.CANCELLED})
# States in which a node holds the job (its printer is busy with it).
HELD = frozenset({S.OFFERED, S.ASSIGNED, S.PREPARING, S.READY, S.PRINTING, S.PRINTED, S.LOST_CONTACT,
                  S.OUTCOME_UNKNOWN})
ACTIVE = frozenset(JobState) - TERMINAL

EVENT_KINDS = (
    "downloaded", "printability_ok", "printability_failed", "sliced", "started", "progress", "paused",
    "resumed", "failed", "completed", "bed_cleared", "cancelled", "interrupted", "outcome",
)


def check_transition(current: JobState, target: JobState) -> None:
    """Raises: InvalidTransition: the table has no move from current to target."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} job cannot become {target.value}")


def is_unstarted(state: JobState) -> bool:
    """Assigned to a node but no print started: safe to hand to another node."""
    return state in _UNSTARTED


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    """Lease and liveness timers (agent_protocol.md 2c), in seconds."""

    heartbeat_s: int = 15
    suspect_after_s: int = 45
    offer_expiry_s: int = 120
    lease_ttl_s: int = 120          # unstarted job of a vanished node: back to the queue after this
    outcome_grace_s: int = 2 * 3600  # lost_contact -> outcome_unknown at estimated end + this
    enrollment_ttl_s: int = 24 * 3600
    sweep_interval_s: float = 1.0
    queue_poll_s: float = 0.05       # how soon jobs queued by another process are offered
    decline_ttl_s: int = 600         # a node that declined (or let expire) an offer is asked again after this


DEFAULT_TIMERS = TimerPolicy()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to make; ORDERS and the admin CLI create jobs from it."""

    design: str
    revision_id: str
    material: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    order_id: str | None = None
    node: str | None = None
    printer: str | None = None
    paid: bool = False
    payout_currency: str = ""
    payout_minor: int = 0
    part: str = ""  # the manifest part ([[parts]] name) to make; "" = the whole design


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    design: str
    revision_id: str
    material: str
    parameters: Mapping[str, str]
    order_id: str | None
    state: JobState
    node: str | None
    printer: str | None
    lease_epoch: int
    progress_percent: float
    layer: int
    estimated_seconds: int
    created_at: str
    updated_at: str
    failure_reason: str
    paid: bool = False
    payout_currency: str = ""
    payout_minor: int = 0
    offer_id: str = ""
    offer_expires_at: str = ""
    started_at: str = ""
    cancel_requested: bool = False
    want_node: str | None = None
    want_printer: str | None = None
    tried_nodes: tuple[str, ...] = ()
    production: Mapping[str, object] = field(default_factory=dict)
    lost_at: str = ""
    part: str = ""
    tried_at: str = ""  # when tried_nodes last grew; they are forgotten decline_ttl_s later


@dataclass(frozen=True, slots=True)
class Command:
    """A hub -> agent command kept in the node's outbox until acked (kind: offer, assigned,
    start_granted, start_denied, cancel, hold); body holds lease_epoch, reason, offer fields."""

    kind: str
    job_id: str
    node: str
    body: Mapping[str, object]
    hub_seq: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """What one use case does to one job, decided on the job as locked in the store.

    `values` are job fields to set; `bump_epoch` fences every holder of the old epoch;
    `fabrication` is the outcome of the production record to write (once per epoch);
    `applied`/`note` describe a reported event (stale or refused events change nothing).
    """

    target: JobState | None = None
    values: Mapping[str, object] = field(default_factory=dict)
    bump_epoch: bool = False
    commands: tuple[Command, ...] = ()
    production: Mapping[str, object] = field(default_factory=dict)
    fabrication: str | None = None
    applied: bool = True
    note: str = ""


def lost_contact_deadline(started_at: dt.datetime | None, since: dt.datetime, estimated_seconds: int,
                          policy: TimerPolicy) -> dt.datetime:
    """When a LOST_CONTACT job becomes OUTCOME_UNKNOWN: estimated end + grace.

    Without a start time or estimate, the contact loss itself counts as the estimated end.
    """
    end = since if started_at is None else max(since, started_at + dt.timedelta(seconds=estimated_seconds))
    return end + dt.timedelta(seconds=policy.outcome_grace_s)


def check_data(data: Mapping[str, str]) -> dict[str, str]:
    """Bound a JobEvent data map (also refuses NUL characters, which PostgreSQL cannot store).

    Raises:
        InvalidArgument: too many entries, a key or value too long, or a NUL character.
    """
    if len(data) > MAX_DATA_ENTRIES:
        raise InvalidArgument(f"event data has {len(data)} entries; at most {MAX_DATA_ENTRIES} are allowed")
    for key, value in data.items():
        if not key or len(key) > MAX_DATA_KEY:
            raise InvalidArgument(f"event data key {key[:80]!r} must be 1-{MAX_DATA_KEY} characters")
        if len(value) > MAX_DATA_VALUE:
            raise InvalidArgument(f"event data {key!r} is {len(value)} characters; at most {MAX_DATA_VALUE}")
        if "\x00" in key or "\x00" in value:
            raise InvalidArgument(f"event data {key[:64]!r} contains a NUL character")
    return dict(data)


def _number(data: Mapping[str, str], key: str) -> float | None:
    text = data.get(key)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise InvalidArgument(f"event data {key}={text[:40]!r} must be a number") from exc
    low, high = _BOUNDS[key]
    if not (value == 0 or low <= value <= high) or value < 0:  # also refuses NaN
        raise InvalidArgument(f"event data {key}={text[:40]!r} must be 0 (not known) or a number from {low:g} "
                              f"to {high:g}", reason="NUMBER_OUT_OF_RANGE", field=f"data.{key}")
    return value


_NUMBERS = {
    "sliced": {"estimated_seconds": "estimated_seconds", "filament_mm": "estimated_filament_mm",
               "filament_g": "estimated_filament_g", "layer_height_mm": "layer_height_mm"},
    "completed": {"actual_seconds": "actual_seconds", "filament_mm_used": "actual_filament_mm",
                  "filament_g_used": "actual_filament_g", "resends": "resends"},
}
_TEXTS = {
    "sliced": {"slicer": "slicer", "slicer_version": "slicer_version", "profile": "slicer_profile"},
    "failed": {"failure_reason": "failure_reason", "detected_by": "detected_by", "step": "step",
               "retryable": "retryable"},
    "outcome": {"reason": "failure_reason", "notes": "operator_notes"},
    "interrupted": {"reason": "failure_reason"},
    "cancelled": {"reason": "failure_reason"},
}


_MULTI_LINE = frozenset({"failure_reason", "operator_notes"})


def production_update(kind: str, data: Mapping[str, str]) -> dict[str, object]:
    """The production data an event adds to its job (merged into the job's record).

    Raises:
        InvalidArgument: a number is not a number, findings are not a JSON list, an outcome is unknown.
    """
    update: dict[str, object] = {}
    for key, name in _NUMBERS.get(kind, {}).items():
        value = _number(data, key)
        if value is not None:
            update[name] = value
    for key, name in _TEXTS.get(kind, {}).items():
        if data.get(key):  # printers and their firmware write these: cleaned, not refused
            update[name] = plain_text(data[key][:MAX_REASON], multiline=name in _MULTI_LINE)
    if kind == "printability_failed" and "findings" in data:
        update["findings"] = _findings(data["findings"])
    if kind == "outcome":
        update["outcome"] = _outcome(data)
    return update


def _findings(text: str) -> list[dict[str, object]]:
    """The findings of a printability report, in the one shape the record shows: code, severity and
    message as text, details as text by name (whatever else an agent sent is not kept).

    Raises:
        InvalidArgument: not a JSON list of at most MAX_FINDINGS objects.
    """
    try:
        findings = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        raise InvalidArgument("event data findings must be a JSON list of findings") from exc
    if not isinstance(findings, list) or len(findings) > MAX_FINDINGS or not all(isinstance(f, dict) for f in findings):
        raise InvalidArgument(f"event data findings must be a JSON list of at most {MAX_FINDINGS} objects")
    return [_finding(f) for f in findings]


def _finding(finding: Mapping[str, object]) -> dict[str, object]:
    named = {k: v for k, v in finding.items() if k not in ("code", "severity", "message", "details")}
    details = finding.get("details")
    if isinstance(details, dict):
        named = {**details, **named}
    return {"code": _text(finding.get("code")), "severity": _text(finding.get("severity")),
            "message": _text(finding.get("message")),
            "details": {str(k)[:MAX_DATA_KEY]: _text(v) for k, v in list(named.items())[:MAX_DATA_ENTRIES]}}


def _text(value: object) -> str:
    """A finding's field as the record shows it (a list or object as its JSON)."""
    if value is None:
        return ""
    shown = value if isinstance(value, str) else json.dumps(value)
    return shown[:MAX_REASON]


def _outcome(data: Mapping[str, str]) -> str:
    outcome = data.get("outcome", "")
    if outcome not in ("success", "failed"):
        raise InvalidArgument(f"OUTCOME event needs data outcome=success|failed, not {outcome[:40]!r}")
    return outcome


def event_effect(kind: str, state: JobState, data: Mapping[str, str]) -> JobState | None:
    """The state a job of `state` moves to on an event of `kind`; None = no state change.

    Raises:
        InvalidArgument: an OUTCOME event without a valid outcome.
        InvalidTransition: the event makes no sense in this state (e.g. COMPLETED on a queued job).
    """
    target = _target(kind, state, data)
    if target is None or target is state:
        return None
    check_transition(state, target)
    return target


def _target(kind: str, state: JobState, data: Mapping[str, str]) -> JobState | None:
    if kind in ("downloaded", "printability_ok"):
        return S.PREPARING if state is S.ASSIGNED else None
    if kind == "sliced":
        return S.READY if state in (S.ASSIGNED, S.PREPARING) else None
    if kind in ("started", "progress", "paused", "resumed"):
        return S.PRINTING if state in (S.LOST_CONTACT, S.OUTCOME_UNKNOWN) else None
    if kind == "completed":
        return S.PRINTED
    if kind in ("failed", "printability_failed", "interrupted"):
        return S.FAILED
    if kind == "cancelled":
        return S.CANCELLED
    if kind == "outcome":
        if state is not S.PRINTED:
            raise InvalidTransition(f"an outcome is reported for a printed job, this one is {state.value}")
        return S.DONE if _outcome(data) == "success" else S.FAILED
    return None  # bed_cleared: the agent's own business
