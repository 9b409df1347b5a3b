"""Blob uploads for ``spime push``: only what the hub lacks, a few streams at a time.

Files are offered in batches as soon as their hashes are known, so the first
blobs travel while later files are still being hashed. Each blob is one
client-streamed UploadBlob call of ~1 MiB chunks; the first chunk declares the
hash and size, and the hub stores the blob only if every byte matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Self

from spimeforge.v1 import common_pb2, designs_pb2

from hub.client.common import Progress, log
from hub.client.connection import Hub
from hub.client.local import CHUNK, LocalFile, iter_chunks

__all__ = ["PARALLEL_STREAMS", "Uploader"]

# Concurrent blob streams: overlaps the hub's hashing and disk writes with sending.
PARALLEL_STREAMS = 2
_UPLOAD_TIMEOUT = 6 * 3600.0


class Uploader:
    """Uploads the blobs the hub lacks as files are offered; use as a context manager."""

    def __init__(self, hub: Hub, *, streams: int = PARALLEL_STREAMS, progress: bool = True) -> None:
        self._hub = hub
        self._pool = ThreadPoolExecutor(max_workers=max(1, streams), thread_name_prefix="upload")
        self._futures: list[Future[None]] = []
        self._offered: set[str] = set()
        self._bar = Progress(0, "uploading blobs") if progress else None
        self.blobs = 0
        self.bytes = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
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
        self._futures.append(self._pool.submit(_upload_one, self._hub, f, self._bar))

    def finish(self) -> tuple[int, int]:
        """Wait for every queued upload; return (blobs, bytes) sent.

        Raises:
            HubRefused: the hub refused a blob (hash mismatch, over the size limit…).
        """
        for future in self._futures:
            future.result()
        if not self.blobs:
            log("all blobs already on the hub: 0 bytes to send")
        elif self._bar is not None:
            self._bar.finish()
        return self.blobs, self.bytes

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done():
                future.result()


def _upload_one(hub: Hub, f: LocalFile, bar: Progress | None) -> None:
    with hub.errors():
        hub.designs.UploadBlob(_chunks(f, bar), metadata=hub.metadata, timeout=_UPLOAD_TIMEOUT)


def _chunks(f: LocalFile, bar: Progress | None) -> Iterator[common_pb2.BlobChunk]:
    offset = 0
    for data in iter_chunks(f.abspath, CHUNK):
        if offset == 0:
            yield common_pb2.BlobChunk(sha256=f.sha256, total_size=f.size, offset=0, data=data)
        else:
            yield common_pb2.BlobChunk(offset=offset, data=data)
        offset += len(data)
        if bar:
            bar.advance(len(data))
    if offset == 0:
        yield common_pb2.BlobChunk(sha256=f.sha256, total_size=f.size, offset=0, data=b"")
