"""Content-addressed blobs in an S3-compatible bucket (boto3), rows in the ``blobs`` table.

Objects live at ``<prefix>/ab/cdef…`` (key = SHA-256). An upload spools into a
bounded temporary file under the local cache while its SHA-256 is computed (the
local store's :class:`Upload`); only once bytes, size and hash match is it sent to
the bucket under its final key, in multipart parts of 8 MiB for large blobs, so an
object under a blob key always holds verified bytes. The verified file then stays
in the local cache (``<data>/blob-cache/ab/cdef…``), which serves the push-time
printability check, the slicer and downloads; objects are fetched into it on
demand, verified again. The cache only ever holds verified immutable bytes, is kept
under a size cap (hub.store.blob_cache: least recently used first) and may be deleted
while the hub is stopped. Several hub replicas may share one bucket and
one database.

Errors: a network or server fault is a retryable StorageError, a missing object
NotFound, a misconfiguration (no bucket, no credentials) a non-retryable StorageError.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import boto3.exceptions
import botocore.config
import botocore.exceptions
import sqlalchemy as sa
from boto3.s3.transfer import TransferConfig

from hub.errors import HubError, InvalidArgument, NotFound, StorageError
from hub.store import schema
from hub.store.blob_cache import DEFAULT_CACHE_BYTES, BlobCache
from hub.store.blobs import READ_CHUNK, BlobStore, Upload, check_sha256
from hub.store.engine import connect

__all__ = ["PART_BYTES", "S3BlobStore", "S3Location", "S3Upload", "parse_s3_url"]

PART_BYTES = 8 << 20
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]{0,200}\Z")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_TRANSIENT = {"500", "502", "503", "504", "InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout"}


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where blobs live: ``bucket``, a key ``prefix`` ("" or ending in "/"), an optional endpoint URL."""

    bucket: str
    prefix: str = ""
    endpoint: str = ""

    def key(self, sha256: str) -> str:
        """The object key of a blob."""
        return f"{self.prefix}{sha256[:2]}/{sha256[2:]}"

    def url(self) -> str:
        """``s3://bucket/prefix`` for messages."""
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(url: str, endpoint: str = "") -> S3Location:
    """Parse ``s3://BUCKET[/PREFIX]`` (+ an optional ``http(s)://`` endpoint).

    Raises:
        InvalidArgument: not an s3:// URL, a malformed bucket name or prefix, or a bad endpoint.
    """
    if not url.startswith("s3://"):
        raise InvalidArgument(f"--blobs {url!r:.100}: expected s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket):
        raise InvalidArgument(f"--blobs {url!r:.100}: {bucket!r:.70} is not an S3 bucket name "
                              "(3-63 lowercase letters, digits, dots and hyphens)")
    prefix = prefix.strip("/")
    if not _PREFIX.match(prefix) or ".." in prefix.split("/") or "//" in prefix:
        raise InvalidArgument(f"--blobs {url!r:.100}: the prefix may hold at most 200 letters, digits and . _ - /")
    if endpoint and (not endpoint.startswith(("http://", "https://")) or len(endpoint) > 2000):
        raise InvalidArgument(f"--s3-endpoint {endpoint!r:.100}: expected http(s)://HOST[:PORT]")
    return S3Location(bucket, f"{prefix}/" if prefix else "", endpoint)


def _code(exc: botocore.exceptions.ClientError) -> str:
    error: dict[str, Any] = exc.response.get("Error", {})
    return str(error.get("Code", ""))


def _translate(exc: Exception, what: str) -> HubError:
    """The hub error for a boto3/botocore failure while doing ``what``."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = _code(exc)
        if code in _MISSING:
            return NotFound(f"{what}: not in the blob bucket")
        if code in _TRANSIENT:
            return StorageError(f"{what}: the object store answered {code}; try again", retry_after_s=1.0)
        if code in {"NoSuchBucket", "AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return StorageError(f"{what}: the object store refused ({code}); check --blobs and the "
                                "AWS_* credentials of the hub", retryable=False)
        return StorageError(f"{what}: the object store answered {code or exc}", retryable=False)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StorageError(f"{what}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                            retryable=False)
    return StorageError(f"{what}: the object store is unreachable ({type(exc).__name__}); try again",
                        retry_after_s=1.0)


_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, boto3.exceptions.Boto3Error)


_SESSION_LOCK = threading.Lock()
_SESSIONS: list[Any] = []


def _session() -> Any:
    # Loading the S3 service model costs a fraction of a second per session: share one
    # (a boto3 session may not be used by two threads at once, its clients may).
    with _SESSION_LOCK:
        if not _SESSIONS:
            _SESSIONS.append(boto3.session.Session())
        return _SESSIONS[0]


def _client(location: S3Location) -> Any:
    config = botocore.config.Config(
        connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if location.endpoint else None,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    session = _session()
    with _SESSION_LOCK:
        return session.client("s3", endpoint_url=location.endpoint or None, region_name=region, config=config)


class S3Upload(Upload):
    """An upload spooled and hashed locally (see Upload), sent to the bucket once verified."""

    _store: S3BlobStore

    def finish(self) -> int:
        """Verify, then upload (multipart past PART_BYTES) and keep the file in the cache.

        Raises:
            IntegrityError: size or hash differ from what was declared (nothing is sent).
            StorageError: the object store failed (nothing is recorded; retry the upload).
        """
        try:
            self._verify()
            self._sync_close()
            self._store._thd_put_file(self.temp_path, self.sha256)
            self._store._keep(self.temp_path, self.sha256)
            return self.received
        finally:
            self.abort()

    def _sync_close(self) -> None:
        # The cache copy is trusted when read back: it must be whole after a crash.
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class S3BlobStore(BlobStore):
    """Blob objects in a bucket plus their rows in the ``blobs`` table (a BlobBackend)."""

    upload_type = S3Upload

    def __init__(self, location: S3Location, cache_dir: Path, engine: sa.Engine, max_blob_bytes: int,
                 cache_max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        super().__init__(cache_dir, engine, max_blob_bytes)
        self.location = location
        self.cache = BlobCache(cache_dir, cache_max_bytes)
        self._s3 = _client(location)
        self._transfer = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                                        max_concurrency=2)
        self._check_bucket()

    def _check_bucket(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.location.bucket)
        except _BOTO_ERRORS as exc:
            error = _translate(exc, f"bucket {self.location.bucket!r}")
            if isinstance(error, NotFound):
                error = StorageError(f"bucket {self.location.bucket!r} does not exist on "
                                     f"{self.location.endpoint or 'AWS'}: create it first", retryable=False)
            raise error from exc

    def _cached(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def _keep(self, verified: Path, sha256: str) -> None:
        final = self._cached(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        size = verified.stat().st_size
        os.replace(verified, final)
        self.cache.added(size)

    def path(self, sha256: str) -> Path:
        """A verified local copy of the blob, fetched into the cache if needed (blocking).

        Raises:
            NotFound: no such blob.
            IntegrityError: the object's bytes do not hash to its key (nothing is cached).
            StorageError: the object store failed.
        """
        check_sha256(sha256)
        cached = self._cached(sha256)
        if not self.cache.use(cached):
            self._fetch(sha256)
        return cached

    def _fetch(self, sha256: str) -> None:
        size = self._thd_size(sha256)
        upload = S3Upload(self, sha256, size, max(size, 1))
        try:
            for chunk in self.iter_chunks(sha256):
                upload.write(chunk)
            upload._verify()
            upload._sync_close()
            self._keep(upload.temp_path, sha256)
        finally:
            upload.abort()

    def _thd_put_file(self, source: Path, sha256: str) -> None:
        """Send a file whose SHA-256 the caller verified to the blob's key (multipart past PART_BYTES).

        Raises:
            StorageError: the object store failed.
        """
        try:
            self._s3.upload_file(str(source), self.location.bucket, self.location.key(sha256), Config=self._transfer)
        except _BOTO_ERRORS as exc:
            raise _translate(exc, f"storing blob {sha256[:12]}") from exc

    def _thd_has_object(self, sha256: str) -> bool:
        """Whether the bucket holds the blob's object (whatever the database says).

        Raises:
            StorageError: the object store failed.
        """
        try:
            self._head(sha256)
        except NotFound:
            return False
        return True

    def _head(self, sha256: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.location.bucket, Key=self.location.key(sha256))
        except _BOTO_ERRORS as exc:
            raise _translate(exc, f"blob {sha256[:12]}") from exc
        return head

    def _thd_missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes (in the given order, deduplicated) with no stored blob.

        Raises:
            InvalidArgument: a hash is malformed.
            StorageError: the object store failed.
        """
        wanted = list(dict.fromkeys(check_sha256(h) for h in hashes))
        with connect(self.engine) as conn:
            known = set(conn.scalars(sa.select(schema.blobs.c.sha256).where(schema.blobs.c.sha256.in_(wanted))))
        return [h for h in wanted if h not in known or not (self._cached(h).exists() or self._thd_has_object(h))]

    def _thd_size(self, sha256: str) -> int:
        """The size of a stored blob.

        Raises:
            NotFound: no such blob.
            StorageError: the object store failed.
        """
        check_sha256(sha256)
        cached = self._cached(sha256)
        if cached.exists():
            return cached.stat().st_size
        try:
            return int(self._head(sha256)["ContentLength"])
        except NotFound as exc:
            raise NotFound(f"blob {sha256[:12]} is not on this hub") from exc

    def _thd_read(self, sha256: str, offset: int, length: int = READ_CHUNK) -> bytes:
        """Read one chunk of a blob from an offset (empty at the end), from the cache or a ranged GET.

        Raises:
            NotFound: no such blob.
            StorageError: the object store failed.
        """
        check_sha256(sha256)
        if self.cache.use(self._cached(sha256)):
            return super()._thd_read(sha256, offset, length)
        if length <= 0:
            return b""
        return b"".join(self._stream(sha256, f"bytes={offset}-{offset + length - 1}"))

    def _open(self, sha256: str) -> Any:
        check_sha256(sha256)
        try:
            self.cache.use(self._cached(sha256))
            return open(self._cached(sha256), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {sha256[:12]} is not in the local cache") from exc

    def _stream(self, sha256: str, byte_range: str) -> Iterator[bytes]:
        try:
            body = self._s3.get_object(Bucket=self.location.bucket, Key=self.location.key(sha256),
                                       Range=byte_range)["Body"]
            with body:
                yield from body.iter_chunks(READ_CHUNK)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "InvalidRange":  # a range at or past the end: nothing to read
                return
            raise self._not_found_or(exc, sha256) from exc
        except _BOTO_ERRORS as exc:
            raise _translate(exc, f"reading blob {sha256[:12]}") from exc

    @staticmethod
    def _not_found_or(exc: Exception, sha256: str) -> HubError:
        error = _translate(exc, f"reading blob {sha256[:12]}")
        return NotFound(f"blob {sha256[:12]} is not on this hub") if isinstance(error, NotFound) else error

    def _thd_sha256_of(self, sha256: str) -> str | None:
        """Re-hash the stored object (not the cache), streaming; None when missing.

        Raises:
            StorageError: the object store failed.
        """
        digest = hashlib.sha256()
        try:
            for chunk in self._stream(sha256, "bytes=0-"):
                digest.update(chunk)
        except NotFound:
            return None
        return digest.hexdigest()

    def iter_chunks(self, sha256: str, offset: int = 0) -> Iterator[bytes]:
        """Blocking chunk iterator over the stored object from an offset.

        Raises:
            NotFound: no such blob.
            StorageError: the object store failed.
        """
        check_sha256(sha256)
        yield from self._stream(sha256, f"bytes={offset}-")
