"""The hub's blob receive path: back-pressure to the client, writer errors, cancelled uploads.

Each upload is hashed and written by its own thread behind a bounded queue; when
the disk is slower than the network, the receive loop stops reading and gRPC
flow control holds the client back instead of the hub buffering the blob.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import common_pb2, designs_pb2

from hub.service.blobs import Chunk, UploadResult
from hub.store.blobs import Upload
from tests.hub.harness import InProcessHub, sha

MIB = 1 << 20
# Hub queue (4 MiB) + the chunk being received + HTTP/2 windows + the client's send buffers.
BUFFERED_BOUND = 12 * MIB


class Sender:
    """Streams ``size`` bytes in 1 MiB chunks and counts how many it has handed to gRPC."""

    def __init__(self, size: int, seed: int) -> None:
        self.block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
        self.size = size
        self.sent = 0
        self.sha256 = hashlib.sha256(self.block * (size // MIB)).hexdigest()

    def chunks(self) -> Iterator[common_pb2.BlobChunk]:
        for offset in range(0, self.size, MIB):
            if offset == 0:
                yield common_pb2.BlobChunk(sha256=self.sha256, total_size=self.size, offset=0, data=self.block)
            else:
                yield common_pb2.BlobChunk(offset=offset, data=self.block)
            self.sent += MIB


def _wait_for(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture()
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Writer threads block before writing until the event is set (a stalled disk)."""
    go = threading.Event()
    absorb = Upload.absorb

    def stalled(self: Upload, data: bytes) -> None:
        assert go.wait(60), "the test never released the disk"
        absorb(self, data)

    monkeypatch.setattr(Upload, "absorb", stalled)
    yield go
    go.set()


def test_a_stalled_disk_holds_the_client_back(any_api: InProcessHub, slow_disk: threading.Event) -> None:
    api = any_api
    sender = Sender(64 * MIB, seed=1)
    call = api.designs.UploadBlob.future(sender.chunks(), metadata=api.md("alice"), timeout=120)
    _wait_for(lambda: sender.sent >= 4 * MIB)
    held_until = time.monotonic() + 1.0
    while time.monotonic() < held_until:  # the bound holds for a whole second, not just once
        assert sender.sent <= BUFFERED_BOUND, f"{sender.sent / MIB:.0f} MiB left the client"
        time.sleep(0.05)
    slow_disk.set()
    response = call.result(timeout=120)
    assert (response.sha256, response.size) == (sender.sha256, 64 * MIB)
    assert api.designs.MissingBlobs(designs_pb2.MissingBlobsRequest(sha256=[sender.sha256]),
                                    metadata=api.md("alice")).sha256 == []
    assert api.temp_files() == []


def test_concurrent_uploads_are_each_bounded(any_api: InProcessHub, slow_disk: threading.Event) -> None:
    api = any_api
    senders = [Sender(24 * MIB, seed=10 + i) for i in range(3)]
    calls = [api.designs.UploadBlob.future(s.chunks(), metadata=api.md("alice"), timeout=120)
             for s in senders]
    _wait_for(lambda: all(s.sent >= 2 * MIB for s in senders))
    assert all(s.sent <= BUFFERED_BOUND for s in senders)
    slow_disk.set()
    assert sorted(c.result(timeout=120).sha256 for c in calls) == sorted(s.sha256 for s in senders)
    assert api.temp_files() == []


def test_a_cancelled_upload_leaves_no_temp_file(any_api: InProcessHub, slow_disk: threading.Event) -> None:
    api = any_api
    sender = Sender(32 * MIB, seed=2)
    call = api.designs.UploadBlob.future(sender.chunks(), metadata=api.md("alice"), timeout=120)
    _wait_for(lambda: sender.sent >= 2 * MIB and len(api.temp_files()) == 1)
    call.cancel()
    slow_disk.set()
    _wait_for(lambda: api.temp_files() == [])
    assert api.designs.MissingBlobs(designs_pb2.MissingBlobsRequest(sha256=[sender.sha256]),
                                    metadata=api.md("alice")).sha256 == [sender.sha256]
    assert api.upload("alice", b"still serving").size == len(b"still serving")


def test_a_write_error_fails_the_upload_and_keeps_nothing(any_api: InProcessHub) -> None:
    api = any_api
    # A real EFBIG from the kernel: the file-size limit stands in for a full disk.
    sender = Sender(16 * MIB, seed=3)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * MIB, old_limit[1]))
    try:
        with pytest.raises(grpc.RpcError) as info:
            api.designs.UploadBlob(sender.chunks(), metadata=api.md("alice"), timeout=60)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert api.temp_files() == []
    assert not any((api.data_dir / "blobs").glob("??/*"))
    assert api.upload("alice", b"after the error").size == len(b"after the error")


def test_an_empty_blob_is_stored(any_api: InProcessHub) -> None:
    api = any_api
    response = api.upload("alice", b"")
    assert (response.sha256, response.size) == (sha(b""), 0)
    assert os.path.getsize(api.data_dir / "blobs" / sha(b"")[:2] / sha(b"")[2:]) == 0


def test_blob_bytes_on_disk_match_what_was_sent(any_api: InProcessHub) -> None:
    api = any_api
    sender = Sender(9 * MIB, seed=4)
    api.designs.UploadBlob(sender.chunks(), metadata=api.md("alice"), timeout=60)
    stored = Path(api.data_dir / "blobs" / sender.sha256[:2] / sender.sha256[2:])
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sender.sha256


