"""The agent loop's protocol rules, against a scripted hub at the HubLink seam.

The hub's side is scripted (like tests/hub/fake_agent.py scripts the agent for the hub),
so each rule is checked deterministically: no physical start without a StartGranted for
the current epoch; each hub command applied once; reports journaled and resent after a
reconnect until acknowledged; no next job until the bed is cleared. Everything else is
real: the journal file, OpenSCAD/PrusaSlicer, and a simulated Marlin on a pty. The full
flow against the real hub is tests/e2e/test_agent_flow.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node_agent import messages as m
from node_agent.config import NodeConfig, NodeInfo, PrinterConfig
from node_agent.drivers.serial import SerialDriver
from node_agent.jobs import EventKind, JobState
from node_agent.journal import Journal
from node_agent.pipeline import PipelineSettings
from node_agent.testing import simulated_printer
from node_agent.worker import ControlError, Worker
from slicer_bridge import SLICERS, SliceCache

ROOT = Path(__file__).resolve().parents[2]
CUBE = ROOT / "designs" / "calibration-cube" / "calibration-cube.stl"
T = TypeVar("T")


class ScriptedSession:
    def __init__(self, hello: m.Hello) -> None:
        self.hello = hello
        self.sent: list[m.AgentMessage] = []
        self.inbox: asyncio.Queue[m.HubCommand | None] = asyncio.Queue()
        self.closed = False

    async def send(self, message: m.AgentMessage) -> None:
        self.sent.append(message)

    async def receive(self) -> m.HubCommand | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.closed = True
        self.inbox.put_nowait(None)


class ScriptedHub:
    def __init__(self) -> None:
        self.sessions: list[ScriptedSession] = []
        self.fetched: list[str] = []

    async def session(self, hello: m.Hello) -> ScriptedSession:
        self.sessions.append(ScriptedSession(hello))
        return self.sessions[-1]

    async def fetch_artifact(self, ref: m.ArtifactRef, dest: Path) -> Path:
        self.fetched.append(ref.path)
        shutil.copyfile(CUBE, dest)
        return dest

    async def close(self) -> None:
        pass

    @property
    def current(self) -> ScriptedSession:
        return self.sessions[-1]

    def sent(self, kind: type[T]) -> list[T]:
        return [msg for s in self.sessions for msg in s.sent if isinstance(msg, kind)]

    def events(self, job: str | None = None) -> list[EventKind]:
        return [e.kind for e in self.sent(m.JobEvent) if job is None or e.job_id == job]


async def until(what: str, check: Callable[[], Any], deadline_s: float = 120) -> Any:
    end = asyncio.get_running_loop().time() + deadline_s
    while asyncio.get_running_loop().time() < end:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def the_offer(job: str, seq: int, printer: str = "mk3", material: str = "PLA") -> m.Offer:
    data = CUBE.read_bytes()
    ref = m.ArtifactRef(hashlib.sha256(data).hexdigest(), len(data), "mesh", "cube.stl")
    return m.Offer(seq, f"offer-{job}", job, "calibration-cube", "rev1", (ref,), {}, material,
                   printer, 1, bbox_mm=(20.0, 20.0, 20.0))


def config(tmp_path: Path, port: str) -> NodeConfig:
    printer = PrinterConfig(name="mk3", driver="serial", model="Prusa MK3S",
                            build_volume_mm=(250.0, 210.0, 210.0), nozzle_mm=0.4,
                            materials=("PLA",), max_hotend_c=280.0, max_bed_c=110.0,
                            slicer_profile="prusa_mk3s", port=port, baud=250000)
    node = NodeInfo("node-a", "127.0.0.1:1", state_dir=tmp_path, heartbeat_s=0.2)
    return NodeConfig(node, (printer,))


_CACHE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _one_slice_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    _CACHE[:] = [tmp_path_factory.mktemp("slice-cache")]  # the same mesh is sliced once


def shared_cache() -> SliceCache:
    return SliceCache(_CACHE[0], 100 * 1024 * 1024)


def run(body: Callable[[Path], Awaitable[None]], tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(body(tmp_path), 300))


async def _happy_path(tmp_path: Path) -> None:
    async with simulated_printer() as sim:
        cfg = config(tmp_path, sim.port)
        journal = Journal.open(tmp_path / "journal.db")
        hub = ScriptedHub()
        cache = shared_cache()
        worker = Worker(cfg, journal, hub, {"mk3": SerialDriver("mk3", sim.port, 250000)},
                        PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"]))
        running = asyncio.create_task(worker.run())
        await until("hello", lambda: hub.sessions)
        assert hub.current.hello.agent_id == "node-a" and hub.current.hello.jobs == ()
        hub.current.inbox.put_nowait(m.Welcome(1, 0))
        await until("printer connected", lambda: hub.sent(m.Heartbeat) and
                    hub.sent(m.Heartbeat)[-1].printers[0].phase is m.Phase.IDLE)

        hub.current.inbox.put_nowait(the_offer("job-1", 1))
        await until("accept, then the ack", lambda: m.CommandAck(1) in hub.current.sent)
        assert hub.sent(m.OfferReply)[0].accept
        hub.current.inbox.put_nowait(m.Assigned(2, "job-1", "offer-job-1", 1))
        request = await until("start request", lambda: hub.sent(m.StartRequest))
        assert request[0] == m.StartRequest("job-1", 1, "mk3")
        assert hub.events() == [EventKind.DOWNLOADED, EventKind.PRINTABILITY_OK, EventKind.SLICED]
        hub.current.inbox.put_nowait(m.StartGranted(3, "job-1", 7))  # another epoch's grant
        await until("stale grant acked", lambda: m.CommandAck(3) in hub.current.sent)
        await asyncio.sleep(0.5)  # several heartbeats pass: still no start without a grant
        assert EventKind.STARTED not in hub.events() and not journal.job("job-1").granted
        assert not any(c.startswith("M104") for c in sim.stats.accepted)

        hub.current.inbox.put_nowait(m.StartGranted(4, "job-1", 1))
        await until("completed", lambda: EventKind.COMPLETED in hub.events())
        assert hub.events()[3:] == [EventKind.STARTED, EventKind.COMPLETED]
        assert journal.job("job-1").state is JobState.FINISHED
        assert any(c.startswith("M104") for c in sim.stats.accepted)

        # A redelivered command is acked again but not applied again.
        hub.current.inbox.put_nowait(the_offer("job-1", 1))
        await until("re-ack", lambda: hub.current.sent.count(m.CommandAck(1)) == 2)
        assert len(hub.sent(m.OfferReply)) == 1
        # The bed holds a part awaiting the operator: the next offer is declined.
        hub.current.inbox.put_nowait(the_offer("job-2", 5))
        await until("decline", lambda: len(hub.sent(m.OfferReply)) == 2)
        decline = hub.sent(m.OfferReply)[1]
        assert not decline.accept and decline.reason is m.DeclineReason.NO_CAPACITY
        assert "taken by job job-1" in decline.detail
        hub.current.inbox.put_nowait(the_offer("job-3", 6, material="PETG"))
        await until("decline", lambda: len(hub.sent(m.OfferReply)) == 3)
        assert hub.sent(m.OfferReply)[2].reason is m.DeclineReason.MATERIAL_UNAVAILABLE

        await worker.bed_clear("mk3")  # the part is off the bed; the verdict may come later
        assert hub.sent(m.PrinterChanged)[-1].printer.bed_clear is True
        assert (await worker.status())["printers"][0]["job"] is None
        try:
            await worker.outcome("job-1", "so-so")
            raise AssertionError("a bad outcome is refused")
        except ControlError as exc:
            assert "success or failed" in str(exc)
        await worker.outcome("job-1", "success", notes="crisp edges")
        assert hub.events()[-1] is EventKind.OUTCOME
        assert hub.sent(m.JobEvent)[-1].data == {"outcome": "success", "reason": "",
                                                  "notes": "crisp edges"}

        last = hub.sent(m.JobEvent)[-1].agent_seq
        hub.current.inbox.put_nowait(m.EventAck(last))
        await until("outbox trimmed", lambda: journal.pending() == [] and journal.jobs() == [])
        worker.shutdown()
        await running
        assert hub.current.closed and worker.shutdown() is None  # idempotent


def test_offer_to_outcome_with_the_rules_of_the_protocol(tmp_path: Path) -> None:
    run(_happy_path, tmp_path)


async def _reconnect(tmp_path: Path) -> None:
    async with simulated_printer() as sim:
        cfg = config(tmp_path, sim.port)
        journal = Journal.open(tmp_path / "journal.db")
        hub = ScriptedHub()
        cache = shared_cache()
        worker = Worker(cfg, journal, hub, {"mk3": SerialDriver("mk3", sim.port, 250000)},
                        PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"]))
        running = asyncio.create_task(worker.run())
        await until("hello", lambda: hub.sessions)
        hub.current.inbox.put_nowait(m.Welcome(1, 0))
        await until("printer connected", lambda: hub.sent(m.Heartbeat) and
                    hub.sent(m.Heartbeat)[-1].printers[0].phase is m.Phase.IDLE)
        hub.current.inbox.put_nowait(the_offer("job-1", 1))
        hub.current.inbox.put_nowait(m.Assigned(2, "job-1", "offer-job-1", 1))
        await until("start request", lambda: hub.sent(m.StartRequest))
        first = hub.current
        hub.current.inbox.put_nowait(None)  # the hub goes away, having committed seq 1 only

        await until("reconnect", lambda: len(hub.sessions) == 2)
        hello = hub.current.hello
        assert hello.last_hub_seq_applied == 2
        assert [(j.job_id, j.state) for j in hello.jobs] == [("job-1", JobState.READY)]
        hub.current.inbox.put_nowait(m.Welcome(2, 1))
        expected = [e.agent_seq for e in first.sent if isinstance(e, m.JobEvent)][1:]
        await until("resend", lambda: [e.agent_seq for e in hub.current.sent
                                       if isinstance(e, m.JobEvent)] == expected)
        await until("start asked again", lambda: any(isinstance(x, m.StartRequest)
                                                      for x in hub.current.sent))
        hub.current.inbox.put_nowait(m.Cancel(3, "job-1", 1, "customer cancelled"))
        await until("cancelled", lambda: EventKind.CANCELLED in hub.events())
        assert journal.job("job-1").state is JobState.CANCELLED
        worker.shutdown()
        await running
        assert not any(c.startswith("M104") for c in sim.stats.accepted)


def test_reports_are_resent_after_a_reconnect_and_a_cancel_ends_an_unstarted_job(
        tmp_path: Path) -> None:
    run(_reconnect, tmp_path)


async def _offline_mid_print(tmp_path: Path) -> None:
    # Moves take time on this firmware: the print outlives the hub's disappearance.
    async with simulated_printer(move_time_s=0.0005) as sim:
        cfg = config(tmp_path, sim.port)
        journal = Journal.open(tmp_path / "journal.db")
        hub = ScriptedHub()
        cache = shared_cache()
        driver = SerialDriver("mk3", sim.port, 250000)
        worker = Worker(cfg, journal, hub, {"mk3": driver},
                        PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"]))
        running = asyncio.create_task(worker.run())
        await until("hello", lambda: hub.sessions)
        hub.current.inbox.put_nowait(m.Welcome(1, 0))
        await until("printer connected", lambda: hub.sent(m.Heartbeat) and
                    hub.sent(m.Heartbeat)[-1].printers[0].phase is m.Phase.IDLE)
        hub.current.inbox.put_nowait(the_offer("job-1", 1))
        hub.current.inbox.put_nowait(m.Assigned(2, "job-1", "offer-job-1", 1))
        await until("start request", lambda: hub.sent(m.StartRequest))
        hub.current.inbox.put_nowait(m.StartGranted(3, "job-1", 1))
        await until("started", lambda: EventKind.STARTED in hub.events())
        committed = hub.sent(m.JobEvent)[-1].agent_seq
        hub.current.inbox.put_nowait(None)  # the hub is gone mid-print

        await until("reconnect attempt", lambda: len(hub.sessions) == 2)
        assert driver.status().phase.value == "printing"  # losing the hub aborts nothing
        worker.shutdown()  # SIGTERM: stop taking jobs, wait for the print
        await asyncio.sleep(0.2)
        assert not running.done()
        held = hub.current.hello.jobs
        assert [(j.job_id, j.state) for j in held] == [("job-1", JobState.PRINTING)]
        hub.current.inbox.put_nowait(m.Welcome(2, committed))
        await running
        after = [e for e in hub.current.sent if isinstance(e, m.JobEvent)]
        assert [e.kind for e in after] == [EventKind.COMPLETED]
        assert after[0].agent_seq == committed + 1
        assert journal.job("job-1").state is JobState.FINISHED


def test_a_print_outlives_the_hub_and_shutdown_waits_for_it(tmp_path: Path) -> None:
    run(_offline_mid_print, tmp_path)


async def _cancel_and_firmware_failure(tmp_path: Path) -> None:
    await _ends_badly(tmp_path, "job-c", {"move_time_s": 0.0005})
    await _ends_badly(tmp_path, "job-f", {"fail_at_line": 40})


async def _ends_badly(tmp_path: Path, job_id: str, options: dict[str, Any]) -> None:
    state = tmp_path / job_id
    async with simulated_printer(**options) as sim:
        cfg = config(state, sim.port)
        journal = Journal.open(state / "journal.db")
        hub = ScriptedHub()
        cache = shared_cache()
        worker = Worker(cfg, journal, hub, {"mk3": SerialDriver("mk3", sim.port, 250000)},
                        PipelineSettings(state / "jobs", cache, SLICERS["prusaslicer"]))
        running = asyncio.create_task(worker.run())
        await until("hello", lambda: hub.sessions)
        hub.current.inbox.put_nowait(m.Welcome(1, 0))
        await until("printer connected", lambda: hub.sent(m.Heartbeat) and
                    hub.sent(m.Heartbeat)[-1].printers[0].phase is m.Phase.IDLE)
        hub.current.inbox.put_nowait(the_offer(job_id, 1))
        hub.current.inbox.put_nowait(m.Assigned(2, job_id, f"offer-{job_id}", 1))
        await until("start request", lambda: hub.sent(m.StartRequest))
        hub.current.inbox.put_nowait(m.StartGranted(3, job_id, 1))
        await until("started", lambda: EventKind.STARTED in hub.events())
        if job_id == "job-c":
            hub.current.inbox.put_nowait(m.Cancel(4, job_id, 1, "the customer cancelled"))
            await until("cancelled", lambda: EventKind.CANCELLED in hub.events())
            assert journal.job(job_id).state is JobState.CANCELLED
        else:
            await until("failed", lambda: EventKind.FAILED in hub.events())
            failed = hub.sent(m.JobEvent)[-1].data
            assert failed["detected_by"] == "firmware" and failed["step"] == "print"
            assert "Thermal Runaway" in failed["failure_reason"]
        assert hub.events()[-1] in (EventKind.CANCELLED, EventKind.FAILED)
        # Whatever is left on the bed: no next job until the operator clears it.
        beat = await until("heartbeat", lambda: (b := hub.sent(m.Heartbeat)) and
                           b[-1].printers[0].queue_depth == 0 and b[-1])
        assert beat.printers[0].bed_clear is False
        worker.shutdown()
        await running


def test_a_cancel_mid_print_and_a_firmware_failure_end_the_job_cleanly(tmp_path: Path) -> None:
    run(_cancel_and_firmware_failure, tmp_path)


async def _drained(tmp_path: Path) -> None:
    async with simulated_printer() as sim:
        cfg = config(tmp_path, sim.port)
        journal = Journal.open(tmp_path / "journal.db")
        hub = ScriptedHub()
        worker = Worker(cfg, journal, hub, {"mk3": SerialDriver("mk3", sim.port, 250000)},
                        PipelineSettings(tmp_path / "jobs", shared_cache(), SLICERS["prusaslicer"]))
        running = asyncio.create_task(worker.run())

        def accepting() -> bool | None:
            beats = [b for b in hub.current.sent if isinstance(b, m.Heartbeat)]
            return beats[-1].printers[0].accepting if beats and beats[-1].printers[0].phase is m.Phase.IDLE else None

        await until("hello", lambda: hub.sessions)
        hub.current.inbox.put_nowait(m.Welcome(1, 0))
        await until("an idle printer that takes jobs", lambda: accepting() is True)
        hub.current.inbox.put_nowait(m.Drain(0, "calibrating"))  # a hub admin drained the node
        await until("heartbeats say: not accepting", lambda: accepting() is False)
        status = await worker.status()
        assert status["draining"] is True and status["drained_by_hub"] == "calibrating"
        hub.current.inbox.put_nowait(the_offer("job-1", 1))
        await until("decline", lambda: hub.sent(m.OfferReply))
        decline = hub.sent(m.OfferReply)[0]
        assert not decline.accept and decline.reason is m.DeclineReason.NO_CAPACITY
        assert "draining" in decline.detail

        hub.current.inbox.put_nowait(None)  # the hub closes the session: the node was resumed
        await until("reconnect", lambda: len(hub.sessions) == 2)
        hub.current.inbox.put_nowait(m.Welcome(2, 0))
        await until("the new session takes jobs again", lambda: accepting() is True)
        assert (await worker.status())["draining"] is False and not (await worker.status())["drained_by_hub"]
        worker.shutdown()
        await running


def test_a_drain_from_the_hub_lasts_its_session(tmp_path: Path) -> None:
    run(_drained, tmp_path)
