"""The clocked hub (tests/hub/fake_agent.py) of the node and order tests, on SQLite and PostgreSQL.

A module takes it as its ``hub`` fixture with ``hub = clocked_fixture()`` at its top level; one that
needs other timers or a design pushed first builds its own ``hub`` with :func:`start_either`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.jobs import TimerPolicy
from tests.fixtures.postgres import create_database
from tests.hub.fake_agent import ClockedHub, start_clocked


def start_either(request: pytest.FixtureRequest, tmp_path: Path, timers: TimerPolicy | None = None) -> ClockedHub:
    """A clocked hub on the database of ``request.param`` ("sqlite" or "postgresql")."""
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    return start_clocked(tmp_path / "data", url, timers)


def _clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClockedHub]:
    running = start_either(request, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def clocked_fixture() -> Any:
    """The ``hub`` fixture of the module that assigns it: a clocked hub, once on each database."""
    return pytest.fixture(params=["sqlite", "postgresql"], name="hub")(_clocked)
