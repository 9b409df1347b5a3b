"""The Nodes service through real stubs on SQLite and PostgreSQL: enroll, sessions, offers, production data."""

from __future__ import annotations

import asyncio

import grpc
import pytest
import sqlalchemy as sa
from spimeforge.v1 import accounts_pb2, designs_pb2, nodes_pb2, nodes_pb2_grpc, records_pb2

from hub.errors import InvalidArgument, NotFound
from hub.jobs import JobSpec, JobState
from hub.store import schema
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, wait_for
from tests.hub.harness import manifest_toml

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL

STL = b"solid cube\nendsolid cube\n"


def _design(hub: ClockedHub) -> str:
    return str(hub.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id)


def _job(hub: ClockedHub, rev: str, **kw: object) -> str:
    return hub.composed.hub.jobs._thd_create_job(JobSpec("cube", rev, "PLA", **kw), "admin").id  # type: ignore[arg-type]


def _state(hub: ClockedHub, job_id: str) -> JobState:
    return hub.composed.hub.jobs._thd_get_job(job_id).state


def test_an_offer_names_the_manifests_openscad_source_the_one_to_render(hub: ClockedHub) -> None:
    files = {"a-lib.scad": b"module block(w) { cube([w, w, 2]); }\n",
             "main.scad": b"use <a-lib.scad>\nwidth = 20; // [10:1:40]\nblock(width);\n", "cube.stl": STL}
    manifest = manifest_toml("blocks", files=("cube.stl",), extra='[openscad]\nsource = "main.scad"\n')
    rev = hub.push("alice", "blocks", files, manifest=manifest, create=True).revision_id
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    hub.composed.hub.jobs._thd_create_job(JobSpec("blocks", rev, "PLA", parameters={"width": "25"}), "admin")
    offer = agent.expect("offer").offer
    # the library sorts first: a node taking the first .scad rendered it, not the design
    assert {a.path: a.kind for a in offer.artifacts} == {"a-lib.scad": "scad-include", "main.scad": "scad",
                                                         "cube.stl": "mesh"}
    agent.close()


def test_enroll_once_then_node_token_is_only_a_node(hub: ClockedHub) -> None:
    _, enrollment, _ = hub.composed.hub.nodes._thd_add_node("lab-1")
    stub = nodes_pb2_grpc.NodesStub(hub.channel)
    reply = stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token=enrollment, agent_version="t/1"))
    assert reply.node == "lab-1" and reply.token
    with pytest.raises(grpc.RpcError) as info:
        stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token=enrollment))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token="x" * 200))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    md = (("authorization", f"Bearer {reply.token}"),)
    assert hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=md).name == "lab-1"
    with pytest.raises(grpc.RpcError) as info:
        hub.designs.Push(hub.push_request("cube", {"cube.stl": STL}, create=True), metadata=md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:
        hub.designs.GetDesign(designs_pb2.GetDesignRequest(design="cube"), metadata=md)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with hub.engine.connect() as conn:
        stored = list(conn.execute(sa.select(schema.enrollment_tokens.c.token_sha256)).scalars())
    assert enrollment not in stored and len(stored) == 1


def test_hello_must_name_the_credentials_node(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    with pytest.raises(AssertionError):
        agent.connect(agent_id="lab-2")
    assert agent.ended() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:
        list(nodes_pb2_grpc.NodesStub(hub.channel).Session(iter([nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(agent_id="alice"))]), metadata=hub.md("alice")))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_job_printed_end_to_end_writes_one_fabrication(hub: ClockedHub) -> None:
    rev = _design(hub)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    welcome = agent.connect()
    assert welcome.session_epoch == 1 and welcome.heartbeat_interval_s == 15
    job_id = _job(hub, rev, parameters={"size": "20"})
    offer = agent.expect("offer").offer
    assert (offer.job_id, offer.printer_id, offer.material, offer.lease_epoch) == (job_id, "mk3", "PLA", 1)
    assert [a.path for a in offer.artifacts] == ["cube.stl"] and offer.parameters["size"] == "20"
    assert [(a.design, a.license, a.licensor) for a in offer.attributions] == [("cube", "CC-BY-4.0", "Test Licensor")]
    agent.reply(offer)
    assert agent.expect("assigned").assigned.lease_epoch == 1
    # the artifact is the node's to fetch, resumable by offset
    md = (("authorization", f"Bearer {agent.token}"),)
    chunks = list(agent.stub.FetchArtifact(nodes_pb2.DownloadArtifactRequest(sha256=offer.artifacts[0].sha256, offset=5), metadata=md))
    assert b"".join(c.data for c in chunks) == STL[5:]
    agent.run_to_printed(job_id, 1)
    assert _state(hub, job_id) is JobState.PRINTED
    # a duplicate report is applied once
    agent.event(job_id, 1, nodes_pb2.EVENT_KIND_COMPLETED, {"actual_seconds": "999"}, seq=agent.seq)
    agent.acked(agent.seq)
    seq = agent.event(job_id, 1, nodes_pb2.EVENT_KIND_OUTCOME, {"outcome": "success", "notes": "crisp"})
    agent.acked(seq)
    job = hub.composed.hub.jobs._thd_get_job(job_id)
    assert job.state is JobState.DONE and job.progress_percent == 100.0
    [fab] = hub.composed.store.jobs._thd_fabrications_of(job_id)
    assert (fab["outcome"], fab["actual_seconds"], fab["estimated_seconds"], fab["resends"]) == ("success", 640, 600, 2)
    assert (fab["printer_model"], fab["slicer_version"], fab["operator_notes"]) == ("Prusa MK3S", "2.5.0", "crisp")
    assert len(fab["incarnation_id"]) == 12 and fab["order_id"] is None
    record = hub.records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=hub.md("carol"))
    assert [(f.node, f.actual_seconds, f.outcome) for f in record.fabrications] == [("lab-1", 640, "success")]
    agent.close()


