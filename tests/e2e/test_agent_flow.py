"""A design from the commons printed at a makerspace: the real hub (in-process, real gRPC),
`spime-node enroll` and `spime-node run` as real processes, OpenSCAD and PrusaSlicer, and a
simulated Marlin on a pseudo-terminal. Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.jobs import JobSpec
from hub.store import schema
from node_agent.control import NoDaemon, control_path, request
from node_agent.testing import FirmwareOptions, SimulatedPrinterProcess
from tests.fixtures.postgres import create_database
from tests.hub.harness import InProcessHub, start_in_process

ROOT = Path(__file__).resolve().parents[2]
CUBE = ROOT / "designs" / "calibration-cube"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"}
WAIT_S = 120.0


def spime_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node_agent", *args], cwd=ROOT, env=ENV,
                          text=True, capture_output=True, timeout=120, check=False)


def poll(what: str, check: Callable[[], Any], deadline_s: float = WAIT_S) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    url = "" if request.param == "sqlite" else create_database(
        request.getfixturevalue("postgres_server"))
    running = start_in_process(tmp_path / "hub", url)
    try:
        yield running
    finally:
        running.stop()


# The fault test runs on both backends; the happy path (slow: slicing, a whole print) on the
# embedded default only, as the hub's own tests cover its store on both.
hub = pytest.fixture(params=["sqlite"])(_hub)
any_hub = pytest.fixture(params=["sqlite", "postgresql"])(_hub)


def push_cube(hub: InProcessHub) -> str:
    files = {p.name: p.read_bytes() for p in (CUBE / "calibration-cube.stl",
                                               CUBE / "calibration-cube.scad")}
    manifest = (CUBE / "spime.toml").read_text(encoding="utf-8")
    return str(hub.push("alice", "calibration-cube", files, manifest=manifest,
                        create=True).revision_id)


def node_config(tmp_path: Path, address: str, port: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
name = "lab-1"
hub = "{address}"
location = "Testlab"
latitude = 52.5
longitude = 13.4
state_dir = "state"
heartbeat_s = 1

[[printers]]
name = "mk3"
driver = "serial"
port = "{port}"
baud = 250000
model = "Prusa MK3S"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
materials = ["PLA"]
max_hotend_c = 280
max_bed_c = 110
slicer_profile = "prusa_mk3s"
rate_per_hour = 3.0
rate_per_gram = 0.05
currency = "EUR"
""", encoding="utf-8")
    return path


def enroll(tmp_path: Path, hub: InProcessHub, port: str, address: str = "") -> Path:
    _, token, _ = hub.composed.hub.nodes._thd_add_node("lab-1")  # `spime-hub node add lab-1`
    config = node_config(tmp_path, address or hub.address, port)
    done = spime_node("enroll", "--config", str(config), "--token", token, "--json")
    assert done.returncode == 0, done.stderr
    credential = Path(json.loads(done.stdout)["credential"])
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    return config


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "node_agent", "run", "--config",
                                 str(config)], cwd=ROOT, env=ENV, stdout=out, stderr=out)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def homings(config: Path, job_id: str) -> int:
    """How many G28 the job's G-code holds: the firmware sees that many per print."""
    gcode = config.parent / "state" / "jobs" / job_id / "job.gcode"
    return sum(line.startswith("G28") for line in gcode.read_text(encoding="ascii").splitlines())


def status_of(config: Path) -> dict[str, Any]:
    """What `spime-node status --json` prints, asked in-process (polled often; no spawn)."""
    try:
        answer = request(control_path(config.parent / "state"), {"cmd": "status"})
    except (NoDaemon, OSError):
        return {"jobs": [], "printers": [{}]}
    result: dict[str, Any] = answer["result"]
    return result


def local_job(config: Path, job_id: str) -> dict[str, Any]:
    return next((j for j in status_of(config)["jobs"] if j["job"] == job_id), {})


def local_printer(config: Path) -> dict[str, Any]:
    printer: dict[str, Any] = status_of(config)["printers"][0]
    return printer if printer else {"percent": 0}


def job_state(hub: InProcessHub, job_id: str) -> str:
    return str(hub.composed.hub.jobs._thd_get_job(job_id).state.value)


def waiting_for(hub: InProcessHub, job_id: str, states: set[str], log: Path) -> Callable[[], Any]:
    def check() -> Any:
        state = job_state(hub, job_id)
        if state in {"failed", "cancelled"} - states:
            raise AssertionError(f"job {job_id} {state}: {log.read_text(errors='replace')[-3000:]}")
        return state in states and state
    return check


