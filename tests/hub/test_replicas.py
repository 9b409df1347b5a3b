"""Hub replicas (issue 9): lease rules on SQLite and PostgreSQL, and two in-process replicas on one
PostgreSQL whose only wake-up is LISTEN/NOTIFY (their polls are slowed to an hour)."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from spimeforge.v1 import nodes_pb2

from hub.errors import NotFound
from hub.jobs import JobSpec, JobState, TimerPolicy
from hub.service.replicas import new_replica_id, parse_wakeup
from hub.store import schema
from hub.store.engine import make_engine, sqlite_url
from hub.store.nodes import NodeStore, notify
from hub.store.notify import listen
from hub.store.replicas import Released, ReplicaStore
from tests.fixtures.postgres import PostgresServer, create_database
from tests.hub.fake_agent import ClockedHub, FakeAgent, held, printer, start_clocked, wait_for

T0, T1, T2, T3 = "2026-12-01T05:00:00Z", "2026-12-01T05:00:10Z", "2026-12-01T05:00:40Z", "2026-12-01T05:01:00Z"
STL = b"solid plate\nendsolid plate\n"
SLOW = TimerPolicy(sweep_interval_s=3600, queue_poll_s=3600)
T = TypeVar("T")


def _online(engine: sa.Engine, name: str, replica: str) -> int:
    """Enroll (once) and open a session of `name` held by `replica`; returns its session epoch."""
    nodes = NodeStore(engine)
    try:
        nodes._thd_node(name)
    except NotFound:
        nodes._thd_add_node(name, f"spe_{name}", T0, T3)
    return nodes._thd_hello(name, ("", None, None), "t/1", 0, (), T0, replica).session_epoch


def _row(engine: sa.Engine, name: str) -> tuple[bool, str, int]:
    n = schema.nodes
    with engine.connect() as conn:
        row = conn.execute(sa.select(n.c.online, n.c.replica, n.c.session_epoch).where(n.c.name == name)).one()
    return bool(row.online), str(row.replica), int(row.session_epoch)


def test_payloads_and_ids() -> None:
    assert parse_wakeup("lab-1") == ("lab-1", None)
    assert parse_wakeup("lab-1 7") == ("lab-1", 7)
    assert parse_wakeup("lab-1 x") == ("lab-1", None)
    first, second = new_replica_id(), new_replica_id()
    assert first != second and len(first) <= 64


def test_start_releases_only_own_and_unowned_sessions(engine: sa.Engine) -> None:
    store = ReplicaStore(engine)
    store._thd_beat("a", T0, T2)
    store._thd_beat("b", T0, T2)
    _online(engine, "lab-a", "a")
    epoch_b = _online(engine, "lab-b", "b")
    _online(engine, "lab-old", "")  # a session from a hub before replicas
    released = store._thd_release_own("a", T1)
    assert sorted(r.node for r in released) == ["lab-a", "lab-old"]
    assert _row(engine, "lab-a")[:2] == (False, "") and _row(engine, "lab-old")[0] is False
    assert _row(engine, "lab-b") == (True, "b", epoch_b)  # another replica's agent stays connected


def test_dead_replica_sessions_are_released_once_after_its_lease(engine: sa.Engine) -> None:
    store = ReplicaStore(engine)
    store._thd_beat("a", T0, T2)
    store._thd_beat("b", T0, T2)
    epoch_a = _online(engine, "lab-a", "a")
    _online(engine, "lab-b", "b")
    _online(engine, "lab-ghost", "never-beat")  # a replica that left no lease at all
    assert [r.node for r in store._thd_release_dead(T1)] == ["lab-ghost"]
    store._thd_beat("b", T1, T3)  # b renews, a does not
    assert store._thd_release_dead(T1) == []
    assert store._thd_release_dead(T2) == [Released("lab-a", epoch_a, "a")]
    assert store._thd_release_dead(T2) == []  # once, whichever survivor asks
    assert set(store._thd_replicas()) == {"b"}
    assert _row(engine, "lab-a")[:2] == (False, "") and _row(engine, "lab-b")[:2] == (True, "b")


def test_a_hello_elsewhere_is_never_released_with_the_dead_replica(engine: sa.Engine) -> None:
    store = ReplicaStore(engine)
    store._thd_beat("a", T0, T1)
    store._thd_beat("b", T0, T3)
    _online(engine, "lab-1", "a")
    epoch = _online(engine, "lab-1", "b")  # the agent reconnected to b before a's lease ran out
    assert store._thd_holders(["lab-1", "nobody"]) == {"lab-1": (epoch, "b")}
    assert store._thd_release_dead(T2) == []
    assert _row(engine, "lab-1") == (True, "b", epoch)
    store._thd_leave("b")
    assert store._thd_replicas() == {}


def test_disconnect_clears_the_holder(engine: sa.Engine) -> None:
    epoch = _online(engine, "lab-1", "a")
    assert NodeStore(engine)._thd_disconnect("lab-1", epoch, T1)
    assert _row(engine, "lab-1") == (False, "", epoch)


# -- two in-process replicas on one PostgreSQL ------------------------------------------


def test_notify_carries_offers_and_hellos_across_replicas(tmp_path: Path, postgres_server: object) -> None:
    url = create_database(postgres_server)  # type: ignore[arg-type]
    a = start_clocked(tmp_path / "a", url, timers=SLOW)
    b = start_clocked(tmp_path / "b", url, timers=SLOW, users={})
    try:
        for hub in (a, b):
            listener = hub.server.replicas.listener
            assert listener is not None and listener.listening.wait(20)
        rev = a.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id
        agent = FakeAgent.enrolled(a, "lab-1", [printer("mk3")])
        agent.connect()
        assert _row(a.composed.store.designs.engine, "lab-1")[1] == a.composed.hub.nodes.replica
        # Created through replica b: b's own ring finds no session, a's poll sleeps for an hour.
        job = b.composed.hub.jobs._thd_create_job(JobSpec("cube", rev, "PLA", node="lab-1"), "admin")
        assert agent.take_job()[0] == job.id  # offer, accept, assigned: all through a
        assert b.composed.hub.jobs._thd_get_job(job.id).state is JobState.ASSIGNED
        # The same node says Hello on b: a ends its session with Superseded, b holds it now.
        again = FakeAgent(b.channel, "lab-1", agent.token, [printer("mk3")])
        again.last_hub_seq, again.jobs = agent.last_hub_seq, dict(agent.jobs)
        welcome = again.connect()
        assert agent.expect("superseded").superseded.new_session_epoch == welcome.session_epoch
        assert agent.ended() is None
        wait_for(lambda: a.composed.hub.nodes.online() == [] and b.composed.hub.nodes.online() == ["lab-1"])
        online, holder, epoch = _row(b.composed.store.designs.engine, "lab-1")
        assert (online, holder, epoch) == (True, b.composed.hub.nodes.replica, welcome.session_epoch)
        # a's superseded stream closing did not take the node offline nor lose its job.
        # A command written through a reaches the agent through b.
        a.composed.hub.jobs._thd_cancel_job(job.id, "changed my mind")
        assert again.expect("cancel").cancel.job_id == job.id
        again.close()
    finally:
        b.stop()
        a.stop()


def _on(hub: ClockedHub, work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(work, hub.loop).result(timeout=30)


def test_a_lapsed_replica_loses_its_sessions_to_the_survivor(tmp_path: Path, postgres_server: object) -> None:
    url = create_database(postgres_server)  # type: ignore[arg-type]
    a = start_clocked(tmp_path / "a", url, timers=SLOW)
    b = start_clocked(tmp_path / "b", url, timers=SLOW, users={})
    try:
        rev = a.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id
        agent = FakeAgent.enrolled(a, "lab-1", [printer("mk3")])
        agent.connect()
        job = a.composed.hub.jobs._thd_create_job(JobSpec("cube", rev, "PLA", node="lab-1"), "admin")
        job_id, epoch = agent.take_job()
        assert job_id == job.id
        agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_DOWNLOADED)
        agent.start(job_id, epoch)
        agent.expect("start_granted")
        agent.ack()
        agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_STARTED)
        agent.jobs[job_id] = held(job_id, epoch)
        wait_for(lambda: b.composed.hub.jobs._thd_get_job(job_id).state is JobState.PRINTING)
        # b's clock runs past a's lease: for b, replica a is dead (killed or partitioned).
        b.clock.advance(a.server.replicas.policy.ttl_s + 1)
        _on(b, b.server.replicas.round())
        assert _row(b.composed.store.designs.engine, "lab-1")[:2] == (False, "")
        # the job moves with the released session (batched off the round's thread): poll, bounded
        wait_for(lambda: b.composed.hub.jobs._thd_get_job(job_id).state is JobState.LOST_CONTACT)
        assert a.composed.hub.nodes.replica not in b.server.replicas.store._thd_replicas()
        # a, still alive (its clock agrees with b's again), learns on its next round that its session
        # is gone and ends the stream.
        a.clock.advance(a.server.replicas.policy.ttl_s + 1)
        _on(a, a.server.replicas.round())
        assert agent.ended() is None and a.composed.hub.nodes.online() == []
        agent.connect()  # the agent says Hello again (here to a): its print is live again
        wait_for(lambda: b.composed.hub.jobs._thd_get_job(job_id).state is JobState.PRINTING)
        agent.close()
    finally:
        b.stop()
        a.stop()


def test_the_listener_relistens_after_losing_its_connection(postgres_server: PostgresServer) -> None:
    engine = make_engine(create_database(postgres_server))
    got: queue.Queue[str] = queue.Queue()
    listens: queue.Queue[bool] = queue.Queue()
    listener = listen(engine, got.put, lambda: listens.put(True))
    try:
        assert listener is not None and listens.get(timeout=20)
        with engine.begin() as conn:
            notify(conn, "lab-1")
        assert got.get(timeout=20) == "lab-1"
        with engine.begin() as conn:  # what a failover or an admin's pg_terminate_backend does
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"))
        assert listens.get(timeout=20)  # on_listen again: the caller re-scans what it missed
        with engine.begin() as conn:
            notify(conn, "lab-1 3")
        assert got.get(timeout=20) == "lab-1 3"
    finally:
        if listener is not None:
            listener.stop()
        engine.dispose()
    assert listen(make_engine(sqlite_url(Path("/nonexistent"))), got.put, lambda: None) is None


def test_a_hello_elsewhere_that_overtakes_our_own_supersedes_it(tmp_path: Path) -> None:
    hub = start_clocked(tmp_path / "data")
    try:
        agent = FakeAgent.enrolled(hub, "lab-1", [printer("mk3")])
        # The NOTIFY of a Hello on another replica (epoch 99) arrives while ours is still committing.
        hub.composed.hub.nodes.supersede("lab-1", 99)
        agent.connect()
        assert agent.expect("superseded").superseded.new_session_epoch == 99
        assert agent.ended() is None
        wait_for(lambda: hub.composed.hub.nodes.online() == [])
        agent.connect()  # the overtaking epoch is consumed: a later Hello here holds its session
        assert hub.composed.hub.nodes.online() == ["lab-1"]
        agent.close()
    finally:
        hub.stop()
