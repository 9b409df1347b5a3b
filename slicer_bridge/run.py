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
from typing import Any

from slicer_bridge.base import SlicerError, ToolError, ToolNotFound

__all__ = ["Completed", "run", "run_sync"]

# After a kill, how long to wait for the pipes to close before giving up on the output.
_DRAIN_AFTER_KILL_S = 5.0
_MAX_CAPTURE_BYTES = 4 << 20
_READ_BYTES = 1 << 16


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


class _Capture:
    """One output stream, keeping only its last `_MAX_CAPTURE_BYTES` (a chatty or
    looping program must not fill our memory)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        while stream is not None and (chunk := await stream.read(_READ_BYTES)):
            self.data += chunk
            excess = len(self.data) - _MAX_CAPTURE_BYTES
            if excess > 0:
                del self.data[:excess]
                self.dropped += excess

    def text(self) -> str:
        cut = f"[... first {self.dropped} bytes dropped ...]\n" if self.dropped else ""
        return cut + self.data.decode("utf-8", errors="replace")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process, waiter: asyncio.Future[Any]) -> None:
    _kill_group(proc)
    # The drains end when the pipes close; give up on them if a stray holds a pipe open.
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(waiter), _DRAIN_AFTER_KILL_S)
    waiter.cancel()


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
        The completed run (each stream keeps at most its last 4 MiB).

    Raises:
        ToolNotFound: The program is not installed.
        ToolError: (as `error`) killed at the time limit (`timed_out` is True), or a
            non-zero exit when `check` is set. Cancelling the caller kills the group too.
    """
    argv = tuple(str(a) for a in argv)
    started = time.monotonic()
    proc = await _spawn(argv, cwd, env)
    out, err = _Capture(), _Capture()
    waiter = asyncio.ensure_future(asyncio.gather(out.drain(proc.stdout), err.drain(proc.stderr),
                                                  proc.wait()))
    try:
        await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
    except TimeoutError:
        await _reap(proc, waiter)
        raise error(
            argv, None, out.text(), err.text(), timed_out=True,
            reason=f"{Path(argv[0]).name} was killed at the time limit of {timeout_s:g} s",
        ) from None
    except BaseException:
        # Cancelled by the caller: the program must not outlive the job.
        await _reap(proc, waiter)
        raise
    returncode = proc.returncode if proc.returncode is not None else 0
    result = Completed(argv, returncode, out.text(), err.text(), time.monotonic() - started)
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
