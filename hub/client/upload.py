"""Blob uploads for ``spime push``: only what the hub lacks, a few streams at a time.

Files are offered in batches as soon as their hashes are known, so the first
blobs travel while later files are still being hashed. Each blob is one
client-streamed UploadBlob call of UPLOAD_CHUNK-sized messages; the first
declares the hash and size, and the hub stores the blob only if every byte
matches. When one blob is refused, the uploads still in flight are stopped: their
streams end early, so the hub refuses them as short and removes what it received
before it answers; the push waits for those answers (up to STOP_WAIT_S, then it
cancels), so when it reports the refusal (which names the file) the hub holds
nothing half-received.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Self

import grpc
from spimeforge.v1 import common_pb2, designs_pb2

from hub.client.common import HubRefused, Progress, log
from hub.client.connection import Hub, translate
from hub.client.local import LocalFile

__all__ = ["PARALLEL_STREAMS", "UPLOAD_CHUNK", "Uploader", "encode_chunk"]

# Blob streams sending at once: overlaps the hub's hashing and writing of one blob with sending
# another. One more call may be open per push: a blob whose bytes are all sent is verified,
# fsynced and recorded by the hub while the next one already travels (a stream waiting for
# that answer held its slot for ~20-90 ms per blob). The hub lets one account run 4 uploads at
# once and lets a fifth wait for a slot (hub.limits), so two pushes side by side still get on.
PARALLEL_STREAMS = 2
# File bytes per message (the hub refuses messages over 8 MiB). Measured on the push bench:
# 512 KiB costs both ends less CPU than 1 MiB or more (buffers of that size are reused by
# malloc instead of being mapped fresh, page by page, for every message) and than 256 KiB
# (more messages); 4 MiB also raised the hub's peak memory by ~50 MB.
UPLOAD_CHUNK = 512 << 10
_UPLOAD_TIMEOUT = 6 * 3600.0
# How long a failed push waits for the hub to answer the streams it stopped, before cancelling them.
STOP_WAIT_S = 10.0
_SERVICE = designs_pb2.DESCRIPTOR.services_by_name["Designs"]
_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['UploadBlob'].name}"
# BlobChunk.data on the wire: its key (field number, wire type 2 = length-delimited).
_DATA_KEY = bytes([common_pb2.BlobChunk.DESCRIPTOR.fields_by_name["data"].number << 3 | 2])


def encode_chunk(header: common_pb2.BlobChunk, data: bytes) -> bytes:
    """The serialized BlobChunk ``header`` with ``data`` as its data field.

    Equal to ``header`` with data set, serialized, but built with one copy of the
    bytes: protobuf's encoder copies a large bytes field several times.
    """
    head: bytes = header.SerializeToString()
    return b"".join((head, _DATA_KEY, _varint(len(data)), data)) if data else head


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class Uploader:
    """Uploads the blobs the hub lacks as files are offered; use as a context manager."""

    def __init__(self, hub: Hub, *, streams: int = PARALLEL_STREAMS, progress: bool = True) -> None:
        self._hub = hub
        self._pool = ThreadPoolExecutor(max_workers=max(1, streams) + 1, thread_name_prefix="upload")
        self._sending = threading.BoundedSemaphore(max(1, streams))
        self._futures: list[Future[None]] = []
        self._offered: set[str] = set()
        self._calls: set[grpc.Future] = set()
        self._lock = threading.Lock()
        self._failed = False
        self._stop = threading.Event()
        self._refusal: HubRefused | None = None
        self._bar = Progress(0, "uploading blobs") if progress else None
        self._send = hub.channel.stream_unary(
            _METHOD, request_serializer=None,  # messages are serialized by encode_chunk
            response_deserializer=designs_pb2.UploadBlobResponse.FromString)
        self.blobs = 0
        self.bytes = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, Exception):
            self._stop_all()
        elif exc is not None:  # Ctrl-C: do not wait for the hub's answers
            self._cancel_all()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def offer(self, files: Iterable[LocalFile]) -> None:
        """Ask the hub which of these blobs it lacks and queue those, largest first.

        Raises:
            HubRefused: MissingBlobs was refused, or an earlier upload failed.
        """
        self._raise_failed()
        new = {f.sha256: f for f in files if f.sha256 not in self._offered}
        if not new:
            return
        self._offered |= new.keys()
        missing = self._hub.call(self._hub.designs.MissingBlobs,
                                 designs_pb2.MissingBlobsRequest(sha256=sorted(new))).sha256
        for f in sorted((new[h] for h in missing if h in new), key=lambda f: -f.size):
            self._queue(f)

    def _queue(self, f: LocalFile) -> None:
        self.blobs += 1
        self.bytes += f.size
        if self._bar is not None:
            self._bar.total = max(self.bytes, 1)
            self._bar.label = f"uploading {self.blobs} blob(s)"
        self._futures.append(self._pool.submit(self._upload_one, f))

    def finish(self) -> tuple[int, int]:
        """Wait for every queued upload; return (blobs, bytes) sent.

        Raises:
            HubRefused: the hub refused a blob (hash mismatch, over the size limit…); the
                message names the file, and the hub has answered the uploads it stopped.
        """
        wait(self._futures, return_when=FIRST_EXCEPTION)
        self._raise_failed()
        if not self.blobs:
            log("all blobs already on the hub: 0 bytes to send")
        elif self._bar is not None:
            self._bar.finish()
        return self.blobs, self.bytes

    def _raise_failed(self) -> None:
        # The first refusal the hub gave, not the stops it caused in the other streams.
        failed = [f for f in self._futures if f.done() and not f.cancelled() and f.exception() is not None]
        if self._refusal is None and not failed:
            return
        self._stop_all()
        if self._refusal is not None:
            raise self._refusal
        failed[0].result()

    def _stop_all(self) -> None:
        """End every stream early and wait (up to STOP_WAIT_S) for the hub to answer each."""
        with self._lock:
            self._failed = True
        self._stop.set()
        for future in self._futures:
            future.cancel()  # those not started yet
        running = [f for f in self._futures if not f.cancelled()]
        if wait(running, timeout=STOP_WAIT_S).not_done:
            self._cancel_all()

    def _cancel_all(self) -> None:
        with self._lock:
            self._failed = True
            calls = list(self._calls)
        self._stop.set()
        for call in calls:
            call.cancel()
        for future in self._futures:
            future.cancel()

    def _upload_one(self, f: LocalFile) -> None:
        self._sending.acquire()
        slot = _Slot(self._sending)
        try:
            self._upload_call(f, slot)
        finally:
            slot.release()

    def _upload_call(self, f: LocalFile, slot: _Slot) -> None:
        if self._stop.is_set():
            raise _Cancelled(f.path)
        call = self._send.future(_frames(f, self._bar, self._stop, slot.release), metadata=self._hub.metadata,
                                 timeout=_UPLOAD_TIMEOUT)
        with self._lock:
            self._calls.add(call)
        try:
            call.result()
        except grpc.FutureCancelledError as exc:
            raise _Cancelled(f.path) from exc
        except grpc.RpcError as exc:
            if self._failed:  # stopped (the hub refused it as short) or cancelled
                raise _Cancelled(f.path) from exc
            refusal = _refused(f, exc, self._hub.address)
            with self._lock:
                if self._refusal is None:
                    self._refusal = refusal
                self._failed = True
            self._stop.set()
            raise refusal from exc
        finally:
            with self._lock:
                self._calls.discard(call)


class _Slot:
    """A sending slot held by one upload: given back once, when its last chunk is sent or its call ends."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._slots.release()


