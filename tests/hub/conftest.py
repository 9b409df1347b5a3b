"""Fixtures of the hub tests: an in-process hub on SQLite (``api``), on PostgreSQL (``api_pg``) or on each
(``any_api``), and a migrated store engine on each (``engine``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.store.engine import make_engine, migrate, sqlite_url
from tests.fixtures.postgres import PostgresServer, create_database
from tests.hub.harness import InProcessHub, start_in_process


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[InProcessHub]:
    hub = start_in_process(tmp_path / "data")
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture()
def api_pg(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[InProcessHub]:
    hub = start_in_process(tmp_path / "data", create_database(postgres_server))
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    hub = start_in_process(tmp_path / "data", url)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    url = sqlite_url(tmp_path) if request.param == "sqlite" else create_database(
        request.getfixturevalue("postgres_server"))
    made = make_engine(url)
    migrate(made)
    try:
        yield made
    finally:
        made.dispose()
