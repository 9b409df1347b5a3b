"""Job store and service without gRPC, on SQLite and PostgreSQL: CAS, fencing, idempotency, claims."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.__main__ import Composed, compose
from hub.config import HubConfig
from hub.domain import FileEntry, Revision, RevisionKind, Role
from hub.errors import InvalidTransition, NotFound, Unauthenticated
from hub.jobs import JobSpec, JobState, TimerPolicy
from hub.provenance import sha256_hex
from hub.scheduler import PrinterRecord
from hub.service.common import format_time
from hub.store import schema
from hub.store.designs import DesignMeta
from hub.store.jobs import EventRecord
from tests.fixtures.postgres import create_database
from tests.hub.fake_agent import ManualClock

NOW = "2026-12-01T04:00:00Z"
DATA = b"solid x\nendsolid x\n"
REV = "a" * 64


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Composed]:
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    composed = compose(HubConfig(data_dir=tmp_path / "data", database_url=url), clock=ManualClock(),
                       printability=None, timers=TimerPolicy())
    store = composed.store
    store.accounts._thd_add("alice", Role.DESIGNER, "tok", NOW)
    upload = store.blobs._thd_begin(sha256_hex(DATA), len(DATA))
    upload.write(DATA)
    store.blobs._thd_commit(upload, NOW)
    revision = Revision(REV, "cube", (), "name = 'cube'", (FileEntry("cube.stl", sha256_hex(DATA), len(DATA)),),
                        "alice", NOW, "m", RevisionKind.PUSH)
    store.designs._thd_create("cube", DesignMeta("Cube", "", "CC-BY-4.0", (), ("CC-BY-4.0",)), revision, "alice", NOW)
    try:
        yield composed
    finally:
        composed.close()


def _node(hub: Composed, name: str, printers: int = 1) -> None:
    hub.hub.nodes._thd_add_node(name)
    records = [PrinterRecord(name, f"p{i}", "MK3S", (250.0, 210.0, 210.0), 0.4, ("PLA",), "idle", True, True, True)
               for i in range(printers)]
    hub.store.nodes._thd_hello(name, ("", None, None), "t", 0, records, NOW)


def test_two_concurrent_claimers_never_offer_a_job_or_a_printer_twice(hub: Composed) -> None:
    service = hub.hub.jobs
    _node(hub, "lab-1", printers=3)
    _node(hub, "lab-2", printers=3)
    ids = [service.jobs._thd_create(f"j-{i:02d}", JobSpec("cube", REV, "PLA"), "admin", NOW).id for i in range(10)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def claim() -> None:
        barrier.wait()
        try:
            for job_id in ids:
                service._thd_dispatch(job_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    offered = service._thd_list_jobs([JobState.OFFERED])
    assert len(offered) == 6 and len({(j.node, j.printer) for j in offered}) == 6
    with hub.store.jobs.engine.connect() as conn:
        offers = conn.execute(sa.select(schema.node_commands.c.job_id).where(schema.node_commands.c.kind == "offer")).scalars().all()
    assert sorted(offers) == sorted(j.id for j in offered)  # one offer per job, no duplicates
    assert len(service._thd_list_jobs([JobState.QUEUED])) == 4


def test_accept_is_a_cas_and_events_are_fenced_and_idempotent(hub: Composed) -> None:
    service = hub.hub.jobs
    _node(hub, "lab-1")
    job = service._thd_create_job(JobSpec("cube", REV, "PLA"), "admin")
    assert job.state is JobState.OFFERED and job.node == "lab-1"
    results: list[object] = []
    barrier = threading.Barrier(2)

    def accept() -> None:
        barrier.wait()
        results.append(service._thd_offer_reply("lab-1", job.offer_id, True, ""))

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assigned = service._thd_get_job(job.id)
    assert assigned.state is JobState.ASSIGNED and assigned.lease_epoch == 1  # bumped once, not twice
    event = EventRecord("lab-1", 1, job.id, 1, "downloaded", NOW, {})
    assert service._thd_event("lab-1", event).changed
    again = service._thd_event("lab-1", event)
    assert again.duplicate and not again.changed
    stale = service._thd_event("lab-1", EventRecord("lab-1", 2, job.id, 0, "failed", NOW, {"failure_reason": "x"}))
    assert not stale.applied and "stale" in stale.note and service._thd_get_job(job.id).state is JobState.PREPARING
    assert [(e.agent_seq, applied) for e, applied, _ in hub.store.jobs._thd_events(job.id)] == [(1, True), (2, False)]
    assert hub.store.nodes._thd_node("lab-1").last_agent_seq == 2


def test_admin_decisions_respect_the_table(hub: Composed) -> None:
    service = hub.hub.jobs
    job = service._thd_create_job(JobSpec("cube", REV, "PLA", parameters={"w": "3"}), "admin")
    assert job.state is JobState.QUEUED  # no printer anywhere
    with pytest.raises(InvalidTransition):
        service._thd_requeue(job.id)
    failed = service._thd_fail(job.id, "no longer wanted")
    assert failed.state is JobState.FAILED and failed.failure_reason == "no longer wanted"
    requeued = service._thd_requeue(job.id)
    assert requeued.state is JobState.QUEUED and requeued.lease_epoch == 1
    assert service._thd_cancel_job(job.id, "changed my mind").state is JobState.CANCELLED
    with pytest.raises(InvalidTransition):
        service._thd_cancel_job(job.id, "again")
    with pytest.raises(NotFound):
        service._thd_get_job("j-missing")
    with pytest.raises(NotFound):
        service._thd_create_job(JobSpec("cube", "b" * 64, "PLA"), "admin")
    _, token, _ = hub.hub.nodes._thd_add_node("lab-9")
    hub.hub.nodes.clock.advance(24 * 3600 + 1)  # type: ignore[attr-defined]
    with pytest.raises(Unauthenticated):
        hub.store.nodes._thd_enroll(token, "bearer", format_time(hub.hub.nodes.clock()))
    seen: list[str] = []
    service.add_listener(lambda j: seen.append(j.state.value))
    service._thd_create_job(JobSpec("cube", REV, "PLA"), "admin")
    assert seen == ["queued"]
