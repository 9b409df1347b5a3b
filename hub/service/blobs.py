"""Blob transfer use cases: which blobs are missing, streamed upload and download."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from hub.errors import InvalidArgument
from hub.service.common import Clock, format_time
from hub.store.blobs import READ_CHUNK, BlobStore, Upload, check_sha256

__all__ = ["BlobService", "Chunk", "UploadResult"]

MAX_HASHES = 10_000


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


class BlobService:
    def __init__(self, blobs: BlobStore, clock: Clock) -> None:
        self.blobs, self.clock = blobs, clock

    async def missing(self, hashes: Sequence[str]) -> list[str]:
        """Raises: InvalidArgument: a malformed hash or too many."""
        if len(hashes) > MAX_HASHES:
            raise InvalidArgument(f"ask about at most {MAX_HASHES} hashes at a time")
        return await asyncio.to_thread(self.blobs._thd_missing, hashes)

    async def upload(self, chunks: AsyncIterator[Chunk]) -> UploadResult:
        """Receive one blob; it is stored only when every byte matches the declared hash.

        Raises:
            InvalidArgument: no first chunk, bad hash, offsets out of order.
            IntegrityError: the bytes or size do not match the declaration.
            ResourceExhausted: larger than the hub's limit (nothing is kept).
        """
        first = await anext(chunks, None)
        if first is None:
            raise InvalidArgument("empty upload: the first chunk must declare sha256 and total_size")
        sha = check_sha256(first.sha256)
        if not await asyncio.to_thread(self.blobs._thd_missing, [sha]):
            async for _ in chunks:
                pass
            return UploadResult(sha, await asyncio.to_thread(self.blobs._thd_size, sha), True)
        upload = await asyncio.to_thread(self.blobs._thd_begin, sha, first.total_size)
        try:
            await self._receive(upload, first, chunks)
            size = await asyncio.to_thread(self.blobs._thd_commit, upload, format_time(self.clock()))
        finally:
            upload.abort()
        return UploadResult(sha, size, False)

    @staticmethod
    async def _receive(upload: Upload, first: Chunk, chunks: AsyncIterator[Chunk]) -> None:
        # Chunk N is written (in a worker thread) while chunk N+1 is being received.
        chunk: Chunk | None = first
        expected = 0
        while chunk is not None:
            if chunk.offset != expected:
                raise InvalidArgument(f"chunk at offset {chunk.offset}, expected {expected}")
            expected += len(chunk.data)
            write = asyncio.ensure_future(asyncio.to_thread(upload.write, chunk.data)) if chunk.data else None
            try:
                chunk = await anext(chunks, None)
            finally:
                if write is not None:
                    await write

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
