"""The node's job state machine and event vocabulary (pure)."""

from __future__ import annotations

import itertools

import pytest

from node_agent.jobs import (
    ACTIVE,
    EVENT_DATA_KEYS,
    TERMINAL,
    TRANSITIONS,
    EventKind,
    InvalidEventData,
    InvalidTransition,
    JobState,
    advance,
    check_event_data,
)


def test_the_happy_path_is_allowed() -> None:
    path = [JobState.ACCEPTED, JobState.PREPARING, JobState.READY, JobState.PRINTING,
            JobState.PAUSED, JobState.PRINTING, JobState.FINISHED, JobState.DONE]
    for old, new in itertools.pairwise(path):
        assert advance("j", old, new) is new


def test_final_states_are_final_and_interrupted_only_from_the_printer() -> None:
    assert TERMINAL == {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED}
    for state in TERMINAL:
        with pytest.raises(InvalidTransition, match="nothing \\(final\\)"):
            advance("j", state, JobState.PRINTING)
    reaching = {old for old, nexts in TRANSITIONS.items() if JobState.INTERRUPTED in nexts}
    assert reaching == ACTIVE


def test_a_print_cannot_start_before_it_is_ready() -> None:
    with pytest.raises(InvalidTransition) as caught:
        advance("j1", JobState.PREPARING, JobState.PRINTING)
    assert "job j1: cannot go from preparing to printing" in str(caught.value)


def test_every_kind_has_its_keys_and_the_limits_hold() -> None:
    assert set(EVENT_DATA_KEYS) == set(EventKind)
    check_event_data(EventKind.SLICED, {"estimated_seconds": "12", "slicer": "PrusaSlicer"})
    check_event_data(EventKind.OUTCOME, {"outcome": "success", "notes": "nice"})
    bad = [
        (EventKind.SLICED, {"colour": "red"}, "unknown data keys"),
        (EventKind.OUTCOME, {"outcome": "meh"}, "must be 'success' or 'failed'"),
        (EventKind.FAILED, {"detected_by": "cat"}, "detected_by must be one of"),
        (EventKind.CANCELLED, {"reason": "x" * (16 * 1024 + 1)}, "longer than the wire allows"),
        (EventKind.CANCELLED, {"reason": "a\x00b"}, "NUL"),
    ]
    for kind, data, message in bad:
        with pytest.raises(InvalidEventData, match=message):
            check_event_data(kind, data)
