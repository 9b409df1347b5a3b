"""An unreachable printer is tried again after a capped full-jitter exponential backoff, not at every
heartbeat; a success starts afresh; ``spime-node status`` shows the next attempt and the last error."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from pathlib import Path

import pytest

from node_agent.backoff import Retry, RetryPolicy
from node_agent.cli import render_status
from node_agent.drivers.serial import SerialDriver
from node_agent.journal import Journal
from node_agent.pipeline import PipelineSettings
from node_agent.testing import simulated_printer
from node_agent.worker import PRINTER_RETRY, Worker
from slicer_bridge import SLICERS, SliceCache
from tests.node_agent.test_worker import ScriptedHub, config


def test_retry_waits_grow_as_full_jitter_up_to_the_cap_and_a_success_starts_afresh() -> None:
    policy, rng = RetryPolicy(base_s=10.0, cap_s=300.0), random.Random(7)
    retry, now, waits = Retry(), 1000.0, []
    assert retry.due(now)
    for failures in range(1, 12):
        retry = retry.failed(now, f"attempt {failures}", policy, rng)
        ceiling = min(300.0, 10.0 * 2 ** (failures - 1))
        assert retry.failures == failures and retry.last_error == f"attempt {failures}"
        assert now <= retry.next_at <= now + ceiling
        assert not retry.due(now - 1) and retry.due(retry.next_at)
        waits.append(retry.next_at - now)
        now = retry.next_at
    assert max(waits) > 150.0 and all(w <= 300.0 for w in waits)  # reached the cap's range, never past it
    assert Retry().due(0.0) and Retry().failures == 0


def test_a_retry_policy_is_positive_and_its_base_within_its_cap() -> None:
    for base, cap in ((0.0, 1.0), (5.0, 1.0), (-1.0, 10.0)):
        with pytest.raises(ValueError):
            RetryPolicy(base, cap)


class _Counting(SerialDriver):
    """The real serial driver, counting its connect attempts."""

    attempts = 0

    async def connect(self) -> None:
        self.attempts += 1
        await super().connect()


def _unplugged(tmp_path: Path) -> tuple[Path, _Counting, Worker, list[float]]:
    """A worker with one serial printer whose port is missing (unplugged) until the link is made, and
    the clock it reads (set by the test)."""
    link = tmp_path / "ttyPRINTER"
    driver, now = _Counting("mk3", str(link), 250000), [1_000_000.0]
    worker = Worker(config(tmp_path, str(link)), Journal.open(tmp_path / "journal.db"), ScriptedHub(), {"mk3": driver},
                    PipelineSettings(tmp_path / "jobs", SliceCache(tmp_path / "slices", 1 << 20), SLICERS["prusaslicer"]),
                    rng=random.Random(3), clock=lambda: now[0])
    return link, driver, worker, now


async def _backoff_then_success(tmp_path: Path) -> None:
    link, driver, worker, now = _unplugged(tmp_path)
    try:
        for _ in range(6):  # heartbeats: the clock does not move, the next attempt is not yet due
            await worker._connect_printers()
        assert driver.attempts == 1
        waits = []
        for failures in range(2, 7):
            entry = (await worker.status())["printers"][0]
            next_at = datetime.fromisoformat(entry["next_connect_at"]).timestamp()
            assert entry["failed_connects"] == failures - 1 and str(link) in entry["last_connect_error"]
            waits.append(next_at - now[0])
            now[0] = next_at + 1  # the next heartbeat after it is due
            await worker._connect_printers()
            assert driver.attempts == failures
        entry = (await worker.status())["printers"][0]
        assert all(w <= min(PRINTER_RETRY.cap_s, PRINTER_RETRY.base_s * 2 ** i) + 1 for i, w in enumerate(waits))
        shown = render_status(await worker.status())
        assert f"connect failed: {entry['last_connect_error']} (6 attempt(s) failed; next at" in shown, shown
        async with simulated_printer() as sim:
            link.symlink_to(sim.port)  # plugged in
            now[0] += PRINTER_RETRY.cap_s + 1
            await worker._connect_printers()
            entry = (await worker.status())["printers"][0]
            assert entry["connected"] and entry["failed_connects"] == 0 and entry["next_connect_at"] is None
            assert entry["last_connect_error"] == "" and "connect failed" not in render_status(await worker.status())
            await driver.close()
    finally:
        await driver.close()


def test_an_unreachable_printer_is_tried_again_after_a_growing_wait_and_not_at_every_heartbeat(
        tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_backoff_then_success(tmp_path), 120))


async def _online_again_tries_at_once(tmp_path: Path) -> None:
    link, driver, worker, now = _unplugged(tmp_path)
    try:
        for _ in range(8):  # unplugged for a long while: its waits have grown towards the cap
            now[0] = worker._slots["mk3"].retry.next_at + 1
            await worker._connect_printers()
        assert driver.attempts == 8 and worker._slots["mk3"].retry.next_at > now[0]
        await worker.set_mode("mk3", "maintenance")
        await worker._connect_printers()  # into maintenance: the backoff stands
        assert driver.attempts == 8
        async with simulated_printer() as sim:
            link.symlink_to(sim.port)  # repaired and plugged in
            await worker.set_mode("mk3", "online")
            entry = (await worker.status())["printers"][0]
            assert entry["failed_connects"] == 0 and entry["next_connect_at"] is None
            await worker._connect_printers()  # the next heartbeat, the clock unmoved
            assert driver.attempts == 9 and (await worker.status())["printers"][0]["connected"]
            await driver.close()
    finally:
        await driver.close()


def test_setting_a_printer_online_starts_its_backoff_afresh_and_the_next_heartbeat_tries_it(
        tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_online_again_tries_at_once(tmp_path), 120))
