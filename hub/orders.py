"""The order state machine: an Enum, one transition table, and the state derived from the order's jobs. Pure.

An order owns one job per fabricated object. Its state is never set by hand:
it is derived from its jobs' states (hub/jobs.py, lower-case strings) and then
checked against the table, so an order never moves backwards out of a final
state. ``placed`` is the moment between accepting the order and creating its jobs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hub.domain import Attribution
from hub.errors import InvalidArgument, InvalidTransition
from hub.manifest import MESH_SUFFIXES, ParamValue, parse_manifest

__all__ = [
    "FINAL_STATES",
    "JOB_STAGE",
    "TRANSITIONS",
    "Grant",
    "LedgerRow",
    "Order",
    "OrderObject",
    "OrderState",
    "PrintedPart",
    "RatingRow",
    "StoredQuote",
    "advance",
    "cancellable",
    "derive_state",
    "printed_part",
]


class OrderState(enum.Enum):
    PLACED = "placed"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    PRINTING = "printing"
    PRINTED = "printed"  # the firmware finished; waiting for the operator's verdict
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST_CONTACT = "lost_contact"
    OUTCOME_UNKNOWN = "outcome_unknown"


S = OrderState
FINAL_STATES = frozenset({S.DELIVERED, S.FAILED, S.CANCELLED, S.LOST_CONTACT})
_ACTIVE = (S.QUEUED, S.ASSIGNED, S.PRINTING, S.PRINTED, S.OUTCOME_UNKNOWN)

TRANSITIONS: Mapping[OrderState, frozenset[OrderState]] = {
    S.PLACED: frozenset({*_ACTIVE, *FINAL_STATES}),
    S.QUEUED: frozenset({*_ACTIVE, *FINAL_STATES}),
    S.ASSIGNED: frozenset({*_ACTIVE, *FINAL_STATES}),
    S.PRINTING: frozenset({*_ACTIVE, *FINAL_STATES}),
    S.PRINTED: frozenset({*_ACTIVE, *FINAL_STATES}),
    S.OUTCOME_UNKNOWN: frozenset({*_ACTIVE, *FINAL_STATES}),
    S.DELIVERED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.LOST_CONTACT: frozenset(),
}

# A job's state as an order sees it (job states of hub/jobs.py; declined/expired offers go back to queued).
JOB_STAGE: Mapping[str, OrderState] = {
    "queued": S.QUEUED, "offered": S.QUEUED, "declined": S.QUEUED, "expired": S.QUEUED,
    "assigned": S.ASSIGNED, "preparing": S.ASSIGNED, "ready": S.ASSIGNED,
    "printing": S.PRINTING, "printed": S.PRINTED, "outcome_unknown": S.OUTCOME_UNKNOWN,
    "done": S.DELIVERED, "failed": S.FAILED, "cancelled": S.CANCELLED, "lost_contact": S.LOST_CONTACT,
}
_PROGRESS_ORDER = (S.QUEUED, S.ASSIGNED, S.PRINTING, S.PRINTED)


def _stage(job_state: str) -> OrderState:
    try:
        return JOB_STAGE[job_state]
    except KeyError as exc:
        raise InvalidTransition(f"unknown job state {job_state!r}") from exc


def derive_state(job_states: Iterable[str]) -> OrderState:
    """The order's state from its jobs' states.

    Rules: no jobs yet → placed. While any job is active, the order is where its
    least advanced active job is (outcome_unknown first: a person must decide).
    When every job is final: all cancelled → cancelled; any failed → failed; any
    lost contact → lost_contact; otherwise (done, possibly with cancelled ones) → delivered.

    Raises:
        InvalidTransition: an unknown job state.
    """
    stages = [_stage(s) for s in job_states]
    if not stages:
        return S.PLACED
    active = [s for s in stages if s not in FINAL_STATES]
    if active:
        if S.OUTCOME_UNKNOWN in active:
            return S.OUTCOME_UNKNOWN
        return min(active, key=_PROGRESS_ORDER.index)
    if all(s is S.CANCELLED for s in stages):
        return S.CANCELLED
    for verdict in (S.FAILED, S.LOST_CONTACT):
        if verdict in stages:
            return verdict
    return S.DELIVERED


def advance(current: OrderState, new: OrderState) -> OrderState:
    """Move an order to a new state if the table allows it (staying put is always allowed).

    Raises:
        InvalidTransition: the move is not in the table (e.g. out of a final state).
    """
    if new is current or new in TRANSITIONS[current]:
        return new
    raise InvalidTransition(f"order cannot go from {current.value} to {new.value}")


def cancellable(state: OrderState) -> bool:
    """Whether a customer may still cancel (before the print starts at once; afterwards the node is asked to stop)."""
    return state not in FINAL_STATES


# -- the values an order is made of (rows become these in hub/store/orders.py) ---------------


@dataclass(frozen=True, slots=True)
class OrderObject:
    """One fabricated object of an order: its incarnation id (the QR label) and its job."""

    incarnation_id: str
    position: int
    job_id: str
    part: str


@dataclass(frozen=True, slots=True)
class Order:
    """An order as stored; progress comes from its jobs when it is shown."""

    id: str
    customer: str
    design: str
    revision_id: str
    parameters: Mapping[str, str]
    material: str
    quantity: int
    paid: bool
    currency: str
    price_minor: int
    state: OrderState
    created_at: str
    updated_at: str
    quote_id: str = ""
    rule: str = ""
    node: str = ""
    printer: str = ""
    near: str = ""
    material_minor: int = 0
    machine_minor: int = 0
    fees_minor: int = 0
    estimated_seconds: int = 0
    attributions: tuple[Attribution, ...] = ()
    failure_reason: str = ""
    partial_cost_minor: int = 0
    settled: bool = False
    objects: tuple[OrderObject, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class StoredQuote:
    """A quote as the hub keeps it until it expires: the spec (JSON) and its options (JSON)."""

    id: str
    customer: str
    design: str
    revision_id: str
    spec_json: str
    options_json: str
    created_at: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class Grant:
    """A licensor's permission on record: fabricate `design` within `scope` on `node` ("" = any) until a time."""

    id: str
    design: str
    revision_id: str
    scope: str  # paid | modified | any
    node: str
    until: str
    granted_by: str
    granted_at: str
    statement_sha256: str
    signature: str = ""


