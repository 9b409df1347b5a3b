"""The single subprocess helper: output, errors, time limits and process-group kills."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from slicer_bridge.base import RenderError, SlicerError, ToolNotFound
from slicer_bridge.run import run, run_sync


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def _wait_dead(pid: int, deadline_s: float = 5.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_captures_stdout_stderr_and_code() -> None:
    done = run_sync([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"],
                    timeout_s=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")
    assert done.argv[0] == sys.executable and done.elapsed_s > 0


def test_nonzero_exit_raises_with_all_four_in_the_message() -> None:
    argv = [sys.executable, "-c", "import sys; print('partial'); sys.exit('broken profile')"]
    with pytest.raises(SlicerError) as info:
        run_sync(argv, timeout_s=30)
    err = info.value
    assert (err.returncode, err.stdout, err.timed_out) == (1, "partial\n", False)
    assert "broken profile" in err.stderr
    message = str(err)
    for part in ("command: " + sys.executable, "return code: 1", "partial", "broken profile"):
        assert part in message
    assert err.reason.endswith("exited with code 1: broken profile")
    assert not err.retryable


def test_check_false_returns_the_failure() -> None:
    done = run_sync([sys.executable, "-c", "raise SystemExit(3)"], timeout_s=30, check=False)
    assert done.returncode == 3


def test_error_class_is_chosen_by_the_caller() -> None:
    with pytest.raises(RenderError):
        run_sync([sys.executable, "-c", "raise SystemExit(2)"], timeout_s=30, error=RenderError)


def test_undecodable_output_is_replaced_not_fatal() -> None:
    done = run_sync([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'\\xff\\xfe')"],
                    timeout_s=30)
    assert done.stdout == "\ufffd\ufffd"


def test_missing_program_says_to_run_install() -> None:
    with pytest.raises(ToolNotFound, match=r"'no-such-slicer-binary'.*ops/install.sh"):
        run_sync(["no-such-slicer-binary", "--help"], timeout_s=5)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}; echo started; wait"
    with pytest.raises(SlicerError) as info:
        run_sync(["sh", "-c", script], timeout_s=1.0)
    err = info.value
    assert err.timed_out and err.returncode is None
    assert "killed at the time limit of 1 s" in str(err)
    assert _wait_dead(int(pidfile.read_text()))


def test_cancelling_the_caller_kills_the_program(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"

    async def main() -> None:
        task = asyncio.create_task(run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"],
                                       timeout_s=300))
        end = time.monotonic() + 10
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _wait_dead(int(pidfile.read_text()))


def test_many_concurrent_runs() -> None:
    async def main() -> list[str]:
        runs = [run([sys.executable, "-c", f"print({i})"], timeout_s=60) for i in range(8)]
        return [d.stdout.strip() for d in await asyncio.gather(*runs)]

    assert asyncio.run(main()) == [str(i) for i in range(8)]


@pytest.mark.parametrize(("signal_name", "retryable"), [("KILL", True), ("TERM", True),
                                                        ("ABRT", False), ("SEGV", False)])
def test_retryable_only_when_killed_from_outside(signal_name: str, retryable: bool) -> None:
    with pytest.raises(SlicerError) as info:
        run_sync(["sh", "-c", f"kill -{signal_name} $$"], timeout_s=30)
    assert info.value.returncode is not None and info.value.returncode < 0
    assert info.value.retryable is retryable


def test_flood_of_output_is_bounded_and_keeps_the_end() -> None:
    script = ("import sys\nfor i in range(200):\n    sys.stderr.write('x' * 100_000 + '\\n')\n"
              "sys.stderr.write('the last words\\n'); sys.exit(4)")
    with pytest.raises(SlicerError) as info:
        run_sync([sys.executable, "-c", script], timeout_s=60)
    err = info.value
    assert err.stderr.startswith("[... first ") and err.stderr.endswith("the last words\n")
    assert len(err.stderr) < 5 << 20
    assert err.reason.endswith("the last words") and len(str(err)) < 20_000


def test_output_written_before_the_time_limit_is_kept() -> None:
    script = "import sys, time\nprint('working', flush=True)\ntime.sleep(300)"
    with pytest.raises(SlicerError) as info:
        run_sync([sys.executable, "-c", script], timeout_s=1.0)
    assert info.value.timed_out and info.value.stdout == "working\n"
