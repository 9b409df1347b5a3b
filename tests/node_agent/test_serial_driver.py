"""SerialDriver over a real pty against the simulated Marlin firmware.

The firmware runs in a thread (``simulated_printer``) or its own process
(``SimulatedPrinterProcess``); its record of accepted commands is the
exactly-once-in-order check. OctoPrint's VirtualPrinter cases live in
test_serial_vs_virtual_printer.py and the contract suite.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import tty
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from node_agent.drivers.base import (
    ConnectionFailed,
    PrinterNotReady,
    PrinterPhase,
    PrintOutcome,
)
from node_agent.drivers.serial import SerialDriver
from node_agent.protocol import ProtocolSettings
from node_agent.safety import JobRefused
from node_agent.testing import (
    FirmwareOptions,
    FirmwareRunner,
    SimulatedPrinterProcess,
    simulated_printer,
)
from tests.node_agent.jobfiles import print_lines

MOVES = [f"G1 X{i % 200}.{i % 7} Y{(i * 7) % 200}.5 E{i * 0.01:.4f} F1800" for i in range(2000)]
END = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z10 F600", "G90", "M84")


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def wait_until(cond: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def moves_accepted(accepted: list[str]) -> list[str]:
    return [c for c in accepted if c.startswith("G1 X")]


@pytest.mark.parametrize("options", [
    {"baud": 250000},
    {"advanced_ok": True},
    {"corrupt_rate": 0.02, "seed": 11},
    {"corrupt_rate": 0.02, "advanced_ok": True, "baud": 250000, "latency_s": 0.001},
], ids=["baud250000", "advanced_ok", "corrupt2pct", "corrupt_advanced_latency"])
def test_job_arrives_exactly_once_in_order(options: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with simulated_printer(**options) as fw:
            driver = SerialDriver("sim", fw.port, options.get("baud", 115200))
            try:
                await driver.connect()
                assert driver.status().phase is PrinterPhase.IDLE
                result = await print_lines(driver, "job", MOVES)
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.COMPLETED, result
            assert result.lines_sent == len(MOVES)
            assert moves_accepted(fw.stats.accepted) == MOVES
            assert fw.stats.rx_overflow_bytes == 0
            if options.get("corrupt_rate"):
                assert result.resends > 0 and fw.stats.corrupted > 0

    run(scenario())


def test_a_lost_ok_is_recovered_within_three_seconds() -> None:
    async def scenario() -> None:
        async with simulated_printer(drop_ok_after=(700,)) as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            try:
                await driver.connect()
                result = await print_lines(driver, "job", MOVES[:800])
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.COMPLETED
            assert fw.stats.dropped_oks == 1 and driver.probes >= 1
            assert moves_accepted(fw.stats.accepted) == MOVES[:800]

    run(scenario())


def test_busy_keeps_a_long_dwell_alive_without_failing() -> None:
    async def scenario() -> None:
        async with simulated_printer(busy_interval_s=0.2) as fw:
            driver = SerialDriver("sim", fw.port, 115200, comm_timeout_s=0.5, dead_after_s=1.0)
            try:
                await driver.connect()
                result = await print_lines(driver, "dwell", ["G4 S2.5", *MOVES[:20]])
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.COMPLETED and result.seconds >= 2.5
            assert moves_accepted(fw.stats.accepted) == MOVES[:20]

    run(scenario())


def test_fatal_firmware_error_fails_the_job_with_its_reason() -> None:
    async def scenario() -> None:
        async with simulated_printer(fail_at_line=100) as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            try:
                await driver.connect()
                result = await print_lines(driver, "job", MOVES[:500])
                status = driver.status()
                with pytest.raises(PrinterNotReady):
                    await print_lines(driver, "again", MOVES[:5])
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.FAILED and not result.retryable
            assert "Thermal Runaway" in (result.reason or "")
            assert status.phase is PrinterPhase.ERROR and "Thermal Runaway" in (status.error or "")

    run(scenario())


def test_cancel_sends_the_end_sequence_and_pause_holds() -> None:
    async def scenario() -> None:
        async with simulated_printer(baud=115200) as fw:
            driver = SerialDriver("sim", fw.port, 115200, settings=ProtocolSettings(end_gcode=END))
            try:
                await driver.connect()
                job = asyncio.create_task(print_lines(driver, "job", MOVES))
                await wait_until(lambda: driver.status().lines_sent > 200, "progress")
                await driver.pause()
                assert driver.status().phase is PrinterPhase.PAUSED
                await asyncio.sleep(0.3)
                held = driver.status().lines_sent
                await asyncio.sleep(0.3)
                assert driver.status().lines_sent == held
                await driver.resume()
                await wait_until(lambda: driver.status().lines_sent > held + 100, "resumed")
                await driver.cancel()
                result = await job
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.CANCELLED
            assert tuple(fw.stats.accepted[-len(END):]) == END
            moves = moves_accepted(fw.stats.accepted)
            assert 300 < len(moves) < len(MOVES) and moves == MOVES[: len(moves)]

    run(scenario())


def test_emergency_stop_halts_the_printer() -> None:
    async def scenario() -> None:
        async with simulated_printer(baud=115200) as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            try:
                await driver.connect()
                job = asyncio.create_task(print_lines(driver, "job", MOVES))
                await wait_until(lambda: driver.status().lines_sent > 50, "progress")
                await driver.emergency_stop()
                result = await job
                await wait_until(lambda: fw.stats.halted is not None, "firmware halted")
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.CANCELLED and "emergency" in (result.reason or "")
            assert "kill()" in (fw.stats.halted or "")

    run(scenario())


def test_status_carries_temperatures_progress_and_firmware() -> None:
    async def scenario() -> None:
        async with simulated_printer() as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            seen = []

            async def watch() -> None:
                async for status in driver.updates():
                    seen.append(status)

            try:
                await driver.connect()
                watcher = asyncio.create_task(watch())
                lines = ["M104 S200", "M140 S60", ";LAYER:0", *MOVES[:300], ";LAYER:1", *MOVES[300:600]]
                result = await print_lines(driver, "job", lines)
                await wait_until(lambda: (driver.status().temperatures.hotend_target_c or 0) > 0,
                                 "temperature report")
                watcher.cancel()
                status = driver.status()
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.COMPLETED
            assert status.temperatures.hotend_target_c == 200 and status.temperatures.bed_target_c == 60
            assert status.layer == 1 and status.percent == pytest.approx(100.0)
            assert status.firmware and "Marlin" in status.firmware
            assert any(0 < s.lines_sent < 602 for s in seen)

    run(scenario())


def test_bad_jobs_and_bad_states_are_refused() -> None:
    async def scenario() -> None:
        async with simulated_printer() as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            with pytest.raises(PrinterNotReady, match="not connected"):
                await print_lines(driver, "early", MOVES[:3])
            try:
                await driver.connect()
                with pytest.raises(JobRefused, match="line 2"):  # the filter, before the driver
                    await print_lines(driver, "bad", ["G28", "M117 a*b"])
                with pytest.raises(PrinterNotReady):
                    await driver.pause()
                job = asyncio.create_task(print_lines(driver, "long", MOVES))
                await wait_until(lambda: driver.status().lines_sent > 10, "progress")
                with pytest.raises(PrinterNotReady, match="cannot start job while printing"):
                    await print_lines(driver, "second", MOVES[:3])
                await driver.cancel()
                await job
            finally:
                await driver.close()

    run(scenario())


def test_a_missing_port_is_a_clear_connection_failure() -> None:
    async def scenario() -> None:
        driver = SerialDriver("ghost", "/dev/ttyDOESNOTEXIST", 115200)
        with pytest.raises(ConnectionFailed, match="cannot open /dev/ttyDOESNOTEXIST at 115200"):
            await driver.connect()
        await driver.close()

    run(scenario())


def test_a_silent_device_times_out_with_advice() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        async def scenario() -> None:
            driver = SerialDriver("mute", os.ttyname(slave), 115200, connect_timeout_s=1.0)
            with pytest.raises(ConnectionFailed, match="no answer to M115 .* check the port, the baud"):
                await driver.connect()
            await driver.close()

        run(scenario())
    finally:
        os.close(master)
        os.close(slave)


def test_reconnects_after_the_port_disappears() -> None:
    async def scenario() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            runner = FirmwareRunner(FirmwareOptions(baud=115200), link=f"{tmp}/ttySIM").start()
            driver = SerialDriver("sim", runner.port, 115200)
            try:
                await driver.connect()
                job = asyncio.create_task(print_lines(driver, "job", MOVES))
                await wait_until(lambda: driver.status().lines_sent > 50, "progress")
                await asyncio.to_thread(runner.unplug)
                result = await job
                assert result.outcome is PrintOutcome.FAILED and result.retryable
                assert driver.status().phase in (PrinterPhase.DISCONNECTED, PrinterPhase.CONNECTING)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(runner.replug)
                await wait_until(lambda: driver.status().phase is PrinterPhase.IDLE, "reconnected")
                again = await print_lines(driver, "after", MOVES[:100])
                assert again.outcome is PrintOutcome.COMPLETED
            finally:
                await driver.close()
                await asyncio.to_thread(runner.stop)

    run(scenario())


def test_firmware_in_its_own_process_records_every_line() -> None:
    with SimulatedPrinterProcess(FirmwareOptions(baud=250000, corrupt_rate=0.01)) as fw:
        async def scenario() -> Any:
            driver = SerialDriver("sim", fw.port, 250000)
            try:
                await driver.connect()
                return await print_lines(driver, "job", MOVES)
            finally:
                await driver.close()

        result = run(scenario())
    assert result.outcome is PrintOutcome.COMPLETED
    assert fw.stats is not None and moves_accepted(fw.stats.accepted) == MOVES


def test_the_simulated_wire_throttles_to_the_baud_rate() -> None:
    # 8N1: 10 bits a byte; 600 framed lines of ~45 B at 115200 baud need >= 2.3 s
    async def scenario() -> tuple[float, int]:
        async with simulated_printer(baud=115200) as fw:
            driver = SerialDriver("sim", fw.port, 115200)
            try:
                await driver.connect()
                result = await print_lines(driver, "job", MOVES[:600])
            finally:
                await driver.close()
            return result.seconds, fw.stats.bytes_received

    seconds, received = run(scenario())
    assert seconds >= 0.97 * (received - 200) * 10 / 115200  # minus the handshake's bytes
