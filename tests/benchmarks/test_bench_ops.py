"""Benchmark: what operations cost, each against a reference measured in the same run.

Prints:
* RPC latency with the Prometheus interceptor vs. the same in-process hub without it
  (WhoAmI round trips, A/B rounds alternated so drift hits both), target ratio <= 1.10;
* `spime-hub backup` of a hub with ~60 MB of blobs vs. `tar cf` of its data directory
  (the raw copy: no snapshot, no hashing), target ratio <= 3;
* `spime check` of the calibration cube (CPU seconds of the whole process) vs. a Python
  that only imports slicer_bridge.printability: the difference is the CLI's own cost.

Run with ``bash ops/bench.sh -k ops``. Nothing is asserted but the exact facts.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from spimeforge.v1 import accounts_pb2

from hub.__main__ import compose
from hub.api.metrics import HubMetrics
from hub.api.server import HubServer
from hub.backup import backup
from hub.config import HubConfig
from tests.hub.harness import USERS, InProcessHub

ROOT = Path(__file__).resolve().parents[2]
CALLS, ROUNDS = 300, 10


def _hub(data: Path, metrics: HubMetrics | None) -> InProcessHub:
    composed = compose(HubConfig(data_dir=data), printability=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[HubServer, int]:
        server = HubServer(composed.hub, metrics)
        return server, await server.start("127.0.0.1:0")

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    hub = InProcessHub(composed, server, loop, thread, f"127.0.0.1:{port}")
    for name, role in USERS.items():
        hub.add_user(name, role)
    hub.channel = grpc.insecure_channel(hub.address)
    return hub


def _round(hub: InProcessHub) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=hub.md("alice"), timeout=10)
    return (time.perf_counter() - started) / CALLS


def test_metrics_interceptor_overhead(tmp_path: Path) -> None:
    with_metrics, without = _hub(tmp_path / "a", HubMetrics()), _hub(tmp_path / "b", None)
    try:
        _round(with_metrics), _round(without)  # warm-up
        ratios, a_times, b_times = [], [], []
        for n in range(ROUNDS):  # which goes first alternates: a loaded machine drifts
            if n % 2:
                b, a = _round(without), _round(with_metrics)
            else:
                a, b = _round(with_metrics), _round(without)
            a_times.append(a)
            b_times.append(b)
            ratios.append(a / b)
    finally:
        with_metrics.stop()
        without.stop()
    print(f"\nWhoAmI latency with metrics {statistics.median(a_times) * 1e6:.0f} us, "
          f"without (reference) {statistics.median(b_times) * 1e6:.0f} us, "
          f"median ratio {statistics.median(ratios):.3f} (target <= 1.10)")


def test_backup_vs_tar(tmp_path: Path) -> None:
    hub = _hub(tmp_path / "data", None)
    try:
        for n in range(6):
            data = os.urandom(10 << 20)
            hub.push("alice", f"big-{n}", {"part.stl": data}, create=True)
        started = time.perf_counter()
        summary = backup(hub.data_dir, "", tmp_path / "hub.tar")
        ours = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(["tar", "cf", str(tmp_path / "raw.tar"), "-C", str(hub.data_dir), "."], check=True)
        raw = time.perf_counter() - started
    finally:
        hub.stop()
    assert summary.blobs == 6
    print(f"\nbackup of {summary.blob_bytes / 1e6:.0f} MB: {ours:.2f} s; tar cf of the data directory "
          f"(reference) {raw:.2f} s; ratio {ours / raw:.2f} (target <= 3)")


def _cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=False, capture_output=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_spime_check_cpu_vs_slicer_import() -> None:
    stl = str(ROOT / "designs" / "calibration-cube" / "calibration-cube.stl")
    spime = str(Path(sys.executable).parent / "spime")
    check, imports = [], []
    for _ in range(5):
        check.append(_cpu([spime, "check", stl]))
        imports.append(_cpu([sys.executable, "-c", "import slicer_bridge.printability"]))
    c, i = statistics.median(check), statistics.median(imports)
    print(f"\nspime check CPU {c:.2f} s; importing slicer_bridge.printability alone (reference) {i:.2f} s; "
          f"ratio {c / i:.2f}; the CLI and the check itself add {c - i:.2f} s")
