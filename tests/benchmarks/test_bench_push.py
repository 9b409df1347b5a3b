"""Benchmark: push a 200 MB design to a local hub against a raw loopback TCP copy.

Prints, all measured in this run:
* push throughput vs. copying the same bytes through a raw 127.0.0.1 socket
  (receiver writes to disk, like the hub), ratio target >= 50 %;
* the same push vs. a second reference doing the work a verified push cannot
  skip: the raw copy with the receiver hashing (SHA-256) every byte and
  fsyncing, as the hub does (the client's own hashing pass is not in it);
* the same push vs. the tool a user would pick instead: rsync to an rsync daemon on
  127.0.0.1 (``rsync -a --fsync``: rsync fsyncs every file it receives, so both end with the
  data on disk), target push >= rsync; with the CPU seconds each spent (rsync: client and
  daemon; push: the CLI process and the hub), since on a shared machine the one needing
  less CPU gets ahead. rsync checks a fast non-cryptographic checksum; a push hashes every
  byte with SHA-256 twice (the client to name the blob, the hub to verify it). rsync and the
  cold push are measured ROUNDS times, in turn (each push to a new hub), and the medians are
  printed with the median of each round's ratio: one run each swung the ratio by tens of
  percent on a shared machine. The timed push runs the CLI's ``main`` in this process, whose
  imports are done; rsync is timed as a new process. So the push is timed once more as a user
  runs it, ``spime`` as a new process (interpreter start and imports included), like rsync;
* an unchanged re-push: wall time (target < 1 s) and blob bytes sent (target 0);
* the hub's peak RSS (VmHWM of the hub subprocess) while receiving, target < 150 MB,
  in the timed push and again for pushes with four parallel streams while two
  CPU-burning processes, or two processes writing and fsyncing files, load the machine.

The timed push is cold: no hash cache exists in the design folder.

Run with ``bash ops/bench.sh -k push``. Only the exact facts (zero bytes on an
unchanged re-push, every blob stored) are asserted; timings are printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np
import trimesh

from hub.client.cli import main
from hub.client.commands.push import upload_missing
from hub.client.connection import opened
from hub.client.embedded import EmbeddedHub
from hub.client.local import scan_design_dir
from hub.client.statcache import CACHE_PATH

TOTAL_MB = 200
FILES = 4
ROUNDS = 3


def _binary_stl(path: Path, triangles: np.ndarray) -> None:
    """Write (n, 3, 3) float32 triangles as a binary STL."""
    n = len(triangles)
    rec = np.zeros(n, dtype=[("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["v"] = triangles
    with path.open("wb") as fh:
        fh.write(b"spimeforge benchmark tiled sphere".ljust(80, b" "))
        fh.write(np.uint32(n).tobytes())
        fh.write(rec.tobytes())


def make_design(folder: Path) -> int:
    """A design of FILES binary STLs of tiled subdivided spheres totalling TOTAL_MB."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=5.0)
    tri = sphere.triangles.astype(np.float32)
    per_file = TOTAL_MB * 1_000_000 // FILES
    copies = per_file // (len(tri) * 50)
    folder.mkdir(parents=True)
    names = []
    for i in range(FILES):
        offsets = np.stack(np.meshgrid(np.arange(copies), [i], [0]), -1).reshape(-1, 1, 1, 3)
        tiles = (tri[None] + offsets.astype(np.float32) * 11.0).reshape(-1, 3, 3)
        name = f"tile-{i}.stl"
        _binary_stl(folder / name, tiles)
        names.append(name)
    parts = "".join(f'\n[[parts]]\nname = "tile-{i}"\nfiles = ["{n}"]\nmaterial = "PLA"\n'
                    for i, n in enumerate(names))
    (folder / "spime.toml").write_text(
        'name = "bench-tiles"\ntitle = "Benchmark tiles"\nlicense = "CC0-1.0"\n'
        'licensor = "bench"\nversion = "1.0.0"\nfunction = "Benchmark."\n' + parts)
    return sum((folder / n).stat().st_size for n in names)


