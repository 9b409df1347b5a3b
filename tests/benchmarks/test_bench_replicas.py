"""Benchmark: how fast a job written through one hub replica reaches an agent held by another.

Two in-process replicas on one PostgreSQL, their queue polls slowed to an hour, so the only
wake-up across replicas is LISTEN/NOTIFY. An agent holds its session on replica A; jobs for it
are created through replica B (the figure) and through A itself (the reference: the in-process
ring after commit, no NOTIFY needed). Each job's offer is awaited, then the job is cancelled.
Printed: p50/p99 of create -> offer received, and the ratio cross-replica / same-replica.

Run with ``bash ops/bench.sh -k replicas`` (SPIME_BENCH_REPLICAS=N jobs per path, default 100).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from hub.jobs import JobSpec, TimerPolicy
from tests.fixtures.postgres import PostgresServer, create_database
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, start_clocked

JOBS = int(os.environ.get("SPIME_BENCH_REPLICAS", "100"))
SLOW = TimerPolicy(sweep_interval_s=3600, queue_poll_s=3600)
STL = b"solid plate\nendsolid plate\n"


def _latencies(writer: ClockedHub, agent: FakeAgent, revision: str) -> list[float]:
    out = []
    for _ in range(JOBS):
        began = time.perf_counter()
        job = writer.composed.hub.jobs._thd_create_job(JobSpec("cube", revision, "PLA", node="lab-1"), "admin")
        offer = agent.expect("offer").offer
        out.append(time.perf_counter() - began)
        assert offer.job_id == job.id
        writer.composed.hub.jobs._thd_cancel_job(job.id, "benchmark")
    return out


def _summary(name: str, values: list[float]) -> float:
    ordered = sorted(values)
    p50, p99 = statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"[replicas] {name}: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms over {len(values)} offers")
    return p50


def test_offer_latency_across_replicas(tmp_path: Path, postgres_server: PostgresServer) -> None:
    url = create_database(postgres_server)
    a = start_clocked(tmp_path / "a", url, timers=SLOW)
    b = start_clocked(tmp_path / "b", url, timers=SLOW, users={})
    try:
        for hub in (a, b):
            listener = hub.server.replicas.listener
            assert listener is not None and listener.listening.wait(20)
        revision = a.push("alice", "cube", {"cube.stl": STL}, create=True).revision_id
        agent = FakeAgent.enrolled(a, "lab-1", [printer("mk3")])
        agent.connect()
        reference = _summary("same replica (in-process ring, reference)", _latencies(a, agent, revision))
        across = _summary("across replicas (NOTIFY)", _latencies(b, agent, revision))
        print(f"[replicas] ratio across / same replica (p50): {across / reference:.2f}")
        agent.close()
    finally:
        b.stop()
        a.stop()
