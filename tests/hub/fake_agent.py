"""A blocking fake node agent over real gRPC stubs, and an in-process hub with a hand-moved clock.

Reusable by any hub test that needs real jobs and fabrications (ORDERS' tests too):

    hub = start_clocked(tmp_path / "data", database_url)       # InProcessHub + hub.clock (ManualClock)
    rev = hub.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id
    agent = FakeAgent.enrolled(hub, "lab-1", [printer("mk3")])
    agent.connect()                                            # Hello -> Welcome
    job = hub.composed.hub.jobs._thd_create_job(JobSpec("cube", rev, "PLA"), "admin")
    agent.print_job(outcome="success")                         # offer, accept, start, events, outcome
"""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from spimeforge.v1 import common_pb2, nodes_pb2, nodes_pb2_grpc

from hub.__main__ import compose
from hub.api.server import HubServer
from hub.config import HubConfig
from hub.domain import Role
from hub.jobs import TimerPolicy
from tests.hub.harness import USERS, InProcessHub

WAIT_S = 20.0


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ManualClock:
    """The hub's clock in tests: moves only when told."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        # Starts at the real time: pushes carry the client's time and the hub checks its skew.
        self.now = start or dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += dt.timedelta(seconds=seconds)


class ClockedHub(InProcessHub):
    clock: ManualClock
    stopped: bool = False

    def stop(self) -> None:
        """Stop once (a test may stop it early to restart the hub on the same data)."""
        if not self.stopped:
            self.stopped = True
            super().stop()

    def sweep(self) -> None:
        """Run the hub's timers once, now (liveness, offers, leases, lost contact, dispatch)."""
        nodes = self.composed.hub.nodes
        asyncio.run_coroutine_threadsafe(nodes.check_liveness(), self.loop).result(timeout=WAIT_S)
        self.composed.hub.jobs._thd_sweep()


def start_clocked(data_dir: Path, database_url: str = "", timers: TimerPolicy | None = None,
                  users: Mapping[str, str] = USERS) -> ClockedHub:
    """An in-process hub on 127.0.0.1:0 whose clock tests move; its own sweeper is slowed to a crawl
    so that tests decide when timers run (hub.sweep())."""
    clock = ManualClock()
    timers = timers or TimerPolicy(sweep_interval_s=3600, queue_poll_s=3600)
    config = HubConfig(data_dir=data_dir, database_url=database_url)
    composed = compose(config, clock=clock, printability=None, timers=timers)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hub-loop", daemon=True)
    thread.start()

    async def _start() -> tuple[HubServer, int]:
        server = HubServer(composed.hub)
        return server, await server.start("127.0.0.1:0")

    server, port = asyncio.run_coroutine_threadsafe(_start(), loop).result(timeout=30)
    hub = ClockedHub(composed, server, loop, thread, f"127.0.0.1:{port}")
    hub.clock = clock
    for name, role in users.items():
        hub.tokens[name] = composed.hub.accounts._thd_add_user(name, Role(role))[1]
    hub.channel = grpc.insecure_channel(hub.address)
    return hub


def printer(printer_id: str = "mk3", *, materials: Sequence[str] = ("PLA",), volume: tuple[float, float, float] = (250, 210, 210),
            phase: nodes_pb2.PrinterPhase = nodes_pb2.PRINTER_PHASE_IDLE, bed_clear: bool = True, accepting: bool = True,
            model: str = "Prusa MK3S") -> nodes_pb2.PrinterState:
    return nodes_pb2.PrinterState(
        printer_id=printer_id, model=model, build_volume_mm=common_pb2.Vector3(x=volume[0], y=volume[1], z=volume[2]),
        nozzle_diameter_mm=0.4, materials=list(materials), phase=phase, bed_clear=bed_clear, accepting=accepting,
        rate_per_hour=common_pb2.Money(currency="EUR", minor_units=300),
        rate_per_gram=common_pb2.Money(currency="EUR", minor_units=5), slicer_profile="prusa_mk3s",
    )


def enroll(hub: InProcessHub, name: str) -> str:
    """`spime-hub node add NAME` + Nodes.Enroll: the node's bearer token."""
    _, enrollment, _ = hub.composed.hub.nodes._thd_add_node(name)
    reply = nodes_pb2_grpc.NodesStub(hub.channel).Enroll(
        nodes_pb2.EnrollRequest(enrollment_token=enrollment, agent_version="fake/1"), timeout=WAIT_S)
    hub.tokens[name] = reply.token
    return str(reply.token)


