"""Blob transfer use cases: which blobs are missing, streamed upload and download."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from hub.errors import IntegrityError, InvalidArgument, ResourceExhausted
from hub.service.common import Clock, format_time
from hub.store.blobs import READ_CHUNK, BlobStore, Upload, check_sha256

__all__ = ["BlobService", "Chunk", "UploadResult"]

MAX_HASHES = 10_000
# Bytes queued between the receive loop and an upload's writer thread. When the queue is
# full the receive loop stops reading, so gRPC's flow control holds the client back.
QUEUE_BYTES = 4 << 20
# Uploads written at once (one thread each); more wait before their first write. Each
# account may run hub.limits.CONCURRENT_CALLS["Designs.UploadBlob"] (4) at once, so a few
# hostile accounts holding idle streams (each ended after the idle timeout) leave slots
# for everyone else; the memory bound is MAX_WRITERS * QUEUE_BYTES of queued chunks.
MAX_WRITERS = 16
_COMMIT, _ABORT = object(), object()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a transfer; sha256 and total_size are set in the first one.

    An upload's data is a view of the message it arrived in (hub.api.blob_wire): hashed and
    written as it is, never copied.
    """

    sha256: str
    total_size: int
    offset: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class UploadResult:
    sha256: str
    size: int
    already_present: bool


class BlobWriter:
    """Creates, hashes, writes and ends one upload's temporary file, all in its own thread.

    The event loop hands chunks over through a queue bounded by ``depth`` bytes
    (``put`` awaits while it is full; the thread wakes it only then, not once per
    chunk). The thread alone owns the temporary file, from its creation (``begin``)
    to its end: committing it (``commit``: verify, fsync, rename, record the row) or
    removing it. ``commit`` and ``abort`` return only once the thread is done with
    the file, so when the hub answers a call (or a cancelled call's handler ends)
    nothing of the upload is left half-stored, and a call cancelled once the commit
    has begun still ends with the blob and its row, never one without the other.
    """

    def __init__(self, begin: Callable[[], Upload], commit: Callable[[Upload], int],
                 depth: int = QUEUE_BYTES) -> None:
        self._begin, self._commit, self._depth = begin, commit, depth
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._queued = 0  # bytes put and not yet written (under _lock)
        self._wake: asyncio.Future[None] | None = None  # set while put() waits for room (under _lock)
        self._error: BaseException | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._done: asyncio.Future[int] = self._loop.create_future()
        self._ended = False
        threading.Thread(target=self._run, name="blob-writer", daemon=True).start()

    async def put(self, data: bytes | memoryview) -> None:
        """Queue a chunk, waiting while ``depth`` bytes are pending.

        Raises:
            OSError, HubError: the thread failed (creating the file, disk full…).
        """
        while True:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if not self._queued or self._queued + len(data) <= self._depth:
                    self._queued += len(data)
                    self._queue.put(data)
                    return
                wake = self._wake = self._loop.create_future()
            await wake

    async def commit(self) -> int:
        """Commit the blob (verify, fsync, move into place, record) once all chunks are written.

        Raises:
            IntegrityError: size or hash differ from the declaration (nothing stored).
            OSError: writing failed.
        """
        self._ended = True
        self._queue.put(_COMMIT)
        return await self._done

    async def abort(self) -> None:
        """Drop the upload and wait until the thread has removed the temporary file."""
        if not self._ended:
            self._ended = True
            self._queue.put(_ABORT)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._done)

    def _run(self) -> None:
        upload: Upload | None = None
        size = 0
        error: BaseException | None = None
        try:
            upload = self._begin()
            size = self._drain(upload)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which raises it
            error = exc
            self._fail(exc)
        finally:
            if upload is not None:
                upload.abort()  # a committed file was moved away: this only closes it
            self._call(self._finish, size, error)

    def _drain(self, upload: Upload) -> int:
        while True:
            item = self._queue.get()
            if item is _COMMIT:
                return self._commit(upload)
            if item is _ABORT:
                return 0
            upload.absorb(item)  # type: ignore[arg-type]
            self._written(len(item))  # type: ignore[arg-type]

    def _written(self, n: int) -> None:
        with self._lock:
            self._queued -= n
            wake, self._wake = self._wake, None
        if wake is not None:
            self._call(_wake, wake)

    def _fail(self, exc: BaseException) -> None:
        # The next put() raises the error (a waiting one is woken to see it); the receive
        # loop then aborts, or commit() raises it. Chunks still queued are simply dropped.
        with self._lock:
            self._error = exc
            wake, self._wake = self._wake, None
        if wake is not None:
            self._call(_wake, wake)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the hub is shutting down
            pass

    def _finish(self, size: int, error: BaseException | None) -> None:
        if self._done.done():
            return
        if error is not None:
            self._done.set_exception(error)
        else:
            self._done.set_result(size)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _next(chunks: AsyncIterator[Chunk], idle_timeout_s: float) -> Chunk | None:
    """The next chunk, or None at the end.

    Raises:
        ResourceExhausted: no chunk arrived within ``idle_timeout_s`` (the stream's slot is freed).
    """
    try:
        async with asyncio.timeout(idle_timeout_s):  # no task per chunk, unlike wait_for
            return await anext(chunks, None)
    except TimeoutError as exc:
        raise ResourceExhausted(
            f"upload stream sent nothing for {idle_timeout_s:g} s (limit upload_idle_timeout_s); "
            "it was ended and nothing was stored: upload the blob again",
            retryable=True, reason="UPLOAD_IDLE", retry_after_s=1.0,
        ) from exc


