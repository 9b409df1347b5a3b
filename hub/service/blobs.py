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
# MiB queued between the receive loop and an upload's writer thread (a chunk takes one
# slot per started 256 KiB, at most all of them). When the queue is full the receive loop
# stops reading, so gRPC's flow control holds the client back.
QUEUE_DEPTH = 4
_SLOT = 256 << 10
_SLOTS_PER_MIB = (1 << 20) // _SLOT
# Uploads written at once (one thread each); more wait before their first write. Each
# account may run hub.limits.CONCURRENT_CALLS["Designs.UploadBlob"] (4) at once, so a few
# hostile accounts holding idle streams (each ended after the idle timeout) leave slots
# for everyone else; the memory bound is MAX_WRITERS * QUEUE_DEPTH MiB of queued chunks.
MAX_WRITERS = 16
_COMMIT, _ABORT = object(), object()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a transfer; sha256 and total_size are set in the first one."""

    sha256: str
    total_size: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class UploadResult:
    sha256: str
    size: int
    already_present: bool


class BlobWriter:
    """Hashes and writes one upload's chunks, in order, in its own thread.

    The event loop hands chunks over through a queue bounded by QUEUE_DEPTH
    (``put`` awaits while it is full). The thread owns the temporary file: it
    ends the upload by committing it (``commit``: verify, fsync, rename, record
    the row; by default only ``upload.finish``) or aborting it (remove), so
    nothing is half-stored whichever way the receive loop ends: a call cancelled
    once the commit has begun still ends with the blob and its row, never one
    without the other.
    """

    def __init__(self, upload: Upload, commit: Callable[[], int] | None = None,
                 depth: int = QUEUE_DEPTH) -> None:
        self._upload = upload
        self._commit = commit if commit is not None else upload.finish
        self._loop = asyncio.get_running_loop()
        self._depth = depth * _SLOTS_PER_MIB
        self._slots = asyncio.Semaphore(self._depth)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._done: asyncio.Future[int] = self._loop.create_future()
        self._error: BaseException | None = None
        self._ended = False
        self._got_end = False
        threading.Thread(target=self._run, name=f"blob-{upload.sha256[:8]}", daemon=True).start()

    async def put(self, data: bytes) -> None:
        """Queue a chunk, waiting while QUEUE_DEPTH MiB are pending.

        Raises:
            OSError: the thread failed to write an earlier chunk (disk full…).
        """
        for _ in range(self._weight(data)):
            await self._slots.acquire()
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def _weight(self, data: bytes) -> int:
        return min(self._depth, -(-len(data) // _SLOT))

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
        size = 0
        error: BaseException | None = RuntimeError("the blob writer thread stopped")
        try:
            size, error = self._drain(), None
        except Exception as exc:  # noqa: BLE001 - handed to the event loop, which raises it
            self._error = error = exc
            self._discard_rest()
        finally:
            self._upload.abort()
            self._call(self._finish, size, error)

    def _drain(self) -> int:
        while True:
            item = self._queue.get()
            if item is _COMMIT or item is _ABORT:
                self._got_end = True
                return self._commit() if item is _COMMIT else 0
            self._upload.absorb(item)  # type: ignore[arg-type]
            self._call(self._free, self._weight(item))  # type: ignore[arg-type]

    def _discard_rest(self) -> None:
        # Free enough slots that a receive loop blocked in put() wakes and sees the error.
        self._call(self._free, self._depth)
        while not self._got_end:
            item = self._queue.get()
            self._got_end = item is _COMMIT or item is _ABORT
            self._call(self._free, self._depth)

    def _free(self, slots: int) -> None:
        for _ in range(slots):
            self._slots.release()

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


def _abort_begun(begun: asyncio.Future[Upload]) -> None:
    if not begun.cancelled() and begun.exception() is None:
        begun.result().abort()


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
        reading the rest of the stream, once its declared size matches.

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
        async with self._writers:
            upload = await self._begin(sha, first.total_size)
            size = await self._store(upload, first, chunks)
        return UploadResult(sha, size, False)

    async def _begin(self, sha: str, size: int) -> Upload:
        # A call cancelled while the thread creates the temporary file must still remove it.
        begun = asyncio.ensure_future(asyncio.to_thread(self.blobs._thd_begin, sha, size))
        try:
            return await asyncio.shield(begun)
        except asyncio.CancelledError:
            begun.add_done_callback(_abort_begun)
            raise

    async def _present(self, sha: str, first: Chunk) -> UploadResult:
        size = await asyncio.to_thread(self.blobs._thd_size, sha)
        if first.total_size != size or len(first.data) > size or first.offset:
            raise IntegrityError(
                f"blob {sha[:12]} is on the hub with {size} bytes, not the declared {first.total_size}; "
                "nothing was changed"
            )
        return UploadResult(sha, size, True)

    async def _store(self, upload: Upload, first: Chunk, chunks: AsyncIterator[Chunk]) -> int:
        try:
            writer = BlobWriter(upload, functools.partial(self._thd_commit, upload))
        except BaseException:
            upload.abort()
            raise
        try:
            await self._receive(upload, writer, first, chunks)
            return await writer.commit()
        except BaseException:
            await writer.abort()
            raise

    def _thd_commit(self, upload: Upload) -> int:
        return self.blobs._thd_commit(upload, format_time(self.clock()))

    async def _receive(self, upload: Upload, writer: BlobWriter, first: Chunk, chunks: AsyncIterator[Chunk]) -> None:
        # The writer thread hashes and writes earlier chunks while later ones arrive.
        chunk: Chunk | None = first
        expected = 0
        while chunk is not None:
            if chunk.offset != expected:
                raise InvalidArgument(f"chunk at offset {chunk.offset}, expected {expected}")
            expected += len(chunk.data)
            upload.count(len(chunk.data))
            if chunk.data:
                await writer.put(chunk.data)
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
