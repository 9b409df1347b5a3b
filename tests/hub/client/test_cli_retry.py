"""The CLI waits as the hub asks: a call refused RESOURCE_EXHAUSTED with a RetryInfo hint (a rate
or concurrency limit) is tried again after the hinted delay, saying so on stderr; a hint too long
to wait for ends the command with the limit's message. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.client.cli import main
from hub.client.connection import MAX_RETRY_WAIT_S
from tests.fixtures.postgres import create_database
from tests.hub.harness import InProcessHub, start_in_process


def _hub(request: pytest.FixtureRequest, tmp_path: Path, rate: str) -> Iterator[InProcessHub]:
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    hub = start_in_process(tmp_path / "data", url, settings={"rate_limits": rate, "admission_wait_s": 0.05})
    hub.add_user("cust", "customer")
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def slow_refill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """One search, then the next token in 1 s."""
    yield from _hub(request, tmp_path, "search=1/1")


@pytest.fixture(params=["sqlite", "postgresql"])
def no_refill(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """One search, then the next token in 100 s: longer than the CLI waits."""
    yield from _hub(request, tmp_path, "search=0.01/1")


def _search(hub: InProcessHub) -> int:
    return main(["search", "", "--json", "--hub", hub.address, "--token", hub.tokens["cust"]])


def test_a_rate_limited_search_is_retried_after_the_hubs_hint(
        slow_refill: InProcessHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert _search(slow_refill) == 0
    capsys.readouterr()
    assert _search(slow_refill) == 0
    out, err = capsys.readouterr()
    assert '"designs"' in out
    assert "the hub is busy" in err and "trying again in" in err


def test_a_hint_longer_than_the_cli_waits_ends_the_command_with_the_limit(
        no_refill: InProcessHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert MAX_RETRY_WAIT_S < 100
    assert _search(no_refill) == 0
    capsys.readouterr()
    assert _search(no_refill) != 0
    out, err = capsys.readouterr()
    assert out == "" and "RESOURCE_EXHAUSTED" in err and "search" in err and "trying again" not in err
