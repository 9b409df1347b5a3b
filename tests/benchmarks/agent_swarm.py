"""Many lightweight simulated node agents in one process, for the agent-scale benchmark.

    python -m tests.benchmarks.agent_swarm --target HOST:PORT --mode hub|bare --agents FILE

FILE holds one ``name<TAB>token`` line per agent. Each agent opens one Session
stream (spread over a few channels: HTTP/2 multiplexes the streams), says Hello
with its printer, the jobs it holds and the last hub_seq it applied (like
spime-node), then heartbeats. On every offer it prints ``{"offer": job_id, "t_ns":
monotonic_ns}`` and accepts it (the job is then held and named in later Hellos).
Once every agent's first Hello is answered it prints ``{"connected": n, ...}``.
SIGUSR1 drops every stream and channel at once; each agent then reconnects with
the real agent's policy (node_agent.hub_client.ReconnectPolicy: a short first wait
after a healthy session, full-jitter exponential backoff, the hub's RetryInfo hint
honoured) and the swarm prints ``{"reconnected": n, "t_ns": ..., "back_ms": ...,
"errors": {code: count}}`` when all are back. Failed attempts are counted, not
printed one by one (the driver reading them runs in the hub's process).
Bare mode talks to the reference server in test_bench_agents.py (raw bytes, no
auth, no store) with the same policy.
CLOCK_MONOTONIC is system-wide on Linux, so the driver compares times directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc import aio
from spimeforge.v1 import common_pb2, nodes_pb2, nodes_pb2_grpc

from node_agent.hub_client import KEEPALIVE_OPTIONS, ReconnectPolicy, retry_hint

STREAMS_PER_CHANNEL = 100
PRINTER = nodes_pb2.PrinterState(
    printer_id="p1", model="Prusa MK3S", build_volume_mm=common_pb2.Vector3(x=250, y=210, z=210),
    nozzle_diameter_mm=0.4, materials=["PLA"], phase=nodes_pb2.PRINTER_PHASE_IDLE, bed_clear=True, accepting=True,
    rate_per_hour=common_pb2.Money(currency="EUR", minor_units=300),
    rate_per_gram=common_pb2.Money(currency="EUR", minor_units=5), slicer_profile="prusa_mk3s",
)
BARE_METHOD = "/bench.Bare/Session"
Send = Callable[[nodes_pb2.AgentMsg], Awaitable[None]]
# The agent's own channel options (keepalive, reconnect backoff), one subchannel per channel.
CHANNEL_OPTIONS = (*KEEPALIVE_OPTIONS, ("grpc.use_local_subchannel_pool", 1))


def emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


class Agent:
    """What one simulated agent remembers between sessions (its journal, in short)."""

    __slots__ = ("applied", "held", "name", "policy", "token")

    def __init__(self, name: str, token: str, rng: random.Random) -> None:
        self.name, self.token = name, token
        self.policy = ReconnectPolicy(rng)
        self.applied = 0  # the newest hub_seq applied
        self.held: dict[str, tuple[int, str]] = {}  # job id -> (lease epoch, printer)

    def hello(self) -> nodes_pb2.AgentMsg:
        jobs = [nodes_pb2.HeldJob(job_id=job, lease_epoch=epoch, state=nodes_pb2.JOB_LOCAL_STATE_PREPARING,
                                  printer_id=printer) for job, (epoch, printer) in self.held.items()]
        return nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(agent_id=self.name, agent_version="swarm", printers=[PRINTER],
                                                        last_hub_seq_applied=self.applied, jobs=jobs))


class Swarm:
    def __init__(self, target: str, mode: str, agents: list[tuple[str, str]]) -> None:
        self.target, self.mode = target, mode
        rng = random.Random()
        self.agents = [Agent(name, token, rng) for name, token in agents]
        self.channels: list[aio.Channel] = []
        self.ready: set[str] = set()
        self.generation = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.back_ns: list[int] = []  # per agent: from the drop (or start) to its Welcome
        self.dropped_ns = time.monotonic_ns()
        self.cpu_at_drop = time.process_time()
        self.errors: Counter[str] = Counter()
        self.examples: dict[str, str] = {}  # the first failure of each code

    def _channel(self, index: int) -> aio.Channel:
        slot = index // STREAMS_PER_CHANNEL
        while len(self.channels) <= slot:
            self.channels.append(aio.insecure_channel(self.target, options=CHANNEL_OPTIONS))
        return self.channels[slot]

    async def run_agent(self, index: int, generation: int, first_wait: bool) -> None:
        agent = self.agents[index]
        if first_wait:  # the stream just broke, as in spime-node's session loop
            await asyncio.sleep(agent.policy.delay(None))
        while generation == self.generation:
            try:
                await self._session(index, agent, generation)
                return
            except (grpc.RpcError, aio.AioRpcError) as exc:
                if generation != self.generation:
                    return
                code = str(exc.code() if isinstance(exc, aio.AioRpcError) else None)
                self.errors[code] += 1
                if code not in self.examples:
                    detail = exc.details() if isinstance(exc, aio.AioRpcError) else exc
                    debug = exc.debug_error_string() if isinstance(exc, aio.AioRpcError) else ""
                    self.examples[code] = f"{code}: {detail} ({debug})"[:400]
                self.ready.discard(agent.name)
                hint = retry_hint(exc)
                await asyncio.sleep(agent.policy.delay(_Hinted(hint) if hint else None))

    async def _session(self, index: int, agent: Agent, generation: int) -> None:
        channel = self._channel(index)
        if self.mode == "bare":
            call = channel.stream_stream(BARE_METHOD)()
            await call.write(agent.name.encode())
            async for message in call:
                self._on_bare(agent, message, generation)
            return
        stub = nodes_pb2_grpc.NodesStub(channel)
        call = stub.Session(metadata=(("authorization", f"Bearer {agent.token}"),))
        lock = asyncio.Lock()  # one write at a time on a stream (grpc refuses a second), as spime-node's send lock

        async def send(message: nodes_pb2.AgentMsg) -> None:
            async with lock:
                await call.write(message)

        await send(agent.hello())
        beat: asyncio.Task[None] | None = None
        try:
            async for message in call:
                if message.WhichOneof("kind") == "welcome" and beat is None:
                    beat = asyncio.create_task(self._heartbeats(send, message.welcome.heartbeat_interval_s or 15))
                await self._on_hub(agent, send, message, generation)
        finally:
            if beat is not None:
                beat.cancel()

    async def _heartbeats(self, send: Send, interval_s: float) -> None:
        """Like a real agent: a heartbeat with the printer states every interval (first one jittered)."""
        await asyncio.sleep(random.uniform(0, interval_s))
        beat = nodes_pb2.AgentMsg(heartbeat=nodes_pb2.Heartbeat(printers=[PRINTER]))
        while True:
            await send(beat)
            await asyncio.sleep(interval_s)

    def _on_bare(self, agent: Agent, message: bytes, generation: int) -> None:
        if message == b"welcome":
            self._mark_ready(agent, generation)
        else:
            emit({"offer": message.decode(), "t_ns": time.monotonic_ns()})

    async def _on_hub(self, agent: Agent, send: Send, message: nodes_pb2.HubMsg,
                      generation: int) -> None:
        kind = message.WhichOneof("kind")
        if kind == "welcome":
            self._mark_ready(agent, generation)
        elif kind == "offer":
            offer = message.offer
            emit({"offer": offer.job_id, "t_ns": time.monotonic_ns()})
            agent.held[offer.job_id] = (int(offer.lease_epoch), offer.printer_id)
            await send(nodes_pb2.AgentMsg(offer_reply=nodes_pb2.OfferReply(offer_id=offer.offer_id, accept=True)))
        elif kind == "assigned":
            job = message.assigned
            if job.job_id in agent.held:
                agent.held[job.job_id] = (int(job.lease_epoch), agent.held[job.job_id][1])
        if message.hub_seq:
            agent.applied = max(agent.applied, int(message.hub_seq))
            await send(nodes_pb2.AgentMsg(ack=nodes_pb2.CommandAck(hub_seq=message.hub_seq)))

    def _mark_ready(self, agent: Agent, generation: int) -> None:
        agent.policy.healthy()
        if agent.name not in self.ready:
            self.back_ns.append(time.monotonic_ns() - self.dropped_ns)
        self.ready.add(agent.name)
        if len(self.ready) == len(self.agents):
            key = "connected" if generation == 0 else "reconnected"
            done = sorted(self.back_ns)
            emit({key: len(self.ready), "t_ns": time.monotonic_ns(),
                  "back_ms": [round(done[int(q * (len(done) - 1))] / 1e6) for q in (0.1, 0.5, 0.9, 0.99)],
                  "cpu_s": round(time.process_time() - self.cpu_at_drop, 2),
                  "errors": dict(self.errors), "examples": list(self.examples.values())})
            self.errors, self.examples = Counter(), {}

    def start(self, first_wait: bool = False) -> None:
        self.tasks = [asyncio.create_task(self.run_agent(i, self.generation, first_wait))
                      for i in range(len(self.agents))]

    async def drop_all(self) -> None:
        """Every stream and channel closed at once, then every agent reconnects."""
        self.generation += 1
        self.ready.clear()
        self.back_ns, self.dropped_ns, self.cpu_at_drop = [], time.monotonic_ns(), time.process_time()
        emit({"dropped": len(self.agents), "t_ns": time.monotonic_ns()})
        for task in self.tasks:
            task.cancel()
        channels, self.channels = self.channels, []
        await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
        self.start(first_wait=True)


class _Hinted(Exception):
    """A failed attempt that carried the hub's RetryInfo (what spime-node's HubUnavailable carries)."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("retry later")
        self.retry_after_s = retry_after_s


async def main_async(args: argparse.Namespace) -> None:
    agents = [tuple(line.split("\t", 1)) for line in Path(args.agents).read_text().splitlines() if line]
    swarm = Swarm(args.target, args.mode, [(a, b) for a, b in agents])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(swarm.drop_all()))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    swarm.start()
    await stop.wait()
    for task in swarm.tasks:
        task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--mode", choices=["hub", "bare"], required=True)
    parser.add_argument("--agents", required=True)
    asyncio.run(main_async(parser.parse_args()))
