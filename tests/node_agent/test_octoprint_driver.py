"""OctoPrintDriver against a real OctoPrint server (tests/fixtures/octoprint_server.py).

The behaviour every driver shares is in tests/contract/test_printer_driver.py;
these are the OctoPrint-specific failure modes and the push-socket check.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import octoprint_client
import pytest

from node_agent.drivers.base import (
    AuthenticationFailed,
    ConnectionFailed,
    JobRejected,
    PrinterNotReady,
    PrinterPhase,
    PrinterStatus,
    PrintOutcome,
    PrintResult,
)
from node_agent.drivers.octoprint import OctoPrintDriver
from tests.fixtures.octoprint_server import (
    OctoPrintServer,
    free_port,
    start_octoprint,
    stop_octoprint,
)
from tests.node_agent.jobfiles import print_lines, safe_job


def _driver(server: OctoPrintServer, **kwargs: Any) -> OctoPrintDriver:
    kwargs.setdefault("api_key", server.api_key)
    return OctoPrintDriver("mk3", server.url, port="VIRTUAL", baud=115200, **kwargs)


def _job(n: int) -> list[str]:
    # tiny absolute moves at a high feed rate: the virtual printer's motion model
    # then costs nothing, so the test time is OctoPrint's streaming time
    return ["G90", "M82"] + [f"G1 X{(i % 2) * 0.1:.1f} E{i * 0.001:.3f} F60000" for i in range(n)]


def _wait_state(server: OctoPrintServer, prefix: str | tuple[str, ...],
                deadline_s: float = 15) -> str:
    deadline = time.monotonic() + deadline_s
    state = ""
    while time.monotonic() < deadline:
        state = server.request("GET", "/api/connection").json()["current"]["state"]
        if state.startswith(prefix):
            return state
        time.sleep(0.05)  # polling a condition with a deadline
    raise AssertionError(f"OctoPrint state stayed {state!r}, expected {prefix!r}")


def test_wrong_api_key_is_authentication_failed(octoprint_offline: OctoPrintServer) -> None:
    async def scenario() -> None:
        driver = _driver(octoprint_offline, api_key="not-the-key")
        with pytest.raises(AuthenticationFailed, match="refused the API key"):
            await driver.connect()
        await driver.close()

    asyncio.run(scenario())


def test_unreachable_server_is_connection_failed_quickly() -> None:
    async def scenario() -> None:
        driver = OctoPrintDriver("mk3", f"http://127.0.0.1:{free_port()}", "k", port="VIRTUAL")
        with pytest.raises(ConnectionFailed, match="unreachable") as info:
            await driver.connect()
        assert info.value.retryable
        await driver.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("url", ["127.0.0.1:5000", "ftp://host/", "http://"])
def test_malformed_url_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ValueError, match="must look like http://host:port"):
        OctoPrintDriver("mk3", url, "k")


def test_printer_in_error_state_is_not_ready_with_reason(
    octoprint_offline: OctoPrintServer,
) -> None:
    server = octoprint_offline
    server.request("POST", "/api/connection",
                   json={"command": "connect", "port": "VIRTUAL", "baudrate": 115200})
    _wait_state(server, "Operational")
    server.request("POST", "/api/printer/command",
                   json={"command": "!!DEBUG:trigger_fatal_error_marlin"})
    _wait_state(server, ("Offline after error", "Error", "Closed"))

    async def scenario() -> None:
        driver = _driver(server)
        try:
            with pytest.raises(PrinterNotReady, match="kill\\(\\) called") as info:
                await driver.connect()
            assert "error state" in str(info.value)
            assert driver.status().phase is PrinterPhase.ERROR
            with pytest.raises(PrinterNotReady):
                await print_lines(driver, "after-error", _job(5))
        finally:
            await driver.close()

    asyncio.run(scenario())


class _CountingClient(octoprint_client.Client):  # type: ignore[misc]
    """The real client, counting the HTTP requests the driver makes (instrumentation only)."""

    def __init__(self, baseurl: str, apikey: str) -> None:
        super().__init__(baseurl, apikey)
        self.calls: list[tuple[str, str]] = []

    def prepare_request(self, method: Any = None, path: Any = None, params: Any = None) -> Any:
        # Every request is prepared here once (the streamed upload prepares its own).
        self.calls.append((method, path))
        return super().prepare_request(method, path, params)


def test_progress_arrives_on_the_push_socket_without_polling(
    octoprint_offline: OctoPrintServer,
) -> None:
    async def scenario() -> None:
        driver = _driver(octoprint_offline)
        client = _CountingClient(octoprint_offline.url, octoprint_offline.api_key)
        driver._client = client  # same class, same server: only counts requests
        seen: list[int] = []

        async def watch() -> None:
            async for status in driver.updates():
                if status.phase is PrinterPhase.PRINTING:
                    seen.append(status.lines_sent)

        try:
            await driver.connect()
            watcher = asyncio.create_task(watch())
            client.calls.clear()
            result = await print_lines(driver, "push", _job(4000))
            watcher.cancel()
        finally:
            await driver.close()
        assert result.outcome is PrintOutcome.COMPLETED
        assert result.lines_sent == 4002
        partial = [n for n in seen if 0 < n < 4002]
        assert partial, f"no intermediate progress pushed: {seen}"
        assert partial == sorted(partial)
        # upload, select+print, delete: nothing that asks for state or progress
        assert [m for m, _ in client.calls] == ["POST", "POST", "DELETE"], client.calls

    asyncio.run(scenario())


def test_emergency_stop_halts_the_printer(octoprint_offline: OctoPrintServer) -> None:
    async def scenario() -> None:
        driver = _driver(octoprint_offline)
        try:
            await driver.connect()
            job = asyncio.create_task(print_lines(driver, "estop", _job(20000)))
            deadline = time.monotonic() + 15
            while driver.status().lines_sent < 100 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # polling a condition with a deadline
            await driver.emergency_stop()
            result = await asyncio.wait_for(job, 20)
        finally:
            await driver.close()
        assert result.outcome is PrintOutcome.FAILED
        assert result.lines_sent < 20002
        assert "M112" in (result.reason or "")

    asyncio.run(scenario())


def test_a_file_changed_after_its_check_is_not_printed(
    octoprint_offline: OctoPrintServer, tmp_path: Path,
) -> None:
    job = safe_job("tampered", _job(50), directory=tmp_path)
    path = Path(job.path)
    st = path.stat()
    text = path.read_text(encoding="ascii").replace("G1 X0.1 E0.011 F60000",
                                                    "M502".ljust(21), 1)
    path.write_text(text, encoding="ascii")  # same size, same mtime: only the hash tells
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    async def scenario() -> None:
        driver = _driver(octoprint_offline)
        try:
            await driver.connect()
            with pytest.raises(JobRejected, match="changed after the safety check"):
                await driver.print_job(job)
            assert driver.status().phase is PrinterPhase.IDLE
        finally:
            await driver.close()

    asyncio.run(scenario())
    files = octoprint_offline.request("GET", "/api/files/local").json()["files"]
    assert not [f for f in files if f["name"].startswith("tampered")], files


def test_file_position_maps_to_command_lines_and_layers(tmp_path: Path) -> None:
    from node_agent.drivers.octoprint import _JobIndex

    lines = ["; header", "G90", "", ";LAYER:0", "G1 X1", "G1 X2 ; move", ";LAYER:1", "G1 X3"]
    index = _JobIndex(safe_job("index", lines, tmp_path))
    ends = [sum(len(x) + 1 for x in lines[: i + 1]) for i in range(len(lines))]
    assert index.size == ends[-1]
    assert index.lines_done(0) == 0
    assert index.lines_done(ends[1]) == 1  # "G90" fully read
    assert index.lines_done(ends[5] - 1) == 2  # "G1 X2" not complete yet
    assert index.lines_done(index.size) == 4
    assert index.layer_at(ends[2]) is None
    assert index.layer_at(ends[4]) == 0
    assert index.layer_at(index.size) == 1


@pytest.mark.parametrize(
    ("text", "flags", "phase"),
    [
        ("Operational", {"operational": True, "ready": True}, PrinterPhase.IDLE),
        ("Printing", {"operational": True, "printing": True}, PrinterPhase.PRINTING),
        ("Pausing", {"operational": True, "pausing": True}, PrinterPhase.PAUSED),
        ("Paused", {"operational": True, "paused": True}, PrinterPhase.PAUSED),
        ("Cancelling", {"operational": True, "cancelling": True}, PrinterPhase.CANCELLING),
        ("Offline after error", {"closedOrError": True, "error": True}, PrinterPhase.ERROR),
        ("Error: Printer halted", {"closedOrError": True}, PrinterPhase.ERROR),
        ("Offline", {"closedOrError": True}, PrinterPhase.DISCONNECTED),
        ("Opening serial connection", {}, PrinterPhase.CONNECTING),
    ],
)
def test_octoprint_states_map_onto_printer_phases(
    text: str, flags: dict[str, bool], phase: PrinterPhase
) -> None:
    from node_agent.drivers.octoprint_push import phase_from_state

    assert phase_from_state({"text": text, "flags": flags}) is phase


def test_unknown_serial_port_is_not_ready_and_names_the_port(
    octoprint_offline: OctoPrintServer,
) -> None:
    async def scenario() -> None:
        driver = OctoPrintDriver("mk3", octoprint_offline.url, octoprint_offline.api_key,
                                 port="/dev/ttyNOPE", baud=115200)
        try:
            with pytest.raises(PrinterNotReady, match="/dev/ttyNOPE"):
                await driver.connect()
        finally:
            await driver.close()

    asyncio.run(scenario())


def test_server_going_away_fails_the_job_as_retryable(tmp_path: Path) -> None:
    server, proc = start_octoprint(tmp_path / "octoprint")

    async def scenario() -> tuple[PrintResult, PrinterStatus]:
        driver = _driver(server)
        try:
            await driver.connect()
            job = asyncio.create_task(print_lines(driver, "doomed", _job(200000)))
            await _until(lambda: driver.status().lines_sent > 100)
            await asyncio.to_thread(stop_octoprint, proc)
            result = await asyncio.wait_for(job, 30)
            status = driver.status()
            with pytest.raises(ConnectionFailed, match="unreachable"):
                await driver.connect()
            return result, status
        finally:
            await driver.close()

    try:
        result, status = asyncio.run(scenario())
    finally:
        stop_octoprint(proc)
    assert result.outcome is PrintOutcome.FAILED
    assert result.retryable
    assert "push socket" in (result.reason or "")
    assert 100 < result.lines_sent < 200002
    assert status.phase is PrinterPhase.DISCONNECTED


async def _until(cond: Any, deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)  # polling the driver's status with a deadline


def test_spime_node_print_streams_through_octoprint_from_the_node_config(
    octoprint_offline: OctoPrintServer, tmp_path: Path
) -> None:
    """The operator's test print, ``spime-node print --printer``, on an OctoPrint printer."""
    config = tmp_path / "node.toml"
    config.write_text(f"""
[node]
name = "lab"
hub = "127.0.0.1:7443"

[[printers]]
name = "octo"
driver = "octoprint"
url = "{octoprint_offline.url}"
api_key = "{octoprint_offline.api_key}"
port = "VIRTUAL"
baud = 115200
model = "Virtual"
build_volume_mm = [200, 200, 200]
nozzle_mm = 0.4
materials = ["PLA"]
max_hotend_c = 260
max_bed_c = 100
slicer_profile = "generic"
""")
    gcode = tmp_path / "cube.gcode"
    gcode.write_text("; test print\n" + "\n".join(_job(500)) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "node_agent", "print", str(gcode), "--printer", "octo",
         "--config", str(config), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["outcome"] == "completed", summary
    assert summary["lines_sent"] == 502
