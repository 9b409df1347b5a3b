"""A sans-IO engine for the Marlin host protocol (bytes in, events out).

Modelled on h11: the engine reads no clock and touches no port. The driver
feeds what the printer sent to :meth:`MarlinProtocol.receive_data`, drains
:meth:`MarlinProtocol.next_event` until :data:`NEED_DATA`, and writes whatever
:meth:`MarlinProtocol.data_to_send` returns. Commands (start a job, pause,
cancel, emergency stop, probe) change the state and queue lines; they never
write anything themselves.

Protocol facts it follows (Marlin 2.1 ``queue.cpp``): every line is
``N<n> <command>*<xor>``; a bad line makes Marlin print ``Error:…``, flush its
whole receive ring and ask ``Resend: <last_N+1>`` (then ``ok``), so every
line already on the wire fails too (a *resend storm*). The engine therefore
treats the first ``Resend`` as the start of a resync: it stops, sends an
un-numbered ``M105`` as a barrier (it is processed in order, so its ``ok T:``
proves everything before it was handled), ignores the stale requests that
arrive before the barrier answers, then replays from N. No line is skipped
and none is sent twice past the firmware's sequence check.

The send-ahead window counts what can be waiting in the firmware: up to
``commands`` lines in its command ring and ``rx_bytes`` bytes in its receive
ring. It is exact with ``ADVANCED_OK`` (``ok N<n> P<p> B<b>`` names the line),
uses Marlin's defaults (128 bytes, 4 commands) when ``M115`` says Marlin,
takes per-printer overrides, and falls back to one line per ``ok`` for
firmware it cannot identify.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Final

from node_agent.events import (
    Busy,
    ConnectionClosed,
    Echo,
    Event,
    FirmwareError,
    FirmwareInfo,
    HostAction,
    JobFinished,
    JobOutcome,
    LocalProtocolError,
    Ok,
    Other,
    RemoteProtocolError,
    Resend,
    Start,
    TemperatureReport,
    Wait,
)
from node_agent.gcode import PreparedJob, parse_words

__all__ = [
    "NEED_DATA",
    "Busy",
    "ConnectionClosed",
    "Echo",
    "Event",
    "FirmwareError",
    "FirmwareInfo",
    "HostAction",
    "JobFinished",
    "JobOutcome",
    "LocalProtocolError",
    "MarlinProtocol",
    "Ok",
    "Other",
    "ProtocolSettings",
    "RemoteProtocolError",
    "Resend",
    "Start",
    "State",
    "TemperatureReport",
    "Wait",
    "Window",
    "checksum",
    "frame",
]


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


# -- states --------------------------------------------------------------------
class State(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    IDLE = "idle"
    PRINTING = "printing"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    ERROR = "error"


_S = State
# (state, trigger) -> next state. Anything missing is illegal; ERROR has no way out.
_TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (_S.DISCONNECTED, "connect"): _S.CONNECTING,
    (_S.CONNECTING, "connect"): _S.CONNECTING,
    (_S.IDLE, "connect"): _S.CONNECTING,
    (_S.CONNECTING, "identified"): _S.IDLE,
    (_S.IDLE, "start_job"): _S.PRINTING,
    (_S.PRINTING, "pause"): _S.PAUSED,
    (_S.PAUSED, "resume"): _S.PRINTING,
    (_S.PRINTING, "cancel"): _S.CANCELLING,
    (_S.PAUSED, "cancel"): _S.CANCELLING,
    (_S.PRINTING, "job_done"): _S.IDLE,
    (_S.CANCELLING, "job_done"): _S.IDLE,
    (_S.PRINTING, "restarted"): _S.CONNECTING,
    (_S.PAUSED, "restarted"): _S.CONNECTING,
    (_S.CANCELLING, "restarted"): _S.CONNECTING,
    (_S.IDLE, "restarted"): _S.CONNECTING,
    (_S.CONNECTING, "restarted"): _S.CONNECTING,
}
_EVERYWHERE_TO_ERROR: Final = frozenset({"fatal", "emergency_stop", "closed"})


@dataclass(frozen=True, slots=True)
class Window:
    """How much may wait unacknowledged in the firmware."""

    kind: str  # "strict", "marlin-default", "configured", "advanced-ok"
    rx_bytes: int
    commands: int


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """Per-printer engine settings (from the node config)."""

    rx_buffer_bytes: int | None = None
    command_buffer: int | None = None
    end_gcode: tuple[str, ...] = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z10 F600", "G90", "M84")
    temperature_interval_s: int = 2
    max_consecutive_resends: int = 10
    history_lines: int = 10_000


MARLIN_RX_BUFFER: Final = 128
#: Longest line read from the printer. Marlin's longest (an M115 report, M503) are a few
#: hundred bytes; a longer "line" is noise or a hostile device, and is not held whole.
MAX_LINE_BYTES: Final = 4096
#: Digits in a line number or buffer count (Marlin's are 32-bit: at most 10 digits).
_MAX_DIGITS: Final = 10
MARLIN_COMMAND_BUFFER: Final = 4
_PROBE = "M105"
_PROBE_RESERVE = 8  # bytes kept free for an un-numbered probe
_LONG_RUNNING: Final = frozenset(
    {"G4", "G28", "G29", "G30", "G32", "G33", "G34", "G35", "M109", "M190", "M191", "M303",
     "M400", "M600", "M0", "M1", "M226", "M76"}
)
_LINE_ERRORS: Final = (
    "checksum mismatch",
    "line number is not last line number+1",
    "no checksum with line number",
    "no line number with checksum",
    "format error",
    "expected line",
)
_FATAL_WORDS: Final = (
    "halted", "kill", "thermal runaway", "mintemp", "maxtemp", "stopped", "heating failed",
    "m999", "emergency stop", "probing failed",
)
_TEMP = re.compile(r"\b([TB]\d?):\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(-?\d+(?:\.\d+)?))?", re.ASCII)
_OK_FIELD = re.compile(r"\b([NPB])(\d+)", re.ASCII)
_RESEND = re.compile(r"^(?:resend|rs)[:\s]\s*N?:?\s*(\d+)", re.IGNORECASE | re.ASCII)
_LAST_LINE = re.compile(r"Last Line:\s*(-?\d+)", re.IGNORECASE | re.ASCII)
_FIRMWARE_FIELD = re.compile(r"([A-Z_]+):(.*?)(?=\s+[A-Z_]+:|$)", re.ASCII)


def _too_long() -> RemoteProtocolError:
    return RemoteProtocolError(f"the printer sent a line longer than {MAX_LINE_BYTES} bytes")


def _count(digits: str, what: str) -> int:
    """A line number or count from the printer; more digits than Marlin's 32 bits is a broken line."""
    if len(digits.lstrip("-")) > _MAX_DIGITS:
        raise RemoteProtocolError(f"{what} with {len(digits)} digits: {digits[:20]}...")
    return int(digits)


