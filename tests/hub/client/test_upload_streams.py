"""``spime push`` uploads several blobs at once: their messages, and what one refusal does.

The client encodes each BlobChunk itself (one copy of the file bytes instead of
protobuf's several); the hub must read exactly what protobuf would have sent.
When one of several blobs in flight is refused, the push names that file, the
other streams are cancelled, and the hub keeps nothing half-stored.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import common_pb2, designs_pb2

from hub.client.common import HubRefused
from hub.client.connection import Hub
from hub.client.local import LocalFile
from hub.client.upload import UPLOAD_CHUNK, Uploader, encode_chunk
from hub.store.blobs import BlobStore, Upload
from tests.hub.harness import InProcessHub

MIB = 1 << 20


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_384, MIB, UPLOAD_CHUNK + 5])
def test_encoded_chunks_are_what_protobuf_would_send(size: int) -> None:
    data = os.urandom(size)
    for header in (common_pb2.BlobChunk(sha256="ab" * 32, total_size=size, offset=0),
                   common_pb2.BlobChunk(offset=2**40 + 3)):
        expected = common_pb2.BlobChunk()
        expected.CopyFrom(header)
        expected.data = data
        encoded = encode_chunk(header, data)
        assert encoded == expected.SerializeToString()
        assert common_pb2.BlobChunk.FromString(encoded) == expected


@pytest.fixture()
def hub(any_api: InProcessHub) -> Iterator[Hub]:
    channel = grpc.insecure_channel(any_api.address)
    try:
        yield Hub(address=any_api.address, channel=channel, metadata=any_api.md("alice"))
    finally:
        channel.close()


def _file(folder: Path, name: str, data: bytes) -> LocalFile:
    path = folder / name
    path.write_bytes(data)
    return LocalFile(path=name, abspath=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _missing(hub: Hub, files: list[LocalFile]) -> set[str]:
    request = designs_pb2.MissingBlobsRequest(sha256=[f.sha256 for f in files])
    return set(hub.call(hub.designs.MissingBlobs, request).sha256)


def _stored_files(api: InProcessHub) -> set[str]:
    return {p.parent.name + p.name for p in (api.data_dir / "blobs").glob("??/*")}


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _stored_bytes(api: InProcessHub, sha256: str) -> bytes:
    return (api.data_dir / "blobs" / sha256[:2] / sha256[2:]).read_bytes()


def test_several_blobs_in_flight_are_each_stored_whole(any_api: InProcessHub, hub: Hub,
                                                       tmp_path: Path) -> None:
    files = [_file(tmp_path, f"part-{i}.stl", os.urandom(3 * UPLOAD_CHUNK + 1000 * i))
             for i in range(4)]
    with Uploader(hub, streams=4, progress=False) as uploader:
        uploader.offer(files)
        assert uploader.finish() == (4, sum(f.size for f in files))
    assert _missing(hub, files) == set()
    for f in files:
        assert _stored_bytes(any_api, f.sha256) == f.abspath.read_bytes()
    assert any_api.temp_files() == []


def test_one_refused_blob_names_its_file_and_nothing_is_half_stored(
        any_api: InProcessHub, hub: Hub, tmp_path: Path) -> None:
    good = [_file(tmp_path, f"big-{i}.stl", os.urandom(6 * UPLOAD_CHUNK)) for i in range(3)]
    bad = _file(tmp_path, "lid.stl", b"solid lid\nendsolid lid\n")
    bad.abspath.write_bytes(b"solid LID\nendsolid LID\n")  # changed after it was hashed
    with pytest.raises(HubRefused) as refused, Uploader(hub, streams=4, progress=False) as uploader:
        uploader.offer([*good, bad])
        uploader.finish()
    error = refused.value
    assert error.code_name == "INVALID_ARGUMENT"
    assert "lid.stl" in error.details and "push again" in error.hint
    # The bad blob is nowhere; each other blob is whole with its row, or absent (its stream was
    # cancelled), once the hub has finished with the cancelled streams.
    assert bad.sha256 in _missing(hub, [bad])
    _wait_for(lambda: any_api.temp_files() == [])
    _wait_for(lambda: _stored_files(any_api) == {f.sha256 for f in good} - _missing(hub, good))
    for sha256 in _stored_files(any_api):
        assert hashlib.sha256(_stored_bytes(any_api, sha256)).hexdigest() == sha256
    missing = _missing(hub, [*good, bad])
    # The push can simply be run again once the file is hashed anew.
    fixed = _file(tmp_path, "lid.stl", bad.abspath.read_bytes())
    with Uploader(hub, streams=4, progress=False) as uploader:
        uploader.offer([*good, fixed])
        blobs, _ = uploader.finish()
    assert blobs == len(missing - {bad.sha256}) + 1
    assert _missing(hub, [*good, fixed]) == set()


def test_the_next_blob_travels_while_the_hub_commits_the_last_one(any_api: InProcessHub, hub: Hub, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # One stream: once the first blob's bytes are all sent, the second one's go out while the hub still
    # verifies, fsyncs and records the first (held here until both have arrived).
    files = [_file(tmp_path, f"part-{i}.stl", os.urandom(2 * UPLOAD_CHUNK + i)) for i in range(2)]
    committing, receiving = threading.Event(), set()
    commit, absorb = BlobStore._thd_commit, Upload.absorb

    def held_commit(self: BlobStore, upload: Upload, now: str) -> int:
        assert committing.wait(60), "the test never let the commit go on"
        return commit(self, upload, now)

    def noted_absorb(self: Upload, data: bytes | memoryview) -> None:
        receiving.add(self.sha256)
        absorb(self, data)

    monkeypatch.setattr(BlobStore, "_thd_commit", held_commit)
    monkeypatch.setattr(Upload, "absorb", noted_absorb)
    try:
        with Uploader(hub, streams=1, progress=False) as uploader:
            uploader.offer(files)
            _wait_for(lambda: receiving == {f.sha256 for f in files})
            committing.set()
            assert uploader.finish() == (2, sum(f.size for f in files))
    finally:
        committing.set()
    assert _missing(hub, files) == set()
