"""The push-time check's worker processes: limits end a check, the child is killed, the push gets a finding."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trimesh

from hub.workers import CheckLimits, CheckPool
from tests.hub.test_api_printability import _stl


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(pool: CheckPool, blob: Path) -> tuple[dict[str, object], list[int]]:
    async def go() -> tuple[dict[str, object], list[int]]:
        task = asyncio.ensure_future(pool.check(str(blob), "part.stl"))
        while not pool.pids() and not task.done():
            await asyncio.sleep(0.01)  # yields to the loop until the worker exists
        pids = pool.pids()
        return await task, pids

    try:
        return asyncio.run(go())
    finally:
        pool.close()


@pytest.mark.parametrize(("target", "limits", "reason"), [
    ("spin", CheckLimits(size=1, cpu_s=1, timeout_s=120), "more CPU time"),
    ("hog", CheckLimits(size=1, memory_bytes=512 << 20, timeout_s=120), "more memory"),
    ("stall", CheckLimits(size=1, timeout_s=1), "longer than 1 s"),
])
def test_a_check_over_its_limit_is_killed_and_becomes_a_finding(
        tmp_path: Path, target: str, limits: CheckLimits, reason: str) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"solid x\nendsolid x\n")
    pool = CheckPool(limits, target=f"tests.hub.check_targets:{target}")
    report, pids = _run(pool, blob)
    assert report["ok"] is False and report["path"] == "part.stl"
    findings = report["findings"]
    assert isinstance(findings, list) and findings[0]["code"] == "check_aborted"
    assert reason in findings[0]["message"]
    assert len(pids) == 1 and not _alive(pids[0]), "the over-limit worker process was left behind"
    assert pool.pids() == []


def test_a_worker_is_reused_and_killed_on_close(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(_stl(trimesh.creation.box(extents=(20, 20, 20))))
    pool = CheckPool(CheckLimits(size=1, timeout_s=120))

    async def go() -> tuple[list[dict[str, object]], list[int]]:
        reports = [await pool.check(str(blob), "box.stl") for _ in range(2)]
        return reports, pool.pids()

    try:
        reports, pids = asyncio.run(go())
    finally:
        pool.close()
    assert [r["ok"] for r in reports] == [True, True] and reports[0]["faces"] == 12
    assert len(pids) == 1 and not _alive(pids[0])


_ORPHAN = """
import asyncio, sys
from hub.workers import CheckLimits, CheckPool
pool = CheckPool(CheckLimits(size=1, timeout_s=600), target="tests.hub.check_targets:stall")
async def main():
    task = asyncio.ensure_future(pool.check(sys.argv[1], "part.stl"))
    while not pool.pids():
        await asyncio.sleep(0.01)
    print(pool.pids()[0], flush=True)
    await task
asyncio.run(main())
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_a_worker_dies_with_a_hub_that_was_killed(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"solid x\nendsolid x\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "proto")])}
    hub = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(blob)], stdout=subprocess.PIPE, text=True,
                           env=env, cwd=root)
    assert hub.stdout is not None
    worker = int(hub.stdout.readline())
    hub.send_signal(signal.SIGKILL)
    hub.wait()
    hub.stdout.close()
    deadline = time.monotonic() + 30
    while not _gone(worker):
        assert time.monotonic() < deadline, "the check worker outlived its killed hub"
        time.sleep(0.05)
