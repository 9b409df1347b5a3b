"""The pure job rules: the transition table, event effects, bounded production data, matching."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from hub.errors import InvalidArgument, InvalidTransition
from hub.jobs import (
    HELD,
    TERMINAL,
    TRANSITIONS,
    JobState,
    TimerPolicy,
    check_data,
    check_transition,
    event_effect,
    lost_contact_deadline,
    production_update,
)
from hub.scheduler import PrinterRecord, candidates, fits, qualifies

S = JobState


def test_the_table_covers_every_state_and_the_happy_path() -> None:
    assert set(TRANSITIONS) == set(JobState)
    path = [S.QUEUED, S.OFFERED, S.ASSIGNED, S.PREPARING, S.READY, S.PRINTING, S.PRINTED, S.DONE]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)
    assert TRANSITIONS[S.DONE] == TRANSITIONS[S.CANCELLED] == frozenset()
    assert TERMINAL.isdisjoint(HELD)


@pytest.mark.parametrize("current, target", [
    (S.PRINTING, S.QUEUED),        # a running print is never requeued by itself
    (S.LOST_CONTACT, S.QUEUED),    # only a person (outcome_unknown -> requeue)
    (S.DONE, S.FAILED),
    (S.QUEUED, S.PRINTING),        # no start without an assignment
    (S.PRINTED, S.CANCELLED),
])
def test_illegal_moves_raise(current: JobState, target: JobState) -> None:
    with pytest.raises(InvalidTransition):
        check_transition(current, target)


def test_event_effects() -> None:
    assert event_effect("downloaded", S.ASSIGNED, {}) is S.PREPARING
    assert event_effect("sliced", S.PREPARING, {}) is S.READY
    assert event_effect("progress", S.PRINTING, {}) is None
    assert event_effect("progress", S.LOST_CONTACT, {}) is S.PRINTING
    assert event_effect("completed", S.PRINTING, {}) is S.PRINTED
    assert event_effect("outcome", S.PRINTED, {"outcome": "success"}) is S.DONE
    assert event_effect("outcome", S.PRINTED, {"outcome": "failed"}) is S.FAILED
    assert event_effect("failed", S.PREPARING, {}) is S.FAILED
    assert event_effect("bed_cleared", S.READY, {}) is None
    with pytest.raises(InvalidTransition):
        event_effect("completed", S.QUEUED, {})
    with pytest.raises(InvalidTransition):
        event_effect("outcome", S.PRINTING, {"outcome": "success"})
    with pytest.raises(InvalidArgument):
        event_effect("outcome", S.PRINTED, {"outcome": "meh"})


def test_event_data_is_bounded() -> None:
    assert check_data({"a": "b"}) == {"a": "b"}
    for bad in ({f"k{i}": "" for i in range(33)}, {"k" * 65: "v"}, {"k": "v" * 16385}, {"k": "\x00"}, {"": "v"}):
        with pytest.raises(InvalidArgument):
            check_data(bad)


def test_production_data() -> None:
    sliced = production_update("sliced", {"estimated_seconds": "600", "filament_g": "4.5", "slicer_version": "2.5",
                                          "profile": "mk3", "unrelated": "x"})
    assert sliced == {"estimated_seconds": 600.0, "estimated_filament_g": 4.5, "slicer_version": "2.5",
                      "slicer_profile": "mk3"}
    assert production_update("printability_failed", {"findings": '[{"code": "thin"}]'}) == {
        "findings": [{"code": "thin", "severity": "", "message": "", "details": {}}]}
    assert production_update("outcome", {"outcome": "failed", "reason": "warp", "notes": "n"}) == {
        "outcome": "failed", "failure_reason": "warp", "operator_notes": "n"}
    for kind, data in (("completed", {"actual_seconds": "soon"}), ("completed", {"resends": "-1"}),
                       ("printability_failed", {"findings": "{}"})):
        with pytest.raises(InvalidArgument):
            production_update(kind, data)


def test_lost_contact_deadline_is_estimated_end_plus_grace() -> None:
    policy = TimerPolicy(outcome_grace_s=100)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    lost = start + dt.timedelta(seconds=50)
    assert lost_contact_deadline(start, lost, 600, policy) == start + dt.timedelta(seconds=700)
    assert lost_contact_deadline(None, lost, 600, policy) == lost + dt.timedelta(seconds=100)


def _printer(**kw: object) -> PrinterRecord:
    base: dict[str, object] = {"node": "lab", "printer": "mk3", "model": "MK3S", "build_volume_mm": (250.0, 210.0, 210.0),
                               "nozzle_mm": 0.4, "materials": ("PLA",), "phase": "idle", "bed_clear": True,
                               "accepting": True, "online": True}
    base.update(kw)
    return PrinterRecord(**base)  # type: ignore[arg-type]


def test_fits_in_some_orientation() -> None:
    assert fits((240, 200, 10), (250, 210, 210))
    assert fits((10, 240, 205), (250, 210, 210))  # rotated
    assert not fits((260, 10, 10), (250, 210, 210))


def test_qualifies_names_the_reason() -> None:
    assert qualifies((10, 10, 10), "pla", _printer()) is None
    assert qualifies(None, "PLA", _printer()) is None
    reasons = [qualifies((10, 10, 10), "PLA", _printer(online=False)), qualifies((10, 10, 10), "PLA", _printer(accepting=False)),
               qualifies((10, 10, 10), "PLA", _printer(phase="printing")), qualifies((10, 10, 10), "PLA", _printer(bed_clear=False)),
               qualifies((10, 10, 10), "PETG", _printer()), qualifies((300, 300, 300), "PLA", _printer())]
    assert ["offline" in reasons[0], "accepting" in reasons[1], "printing" in reasons[2], "bed" in reasons[3],
            "PETG" in reasons[4], "fit" in reasons[5]] == [True] * 6  # type: ignore[operator]


def test_candidates_skip_busy_and_tried() -> None:
    printers = [_printer(node="b"), _printer(node="a"), _printer(node="a", printer="xl")]
    assert [(p.node, p.printer) for p in candidates(printers, None, "PLA")] == [("a", "mk3"), ("a", "xl"), ("b", "mk3")]
    assert [(p.node, p.printer) for p in candidates(printers, None, "PLA", busy=frozenset({("a", "mk3")}),
                                                    exclude_nodes=frozenset({"b"}))] == [("a", "xl")]
    assert candidates(printers, None, "PLA", node="b", printer="xl") == []