def test_decline_and_expiry_move_the_offer_on(hub: ClockedHub) -> None:
    rev = _design(hub)
    one = FakeAgent.enrolled(hub, "lab-1", [printer()])
    two = FakeAgent.enrolled(hub, "lab-2", [printer()])
    one.connect()
    two.connect()
    job_id = _job(hub, rev)
    first = one.expect("offer").offer
    one.reply(first, accept=False, reason=nodes_pb2.DECLINE_REASON_NO_CAPACITY)
    second = two.expect("offer").offer
    assert second.job_id == job_id and second.offer_id != first.offer_id
    hub.clock.advance(121)
    hub.sweep()
    assert _state(hub, job_id) is JobState.QUEUED  # both nodes tried; nobody left
    two.reply(second)  # too late: changes nothing
    hub.sweep()
    assert _state(hub, job_id) is JobState.QUEUED
    one.close()
    two.close()


def test_start_is_granted_once_per_epoch_and_requeue_fences_the_old_epoch(hub: ClockedHub) -> None:
    rev = _design(hub)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    job_id = _job(hub, rev)
    job_id, epoch = agent.take_job()
    agent.start(job_id, epoch)
    agent.expect("start_granted")
    agent.start(job_id, epoch)
    assert "once per epoch" in agent.expect("start_denied").start_denied.reason
    seq = agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_PROGRESS, {"percent": "40", "layer": "12"})
    agent.acked(seq)
    agent.cut()
    assert wait_for(lambda: _state(hub, job_id) is JobState.LOST_CONTACT)
    hub.clock.advance(2 * 3600 + 601)
    hub.sweep()
    assert _state(hub, job_id) is JobState.OUTCOME_UNKNOWN
    job = hub.composed.hub.jobs._thd_requeue(job_id)
    assert job.lease_epoch == epoch + 1 and job.state is JobState.QUEUED
    # the old node comes back with its stale result: recorded, applied to nothing, told to forget
    back = FakeAgent(hub, "lab-1", agent.token, [printer(phase=nodes_pb2.PRINTER_PHASE_PRINTING)])
    back.seq = agent.seq
    welcome = back.connect(held=[nodes_pb2.HeldJob(job_id=job_id, lease_epoch=epoch, state=nodes_pb2.JOB_LOCAL_STATE_DONE)])
    assert [(d.job_id, d.desired) for d in welcome.desired] == [(job_id, nodes_pb2.DESIRED_FORGET)]
    assert welcome.last_agent_seq_committed == seq
    late = back.event(job_id, epoch, nodes_pb2.EVENT_KIND_COMPLETED, {"actual_seconds": "1"})
    back.acked(late)
    assert _state(hub, job_id) is JobState.QUEUED
    events = hub.composed.store.jobs._thd_events(job_id)
    assert events[-1][1] is False and "stale epoch" in events[-1][2]
    assert hub.composed.store.jobs._thd_fabrications_of(job_id) == []
    back.close()


