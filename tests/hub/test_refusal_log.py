"""A caller sending thousands of bad requests costs the hub a few log lines (hub.api.interceptors.RefusalLog):
the first refusal of each (account, method, status) per interval is logged, the rest are counted and
summarised in one line; the hub still answers every one of them (on SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import designs_pb2

from hub.api.interceptors import RefusalLog
from tests.fixtures.postgres import create_database
from tests.hub.harness import InProcessHub, start_in_process

A = ("mallory", "/spimeforge.v1.Designs/GetDesign", "NOT_FOUND")
B = ("mallory", "/spimeforge.v1.Designs/GetDesign", "INVALID_ARGUMENT")


def test_the_first_refusal_of_a_key_is_logged_and_the_rest_of_its_interval_only_counted() -> None:
    refusals = RefusalLog(interval_s=10.0)
    assert refusals.note(A, 0.0) == (True, 0)
    assert [refusals.note(A, t) for t in (1.0, 2.0, 9.9)] == [(False, 0)] * 3
    assert refusals.note(B, 3.0) == (True, 0)  # another status is another key
    # the next interval's first refusal is logged and reports what the last one did not log
    assert refusals.note(A, 10.5) == (True, 3)
    assert refusals.note(A, 11.0) == (False, 0)


def test_keys_gone_quiet_are_summarised_once_per_interval_and_forgotten() -> None:
    refusals = RefusalLog(interval_s=10.0)
    refusals.note(A, 0.0)
    refusals.note(A, 1.0)
    refusals.note(A, 2.0)
    refusals.note(B, 0.0)  # logged, nothing held back: no summary
    assert refusals.due(5.0) == []  # the interval is not over
    assert refusals.due(12.0) == []  # looked at most once per interval: the next look is at 15.0
    assert refusals.due(15.0) == [(A, 2)]
    assert refusals.due(30.0) == []  # reported once
    assert refusals.note(A, 31.0) == (True, 0)  # forgotten: a new interval starts, nothing held back


def test_flush_reports_every_count_not_logged_yet() -> None:
    refusals = RefusalLog(interval_s=10.0)
    for t in range(5):
        refusals.note(A, float(t))
    refusals.note(B, 0.0)
    assert refusals.flush() == [(A, 4)]
    assert refusals.flush() == []


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> InProcessHub:
    """A running hub the test stops itself (stopping flushes the refusal log)."""
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    return start_in_process(tmp_path / "data", url)


def test_a_flood_of_bad_requests_is_answered_in_full_and_logged_in_two_lines(
        api: InProcessHub, caplog: pytest.LogCaptureFixture) -> None:
    api.add_user("mallory", "designer")
    caplog.set_level(logging.INFO, logger="hub.api")
    try:
        for _ in range(40):
            with pytest.raises(grpc.RpcError) as info:
                api.designs.GetDesign(designs_pb2.GetDesignRequest(design="no-such-design"), metadata=api.md("mallory"))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        api.stop()  # the hub flushes the summaries when it stops
    lines = [r for r in caplog.records if r.name == "hub.api" and getattr(r, "account", "") == "mallory"]
    assert [r.getMessage() for r in lines] == ["rpc refused", "rpc refusals not logged"]
    assert lines[0].__dict__["code"] == "NOT_FOUND"
    assert lines[1].__dict__["count"] == 39
