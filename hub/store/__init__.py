"""The hub's storage: SQLAlchemy 2 Core on SQLite (WAL) or PostgreSQL, plus a blob directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.store.accounts import AccountStore
from hub.store.blobs import BlobStore
from hub.store.designs import DesignStore
from hub.store.engine import make_engine, migrate, sqlite_url
from hub.store.jobs import JobStore
from hub.store.nodes import NodeStore
from hub.store.records import RecordStore

__all__ = ["AccountStore", "BlobStore", "DesignStore", "JobStore", "NodeStore", "RecordStore", "Store", "open_store"]


@dataclass(frozen=True, slots=True)
class Store:
    """Every connector of one hub, sharing one engine."""

    accounts: AccountStore
    designs: DesignStore
    blobs: BlobStore
    records: RecordStore
    nodes: NodeStore
    jobs: JobStore
    close: Callable[[], None]


def open_store(data_dir: Path, database_url: str, max_blob_bytes: int) -> Store:
    """Open (and migrate) the database and the blob directory under data_dir.

    Raises:
        InvalidArgument: unsupported database URL.
        StorageError: the migration failed.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or sqlite_url(data_dir))
    migrate(engine)
    return Store(
        accounts=AccountStore(engine),
        designs=DesignStore(engine),
        blobs=BlobStore(data_dir / "blobs", engine, max_blob_bytes),
        records=RecordStore(engine),
        nodes=NodeStore(engine),
        jobs=JobStore(engine),
        close=engine.dispose,
    )
