"""A job on the node: its local states, their one transition table, and the event vocabulary (pure).

The hub owns a job's truth; the node keeps its own view in the journal so that
a restart knows what it held. States mirror ``JobLocalState`` in nodes.proto,
plus ``ACCEPTED`` (offer accepted, assignment not yet heard; said as PREPARING
on the wire). A print that was running when the agent died becomes
``INTERRUPTED`` and is never restarted by the agent.

JobEvent ``data`` keys per kind (nodes.proto JobEvent.data, hub/jobs.py)::

    SLICED               estimated_seconds, filament_mm, filament_g, slicer, slicer_version,
                         profile, layer_height_mm
    COMPLETED            actual_seconds, filament_mm_used, resends
    FAILED               failure_reason, retryable, detected_by, step
    PRINTABILITY_FAILED  findings (JSON)
    PRINTABILITY_OK      findings (JSON)
    OUTCOME              outcome (success|failed), reason, notes
    INTERRUPTED          reason
    CANCELLED            reason
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "ACTIVE",
    "DETECTED_BY",
    "EVENT_DATA_KEYS",
    "MAX_DATA_ENTRIES",
    "MAX_KEY_CHARS",
    "MAX_VALUE_CHARS",
    "TERMINAL",
    "TRANSITIONS",
    "EventKind",
    "InvalidEventData",
    "InvalidTransition",
    "JobState",
    "advance",
    "check_event_data",
]

MAX_DATA_ENTRIES = 32
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 16 * 1024
DETECTED_BY = ("firmware", "slicer", "printability", "agent", "operator")


class JobState(enum.Enum):
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    READY = "ready"
    PRINTING = "printing"
    PAUSED = "paused"
    FINISHED = "finished_awaiting_bed_clear"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


_S = JobState
_ENDS = frozenset({_S.FAILED, _S.CANCELLED})
TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    _S.ACCEPTED: frozenset({_S.PREPARING}) | _ENDS,
    _S.PREPARING: frozenset({_S.READY}) | _ENDS,
    _S.READY: frozenset({_S.PRINTING}) | _ENDS,
    _S.PRINTING: frozenset({_S.PAUSED, _S.FINISHED, _S.INTERRUPTED}) | _ENDS,
    _S.PAUSED: frozenset({_S.PRINTING, _S.INTERRUPTED}) | _ENDS,
    # The operator's verdict (OUTCOME) ends a finished print.
    _S.FINISHED: frozenset({_S.DONE, _S.FAILED}),
    _S.DONE: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.INTERRUPTED: frozenset(),
}
TERMINAL = frozenset(s for s, nexts in TRANSITIONS.items() if not nexts)
# A physical print may be on the bed: the printer is taken.
ACTIVE = frozenset({_S.PRINTING, _S.PAUSED})


class InvalidTransition(Exception):
    """A job move the table forbids; nothing was written."""

    def __init__(self, job_id: str, old: JobState, new: JobState) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing (final)"
        super().__init__(f"job {job_id}: cannot go from {old.value} to {new.value} "
                         f"(allowed: {allowed})")
        self.job_id, self.old, self.new = job_id, old, new


def advance(job_id: str, old: JobState, new: JobState) -> JobState:
    """Return ``new`` if the table allows ``old -> new``.

    Raises:
        InvalidTransition: the move is not in the table.
    """
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(job_id, old, new)
    return new


class EventKind(enum.Enum):
    DOWNLOADED = "downloaded"
    PRINTABILITY_OK = "printability_ok"
    PRINTABILITY_FAILED = "printability_failed"
    SLICED = "sliced"
    STARTED = "started"
    PROGRESS = "progress"
    PAUSED = "paused"
    RESUMED = "resumed"
    FAILED = "failed"
    COMPLETED = "completed"
    BED_CLEARED = "bed_cleared"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    OUTCOME = "outcome"


_K = EventKind
EVENT_DATA_KEYS: Mapping[EventKind, frozenset[str]] = {
    _K.DOWNLOADED: frozenset({"bytes", "files"}),
    _K.PRINTABILITY_OK: frozenset({"findings", "extents_mm", "profile"}),
    _K.PRINTABILITY_FAILED: frozenset({"findings", "extents_mm", "profile"}),
    _K.SLICED: frozenset({"estimated_seconds", "filament_mm", "filament_g", "slicer",
                          "slicer_version", "profile", "layer_height_mm", "cached"}),
    _K.STARTED: frozenset({"printer", "printer_model", "lines"}),
    _K.PROGRESS: frozenset({"percent", "layer"}),
    _K.PAUSED: frozenset({"reason"}),
    _K.RESUMED: frozenset(),
    _K.FAILED: frozenset({"failure_reason", "retryable", "detected_by", "step", "resends",
                          "actual_seconds", "findings"}),
    _K.COMPLETED: frozenset({"actual_seconds", "filament_mm_used", "filament_g_used", "resends"}),
    _K.BED_CLEARED: frozenset({"printer"}),
    _K.CANCELLED: frozenset({"reason"}),
    _K.INTERRUPTED: frozenset({"reason"}),
    _K.OUTCOME: frozenset({"outcome", "reason", "notes"}),
}


class InvalidEventData(ValueError):
    """An event's data breaks the documented keys or limits."""


def check_event_data(kind: EventKind, data: Mapping[str, str]) -> None:
    """Check one event's data against the keys of its kind and the wire limits.

    Raises:
        InvalidEventData: an unknown key, too many entries, or a key/value too long or with NUL.
    """
    if len(data) > MAX_DATA_ENTRIES:
        raise InvalidEventData(f"{kind.value}: {len(data)} data entries, at most {MAX_DATA_ENTRIES}")
    unknown = sorted(set(data) - EVENT_DATA_KEYS[kind])
    if unknown:
        raise InvalidEventData(f"{kind.value}: unknown data keys {unknown}")
    for key, value in data.items():
        if len(key) > MAX_KEY_CHARS or len(value) > MAX_VALUE_CHARS:
            raise InvalidEventData(f"{kind.value}: {key!r} is longer than the wire allows")
        if "\x00" in value:
            raise InvalidEventData(f"{kind.value}: {key!r} contains a NUL character")
    if kind is _K.OUTCOME and data.get("outcome") not in ("success", "failed"):
        raise InvalidEventData("outcome: must be 'success' or 'failed'")
    if kind is _K.FAILED and data.get("detected_by", "agent") not in DETECTED_BY:
        raise InvalidEventData(f"failed: detected_by must be one of {', '.join(DETECTED_BY)}")
