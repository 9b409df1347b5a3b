"""OctoPrintDriver against a broken or hostile OctoPrint: every pushed value is type-checked.

A wrong-typed value (a temperature as a string, ``state`` as a string, a payload as a number) or an
absurd one is ignored, never an exception in the event loop and never a wrong type in the status
the worker turns into hub messages. The reading functions are checked directly; the driver and the
whole worker against tests/node_agent/scripted_octoprint.py (a real OctoPrint never sends these).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import requests.adapters

from node_agent import messages as m
from node_agent.busy import BusyLimits
from node_agent.config import NodeConfig, NodeInfo, PrinterConfig
from node_agent.drivers.base import (
    ConnectionFailed,
    PrinterPhase,
    PrinterStatus,
    PrintOutcome,
    Temperatures,
)
from node_agent.drivers.octoprint import OctoPrintDriver, _socket_url
from node_agent.drivers.octoprint_push import phase_from_state, progress, temperatures
from node_agent.drivers.octoprint_socket import (
    MAX_PUSH_MESSAGE_BYTES,
    HandshakeGauge,
    HandshakeLimits,
    PushHandshakeRefused,
)
from node_agent.hub_client import _to_proto
from node_agent.journal import Journal, PrinterFlags
from node_agent.pipeline import PipelineSettings
from node_agent.printers import Slot, snapshot, status_entry
from node_agent.worker import Worker
from slicer_bridge import SLICERS, SliceCache
from tests.hub.harness import self_signed
from tests.node_agent.jobfiles import print_lines
from tests.node_agent.scripted_octoprint import IDLE, PRINTING, ScriptedOctoPrint, raw_frame
from tests.node_agent.test_worker import ScriptedHub, ScriptedSession, until

OLD = Temperatures(200.0, 210.0, 60.0, 60.0)
BAD_TEMPS = {"state": {"text": "Operational", "flags": {"operational": True, "ready": True}},
             "temps": [{"tool0": {"actual": "212.5", "target": 215},
                        "bed": {"actual": 60.1, "target": 60}}]}


@pytest.mark.parametrize("temps", [
    [{"tool0": {"actual": "212.5", "target": [1]}, "bed": {"actual": {"x": 1}, "target": True}}],
    [{"tool0": {"actual": float("inf"), "target": float("nan")}, "bed": {"actual": 1e300, "target": -300}}],
    [{"tool0": {"actual": 10**400, "target": None}, "bed": "hot"}],
    ["not an object"], "not a list", {"tool0": 1}, 42,
])
def test_unreadable_temperatures_keep_the_last_good_ones(temps: Any) -> None:
    assert temperatures(temps, OLD) == OLD


def test_readable_temperatures_are_taken() -> None:
    temps = [{"tool0": {"actual": 212, "target": 215.0}, "bed": {"actual": 60.1, "target": 0}}]
    assert temperatures(temps, OLD) == Temperatures(212.0, 215.0, 60.1, 0.0)


@pytest.mark.parametrize("state", ["Printing", ["x"], 3, None, {"flags": [1]}, {"text": 5, "flags": "yes"}])
def test_a_state_of_the_wrong_shape_is_no_exception(state: Any) -> None:
    assert phase_from_state(state) is PrinterPhase.DISCONNECTED


@pytest.mark.parametrize("pushed", [
    {"filepos": "10"}, {"filepos": 10**30}, {"filepos": -1}, {"filepos": True}, "x", None,
])
def test_an_unreadable_file_position_is_no_progress(pushed: Any) -> None:
    assert progress(pushed) is None


def test_an_unreadable_completion_is_no_percentage() -> None:
    done = progress({"filepos": 10, "completion": "zz"})
    assert done is not None and done.filepos == 10 and done.completion is None


def test_junk_pushed_during_a_job_is_ignored_and_the_job_still_ends() -> None:
    server = ScriptedOctoPrint()
    errors: list[dict[str, Any]] = []

    async def scenario() -> tuple[Any, Temperatures]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=5)
        try:
            job = await _started(driver, server, ["G28", "G1 X1"])
            server.push("current", PRINTING)
            for frame in ("a[{not json", "a" + "[" * 100000, 'a[1, "x", null, []]', 'a{"current": 1}', "m3"):
                server.push_raw(frame)
            server.push("current", BAD_TEMPS | PRINTING_STATE)
            server.push("current", {"state": "Printing", "temps": {"a": 1},
                                    "progress": {"filepos": "x", "completion": "y"}})
            server.push("current", {"state": {"flags": [1]}, "progress": {"filepos": 10**30},
                                    "resends": [], "temps": [None]})
            server.push("event", {"type": "PrinterStateChanged", "payload": {"state_id": ["x"]}})
            server.push("event", {"type": "FirmwareData", "payload": {"name": {"x": 1}}})
            server.push("event", {"type": "PrintDone", "payload": "str"})
            server.push("current", PRINTING)
            server.push("event", {"type": "PrintDone", "payload": {"path": "job.gcode"}})
            result = await asyncio.wait_for(job, 30)
            return result, driver.status().temperatures
        finally:
            await driver.close()

    try:
        result, temps = asyncio.run(scenario())
    finally:
        server.stop()
    assert not errors, [e.get("exception") for e in errors]
    assert result.outcome is PrintOutcome.COMPLETED
    assert temps.hotend_c is None and temps.bed_c == 60.1  # the string was not taken


PRINTING_STATE = {"state": PRINTING["state"]}


# -- the whole agent: one OctoPrint's bad value never stops the node ------------------------------

class ProtoSession(ScriptedSession):
    async def send(self, message: m.AgentMessage) -> None:
        _to_proto(message)  # what the real SessionStream.send does before writing
        await super().send(message)


class ProtoHub(ScriptedHub):
    async def session(self, hello: m.Hello) -> ScriptedSession:
        session = ProtoSession(hello)
        _to_proto(hello)  # HubConnection.session sends Hello through the same conversion
        self.sessions.append(session)
        return session


def _printer(name: str, url: str) -> PrinterConfig:
    return PrinterConfig(name=name, driver="octoprint", model="MK3", build_volume_mm=(250, 210, 210),
                         nozzle_mm=0.4, materials=("PLA",), max_hotend_c=280, max_bed_c=110,
                         slicer_profile="prusa_mk3s", url=url, api_key="KEY")


def _worker(tmp_path: Path, good: ScriptedOctoPrint, bad: ScriptedOctoPrint) -> tuple[Worker, ProtoHub]:
    cfg = NodeConfig(NodeInfo("node-a", "127.0.0.1:1", state_dir=tmp_path, heartbeat_s=0.2),
                     (_printer("good", good.url), _printer("bad", bad.url)))
    drivers = {"good": OctoPrintDriver("good", good.url, "KEY", timeout_s=5),
               "bad": OctoPrintDriver("bad", bad.url, "KEY", timeout_s=5)}
    hub = ProtoHub()
    worker = Worker(cfg, Journal.open(tmp_path / "journal.db"), hub, drivers,
                    PipelineSettings(tmp_path / "jobs", SliceCache(tmp_path / "c", 1 << 20),
                                     SLICERS["prusaslicer"]))
    return worker, hub


@pytest.mark.parametrize("at_start", [False, True], ids=["mid-session", "at-start"])
def test_a_string_temperature_from_one_octoprint_never_stops_the_node(tmp_path: Path, at_start: bool) -> None:
    good, bad = ScriptedOctoPrint(), ScriptedOctoPrint(first_current=BAD_TEMPS if at_start else None)

    async def scenario() -> list[m.Heartbeat]:
        worker, hub = _worker(tmp_path, good, bad)
        running = asyncio.create_task(worker.run())
        try:
            await until("a session", lambda: hub.sessions or running.done())
            assert not running.done(), running.exception()
            hub.current.inbox.put_nowait(m.Welcome(1, 0))
            await until("a heartbeat", lambda: hub.sent(m.Heartbeat))
            bad.push("current", BAD_TEMPS)
            seen = len(hub.sent(m.Heartbeat))
            await until("more heartbeats", lambda: len(hub.sent(m.Heartbeat)) > seen + 3 or running.done())
            assert not running.done(), running.exception()
            return hub.sent(m.Heartbeat)
        finally:
            worker.shutdown()
            await asyncio.wait({running}, timeout=30)

    try:
        beats = asyncio.run(scenario())
    finally:
        good.stop()
        bad.stop()
    last = {p.printer_id: p for p in beats[-1].printers}
    assert last["bad"].bed_c == 60.1 and last["bad"].hotend_c == 0.0  # the string was dropped


class _Frozen:
    """A driver whose snapshot holds what a careless driver might let through."""

    name = "odd"

    def __init__(self, temps: Temperatures) -> None:
        self._status = PrinterStatus(PrinterPhase.IDLE, temps)

    def status(self) -> PrinterStatus:
        return self._status


def test_the_hub_snapshot_takes_only_real_temperatures() -> None:
    odd = Temperatures("212.5", None, float("inf"), None)  # type: ignore[arg-type]
    slot = Slot(_printer("odd", "http://127.0.0.1:1"), _Frozen(odd))  # type: ignore[arg-type]
    snap = snapshot(slot, PrinterFlags(), draining=False)
    assert (snap.hotend_c, snap.bed_c) == (0.0, 0.0)
    _to_proto(m.Heartbeat((snap,), ()))
    entry = status_entry(slot, PrinterFlags(), draining=False)
    assert entry["hotend_c"] is None and entry["bed_c"] is None


# -- the push socket: silence, TLS -----------------------------------------------------------------

async def _started(driver: OctoPrintDriver, server: ScriptedOctoPrint, lines: list[str]) -> asyncio.Task[Any]:
    """``lines`` printing on ``driver`` once the scripted server was asked to start them (connected first)."""
    await driver.connect()
    job = asyncio.create_task(print_lines(driver, "job", lines))
    await until("the job's start", lambda: any(
        path.startswith("/api/files/local/job.gcode") for _, path in server.requests))
    return job


def _job_on(server: ScriptedOctoPrint, freeze: bool) -> tuple[Any, PrinterStatus, PrinterPhase]:
    async def scenario() -> tuple[Any, PrinterStatus, PrinterPhase]:
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=5, push_silence_s=1)
        try:
            job = await _started(driver, server, ["G28", "G1 X1"])
            server.push("current", PRINTING)
            if freeze:
                server.freeze()  # the TCP connection stays open; nothing more arrives
            else:
                await asyncio.sleep(2)  # longer than push_silence_s, with heartbeats
                server.push("event", {"type": "PrintDone", "payload": {"path": "job.gcode"}})
            result = await job
            status = driver.status()
            await driver.connect()  # a new push socket
            return result, status, driver.status().phase
        finally:
            await driver.close()

    try:
        return asyncio.run(scenario())
    finally:
        server.stop()


def test_a_frozen_push_socket_fails_the_job_and_connect_opens_a_new_one() -> None:
    result, status, phase = _job_on(ScriptedOctoPrint(heartbeat_s=0.2), freeze=True)
    assert result.outcome is PrintOutcome.FAILED and result.retryable
    assert "pushed nothing for 1 s, not even its heartbeat" in (result.reason or "")
    assert status.phase is PrinterPhase.DISCONNECTED
    assert phase is PrinterPhase.IDLE


def test_heartbeats_keep_a_quiet_push_socket_alive() -> None:
    result, _, _ = _job_on(ScriptedOctoPrint(heartbeat_s=0.2), freeze=False)
    assert result.outcome is PrintOutcome.COMPLETED


def test_the_push_socket_of_an_https_octoprint_is_wss() -> None:
    assert _socket_url("https://op.lan:5443/octo/").startswith("wss://op.lan:5443/octo/sockjs/")
    assert _socket_url("http://op.lan").startswith("ws://op.lan/sockjs/")


def test_an_https_octoprint_connects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls = self_signed(tmp_path)
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(tls.cert))  # trust it for REST
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(tls.cert))  # and for the push socket
    server = ScriptedOctoPrint(tls=(tls.cert, tls.key))

    async def scenario() -> PrinterPhase:
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=5)
        try:
            await driver.connect()  # "did not report the first push message" over ws://
            return driver.status().phase
        finally:
            await driver.close()

    try:
        assert asyncio.run(scenario()) is PrinterPhase.IDLE
    finally:
        server.stop()
    assert server.url.startswith("https://")


def _silent_printer(tmp_path: Path, timeout_s: float,
                    then: Callable[[ScriptedOctoPrint, ProtoHub, asyncio.Task[None]], Awaitable[None]],
                    first: Callable[[ScriptedOctoPrint], None] = lambda bad: None) -> None:
    """A worker with two OctoPrint printers; once it beats, ``first(bad)``, then "bad" falls silent (its
    push socket counts as lost after 1 s) and ``then(bad, hub, running worker)`` checks what follows."""
    good, bad = ScriptedOctoPrint(heartbeat_s=0.2), ScriptedOctoPrint(heartbeat_s=0.2)

    async def scenario() -> None:
        worker, hub = _worker(tmp_path, good, bad)
        worker._slots["bad"].driver = OctoPrintDriver("bad", bad.url, "KEY", timeout_s=timeout_s, push_silence_s=1)
        running = asyncio.create_task(worker.run())
        try:
            await until("a session", lambda: hub.sessions)
            hub.current.inbox.put_nowait(m.Welcome(1, 0))
            await until("a heartbeat", lambda: hub.sent(m.Heartbeat))
            first(bad)
            bad.freeze()
            await then(bad, hub, running)
        finally:
            worker.shutdown()
            await asyncio.wait({running}, timeout=30)

    try:
        asyncio.run(scenario())
    finally:
        good.stop()
        bad.stop()


def test_the_worker_reconnects_a_printer_whose_push_socket_fell_silent(tmp_path: Path) -> None:
    async def then(bad: ScriptedOctoPrint, hub: ProtoHub, running: asyncio.Task[None]) -> None:
        await until("a second push socket", lambda: len(bad.sockets) >= 2 or running.done())
        assert not running.done(), running.exception()

    _silent_printer(tmp_path, 5, then)


def test_heartbeats_go_on_while_a_printer_takes_its_time_to_reconnect(tmp_path: Path) -> None:
    """A printer whose OctoPrint holds the reconnect's first call open (a driver may take its whole
    timeout) delays no heartbeat: the node stays alive on the hub for its other printers."""
    held, release = threading.Event(), threading.Event()

    def slow_version(h: Any) -> None:
        held.set()
        release.wait(60)
        ScriptedOctoPrint.answer(h, 200, b'{"api": "0.1", "server": "1.11.0"}')

    async def then(bad: ScriptedOctoPrint, hub: ProtoHub, running: asyncio.Task[None]) -> None:
        try:
            await until("a reconnect held by the printer", held.is_set)
            beats = len(hub.sent(m.Heartbeat))
            await until("heartbeats while it is held", lambda: len(hub.sent(m.Heartbeat)) >= beats + 3)
            assert not release.is_set() and not running.done()
        finally:
            release.set()

    def first(bad: ScriptedOctoPrint) -> None:
        bad.routes[("GET", "/api/version")] = slow_version

    _silent_printer(tmp_path, 60, then, first)


# -- the push socket: one enormous frame or message -------------------------------------------------

def _huge_current() -> bytes:
    """A well-formed ``current`` message just over the cap (a real OctoPrint's are KiB)."""
    logs = ["Recv: ok"] * (MAX_PUSH_MESSAGE_BYTES // 10)
    return ("a" + json.dumps([{"current": {**PRINTING, "logs": logs}}])).encode()


def _fragments(data: bytes, pieces: int) -> bytes:
    step = -(-len(data) // pieces)
    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    return b"".join(raw_frame(c, 0x1 if i == 0 else 0x0, fin=i == len(chunks) - 1)
                    for i, c in enumerate(chunks))


@pytest.mark.parametrize("oversize", [
    lambda: raw_frame(_huge_current()),                       # one frame, sent whole
    lambda: _fragments(_huge_current(), 8),                   # small fragments of one message
    lambda: raw_frame(b"a[", length=1 << 40),                 # a header announcing a TiB
], ids=["one-frame", "fragments", "announced"])
def test_an_oversize_push_frame_fails_the_job_and_connect_opens_a_new_socket(
        oversize: Callable[[], bytes]) -> None:
    server = ScriptedOctoPrint(heartbeat_s=0.2)
    errors: list[dict[str, Any]] = []

    async def scenario() -> tuple[Any, PrinterPhase]:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=5, push_silence_s=30)
        try:
            job = await _started(driver, server, ["G28", "G1 X1"])
            server.push("current", PRINTING)
            await asyncio.to_thread(server.push_bytes, oversize())
            await asyncio.sleep(0.5)  # an uncapped reader has taken the message by now
            server.push("event", {"type": "PrintDone", "payload": {"path": "job.gcode"}})
            result = await job
            await driver.connect()  # a new push socket
            return result, driver.status().phase
        finally:
            await driver.close()

    try:
        result, phase = asyncio.run(scenario())
    finally:
        server.stop()
    assert result.outcome is PrintOutcome.FAILED and result.retryable, result
    assert "lost the push socket" in (result.reason or "")
    assert f"at most {MAX_PUSH_MESSAGE_BYTES} are read" in (result.reason or ""), result.reason
    assert phase is PrinterPhase.IDLE and len(server.sockets) == 2
    assert not errors


# -- a printer that stays on one command: OctoPrint keeps pushing, its file position stays put -------

STUCK_JOB = ["G28", "M109 S200", "G1 X1 ; move"]  # "G28\n" is 4 bytes, "M109 S200\n" 10, "G1 X1 ; move\n" 13


def _stays_on(filepos: int, stay_s: float, limits: BusyLimits) -> tuple[Any, list[tuple[str, str]]]:
    """A job whose file position stays at ``filepos`` for ``stay_s`` (heartbeats and ``current``
    pushes go on), then OctoPrint reports it done: the result and the REST calls made."""
    server = ScriptedOctoPrint(heartbeat_s=0.2)

    async def scenario() -> Any:
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=5, push_silence_s=30, busy_limits=limits)
        try:
            job = await _started(driver, server, STUCK_JOB)
            at = {**PRINTING, "progress": {"filepos": filepos, "completion": 40.0}}
            for _ in range(round(stay_s / 0.1)):
                if ("POST", "/api/job?command=cancel") in server.requests:
                    break  # the driver gave up on the job
                server.push("current", at)
                await asyncio.sleep(0.1)
            server.push("event", {"type": "PrintDone", "payload": {"path": "job.gcode"}})  # or cancelled
            server.push("current", IDLE)
            return await job
        finally:
            await driver.close()

    try:
        return asyncio.run(scenario()), list(server.requests)
    finally:
        server.stop()


@pytest.mark.parametrize(("filepos", "command", "limit"), [
    (14, "M109 S200", "1"),  # heating never reaches its target: the heating ceiling
    (27, "G1 X1", "0.3"),    # a move that never ends: the ordinary one
], ids=["heating", "move"])
def test_a_job_staying_on_one_command_past_its_ceiling_fails_and_is_cancelled(
        filepos: int, command: str, limit: str) -> None:
    limits = BusyLimits(command_s=0.3, homing_s=0.3, heating_s=1.0, operator_s=1.0)
    result, requests_made = _stays_on(filepos, 20, limits)
    assert result.outcome is PrintOutcome.FAILED and result.retryable, result
    assert f"no further than {command!r}" in (result.reason or "") and f"(at most {limit} s for it)" in (
        result.reason or ""), result.reason
    assert ("POST", "/api/job?command=cancel") in requests_made  # OctoPrint is asked to cancel what it still runs


def test_a_long_heat_up_within_its_ceiling_completes() -> None:
    limits = BusyLimits(command_s=0.3, homing_s=0.3, heating_s=600.0, operator_s=600.0)
    result, requests_made = _stays_on(14, 1.5, limits)  # longer than a move may take, not a heat-up
    assert result.outcome is PrintOutcome.COMPLETED, result
    assert ("POST", "/api/job?command=cancel") not in requests_made


# -- the push socket's handshake: an answer that never ends --------------------------------------------

SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"


class _Answer:
    """Writes a handshake answer to the push socket's request: ``head``, then ``more(i)`` for i = 0, 1, …
    until the client goes away (every ``pause_s``)."""

    def __init__(self, head: bytes, more: Callable[[int], bytes] | None, pause_s: float = 0.0) -> None:
        self.head, self.more, self.pause_s = head, more, pause_s
        self.ended = threading.Event()

    def __call__(self, conn: Any) -> None:
        try:
            conn.sendall(self.head)
            for i in itertools.count():
                if self.more is None:
                    break
                conn.sendall(self.more(i))
                if self.pause_s:
                    self.ended.wait(self.pause_s)
        except OSError:
            pass
        finally:
            self.ended.set()


@pytest.mark.parametrize(("answer", "said"), [
    (lambda: _Answer(SWITCHING, lambda i: f"X-Junk-{i}: {i}\r\n".encode()), "more than 100 header lines"),
    (lambda: _Answer(SWITCHING + b"X-Junk: ", lambda i: b"a" * 4096), "past 32768 bytes"),
    (lambda: _Answer(SWITCHING, lambda i: f"X-Slow-{i}: {i}\r\n".encode(), pause_s=0.1), "did not end within 1 s"),
    (lambda: _Answer(b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:9/\r\n\r\n", None), "redirected (HTTP/1.1 302"),
], ids=["endless-headers", "endless-line", "trickle", "redirect"])
def test_a_push_socket_handshake_past_its_limits_is_refused_by_connect(
        answer: Callable[[], _Answer], said: str) -> None:
    """websocket-client read the handshake's status line and headers without limit (and without a
    timeout): a broken OctoPrint or a hostile host on its address could make the agent hold any amount."""
    writer = answer()
    server = ScriptedOctoPrint(handshake=writer)

    async def scenario() -> tuple[str, PrinterStatus]:
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=2)
        try:
            with pytest.raises(ConnectionFailed) as refused:
                await driver.connect()
            return str(refused.value), driver.status()
        finally:
            await driver.close()

    try:
        message, status = asyncio.run(scenario())
        assert writer.ended.wait(30)  # the connection is closed: the server could write no more
    finally:
        server.stop()
    assert said in message and "push socket's handshake" in message and server.url in message, message
    assert status.phase is PrinterPhase.DISCONNECTED and status.error is not None and said in status.error


def test_the_handshake_gauge_counts_lines_and_bytes_and_stops_at_the_blank_line() -> None:
    gauge = HandshakeGauge(HandshakeLimits(max_lines=3, max_bytes=100))
    gauge.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
    assert not gauge.done
    gauge.feed(b"\r\n\x81\x05hello" + b"x" * 200)  # frames after the headers are not counted
    assert gauge.done and gauge.refused is None
    lines = HandshakeGauge(HandshakeLimits(max_lines=2, max_bytes=100))
    with pytest.raises(PushHandshakeRefused, match="more than 2 header lines"):
        lines.feed(b"HTTP/1.1 101 OK\nA: 1\nB: 2\n")
    with pytest.raises(PushHandshakeRefused):  # and every read after it
        lines.feed(b"\r\n")
    with pytest.raises(PushHandshakeRefused, match="past 100 bytes"):
        HandshakeGauge(HandshakeLimits(max_lines=2, max_bytes=100)).feed(b"HTTP/1.1 101 " + b"x" * 100)
    HandshakeGauge(HandshakeLimits()).feed(b"HTTP/1.1 200 OK\r\n")  # not a redirect (the library refuses it)
