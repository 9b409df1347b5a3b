"""The one way the slicer bridge runs an external program (prusa-slicer, openscad, admesh).

Every call has a time limit. The program runs in its own session, so at the limit the
whole process group is killed (OpenSCAD and PrusaSlicer may start helpers), and a
failure raises a `ToolError` subclass carrying the argv, exit code, stdout and stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slicer_bridge.base import SlicerError, ToolError, ToolNotFound

__all__ = ["Completed", "run", "run_sync"]

# After a kill, how long to wait for the pipes to close before giving up on the output.
_DRAIN_AFTER_KILL_S = 5.0


@dataclass(frozen=True, slots=True)
class Completed:
    """A program that ran to completion.

    Attributes:
        argv: The command line.
        returncode: Its exit code.
        stdout: Decoded stdout (undecodable bytes replaced).
        stderr: Decoded stderr.
        elapsed_s: Wall time from spawn to exit.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _spawn(
    argv: Sequence[str], cwd: Path | None, env: Mapping[str, str] | None
) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolNotFound(argv[0]) from exc


async def _communicate_killed(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    _kill_group(proc)
    try:
        return await asyncio.wait_for(proc.communicate(), _DRAIN_AFTER_KILL_S)
    except TimeoutError:
        return b"", b""


async def run(
    argv: Sequence[str],
    *,
    timeout_s: float,
    error: type[ToolError] = SlicerError,
    check: bool = True,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run `argv` to completion within `timeout_s` seconds and capture its output.

    Args:
        argv: Program and arguments; no shell is involved.
        timeout_s: Time limit; at the limit the whole process group is killed.
        error: The `ToolError` subclass to raise (SlicerError, RenderError).
        check: Raise `error` on a non-zero exit code.
        cwd: Working directory.
        env: Full environment for the child (inherit ours when None).

    Returns:
        The completed run.

    Raises:
        ToolNotFound: The program is not installed.
        ToolError: (as `error`) killed at the time limit (`timed_out` is True), or a
            non-zero exit when `check` is set. Cancelling the caller kills the group too.
    """
    argv = tuple(str(a) for a in argv)
    started = time.monotonic()
    proc = await _spawn(argv, cwd, env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        out, err = await _communicate_killed(proc)
        raise error(
            argv, None, _decode(out), _decode(err), timed_out=True,
            reason=f"{Path(argv[0]).name} was killed at the time limit of {timeout_s:g} s",
        ) from None
    except BaseException:
        # Cancelled by the caller: the program must not outlive the job.
        _kill_group(proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _DRAIN_AFTER_KILL_S)
        raise
    result = Completed(argv, proc.returncode or 0, _decode(out), _decode(err),
                       time.monotonic() - started)
    if check and result.returncode != 0:
        raise error(argv, result.returncode, result.stdout, result.stderr)
    return result


def run_sync(argv: Sequence[str], **kwargs: object) -> Completed:
    """`run` for callers without an event loop (CLI commands, benchmarks).

    Raises:
        ToolNotFound: See `run`.
        ToolError: See `run`.
    """
    return asyncio.run(run(argv, **kwargs))  # type: ignore[arg-type]
