"""A PostgreSQL database must sort text as SQLite does (by code point): the hub refuses another collation
at start, naming it and how to create the database, rather than answer listings, pages and matches that
differ by backend (an ICU or en_US database sorted "a-c" after "ab", SQLite before)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from hub.errors import FailedPrecondition
from hub.store.engine import make_engine, migrate
from tests.fixtures.postgres import PostgresServer, create_database


def _database(server: PostgresServer, options: str) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(host=server.host, port=server.port, user=server.user, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\' {options}')
    return server.url(name)


@pytest.mark.parametrize("options", ["LOCALE_PROVIDER icu ICU_LOCALE 'und' LOCALE 'C'",
                                     "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"])
def test_a_database_sorting_by_a_language_is_refused(postgres_server: PostgresServer, options: str) -> None:
    engine = make_engine(_database(postgres_server, options))
    try:
        with pytest.raises(FailedPrecondition, match="byte order, as on SQLite.*LC_COLLATE 'C'"):
            migrate(engine)
        with engine.connect() as conn:
            assert not conn.exec_driver_sql("SELECT to_regclass('designs')").scalar()  # nothing was created
    finally:
        engine.dispose()


def test_a_byte_ordered_database_is_taken(postgres_server: PostgresServer) -> None:
    engine = make_engine(create_database(postgres_server))
    try:
        migrate(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT to_regclass('designs')").scalar()
    finally:
        engine.dispose()