class _Cancelled(HubRefused):
    """An upload stopped because another one failed (never the error reported first)."""

    def __init__(self, path: str) -> None:
        super().__init__("CANCELLED", f"{path}: upload stopped after another file failed")


def _refused(f: LocalFile, exc: grpc.RpcError, address: str) -> HubRefused:
    refused = translate(exc, address)
    again = "push again: the blobs already stored are not sent again."
    if "(limit concurrent" in refused.details or "(limit rate" in refused.details:
        refused.hint = f"other uploads from your account are running; wait until they end, then {again}"
    elif "sent nothing for" in refused.details:
        refused.hint = again
    elif refused.code_name == "INVALID_ARGUMENT" and ("hash" in refused.details or "bytes" in refused.details):
        refused.hint = f"did {f.path} change while it was being pushed? {again}"
    return HubRefused(refused.code_name, f"uploading {f.path}: {refused.details}", refused.hint)


def _frames(f: LocalFile, bar: Progress | None, stop: threading.Event,
            sent: Callable[[], None]) -> Iterator[bytes]:
    """Serialized BlobChunk messages of ``f``, read one message ahead of the send.

    Calls ``sent`` once gRPC has sent the last message (it asks for the next only then).
    Ends early once ``stop`` is set: the hub then refuses the short stream and
    removes what it received before it answers.
    """
    offset = 0
    with f.abspath.open("rb") as fh:
        while not stop.is_set() and (data := fh.read(UPLOAD_CHUNK)):
            header = (common_pb2.BlobChunk(sha256=f.sha256, total_size=f.size, offset=0) if offset == 0
                      else common_pb2.BlobChunk(offset=offset))
            yield encode_chunk(header, data)
            offset += len(data)
            if bar:
                bar.advance(len(data))
    if offset == 0 and not stop.is_set():
        yield encode_chunk(common_pb2.BlobChunk(sha256=f.sha256, total_size=f.size, offset=0), b"")
    sent()
