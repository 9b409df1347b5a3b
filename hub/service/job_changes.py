"""The Change each job use case makes, decided on the job as the store locked it. Pure.

hub/service/jobs.py runs these through JobStore._thd_change; keeping them here keeps the
rules readable apart from the store calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from hub.errors import InvalidArgument
from hub.jobs import (
    MAX_LAYER,
    MAX_PARAM_KEY,
    MAX_PARAM_VALUE,
    MAX_PARAMETERS,
    MAX_REASON,
    TERMINAL,
    Change,
    Command,
    Job,
    JobSpec,
    JobState,
    check_transition,
)
from hub.limits import check_plain_text
from hub.service.designs import check_slug

__all__ = [
    "JOB_ID", "RESET", "cancel_change", "check_layer", "check_reason", "check_spec", "cmd", "ended", "progress_values",
    "requeue_if_unchanged", "unknown_to_agent",
]

S = JobState
_MATERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]{0,31}\Z")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}\Z")
_PRINTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
JOB_ID = re.compile(r"^[A-Za-z0-9_./-]{1,32}\Z")  # as job_events.job_id holds it


def check_spec(spec: JobSpec) -> JobSpec:
    """Bounds of a job's fields (also refuses NUL characters).

    Raises:
        InvalidArgument: a field is missing, malformed or too long.
    """
    check_slug(spec.design)
    if not _HEX64.match(spec.revision_id or ""):
        raise InvalidArgument(f"revision id {spec.revision_id[:80]!r} must be 64 lowercase hex digits")
    if not _MATERIAL.match(spec.material or ""):
        raise InvalidArgument(f"material {spec.material[:80]!r} must be 1-32 letters, digits or +_.- (e.g. PLA)")
    _check_parameters(spec.parameters)
    for label, value, pattern in (("node", spec.node, _NAME), ("printer", spec.printer, _PRINTER),
                                  ("order id", spec.order_id, JOB_ID)):
        if value is not None and not pattern.match(value):
            raise InvalidArgument(f"{label} {value[:80]!r} is not a valid name")
    if spec.payout_minor < 0 or (spec.payout_currency and not re.match(r"^[A-Z]{3}\Z", spec.payout_currency)):
        raise InvalidArgument("payout must be a non-negative amount in an ISO 4217 currency like EUR")
    return spec


def _check_parameters(parameters: Mapping[str, str]) -> None:
    if len(parameters) > MAX_PARAMETERS:
        raise InvalidArgument(f"{len(parameters)} parameters; at most {MAX_PARAMETERS} are allowed")
    for key, value in parameters.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", key) or len(key) > MAX_PARAM_KEY:
            raise InvalidArgument(f"parameter name {key[:80]!r} must be an identifier of at most {MAX_PARAM_KEY}")
        check_plain_text(value, f"parameter {key}", MAX_PARAM_VALUE)


def cmd(kind: str, job: Job, node: str, epoch: int, **extra: object) -> Command:
    return Command(kind, job.id, node, {"lease_epoch": epoch, **extra})


def ended(job: Job, target: JobState, kind: str) -> str | None:
    """The fabrication outcome of a job that ends after its print started."""
    if not job.started_at or target not in TERMINAL:
        return None
    if kind in ("interrupted", "cancelled"):
        return kind
    return "success" if target is S.DONE else "failed"


RESET: Mapping[str, object] = {
    "node": None, "printer": None, "offer_id": "", "offer_expires_at": "", "progress": 0.0, "layer": 0,
    "started_at": "", "lost_at": "", "cancel_requested": False, "failure_reason": "", "tried_nodes": (), "tried_at": "",
    "production": "{}",
}


def cancel_change(job: Job, tell: tuple[Command, ...], reason: str) -> Change:
    if job.state in (S.PRINTING, S.LOST_CONTACT):
        return Change(values={"cancel_requested": True}, commands=tell)
    check_transition(job.state, S.CANCELLED)
    tell = tell if job.state not in (S.QUEUED, S.OFFERED) else ()
    return Change(S.CANCELLED, {"failure_reason": reason}, commands=tell,
                  fabrication=ended(job, S.CANCELLED, "cancelled"))


def unknown_to_agent(seen: Job, target: JobState, now: str) -> Callable[[Job | None], Change]:
    def decide(job: Job | None) -> Change:
        if job is None or job.state is not seen.state or job.lease_epoch != seen.lease_epoch:
            return Change(applied=False)
        if target is S.LOST_CONTACT:  # a print may be on the bed: a person decides, as for silence
            return Change(S.LOST_CONTACT, {"lost_at": now})
        return Change(S.QUEUED, RESET, bump_epoch=True)

    return decide


def requeue_if_unchanged(seen: Job) -> Callable[[Job | None], Change]:
    def decide(job: Job | None) -> Change:
        if job is None or job.state is not seen.state or job.lease_epoch != seen.lease_epoch:
            return Change(applied=False)
        return Change(S.QUEUED, RESET, bump_epoch=True)

    return decide


def check_reason(text: str) -> str:
    """A person's reason (an admin's fail or cancel, a customer's cancel): shown in orders and the public
    record, so plain text on one line, as the reasons of order cancels and node drains.

    Raises:
        InvalidArgument: too long, or a control or bidi character."""
    return check_plain_text(text, "reason", MAX_REASON)


def progress_values(data: Mapping[str, str]) -> dict[str, object]:
    """Raises: InvalidArgument: percent is not a number or layer not a whole number of 0..MAX_LAYER."""
    values: dict[str, object] = {}
    try:
        if "percent" in data:
            values["progress"] = min(100.0, max(0.0, float(data["percent"])))
        if "layer" in data:
            values["layer"] = check_layer(int(data["layer"]))
    except ValueError as exc:
        raise InvalidArgument("PROGRESS data percent and layer must be numbers") from exc
    return values


def check_layer(layer: int) -> int:
    """Raises: InvalidArgument: a layer number beyond MAX_LAYER (or negative)."""
    if not 0 <= layer <= MAX_LAYER:
        raise InvalidArgument(f"layer must be 0 to {MAX_LAYER}, not {layer}")
    return layer
