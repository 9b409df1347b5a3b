"""``spime-node run`` as a real process, and the operator commands that talk to it over
the control socket (status, bed-clear, printer, outcome), with a simulated printer on a
pty. The hub address points at a closed port: the daemon keeps retrying and says so."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_agent.cli import render_status
from node_agent.testing import FirmwareOptions, SimulatedPrinterProcess

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"}


def spime_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node_agent", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False, env=ENV)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, port: str, token: str | None = "node-secret") -> Path:
    token_line = f'token = "{token}"' if token else ""
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
name = "test-node"
hub = "127.0.0.1:{closed_port()}"
state_dir = "state"
heartbeat_s = 1
{token_line}

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
""", encoding="utf-8")
    return path


def poll(what: str, check: Any, deadline_s: float = 60) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's Type=notify socket
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    with SimulatedPrinterProcess(FirmwareOptions()) as printer, notify:
        config = write_config(tmp_path, printer.port)
        metrics = f"127.0.0.1:{closed_port()}"
        (tmp_path / "metrics").write_text(metrics)
        proc = subprocess.Popen([sys.executable, "-m", "node_agent", "run", "--config",
                                 str(config), "--metrics-listen", metrics], cwd=ROOT, text=True,
                                env={**ENV, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            ready = notify.recv(4096).decode()
            assert "READY=1" in ready and "STATUS=1/1 printers connected" in ready, ready
            poll("the daemon's control socket", lambda: spime_node(
                "status", "--config", str(config)).returncode == 0 or proc.poll() is not None)
            assert proc.poll() is None, proc.communicate()[1]
            yield config, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def status(config: Path) -> dict[str, Any]:
    done = spime_node("status", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_operator_commands_reach_the_running_daemon(daemon: tuple[Path, Any]) -> None:
    config, proc = daemon
    socket_path = config.parent / "state" / "control.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    first = poll("the printer connected", lambda: (s := status(config))["printers"][0]["connected"]
                 and s)
    assert first["node"] == "test-node" and first["online"] is False and first["jobs"] == []
    assert first["printers"][0]["phase"] == "idle" and first["printers"][0]["bed_clear"] is True
    address = (config.parent / "metrics").read_text()
    scrape = poll("metrics", lambda: 'state="idle"} 1.0' in (
        text := urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode())
        and text)
    assert 'spime_node_printer_state{printer="mk3",state="idle"} 1.0' in scrape

    done = spime_node("printer", "mk3", "maintenance", "--config", str(config))
    assert done.returncode == 0, done.stderr
    mk3 = status(config)["printers"][0]
    assert (mk3["mode"], mk3["phase"]) == ("maintenance", "maintenance")

    human = spime_node("status", "--config", str(config))
    assert "node test-node: hub 127.0.0.1:" in human.stdout and "not connected" in human.stdout
    assert "mk3 (Prusa MK3S): maintenance, maintenance, bed clear" in human.stdout

    refused = [
        (("bed-clear", "nope"), "no printer 'nope' (configured: mk3)"),
        (("outcome", "job-x", "success"), "this node holds no job job-x"),
    ]
    for args, message in refused:
        done = spime_node(*args, "--config", str(config))
        assert done.returncode == 1 and message in done.stderr, done.stderr
    assert spime_node("bed-clear", "mk3", "--config", str(config)).returncode == 0

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "hub unreachable" in err and not socket_path.exists()


def test_commands_without_a_daemon_say_how_to_start_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, "/dev/null")
    done = spime_node("status", "--config", str(config))
    assert done.returncode == 1 and done.stdout == ""
    assert "no spime-node daemon is running" in done.stderr
    assert f"spime-node run --config {config}" in done.stderr


def test_run_without_a_credential_says_to_enroll(tmp_path: Path) -> None:
    config = write_config(tmp_path, "/dev/null", token=None)
    done = spime_node("run", "--config", str(config))
    assert done.returncode == 1
    assert "no node credential; enroll first: spime-node enroll" in done.stderr


def test_status_says_why_the_hub_drains_the_node() -> None:
    status = {"node": "lab-1", "hub": "hub.example:7443", "online": True, "draining": True, "outbox": 0,
              "drained_by_hub": "new nozzle, calibrating", "printers": [], "jobs": []}
    first = render_status(status).splitlines()[0]
    assert first == ("node lab-1: hub hub.example:7443 connected, drained by the hub (new nozzle, calibrating), "
                     "0 report(s) not yet acknowledged")
    assert ", draining," in render_status({**status, "drained_by_hub": ""})  # shutting down: waits for its prints


def test_the_credential_file_is_read_as_a_secret(tmp_path: Path) -> None:
    """The node's one secret is read like its config and TLS files (a small regular file, never
    blocking on a FIFO nor reading /dev/zero for ever) and, like the hub's key, only when its owner
    alone may read it (`spime-node enroll` writes it 0600)."""
    from node_agent.config import load_config
    from node_agent.daemon import DaemonError, read_credential
    config = load_config(write_config(tmp_path, "/dev/null", token=None))
    path = config.node.credential_path
    path.parent.mkdir()
    path.write_text("spf_" + "x" * 5000 + "\n", encoding="ascii")
    path.chmod(0o600)
    with pytest.raises(DaemonError, match="over 4096 bytes: not a node credential"):
        read_credential(config)
    path.write_text("spf_secret\n", encoding="ascii")
    for mode in (0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(DaemonError, match="open to its group or others: chmod 600 it"):
            read_credential(config)
    path.chmod(0o600)
    assert read_credential(config) == "spf_secret"
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(DaemonError, match="not a regular file"):
        read_credential(config)
    path.unlink()
    os.mkfifo(path, 0o600)
    with pytest.raises(DaemonError, match="not a regular file"):
        read_credential(config)


def test_the_daemon_renders_through_a_render_cache_in_its_state_dir(tmp_path: Path) -> None:
    from node_agent.config import parse_config
    from node_agent.daemon import _pipeline

    config = parse_config({"node": {"name": "n", "hub": "127.0.0.1:1", "state_dir": "state"}},
                          str(tmp_path / "node.toml"))
    settings = _pipeline(config)
    assert settings.renders is not None and settings.renders.root == tmp_path / "state" / "render-cache"
