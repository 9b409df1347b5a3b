"""Many lightweight simulated node agents in one process, for the agent-scale benchmark.

    python -m tests.benchmarks.agent_swarm --target HOST:PORT --mode hub|bare --agents FILE

FILE holds one ``name<TAB>token`` line per agent. Each agent opens one Session
stream (spread over a few channels: HTTP/2 multiplexes the streams), says Hello,
then waits. On every offer it prints ``{"offer": job_id, "t_ns": monotonic_ns}``
and accepts it. Once every agent's first Hello is answered it prints
``{"connected": n}``. SIGUSR1 drops every stream and channel at once; each agent
then reconnects with full-jitter exponential backoff (base 1 s, cap 60 s) and the
swarm prints ``{"reconnected": n, "t_ns": …}`` when all are back. Bare mode talks
to the reference server in test_bench_agents.py (raw bytes, no auth, no store).
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
from pathlib import Path

import grpc
from grpc import aio
from spimeforge.v1 import common_pb2, nodes_pb2, nodes_pb2_grpc

STREAMS_PER_CHANNEL = 100
PRINTER = nodes_pb2.PrinterState(
    printer_id="p1", model="Prusa MK3S", build_volume_mm=common_pb2.Vector3(x=250, y=210, z=210),
    nozzle_diameter_mm=0.4, materials=["PLA"], phase=nodes_pb2.PRINTER_PHASE_IDLE, bed_clear=True, accepting=True,
    rate_per_hour=common_pb2.Money(currency="EUR", minor_units=300),
    rate_per_gram=common_pb2.Money(currency="EUR", minor_units=5), slicer_profile="prusa_mk3s",
)
BARE_METHOD = "/bench.Bare/Session"


def emit(doc: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


class Swarm:
    def __init__(self, target: str, mode: str, agents: list[tuple[str, str]]) -> None:
        self.target, self.mode, self.agents = target, mode, agents
        self.channels: list[aio.Channel] = []
        self.ready: set[str] = set()
        self.generation = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.back_ns: list[int] = []  # per agent: from the drop (or start) to its Welcome
        self.dropped_ns = time.monotonic_ns()

    def _channel(self, index: int) -> aio.Channel:
        slot = index // STREAMS_PER_CHANNEL
        while len(self.channels) <= slot:
            self.channels.append(aio.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)]))
        return self.channels[slot]

    async def run_agent(self, index: int, generation: int) -> None:
        name, token = self.agents[index]
        attempt = 0
        while generation == self.generation:
            try:
                await self._session(index, name, token, generation)
                return
            except (grpc.RpcError, aio.AioRpcError) as exc:
                if generation != self.generation:
                    return
                code = exc.code() if isinstance(exc, aio.AioRpcError) else None
                emit({"error": str(code), "details": str(exc.details() if isinstance(exc, aio.AioRpcError) else exc)[:160]})
                self.ready.discard(name)
                await asyncio.sleep(random.uniform(0, min(60.0, 1.0 * 2**attempt)))
                attempt += 1

    async def _session(self, index: int, name: str, token: str, generation: int) -> None:
        channel = self._channel(index)
        if self.mode == "bare":
            call = channel.stream_stream(BARE_METHOD)()
            await call.write(name.encode())
            async for message in call:
                await self._on_bare(name, message, generation)
            return
        stub = nodes_pb2_grpc.NodesStub(channel)
        call = stub.Session(metadata=(("authorization", f"Bearer {token}"),))
        await call.write(nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(agent_id=name, agent_version="swarm",
                                                                  printers=[PRINTER])))
        beat: asyncio.Task[None] | None = None
        try:
            async for message in call:
                if message.WhichOneof("kind") == "welcome" and beat is None:
                    beat = asyncio.create_task(self._heartbeats(call, message.welcome.heartbeat_interval_s or 15))
                await self._on_hub(name, call, message, generation)
        finally:
            if beat is not None:
                beat.cancel()

    async def _heartbeats(self, call: aio.StreamStreamCall, interval_s: float) -> None:
        """Like a real agent: a heartbeat with the printer states every interval (first one jittered)."""
        await asyncio.sleep(random.uniform(0, interval_s))
        while True:
            await call.write(nodes_pb2.AgentMsg(heartbeat=nodes_pb2.Heartbeat(printers=[PRINTER])))
            await asyncio.sleep(interval_s)

    async def _on_bare(self, name: str, message: bytes, generation: int) -> None:
        if message == b"welcome":
            self._mark_ready(name, generation)
        else:
            emit({"offer": message.decode(), "t_ns": time.monotonic_ns()})

    async def _on_hub(self, name: str, call: aio.StreamStreamCall, message: nodes_pb2.HubMsg, generation: int) -> None:
        kind = message.WhichOneof("kind")
        if kind == "welcome":
            self._mark_ready(name, generation)
        elif kind == "offer":
            emit({"offer": message.offer.job_id, "t_ns": time.monotonic_ns()})
            await call.write(nodes_pb2.AgentMsg(offer_reply=nodes_pb2.OfferReply(
                offer_id=message.offer.offer_id, accept=True)))
        if message.hub_seq:
            await call.write(nodes_pb2.AgentMsg(ack=nodes_pb2.CommandAck(hub_seq=message.hub_seq)))

    def _mark_ready(self, name: str, generation: int) -> None:
        if name not in self.ready:
            self.back_ns.append(time.monotonic_ns() - self.dropped_ns)
        self.ready.add(name)
        if len(self.ready) == len(self.agents):
            key = "connected" if generation == 0 else "reconnected"
            done = sorted(self.back_ns)
            emit({key: len(self.ready), "t_ns": time.monotonic_ns(),
                  "back_ms": [round(done[int(q * (len(done) - 1))] / 1e6) for q in (0.1, 0.5, 0.9, 0.99)]})

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.run_agent(i, self.generation)) for i in range(len(self.agents))]

    async def drop_all(self) -> None:
        """Every stream and channel closed at once, then every agent reconnects."""
        self.generation += 1
        self.ready.clear()
        self.back_ns, self.dropped_ns = [], time.monotonic_ns()
        emit({"dropped": len(self.agents), "t_ns": time.monotonic_ns()})
        for task in self.tasks:
            task.cancel()
        channels, self.channels = self.channels, []
        await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
        self.start()


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
