"""A rogue node (a valid credential, hostile messages) against the Nodes service, on SQLite and PostgreSQL.

Each case: the status the rogue gets, and that what other nodes and their jobs depend on is unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2
from spimeforge.v1 import common_pb2, nodes_pb2, records_pb2

from hub.jobs import JobSpec, JobState
from hub.scheduler import PrinterRecord
from hub.service.batching import Opening, session_opener
from hub.store import schema
from hub.store.nodes import HelloRecord, NodeInfo
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL

STL = b"solid cube\nendsolid cube\n"


def _revision(hub: ClockedHub) -> str:
    return str(hub.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id)


def _job(hub: ClockedHub, rev: str, node: str) -> str:
    return hub.composed.hub.jobs._thd_create_job(JobSpec("cube", rev, "PLA", node=node), "admin").id


def _holding_a_job(hub: ClockedHub, node: str) -> tuple[FakeAgent, str, int]:
    """A connected agent of ``node`` that took a job of a new design: (agent, job id, lease epoch)."""
    rev = _revision(hub)
    agent = FakeAgent.enrolled(hub, node, [printer()])
    agent.connect()
    _job(hub, rev, node)
    job_id, epoch = agent.take_job()
    return agent, job_id, epoch


def _events(hub: ClockedHub, node: str) -> list[tuple[str, bool, dict[str, str]]]:
    e = schema.job_events
    with hub.engine.connect() as conn:
        rows = conn.execute(sa.select(e.c.kind, e.c.applied, e.c.data).where(e.c.node == node).order_by(e.c.agent_seq))
        return [(r.kind, bool(r.applied), json.loads(r.data)) for r in rows]


def test_a_hello_naming_one_printer_twice_is_refused_and_fails_no_one_else(hub: ClockedHub) -> None:
    twice = [printer("pq"), printer("pq", materials=("PETG",))]
    rogue = FakeAgent.enrolled(hub, "lab-a", twice)
    with pytest.raises(AssertionError):
        rogue.connect()
    assert rogue.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'pq' appears twice" in rogue.error.details()  # type: ignore[union-attr]
    honest = FakeAgent.enrolled(hub, "lab-b", [printer()])
    assert honest.connect().session_epoch == 1
    honest.send(heartbeat=nodes_pb2.Heartbeat(printers=twice))  # the same mistake later in a session
    assert honest.ended() == grpc.StatusCode.INVALID_ARGUMENT
    stored = sorted((p.node, p.printer) for p in hub.composed.store.nodes._thd_printers())
    assert stored == [("lab-b", "mk3")]


def test_a_batch_of_hellos_with_one_unstorable_gives_the_others_their_sessions(hub: ClockedHub) -> None:
    """The store refusing one Hello of a batch (here a printer twice, past the service's check) fails
    only that caller: the batch is retried Hello by Hello."""
    composed = hub.composed
    for name in ("lab-a", "lab-b", "lab-c"):
        composed.hub.nodes._thd_add_node(name)

    def opening(name: str, *printers: str) -> Opening:
        records = tuple(PrinterRecord(name, p, "MK3S", (250.0, 210.0, 210.0), 0.4, ("PLA",), "idle", True, True, True)
                        for p in printers)
        return Opening(HelloRecord(name, ("Berlin", 52.5, 13.4), "v1", 0, records, "2026-12-01T04:00:00Z"), ())

    opener = session_opener(composed.store.nodes, composed.hub.jobs)

    async def one_batch() -> list[object]:  # submitted together: the batcher runs them as one batch
        return list(await asyncio.gather(opener.submit(opening("lab-a", "p1")), opener.submit(opening("lab-b", "p1", "p1")),
                                         opener.submit(opening("lab-c", "p1")), return_exceptions=True))

    first, bad, last = asyncio.run_coroutine_threadsafe(one_batch(), hub.loop).result(timeout=30)
    assert isinstance(bad, Exception)
    assert [r[0].name for r in (first, last) if isinstance(r, tuple) and isinstance(r[0], NodeInfo)] == ["lab-a", "lab-c"]
    stored = sorted((p.node, p.printer) for p in composed.store.nodes._thd_printers())
    assert stored == [("lab-a", "p1"), ("lab-c", "p1")]


def test_an_ack_beyond_what_the_hub_sent_does_not_cut_the_node_off(hub: ClockedHub) -> None:
    rev = _revision(hub)
    agent = FakeAgent.enrolled(hub, "lab-a", [printer()])
    agent.connect()
    agent.send(ack=nodes_pb2.CommandAck(hub_seq=1_000_000))
    agent.start("no-such-job", 1)  # answered after the ack was stored (a session's messages run in order)
    assert agent.ended() == grpc.StatusCode.NOT_FOUND
    node = hub.composed.store.nodes._thd_node("lab-a")
    assert node.hub_seq_acked == node.hub_seq
    agent.last_hub_seq = 2_000_000  # a Hello claiming commands the hub never sent
    agent.connect()
    job_id = _job(hub, rev, "lab-a")
    assert agent.expect("offer").offer.job_id == job_id


@pytest.mark.parametrize("seconds", [253_402_300_800, 2**40, 2**63 - 1])
def test_an_event_time_past_the_year_9999_is_refused_and_acknowledged(hub: ClockedHub, seconds: int) -> None:
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    agent.send(job_event=nodes_pb2.JobEvent(agent_seq=1, job_id=job_id, lease_epoch=epoch,
                                            kind=nodes_pb2.EVENT_KIND_DOWNLOADED,
                                            at=timestamp_pb2.Timestamp(seconds=seconds)))
    assert agent.expect("event_ack").event_ack.agent_seq == 1  # the outbox moves on
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "event time" in agent.error.details()  # type: ignore[union-attr]
    assert hub.composed.hub.jobs._thd_get_job(job_id).state is JobState.ASSIGNED


@pytest.mark.parametrize("findings", ["[" * 8000 + "]" * 8000, "[1, 2]", json.dumps([{"code": "x"}] * 101)])
def test_findings_that_are_not_a_short_list_of_objects_are_refused(hub: ClockedHub, findings: str) -> None:
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    seq = agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_PRINTABILITY_FAILED, {"findings": findings})
    agent.acked(seq)
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "findings must be a JSON list" in agent.error.details()  # type: ignore[union-attr]
    assert hub.composed.hub.jobs._thd_get_job(job_id).state is JobState.ASSIGNED


def test_findings_are_kept_in_the_shape_the_record_shows(hub: ClockedHub) -> None:
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    sent = [{"code": "thin_wall", "severity": "error", "message": "0.1 mm", "min_mm": 0.1, "faces": [1, 2],
             "details": {"where": "rim"}}]
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_PRINTABILITY_FAILED, {"findings": json.dumps(sent)}))
    job = hub.composed.hub.jobs._thd_get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.production["findings"] == [{"code": "thin_wall", "severity": "error", "message": "0.1 mm",
                                           "details": {"where": "rim", "min_mm": "0.1", "faces": "[1, 2]"}}]


@pytest.mark.parametrize("layer", ["9" * 30, str(2**40), "-1"])
def test_a_progress_layer_out_of_range_is_refused_alike_on_both_databases(hub: ClockedHub, layer: str) -> None:
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    seq = agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_PROGRESS, {"percent": "10", "layer": layer})
    agent.acked(seq)
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "layer must be 0 to 1000000" in agent.error.details()  # type: ignore[union-attr]
    assert hub.composed.hub.jobs._thd_get_job(job_id).layer == 0


def test_a_heartbeat_layer_beyond_the_limit_is_refused(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-a", [printer()])
    agent.connect()
    agent.heartbeat([nodes_pb2.JobProgress(job_id="j1", lease_epoch=1, percent=5, layer=4_000_000_000)])
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT


def test_progress_of_a_finished_job_changes_nothing(hub: ClockedHub) -> None:
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_FAILED, {"failure_reason": "nozzle clog"}))
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_PROGRESS, {"percent": "100", "layer": "7"}))
    job = hub.composed.hub.jobs._thd_get_job(job_id)
    assert (job.state, job.progress_percent, job.layer) == (JobState.FAILED, 0.0, 0)


def test_reports_on_another_nodes_job_keep_no_data(hub: ClockedHub) -> None:
    _, job_id, epoch = _holding_a_job(hub, "lab-b")
    rogue = FakeAgent.enrolled(hub, "lab-a", [printer()])
    rogue.connect()
    bulk = {f"k{i}": "x" * 16_000 for i in range(32)}
    rogue.acked(rogue.event(job_id, epoch - 1, nodes_pb2.EVENT_KIND_FAILED, bulk))  # stale: recorded, no change
    seq = rogue.event(job_id, epoch, nodes_pb2.EVENT_KIND_FAILED, bulk)  # current epoch: refused
    rogue.acked(seq)
    assert rogue.ended() == grpc.StatusCode.PERMISSION_DENIED
    assert _events(hub, "lab-a") == [("failed", False, {}), ("failed", False, {})]
    assert hub.composed.hub.jobs._thd_get_job(job_id).state is JobState.ASSIGNED


@pytest.mark.parametrize("sha", ["", "../../etc/passwd", "A" * 64])
def test_fetching_an_artifact_by_something_that_is_not_a_hash_is_invalid(hub: ClockedHub, sha: str) -> None:
    agent = FakeAgent.enrolled(hub, "lab-a", [printer()])
    with pytest.raises(grpc.RpcError) as info:
        list(agent.stub.FetchArtifact(nodes_pb2.DownloadArtifactRequest(sha256=sha),
                                      metadata=(("authorization", f"Bearer {agent.token}"),)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not a SHA-256" in info.value.details()


@pytest.mark.parametrize("field", ["printer_id", "currency"])
def test_a_trailing_newline_does_not_pass_a_name_check(hub: ClockedHub, field: str) -> None:
    p = printer("pa\n") if field == "printer_id" else printer()
    if field == "currency":
        p.rate_per_hour.currency = "EUR\n"
    agent = FakeAgent.enrolled(hub, "lab-a", [p])
    with pytest.raises(AssertionError):
        agent.connect()
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert hub.composed.store.nodes._thd_printers() == []


@pytest.mark.parametrize(("field", "hello"), [
    ("model", nodes_pb2.Hello(printers=[printer(model="MK3\x1b[2J")])),
    ("material", nodes_pb2.Hello(printers=[printer(materials=("\u202ePLA",))])),
    ("location", nodes_pb2.Hello(printers=[printer()], location="Lab\u2066")),
])
def test_control_and_bidi_characters_are_refused_in_what_customers_read(hub: ClockedHub, field: str,
                                                                       hello: nodes_pb2.Hello) -> None:
    agent = FakeAgent.enrolled(hub, "lab-a", [])
    hello.agent_id = "lab-a"
    with pytest.raises(grpc.RpcError) as info:
        list(agent.stub.Session(iter([nodes_pb2.AgentMsg(hello=hello)]),
                                metadata=(("authorization", f"Bearer {agent.token}"),)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds the control or bidi character" in info.value.details(), field
    assert hub.composed.store.nodes._thd_printers() == []


def test_a_printer_rate_past_what_a_price_can_hold_is_refused(hub: ClockedHub) -> None:
    """A rate of 2**62 cents an hour made every quote that matched the printer INTERNAL (the price overflowed)."""
    greedy = printer("greedy")
    greedy.rate_per_hour.minor_units = 2**62
    rogue = FakeAgent.enrolled(hub, "lab-g", [greedy])
    with pytest.raises(AssertionError):
        rogue.connect()
    assert rogue.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rates are amounts of 0 to 100000000 minor units" in rogue.error.details()  # type: ignore[union-attr]
    assert [p.printer for p in hub.composed.store.nodes._thd_printers()] == []


def test_slicer_texts_longer_than_the_record_keeps_still_end_the_job(hub: ClockedHub) -> None:
    """An event keeps up to 1,024 characters of the slicer's name, version and profile; the fabrication
    record keeps 64. PostgreSQL refused the longer text when the job ended: the ending event was never
    acknowledged and the node's session failed on every reconnect."""
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    long = "S" * 1000
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, {"slicer": long, "slicer_version": long, "profile": long,
                                                             "estimated_seconds": "600"})
    agent.start(job_id, epoch)
    agent.expect("start_granted")
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_STARTED)
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_COMPLETED, {"actual_seconds": "640"})
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME, {"outcome": "success"}))
    assert hub.composed.hub.jobs._thd_get_job(job_id).state is JobState.DONE
    f = schema.fabrications
    with hub.engine.connect() as conn:
        row = conn.execute(sa.select(f.c.slicer, f.c.slicer_version).where(f.c.job_id == job_id)).one()
    assert tuple(row) == ("S" * 64, "S" * 64)


