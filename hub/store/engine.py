"""Engine setup for both backends and Alembic migrations.

The only dialect-specific code of the store: SQLite gets WAL, synchronous=NORMAL,
a busy timeout, foreign keys, and transactions opened by us (pysqlite's own
implicit BEGIN is disabled) so a write transaction can take the write lock up
front with BEGIN IMMEDIATE. Its WAL is copied back into the database file by a
thread of its own, never inside a caller's commit (see _checkpoint_in_background).
PostgreSQL runs through psycopg 3.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from hub.errors import FailedPrecondition, InvalidArgument, StorageError
from hub.store.driver import Prepared

__all__ = ["connect", "insert_new", "make_engine", "migrate", "one_writer", "sqlite_url", "write"]

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_EVERY_S = 1.0  # how often the WAL is copied back into the database file
log = logging.getLogger("hub.store")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(data_dir: Path) -> str:
    """The URL of the embedded database inside a data directory."""
    return f"sqlite:///{Path(data_dir).resolve() / 'hub.sqlite3'}"


def _on_sqlite_connect(dbapi_conn: object, _record: object) -> None:
    dbapi_conn.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON",
                   "wal_autocheckpoint=0"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


# on the driver (hub/store/driver.py): every transaction runs one
_BEGIN, _BEGIN_IMMEDIATE = Prepared(sa.text("BEGIN")), Prepared(sa.text("BEGIN IMMEDIATE"))


def _on_sqlite_begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    (_BEGIN_IMMEDIATE if immediate else _BEGIN).count(conn)


def _checkpoint_in_background(engine: sa.Engine) -> None:
    """Copy an SQLite engine's WAL back into the database file every CHECKPOINT_EVERY_S, in a daemon thread,
    until the engine is disposed or collected. PASSIVE: it never waits for readers or writers.

    The engine's connections never checkpoint themselves (wal_autocheckpoint=0): SQLite would do it
    inside whichever commit crosses 1,000 pages, fsync included, and that commit's caller would wait
    (on the agent bench with 1,000 agents, offer p99 34-38 ms with it, 22-24 ms without). When the
    last connection of a database closes, SQLite still checkpoints it, as ever.
    """
    stop = threading.Event()
    sa.event.listen(engine, "engine_disposed", lambda _engine: stop.set())
    ref = weakref.ref(engine)

    def run() -> None:
        while not stop.wait(CHECKPOINT_EVERY_S):
            live = ref()
            if live is None:
                return
            try:
                _checkpoint(live)
            except Exception:  # the next round tries again; the WAL only grows meanwhile
                log.warning("checkpointing the SQLite WAL failed", exc_info=True)
            del live

    threading.Thread(target=run, name="sqlite-checkpoint", daemon=True).start()


def _checkpoint(engine: sa.Engine) -> None:
    raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()  # type: ignore[union-attr]
    finally:
        raw.close()


def make_engine(url: str) -> sa.Engine:
    """Create an engine for a sqlite:/// or postgresql+psycopg:// URL.

    Raises:
        InvalidArgument: the URL names another backend.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
        if engine.url.database not in (None, "", ":memory:"):
            _checkpoint_in_background(engine)
        return engine
    if url.startswith("postgresql+psycopg://"):
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise InvalidArgument(f"unsupported database URL {url.split(':')[0]!r}: use sqlite:/// or postgresql://")


_WRITERS: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def _writer_gate(engine: sa.Engine) -> contextlib.AbstractContextManager[object]:
    """SQLite has one writer: this process's writers queue on a lock in turn instead of polling the
    database's busy handler (which sleeps up to 100 ms per try); other processes still meet the
    busy timeout. PostgreSQL writers run concurrently."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(engine, threading.RLock())


def one_writer(conn: sa.Connection) -> bool:
    """Whether a write transaction on this connection is its database's only writer until it commits
    (SQLite: BEGIN IMMEDIATE behind _writer_gate), so what it read cannot change under it."""
    return conn.dialect.name == "sqlite"


@contextlib.contextmanager
def write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction (BEGIN IMMEDIATE on SQLite), committed on success.

    Raises:
        StorageError: the database failed (not a constraint of ours).
    """
    with _writer_gate(engine), engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        yield conn


@contextlib.contextmanager
def connect(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn


def insert_new(conn: sa.Connection, table: sa.Table, values: Mapping[str, object]) -> bool:
    """Insert a row unless one with its key is stored (then nothing changes); whether it was new.
    Two transactions inserting the same row at once both succeed, on SQLite and on PostgreSQL."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return bool(conn.execute(dialect.insert(table).values(dict(values)).on_conflict_do_nothing()).rowcount)


def _alembic_config(engine: sa.Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: sa.Engine) -> None:
    """Bring the schema up to the newest Alembic revision.

    Raises:
        StorageError: the database cannot be reached, or a migration failed.
        FailedPrecondition: a PostgreSQL database that does not sort text by code point.
    """
    try:
        if engine.dialect.name == "postgresql":
            _require_byte_order(engine)
        command.upgrade(_alembic_config(engine), "head")
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"database migration failed: {exc}") from exc


_BYTE_ORDER = frozenset({"C", "POSIX", "C.UTF-8", "C.utf8"})  # collations that sort text as SQLite does


def _require_byte_order(engine: sa.Engine) -> None:
    """A PostgreSQL database must sort text by code point, as SQLite does: with a language's collation
    (en_US, ICU) listings, their pages and which of equally good printers gets a job differ by backend.

    Raises:
        FailedPrecondition: the database was created with another collation.
    """
    query = sa.text("SELECT to_jsonb(d) ->> 'datcollate', coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') "
                    "FROM pg_database d WHERE datname = current_database()")
    with engine.connect() as conn:
        collation, provider = conn.execute(query).one()
    if provider != "c" or collation not in _BYTE_ORDER:
        shown = f"ICU locale (provider {provider})" if provider != "c" else repr(collation)
        raise FailedPrecondition(
            f"the PostgreSQL database sorts text by the collation {shown}; the hub needs byte order, as on SQLite: "
            "create it with LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 (bash ops/postgres-setup.sh does)",
            reason="DATABASE_COLLATION")
