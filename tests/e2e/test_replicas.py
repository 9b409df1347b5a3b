"""Two `spime-hub serve` replicas on one PostgreSQL (issue 9): agents reach replica A through a
TcpProxy, jobs are written through another process (what `spime-hub job add` does) and offered
through A at once (NOTIFY); A is killed with SIGKILL, the proxy follows B, the agents reconnect
to B and finish their work there: every job ends in exactly one fabrication, every start is
granted once per lease epoch, and a job queued after the kill is offered through B. An agent
that does not come back is released by B once A's lease (--replica-ttl 10) ran out: its print
is LOST_CONTACT until it says Hello to B.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from spimeforge.v1 import nodes_pb2, nodes_pb2_grpc

from hub.__main__ import Composed, compose
from hub.config import HubConfig
from hub.jobs import JobSpec, JobState
from hub.store import schema
from tests.e2e.processes import DESIGN, HubProcess, poll
from tests.fixtures.hub_server import USERS, start_hub
from tests.fixtures.postgres import PostgresServer, create_database
from tests.fixtures.tcp_proxy import TcpProxy
from tests.hub.fake_agent import FakeAgent, printer

WAIT_S = 60.0
TTL_S = 10


class Replica(HubProcess):
    """`spime-hub serve --replica-ttl TTL_S` on the shared database."""

    def start(self) -> None:
        first = not self.tokens
        self.running = start_hub(self.data_dir, self.database_url, ("--replica-ttl", str(TTL_S)),
                                 users=USERS if first else {})
        if first:
            self.tokens = dict(self.running.tokens)


class Rig:
    """Replica A and B, an admin composition like the CLI's, one proxy per agent."""

    def __init__(self, root: Path, url: str) -> None:
        self.url = url
        self.a = Replica(root / "a", url)
        self.b = Replica(root / "b", url)
        self.admin: Composed | None = None
        self.channels: list[grpc.Channel] = []
        self.proxies: dict[str, TcpProxy] = {}

    def start(self, root: Path) -> None:
        self.a.start()
        self.b.tokens = dict(self.a.tokens)  # B is started second: the accounts exist already
        self.b.start()
        self.admin = compose(HubConfig(data_dir=root / "admin", database_url=self.url), printability=None)

    def agent(self, name: str) -> FakeAgent:
        """Enroll a node (`spime-hub node add` + Enroll) and give it its own proxy to A."""
        assert self.admin is not None
        _, enrollment, _ = self.admin.hub.nodes._thd_add_node(name)
        self.proxies[name] = self.a.proxy()
        channel = grpc.insecure_channel(self.proxies[name].address)
        self.channels.append(channel)
        token = nodes_pb2_grpc.NodesStub(channel).Enroll(
            nodes_pb2.EnrollRequest(enrollment_token=enrollment, agent_version="fake/1"), timeout=WAIT_S).token
        return FakeAgent(channel, name, token, [printer("mk3")])

    def add_job(self, revision: str, node: str) -> str:
        assert self.admin is not None
        return self.admin.hub.jobs._thd_create_job(JobSpec(DESIGN, revision, "PLA", node=node), "admin").id

    def state(self, job_id: str) -> JobState:
        assert self.admin is not None
        return self.admin.hub.jobs._thd_get_job(job_id).state

    def fabrications(self) -> dict[str, int]:
        """job id -> number of fabrications recorded for it."""
        assert self.admin is not None
        t = schema.fabrications
        with self.admin.store.designs.engine.connect() as db:
            rows = db.execute(sa.select(t.c.job_id, sa.func.count()).group_by(t.c.job_id)).all()
        return {str(job): int(count) for job, count in rows}

    def online(self, node: str) -> bool:
        assert self.admin is not None
        with self.admin.store.designs.engine.connect() as db:
            return bool(db.scalar(sa.select(schema.nodes.c.online).where(schema.nodes.c.name == node)))

    def holder(self, node: str) -> str:
        assert self.admin is not None
        with self.admin.store.designs.engine.connect() as db:
            return str(db.scalar(sa.select(schema.nodes.c.replica).where(schema.nodes.c.name == node)))

    def replicas(self) -> set[str]:
        assert self.admin is not None
        with self.admin.store.designs.engine.connect() as db:
            return set(db.scalars(sa.select(schema.hub_replicas.c.replica)))

    def stop(self) -> None:
        for channel in self.channels:
            channel.close()
        self.a.close_proxies()
        self.a.stop()
        self.b.stop()
        if self.admin is not None:
            self.admin.close()


@pytest.fixture()
def rig(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Rig]:
    made = Rig(tmp_path, create_database(postgres_server))
    try:
        made.start(tmp_path)
        yield made
    finally:
        made.stop()


def _reconnect(agent: FakeAgent) -> nodes_pb2.Welcome:
    """Say Hello again until a hub answers (the channel backs off after the cut)."""
    end = time.monotonic() + WAIT_S
    while True:
        try:
            return agent.connect()
        except AssertionError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _finish(agent: FakeAgent, job_id: str, epoch: int) -> None:
    seq = agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME, {"outcome": "success", "reason": "", "notes": ""})
    agent.acked(seq)
    agent.jobs.pop(job_id, None)