def test_an_event_on_a_job_id_longer_than_any_is_refused_and_acknowledged(hub: ClockedHub) -> None:
    """Job ids are at most 32 characters, as the event record keeps them (33 to 40 passed the check and
    PostgreSQL refused the record: UNAVAILABLE, never acknowledged, on every reconnect)."""
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    agent.acked(agent.event("j" * 33, epoch, nodes_pb2.EVENT_KIND_DOWNLOADED))
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "job id" in agent.error.details()  # type: ignore[union-attr]
    assert hub.composed.hub.jobs._thd_get_job(job_id).state is JobState.ASSIGNED


@pytest.mark.parametrize(("field", "value"), [
    ("filament_g", "5e-324"), ("filament_g", "0.001"), ("estimated_seconds", "0.5"),
    ("estimated_seconds", "999999999"), ("filament_mm", "1e8"), ("layer_height_mm", "1e-9"),
])
def test_an_estimate_no_real_print_has_is_refused_and_acknowledged(hub: ClockedHub, field: str, value: str) -> None:
    """A tiny estimate made the record's relative errors infinite (5e-324 g: inf, for good, in a running
    sum); 31 years of printing kept a lost job from a person for decades."""
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, {field: value}))
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"event data {field}=" in agent.error.details()  # type: ignore[union-attr]
    assert "not known" in agent.error.details()  # type: ignore[union-attr]
    assert not hub.composed.hub.jobs._thd_get_job(job_id).production