def test_a_call_cancelled_while_its_temp_file_is_created_leaves_none(
        any_api: InProcessHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.store.blobs import BlobStore

    entered, go, created = threading.Event(), threading.Event(), threading.Event()
    begin = BlobStore._thd_begin

    def slow_begin(self: BlobStore, sha256: str, declared_size: int) -> Upload:
        entered.set()
        assert go.wait(60), "the test never released the begin"
        upload = begin(self, sha256, declared_size)
        created.set()
        return upload

    monkeypatch.setattr(BlobStore, "_thd_begin", slow_begin)
    # more than can leave the client while the hub waits (BUFFERED_BOUND): a 2 MiB blob could arrive whole
    # before the cancel, and a complete, verified upload is stored
    sender = Sender(2 * BUFFERED_BOUND, seed=5)
    call = any_api.designs.UploadBlob.future(sender.chunks(), metadata=any_api.md("alice"), timeout=60)
    assert entered.wait(30)
    call.cancel()
    go.set()
    assert created.wait(30)
    _wait_for(lambda: any_api.temp_files() == [])
    assert any_api.designs.MissingBlobs(designs_pb2.MissingBlobsRequest(sha256=[sender.sha256]),
                                        metadata=any_api.md("alice")).sha256 == [sender.sha256]


class Counted:
    """A stream declaring ``declared`` bytes that sends 1 MiB chunks until the hub stops reading."""

    def __init__(self, declared: int, seed: int, limit: int = 1 << 40) -> None:
        self.block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
        self.declared, self.limit, self.sent = declared, limit, 0

    def chunks(self) -> Iterator[common_pb2.BlobChunk]:
        digest = hashlib.sha256(self.block).hexdigest()
        for offset in range(0, self.limit, MIB):
            self.sent += MIB
            yield common_pb2.BlobChunk(sha256=digest if offset == 0 else "",
                                       total_size=self.declared if offset == 0 else 0, offset=offset, data=self.block)


def test_a_declared_size_over_the_limit_is_refused_before_any_byte_is_written(tmp_path: Path) -> None:
    from tests.hub.harness import start_in_process

    small = start_in_process(tmp_path / "small", max_blob_bytes=2 * MIB)
    try:
        stream = Counted(declared=8 << 30, seed=6)
        with pytest.raises(grpc.RpcError) as info:
            small.designs.UploadBlob(stream.chunks(), metadata=small.md("alice"), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_blob_bytes" in (info.value.details() or "")
        assert stream.sent <= BUFFERED_BOUND, f"{stream.sent / MIB:.0f} MiB left the client"
        assert small.temp_files() == [] and not any((small.data_dir / "blobs").glob("??/*"))
    finally:
        small.stop()


def test_the_first_chunk_past_the_declared_size_ends_the_stream(any_api: InProcessHub) -> None:
    stream = Counted(declared=3 * MIB, seed=7)
    with pytest.raises(grpc.RpcError) as info:
        any_api.designs.UploadBlob(stream.chunks(), metadata=any_api.md("alice"), timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "BlobChunk.total_size" in (info.value.details() or "")
    assert stream.sent <= 3 * MIB + BUFFERED_BOUND, f"{stream.sent / MIB:.0f} MiB left the client"
    assert any_api.temp_files() == [] and not any((any_api.data_dir / "blobs").glob("??/*"))


def test_a_short_stream_is_answered_only_once_its_temp_file_is_gone(any_api: InProcessHub) -> None:
    # No waiting: the refusal itself is the signal that nothing of the upload is left.
    for seed in range(5):
        stream = Counted(declared=64 * MIB, seed=20 + seed, limit=(seed + 1) * MIB)
        with pytest.raises(grpc.RpcError) as info:
            any_api.designs.UploadBlob(stream.chunks(), metadata=any_api.md("alice"), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "declared" in (info.value.details() or "")
        assert any_api.temp_files() == []
    assert not any((any_api.data_dir / "blobs").glob("??/*"))


def test_a_stream_whose_chunks_are_all_buffered_lets_other_calls_run_between_them(any_api: InProcessHub) -> None:
    # Chunks that never make the receive loop wait (all already arrived, the writer's queue has room)
    # must still give the event loop back after each one: a ticker on the same loop runs in between.
    chunks, size = 16, 64 * 1024
    block = os.urandom(size)
    data = block * chunks
    ticks = 0
    seen: list[int] = []  # the ticker's count each time the hub asked for the next chunk

    async def arrived() -> AsyncIterator[Chunk]:
        for i in range(chunks):
            seen.append(ticks)
            yield Chunk(sha(data) if i == 0 else "", len(data) if i == 0 else 0, i * size, block)

    async def ticker(done: asyncio.Event) -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async def upload_beside_ticker() -> UploadResult:
        done = asyncio.Event()
        ticking = asyncio.create_task(ticker(done))
        try:
            return await any_api.composed.hub.blobs.upload(arrived())
        finally:
            done.set()
            await ticking

    result = asyncio.run_coroutine_threadsafe(upload_beside_ticker(), any_api.loop).result(timeout=60)
    assert (result.sha256, result.size, result.already_present) == (sha(data), len(data), False)
    starved = [i for i in range(1, chunks) if seen[i] == seen[i - 1]]
    assert not starved, f"no other work ran on the loop before chunks {starved}"