def raw_socket_copy(files: list[Path], sink: Path, fsync: bool = False,
                    verify: bool = False) -> float:
    """Seconds to send the files' bytes over loopback TCP to a receiver writing to disk.

    With ``fsync`` the receiver also flushes to the device at the end, as the hub
    does; with ``verify`` it also computes the SHA-256 of every file it receives
    (one receiver per file, in parallel, like the hub's per-blob writer threads).
    """
    server = socket.create_server(("127.0.0.1", 0), backlog=len(files))
    port = server.getsockname()[1]
    received: list[int] = []

    def receive(index: int) -> None:
        conn, _ = server.accept()
        digest = hashlib.sha256()
        with conn, (sink.parent / f"{sink.name}.{index}").open("wb") as out:
            while data := conn.recv(1 << 20):
                out.write(data)
                if verify:
                    digest.update(data)
                received.append(len(data))
            if fsync:
                out.flush()
                os.fsync(out.fileno())

    streams = len(files) if verify else 1
    threads = [threading.Thread(target=receive, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    senders = [threading.Thread(target=_send, args=(port, part))
               for part in ([[f] for f in files] if verify else [files])]
    for t in senders:
        t.start()
    for t in senders + threads:
        t.join()
    elapsed = time.perf_counter() - start
    server.close()
    for leftover in sink.parent.glob(sink.name + ".*"):
        leftover.unlink()
    assert sum(received) == sum(f.stat().st_size for f in files)
    return elapsed


def _send(port: int, files: list[Path]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        for f in files:
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    s.sendall(chunk)


def rsync_daemon_copy(files: list[Path], work: Path) -> tuple[float, float]:
    """Seconds to rsync the files into an empty module of an rsync daemon on 127.0.0.1, fsynced,
    and the CPU seconds the rsync client and daemon used."""
    dest, conf = work / "rsync-dest", work / "rsyncd.conf"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    port = _free_port()
    conf.write_text(f"use chroot = no\nlog file = {work / 'rsyncd.log'}\npid file = {work / 'rsyncd.pid'}\n"
                    f"[bench]\npath = {dest}\nread only = no\nuid = {os.getuid()}\ngid = {os.getgid()}\n")
    cpu_before = _children_cpu()
    daemon = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}", "--address=127.0.0.1",
                               f"--port={port}"])
    try:
        _wait_port(port)
        start = time.perf_counter()
        subprocess.run(["rsync", "-a", "--fsync", *map(str, files), f"rsync://127.0.0.1:{port}/bench/"],
                       check=True)
        elapsed = time.perf_counter() - start
    finally:
        daemon.terminate()
        daemon.wait()
    assert sum(f.stat().st_size for f in dest.iterdir()) == sum(f.stat().st_size for f in files)
    shutil.rmtree(dest)
    return elapsed, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the rsync daemon did not start"
            time.sleep(0.05)


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a process (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def push(hub: EmbeddedHub, folder: Path, *extra: str) -> tuple[float, dict[str, object]]:
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["push", str(folder), "--json", "--no-progress", "--hub", hub.address,
                     "--token", hub.tokens["bench"], *extra])
    elapsed = time.perf_counter() - start
    assert code == 0, hub.log_tail()
    return elapsed, json.loads(out.getvalue())


def spime_command() -> list[str]:
    """argv prefix that runs the ``spime`` console script of this installation."""
    beside = Path(sys.executable).with_name("spime")
    script = "import sys; from hub.client.cli import main; sys.exit(main())"
    return [str(beside)] if beside.exists() else [sys.executable, "-c", script]


