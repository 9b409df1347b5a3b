"""A hub on S3 blobs (``--blobs s3://…``): push and download a design through the real API.

The bucket is on moto's real S3 server on 127.0.0.1 (tests/contract/test_blob_store.py
starts it); the hub is the in-process grpc.aio hub on SQLite and on PostgreSQL. A second
hub on the same database and bucket (a replica, with an empty cache) serves the blobs
the first one received, and `spime-hub backup`/`restore --blobs s3://…` round-trip a hub
into a new database and a new bucket. One test runs `spime-hub serve --blobs … --s3-endpoint …`
as a subprocess.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import common_pb2, designs_pb2, designs_pb2_grpc

from hub.__main__ import main
from hub.config import HubConfig
from hub.errors import InvalidArgument
from hub.store.blob_cache import CachedFile, victims
from hub.store.s3blobs import PART_BYTES, S3BlobStore
from tests.contract.test_blob_store import MotoS3, moto_s3, set_aws_env
from tests.fixtures.hub_server import start_hub, stop_hub
from tests.fixtures.postgres import create_database
from tests.hub.harness import USERS, InProcessHub, sha, start_in_process

__all__ = ["moto_s3"]  # the module-scoped server fixture, shared with the contract suite

MESH = b"solid big\n" + bytes(range(256)) * ((PART_BYTES + 4096) // 256) + b"endsolid big\n"
README = b"# a big cube\n"
SMALL_MESH = b"solid small\n" + b"facet normal 0 0 1\nendfacet\n" * 40 + b"endsolid small\n"


class S3Hubs:
    """Start in-process hubs on one database and one bucket; stop them all at the end."""

    def __init__(self, tmp_path: Path, database_url: str, bucket: str, endpoint: str) -> None:
        self.tmp_path, self.database_url, self.bucket = tmp_path, database_url, bucket
        self.settings = {"blobs": f"s3://{bucket}/spime", "s3_endpoint": endpoint}
        self.started: list[InProcessHub] = []

    def start(self, name: str) -> InProcessHub:
        users = {} if self.started else USERS  # replicas share the first hub's accounts
        hub = start_in_process(self.tmp_path / name, self.database_url, settings=self.settings, users=users)
        if self.started:
            hub.tokens.update(self.started[0].tokens)
        self.started.append(hub)
        return hub

    def stop(self) -> None:
        for hub in reversed(self.started):
            hub.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def hubs(request: pytest.FixtureRequest, tmp_path: Path, moto_s3: MotoS3,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Hubs]:
    set_aws_env(monkeypatch, tmp_path)
    url = (f"sqlite:///{tmp_path / 'hub.sqlite3'}" if request.param == "sqlite"
           else create_database(request.getfixturevalue("postgres_server")))
    started = S3Hubs(tmp_path, url, moto_s3.new_bucket(), moto_s3.endpoint)
    try:
        yield started
    finally:
        started.stop()


def _download(api: InProcessHub, digest: str, offset: int = 0) -> tuple[list[designs_pb2.BlobChunk], bytes]:
    chunks = list(api.designs.DownloadBlob(designs_pb2.DownloadBlobRequest(sha256=digest, offset=offset),
                                           metadata=api.md("carol"), timeout=60))
    return chunks, b"".join(c.data for c in chunks)


def _cli(argv: list[str]) -> int:
    """`spime-hub ARGV` in this process, leaving the test's logging as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _missing(api: InProcessHub, *digests: str) -> list[str]:
    request = designs_pb2.MissingBlobsRequest(sha256=list(digests))
    return list(api.designs.MissingBlobs(request, metadata=api.md("alice")).sha256)


def test_push_and_download_a_design_on_s3_blobs(hubs: S3Hubs, moto_s3: MotoS3) -> None:
    api = hubs.start("hub")
    assert isinstance(api.composed.store.blobs, S3BlobStore)
    response = api.push("alice", "big-cube", {"big.stl": MESH, "README.md": README}, create=True)
    assert response.revision_id
    assert moto_s3.keys(hubs.bucket) == sorted(f"spime/{d[:2]}/{d[2:]}" for d in (sha(MESH), sha(README)))
    assert not (api.data_dir / "blobs").exists()
    assert _missing(api, sha(MESH), sha(README)) == []
    chunks, data = _download(api, sha(MESH))
    assert data == MESH and chunks[0].sha256 == sha(MESH) and chunks[0].total_size == len(MESH)
    resumed = PART_BYTES + 17
    chunks, data = _download(api, sha(MESH), resumed)
    assert data == MESH[resumed:] and chunks[0].offset == resumed
    assert api.temp_files() == []


def test_a_replica_with_an_empty_cache_serves_the_blobs(hubs: S3Hubs) -> None:
    first = hubs.start("hub")
    first.push("alice", "big-cube", {"big.stl": MESH, "README.md": README}, create=True)
    replica = hubs.start("replica")
    assert _missing(replica, sha(MESH), sha(README)) == []
    assert _download(replica, sha(README))[1] == README
    resumed = 3 * (1 << 20) + 5
    assert _download(replica, sha(MESH), resumed)[1] == MESH[resumed:]
    again = replica.upload("bob", README)
    assert again.already_present and again.size == len(README)


