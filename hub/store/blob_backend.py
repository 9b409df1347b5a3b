"""The blob-store interface both backends implement, and the factory that picks one.

A blob store keeps content-addressed bytes (key = SHA-256) plus their rows in the
``blobs`` table. Two backends implement :class:`BlobBackend`:

* :class:`hub.store.blobs.BlobStore`: files under ``<data>/blobs/ab/cdef…`` (the default);
* :class:`hub.store.s3blobs.S3BlobStore`: objects ``<prefix>/ab/cdef…`` in an S3-compatible
  bucket (``--blobs s3://BUCKET/PREFIX``), with a local cache for the checks and the slicer.

Both verify a blob's SHA-256 and size while it streams in and make it visible only
once verified, so a blob is either wholly present or absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

from hub.errors import InvalidArgument
from hub.store.blob_cache import DEFAULT_CACHE_BYTES
from hub.store.blobs import BlobStore, Upload
from hub.store.engine import make_engine, sqlite_url

__all__ = ["BlobBackend", "open_blob_store", "open_blob_store_for_copy"]

S3_SCHEME = "s3://"


class BlobBackend(Protocol):
    """What the services need of a blob store; ``_thd_`` methods block (asyncio.to_thread)."""

    max_blob_bytes: int

    def path(self, sha256: str) -> Path:
        """A local file holding the blob's bytes (for the printability check and the slicer)."""

    def _thd_missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes with no stored blob, in the given order, deduplicated."""

    def _thd_begin(self, sha256: str, declared_size: int) -> Upload:
        """Start receiving a blob (an Upload spools and hashes; its finish() makes the blob visible)."""

    def check_declared_size(self, declared_size: int) -> None:
        """Refuse a declared size over ``max_blob_bytes`` (ResourceExhausted), without I/O."""

    def _thd_commit(self, upload: Upload, now: str) -> int:
        """Finish an upload and record its row; returns the size."""

    def _thd_record(self, sha256: str, size: int, now: str) -> None:
        """Record a stored blob's row (idempotent)."""

    def _thd_size(self, sha256: str) -> int:
        """The size of a stored blob (NotFound when absent)."""

    def _thd_read(self, sha256: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (empty at the end)."""

    def _thd_sha256_of(self, sha256: str) -> str | None:
        """Re-hash a stored blob, streaming (None when absent)."""

    def temp_files(self) -> list[Path]:
        """Leftovers of uploads in progress or aborted (tests assert there are none)."""

    def iter_chunks(self, sha256: str, offset: int = 0) -> Iterator[bytes]:
        """The blob's bytes from ``offset``, in chunks (blocking)."""


def open_blob_store(data_dir: Path, engine: sa.Engine, max_blob_bytes: int, blobs: str = "",
                    s3_endpoint: str = "", cache_max_bytes: int = DEFAULT_CACHE_BYTES) -> BlobStore:
    """The blob store a hub was configured with: local directory (``blobs`` empty) or S3.

    Args:
        data_dir: the hub's data directory (local blobs, or the S3 backend's cache).
        engine: the database holding the ``blobs`` table.
        max_blob_bytes: upload limit per blob.
        blobs: "" or ``s3://BUCKET[/PREFIX]``.
        s3_endpoint: URL of an S3-compatible server; "" = AWS (credentials and region from the
            standard AWS_* environment variables or ~/.aws).
        cache_max_bytes: S3 only: size cap of the local blob cache (hub.store.blob_cache).

    Raises:
        InvalidArgument: ``blobs`` is neither empty nor an s3:// URL.
        StorageError: the bucket cannot be reached or does not exist.
    """
    if not blobs:
        return BlobStore(Path(data_dir) / "blobs", engine, max_blob_bytes)
    if not blobs.startswith(S3_SCHEME):
        raise InvalidArgument(f"--blobs {blobs!r:.100}: expected s3://BUCKET/PREFIX (or omit it for local files)")
    # boto3 takes ~0.3 s to import: only hubs configured for S3 pay for it.
    from hub.store.s3blobs import S3BlobStore, parse_s3_url

    return S3BlobStore(parse_s3_url(blobs, s3_endpoint), Path(data_dir) / "blob-cache", engine, max_blob_bytes,
                       cache_max_bytes)


def open_blob_store_for_copy(data_dir: Path, database_url: str, blobs: str, s3_endpoint: str = "") -> BlobStore:
    """A blob store for backup and restore: no upload limit, and no database connection kept
    (copying blobs reads no rows; the engine reconnects if a row is ever asked for).

    Raises:
        InvalidArgument: ``blobs`` is neither empty nor an s3:// URL.
        StorageError: the bucket cannot be reached or does not exist.
    """
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or sqlite_url(data_dir))
    try:
        return open_blob_store(data_dir, engine, 1 << 40, blobs, s3_endpoint)
    finally:
        engine.dispose()
