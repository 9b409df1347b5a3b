"""Bounded work per caller (issue 10, section 2), on SQLite and PostgreSQL.

A saturated check pool and a flooded default thread pool do not delay an
unrelated caller's WhoAmI; one push too many per account is RESOURCE_EXHAUSTED (after a short wait);
an idle upload ends with RESOURCE_EXHAUSTED and frees its slot; a stream naming
a blob the hub already has is answered at once and cannot grow it.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2

from hub.workers import CheckLimits, CheckPool
from tests.fixtures.postgres import create_database
from tests.hub.check_targets import GATE_ENV, LOG_ENV
from tests.hub.harness import InProcessHub, manifest_toml, sha, start_in_process

DEADLINE_S = 60.0
DESIGNS = ("first-part", "second-part", "third-part", "bobs-part")


def _until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgresql"])
def gated(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessHub]:
    """A hub whose push-time check blocks in two worker processes until the test opens a FIFO gate."""
    gates = tmp_path / "gates"
    gates.mkdir()
    for design in DESIGNS:
        os.mkfifo(gates / f"{design}.stl")
    monkeypatch.setenv(GATE_ENV, str(gates))
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    pool = CheckPool(CheckLimits(size=2, timeout_s=600), target="tests.hub.check_targets:wait_for_gate")
    hub = start_in_process(tmp_path / "data", url, printability=pool, settings={"upload_idle_timeout_s": 0.5})
    try:
        yield hub
    finally:
        hub.stop()


def _open_gate(design: str) -> None:
    with open(Path(os.environ[GATE_ENV]) / f"{design}.stl", "w", encoding="utf-8") as gate:  # waits for the check
        gate.write("go\n")


def _push(hub: InProcessHub, user: str, design: str) -> designs_pb2.PushResponse:
    mesh, name = f"solid {design}\nendsolid {design}\n".encode(), f"{design}.stl"
    return hub.push(user, design, {name: mesh}, manifest=manifest_toml(design, files=(name,)), create=True)


def test_whoami_completes_while_checks_and_the_default_pool_are_saturated(gated: InProcessHub) -> None:
    hub = gated
    checks = hub.composed.checks
    assert checks is not None
    flood = threading.Event()
    with ThreadPoolExecutor(4) as client:
        pushes: list[Future[designs_pb2.PushResponse]] = [
            client.submit(_push, hub, "alice", "first-part"), client.submit(_push, hub, "alice", "second-part")]
        _until(lambda: len(checks.pids()) == 2, "both of alice's checks to run")
        # One more push of alice's waits for a slot (hub.limits.ADMISSION_WAIT_S), then is refused;
        # bob's own push waits for a worker.
        with pytest.raises(grpc.RpcError) as info:
            _push(hub, "alice", "third-part")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit concurrent Designs.Push" in (info.value.details() or "")
        pushes.append(client.submit(_push, hub, "bob", "bobs-part"))
        # Fill the hub loop's default thread pool with blocked work, as a flood of pushes would.
        hub.loop.call_soon_threadsafe(lambda: [hub.loop.run_in_executor(None, flood.wait) for _ in range(40)])
        try:
            me = hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=hub.md("carol"), timeout=DEADLINE_S)
            assert me.name == "carol"
            assert not any(p.done() for p in pushes), "the pushes were meant to be still waiting"
        finally:
            flood.set()
        for design in ("first-part", "second-part", "bobs-part"):
            _open_gate(design)
        results = [p.result(timeout=DEADLINE_S) for p in pushes]
    assert [r.reports[0].ok for r in results] == [True, True, True]
    assert sorted(d.design for d in _designs(hub)) == ["bobs-part", "first-part", "second-part"]


def _designs(hub: InProcessHub) -> list[designs_pb2.Revision]:
    found = hub.designs.Search(designs_pb2.SearchRequest(), metadata=hub.md("carol")).designs
    return [hub.designs.GetRevision(designs_pb2.GetRevisionRequest(design=d.slug), metadata=hub.md("carol"))
            for d in found]


def test_an_idle_upload_times_out_and_frees_its_slot(gated: InProcessHub) -> None:
    hub = gated
    data = os.urandom(300_000)
    release = threading.Event()

    def stalled() -> Iterator[common_pb2.BlobChunk]:
        yield common_pb2.BlobChunk(sha256=sha(data), total_size=len(data), offset=0, data=data[:1000])
        release.wait(DEADLINE_S)

    before = hub.snapshot()
    try:
        with pytest.raises(grpc.RpcError) as info:
            hub.designs.UploadBlob(stalled(), metadata=hub.md("alice"), timeout=DEADLINE_S)
    finally:
        release.set()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "upload_idle_timeout_s" in (info.value.details() or "")
    _until(lambda: hub.temp_files() == [], "the idle upload's temporary file to go")
    assert hub.snapshot() == before
    # The slot is free again: the same account uploads at once.
    assert hub.upload("alice", data).size == len(data)


def test_a_stream_naming_a_stored_blob_is_answered_at_once_and_cannot_grow_it(gated: InProcessHub) -> None:
    hub = gated
    data = os.urandom(200_000)
    hub.upload("alice", data)
    stored = hub.data_dir / "blobs" / sha(data)[:2] / sha(data)[2:]
    before = hub.snapshot()
    sent = 0
    zeros = bytes(1 << 16)

    def endless() -> Iterator[common_pb2.BlobChunk]:
        nonlocal sent
        yield common_pb2.BlobChunk(sha256=sha(data), total_size=len(data), offset=0, data=zeros)
        for index in range(1, 128 * 1024):  # 8 GiB of zeros if the hub read them all
            sent += 1
            yield common_pb2.BlobChunk(offset=index << 16, data=zeros)

    answer = hub.designs.UploadBlob(endless(), metadata=hub.md("alice"), timeout=DEADLINE_S)
    assert answer.already_present and answer.size == len(data)
    assert sent < 10_000, f"the hub read {sent} chunks past the declared size"
    with pytest.raises(grpc.RpcError) as info:
        hub.upload("alice", data, declared_size=8 << 30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not the declared" in (info.value.details() or "")
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha(data)
    assert hub.snapshot() == before and hub.temp_files() == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_each_distinct_mesh_blob_is_checked_once_per_revision(
        request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    log = tmp_path / "checked.txt"
    monkeypatch.setenv(LOG_ENV, str(log))
    url = "" if database == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    pool = CheckPool(CheckLimits(size=1, timeout_s=600), target="tests.hub.check_targets:count")
    hub = start_in_process(tmp_path / "data", url, printability=pool)
    try:
        same, other = b"solid a\nendsolid a\n", b"solid b\nendsolid b\n"
        files = {"a.stl": same, "copy/a.stl": same, "again.obj": same, "b.3mf": other, "notes.txt": b"text"}
        pushed = hub.push("alice", "copies", files, manifest=manifest_toml("copies", files=tuple(files)), create=True)
    finally:
        hub.stop()
    assert sorted(r.path for r in pushed.reports) == ["a.stl", "again.obj", "b.3mf", "copy/a.stl"]
    assert all(r.ok for r in pushed.reports)
    assert sorted(log.read_text().split()) == ["a.stl", "b.3mf"]
    assert pool.pids() == []