def test_a_print_measured_within_bounds_keeps_the_record_finite(hub: ClockedHub) -> None:
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, {"estimated_seconds": "1", "filament_g": "0.01"})
    agent.start(job_id, epoch)
    agent.expect("start_granted")
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_COMPLETED, {"actual_seconds": str(30 * 24 * 3600),
                                                                "filament_g_used": "100000"})
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME, {"outcome": "success"}))
    record = hub.records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=hub.md("carol"))
    (aggregate,) = record.aggregates
    assert aggregate.mean_time_error == pytest.approx(30 * 24 * 3600 - 1)  # the worst a node can claim
    assert aggregate.mean_filament_error == pytest.approx(1e7 - 1)


def test_texts_a_node_reports_reach_the_record_without_control_or_bidi_characters(hub: ClockedHub) -> None:
    """A printer's error text is kept (the job still fails), its controls shown as U+FFFD: the record is
    read by people, and an escape sequence or a right-to-left override would forge what they see."""
    agent, job_id, epoch = _holding_a_job(hub, "lab-a")
    agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, {"slicer": "Prusa\x1b[2JSlicer", "profile": "a\u202eb"})
    reason = "nozzle \u202eelzzon\u202c clog\x1b[2J\x07\r\nFAKE: all good\n\tline two"
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_FAILED, {"failure_reason": reason}))
    job = hub.composed.hub.jobs._thd_get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.production["failure_reason"] == "nozzle \ufffdelzzon\ufffd clog\ufffd[2J\ufffd\r\nFAKE: all good\n\tline two"
    assert job.production["slicer"] == "Prusa\ufffd[2JSlicer" and job.production["slicer_profile"] == "a\ufffdb"


