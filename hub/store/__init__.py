"""The hub's storage: SQLAlchemy 2 Core on SQLite (WAL) or PostgreSQL, plus a blob directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.store.accounts import AccountStore
from hub.store.blob_backend import open_blob_store
from hub.store.blob_cache import DEFAULT_CACHE_BYTES
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


def open_store(data_dir: Path, database_url: str, max_blob_bytes: int, *, blobs: str = "",
               s3_endpoint: str = "", blob_cache_bytes: int = DEFAULT_CACHE_BYTES) -> Store:
    """Open (and migrate) the database and the blob store: a directory under data_dir, or
    an S3 bucket when ``blobs`` is ``s3://BUCKET/PREFIX`` (see hub.store.blob_backend).

    Raises:
        InvalidArgument: unsupported database URL.
        StorageError: the migration failed, or the S3 bucket cannot be reached.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or sqlite_url(data_dir))
    migrate(engine)
    try:
        blob_store = open_blob_store(data_dir, engine, max_blob_bytes, blobs, s3_endpoint, blob_cache_bytes)
    except BaseException:
        engine.dispose()
        raise
    return Store(
        accounts=AccountStore(engine),
        designs=DesignStore(engine),
        blobs=blob_store,
        records=RecordStore(engine),
        nodes=NodeStore(engine),
        jobs=JobStore(engine),
        close=engine.dispose,
    )
