"""Child processes of ``spime demo``: started in their own process groups, always reaped.

Every child runs in a new session (its own process group), so a Ctrl-C at the terminal
reaches only the demo, which then stops its children in reverse order: SIGTERM to the
group, SIGKILL to the group after a grace period. Nothing here knows the story.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TypeVar

from hub.client.common import ClientError

__all__ = ["Child", "Children", "StepFailed", "command", "interrupts_raise", "wait_for"]

T = TypeVar("T")
POLL_S = 0.2


class StepFailed(ClientError):
    """A demo step did not get the outcome the story expects."""


def command(name: str) -> list[str]:
    """argv prefix that runs the console script ``name`` of this installation."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"spime-hub": "hub", "spime-node": "node_agent", "spime": "hub.client.cli"}[name]
    return [sys.executable, "-m", module]


def wait_for(what: str, check: Callable[[], T | None], deadline_s: float,
             explain: Callable[[], str] = lambda: "") -> T:
    """Poll ``check`` until it returns a truthy value, at most ``deadline_s`` seconds.

    Raises:
        StepFailed: the deadline passed first (with ``explain()`` for the reader).
    """
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise StepFailed(f"gave up after {deadline_s:.0f} s waiting for {what}\n{explain()}")
        time.sleep(POLL_S)


@dataclass
class Child:
    """One started process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    out: Path | None = None

    def alive(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of its log."""
        if not self.log.exists():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Children:
    """Every process the demo started, stopped in reverse order by :meth:`stop_all`."""

    logs: Path
    started: list[Child] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], cwd: Path | None = None,
              stdout: bool = False) -> Child:
        """Start ``argv`` in a new process group, its output to ``LOGS/NAME.log``.

        With ``stdout``, standard output goes to ``LOGS/NAME.out`` on its own.

        Raises:
            StepFailed: the program could not be started.
        """
        log, out_path = self.logs / f"{name}.log", self.logs / f"{name}.out"
        try:
            with log.open("ab") as err, (out_path.open("wb") if stdout else log.open("ab")) as out:
                proc = subprocess.Popen(argv, stdout=out,
                                        stderr=err if stdout else subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
        except OSError as exc:
            raise StepFailed(f"could not start {name} ({argv[0]}): {exc}") from exc
        child = Child(name, proc, log, out_path)
        self.started.append(child)
        return child

    def run_all(self, commands: Mapping[str, list[str]], deadline_s: float) -> dict[str, str]:
        """Run one-shot commands side by side; each one's stdout once all have exited 0.

        Raises:
            StepFailed: one failed or they did not all finish within ``deadline_s``.
        """
        started = {name: self.spawn(name, argv, stdout=True) for name, argv in commands.items()}
        end = time.monotonic() + deadline_s
        for name, child in started.items():
            try:
                code = child.process.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise StepFailed(f"`{' '.join(commands[name])}` took over {deadline_s:.0f} s") from exc
            if code != 0:
                raise StepFailed(f"`{' '.join(commands[name])}` exited {code}:\n{child.log_tail()}")
        return {name: (self.logs / f"{name}.out").read_text(encoding="utf-8") for name in started}

    def adopt(self, name: str, process: subprocess.Popen[bytes], log: Path) -> Child:
        """Track a process started elsewhere (in its own session) for cleanup."""
        child = Child(name, process, log)
        self.started.append(child)
        return child

    def pids(self) -> list[int]:
        """Process ids of every child started so far."""
        return [c.process.pid for c in self.started]

    def stop(self, child: Child, grace_s: float = 20.0) -> None:
        """SIGTERM the child's group, SIGKILL the group after ``grace_s``; reap it."""
        if not child.alive():
            return  # ended long ago: its group id may be someone else's by now
        _signal_group(child.process.pid, signal.SIGTERM)
        try:
            child.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait(grace_s)
        _signal_group(child.process.pid, signal.SIGKILL)  # stragglers the leader left behind

    def stop_all(self, grace_s: float = 20.0) -> None:
        """Stop every child, newest first (agent before printers before hub)."""
        for child in reversed(self.started):
            self.stop(child, grace_s)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt (like Ctrl-C) while inside."""
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