def test_the_local_cache_stays_under_its_cap_least_recently_used_first(hubs: S3Hubs) -> None:
    hubs.settings["blob_cache_bytes"] = len(MESH) * 3 // 2
    api = hubs.start("hub")
    other = MESH.replace(b"solid big", b"solid two", 1)
    api.upload("alice", MESH)
    cached = api.data_dir / "blob-cache" / sha(MESH)[:2] / sha(MESH)[2:]
    hour_ago = time.time() - 3600
    os.utime(cached, (hour_ago, hour_ago))  # not used for an hour: the first to go
    api.upload("alice", other)
    assert not cached.exists()
    assert (api.data_dir / "blob-cache" / sha(other)[:2] / sha(other)[2:]).exists()
    assert _missing(api, sha(MESH)) == []  # still in the bucket
    assert _download(api, sha(MESH))[1] == MESH
    api.upload("alice", README)  # a small blob: within the cap, nothing more goes
    assert api.composed.store.blobs.cache.total_bytes <= hubs.settings["blob_cache_bytes"]


def test_refusals_store_nothing_in_the_bucket(hubs: S3Hubs, moto_s3: MotoS3) -> None:
    api = hubs.start("hub")
    before = api.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        api.upload("alice", MESH[:-1] + b"X", declared=sha(MESH))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hash" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        _download(api, sha(MESH))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        _download(api, "0" * 63 + "\x00")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert moto_s3.keys(hubs.bucket) == [] and api.snapshot() == before and api.temp_files() == []


def test_backup_and_restore_through_s3(hubs: S3Hubs, moto_s3: MotoS3, request: pytest.FixtureRequest,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    api = hubs.start("hub")
    api.push("alice", "small-cube", {"small.stl": SMALL_MESH, "README.md": README}, create=True)
    archive = hubs.tmp_path / "hub.tar"
    flags = ["--blobs", hubs.settings["blobs"], "--s3-endpoint", moto_s3.endpoint]
    assert _cli(["backup", str(archive), "--data", str(api.data_dir), "--database", hubs.database_url, *flags]) == 0
    new_bucket = moto_s3.new_bucket()
    new_url = (f"sqlite:///{hubs.tmp_path / 'restored.sqlite3'}" if hubs.database_url.startswith("sqlite")
               else create_database(request.getfixturevalue("postgres_server")))
    new_flags = ["--blobs", f"s3://{new_bucket}/restored", "--s3-endpoint", moto_s3.endpoint]
    assert _cli(["restore", str(archive), "--data", str(hubs.tmp_path / "restored"), "--database", new_url,
                 *new_flags]) == 0
    assert "2 blobs" in capsys.readouterr().err
    assert moto_s3.keys(new_bucket) == sorted(f"restored/{d[:2]}/{d[2:]}" for d in (sha(SMALL_MESH), sha(README)))
    settings = {"blobs": f"s3://{new_bucket}/restored", "s3_endpoint": moto_s3.endpoint}
    hubs.started.append(replica := start_in_process(hubs.tmp_path / "fresh", new_url, settings=settings, users={}))
    replica.tokens.update(api.tokens)
    assert replica.snapshot()["blobs"] == api.snapshot()["blobs"]
    assert replica.snapshot()["revisions"] == api.snapshot()["revisions"]
    assert _download(replica, sha(SMALL_MESH))[1] == SMALL_MESH


def test_spime_hub_serve_with_blobs_flags(hubs: S3Hubs, moto_s3: MotoS3) -> None:
    flags = ("--blobs", hubs.settings["blobs"], "--s3-endpoint", moto_s3.endpoint)
    running = start_hub(hubs.tmp_path / "served", hubs.database_url, extra_args=flags)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = designs_pb2_grpc.DesignsStub(channel)
            first = common_pb2.BlobChunk(sha256=sha(README), total_size=len(README), offset=0, data=README)
            stored = stub.UploadBlob(iter([first]), metadata=running.metadata("alice"), timeout=60)
            assert stored.size == len(README) and not stored.already_present
            request = designs_pb2.DownloadBlobRequest(sha256=sha(README), offset=2)
            chunks = stub.DownloadBlob(request, metadata=running.metadata("carol"), timeout=60)
            assert b"".join(c.data for c in chunks) == README[2:]
        assert moto_s3.keys(hubs.bucket) == [f"spime/{sha(README)[:2]}/{sha(README)[2:]}"]
    finally:
        assert stop_hub(running) == 0, running.log()[-2000:]


def test_cache_victims_are_the_least_recently_used_down_to_nine_tenths_of_the_cap() -> None:
    now = 10_000.0
    files = [CachedFile(Path(name), size, now - age) for name, size, age in
             (("old", 40, 900), ("older", 30, 1800), ("fresh", 50, 5), ("mid", 20, 300))]
    assert victims(files, 200, now, 60) == []
    assert [f.path.name for f in victims(files, 130, now, 60)] == ["older"]
    assert [f.path.name for f in victims(files, 60, now, 60)] == ["older", "old", "mid"]
    assert [f.path.name for f in victims(files, 10, now, 60)] == ["older", "old", "mid"]  # "fresh" was just used


def test_a_cache_cap_below_a_mebibyte_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="--blob-cache-gb"):
        HubConfig(data_dir=tmp_path, blobs="s3://bucket/p", blob_cache_bytes=1000)