@pytest.mark.parametrize("way", ["printer_changed", "heartbeat"])
def test_a_node_cannot_grow_past_its_printer_limit_after_hello(hub: ClockedHub, way: str) -> None:
    """Each message was within its own limit, and printers were only ever added: 193 routable printers."""
    agent = FakeAgent.enrolled(hub, "lab-a", [printer("p0")])
    agent.connect()
    if way == "printer_changed":
        for i in range(1, 64):
            agent.send(printer_changed=nodes_pb2.PrinterChanged(printer=printer(f"p{i}")))
        agent.send(printer_changed=nodes_pb2.PrinterChanged(printer=printer("p64")))
    else:
        agent.send(heartbeat=nodes_pb2.Heartbeat(printers=[printer(f"p{i}") for i in range(1, 64)]))
        agent.send(heartbeat=nodes_pb2.Heartbeat(printers=[printer("q0")]))
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "would have 65 printers; at most 64" in agent.error.details()  # type: ignore[union-attr]
    with hub.engine.connect() as conn:
        stored = conn.scalar(sa.select(sa.func.count()).where(schema.printers.c.node == "lab-a"))
    assert stored == 64


def _colored(color: str) -> nodes_pb2.PrinterState:
    p = printer()
    p.loaded_color = color
    return p


def _phased(phase: int) -> nodes_pb2.PrinterState:
    p = printer()
    p.phase = phase  # type: ignore[assignment]
    return p