class BlobService:
    def __init__(self, blobs: BlobStore, clock: Clock, *, idle_timeout_s: float = 30.0) -> None:
        self.blobs, self.clock = blobs, clock
        self.idle_timeout_s = idle_timeout_s
        self._writers = asyncio.Semaphore(MAX_WRITERS)

    async def missing(self, hashes: Sequence[str]) -> list[str]:
        """Raises: InvalidArgument: a malformed hash or too many."""
        if len(hashes) > MAX_HASHES:
            raise InvalidArgument(f"ask about at most {MAX_HASHES} hashes at a time")
        return await asyncio.to_thread(self.blobs._thd_missing, hashes)

    async def upload(self, chunks: AsyncIterator[Chunk]) -> UploadResult:
        """Receive one blob; it is stored only when every byte matches the declared hash.

        A blob the hub already has is answered at once (already_present) without
        reading the rest of the stream, once its declared size matches. A declared
        size over the hub's limit is refused before any byte is written, and the
        first chunk past the declared size (or the limit) ends the stream.

        Raises:
            InvalidArgument: no first chunk, bad hash, offsets out of order.
            IntegrityError: the bytes or size do not match the declaration.
            ResourceExhausted: larger than the hub's limit, or the stream went idle (nothing is kept).
        """
        first = await _next(chunks, self.idle_timeout_s)
        if first is None:
            raise InvalidArgument("empty upload: the first chunk must declare sha256 and total_size")
        sha = check_sha256(first.sha256)
        if not await asyncio.to_thread(self.blobs._thd_missing, [sha]):
            return await self._present(sha, first)
        self.blobs.check_declared_size(first.total_size)
        async with self._writers:
            writer = BlobWriter(functools.partial(self.blobs._thd_begin, sha, first.total_size),
                                self._thd_commit)
            try:
                await self._receive(writer, first, chunks)
                size = await writer.commit()
            except BaseException:
                await writer.abort()
                raise
        return UploadResult(sha, size, False)

    async def _present(self, sha: str, first: Chunk) -> UploadResult:
        size = await asyncio.to_thread(self.blobs._thd_size, sha)
        if first.total_size != size or len(first.data) > size or first.offset:
            raise IntegrityError(
                f"blob {sha[:12]} is on the hub with {size} bytes, not the declared {first.total_size}; "
                "nothing was changed"
            )
        return UploadResult(sha, size, True)

    def _thd_commit(self, upload: Upload) -> int:
        return self.blobs._thd_commit(upload, format_time(self.clock()))

    async def _receive(self, writer: BlobWriter, first: Chunk, chunks: AsyncIterator[Chunk]) -> None:
        # The writer thread hashes and writes earlier chunks while later ones arrive.
        sha, declared, limit = first.sha256, first.total_size, self.blobs.max_blob_bytes
        chunk: Chunk | None = first
        expected = 0
        while chunk is not None:
            if chunk.offset != expected:
                raise InvalidArgument(f"chunk at offset {chunk.offset}, expected {expected}")
            if chunk is not first and (chunk.sha256 not in ("", sha) or chunk.total_size not in (0, declared)):
                raise InvalidArgument(
                    f"a chunk after the first declares sha256 {chunk.sha256[:64]!r} and total_size {chunk.total_size}: "
                    f"leave both unset, or repeat the first chunk's ({sha[:12]}…, {declared})",
                    field="BlobChunk.sha256" if chunk.sha256 not in ("", sha) else "BlobChunk.total_size")
            expected += len(chunk.data)
            if expected > limit:
                raise ResourceExhausted(f"blob {sha[:12]} exceeds the hub's upload limit of {limit} bytes "
                                        "(limit max_blob_bytes); the stream was ended and nothing was stored")
            if expected > declared:
                raise IntegrityError(f"blob {sha[:12]}: more bytes than the declared total_size {declared} "
                                     "(limit BlobChunk.total_size); the stream was ended and nothing was stored")
            if chunk.data:
                await writer.put(chunk.data)
            # A turn for the other calls: when the next chunks are already buffered, neither the put
            # nor the read waits, and one stream would keep the event loop for megabytes on end.
            await asyncio.sleep(0)
            chunk = await _next(chunks, self.idle_timeout_s)

    async def download(self, sha256: str, offset: int) -> AsyncIterator[Chunk]:
        """Stream a blob from an offset (resumable).

        Raises:
            NotFound: no such blob.
            InvalidArgument: offset beyond the end.
        """
        total = await asyncio.to_thread(self.blobs._thd_size, sha256)
        if offset > total:
            raise InvalidArgument(f"offset {offset} is beyond the blob's {total} bytes")
        first = True
        while offset < total or first:
            data = await asyncio.to_thread(self.blobs._thd_read, sha256, offset, READ_CHUNK)
            yield Chunk(sha256 if first else "", total if first else 0, offset, data)
            first = False
            offset += len(data)
            if not data:
                break
