"""Whole-database export and import for backups, on either backend.

The export reads every table in one snapshot: PostgreSQL ``REPEATABLE READ, READ
ONLY`` (the hub keeps writing; the dump sees one instant), SQLite a read
transaction in WAL mode, which likewise sees the database as of its first read
while writers go on. A logical dump (rows, not pages) rather than the SQLite
backup API or ``pg_dump``: one format for both backends, so a backup restores
into either, and no client binaries of a matching major version are needed.

Tables are read through reflection, not through :mod:`hub.store.schema`, so an
archive of an older schema revision can be loaded into a database migrated to
exactly that revision and then upgraded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from hub.errors import FailedPrecondition, InvalidArgument, StorageError
from hub.store import schema

__all__ = ["Export", "Row", "_thd_export", "_thd_import", "_thd_migrate_to", "_thd_revision", "schema_revision"]

Row = dict[str, Any]
TableSink = Callable[[str, Iterator[Row]], int]
"""Receives one table's rows (in primary-key order) and returns how many it wrote."""

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_VERSION_TABLE = "alembic_version"
_BATCH = 500


@dataclass(frozen=True, slots=True)
class Export:
    """What one snapshot held: schema revision, rows per table, every stored blob (sha256, size)."""

    revision: str
    backend: str
    rows: Mapping[str, int]
    blobs: tuple[tuple[str, int], ...]


def _reflect(conn: sa.Connection) -> list[sa.Table]:
    meta = sa.MetaData()
    meta.reflect(conn)
    return [t for t in meta.sorted_tables if t.name != _VERSION_TABLE]


def schema_revision(conn: sa.Connection) -> str:
    """The Alembic revision the database is at ("" for an empty database)."""
    if not sa.inspect(conn).has_table(_VERSION_TABLE):
        return ""
    return str(conn.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalar() or "")


def _thd_revision(engine: sa.Engine) -> str:
    """The Alembic revision the database is at ("" for a database without the hub's schema).

    Raises:
        StorageError: the database could not be reached or read.
    """
    try:
        with engine.connect() as conn:
            return schema_revision(conn)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the database: {exc}") from exc


def _snapshot(engine: sa.Engine) -> sa.Connection:
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    return conn


def _rows(conn: sa.Connection, table: sa.Table) -> Iterator[Row]:
    order = list(table.primary_key.columns) or list(table.columns)
    result = conn.execution_options(yield_per=_BATCH).execute(sa.select(table).order_by(*order))
    for row in result.mappings():
        yield dict(row)


def _thd_export(engine: sa.Engine, sink: TableSink) -> Export:
    """Read every table (dependency order) of one consistent snapshot into ``sink``.

    Raises:
        FailedPrecondition: the database has no hub schema (wrong --data or --database).
        StorageError: the database could not be read.
    """
    try:
        with _snapshot(engine) as conn, conn.begin():
            revision = schema_revision(conn)
            if not revision:
                raise FailedPrecondition(
                    f"{engine.url.render_as_string(hide_password=True)} holds no Spimeforge schema: "
                    "check --data and --database")
            counts = {table.name: sink(table.name, _rows(conn, table)) for table in _reflect(conn)}
            blobs = tuple((str(sha), int(size)) for sha, size in conn.execute(
                sa.select(schema.blobs.c.sha256, schema.blobs.c.size).order_by(schema.blobs.c.sha256)))
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the database for a backup: {exc}") from exc
    return Export(revision, engine.dialect.name, counts, blobs)


def _thd_migrate_to(engine: sa.Engine, revision: str) -> None:
    """Upgrade the schema to ``revision`` (``"head"``: the newest).

    Raises:
        InvalidArgument: the revision is unknown to this version of the hub.
        StorageError: a migration failed.
    """
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    try:
        command.upgrade(config, revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"database migration failed: {exc}") from exc
    except Exception as exc:  # alembic.util.CommandError and friends: an unknown revision
        if type(exc).__module__.startswith("alembic"):
            raise InvalidArgument(
                f"the backup's schema revision {revision!r} is unknown to this hub: "
                "restore it with the Spimeforge version that wrote it (or a newer one)") from exc
        raise


def _thd_import(engine: sa.Engine, revision: str, tables: Iterable[tuple[str, Iterable[Row]]]) -> dict[str, int]:
    """Load rows into an empty database that is at schema ``revision``; returns rows per table.

    Raises:
        FailedPrecondition: the database is not empty, or is at another revision.
        InvalidArgument: a row names a table or column the schema lacks, or holds a value no
            column takes (an integer beyond 64 bits, a lone surrogate).
        StorageError: the database refused the rows (e.g. a broken reference).
    """
    try:
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            by_name = _empty_tables(conn, revision)
            counts = {name: _insert(conn, _table(by_name, name), rows) for name, rows in tables}
            if conn.dialect.name == "postgresql":
                _advance_sequences(conn, by_name.values())
    except sa.exc.IntegrityError as exc:
        raise StorageError(f"the backup's rows do not fit together: {exc.orig}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot restore into the database: {exc}") from exc
    return counts


def _empty_tables(conn: sa.Connection, revision: str) -> dict[str, sa.Table]:
    found = schema_revision(conn)
    if found != revision:
        raise FailedPrecondition(f"the database is at schema revision {found!r}, the backup at {revision!r}")
    tables = {t.name: t for t in _reflect(conn)}
    used = [name for name, t in tables.items() if conn.execute(sa.select(sa.literal(1)).select_from(t).limit(1)).first()]
    if used:
        raise FailedPrecondition(
            f"restore needs an empty database, but {', '.join(sorted(used))} already hold rows: "
            "give a new --data directory and a new, empty --database")
    return tables


def _table(tables: Mapping[str, sa.Table], name: str) -> sa.Table:
    if name not in tables:
        raise InvalidArgument(f"the backup holds a table {name!r} that this schema does not have")
    return tables[name]


def _insert(conn: sa.Connection, table: sa.Table, rows: Iterable[Row]) -> int:
    count, batch = 0, []
    for row in rows:
        unknown = set(row) - set(table.columns.keys())
        if unknown:
            raise InvalidArgument(f"the backup's {table.name} rows have unknown columns {sorted(unknown)}")
        batch.append(row)
        if len(batch) == _BATCH:
            count += _flush(conn, table, batch)
    return count + _flush(conn, table, batch)


def _flush(conn: sa.Connection, table: sa.Table, batch: list[Row]) -> int:
    """Insert ``batch``; returns its size.

    Raises:
        InvalidArgument: a value the column cannot hold (hub/backup.py refuses the ones it can
            tell first, naming the line); SQLite's driver raises OverflowError or
            UnicodeEncodeError for them, not an SQLAlchemyError.
    """
    try:
        if batch:
            conn.execute(table.insert(), batch)
    except (OverflowError, UnicodeEncodeError, sa.exc.DataError) as exc:
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).partition("\n")[0][:200]
        raise InvalidArgument(f"the backup's {table.name} rows hold a value the database cannot store "
                              f"({reason}): the archive is damaged") from exc
    n = len(batch)
    batch.clear()
    return n


def _advance_sequences(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """Rows came with their ids: move each serial/identity sequence past the largest one."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
            continue
        quote = conn.dialect.identifier_preparer.quote
        column, name = quote(pk[0].name), quote(table.name)
        conn.execute(
            sa.text(f"SELECT setval(pg_get_serial_sequence(:t, :c), COALESCE(MAX({column}), 0) + 1, false) "
                    f"FROM {name}"),
            {"t": table.name, "c": pk[0].name})