def test_a_node_reporting_on_another_nodes_job_is_refused(hub: ClockedHub) -> None:
    rev = _design(hub)
    owner = FakeAgent.enrolled(hub, "lab-1", [printer()])
    other = FakeAgent.enrolled(hub, "lab-2", [printer(materials=("PETG",))])
    owner.connect()
    other.connect()
    job_id = _job(hub, rev)
    job_id, epoch = owner.take_job()
    other.event(job_id, epoch, nodes_pb2.EVENT_KIND_FAILED, {"failure_reason": "sabotage"})
    assert other.ended() == grpc.StatusCode.PERMISSION_DENIED
    assert _state(hub, job_id) is JobState.ASSIGNED
    # the refusal is on record, so the other agent's outbox moved past it
    assert other.connect().last_agent_seq_committed == 1
    other.start(job_id, epoch)
    assert other.ended() == grpc.StatusCode.PERMISSION_DENIED
    owner.close()


def test_bad_input_gets_clear_statuses_and_changes_nothing(hub: ClockedHub) -> None:
    _job(hub, _design(hub))
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    job_id, epoch = agent.take_job()
    for data in ({f"k{i}": "v" for i in range(33)}, {"big": "x" * (16 * 1024 + 1)}, {"estimated_seconds": "soon"}):
        agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, data)
        assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
        assert _state(hub, job_id) is JobState.ASSIGNED
        assert agent.connect().last_agent_seq_committed == agent.seq  # refused, on record, not repeated
    # NUL characters are refused at the API's edge (PostgreSQL could not store them)
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, {"notes": "a\x00b"})
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert _state(hub, job_id) is JobState.ASSIGNED
    agent.connect()
    agent.event("j-nope", 1, nodes_pb2.EVENT_KIND_STARTED)
    assert agent.ended() == grpc.StatusCode.NOT_FOUND
    agent.connect()
    agent.send(offer_reply=nodes_pb2.OfferReply(offer_id="j-nope/1234"))
    assert agent.ended() == grpc.StatusCode.NOT_FOUND
    agent.connect()
    agent.heartbeat([nodes_pb2.JobProgress(job_id=job_id, lease_epoch=epoch, percent=float("nan"))])
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    agent.connect()
    agent.send(hello=nodes_pb2.Hello(agent_id="lab-1"))
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    bad_printer = printer("bad id with spaces")
    agent.printers = [bad_printer]
    with pytest.raises(AssertionError):
        agent.connect()
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    # blobs of no job of this node are not the node's to fetch
    md = (("authorization", f"Bearer {agent.token}"),)
    with pytest.raises(grpc.RpcError) as info:
        list(agent.stub.FetchArtifact(nodes_pb2.DownloadArtifactRequest(sha256="0" * 64), metadata=md))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_node_credential_ends_its_live_session(hub: ClockedHub) -> None:
    """`spime-hub user revoke` runs in its own process: the hub learns it from the database."""
    lab1, lab2 = FakeAgent.enrolled(hub, "lab-1", [printer()]), FakeAgent.enrolled(hub, "lab-2", [printer()])
    lab1.connect()
    lab2.connect()
    nodes = hub.composed.hub.nodes
    assert asyncio.run_coroutine_threadsafe(nodes.recheck_credentials(), hub.loop).result(timeout=30) == 0
    hub.composed.store.accounts._thd_revoke_tokens("lab-1", "2026-12-01T00:00:00Z")  # as the CLI does
    assert asyncio.run_coroutine_threadsafe(nodes.recheck_credentials(), hub.loop).result(timeout=30) == 1
    assert lab1.ended() == grpc.StatusCode.UNAUTHENTICATED
    assert lab1.error is not None and "revoked" in (lab1.error.details() or "")
    wait_for(lambda: {n.name: n.online for n in hub.composed.store.nodes._thd_nodes()} == {"lab-1": False,
                                                                                          "lab-2": True})
    with pytest.raises(AssertionError):  # the revoked token left the hub's token cache too
        lab1.connect()
    assert lab1.ended() == grpc.StatusCode.UNAUTHENTICATED
    rev = _design(hub)
    job = _job(hub, rev, node="lab-2")
    assert lab2.expect("offer").offer.job_id == job  # the other node's session carries on