def checksum(data: bytes) -> int:
    """XOR of every byte, Marlin's line checksum."""
    cs = 0
    for byte in data:
        cs ^= byte
    return cs


def frame(number: int, command: str) -> bytes:
    """``N<number> <command>*<checksum>\\n`` as bytes."""
    body = f"N{number} {command}".encode("ascii")
    return b"%b*%d\n" % (body, checksum(body))


class _Sent:
    """One line waiting for its ``ok`` in the firmware (numbered or an un-numbered probe)."""

    __slots__ = ("command", "job_index", "number", "size")

    def __init__(self, number: int | None, command: str, size: int, job_index: int | None):
        self.number = number
        self.command = command
        self.size = size
        self.job_index = job_index


class MarlinProtocol:
    """The engine for one printer connection. See the module docstring.

    Args:
        settings: per-printer overrides and the cancel end sequence.
    """

    def __init__(self, settings: ProtocolSettings | None = None) -> None:
        self.settings = settings or ProtocolSettings()
        self.state = State.DISCONNECTED
        self.firmware: FirmwareInfo | None = None
        self.window = Window("strict", MARLIN_RX_BUFFER, 1)
        self.error: str | None = None
        self.job: PreparedJob | None = None
        self.last_temperatures: TemperatureReport | None = None
        self._reset_link()
        self._rx = bytearray()
        self._skipping = False  # dropping the rest of an over-long line
        self._events: deque[Event] = deque()
        self._closed = False
        self._closed_reported = False
        self._count_trusted = True
        self.answered = 0  # lines the firmware acknowledged on this engine, probes included

    def _reset_link(self) -> None:
        self._next_n = 0
        self._history: deque[tuple[str, int | None]] = deque()
        self._history_base = 0
        self._in_flight: deque[_Sent] = deque()
        self._in_flight_bytes = 0
        self._control: deque[str] = deque()
        self._replay: deque[int] = deque()
        self._oob = bytearray()
        self._probe_wanted = False
        self._barrier: _Sent | None = None
        self._resync_from: int | None = None
        self._same_resends = 0
        self._swallow_ok = False
        self._advanced = False
        self._fw_fields: dict[str, str] = {}
        self._fw_caps: dict[str, bool] = {}
        self._fw_name: str | None = None
        self._m115: _Sent | None = None
        self._job_next = 0
        self._job_acked = 0
        self.job_bytes_sent = 0
        self.resends = 0
        self.lines_resent = 0
        self._max_b = -1
        self._last_resend = -1
        self._careful_from: int | None = None

    # -- state machine -------------------------------------------------
    def _transition(self, trigger: str) -> None:
        if trigger in _EVERYWHERE_TO_ERROR:
            self.state = State.ERROR
            return
        target = _TRANSITIONS.get((self.state, trigger))
        if target is None:
            raise LocalProtocolError(f"cannot {trigger.replace('_', ' ')} while {self.state.value}")
        self.state = target

    # -- commands (return nothing; bytes come from data_to_send) ---------
    def connect(self) -> None:
        """Start (or restart) the handshake: ``M110 N0`` then ``M115``.

        Raises:
            LocalProtocolError: the engine is in ERROR or a job is running.
        """
        self._transition("connect")
        self._reset_link()
        self._count_trusted = True
        self.window = self._configured_or(Window("strict", MARLIN_RX_BUFFER, 1))
        self._control.extend(["M110 N0", "M115"])

    def start_job(self, job: PreparedJob) -> None:
        """Begin streaming a prepared (already safety-checked) job.

        Raises:
            LocalProtocolError: not IDLE (connecting, printing, or in ERROR), or a
                command cannot be framed (non-ASCII, ``*``, a line break).
        """
        if (self.state, "start_job") not in _TRANSITIONS:
            self._transition("start_job")  # raises, naming the state
        if not job.checked:  # a checked job may stream from disk: don't read it twice
            for command in job.commands:
                self._check_command(command)
        self._transition("start_job")
        self.job = job
        self._job_next = self._job_acked = 0
        self.job_bytes_sent = self.resends = self.lines_resent = 0
        if not job.commands:
            self._finish(JobOutcome.COMPLETED)

    def send_command(self, command: str) -> None:
        """Queue one command outside a job (e.g. ``M104 S0`` from an operator).

        Raises:
            LocalProtocolError: the engine is not connected or is in ERROR.
        """
        if self.state in (State.DISCONNECTED, State.ERROR):
            raise LocalProtocolError(f"cannot send a command while {self.state.value}")
        self._check_command(command)
        self._control.append(command)

    def pause(self) -> None:
        """Hold the job stream; lines already in the firmware still run.

        Raises:
            LocalProtocolError: no job is printing.
        """
        self._transition("pause")

    def resume(self) -> None:
        """Continue a paused job.

        Raises:
            LocalProtocolError: the job is not paused.
        """
        self._transition("resume")

    def cancel(self) -> None:
        """Drop the rest of the job and run the safe end sequence.

        Raises:
            LocalProtocolError: no job is printing or paused.
        """
        self._transition("cancel")
        self._control.extend(self.settings.end_gcode)
        self._maybe_finished()

    def emergency_stop(self) -> None:
        """Send ``M112`` ahead of everything queued and stop; the engine enters ERROR."""
        self._oob += b"M112\n"
        self._control.clear()
        self._replay.clear()
        active = self.state in (State.PRINTING, State.PAUSED, State.CANCELLING)
        self.error = self.error or "emergency stop (M112)"
        self._transition("emergency_stop")
        if active and self.job is not None:
            self._events.append(JobFinished(self.job.name, JobOutcome.CANCELLED, self.error))

    def probe(self) -> bool:
        """Ask for a sign of life: an un-numbered ``M105`` that also acts as a barrier.

        The driver calls this when its communication timer expires (a lost
        ``ok``), or to poll temperatures on firmware without auto-report.

        Returns:
            True if a probe was queued, False if one is already outstanding.
        """
        if self._probe_wanted or self.state in (State.ERROR, State.DISCONNECTED):
            return False
        # A probe may itself be lost (line noise, a firmware that swallowed it):
        # each call sends a fresh one; the newest is the barrier, and the answer
        # to any of them acknowledges everything sent before it.
        self._probe_wanted = True
        return True

    def fail(self, reason: str, retryable: bool = True) -> None:
        """End the connection from the driver's side (port lost, printer silent)."""
        if self.state is State.ERROR:
            return
        active = self.state in (State.PRINTING, State.PAUSED, State.CANCELLING)
        self.error = reason
        self._transition("closed")
        if active and self.job is not None:
            self._events.append(JobFinished(self.job.name, JobOutcome.FAILED, reason, retryable))

    # -- progress (plain data for the driver's status snapshot) ------------
    @property
    def lines_sent(self) -> int:
        """Job lines handed to the firmware at least once."""
        return self._job_next

    @property
    def lines_acknowledged(self) -> int:
        return self._job_acked

    @property
    def layer(self) -> int | None:
        if self.job is None or not self.job.layer_starts:
            return None
        return self.job.layer_at(max(0, self._job_acked - 1))

    @property
    def awaiting_response(self) -> bool:
        """True while something sent has not been answered (the driver's timer runs)."""
        return bool(self._in_flight) or self._probe_wanted

    @property
    def in_flight(self) -> tuple[str, ...]:
        """The commands sent and not yet acknowledged, oldest (the one running) first."""
        return tuple(s.command for s in self._in_flight)

    @property
    def long_running(self) -> bool:
        """A command that may legitimately take minutes (G28, M109, …) is in the firmware."""
        return any(parse_words(s.command)[0] in _LONG_RUNNING for s in self._in_flight)

    # -- bytes in --------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes received from the printer; ``b""`` means the link closed.

        Raises:
            LocalProtocolError: data after the end of the stream.
        """
        if self._closed:
            raise LocalProtocolError("receive_data() after the stream was closed")
        if not data:
            self._closed = True
        self._rx += data

    def next_event(self) -> Event | _NeedData:
        """Return the next event, or NEED_DATA when a whole line has not arrived yet.

        Raises:
            RemoteProtocolError: the printer broke the protocol (a line longer than
                ``MAX_LINE_BYTES``, which is dropped, or an unreadable number).
        """
        while not self._events:
            newline = self._rx.find(b"\n")
            if newline < 0:
                if self._closed:
                    self._closed_event()
                    break
                if self._skipping or len(self._rx) > MAX_LINE_BYTES:
                    self._skip_long_line()
                return NEED_DATA
            raw = bytes(self._rx[:newline])
            del self._rx[: newline + 1]
            if self._skipping:  # the end of a line already dropped and reported
                self._skipping = False
                continue
            if len(raw) > MAX_LINE_BYTES:
                raise _too_long()
            self._handle_line(raw.decode("ascii", "replace").strip())
        return self._events.popleft() if self._events else NEED_DATA

    def _skip_long_line(self) -> None:
        """Drop what has come of an over-long line: memory stays bounded, whatever the printer sends."""
        self._rx.clear()
        if not self._skipping:
            self._skipping = True
            raise _too_long()

    def _closed_event(self) -> None:
        if self._rx is not None and self._closed_reported:
            return
        self._closed_reported = True
        self._rx.clear()
        self.fail("the printer's port closed")
        self._events.append(ConnectionClosed())

    # -- line parsing ----------------------------------------------------
    def _handle_line(self, line: str) -> None:
        if not line:
            return
        if line == "ok" or line.startswith("ok "):
            return self._on_ok(line)
        lower = line.lower()
        if lower.startswith(("resend", "rs ")):
            return self._on_resend_line(line)
        if "busy:" in lower:
            return self._emit(Busy(line.split("busy:", 1)[1].strip()))
        if line.startswith("!!"):  # Klipper: an error, or the MCU shut down; OctoPrint stops on it too
            return self._on_error(line[2:].strip() or line, fatal=True)
        if lower.startswith("error:"):
            return self._on_error(line[6:].strip())
        if line == "wait":
            return self._on_wait()
        if line == "start":
            return self._on_start()
        if line.startswith("FIRMWARE_NAME:"):
            return self._on_firmware_name(line)
        if line.startswith("Cap:"):
            return self._on_capability(line)
        if line.startswith("//action:"):
            return self._emit(HostAction(line[9:].strip()))
        if lower.startswith("echo:"):
            return self._emit(Echo(line[5:].strip()))
        if "T:" in line or line.startswith("B:"):
            self._on_temperatures(line)
            return
        self._emit(Other(line))

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _on_temperatures(self, text: str) -> bool:
        values = {m[0]: (m[1], m[2]) for m in _TEMP.findall(text)}
        hot = values.get("T") or values.get("T0")
        bed = values.get("B")
        if hot is None and bed is None:
            self._emit(Other(text))
            return False

        def num(value: str | None) -> float | None:
            return float(value) if value else None

        report = TemperatureReport(
            num(hot[0]) if hot else None, num(hot[1]) if hot else None,
            num(bed[0]) if bed else None, num(bed[1]) if bed else None,
        )
        self.last_temperatures = report
        self._emit(report)
        return True

    def _on_ok(self, line: str) -> None:
        rest = line[3:]
        temps = _TEMP.search(rest) if rest else None
        fields = dict(_OK_FIELD.findall(rest[: temps.start()] if temps else rest)) if rest else {}
        number, planner, buffer = (_count(fields[k], f"ok {k}") if k in fields else None
                                   for k in "NPB")
        event = Ok(number, planner, buffer)
        self._emit(event)
        has_temps = temps is not None and self._on_temperatures(rest)
        if self.state is State.CONNECTING and self._fw_name is not None:
            self._identified()  # the ok closing the M115 report, however oks were counted
        elif has_temps:
            self._ack_through_probe()
        elif self._swallow_ok and number is None:
            self._swallow_ok = False  # the ``ok`` that follows ``Resend:``
        elif number is not None:
            self._learn_advanced(event)
            self._ack_number(number)
        elif not self._advanced:
            self._ack_plain()
        self._maybe_finished()

    def _learn_advanced(self, ok: Ok) -> None:
        grew = ok.buffer_free is not None and ok.buffer_free > self._max_b
        if grew:
            self._max_b = ok.buffer_free  # type: ignore[assignment]
        if grew or not self._advanced:
            self._advanced = True
            if self.state is not State.CONNECTING:
                self._choose_window()

    def _on_resend_line(self, line: str) -> None:
        match = _RESEND.match(line)
        if match is None:
            raise RemoteProtocolError(f"unreadable resend request: {line!r}")
        number = _count(match.group(1), "resend request")
        self._swallow_ok = True
        self._on_resend(number)

    def _on_resend(self, number: int) -> None:
        if self._resync_from is not None or number >= self._next_n or number < self._history_base:
            if number < self._history_base and self._resync_from is None:
                return self.fail(f"printer asked for line {number}, no longer kept", False)
            return self._emit(Resend(number, stale=True))
        self._same_resends = self._same_resends + 1 if number == self._last_resend else 1
        self._last_resend = number
        if self._same_resends > self.settings.max_consecutive_resends:
            return self.fail(f"printer keeps requesting line {number}; communication stuck")
        self._emit(Resend(number))
        if self._same_resends >= 2:
            # The same line failed again: replay it alone until it is acknowledged,
            # so a periodic fault cannot hit it at the same position every time.
            self._careful_from = number
        self.resends += 1
        self._resync_from = number
        self._drop_in_flight_from(number)
        self._probe_wanted = True  # the barrier: wait until the storm has passed

    def _drop_in_flight_from(self, number: int) -> None:
        kept: deque[_Sent] = deque()
        for sent in self._in_flight:
            if sent.number is None or sent.number < number:
                kept.append(sent)
        self._in_flight = kept
        self._in_flight_bytes = sum(s.size for s in kept)
        self._replay = deque(range(number, self._next_n))

    def _on_error(self, message: str, fatal: bool = False) -> None:
        lower = message.lower()
        last = _LAST_LINE.search(message)
        last_line = _count(last.group(1), "Last Line") if last else None
        if not fatal and any(text in lower for text in _LINE_ERRORS):
            return self._emit(FirmwareError(message, False, last_line))
        fatal = fatal or any(word in lower for word in _FATAL_WORDS)
        self._emit(FirmwareError(message, fatal, last_line))
        if fatal and self.state is not State.ERROR:
            active = self.state in (State.PRINTING, State.PAUSED, State.CANCELLING)
            self.error = message
            self._transition("fatal")
            if active and self.job is not None:
                self._emit(JobFinished(self.job.name, JobOutcome.FAILED, message, False))

    def _on_wait(self) -> None:
        self._emit(Wait())
        if self._in_flight:
            self.probe()  # Marlin only says ``wait`` with an empty queue: an ok was lost

    def _on_start(self) -> None:
        self._emit(Start())
        if self.state in (State.DISCONNECTED, State.ERROR):
            return
        if self.state in (State.PRINTING, State.PAUSED, State.CANCELLING) and self.job:
            reason = "the printer restarted during the job (firmware printed 'start')"
            self.error = reason
            self._emit(JobFinished(self.job.name, JobOutcome.FAILED, reason, True))
        self._transition("restarted")
        self._reset_link()
        # Answers to a hello sent before the reset may still arrive: only the
        # FIRMWARE_NAME report (or a fresh connect()) identifies the firmware now.
        self._count_trusted = False
        self._control.extend(["M110 N0", "M115"])

    def _on_firmware_name(self, line: str) -> None:
        self._fw_fields = {k: v.strip() for k, v in _FIRMWARE_FIELD.findall(line)}
        self._fw_name = self._fw_fields.get("FIRMWARE_NAME")

    def _on_capability(self, line: str) -> None:
        _, name, value = (line.split(":", 2) + ["1"])[:3]
        self._fw_caps[name.strip()] = value.strip() not in ("0", "")

    # -- acknowledgement bookkeeping ----------------------------------------
    def _pop(self) -> _Sent:
        sent = self._in_flight.popleft()
        self.answered += 1
        self._in_flight_bytes -= sent.size
        if sent.job_index is not None and sent.job_index >= self._job_acked:
            self._job_acked = sent.job_index + 1
        if sent is self._m115 and self.state is State.CONNECTING and self._count_trusted:
            self._identified()  # firmware without FIRMWARE_NAME: its M115 was acknowledged
        if sent is self._barrier:
            self._barrier = None
            self._end_resync()
        elif self._careful_from is not None and (sent.number or -1) >= self._careful_from:
            self._careful_from = None
        return sent

    def _ack(self, count: int) -> None:
        for _ in range(min(count, len(self._in_flight))):
            self._pop()

    def _ack_plain(self) -> None:
        # A plain ``ok`` never answers a probe (M105 answers ``ok T:…``): an ok
        # meeting a probe at the head is a spurious one (e.g. for a fragment
        # left by Marlin's RX flush) and is ignored.
        if self._in_flight and self._in_flight[0].number is None:
            if self.last_temperatures is None:
                self._pop()  # this firmware does not put temperatures on ok
            return
        self._ack(1)

    def _ack_number(self, number: int) -> None:
        position = next(
            (i for i, s in enumerate(self._in_flight) if s.number == number), None
        )
        if position is not None:
            self._ack(position + 1)
        elif self._in_flight and self._in_flight[0].number is None:
            self._ack(1)

    def _ack_through_probe(self) -> None:
        position = next(
            (i for i, s in enumerate(self._in_flight) if s.command == _PROBE), None
        )
        self._ack(position + 1 if position is not None else 1)

    def _end_resync(self) -> None:
        if self._resync_from is None:
            return
        # Everything before the barrier was handled; whatever is still counted
        # as in flight was lost with the RX flush or answered by a lost ok.
        self._in_flight.clear()
        self._in_flight_bytes = 0
        self._resync_from = None
        self._swallow_ok = False

    def _identified(self) -> None:
        self._m115 = None
        self.firmware = FirmwareInfo(self._fw_name, dict(self._fw_fields), dict(self._fw_caps))
        self._choose_window()
        self._transition("identified")
        # Start counting from a clean slate: a ``start`` during the handshake
        # (board reset on open) can leave answers to an earlier hello on the
        # wire, so wait for a barrier before trusting the window.
        self._resync_from = self._next_n
        self._probe_wanted = True
        if self.firmware.has("AUTOREPORT_TEMP"):
            self._control.append(f"M155 S{self.settings.temperature_interval_s}")
        self._emit(self.firmware)

    def _configured_or(self, window: Window) -> Window:
        rx, cmd = self.settings.rx_buffer_bytes, self.settings.command_buffer
        if rx is None and cmd is None:
            return window
        return Window("configured", rx or window.rx_bytes, cmd or window.commands)

    def _choose_window(self) -> None:
        if self._advanced:
            commands = max(MARLIN_COMMAND_BUFFER if self._max_b < 0 else 1, self._max_b + 1)
            base = Window("advanced-ok", MARLIN_RX_BUFFER, commands)
        elif self.firmware is not None and self.firmware.is_marlin:
            base = Window("marlin-default", MARLIN_RX_BUFFER, MARLIN_COMMAND_BUFFER)
        else:
            base = Window("strict", MARLIN_RX_BUFFER, 1)
        self.window = self._configured_or(base)

    def _maybe_finished(self) -> None:
        if self.state not in (State.PRINTING, State.CANCELLING) or self.job is None:
            return
        if self._in_flight or self._control or self._replay or self._probe_wanted:
            return
        if self.state is State.PRINTING and self._job_next < len(self.job.commands):
            return
        if self.state is State.PRINTING:
            self._finish(JobOutcome.COMPLETED)
        else:
            self._finish(JobOutcome.CANCELLED, "cancelled; end sequence sent")

    def _finish(self, outcome: JobOutcome, reason: str | None = None) -> None:
        assert self.job is not None
        self._transition("job_done")
        self._emit(JobFinished(self.job.name, outcome, reason))

    # -- bytes out ---------------------------------------------------------
    def data_to_send(self) -> bytes:
        """Return the bytes the window allows now (possibly ``b""``)."""
        out = [bytes(self._oob)] if self._oob else []
        self._oob.clear()
        if self.state in (State.DISCONNECTED, State.ERROR):
            return b"".join(out)
        if self._probe_wanted:
            self._send_probe(out)
        if self._resync_from is None:
            self._send_lines(out)
        return b"".join(out)

    def _send_probe(self, out: list[bytes]) -> None:
        size = len(_PROBE) + 1
        if self._fits(size, probe=True):
            self._forget_probes()  # an unanswered earlier probe is presumed lost
            self._probe_wanted = False
            self._barrier = self._record(None, _PROBE, size, None)
            out.append(b"M105\n")

    def _forget_probes(self) -> None:
        if any(s.number is None for s in self._in_flight):
            self._in_flight = deque(s for s in self._in_flight if s.number is not None)
            self._in_flight_bytes = sum(s.size for s in self._in_flight)

    def _send_lines(self, out: list[bytes]) -> None:
        while True:
            nxt = self._next_line()
            if nxt is None:
                return
            number, command, job_index = nxt
            data = frame(number, command)
            if not self._fits(len(data)):
                return
            if self._careful_from is not None and any(s.number is not None for s in self._in_flight):
                return
            self._commit(number, command, job_index, data)
            out.append(data)

    def _next_line(self) -> tuple[int, str, int | None] | None:
        if self._replay:
            number = self._replay[0]
            command, job_index = self._history[number - self._history_base]
            return number, command, job_index
        if self._control:
            return self._next_n, self._control[0], None
        job = self.job
        if self.state is State.PRINTING and job is not None and self._job_next < len(job.commands):
            return self._next_n, job.commands[self._job_next], self._job_next
        return None

    def _commit(self, number: int, command: str, job_index: int | None, data: bytes) -> None:
        if self._replay:
            self._replay.popleft()
            self.lines_resent += 1
        else:
            if job_index is None:
                self._control.popleft()
            else:
                self._job_next += 1
                self.job_bytes_sent += len(data)
            self._remember(command, job_index)
        sent = self._record(number, command, len(data), job_index)
        if command == "M115" and self.state is State.CONNECTING:
            self._m115 = sent

    def _remember(self, command: str, job_index: int | None) -> None:
        self._history.append((command, job_index))
        self._next_n += 1
        if len(self._history) > self.settings.history_lines:
            self._history.popleft()
            self._history_base += 1

    def _record(self, number: int | None, command: str, size: int, job: int | None) -> _Sent:
        sent = _Sent(number, command, size, job)
        self._in_flight.append(sent)
        self._in_flight_bytes += size
        return sent

    def _fits(self, size: int, probe: bool = False) -> bool:
        if not self._in_flight:
            return True
        window = self.window
        if window.kind == "strict":
            return probe and all(s.number is not None for s in self._in_flight)
        if len(self._in_flight) < window.commands:
            return True
        head = sum(s.size for s in islice(self._in_flight, window.commands))
        tail = self._in_flight_bytes - head + size
        # Probes may use the reserve that numbered lines leave free.
        return tail <= window.rx_bytes - 1 - (0 if probe else _PROBE_RESERVE)

    @staticmethod
    def _check_command(command: str) -> None:
        if not command or "\n" in command or "*" in command or not command.isascii():
            raise LocalProtocolError(f"not a single ASCII G-code command: {command!r}")
