"""A simulated Marlin firmware for dry runs, the demo, tests and benchmarks.

Two layers, like the engine it talks to:

* :class:`MarlinModel` is pure: bytes go into its receive ring, time is passed
  in, response bytes come out. It follows Marlin 2.1's ``queue.cpp``: a
  byte-sized RX ring that drops bytes on overflow (a UART bridge), a command
  ring of ``command_buffer`` slots that is filled from the RX ring only while a
  slot is free, ``ok`` when a command has been *processed*, line numbers and
  XOR checksums, ``Error:``/``Resend:``/``ok`` with an RX flush on a bad line
  (hence resend storms), ``busy: processing`` keep-alives, ``M155``
  auto-reports, ``ADVANCED_OK`` (``ok N P B``) and the emergency parser.
* :class:`FirmwareRunner` puts a model on the master side of a pseudo-terminal
  and models the wire: a baud rate (8N1, 10 bits a byte) each way, an optional
  latency each way (a USB-serial bridge adds about 1 ms), and faults (corrupted
  lines, lost ``ok``, a fatal error at a line, unplugging the port).

Use :func:`simulated_printer` from asyncio tests (the firmware runs in a
thread), or :class:`SimulatedPrinterProcess` to run it in its own process
(benchmarks, so the host's CPU time is measured fairly)::

    async with simulated_printer(advanced_ok=True, baud=250000) as printer:
        driver = SerialDriver("sim", printer.port, 250000)

    with SimulatedPrinterProcess(FirmwareOptions(baud=115200)) as printer:
        ...  # stream to printer.port
    stats = printer.stats       # commands the firmware accepted, in order

``python -m node_agent.testing --link /tmp/ttySIM --baud 115200`` runs one
from a shell (the demo uses that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = [
    "FirmwareOptions",
    "FirmwareRunner",
    "FirmwareStats",
    "MarlinModel",
    "SimulatedPrinterProcess",
    "simulated_printer",
]

_NUMBER = re.compile(rb"N(-?\d+)")
_PARAM = re.compile(r"([A-Z])(-?\d+(?:\.\d*)?)", re.ASCII)
_FATAL_KILL = "Printer halted. kill() called!"
# Marlin 2.1 `MSG_ERR_*` texts (Marlin/src/core/language.h).
_ERR_CHECKSUM = "checksum mismatch, Last Line: "
_ERR_LINE_NO = "Line Number is not Last Line Number+1, Last Line: "
_ERR_NO_CHECKSUM = "No Checksum with line number, Last Line: "
_ERR_NO_LINE = "No Line Number with checksum, Last Line: "
_HEATING = frozenset({"M109", "M190"})


@dataclass(frozen=True, slots=True)
class FirmwareOptions:
    """What the simulated printer is like, including the faults it injects.

    ``drop_ok_after`` lists line numbers whose ``ok`` is lost on the wire;
    ``fail_at_line`` makes the firmware halt with ``fail_message`` once it
    processes that line; ``corrupt_rate`` is the share of host lines that
    arrive with one byte damaged (seeded by ``seed``, so runs repeat).

    Broken or hostile firmware: ``say_after`` prints extra lines once a numbered
    line is processed, before its ``ok`` (``(50, "!! MCU shutdown")``);
    ``stuck_at_line`` makes the command queue stick there (nothing more is
    acknowledged, not even ``M105``) while auto-reports go on and ``chatter``
    is written raw (no newline added) every ``chatter_interval_s``.
    """

    firmware_name: str = "Marlin 2.1.2.1 (Spimeforge simulator)"
    advanced_ok: bool = False
    rx_buffer_bytes: int = 128
    command_buffer: int = 4
    autoreport_temp: bool = True
    emergency_parser: bool = True
    busy_protocol: bool = True
    busy_interval_s: float = 2.0
    resend_ok: bool = True
    flow_control: bool = False
    baud: int | None = None
    latency_s: float = 0.0
    corrupt_rate: float = 0.0
    drop_ok_after: tuple[int, ...] = ()
    fail_at_line: int | None = None
    fail_message: str = "Thermal Runaway, system stopped! Heater_ID: 0"
    move_time_s: float = 0.0
    heat_rate_c_per_s: float = 100.0
    ambient_c: float = 21.0
    send_start: bool = True
    seed: int = 1
    say_after: tuple[tuple[int, str], ...] = ()
    stuck_at_line: int | None = None
    chatter: str = ""
    chatter_interval_s: float = 0.05


@dataclass(slots=True)
class FirmwareStats:
    """What the firmware saw: accepted commands in order, errors, overflows."""

    accepted: list[str] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    errors: int = 0
    corrupted: int = 0
    dropped_oks: int = 0
    rx_overflow_bytes: int = 0
    bytes_received: int = 0
    halted: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FirmwareStats:
        return cls(**json.loads(text))


@dataclass(slots=True)
class _Heater:
    current: float
    target: float = 0.0

    def advance(self, dt: float, rate: float, ambient: float) -> None:
        goal = self.target if self.target > 0 else ambient
        step = rate * dt
        if abs(goal - self.current) <= step:
            self.current = goal
        else:
            self.current += step if goal > self.current else -step


def _checksum(data: bytes) -> int:
    cs = 0
    for byte in data:
        cs ^= byte
    return cs


class MarlinModel:
    """Marlin's serial queue and a few of its G-codes, with time passed in.

    Feed wire bytes with :meth:`feed`, then call :meth:`step` with the current
    time; it returns the bytes the firmware prints. Nothing here reads a clock.
    """

    def __init__(self, options: FirmwareOptions, now: float = 0.0) -> None:
        self.options = options
        self.stats = FirmwareStats()
        self._rx = bytearray()
        self._line = bytearray()
        self._queue: deque[tuple[int | None, str]] = deque()
        self._out: list[bytes] = []
        self._last_n = 0
        self._rng = random.Random(options.seed)
        self._drop_ok = set(options.drop_ok_after)
        self._hotend = _Heater(options.ambient_c)
        self._bed = _Heater(options.ambient_c)
        self._now = now
        self._busy_until: float | None = None
        self._next_busy = 0.0
        self._report_interval = 0.0
        self._next_report = 0.0
        self._say_after = dict(options.say_after)
        self._stuck = False
        self._next_chatter = 0.0
        if options.send_start:
            self._say("start")

    # -- wire side -----------------------------------------------------
    def rx_space(self) -> int:
        """Free bytes in the receive ring."""
        return self.options.rx_buffer_bytes - len(self._rx)

    def feed(self, data: bytes) -> int:
        """Put wire bytes into the RX ring; what does not fit is lost (UART overrun).

        Returns:
            How many bytes were kept.
        """
        self.stats.bytes_received += len(data)
        if self.options.emergency_parser and b"M112" in data and not self.stats.halted:
            self._kill(_FATAL_KILL)  # the emergency parser acts in the RX ISR
        keep = data[: max(0, self.rx_space())]
        self.stats.rx_overflow_bytes += len(data) - len(keep)
        self._rx += keep
        return len(keep)

    def step(self, now: float) -> bytes:
        """Advance the firmware to ``now``; returns the bytes it printed."""
        self._advance_heaters(now)
        self._now = now
        if not self.stats.halted:
            self._run()
            self._keepalive()
        out = b"".join(self._out)
        self._out.clear()
        return out

    def next_wakeup(self) -> float | None:
        """The next time :meth:`step` has something to do on its own."""
        chatter = self._next_chatter if self._stuck and self.options.chatter else None
        times = [t for t in (self._busy_until, self._report_at(), self._busy_at(), chatter) if t]
        return min(times) if times else None

    # -- queue ---------------------------------------------------------
    def _run(self) -> None:
        while not self._stuck:
            self._fill_queue()
            if not self._queue or not self._execute_head():
                return

    def _fill_queue(self) -> None:
        while len(self._queue) < self.options.command_buffer and self._rx:
            newline = self._rx.find(b"\n")
            if newline < 0:
                self._line += self._rx
                self._rx.clear()
                return
            self._line += self._rx[:newline]
            del self._rx[: newline + 1]
            raw = bytes(self._line).strip(b"\r ")
            self._line.clear()
            if raw:
                self._accept_line(raw)

    def _accept_line(self, raw: bytes) -> None:
        rate = self.options.corrupt_rate
        if rate and raw.startswith(b"N") and self._rng.random() < rate:
            raw = self._corrupt(raw)
        if not raw.startswith(b"N"):
            if b"*" in raw:
                return self._line_error(_ERR_NO_LINE)
            return self._enqueue(None, raw)
        match = _NUMBER.match(raw)
        star = raw.rfind(b"*")
        if match is None:
            return self._line_error(_ERR_NO_LINE)
        number = int(match.group(1))
        body = raw[:star] if star >= 0 else raw
        is_m110 = b"M110" in body
        if is_m110:  # Marlin takes M110's own N (the second one) at parse time
            second = _NUMBER.search(body, body.find(b"M110"))
            number = int(second.group(1)) if second else number
        if number != self._last_n + 1 and not is_m110:
            return self._line_error(_ERR_LINE_NO)
        if star < 0:
            return self._line_error(_ERR_NO_CHECKSUM)
        digits = raw[star + 1 :]
        if not digits.isdigit() or int(digits) != _checksum(body):
            return self._line_error(_ERR_CHECKSUM)
        self._last_n = number
        self._enqueue(number, body[match.end() :].strip())

    def _corrupt(self, raw: bytes) -> bytes:
        self.stats.corrupted += 1
        pos = self._rng.randrange(len(raw))
        damaged = bytearray(raw)
        damaged[pos] = damaged[pos] ^ (1 << self._rng.randrange(5)) or 0x41
        if damaged[pos] in b"\n\r":
            damaged[pos] = 0x3F
        return bytes(damaged)

    def _line_error(self, message: str) -> None:
        # gcode_line_error(): report, flush the whole RX ring, ask for last_N+1.
        self.stats.errors += 1
        self._say(f"Error:{message}{self._last_n}")
        self._rx.clear()
        self._line.clear()
        self._say(f"Resend: {self._last_n + 1}")
        if self.options.resend_ok:
            self._say("ok")

    def _enqueue(self, number: int | None, body: bytes) -> None:
        command = body.decode("ascii", "replace")
        self._queue.append((number, command))
        self.stats.accepted.append(command)
        self.stats.numbers.append(number if number is not None else -1)

    def _execute_head(self) -> bool:
        number, command = self._queue[0]
        if self._busy_until is None:
            duration = self._start(command)
            if duration > 0:
                self._busy_until = self._now + duration
                self._next_busy = self._now + self.options.busy_interval_s
                return False
        elif self._now < self._busy_until or not self._wait_done(command):
            return False
        self._busy_until = None
        self._queue.popleft()
        if self.stats.halted:
            return False
        self._finish(number, command)
        return True

    def _wait_done(self, command: str) -> bool:
        if command.split()[0] not in _HEATING:
            return True
        heater = self._hotend if command.startswith("M109") else self._bed
        if abs(heater.current - heater.target) > 0.5:
            self._busy_until = self._now + 0.05
            return False
        return True

    # -- G-codes -------------------------------------------------------
    def _start(self, command: str) -> float:
        word, params = self._parse(command)
        if word in ("M104", "M109"):
            self._hotend.target = params.get("S", 0.0)
        elif word in ("M140", "M190"):
            self._bed.target = params.get("S", 0.0)
        if word in _HEATING:
            return 0.01
        if word == "G4":
            return params.get("P", 0.0) / 1000 + params.get("S", 0.0)
        if word in ("G0", "G1"):
            return self.options.move_time_s
        return 0.0

    def _finish(self, number: int | None, command: str) -> None:
        word, params = self._parse(command)
        if number is not None and number == self.options.fail_at_line:
            return self._kill(self.options.fail_message)
        if number is not None and number in self._say_after:
            self._say(self._say_after[number])
        if number is not None and number == self.options.stuck_at_line:
            self._stuck = True  # e.g. a planner that never frees: no ok from here on
            self._next_chatter = self._now
            return
        if word == "M112":
            return self._kill(_FATAL_KILL)
        if word == "M115":
            self._report_capabilities()
        elif word == "M105":
            return self._say("ok" + self._temperatures())
        elif word == "M155":
            self._report_interval = params.get("S", 0.0)
            self._next_report = self._now + self._report_interval
        elif not (word[:1] in "GMT" and word[1:].isdigit()):
            self._say(f'echo:Unknown command: "{command}"')
        self._ok(number)

    @staticmethod
    def _parse(command: str) -> tuple[str, dict[str, float]]:
        word, _, rest = command.partition(" ")
        return word.upper(), {k: float(v) for k, v in _PARAM.findall(rest.upper())}

    def _ok(self, number: int | None) -> None:
        if number is not None and number in self._drop_ok:
            self._drop_ok.discard(number)
            self.stats.dropped_oks += 1
            return
        if not self.options.advanced_ok:
            return self._say("ok")
        n_field = f" N{number}" if number is not None else ""
        free = self.options.command_buffer - len(self._queue) - 1
        self._say(f"ok{n_field} P15 B{free}")

    def _report_capabilities(self) -> None:
        o = self.options
        self._say(
            f"FIRMWARE_NAME:{o.firmware_name} SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin"
            " PROTOCOL_VERSION:1.0 MACHINE_TYPE:Spimeforge Simulator EXTRUDER_COUNT:1"
        )
        caps = {
            "SERIAL_XON_XOFF": 0,
            "EEPROM": 1,
            "AUTOREPORT_TEMP": int(o.autoreport_temp),
            "BUSY_PROTOCOL": int(o.busy_protocol),
            "EMERGENCY_PARSER": int(o.emergency_parser),
            "HOST_ACTION_COMMANDS": 1,
            "EXTENDED_M20": 0,
        }
        for name, value in caps.items():
            self._say(f"Cap:{name}:{value}")

    def _kill(self, message: str) -> None:
        self.stats.halted = message
        self._queue.clear()
        self._rx.clear()
        self._say(f"Error:{message}")
        if message != _FATAL_KILL:
            self._say(f"Error:{_FATAL_KILL}")

    # -- periodic output -----------------------------------------------
    def _temperatures(self) -> str:
        h, b = self._hotend, self._bed
        return f" T:{h.current:.2f} /{h.target:.2f} B:{b.current:.2f} /{b.target:.2f} @:0 B@:0"

    def _advance_heaters(self, now: float) -> None:
        dt = max(0.0, now - self._now)
        for heater in (self._hotend, self._bed):
            heater.advance(dt, self.options.heat_rate_c_per_s, self.options.ambient_c)

    def _report_at(self) -> float | None:
        return self._next_report if self._report_interval > 0 else None

    def _busy_at(self) -> float | None:
        return self._next_busy if self._busy_until is not None else None

    def _keepalive(self) -> None:
        if self._report_interval > 0 and self._now >= self._next_report:
            self._say(self._temperatures())
            self._next_report = self._now + self._report_interval
        if self._busy_until is not None and self._now >= self._next_busy:
            if self.options.busy_protocol:
                self._say("echo:busy: processing")
            self._next_busy = self._now + self.options.busy_interval_s
        if self._stuck and self.options.chatter and self._now >= self._next_chatter:
            self._out.append(self.options.chatter.encode("ascii"))
            self._next_chatter = self._now + self.options.chatter_interval_s

    def _say(self, text: str) -> None:
        self._out.append(text.encode("ascii") + b"\n")


class _Wire:
    """One direction of a serial link: bytes leave at the baud rate, plus latency."""

    def __init__(self, baud: int | None, latency_s: float) -> None:
        self._byte_s = 10.0 / baud if baud else 0.0
        self._latency = latency_s
        self._chunks: deque[tuple[bytes, float]] = deque()  # data, first byte's arrival
        self._busy_until = 0.0

    def send(self, data: bytes, now: float) -> None:
        if not data:
            return
        start = max(now, self._busy_until)
        self._busy_until = start + len(data) * self._byte_s
        self._chunks.append((data, start + self._latency + self._byte_s))

    def unread(self, data: bytes, now: float) -> None:
        """Put bytes back at the head (flow control held them on the wire)."""
        self._chunks.appendleft((data, now + self._byte_s))

    def arrived(self, now: float, whole: bool = False) -> bytes:
        """Bytes that have reached the far end by ``now`` (whole chunks only if asked)."""
        out = []
        while self._chunks:
            data, first = self._chunks[0]
            if now < first:
                break
            n = len(data) if not self._byte_s else int((now - first) / self._byte_s) + 1
            if whole and n < len(data):
                break
            out.append(data[:n])
            self._chunks.popleft()
            if n < len(data):
                self._chunks.appendleft((data[n:], first + n * self._byte_s))
                break
        return b"".join(out)

    def next_arrival(self, whole: bool = False) -> float | None:
        """When the next line (or, with ``whole``, the next chunk) has fully arrived."""
        if not self._chunks:
            return None
        data, first = self._chunks[0]
        newline = -1 if whole else data.find(b"\n")
        index = newline if newline >= 0 else len(data) - 1
        return first + index * self._byte_s


class FirmwareRunner:
    """Runs a :class:`MarlinModel` on a pty in a background thread.

    ``port`` is the path a host opens (the slave side, or ``link`` when given,
    a symlink that survives :meth:`unplug` / :meth:`replug`).
    """

    def __init__(self, options: FirmwareOptions | None = None, link: str | None = None) -> None:
        self.options = options or FirmwareOptions()
        self._link = link
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.model = MarlinModel(self.options, time.monotonic())
        self._master = -1
        self._slave = -1
        self._unsent = b""
        self.port = ""
        self._open_pty()

    @property
    def stats(self) -> FirmwareStats:
        """What the firmware accepted so far (the live object; copy it if needed)."""
        return self.model.stats

    def start(self) -> FirmwareRunner:
        """Start the firmware thread; returns self."""
        self._thread = threading.Thread(target=self.serve, name="simulated-marlin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the firmware and close the pty; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._close_pty()
        if self._link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link)

    def unplug(self) -> None:
        """Make the port disappear, as a USB cable pulled out does."""
        with self._lock:
            self._close_pty()
            if self._link:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._link)

    def replug(self, reset: bool = True) -> None:
        """Bring the port back (a new pty behind the same ``link``); the board restarts."""
        with self._lock:
            if reset:
                self.model = MarlinModel(self.options, time.monotonic())
            self._open_pty()

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline before the host opens it
        os.set_blocking(self._master, False)
        slave_path = os.ttyname(self._slave)
        self._in = _Wire(self.options.baud, self.options.latency_s)
        self._out = _Wire(self.options.baud, self.options.latency_s)
        self._unsent = b""
        if self._link:
            tmp = f"{self._link}.{os.getpid()}.tmp"
            os.symlink(slave_path, tmp)
            os.replace(tmp, self._link)
        self.port = self._link or slave_path

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def serve(self) -> None:
        """The firmware loop; returns when :meth:`stop` is called."""
        while not self._stop.is_set():
            with self._lock:
                master = self._master
                timeout = self._cycle(time.monotonic()) if master >= 0 else 0.05
                writing = [master] if master >= 0 and self._unsent else []
            if master < 0:
                time.sleep(timeout)
                continue
            with contextlib.suppress(OSError, ValueError):
                select.select([master], writing, [], timeout)

    def _cycle(self, now: float) -> float:
        with contextlib.suppress(BlockingIOError, OSError):
            while data := os.read(self._master, 65536):
                self._in.send(data, now)
        self._deliver(now)
        self._out.send(self.model.step(now), now)
        self._unsent += self._out.arrived(now, whole=True)
        if self._unsent:
            with contextlib.suppress(BlockingIOError, OSError):
                written = os.write(self._master, self._unsent)
                self._unsent = self._unsent[written:]
        wakeups = [self._in.next_arrival(), self._out.next_arrival(True), self.model.next_wakeup()]
        soonest = min((t for t in wakeups if t is not None), default=now + 0.05)
        return min(0.05, max(0.0, soonest - time.monotonic()))

    def _deliver(self, now: float) -> None:
        # Marlin parses bytes about as fast as they arrive, so feed line by line
        # and let the model move each complete line into its command ring.
        data = self._in.arrived(now)
        pos = 0
        while pos < len(data):
            newline = data.find(b"\n", pos)
            end = len(data) if newline < 0 else newline + 1
            piece = data[pos:end]
            if self.options.flow_control:
                kept = self.model.feed(piece[: max(0, self.model.rx_space())])
                if kept < len(piece):
                    self._in.unread(data[pos + kept :], now)
                    return
            else:
                self.model.feed(piece)
            self._out.send(self.model.step(now), now)
            pos = end


@contextlib.asynccontextmanager
async def simulated_printer(
    link: str | None = None, **options: object
) -> AsyncIterator[FirmwareRunner]:
    """Run a simulated Marlin on a pty for the duration of the block.

    Args:
        link: optional symlink path for the port (needed for unplug/replug).
        **options: fields of :class:`FirmwareOptions`.

    Yields:
        The running :class:`FirmwareRunner`; open ``runner.port``.
    """
    runner = FirmwareRunner(FirmwareOptions(**options), link=link).start()  # type: ignore[arg-type]
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.stop)


class SimulatedPrinterProcess:
    """The simulated firmware in a child process (fair CPU accounting for benchmarks).

    Use as a context manager; ``port`` is ready on entry and ``stats`` is
    filled on exit.
    """

    def __init__(self, options: FirmwareOptions | None = None, start_timeout_s: float = 10.0):
        self.options = options or FirmwareOptions()
        self._dir = tempfile.TemporaryDirectory(prefix="spime-fw-")
        self.port = os.path.join(self._dir.name, "ttySIM")
        self._stats_path = os.path.join(self._dir.name, "stats.json")
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self.stats: FirmwareStats | None = None

    def __enter__(self) -> SimulatedPrinterProcess:  # noqa: PYI034
        opts = json.dumps(dataclasses.asdict(self.options))
        argv = [sys.executable, "-m", "node_agent.testing", "--link", self.port]
        argv += ["--options", opts, "--stats", self._stats_path]
        self._proc = subprocess.Popen(argv)
        deadline = time.monotonic() + self._timeout
        while not os.path.exists(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulated firmware did not start: {argv}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> FirmwareStats | None:
        """Stop the child (SIGTERM) and read what the firmware recorded; idempotent."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
            if os.path.exists(self._stats_path):
                with open(self._stats_path, encoding="ascii") as fh:
                    self.stats = FirmwareStats.from_json(fh.read())
            self._dir.cleanup()
        return self.stats


