"""Progress on stderr for uploads, downloads and other long steps of the ``spime`` commands.

On a terminal: a rich bar with amount, rate and time left (colour off when
``NO_COLOR`` is set, https://no-color.org). Anywhere else (a pipe, a log file,
CI): plain lines only, one at each quarter and one at the end, so logs stay
readable. node_agent/progress.py is the same adapter for `spime-node`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["Progress", "format_amount"]

_STEPS = 4  # plain mode: a line at 25 %, 50 %, 75 %, and the end


def format_amount(n: float, unit: str) -> str:
    """``12.3 MB`` for bytes (decimal units, as rich shows them), ``1,234 lines`` otherwise."""
    if unit != "bytes":
        return f"{n:,.0f} {unit}"
    for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= scale:
            return f"{n / scale:.1f} {name}"
    return f"{n:.0f} B"


class Progress:
    """A progress display for ``total`` units; ``advance`` is thread-safe.

    ``total`` and ``label`` may be changed while it runs (an upload learns its total as
    files are offered). ``finish()`` ends it; calling it twice is harmless.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, *, unit: str = "bytes",
                 environ: Mapping[str, str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.unit = unit
        self.done = 0
        self._total = max(total, 0)
        self._label = label
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._step = 0
        self._finished = False
        env = os.environ if environ is None else environ
        self._bar = _RichBar(self, bool(env.get("NO_COLOR"))) if _is_terminal(self.stream) else None

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = max(value, 0)
        if self._bar:
            self._bar.update(self)

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        self._label = value
        if self._bar:
            self._bar.update(self)

    def advance(self, n: int) -> None:
        """Count ``n`` more units."""
        with self._lock:
            self.done += n
            if self._bar:
                self._bar.advance(n)
            elif self._total:
                step = self.done * _STEPS // self._total
                if self._step < step < _STEPS:  # the end is finish()'s line
                    self._step = step
                    self._line(f"{100 * step // _STEPS}%")

    def finish(self) -> None:
        """End the display with a summary (amount, time, rate)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._bar:
                self._bar.stop()
            else:
                self._line("done")

    def _line(self, state: str) -> None:
        elapsed = max(time.monotonic() - self._start, 1e-6)
        rate = self.done / elapsed
        left = f", {(self._total - self.done) / rate:.0f} s left" if rate and self.done < self._total else ""
        of = f" of {format_amount(self._total, self.unit)}" if self._total else ""
        self.stream.write(f"{self._label}: {state} ({format_amount(self.done, self.unit)}{of}, "
                          f"{format_amount(rate, self.unit)}/s{left})\n")
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _RichBar:
    """The terminal display; rich is imported only here (~60 ms a plain run need not pay)."""

    def __init__(self, owner: Progress, no_color: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(file=owner.stream, no_color=no_color)
        amount: list[Any] = [DownloadColumn(), TransferSpeedColumn()] if owner.unit == "bytes" \
            else [MofNCompleteColumn()]
        self._progress = RichProgress(TextColumn("{task.description}"), BarColumn(), *amount,
                                      TimeRemainingColumn(), console=console, transient=False)
        self._task = self._progress.add_task(owner.label, total=owner.total or None)
        self._progress.start()

    def update(self, owner: Progress) -> None:
        self._progress.update(self._task, total=owner.total or None, description=owner.label)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def stop(self) -> None:
        self._progress.stop()