@dataclass(frozen=True, slots=True)
class RatingRow:
    """One stored rating of an order (job_id "" = the whole order)."""

    order_id: str
    job_id: str
    design: str
    node: str
    rater: str
    role: str
    stars: int
    criteria: Mapping[str, int]
    comment: str
    at: str


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One ledger entry as stored, with its explanation and the equation snapshot."""

    order_id: str
    design: str
    recipient: str
    share: str
    currency: str
    minor_units: int
    equation_version: str
    explanation: str
    at: str


def openscad_source(manifest_toml: str) -> str | None:
    """The path of a manifest's OpenSCAD source (None: not parametric, or a manifest it cannot read)."""
    try:
        openscad = parse_manifest(manifest_toml).openscad
    except InvalidArgument:
        return None
    return openscad.source if openscad is not None else None


@dataclass(frozen=True, slots=True)
class PrintedPart:
    """What a job of one manifest part prints as published: the part's mesh files (none: no such part,
    or one without a mesh) and the design's OpenSCAD parameter defaults, which its meshes show."""

    meshes: frozenset[str] = frozenset()
    defaults: Mapping[str, ParamValue] = field(default_factory=dict)


def printed_part(manifest_toml: str, part: str) -> PrintedPart:
    """The mesh files of one ``[[parts]]`` entry of a manifest and the manifest's parameter defaults
    (nothing when the manifest cannot be read)."""
    try:
        manifest = parse_manifest(manifest_toml)
    except InvalidArgument:
        return PrintedPart()
    found = next((p for p in manifest.parts if p.name == part), None)
    meshes = frozenset(f for f in found.files if f.lower().endswith(MESH_SUFFIXES)) if found is not None else frozenset()
    return PrintedPart(meshes, dict(manifest.openscad.parameters) if manifest.openscad is not None else {})
