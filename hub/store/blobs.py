"""Content-addressed blob store on a local directory, and the blobs table.

Files live at ``blobs/ab/cdef…`` under the data directory. An upload streams
into a temporary file under ``blobs/tmp/`` while its SHA-256 is computed; only
when the bytes match the declared hash and size is the file fsynced and
renamed into place (then its directory fsynced), so a blob is either wholly
present or absent, and on disk before the hub says it is stored. Nothing here
holds a whole file in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from hub.errors import IntegrityError, InvalidArgument, NotFound, ResourceExhausted
from hub.store import schema
from hub.store.engine import connect, insert_new, write

__all__ = ["BlobStore", "Upload", "check_sha256", "fsync_dir"]

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
READ_CHUNK = 1 << 20
STALE_UPLOAD_S = 3600
# Bytes an upload writes before it asks the kernel to start flushing them (Upload.absorb).
WRITEBACK_BYTES = 8 << 20
_FADVISE = getattr(os, "posix_fadvise", None)  # absent on macOS: finish() fsyncs everything then


def check_sha256(value: str) -> str:
    """Return a lowercase 64-hex SHA-256 or raise.

    Raises:
        InvalidArgument: the value is not 64 lowercase hex digits.
    """
    if not isinstance(value, str) or not _HEX64.match(value):
        raise InvalidArgument(f"{value!r:.80} is not a SHA-256 (64 lowercase hex digits)")
    return value


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Upload:
    """One blob being received: a temp file, a running hash and a byte count.

    Created, fed and ended by one thread (the hub's per-upload writer thread), so it
    needs no lock.
    """

    def __init__(self, store: BlobStore, sha256: str, declared_size: int, limit: int) -> None:
        self._store, self.sha256, self.declared_size, self._limit = store, sha256, declared_size, limit
        self._hash = hashlib.sha256()
        self.received = 0
        self._synced = 0
        fd, name = tempfile.mkstemp(prefix="up-", dir=store.tmp_dir)
        self._file = os.fdopen(fd, "wb")
        self.temp_path = Path(name)

    def write(self, data: bytes) -> None:
        """Check, hash and append a chunk (blocking I/O: call from a worker thread).

        Raises:
            ResourceExhausted: more bytes than the limit.
            IntegrityError: more bytes than declared.
        """
        self.count(len(data))
        self.absorb(data)

    def count(self, n: int) -> None:
        """Check that ``n`` more bytes stay within the limit and the declared size.

        Raises:
            ResourceExhausted: more bytes than the limit.
            IntegrityError: more bytes than declared.
        """
        total = self.received + n
        if total > self._limit:
            raise ResourceExhausted(
                f"blob {self.sha256[:12]} exceeds the hub's upload limit of {self._limit} bytes (limit max_blob_bytes)"
            )
        if total > self.declared_size:
            raise IntegrityError(f"blob {self.sha256[:12]}: more bytes than the declared total_size "
                                 f"{self.declared_size} (limit BlobChunk.total_size)")

    def absorb(self, data: bytes | memoryview) -> None:
        """Hash and append bytes already checked against the limits (blocking)."""
        self._hash.update(data)
        self._file.write(data)
        self.received += len(data)
        if self.received - self._synced >= WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        # Ask the kernel to start writing the bytes just written (dirty pages are not dropped),
        # as PostgreSQL's pg_flush_data does, so the fsync in finish() waits only for the tail
        # instead of the whole blob while the network stands still.
        self._file.flush()
        if _FADVISE is not None:
            _FADVISE(self._file.fileno(), self._synced, self.received - self._synced, os.POSIX_FADV_DONTNEED)
        self._synced = self.received

    def finish(self) -> int:
        """Verify, fsync and move the blob into place; returns its size.

        Raises:
            IntegrityError: size or hash differ from what was declared (temp file removed).
        """
        try:
            self._verify()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            final = self._store.path(self.sha256)
            if not final.parent.is_dir():
                final.parent.mkdir(parents=True, exist_ok=True)
                fsync_dir(final.parent.parent)
            os.replace(self.temp_path, final)
            fsync_dir(final.parent)  # the rename too survives a crash before the hub answers
            return self.received
        finally:
            self.abort()

    def _verify(self) -> None:
        if self.received != self.declared_size:
            raise IntegrityError(
                f"blob {self.sha256[:12]}: received {self.received} bytes, declared {self.declared_size}; "
                "nothing was stored, upload it again"
            )
        actual = self._hash.hexdigest()
        if actual != self.sha256:
            raise IntegrityError(
                f"blob bytes hash to {actual[:12]}…, not the declared {self.sha256[:12]}…; nothing was stored"
            )

    def abort(self) -> None:
        """Close and remove the temp file (idempotent)."""
        if not self._file.closed:
            self._file.close()
        self.temp_path.unlink(missing_ok=True)


class BlobStore:
    """Blob files under ``root`` plus their rows in the ``blobs`` table."""

    # The S3 backend (hub/store/s3blobs.py) spools and hashes the same way, then sends the verified file.
    upload_type: type[Upload] = Upload

    def __init__(self, root: Path, engine: sa.Engine, max_blob_bytes: int) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_uploads()
        self.engine = engine
        self.max_blob_bytes = max_blob_bytes

    def _remove_stale_uploads(self) -> None:
        # Left by a hub that was killed mid-upload; an hour is far beyond any live upload's idle time.
        cutoff = time.time() - STALE_UPLOAD_S
        for leftover in self.tmp_dir.glob("up-*"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def path(self, sha256: str) -> Path:
        """Where a blob's bytes live."""
        return self.root / sha256[:2] / sha256[2:]

    def _thd_missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes (in the given order, deduplicated) with no stored blob.

        Raises:
            InvalidArgument: a hash is malformed.
        """
        wanted = list(dict.fromkeys(check_sha256(h) for h in hashes))
        with connect(self.engine) as conn:
            known = set(conn.scalars(sa.select(schema.blobs.c.sha256).where(schema.blobs.c.sha256.in_(wanted))))
        return [h for h in wanted if h not in known or not self.path(h).exists()]

    def _thd_begin(self, sha256: str, declared_size: int) -> Upload:
        """Start receiving a blob.

        Raises:
            InvalidArgument: the hash is malformed.
            ResourceExhausted: the declared size is over the limit.
        """
        check_sha256(sha256)
        self.check_declared_size(declared_size)
        return self.upload_type(self, sha256, declared_size, self.max_blob_bytes)

    def check_declared_size(self, declared_size: int) -> None:
        """Refuse a declared size over the limit (no I/O: before any byte is read or written).

        Raises:
            ResourceExhausted: the declared size is over the limit.
        """
        if declared_size > self.max_blob_bytes:
            raise ResourceExhausted(
                f"blob of {declared_size} bytes exceeds the hub's upload limit of {self.max_blob_bytes} bytes "
                "(limit max_blob_bytes); nothing was stored"
            )

    def _thd_commit(self, upload: Upload, now: str) -> int:
        """Finish an upload and record the blob; returns its size.

        Raises:
            IntegrityError: bytes do not match the declared hash or size.
        """
        size = upload.finish()
        self._thd_record(upload.sha256, size, now)
        return size

    def _thd_record(self, sha256: str, size: int, now: str) -> None:
        with write(self.engine) as conn:  # the same blob uploaded at once: stored once, both answered
            insert_new(conn, schema.blobs, {"sha256": sha256, "size": size, "created_at": now})

    def _thd_size(self, sha256: str) -> int:
        """The size of a stored blob.

        Raises:
            NotFound: no such blob.
        """
        check_sha256(sha256)
        path = self.path(sha256)
        if not path.exists():
            raise NotFound(f"blob {sha256[:12]} is not on this hub")
        return path.stat().st_size

    def _thd_read(self, sha256: str, offset: int, length: int = READ_CHUNK) -> bytes:
        """Read one chunk of a blob from an offset (empty at the end).

        Raises:
            NotFound: no such blob.
        """
        with self._open(sha256) as handle:
            handle.seek(offset)
            data: bytes = handle.read(length)
            return data

    def _open(self, sha256: str) -> BinaryIO:
        check_sha256(sha256)
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256[:12]} is not on this hub") from exc

    def _thd_sha256_of(self, sha256: str) -> str | None:
        """Re-hash a stored blob (None when missing), streaming."""
        path = self.path(sha256)
        if not path.exists():
            return None
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def temp_files(self) -> list[Path]:
        """Leftover temporary upload files (tests assert there are none)."""
        return sorted(self.tmp_dir.iterdir())

    def iter_chunks(self, sha256: str, offset: int = 0) -> Iterator[bytes]:
        """Blocking chunk iterator (used by exports and verification)."""
        with self._open(sha256) as handle:
            handle.seek(offset)
            yield from iter(lambda: handle.read(READ_CHUNK), b"")