def _options_from_json(text: str) -> FirmwareOptions:
    raw = json.loads(text) if text else {}
    raw["drop_ok_after"] = tuple(raw.get("drop_ok_after", ()))
    raw["say_after"] = tuple((int(n), str(t)) for n, t in raw.get("say_after", ()))
    return FirmwareOptions(**raw)


def main(argv: list[str] | None = None) -> int:
    """Run the simulated firmware until SIGTERM/SIGINT (the demo and benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m node_agent.testing")
    parser.add_argument("--link", required=True, help="symlink path to create for the port")
    parser.add_argument("--options", default="", help="FirmwareOptions as JSON")
    parser.add_argument("--baud", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--advanced-ok", action="store_true")
    parser.add_argument("--stats", default="", help="write FirmwareStats JSON here on exit")
    args = parser.parse_args(argv)
    options = _options_from_json(args.options)
    overrides: dict[str, object] = {}
    if args.baud:
        overrides["baud"] = args.baud
    if args.latency_ms is not None:
        overrides["latency_s"] = args.latency_ms / 1000
    if args.advanced_ok:
        overrides["advanced_ok"] = True
    runner = FirmwareRunner(dataclasses.replace(options, **overrides), link=args.link)  # type: ignore[arg-type]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner.start()
    print(f"simulated Marlin on {runner.port}", file=sys.stderr, flush=True)
    stop.wait()
    runner.stop()
    if args.stats:
        with open(args.stats, "w", encoding="ascii") as fh:
            fh.write(runner.stats.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