class FakeAgent:
    """One agent's Session stream, driven step by step from the test thread."""

    def __init__(self, hub: InProcessHub | grpc.Channel, node: str, token: str,
                 printers: Sequence[nodes_pb2.PrinterState]) -> None:
        self.node, self.token = node, token
        self.printers = list(printers)
        channel = hub.channel if isinstance(hub, InProcessHub) else hub
        self.clock = hub.composed.hub.nodes.clock if isinstance(hub, InProcessHub) else _utc_now
        self.stub = nodes_pb2_grpc.NodesStub(channel)
        self.seq = 0
        self.last_hub_seq = 0
        self.received: list[nodes_pb2.HubMsg] = []
        self._unclaimed: list[nodes_pb2.HubMsg] = []
        self.jobs: dict[str, nodes_pb2.HeldJob] = {}  # what a real agent's journal would hold
        self._inbox: queue.Queue[nodes_pb2.HubMsg | None] = queue.Queue()
        self._outbox: queue.Queue[nodes_pb2.AgentMsg | None] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self._reader: threading.Thread | None = None
        self._call: Any = None

    @classmethod
    def enrolled(cls, hub: InProcessHub, node: str, printers: Sequence[nodes_pb2.PrinterState]) -> FakeAgent:
        return cls(hub, node, enroll(hub, node), printers)

    # -- stream --------------------------------------------------------------------

    def connect(self, held: Sequence[nodes_pb2.HeldJob] | None = None, agent_id: str | None = None) -> nodes_pb2.Welcome:
        """Open a Session with Hello (held: the jobs it took, unless given); returns the Welcome."""
        held = list(self.jobs.values()) if held is None else held
        self._inbox, self._outbox, self.error = queue.Queue(), queue.Queue(), None
        self._unclaimed = []
        hello = nodes_pb2.Hello(agent_id=agent_id or self.node, agent_version="fake/1",
                                last_hub_seq_applied=self.last_hub_seq, printers=self.printers, jobs=list(held),
                                location="Testlab", latitude=52.5, longitude=13.4)
        self._outbox.put(nodes_pb2.AgentMsg(hello=hello))
        outbox = self._outbox
        self._call = self.stub.Session(iter(outbox.get, None),
                                       metadata=(("authorization", f"Bearer {self.token}"),))
        self._reader = threading.Thread(target=self._read, args=(self._call, self._inbox), daemon=True)
        self._reader.start()
        return self.expect("welcome").welcome

    def _read(self, call: Any, inbox: queue.Queue[nodes_pb2.HubMsg | None]) -> None:
        try:
            for msg in call:
                inbox.put(msg)
        except grpc.RpcError as exc:
            self.error = exc
        inbox.put(None)

    def send(self, **kind: Any) -> None:
        self._outbox.put(nodes_pb2.AgentMsg(**kind))

    def close(self) -> None:
        """End the stream from the agent's side (half-close) and wait until the hub closed it."""
        self._outbox.put(None)
        if self._reader is not None:
            self._reader.join(WAIT_S)

    def cut(self) -> None:
        """Drop the connection abruptly (the agent vanished)."""
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.join(WAIT_S)

    def expect(self, kind: str, timeout: float = WAIT_S) -> nodes_pb2.HubMsg:
        """The oldest not yet expected hub message of a kind (every message is kept in .received)."""
        for i, msg in enumerate(self._unclaimed):
            if msg.WhichOneof("kind") == kind:
                return self._unclaimed.pop(i)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got is None:
                self._inbox.put(None)
                raise AssertionError(f"stream ended while waiting for {kind}: {self.error!r}")
            msg = got
            self.received.append(msg)
            if msg.hub_seq:
                self.last_hub_seq = max(self.last_hub_seq, msg.hub_seq)
            if msg.WhichOneof("kind") == kind:
                return msg
            self._unclaimed.append(msg)
        raise AssertionError(f"no {kind} within {timeout}s; got {[m.WhichOneof('kind') for m in self.received]}")

    def ended(self, timeout: float = WAIT_S) -> grpc.StatusCode | None:
        """Wait for the stream's end; its status code (None for OK)."""
        if self._reader is not None:
            self._reader.join(timeout)
            assert not self._reader.is_alive(), "stream did not end"
        return None if self.error is None else self.error.code()

    # -- protocol steps --------------------------------------------------------------

    def ack(self) -> None:
        self.send(ack=nodes_pb2.CommandAck(hub_seq=self.last_hub_seq))

    def heartbeat(self, progress: Sequence[nodes_pb2.JobProgress] = ()) -> None:
        self.send(heartbeat=nodes_pb2.Heartbeat(printers=self.printers, progress=list(progress)))

    def reply(self, offer: nodes_pb2.JobOffer, accept: bool = True,
              reason: nodes_pb2.DeclineReason = nodes_pb2.DECLINE_REASON_UNSPECIFIED) -> None:
        self.send(offer_reply=nodes_pb2.OfferReply(offer_id=offer.offer_id, accept=accept, reason=reason,
                                                   est_print_seconds=600))

    def start(self, job_id: str, epoch: int, printer_id: str = "mk3") -> None:
        self.send(start_request=nodes_pb2.StartRequest(job_id=job_id, lease_epoch=epoch, printer_id=printer_id))

    def event(self, job_id: str, epoch: int, kind: nodes_pb2.EventKind, data: Mapping[str, str] | None = None,
              seq: int | None = None) -> int:
        """Send a JobEvent (next agent_seq unless given); returns its agent_seq."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        at = timestamp_pb2.Timestamp()
        at.FromDatetime(self.clock().replace(tzinfo=None))
        self.send(job_event=nodes_pb2.JobEvent(agent_seq=seq, job_id=job_id, lease_epoch=epoch, kind=kind, at=at,
                                               data=dict(data or {})))
        return seq

    def acked(self, seq: int) -> None:
        """Wait for the hub's EventAck covering seq."""
        while True:
            if self.expect("event_ack").event_ack.agent_seq >= seq:
                return

    def take_job(self) -> tuple[str, int]:
        """Wait for an offer, accept it, wait for Assigned; returns (job_id, epoch)."""
        offer = self.expect("offer").offer
        self.reply(offer)
        assigned = self.expect("assigned").assigned
        self.ack()
        self.jobs[assigned.job_id] = held(assigned.job_id, assigned.lease_epoch, nodes_pb2.JOB_LOCAL_STATE_PREPARING)
        return assigned.job_id, assigned.lease_epoch

    def run_to_printed(self, job_id: str, epoch: int, printer_id: str = "mk3") -> None:
        """Prepare, get the start grant, print and report COMPLETED."""
        self.event(job_id, epoch, nodes_pb2.EVENT_KIND_DOWNLOADED)
        self.event(job_id, epoch, nodes_pb2.EVENT_KIND_SLICED, {
            "estimated_seconds": "600", "filament_mm": "1500", "filament_g": "4.5", "slicer": "PrusaSlicer",
            "slicer_version": "2.5.0", "profile": "prusa_mk3s", "layer_height_mm": "0.2"})
        self.start(job_id, epoch, printer_id)
        self.expect("start_granted")
        self.ack()
        self.event(job_id, epoch, nodes_pb2.EVENT_KIND_STARTED)
        seq = self.event(job_id, epoch, nodes_pb2.EVENT_KIND_COMPLETED, {
            "actual_seconds": "640", "filament_mm_used": "1510", "filament_g_used": "4.6", "resends": "2"})
        self.acked(seq)

    def print_job(self, outcome: str = "success", notes: str = "looks good") -> str:
        """The whole happy path of one job: returns its id."""
        job_id, epoch = self.take_job()
        self.run_to_printed(job_id, epoch)
        seq = self.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME,
                         {"outcome": outcome, "reason": "" if outcome == "success" else "warped", "notes": notes})
        self.acked(seq)
        return job_id


def held(job_id: str, epoch: int, state: nodes_pb2.JobLocalState = nodes_pb2.JOB_LOCAL_STATE_PRINTING) -> nodes_pb2.HeldJob:
    return nodes_pb2.HeldJob(job_id=job_id, lease_epoch=epoch, state=state, printer_id="mk3")


def wait_for(predicate: Any, timeout: float = WAIT_S) -> Any:
    """Poll a condition with a bounded deadline; returns its first truthy value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")