@pytest.mark.parametrize(("field", "hello"), [
    ("HeldJob.printer_id", nodes_pb2.Hello(printers=[printer()], jobs=[nodes_pb2.HeldJob(job_id="j1",
                                                                                         printer_id="x" * 4_000_000)])),
    ("PrinterState.loaded_color", nodes_pb2.Hello(printers=[_colored("x" * 4_000_000)])),
    ("PrinterState.loaded_color", nodes_pb2.Hello(printers=[_colored("red\u202e")])),
    ("PrinterState.phase", nodes_pb2.Hello(printers=[_phased(999)])),
    ("HeldJob.state", nodes_pb2.Hello(printers=[printer()], jobs=[nodes_pb2.HeldJob(job_id="j1", state=999)])),  # type: ignore[arg-type]
])
def test_hello_fields_the_hub_once_took_at_any_size_or_number_are_refused_naming_them(
        hub: ClockedHub, field: str, hello: nodes_pb2.Hello) -> None:
    agent = FakeAgent.enrolled(hub, "lab-a", [])
    hello.agent_id = "lab-a"
    with pytest.raises(grpc.RpcError) as info:
        list(agent.stub.Session(iter([nodes_pb2.AgentMsg(hello=hello)]),
                                metadata=(("authorization", f"Bearer {agent.token}"),)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details(), info.value.details()
    assert hub.composed.store.nodes._thd_printers() == []


def test_an_unknown_printer_phase_in_a_heartbeat_ends_the_session(hub: ClockedHub) -> None:
    agent = FakeAgent.enrolled(hub, "lab-a", [printer()])
    agent.connect()
    agent.send(heartbeat=nodes_pb2.Heartbeat(printers=[_phased(999)]))
    assert agent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert "PrinterState.phase 999" in agent.error.details()  # type: ignore[union-attr]


def test_a_later_upload_chunk_cannot_declare_another_hash_or_size(hub: ClockedHub) -> None:
    first = common_pb2.BlobChunk(sha256=hashlib.sha256(b"ab").hexdigest(), total_size=2, data=b"a")
    for later in (common_pb2.BlobChunk(sha256="x" * 4_000_000, offset=1, data=b"b"),
                  common_pb2.BlobChunk(total_size=999, offset=1, data=b"b")):
        with pytest.raises(grpc.RpcError) as info:
            hub.designs.UploadBlob(iter([first, later]), metadata=hub.md("alice"), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert "a chunk after the first declares" in (info.value.details() or "")
    again = common_pb2.BlobChunk(sha256=first.sha256, total_size=2, offset=1, data=b"b")
    assert hub.designs.UploadBlob(iter([first, again]), metadata=hub.md("alice"), timeout=30).sha256 == first.sha256