def process_push_s(hub: EmbeddedHub, folder: Path) -> float:
    """Seconds from starting ``spime push --new`` as a new process to its exit (as rsync is timed)."""
    start = time.perf_counter()
    proc = subprocess.run([*spime_command(), "push", str(folder), "--json", "--no-progress", "--new",
                           "--hub", hub.address, "--token", hub.tokens["bench"]],
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr + hub.log_tail()
    assert json.loads(proc.stdout)["bytes_uploaded"] == sum(f.stat().st_size for f in folder.glob("*.stl"))
    return elapsed


@dataclass
class ColdPush:
    """One cold push to a new hub: seconds, CPU seconds of the CLI (this process) and the hub,
    the hub's VmHWM idle and after receiving (MB), and the unchanged re-push after it."""

    seconds: float
    cpu_cli: float
    cpu_hub: float
    idle_mb: float
    peak_mb: float
    repush_s: float
    first: dict[str, object]
    second: dict[str, object]


@contextlib.contextmanager
def new_hub(data: Path) -> Iterator[EmbeddedHub]:
    """A started hub with a ``bench`` designer on an empty data directory."""
    hub = EmbeddedHub(data=data)
    hub.data.mkdir()
    hub.add_user("bench", "designer")
    hub.start()
    try:
        assert hub.process is not None
        yield hub
    finally:
        hub.stop()


def cold_push(data: Path, design: Path) -> ColdPush:
    """Push ``design`` with no hash cache to a new hub (in-process CLI), then again unchanged."""
    shutil.rmtree(design / CACHE_PATH.parent, ignore_errors=True)  # a cold push: nothing cached
    with new_hub(data) as hub:
        pid = hub.process.pid  # type: ignore[union-attr]
        idle_mb = vm_hwm_mb(pid)
        cpu_cli, cpu_hub = _self_cpu(), process_cpu_s(pid)
        push_s, first = push(hub, design, "--new")
        cpu_cli, cpu_hub = _self_cpu() - cpu_cli, process_cpu_s(pid) - cpu_hub
        peak_mb = vm_hwm_mb(pid)
        repush_s, second = push(hub, design)
    return ColdPush(push_s, cpu_cli, cpu_hub, idle_mb, peak_mb, repush_s, first, second)


def process_cold_push_s(data: Path, design: Path) -> float:
    """process_push_s of ``design`` with no hash cache to a new hub."""
    shutil.rmtree(design / CACHE_PATH.parent, ignore_errors=True)
    with new_hub(data) as hub:
        return process_push_s(hub, design)


def paired_rounds(tmp_path: Path, design: Path, files: list[Path]) -> tuple[list[tuple[float, float]],
                                                                              list[ColdPush], list[float]]:
    """ROUNDS of rsync, cold push and cold push as a new process, the order turned every round."""
    rsyncs: list[tuple[float, float]] = []
    pushes: list[ColdPush] = []
    processes: list[float] = []
    steps: list[Callable[[], None]] = [
             lambda: rsyncs.append(rsync_daemon_copy(files, tmp_path)),
             lambda: pushes.append(cold_push(tmp_path / f"hub-push-{len(pushes)}", design)),
             lambda: processes.append(process_cold_push_s(tmp_path / f"hub-cli-{len(processes)}", design))]
    for index in range(ROUNDS):
        for step in steps if index % 2 == 0 else steps[::-1]:
            step()
    return rsyncs, pushes, processes


# Background load: busy loops, or writers that keep the disk busy with fsynced 64 MB files.
LOADS = {
    "2 CPU burners": "while True: pass",
    "2 fsyncing disk writers": ("import os, sys\nb = os.urandom(8 << 20)\nwhile True:\n"
                                " with open(sys.argv[1], 'wb') as f:\n"
                                "  for _ in range(8): f.write(b)\n"
                                "  f.flush(); os.fsync(f.fileno())\n"),
}


def loaded_push_hwm(tmp_path: Path, design: Path, load: str, streams: int = 4) -> float:
    """Hub VmHWM (MB) after receiving the design over ``streams`` streams beside a load."""
    _, _, files = scan_design_dir(design)
    data = tmp_path / f"hub-{len(list(tmp_path.glob('hub-*')))}"
    hub = EmbeddedHub(data=data)
    hub.data.mkdir()
    hub.add_user("bench", "designer")
    hub.start()
    burn = [subprocess.Popen([sys.executable, "-c", LOADS[load], str(data / f"load-{i}")])
            for i in range(2)]
    try:
        assert hub.process is not None
        args = type("Args", (), {"hub": hub.address, "token": hub.tokens["bench"], "ca": None})()
        with opened(args) as conn:
            assert upload_missing(conn, files, progress=False, streams=streams)[0] == len(files)
        return vm_hwm_mb(hub.process.pid)
    finally:
        for p in burn:
            p.kill()
            p.wait()
        hub.stop()


def test_bench_push_200mb(tmp_path: Path) -> None:
    design = tmp_path / "design"
    size = make_design(design)
    files = sorted(design.glob("*.stl"))
    mb = size / 1e6

    raw_s = raw_socket_copy(files, tmp_path / "sink.bin")
    raw_fsync_s = raw_socket_copy(files, tmp_path / "sink.bin", fsync=True)
    raw_work_s = raw_socket_copy(files, tmp_path / "sink.bin", fsync=True, verify=True)
    start = time.perf_counter()
    scan_design_dir(design)
    hash_s = time.perf_counter() - start
    rsyncs, pushes, processes = paired_rounds(tmp_path, design, files)
    loaded_mb = {load: loaded_push_hwm(tmp_path, design, load) for load in LOADS}

    rsync_s, rsync_cpu_s = median(r[0] for r in rsyncs), median(r[1] for r in rsyncs)
    push_s, process_s = median(p.seconds for p in pushes), median(processes)
    raw_mbps, push_mbps, work_mbps = mb / raw_s, mb / push_s, mb / raw_work_s
    print(f"\n== push benchmark ({mb:.1f} MB in {len(files)} binary STL files; "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"raw loopback TCP copy (reference): {raw_s:6.2f} s  {raw_mbps:8.1f} MB/s")
    print(f"raw loopback TCP copy + fsync (context, the hub fsyncs every blob): "
          f"{raw_fsync_s:6.2f} s  {mb / raw_fsync_s:8.1f} MB/s")
    print(f"raw loopback TCP copy + receiver SHA-256 + fsync, one connection and receiver "
          f"thread per file (second reference: the hub's unavoidable work): "
          f"{raw_work_s:6.2f} s  {work_mbps:8.1f} MB/s")
    print(f"client-side SHA-256 of the design alone (part of a cold push): {hash_s:6.2f} s")
    print(f"median of {ROUNDS} rounds, rsync and pushes in turn:")
    print(f"rsync -a --fsync to an rsync daemon on 127.0.0.1 (the user's alternative, a new process): "
          f"{rsync_s:6.2f} s  {mb / rsync_s:8.1f} MB/s  (rounds: {_list(r[0] for r in rsyncs)})")
    print(f"spime push, cold (hash + MissingBlobs + upload + Push, in-process CLI): "
          f"{push_s:6.2f} s  {push_mbps:8.1f} MB/s  (rounds: {_list(p.seconds for p in pushes)})")
    print(f"spime push, cold, as a new process (interpreter start and imports included, as for rsync): "
          f"{process_s:6.2f} s  {mb / process_s:8.1f} MB/s  (rounds: {_list(processes)})")
    print(f"push / raw throughput ratio: {push_mbps / raw_mbps:6.1%} (target >= 50 %); "
          f"push / raw+fsync: {push_mbps / (mb / raw_fsync_s):6.1%}; "
          f"push / raw+SHA-256+fsync: {push_mbps / work_mbps:6.1%}")
    print(f"push / rsync throughput ratio: {median(r[0] / p.seconds for r, p in zip(rsyncs, pushes)):6.1%} "
          f"(target >= 100 %; median of the rounds' ratios); as a new process: "
          f"{median(r[0] / s for r, s in zip(rsyncs, processes)):6.1%}")
    print(f"CPU seconds: rsync {rsync_cpu_s:.2f} (client + daemon); push {median(p.cpu_cli + p.cpu_hub for p in pushes):.2f} "
          f"(CLI {median(p.cpu_cli for p in pushes):.2f}, hub {median(p.cpu_hub for p in pushes):.2f})")
    repush_s, second = median(p.repush_s for p in pushes), pushes[0].second
    print(f"unchanged re-push: {repush_s:.3f} s (target < 1 s), "
          f"{second['bytes_uploaded']} blob bytes sent (target 0), unchanged={second['unchanged']}")
    print(f"hub VmHWM: {median(p.idle_mb for p in pushes):.1f} MB idle, {max(p.peak_mb for p in pushes):.1f} MB "
          f"after receiving (the most of the rounds; target < 150 MB)")
    for load, hwm in loaded_mb.items():
        print(f"hub VmHWM after a 4-stream push of the design beside {load}: {hwm:.1f} MB")
    for p in pushes:
        assert p.first["bytes_uploaded"] == size and p.first["blobs_uploaded"] == len(files)
        assert p.second["bytes_uploaded"] == 0 and p.second["unchanged"] is True


def _list(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