def _print(agent: FakeAgent, job: str, epoch: int) -> None:
    """From Assigned to STARTED (the agent holds a running print)."""
    agent.event(job, epoch, nodes_pb2.EVENT_KIND_DOWNLOADED)
    agent.event(job, epoch, nodes_pb2.EVENT_KIND_SLICED, {
        "estimated_seconds": "600", "filament_mm": "1500", "filament_g": "4.5", "slicer": "PrusaSlicer",
        "slicer_version": "2.5.0", "profile": "prusa_mk3s", "layer_height_mm": "0.2"})
    agent.start(job, epoch)
    agent.expect("start_granted")
    agent.ack()
    agent.event(job, epoch, nodes_pb2.EVENT_KIND_STARTED)
    agent.jobs[job] = nodes_pb2.HeldJob(job_id=job, lease_epoch=epoch, state=nodes_pb2.JOB_LOCAL_STATE_PRINTING,
                                        printer_id="mk3")


def _complete(agent: FakeAgent, job: str, epoch: int) -> None:
    seq = agent.event(job, epoch, nodes_pb2.EVENT_KIND_COMPLETED, {"actual_seconds": "640"})
    agent.acked(seq)
    _finish(agent, job, epoch)


def _grants(agents: list[FakeAgent]) -> list[tuple[str, int]]:
    return [(m.start_granted.job_id, m.start_granted.lease_epoch)
            for agent in agents for m in agent.received if m.WhichOneof("kind") == "start_granted"]


def test_agents_move_to_the_surviving_replica_with_no_job_lost_or_doubled(rig: Rig) -> None:
    revision = rig.a.push_design()
    one, two, three = rig.agent("lab-1"), rig.agent("lab-2"), rig.agent("lab-3")
    for agent in (one, two, three):
        agent.connect()
    assert rig.holder("lab-1") == rig.holder("lab-2") == rig.holder("lab-3") != ""
    assert len(rig.replicas()) == 2
    # Jobs written by another process are offered through A (which holds both sessions).
    first = rig.add_job(revision, "lab-1")
    assert one.take_job()[0] == first
    one.run_to_printed(first, one.jobs[first].lease_epoch)
    _finish(one, first, one.jobs[first].lease_epoch)
    printing = rig.add_job(revision, "lab-2")
    job, epoch = two.take_job()
    assert job == printing
    _print(two, job, epoch)
    stranded = rig.add_job(revision, "lab-3")
    stranded_epoch = three.take_job()[1]
    _print(three, stranded, stranded_epoch)
    assigned = rig.add_job(revision, "lab-1")
    assert one.take_job()[0] == assigned
    poll("the prints to be recorded", lambda: {rig.state(printing), rig.state(stranded)} == {JobState.PRINTING})

    rig.a.kill()  # SIGKILL: no graceful stop, no session closed by A
    rig.proxies["lab-3"].cut()  # lab-3 stays away
    assert one.ended() is not None and two.ended() is not None and three.ended() is not None
    assert rig.b.running is not None
    for proxy in rig.a.proxies:
        proxy.retarget("127.0.0.1", rig.b.running.port)
    desired = {d.job_id: d.desired for agent in (one, two) for d in _reconnect(agent).desired}
    assert desired == {printing: nodes_pb2.DESIRED_RUN, assigned: nodes_pb2.DESIRED_RUN}
    assert rig.holder("lab-1") == rig.holder("lab-2") != ""
    assert rig.state(printing) is JobState.PRINTING and rig.state(assigned) is JobState.ASSIGNED

    # The print that ran through the kill ends on B; the assigned job starts and ends on B.
    _complete(two, printing, epoch)
    one.run_to_printed(assigned, one.jobs[assigned].lease_epoch)
    _finish(one, assigned, one.jobs[assigned].lease_epoch)
    # A job queued after the kill is offered through B.
    late = rig.add_job(revision, "lab-2")
    later_job, later_epoch = two.take_job()
    assert later_job == late
    two.run_to_printed(late, later_epoch)
    _finish(two, late, later_epoch)

    # B released lab-3 once A's lease ran out; lab-3 comes back later and its print lands once.
    poll("B to release lab-3", lambda: not rig.online("lab-3") and rig.state(stranded) is JobState.LOST_CONTACT,
         explain=rig.b.log)
    assert rig.holder("lab-3") == "" and len(rig.replicas()) == 1
    rig.proxies["lab-3"].restore()
    _reconnect(three)
    assert rig.state(stranded) is JobState.PRINTING
    _complete(three, stranded, stranded_epoch)

    jobs = (first, printing, assigned, late, stranded)
    poll("every job done", lambda: all(rig.state(j) is JobState.DONE for j in jobs),
         explain=lambda: f"{[rig.state(j) for j in jobs]}\n{rig.b.log()}")
    assert rig.fabrications() == dict.fromkeys(jobs, 1)
    grants = _grants([one, two, three])
    assert sorted(grants) == sorted(set(grants)) and len(grants) == 5
    offers = [m.offer.job_id for a in (one, two, three) for m in a.received if m.WhichOneof("kind") == "offer"]
    assert sorted(offers) == sorted(jobs)
    for agent in (one, two, three):
        agent.close()