def test_a_reissued_enrollment_voids_the_earlier_token_and_credential(hub: ClockedHub) -> None:
    """`spime-hub node add NAME --again` is for a lost or leaked credential: whoever holds the earlier
    enrollment token or credential is shut out at once, and the agent is back with the new token."""
    nodes, accounts = hub.composed.hub.nodes, hub.composed.store.accounts
    stub = nodes_pb2_grpc.NodesStub(hub.channel)
    _, first, _ = nodes._thd_add_node("lab-1")
    old = FakeAgent(hub, "lab-1", stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token=first)).token, [printer()])
    old.connect()
    _, unused, _ = nodes._thd_add_node("lab-1", again=True)  # never used: the next re-issue voids it too
    assert accounts._thd_by_token(old.token) is None
    assert asyncio.run_coroutine_threadsafe(nodes.recheck_credentials(), hub.loop).result(timeout=30) == 1
    assert old.ended() == grpc.StatusCode.UNAUTHENTICATED
    _, second, _ = nodes._thd_add_node("lab-1", again=True)
    for void in (first, unused):
        with pytest.raises(grpc.RpcError) as info:
            stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token=void))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    new = FakeAgent(hub, "lab-1", stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token=second)).token, [printer()])
    new.connect()
    assert hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {new.token}"),)
                               ).name == "lab-1"
    with pytest.raises(AssertionError):
        old.connect()
    assert old.ended() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(NotFound):
        nodes._thd_add_node("lab-9", again=True)


def test_a_drained_node_gets_no_new_jobs_until_resumed(hub: ClockedHub) -> None:
    """`spime-hub node drain|resume` write the database from their own process: routing reads the
    drain at once, and the live session is told at the hub's next check (run here by hand)."""
    rev = _design(hub)
    lab1, lab2 = FakeAgent.enrolled(hub, "lab-1", [printer()]), FakeAgent.enrolled(hub, "lab-2", [printer()])
    lab1.connect()
    lab2.connect()
    nodes = hub.composed.hub.nodes

    def apply_drains() -> int:
        return asyncio.run_coroutine_threadsafe(nodes.apply_drains(), hub.loop).result(timeout=30)

    with pytest.raises(InvalidArgument):
        nodes._thd_drain_node("lab-1", " ")  # the operator is owed a reason
    with pytest.raises(InvalidArgument):
        nodes._thd_drain_node("lab-1", "x" * 201)
    with pytest.raises(NotFound):
        nodes._thd_drain_node("lab-9", "no such node")
    assert nodes._thd_drain_node("lab-1", "three failed prints: checking calibration").drained
    assert apply_drains() == 1 and apply_drains() == 0  # told once per session
    assert lab1.expect("drain").drain.reason == "three failed prints: checking calibration"

    first, second = _job(hub, rev), _job(hub, rev)
    assert lab2.expect("offer").offer.job_id == first  # never to the drained node
    hub.sweep()
    assert _state(hub, second) is JobState.QUEUED  # lab-2 is busy and lab-1 drained: it waits
    pinned = _job(hub, rev, node="lab-1")
    hub.sweep()
    assert _state(hub, pinned) is JobState.QUEUED

    lab1.close()
    lab1.connect()  # a new session of a drained node is told again, right after Welcome
    assert lab1.expect("drain").drain.reason.startswith("three failed prints")

    assert not nodes._thd_resume_node("lab-1").drained
    assert apply_drains() == 1
    assert lab1.ended() is None  # the drained session is closed; the agent takes jobs in its next one
    seen = len(lab1.received)
    lab1.connect()
    assert lab1.expect("offer").offer.job_id in (second, pinned)  # its one printer takes a waiting job
    assert "drain" not in [m.WhichOneof("kind") for m in lab1.received[seen:]]  # Drain would precede it
    lab1.close()
    lab2.close()
