"""SerialDriver over a pty against a broken or hostile simulated firmware (``node_agent.testing``).

A firmware whose command queue is stuck still talks (auto-reports, echo, noise) but acknowledges
nothing: the job must fail with a reason, not wait forever, and what it sends must not pile up in
memory. Nothing the firmware sends may raise out of the driver's read callback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from node_agent.busy import BusyLimits
from node_agent.drivers.base import PrintOutcome, PrintResult
from node_agent.drivers.serial import SerialDriver
from node_agent.protocol import MAX_LINE_BYTES
from node_agent.testing import simulated_printer
from tests.node_agent.jobfiles import print_lines
from tests.node_agent.test_serial_driver import MOVES, run


async def _print(driver_kwargs: dict[str, Any], **firmware: Any
                 ) -> tuple[PrintResult, list[dict[str, Any]], int]:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    peak = 0
    async with simulated_printer(**firmware) as fw:
        driver = SerialDriver("sim", fw.port, 115200, reconnect=False, **driver_kwargs)

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(driver.engine._rx))
                await asyncio.sleep(0.01)

        sampler = asyncio.create_task(sample())
        try:
            await driver.connect()
            result = await print_lines(driver, "job", MOVES[:300])
        finally:
            sampler.cancel()
            await driver.close()
    return result, errors, peak


@pytest.mark.parametrize("chatter", [
    "x" * 4096,                                    # one line that never ends
    "echo:still here\n" * 10,                      # echo, never an ok
    " T:20.00 /0.00 B:20.00 /0.00 @:0 B@:0\n",     # temperature reports only (a stuck Marlin's idle())
], ids=["endless-line", "echo-flood", "reports-only"])
def test_a_firmware_that_talks_but_never_acknowledges_fails_the_job(chatter: str) -> None:
    result, errors, peak = run(_print({"comm_timeout_s": 0.2, "dead_after_s": 1.0},
                                      stuck_at_line=100, chatter=chatter, chatter_interval_s=0.02))
    assert result.outcome is PrintOutcome.FAILED and result.retryable, result
    assert "answers no command" in (result.reason or "") or "longer than" in (result.reason or "")
    assert peak <= 65536 + MAX_LINE_BYTES
    assert not errors


def test_a_klipper_shutdown_fails_the_job() -> None:
    shutdown = "!! MCU 'mcu' shutdown: Timer too close"
    result, errors, _ = run(_print({}, say_after=tuple((n, shutdown) for n in range(20, 400))))
    assert result.outcome is PrintOutcome.FAILED and not result.retryable, result
    assert result.reason == "MCU 'mcu' shutdown: Timer too close"
    assert not errors


@pytest.mark.parametrize("line", [
    "Resend: " + "9" * 5000,
    "ok N" + "9" * 5000,
    "Error:Line Number is not Last Line Number+1, Last Line: " + "9" * 100,
], ids=["resend", "ok-N", "last-line"])
def test_a_huge_line_number_fails_the_job_without_an_unhandled_exception(line: str) -> None:
    result, errors, _ = run(_print({}, say_after=((50, line),)))
    assert not errors, errors[0].get("exception")
    assert result.outcome is PrintOutcome.FAILED and result.retryable, result
    assert "the printer broke the protocol" in (result.reason or "")


def test_absurd_temperatures_are_not_reported() -> None:
    async def scenario() -> tuple[float | None, float | None]:
        async with simulated_printer(say_after=((20, "T:" + "9" * 400 + " /0.0 B:60.0 /60.0"),)) as fw:
            driver = SerialDriver("sim", fw.port, 115200, reconnect=False)
            try:
                await driver.connect()
                result = await print_lines(driver, "job", MOVES[:40])
            finally:
                await driver.close()
            assert result.outcome is PrintOutcome.COMPLETED
            temps = driver.status().temperatures
            return temps.hotend_c, temps.bed_c

    hotend, bed = run(scenario())
    assert hotend is not None and hotend < 2000  # the last good reading, not inf
    assert bed is not None and bed < 2000


# -- busy forever: keepalives prove the firmware runs, not that the command will end ------------

_TIGHT = BusyLimits(command_s=0.5, homing_s=0.5, heating_s=1.5, operator_s=3.0)


@pytest.mark.parametrize(("firmware", "job", "stuck"), [
    ({"heat_rate_c_per_s": 0.0, "busy_interval_s": 0.05}, ["M109 S200"], "M109 S200"),
    ({"heat_rate_c_per_s": 0.0, "busy_protocol": False}, ["M190 S60"], "M190 S60"),
    ({"move_time_s": 3600.0, "busy_interval_s": 0.05}, ["G1 X10 F600"], "G1 X10 F600"),
    ({"busy_interval_s": 0.05}, ["G4 S1000"], "G4 S1000"),
], ids=["busy-while-heating", "temperatures-only", "busy-move", "long-dwell"])
def test_a_command_that_stays_busy_past_its_limit_fails_the_job(
        firmware: dict[str, Any], job: list[str], stuck: str) -> None:
    async def scenario() -> PrintResult:
        async with simulated_printer(**firmware) as fw:
            driver = SerialDriver("sim", fw.port, 115200, reconnect=False, comm_timeout_s=0.2,
                                  busy_limits=_TIGHT)
            try:
                await driver.connect()
                return await print_lines(driver, "job", ["G28", *job, *MOVES[:20]])
            finally:
                await driver.close()

    result = run(scenario())
    assert result.outcome is PrintOutcome.FAILED and result.retryable, result
    assert f"worked on {stuck!r} for" in (result.reason or ""), result.reason
    assert "stuck" in (result.reason or "")


def test_a_heating_command_may_take_longer_than_a_move() -> None:
    async def scenario() -> PrintResult:
        async with simulated_printer(heat_rate_c_per_s=100.0, busy_interval_s=0.05) as fw:
            limits = BusyLimits(command_s=0.3, homing_s=60.0, heating_s=60.0, operator_s=60.0)
            driver = SerialDriver("sim", fw.port, 115200, reconnect=False, busy_limits=limits)
            try:
                await driver.connect()  # M109 S200 from 21 °C takes about 1.8 s: busy, then ok
                return await print_lines(driver, "job", ["M109 S200", *MOVES[:20], "M190 S60"])
            finally:
                await driver.close()

    result = run(scenario())
    assert result.outcome is PrintOutcome.COMPLETED, result


@pytest.mark.parametrize(("command", "limit"), [
    ("M109 S210", 3600.0), ("M190 S60", 3600.0), ("M303 E0 S200 C8", 3600.0),
    ("G28", 1800.0), ("G29", 1800.0), ("M600", 43200.0), ("M0", 43200.0),
    ("G1 X10", 600.0), ("M400", 600.0), ("G4 S30", 630.0), ("G4 P1500", 601.5),
    ("G4 S999999999", 43200.0),
])
def test_each_kind_of_command_has_its_documented_ceiling(command: str, limit: float) -> None:
    assert BusyLimits().limit_s(command) == pytest.approx(limit)


def test_the_most_generous_ceiling_among_the_commands_in_flight_wins() -> None:
    assert BusyLimits().ceiling(["G1 X1", "M109 S200", "G28"]) == (3600.0, "M109 S200")
    assert BusyLimits().ceiling([]) == (600.0, None)