def test_a_job_from_the_hub_is_printed_through_a_partition_and_lands_on_the_record(
        tmp_path: Path, hub: InProcessHub, tcp_proxy_factory: Any) -> None:
    revision = push_cube(hub)
    log = tmp_path / "agent.log"
    proxy = tcp_proxy_factory("127.0.0.1", int(hub.address.rpartition(":")[2]))
    with SimulatedPrinterProcess(FirmwareOptions(move_time_s=0.001)) as printer:
        config = enroll(tmp_path, hub, printer.port, proxy.address)
        agent = start_agent(config, log)
        try:
            job = hub.composed.hub.jobs._thd_create_job(
                JobSpec("calibration-cube", revision, "PLA", {"size": "12"}), "admin")
            poll("the print under way", lambda: local_printer(config)["percent"] > 30)
            proxy.cut()  # the makerspace's link goes down mid-print
            offline = poll("the print to end offline", lambda: (
                st := status_of(config))["jobs"] and st["jobs"][0]["state"] ==
                "finished_awaiting_bed_clear" and st)
            assert offline["online"] is False and offline["outbox"] >= 1
            assert job_state(hub, job.id) in ("printing", "lost_contact")  # not heard yet
            proxy.restore()
            poll("the report after reconnect", waiting_for(hub, job.id, {"printed"}, log))
            done = spime_node("outcome", job.id, "success", "--notes", "sharp corners",
                              "--config", str(config))
            assert done.returncode == 0, done.stderr
            poll("the verdict", waiting_for(hub, job.id, {"done"}, log))
            status = json.loads(spime_node("status", "--json", "--config", str(config)).stdout)
            assert status["online"] is True
            assert status["printers"][0]["bed_clear"] is False  # the part is still on the bed
        finally:
            stop(agent)
    assert agent.returncode == 0, log.read_text(errors="replace")[-3000:]
    with hub.engine.connect() as db:
        rows = db.execute(sa.select(schema.fabrications).where(
            schema.fabrications.c.job_id == job.id)).mappings().all()
    assert len(rows) == 1
    fab = rows[0]
    assert (fab["node"], fab["printer"], fab["printer_model"]) == ("lab-1", "mk3", "Prusa MK3S")
    assert (fab["outcome"], fab["operator_notes"]) == ("success", "sharp corners")
    assert fab["slicer"] == "PrusaSlicer" and fab["slicer_profile"] == "prusa_mk3s"
    assert fab["estimated_seconds"] > 0 and fab["estimated_filament_mm"] > 0
    assert json.loads(fab["parameters"]) == {"size": "12"}
    assert fab["design"] == "calibration-cube" and fab["revision_id"] == revision
    assert printer.stats is not None
    assert sum(c.startswith("G28") for c in printer.stats.accepted) == homings(config, job.id)


def test_an_agent_killed_mid_print_reports_the_job_interrupted_and_never_restarts_it(
        tmp_path: Path, any_hub: InProcessHub) -> None:
    hub = any_hub
    revision = push_cube(hub)
    log = tmp_path / "agent.log"
    # Slow moves: the print is still running when the agent is killed.
    with SimulatedPrinterProcess(FirmwareOptions(move_time_s=0.02)) as printer:
        config = enroll(tmp_path, hub, printer.port)
        agent = start_agent(config, log)
        try:
            job = hub.composed.hub.jobs._thd_create_job(
                JobSpec("calibration-cube", revision, "PLA"), "admin")
            poll("the print to start", waiting_for(hub, job.id, {"printing"}, log))
            # The hub says printing once it granted the start; kill only once the agent's
            # journal says so too and moves are streaming.
            poll("the agent printing", lambda: local_job(config, job.id).get("state") ==
                 "printing" and local_printer(config)["percent"] > 0)
            agent.kill()
            agent.wait(timeout=60)
            poll("the hub to notice", waiting_for(hub, job.id, {"lost_contact", "printing"}, log))
            agent = start_agent(config, log)
            poll("the interruption report", lambda: job_state(hub, job.id) == "failed")
            status = json.loads(poll("status", lambda: (d := spime_node(
                "status", "--json", "--config", str(config))).returncode == 0 and d.stdout))
            assert [j["state"] for j in status["jobs"] if j["job"] == job.id] in ([],
                                                                                  ["interrupted"])
        finally:
            stop(agent)
    assert printer.stats is not None
    # Never restarted: what the firmware got is at most one pass over the job (a restart from
    # the top would home again), and the kill did cut the print short.
    assert 1 <= sum(c.startswith("G28") for c in printer.stats.accepted) <= homings(config, job.id)
    assert not any(c.startswith("M84") for c in printer.stats.accepted)
    got = hub.composed.hub.jobs._thd_get_job(job.id)
    assert "restarted" in got.failure_reason
    with hub.engine.connect() as db:
        rows = db.execute(sa.select(schema.fabrications.c.outcome, schema.fabrications.c.node)
                          .where(schema.fabrications.c.job_id == job.id)).all()
    assert [tuple(r) for r in rows] == [("interrupted", "lab-1")]
