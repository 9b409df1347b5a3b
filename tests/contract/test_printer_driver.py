"""The PrinterDriver contract: one suite, run against every driver and peer.

``PrinterDriverContract`` holds the cases (``__test__ = False``); each subclass
names a backend, a driver talking to an independent peer:

* ``TestSerialDriverWithVirtualPrinter``: SerialDriver <-> OctoPrint's
  VirtualPrinter on a pty (tests/fixtures/virtual_printer.py);
* ``TestSerialDriverWithSimulatedMarlin``: SerialDriver <-> our own simulated
  Marlin (node_agent.testing) on a pty, in its own process;
* ``TestOctoPrintDriver``: OctoPrintDriver <-> a real OctoPrint server with its
  virtual printer (tests/fixtures/octoprint_server.py).

Jobs are built so every command is unique (the E value grows), which makes the
peer's own record of executed commands an exactly-once-in-order check where the
peer exposes one. The fatal fault is VirtualPrinter's
``!!DEBUG:trigger_fatal_error_marlin`` (sent beside the job: the safety filter
refuses it inside one) and the simulator's ``fail_at_line``;
both report Marlin's "Thermal Runaway ... Printer halted. kill() called!".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from node_agent.drivers.base import (
    PrinterDriver,
    PrinterNotReady,
    PrinterPhase,
    PrinterStatus,
    PrintOutcome,
)
from tests.fixtures.octoprint_server import OctoPrintServer
from tests.fixtures.virtual_printer import VirtualPrinterProcess
from tests.node_agent.jobfiles import print_lines

BAUD = 115200
FATAL_REASON = "Thermal Runaway"
FATAL_DEBUG_COMMAND = "!!DEBUG:trigger_fatal_error_marlin"  # VirtualPrinter's fault switch
DEADLINE_S = 30.0


def build_job(moves: int, *, dwell_every: int = 0, heat: bool = False,
              fatal_line: str | None = None, fatal_at: int = 40,
              layer_every: int = 0) -> list[str]:
    """A job of unique commands: tiny absolute moves with growing E, optional dwells.

    ``G4 P10`` every ``dwell_every`` moves paces the job on every peer (each dwell
    holds the firmware's ``ok`` for 10 ms), so pause and cancel land mid-job.
    """
    lines = ["G90", "M82", "G92 E0"]
    if heat:
        lines += ["M104 S200", "M140 S60"]
    for i in range(moves):
        if layer_every and i % layer_every == 0:
            lines.append(f";LAYER:{i // layer_every}")
        if fatal_line is not None and i == fatal_at:
            lines.append(fatal_line)
        lines.append(f"G1 X{(i % 2) * 0.1:.1f} Y0 E{(i + 1) * 0.001:.3f} F60000")
        if dwell_every and i % dwell_every == dwell_every - 1:
            lines.append("G4 P10")
    return lines


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def wait_until(cond: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll a condition on the driver's status (no I/O) with a deadline."""
    deadline = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def settled_lines(driver: PrinterDriver, quiet_s: float = 1.0) -> int:
    """Wait until ``lines_sent`` has not changed for ``quiet_s`` and return it."""
    deadline = time.monotonic() + DEADLINE_S
    last, since = driver.status().lines_sent, time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "lines_sent never settled"
        await asyncio.sleep(0.05)
        if driver.status().lines_sent != last:
            last, since = driver.status().lines_sent, time.monotonic()
    return last


class Backend:
    """One driver + peer combination, as the contract cases see it."""

    def driver(self, *, fatal: bool = False) -> PrinterDriver:
        raise NotImplementedError

    async def inject_fatal(self, driver: PrinterDriver) -> None:
        """Make the peer halt mid-job (a debug command outside the job: the safety
        filter rightly refuses it inside one); peers that halt by themselves do nothing."""

    def executed(self) -> list[str] | None:
        """Commands the peer executed, in order, or None if the peer does not tell."""
        return None


def job_commands(lines: list[str]) -> list[str]:
    return [c for c in (line.split(";", 1)[0].strip() for line in lines) if c]


def assert_exactly_once_in_order(backend: Backend, lines: list[str], upto: int | None = None) -> None:
    executed = backend.executed()
    if executed is None:
        return
    wanted = job_commands(lines)
    unique = {c for c in wanted if c.startswith("G1 ")}
    got = [c for c in executed if c in unique]
    moves = [c for c in wanted if c in unique]
    if upto is None:
        assert got == moves, f"{len(got)} moves executed, {len(moves)} in the job"
    else:
        assert got == moves[: len(got)], "moves executed out of order or twice"


class PrinterDriverContract:
    """Cases every PrinterDriver must pass; subclasses provide ``backend``."""

    __test__ = False

    @pytest.fixture()
    def backend(self) -> Backend:
        raise NotImplementedError

    def test_close_is_idempotent_and_safe_before_connect(self, backend: Backend) -> None:
        async def scenario() -> None:
            driver = backend.driver()
            await driver.close()
            await driver.connect()
            await driver.close()
            await driver.close()
            assert driver.status().phase is PrinterPhase.DISCONNECTED

        run(scenario())

    def test_updates_start_with_a_snapshot_and_end_on_close(self, backend: Backend) -> None:
        async def scenario() -> list[PrinterStatus]:
            driver = backend.driver()
            await driver.connect()
            seen: list[PrinterStatus] = []
            first = asyncio.Event()

            async def follow() -> None:
                async for status in driver.updates():
                    seen.append(status)
                    first.set()

            follower = asyncio.ensure_future(follow())
            await asyncio.wait_for(first.wait(), timeout=10)
            await driver.close()
            await asyncio.wait_for(follower, timeout=10)
            return seen

        seen = run(scenario())
        assert seen[0].phase is PrinterPhase.IDLE

    def test_print_before_connect_is_not_ready(self, backend: Backend) -> None:
        async def scenario() -> None:
            driver = backend.driver()
            try:
                with pytest.raises(PrinterNotReady):
                    await print_lines(driver, "early", build_job(3))
            finally:
                await driver.close()

        run(scenario())

    def test_connect_reports_an_idle_printer(self, backend: Backend) -> None:
        async def scenario() -> PrinterStatus:
            driver = backend.driver()
            try:
                await driver.connect()
                return driver.status()
            finally:
                await driver.close()

        status = run(scenario())
        assert status.phase is PrinterPhase.IDLE
        assert status.error is None
        assert status.firmware and "Marlin" in status.firmware

    def test_prints_a_small_job_to_completion(self, backend: Backend) -> None:
        lines = build_job(200) + ["; a comment line is not a command", ""]

        async def scenario() -> tuple[Any, PrinterStatus]:
            driver = backend.driver()
            try:
                await driver.connect()
                result = await asyncio.wait_for(print_lines(driver, "small", lines), DEADLINE_S)
                await wait_until(lambda: driver.status().phase is PrinterPhase.IDLE, "idle")
                return result, driver.status()
            finally:
                await driver.close()

        result, status = run(scenario())
        assert result.outcome is PrintOutcome.COMPLETED, result
        assert result.lines_sent == len(job_commands(lines)) == 203
        assert result.reason is None
        assert status.lines_sent == status.lines_total == 203
        assert status.percent == pytest.approx(100.0)
        assert_exactly_once_in_order(backend, lines)

    def test_progress_updates_arrive_while_printing(self, backend: Backend) -> None:
        lines = build_job(3000, dwell_every=25, layer_every=500)
        seen: list[PrinterStatus] = []

        async def scenario() -> Any:
            driver = backend.driver()

            async def watch() -> None:
                async for status in driver.updates():
                    seen.append(status)

            try:
                await driver.connect()
                watcher = asyncio.create_task(watch())
                result = await asyncio.wait_for(print_lines(driver, "progress", lines), DEADLINE_S)
                watcher.cancel()
                return result
            finally:
                await driver.close()

        result = run(scenario())
        assert result.outcome is PrintOutcome.COMPLETED
        printing = [s.lines_sent for s in seen if s.phase is PrinterPhase.PRINTING]
        partial = [n for n in printing if 0 < n < len(job_commands(lines))]
        assert partial, f"no progress update between start and end: {printing[:20]}"
        assert partial == sorted(partial), "progress went backwards"
        assert any(s.job_name == "progress" for s in seen)
        layers = [s.layer for s in seen if s.phase is PrinterPhase.PRINTING and s.layer is not None]
        assert layers, "no layer reported from the ;LAYER: comments"
        assert layers == sorted(layers) and set(layers) <= set(range(6))

    def test_pause_holds_the_job_and_resume_finishes_it(self, backend: Backend) -> None:
        lines = build_job(2000, dwell_every=10)
        total = len(job_commands(lines))

        async def scenario() -> tuple[Any, int, int]:
            driver = backend.driver()
            try:
                await driver.connect()
                job = asyncio.create_task(print_lines(driver, "pause", lines))
                await wait_until(lambda: driver.status().lines_sent > 100, "some progress")
                await driver.pause()
                assert driver.status().phase is PrinterPhase.PAUSED
                # lines already in flight may still be acknowledged; once the count
                # settles it must stand still (a time window is inherent to "nothing moves")
                held = await settled_lines(driver)
                await asyncio.sleep(1.0)
                still = driver.status().lines_sent
                assert driver.status().phase is PrinterPhase.PAUSED
                await driver.resume()
                result = await asyncio.wait_for(job, DEADLINE_S)
                return result, held, still
            finally:
                await driver.close()

        result, held, still = run(scenario())
        assert held == still < total, f"lines moved while paused: {held} -> {still}"
        assert result.outcome is PrintOutcome.COMPLETED
        assert result.lines_sent == total
        assert_exactly_once_in_order(backend, lines)

    def test_cancel_stops_the_job_and_runs_the_safe_end_sequence(self, backend: Backend) -> None:
        lines = build_job(6000, dwell_every=10, heat=True)
        total = len(job_commands(lines))

        async def scenario() -> tuple[Any, PrinterStatus]:
            driver = backend.driver()
            try:
                await driver.connect()
                job = asyncio.create_task(print_lines(driver, "cancel", lines))
                await wait_until(
                    lambda: driver.status().temperatures.hotend_target_c == 200.0
                    and driver.status().lines_sent > 100, "heating and progress")
                await driver.cancel()
                result = await asyncio.wait_for(job, DEADLINE_S)
                await wait_until(
                    lambda: driver.status().temperatures.hotend_target_c == 0.0
                    and driver.status().temperatures.bed_target_c == 0.0,
                    "heaters off after cancel")
                return result, driver.status()
            finally:
                await driver.close()

        result, status = run(scenario())
        assert result.outcome is PrintOutcome.CANCELLED
        assert 0 < result.lines_sent < total
        assert status.phase is PrinterPhase.IDLE
        executed = backend.executed()
        if executed is not None:
            tail = executed[executed.index("M104 S0"):] if "M104 S0" in executed else []
            for command in ("M104 S0", "M140 S0", "M84"):
                assert command in tail, f"{command} not run after cancel: {tail[-12:]}"
            assert_exactly_once_in_order(backend, lines, upto=result.lines_sent)

    def test_firmware_error_fails_the_job_with_the_firmware_reason(
        self, backend: Backend
    ) -> None:
        lines = build_job(400, dwell_every=10)

        async def scenario() -> tuple[Any, PrinterStatus]:
            driver = backend.driver(fatal=True)
            try:
                await driver.connect()
                job = asyncio.create_task(print_lines(driver, "fatal", lines))
                await wait_until(lambda: driver.status().lines_sent > 40 or job.done(), "progress")
                await backend.inject_fatal(driver)
                result = await asyncio.wait_for(job, DEADLINE_S)
                await wait_until(lambda: driver.status().phase is PrinterPhase.ERROR, "error")
                return result, driver.status()
            finally:
                await driver.close()

        result, status = run(scenario())
        assert result.outcome is PrintOutcome.FAILED
        assert FATAL_REASON in (result.reason or ""), result
        assert not result.retryable
        assert result.lines_sent < len(job_commands(lines))
        assert FATAL_REASON in (status.error or ""), status


# -- backends -------------------------------------------------------------------------


def _serial_driver(name: str, port: str) -> PrinterDriver:
    from node_agent.drivers.serial import SerialDriver  # P1's driver; missing = failing test

    driver: PrinterDriver = SerialDriver(name, port, BAUD)
    return driver


class _VirtualPrinterBackend(Backend):
    def __init__(self, vp: VirtualPrinterProcess) -> None:
        self.vp = vp

    async def inject_fatal(self, driver: PrinterDriver) -> None:
        from node_agent.drivers.serial import SerialDriver

        assert isinstance(driver, SerialDriver)
        driver.engine.send_command(FATAL_DEBUG_COMMAND)
        driver._flush()

    def driver(self, *, fatal: bool = False) -> PrinterDriver:
        return _serial_driver("vp", self.vp.port)

    def executed(self) -> list[str]:
        return self.vp.executed()


class _SimulatorBackend(Backend):
    """node_agent.testing's simulated Marlin in its own process, one per driver."""

    FAIL_AT = 60  # a line number inside every fatal job, past the connection handshake

    def __init__(self) -> None:
        self._printers: list[Any] = []
        self._last: Any = None

    def driver(self, *, fatal: bool = False) -> PrinterDriver:
        from node_agent.testing import FirmwareOptions, SimulatedPrinterProcess

        options = FirmwareOptions(fail_at_line=self.FAIL_AT if fatal else None)
        printer = SimulatedPrinterProcess(options).__enter__()
        self._printers.append(printer)
        self._last = printer
        return _serial_driver("sim", printer.port)

    def executed(self) -> list[str] | None:
        if self._last is None:
            return None
        stats = self._last.stop()
        return None if stats is None else list(stats.accepted)

    def stop_all(self) -> None:
        for printer in self._printers:
            printer.stop()


class _OctoPrintBackend(Backend):
    def __init__(self, server: OctoPrintServer) -> None:
        self.server = server

    async def inject_fatal(self, driver: PrinterDriver) -> None:
        from node_agent.drivers.octoprint import OctoPrintDriver

        assert isinstance(driver, OctoPrintDriver)
        await driver._send_commands([FATAL_DEBUG_COMMAND])  # fault injection

    def driver(self, *, fatal: bool = False) -> PrinterDriver:
        from node_agent.drivers.octoprint import OctoPrintDriver

        return OctoPrintDriver("octo", self.server.url, self.server.api_key,
                               port="VIRTUAL", baud=BAUD)


class TestSerialDriverWithVirtualPrinter(PrinterDriverContract):
    __test__ = True

    @pytest.fixture()
    def backend(self, virtual_printer: VirtualPrinterProcess) -> Backend:
        return _VirtualPrinterBackend(virtual_printer)


class TestSerialDriverWithSimulatedMarlin(PrinterDriverContract):
    __test__ = True

    @pytest.fixture()
    def backend(self) -> Iterator[Backend]:
        backend = _SimulatorBackend()
        yield backend
        backend.stop_all()


class TestOctoPrintDriver(PrinterDriverContract):
    __test__ = True

    @pytest.fixture()
    def backend(self, octoprint_offline: OctoPrintServer) -> Backend:
        return _OctoPrintBackend(octoprint_offline)
