"""Benchmark: many node agents on one hub process, against a bare grpc.aio bidi-stream server.

For 1,000 and 10,000 simulated agents (two client processes, tests/benchmarks/agent_swarm.py),
measured in the same run on the hub and on the reference:
* memory per agent: the server process's RSS growth from idle to every stream connected,
  divided by the agent count (target < 64 KiB on the hub);
* offer latency: from job creation on the hub (or the reference's push) to the offer's arrival
  in the agent, p50 and p99 over jobs spread across the agents (target p99 < 20 ms);
* reconnect: every stream dropped at once, time until all agents are back (target < 10 s);
* CPU per session: the server process's CPU time during that reconnect, divided by the agent count
  (what the server's own work costs; on a busy machine compare it with the reference's of the same run).

The hub runs in the bench process (tests/hub/harness.py: the real gRPC server on its own
event-loop thread, SQLite in a temporary directory); jobs are created through the hub's job
service (create + offer in one transaction), so the offer latency includes the job's creation,
its dispatch, the outbox read and the offer's rendering and sending. The hub runs the push-time
printability check, as `spime-hub serve` always does, so the cube's report is stored with its push
(an offer of a revision whose checks are still pending reads its reports again each time). The reference server is a
grpc.aio server with one raw-bytes bidi method, no auth and no store, and the hub's transport
options (keepalive, pending-call limits): the floor. The simulated agents follow spime-node's own
reconnect policy (node_agent.hub_client.ReconnectPolicy) against both servers, name the jobs they
accepted in their Hello and ack what they applied, as a real agent does. Diagnostics
printed with the hub figures: how long the job's creation call took (the rest of the offer
latency is its delivery), the hub's CPU seconds during the reconnect (by thread) and when the
agents were back after the drop (p10/p50/p90/p99 per client process), and failed session attempts
by status code (RESOURCE_EXHAUSTED: the hub's admission told the agent when to come back).

Run with ``bash ops/bench.sh -k agents``. Set SPIME_BENCH_AGENTS=1000 to run the small size only.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import trimesh

from hub.jobs import JobSpec
from hub.runtime import tune_gc, tune_switching
from tests.hub.harness import InProcessHub, start_in_process

SIZES = tuple(int(n) for n in os.environ.get("SPIME_BENCH_AGENTS", "1000,10000").split(","))
CLIENT_PROCESSES = 2
JOBS = 200
ROOT = Path(__file__).resolve().parents[2]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads (native ones too), summed by thread name."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = names.get(int(task.name)) or (task / "comm").read_text().strip()
            name = name.split(" ")[0].rstrip("0123456789_-")
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class SwarmRun:
    """The client processes and what they printed."""

    procs: list[subprocess.Popen[str]]
    events: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # by their first key
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_readers(self) -> None:
        for proc in self.procs:
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            with self.lock:  # indexed by kind: polling must not scan every event (this is the hub's process)
                self.events.setdefault(next(iter(event)), []).append(event)

    def count(self, key: str) -> list[dict[str, object]]:
        with self.lock:
            return list(self.events.get(key, ()))

    def wait_for(self, key: str, n: int, timeout_s: float) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.count(key)
            if len(found) >= n:
                return found
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.count(key))}/{n} '{key}' events within {timeout_s} s")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def start_swarm(tmp: Path, target: str, mode: str, agents: list[tuple[str, str]]) -> SwarmRun:
    procs = []
    for k in range(CLIENT_PROCESSES):
        part = tmp / f"agents-{mode}-{k}.tsv"
        part.write_text("".join(f"{n}\t{t}\n" for n, t in agents[k::CLIENT_PROCESSES]))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.agent_swarm", "--target", target, "--mode", mode,
             "--agents", str(part)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"},
        ))
    run = SwarmRun(procs)
    run.start_readers()
    return run


def failed_attempts(run: SwarmRun) -> str:
    """The session attempts that failed during the connect and the reconnect (the agents retried)."""
    counts: dict[str, int] = {}
    examples: list[object] = []
    for event in run.count("connected") + run.count("reconnected"):
        for code, n in dict(event.get("errors") or {}).items():  # type: ignore[call-overload]
            counts[code] = counts.get(code, 0) + int(n)
        examples.extend(list(event.get("examples") or []))  # type: ignore[call-overload]
    return f"failed session attempts by code: {counts or 'none'}{', e.g. ' + str(examples[:4]) if examples else ''}"


def reconnect_seconds(run: SwarmRun, timeout_s: float) -> float:
    for proc in run.procs:
        proc.send_signal(10)  # SIGUSR1: drop every stream at once
    dropped = run.wait_for("dropped", CLIENT_PROCESSES, 30)
    back = run.wait_for("reconnected", CLIENT_PROCESSES, timeout_s)
    start = min(int(e["t_ns"]) for e in dropped)  # type: ignore[call-overload]
    end = max(int(e["t_ns"]) for e in back)  # type: ignore[call-overload]
    return float((end - start) / 1e9)


# -- the reference: a bare grpc.aio bidi-stream server, in its own process --------------------

BARE_SERVER = r'''
import asyncio, sys, time
from grpc import aio
import grpc

streams = {}

async def session(request_iterator, context):
    queue = asyncio.Queue()
    name = None
    async def reader():
        nonlocal name
        async for msg in request_iterator:
            name = msg.decode()
            streams[name] = queue
            await queue.put(b"welcome")
    task = asyncio.create_task(reader())
    try:
        while True:
            yield await queue.get()
    finally:
        task.cancel()
        if name is not None and streams.get(name) is queue:
            del streams[name]

async def control():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        name, job = line.decode().split()
        t0 = time.monotonic_ns()
        await streams[name].put(job.encode())
        print(f"{job} {t0}", flush=True)

async def main():
    server = aio.server(options=[("grpc.so_reuseport", 0), ("grpc.http2.min_recv_ping_interval_without_data_ms", 10000),
                                 ("grpc.keepalive_permit_without_calls", 1), ("grpc.server.max_pending_requests", 20000),
                                 ("grpc.server.max_pending_requests_hard_limit", 40000)])  # the hub's transport options
    handler = grpc.method_handlers_generic_handler("bench.Bare", {
        "Session": grpc.stream_stream_rpc_method_handler(session)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await control()

asyncio.run(main())
'''


@dataclass(frozen=True)
class Figures:
    kib_per_agent: float
    p50_ms: float
    p99_ms: float
    reconnect_s: float
    cpu_ms: float  # the server process's CPU during the reconnect, per agent session


def measure_bare(tmp: Path, n: int) -> Figures:
    server = subprocess.Popen([sys.executable, "-c", BARE_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert server.stdout is not None and server.stdin is not None
    try:
        port = int(server.stdout.readline())
        idle = rss_kib(server.pid)
        agents = [(f"agent-{i:05d}", "") for i in range(n)]
        run = start_swarm(tmp, f"127.0.0.1:{port}", "bare", agents)
        try:
            run.wait_for("connected", CLIENT_PROCESSES, 120)
            per_agent = (rss_kib(server.pid) - idle) / n
            created: dict[str, int] = {}
            for j in range(JOBS):
                server.stdin.write(f"{agents[(j * 7919) % n][0]} job-{j}\n")
                server.stdin.flush()
                job, t0 = server.stdout.readline().split()
                created[job] = int(t0)
                time.sleep(0.005)
            offers = run.wait_for("offer", JOBS, 60)
            lat = [(int(e["t_ns"]) - created[str(e["offer"])]) / 1e6 for e in offers]  # type: ignore[call-overload]
            cpu = process_cpu(server.pid)
            reconnect = reconnect_seconds(run, 120)
            cpu = process_cpu(server.pid) - cpu
            print(f"\nbare: {cpu:.1f} s of server CPU during the reconnect of {n} agents ({cpu / n * 1000:.2f} ms per session)")
            print(f"bare: agents back after the drop (p10/p50/p90/p99 ms per client process): "
                  f"{[e['back_ms'] for e in run.count('reconnected')]}; client CPU s during the reconnect: "
                  f"{[e['cpu_s'] for e in run.count('reconnected')]}; {failed_attempts(run)}")
        finally:
            run.stop()
    finally:
        server.kill()
        server.wait()
        server.stdin.close()
        server.stdout.close()
    return Figures(per_agent, statistics.median(lat), percentile(lat, 0.99), reconnect, cpu / n * 1000)


def report(n: int, hub: Figures | None, bare: Figures) -> None:
    print(f"\n== {n} agents, {CLIENT_PROCESSES} client processes ==")
    print(f"reference bare grpc.aio: {bare.kib_per_agent:7.1f} KiB/agent  offer p50 {bare.p50_ms:6.2f} ms  "
          f"p99 {bare.p99_ms:6.2f} ms  all reconnected in {bare.reconnect_s:5.2f} s  CPU {bare.cpu_ms:.2f} ms/session")
    if hub is not None:
        print(f"spime-hub:               {hub.kib_per_agent:7.1f} KiB/agent  offer p50 {hub.p50_ms:6.2f} ms  "
              f"p99 {hub.p99_ms:6.2f} ms  all reconnected in {hub.reconnect_s:5.2f} s  CPU {hub.cpu_ms:.2f} ms/session")
        print(f"hub / reference: memory {hub.kib_per_agent / max(bare.kib_per_agent, 0.01):.2f}x, "
              f"p99 {hub.p99_ms / max(bare.p99_ms, 0.01):.2f}x, reconnect {hub.reconnect_s / bare.reconnect_s:.2f}x, "
              f"CPU per session {hub.cpu_ms / max(bare.cpu_ms, 0.001):.2f}x "
              "(targets: < 64 KiB/agent, p99 < 20 ms, reconnect < 10 s)")


# -- the hub: an in-process hub (own event-loop thread) on SQLite; the bench process is the hub process --

async def _enroll_all(hub: InProcessHub, names: list[str]) -> list[str]:
    nodes = hub.composed.hub.nodes
    gate = asyncio.Semaphore(64)

    async def one(name: str) -> str:
        async with gate:
            _, enrollment, _ = await asyncio.to_thread(nodes._thd_add_node, name)
            return (await nodes.enroll(enrollment, "swarm"))[1]

    return list(await asyncio.gather(*(one(n) for n in names)))


def measure_hub(tmp: Path, n: int) -> Figures:
    hub = start_in_process(tmp / f"hub-{n}", printability="auto")  # the push-time check, as `spime-hub serve` runs it
    try:
        pushed = hub.push("alice", "bench-cube", {"cube.stl": CUBE_STL}, create=True)
        assert [r.ok for r in pushed.reports] == [True], "the cube's printability report is missing"
        revision = pushed.revision_id
        names = [f"node-{i:05d}" for i in range(n)]
        tokens = asyncio.run_coroutine_threadsafe(_enroll_all(hub, names), hub.loop).result(timeout=600)
        tune_gc()  # as `spime-hub serve` does once it is up (hub/runtime.py)
        tune_switching()  # likewise
        idle = rss_kib(os.getpid())
        run = start_swarm(tmp, hub.address, "hub", list(zip(names, tokens, strict=True)))
        try:
            run.wait_for("connected", CLIENT_PROCESSES, 300)
            per_agent = (rss_kib(os.getpid()) - idle) / n
            created: dict[str, int] = {}
            creating: list[float] = []  # ms of each creation call (its write transaction) within the latency
            jobs = hub.composed.hub.jobs
            for j in range(JOBS):
                node = names[(j * 7919) % n]
                t0 = time.monotonic_ns()
                job = jobs._thd_create_job(JobSpec("bench-cube", revision, "PLA", node=node), "admin")
                created[job.id] = t0
                creating.append((time.monotonic_ns() - t0) / 1e6)
                time.sleep(0.005)
            offers = run.wait_for("offer", JOBS, 120)
            lat = [(int(e["t_ns"]) - created[str(e["offer"])]) / 1e6 for e in offers]  # type: ignore[call-overload]
            print(f"\nhub: of the offer latency, the job's creation call (create and offer in one write "
                  f"transaction) took p50 {percentile(creating, 0.5):.2f} ms, p99 {percentile(creating, 0.99):.2f} ms")
            cpu, threads = time.process_time(), thread_cpu()
            reconnect = reconnect_seconds(run, 300)
            cpu = time.process_time() - cpu
            used = {k: v - threads.get(k, 0.0) for k, v in thread_cpu().items()}
            print(f"hub: {cpu:.1f} s of hub CPU during the reconnect of {n} agents ({cpu / n * 1000:.2f} ms per session) "
                  f"(load average {os.getloadavg()[0]:.1f}); by thread: "
                  f"{sorted(((round(v, 1), k) for k, v in used.items()), reverse=True)[:6]}")
            print(f"hub: agents back after the drop (p10/p50/p90/p99 ms per client process): "
                  f"{[e['back_ms'] for e in run.count('reconnected')]}; client CPU s during the reconnect: "
                  f"{[e['cpu_s'] for e in run.count('reconnected')]}; {failed_attempts(run)}")
        finally:
            run.stop()
    finally:
        hub.stop()
    return Figures(per_agent, statistics.median(lat), percentile(lat, 0.99), reconnect, cpu / n * 1000)


def _cube_stl() -> bytes:
    mesh = trimesh.creation.box(extents=(20, 20, 20))
    return bytes(mesh.export(file_type="stl"))


CUBE_STL = _cube_stl()


def test_bench_agents(tmp_path: Path) -> None:
    for n in SIZES:
        bare = measure_bare(tmp_path, n)
        hub = measure_hub(tmp_path, n)
        report(n, hub, bare)
