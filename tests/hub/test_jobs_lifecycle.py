"""Job lifecycle faults through real stubs, on SQLite and PostgreSQL: leases, reconnects, supersede,
silence, cancel, matching. The hub's clock is moved by hand; timers run when the test sweeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import common_pb2, nodes_pb2

from hub.domain import PrintabilityRecord
from hub.jobs import JobSpec, JobState
from tests.hub.clocked import start_either
from tests.hub.fake_agent import ClockedHub, FakeAgent, held, printer, start_clocked, wait_for

STL = b"solid cube\nendsolid cube\n"
P = nodes_pb2


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClockedHub]:
    running = start_either(request, tmp_path)
    running.push("alice", "cube", {"cube.stl": STL}, create=True)
    try:
        yield running
    finally:
        running.stop()


def _job(hub: ClockedHub, **kw: object) -> str:
    rev = hub.composed.store.designs._thd_get_revision("cube").id
    return hub.composed.hub.jobs._thd_create_job(JobSpec("cube", rev, "PLA", **kw), "admin").id  # type: ignore[arg-type]


def _get(hub: ClockedHub, job_id: str):  # type: ignore[no-untyped-def]
    return hub.composed.hub.jobs._thd_get_job(job_id)


def _offline(hub: ClockedHub, node: str) -> bool:
    return not hub.composed.store.nodes._thd_node(node).online


def test_unstarted_lease_runs_out_and_the_old_holder_forgets(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    _job(hub)
    job_id, epoch = agent.take_job()
    agent.acked(agent.event(job_id, epoch, P.EVENT_KIND_DOWNLOADED))
    agent.cut()
    wait_for(lambda: _offline(hub, "lab-1"))
    hub.clock.advance(60)
    hub.sweep()
    assert _get(hub, job_id).state is JobState.PREPARING  # the lease still holds
    hub.clock.advance(61)
    hub.sweep()
    job = _get(hub, job_id)
    assert (job.state, job.lease_epoch, job.node) == (JobState.QUEUED, epoch + 1, None)
    welcome = agent.connect(held=[held(job_id, epoch, P.JOB_LOCAL_STATE_PREPARING)])
    assert [(d.job_id, d.desired) for d in welcome.desired] == [(job_id, P.DESIRED_FORGET)]
    offer = agent.expect("offer").offer  # the same node may take it again, under a new epoch
    assert (offer.job_id, offer.lease_epoch) == (job_id, epoch + 2)
    agent.reply(offer)
    agent.expect("assigned")
    agent.ack()
    agent.close()
    assert agent.ended() is None
    # the agent lost its journal: a job it was assigned (and acked) is fenced and queued again
    agent.connect(held=[])
    job = _get(hub, job_id)
    assert job.lease_epoch == epoch + 3 and job.state in (JobState.QUEUED, JobState.OFFERED)
    agent.close()


def test_agent_back_mid_print_keeps_its_job_and_reports_once(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    _job(hub)
    job_id, epoch = agent.take_job()
    agent.start(job_id, epoch)
    agent.expect("start_granted")
    agent.ack()
    agent.cut()
    assert wait_for(lambda: _get(hub, job_id).state is JobState.LOST_CONTACT)
    hub.clock.advance(600)
    hub.sweep()
    assert _get(hub, job_id).state is JobState.LOST_CONTACT  # no re-dispatch, no verdict yet
    welcome = agent.connect(held=[held(job_id, epoch)])
    assert [(d.job_id, d.desired) for d in welcome.desired] == [(job_id, P.DESIRED_RUN)]
    assert _get(hub, job_id).state is JobState.PRINTING
    agent.heartbeat([P.JobProgress(job_id=job_id, lease_epoch=epoch, percent=80, layer=99)])
    wait_for(lambda: _get(hub, job_id).layer == 99)
    agent.acked(agent.event(job_id, epoch, P.EVENT_KIND_COMPLETED, {"actual_seconds": "700"}))
    agent.acked(agent.event(job_id, epoch, P.EVENT_KIND_OUTCOME, {"outcome": "failed", "reason": "spaghetti"}))
    job = _get(hub, job_id)
    assert (job.state, job.failure_reason) == (JobState.FAILED, "spaghetti")
    [fab] = hub.composed.store.jobs._thd_fabrications_of(job_id)
    assert (fab["outcome"], fab["failure_reason"], fab["actual_seconds"]) == ("failed", "spaghetti", 700)
    agent.close()


def test_a_restarted_hub_keeps_epochs_outbox_and_agent_seq(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-1", [printer(), printer("xl")])
    agent.connect()
    job_id = _job(hub)
    job_id, epoch = agent.take_job()
    agent.start(job_id, epoch)
    agent.expect("start_granted")
    agent.ack()
    seq = agent.event(job_id, epoch, P.EVENT_KIND_STARTED)
    agent.acked(seq)
    waiting = _job(hub)
    offered = agent.expect("offer")  # not applied by the agent before the hub dies
    offer = offered.offer
    agent.last_hub_seq = offered.hub_seq - 1
    hub.stop()
    again = start_clocked(hub.data_dir, hub.composed.config.database_url, users={})
    try:
        back = FakeAgent(again, "lab-1", agent.token, agent.printers)
        back.seq, back.last_hub_seq, back.jobs = agent.seq, agent.last_hub_seq, agent.jobs
        welcome = back.connect(held=[held(job_id, epoch)])
        assert welcome.last_agent_seq_committed == seq
        assert [(d.job_id, d.desired) for d in welcome.desired] == [(job_id, P.DESIRED_RUN)]
        assert back.expect("offer").offer.offer_id == offer.offer_id  # redelivered: it was never acked
        assert again.composed.hub.jobs._thd_get_job(job_id).state is JobState.PRINTING
        back.acked(back.event(job_id, epoch, P.EVENT_KIND_COMPLETED, {"actual_seconds": "60"}))
        assert again.composed.hub.jobs._thd_get_job(job_id).state is JobState.PRINTED
        assert again.composed.hub.jobs._thd_get_job(waiting).state is JobState.OFFERED
        back.close()
    finally:
        again.stop()


def test_newer_hello_supersedes_and_a_silent_session_is_suspect(hub: ClockedHub) -> None:
    first = FakeAgent.enrolled(hub, "lab-1", [printer()])
    assert first.connect().session_epoch == 1
    second = FakeAgent(hub, "lab-1", first.token, [printer()])
    assert second.connect().session_epoch == 2
    assert first.expect("superseded").superseded.new_session_epoch == 2
    assert first.ended() is None
    assert not _offline(hub, "lab-1")  # the old stream's end did not take the node offline
    _job(hub)
    job_id, epoch = second.take_job()
    second.start(job_id, epoch)
    second.expect("start_granted")
    hub.clock.advance(46)  # no heartbeat for longer than suspect_after_s
    hub.sweep()
    assert _get(hub, job_id).state is JobState.LOST_CONTACT and _offline(hub, "lab-1")
    assert second.ended() is None


def test_cancel_before_and_while_printing(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-1", [printer("mk3"), printer("xl")])
    agent.connect()
    jobs = hub.composed.hub.jobs
    early, printing = _job(hub), _job(hub)
    (a, ea), (b, eb) = agent.take_job(), agent.take_job()
    assert {a, b} == {early, printing}
    agent.start(printing, eb if b == printing else ea, _get(hub, printing).printer or "")
    agent.expect("start_granted")
    epoch = _get(hub, printing).lease_epoch
    assert jobs._thd_cancel_job(early, "customer cancelled").state is JobState.CANCELLED
    assert agent.expect("cancel").cancel.job_id == early
    assert jobs._thd_cancel_job(printing, "customer cancelled").state is JobState.PRINTING
    assert agent.expect("cancel").cancel.job_id == printing
    agent.start(printing, epoch)
    agent.acked(agent.event(printing, epoch, P.EVENT_KIND_CANCELLED, {"reason": "stopped by operator"}))
    assert _get(hub, printing).state is JobState.CANCELLED
    [fab] = hub.composed.store.jobs._thd_fabrications_of(printing)
    assert fab["outcome"] == "cancelled"
    assert hub.composed.store.jobs._thd_fabrications_of(early) == []
    agent.close()


def test_only_a_qualifying_printer_is_offered_the_job(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-1", [printer("mk3", bed_clear=False), printer("petg", materials=("PETG",)),
                                              printer("tiny", volume=(10, 10, 10))])
    agent.connect()
    rev = hub.composed.store.designs._thd_get_revision("cube").id  # the push-time check measured the part
    hub.composed.store.designs._thd_store_reports(rev, [PrintabilityRecord("cube.stl", True, {"extents_mm": [20, 20, 5]})])
    job_id = _job(hub)
    hub.sweep()
    assert _get(hub, job_id).state is JobState.QUEUED
    agent.printers[0] = printer("mk3", bed_clear=True)  # the operator confirmed a clear bed
    agent.heartbeat()
    offer = agent.expect("offer").offer
    assert (offer.job_id, offer.printer_id) == (job_id, "mk3")
    assert (offer.bbox_mm.x, offer.bbox_mm.y, offer.bbox_mm.z) == (20, 20, 5)
    agent.reply(offer)
    agent.expect("assigned")
    # a slicer failure before printing fails the job directly, without a fabrication
    agent.acked(agent.event(job_id, 1, P.EVENT_KIND_FAILED, {"failure_reason": "slicer crashed", "detected_by": "slicer",
                                                              "retryable": "false", "step": "slice"}))
    assert (_get(hub, job_id).state, _get(hub, job_id).failure_reason) == (JobState.FAILED, "slicer crashed")
    assert hub.composed.store.jobs._thd_fabrications_of(job_id) == []
    # the operator takes the printer offline (maintenance): no offers until it accepts again
    agent.printers[0] = printer("mk3", accepting=False)
    agent.send(printer_changed=P.PrinterChanged(printer=agent.printers[0]))
    wait_for(lambda: not hub.composed.store.nodes._thd_printers()[0].accepting)
    second = _job(hub)
    assert _get(hub, second).state is JobState.QUEUED
    agent.printers[0] = printer("mk3")
    agent.send(printer_changed=P.PrinterChanged(printer=agent.printers[0]))
    assert agent.expect("offer").offer.job_id == second
    # artifacts a node puts are bounded
    md = (("authorization", f"Bearer {agent.token}"),)
    with pytest.raises(grpc.RpcError) as info:
        agent.stub.PutArtifact(iter([common_pb2.BlobChunk(sha256="0" * 64, total_size=65 << 20, data=b"x")]), metadata=md)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    agent.close()


def test_an_offer_carries_the_bounding_box_once_the_check_reports_it(hub: ClockedHub) -> None:
    # the offer's artifacts and credits are kept per revision; its box follows the reports as they arrive
    early, late = (FakeAgent.enrolled(hub, name, [printer("mk3")]) for name in ("lab-1", "lab-2"))
    early.connect()
    late.connect()
    rev = hub.composed.store.designs._thd_get_revision("cube").id
    first = _job(hub, node="lab-1")
    offer = early.expect("offer").offer
    assert offer.job_id == first and not offer.HasField("bbox_mm")  # no report yet
    assert [a.path for a in offer.artifacts] == ["cube.stl"] and offer.attributions
    hub.composed.store.designs._thd_store_reports(rev, [PrintabilityRecord("cube.stl", True, {"extents_mm": [20, 20, 5]})])
    second = _job(hub, node="lab-2")
    offer = late.expect("offer").offer
    assert offer.job_id == second and (offer.bbox_mm.x, offer.bbox_mm.y, offer.bbox_mm.z) == (20, 20, 5)
    assert [a.path for a in offer.artifacts] == ["cube.stl"] and offer.attributions
    early.close()
    late.close()
