"""The serial driver: a pump between a serial port and the sans-IO Marlin engine.

pyserial only opens and configures the port; bytes move through the file
descriptor with ``loop.add_reader`` and non-blocking ``os.read``/``os.write``
on the asyncio loop (no threads, no polling of flags). Every chunk read goes
into :class:`~node_agent.protocol.MarlinProtocol`, its events update the
status, and whatever the engine allows is written straight back, so a reply
from the printer turns into the next line within one callback.

Timing lives here, not in the engine: a communication timer that restarts on
every protocol event (``ok``, ``Resend``, ``busy``, ``wait``, errors) and, on
expiry, asks the engine for a probe (an un-numbered ``M105`` that doubles as a
barrier, so a lost ``ok`` is recovered in about ``comm_timeout_s``); a dead-line
check on answers (chatter without an ``ok`` or ``busy`` does not keep a job alive);
a ceiling on how long one command may stay unacknowledged
(:class:`~node_agent.busy.BusyLimits`: ``busy:`` keepalives and temperature reports prove the
firmware runs, not that a heater will ever reach its target); and reconnecting after the port
disappears (a
reconnected printer has usually reset, so the job in progress fails rather
than resuming).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable

import serial

from node_agent.busy import BusyLimits
from node_agent.drivers.base import (
    ConnectionFailed,
    PrinterNotReady,
    PrinterPhase,
    PrinterStatus,
    PrintOutcome,
    PrintResult,
    Temperatures,
    reading,
)
from node_agent.jobfile import SafeJob, StreamedCommands
from node_agent.protocol import (
    NEED_DATA,
    Busy,
    ConnectionClosed,
    Event,
    FirmwareError,
    FirmwareInfo,
    JobFinished,
    LocalProtocolError,
    MarlinProtocol,
    Ok,
    ProtocolSettings,
    RemoteProtocolError,
    Resend,
    Start,
    State,
    TemperatureReport,
    Wait,
)

__all__ = ["SerialDriver"]

_PROGRESS_EVENTS = (Ok, Resend, Busy, Wait, FirmwareError, Start, FirmwareInfo)
_PHASES = {state: PrinterPhase(state.value) for state in State}


def _pick(new: float | None, old: float | None) -> float | None:
    return old if new is None else new


class SerialDriver:
    """A printer on a serial port (USB CDC, USB-serial bridge or a pty).

    Args:
        name: the printer's name in the node config.
        port: the device path, e.g. ``/dev/ttyACM0``.
        baud: the baud rate.
        settings: engine settings (window overrides, end G-code).
        comm_timeout_s: silence (no ok/resend/busy/…) before a probe is sent.
        dead_after_s: no answer (ok, resend, busy, wait, error) to what was sent for this
            long fails the job: the printer is gone, or talks (temperatures, echo) but its
            queue is stuck. While G28/M109/… may legitimately block, any byte within
            ``long_dead_after_s`` is enough.
        busy_limits: how long one command may stay unacknowledged however alive the firmware
            sounds (``busy: processing``, temperatures); past it the job fails as a firmware fault
            (default: ``BusyLimits()``, 10 min for a move, 30 min homing/probing, 1 h heating).
        connect_timeout_s: how long ``connect()`` waits for the M115 answer.
        reconnect: reopen the port after it disappears.
        trace: optional ``trace(kind, text)`` hook seeing the conversation at the
            engine boundary: ``"<"`` bytes read, ``">"`` bytes written, ``"="``
            events (repr), ``"!"`` engine commands (golden transcripts use it).
    """

    def __init__(
        self,
        name: str,
        port: str,
        baud: int,
        *,
        settings: ProtocolSettings | None = None,
        comm_timeout_s: float = 1.5,
        dead_after_s: float = 10.0,
        long_dead_after_s: float = 300.0,
        busy_limits: BusyLimits | None = None,
        connect_timeout_s: float = 10.0,
        temperature_poll_s: float = 2.0,
        reconnect: bool = True,
        trace: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.baud = baud
        self.settings = settings or ProtocolSettings()
        self.comm_timeout_s = comm_timeout_s
        self.dead_after_s = dead_after_s
        self.long_dead_after_s = long_dead_after_s
        self.busy_limits = busy_limits or BusyLimits()
        self.connect_timeout_s = connect_timeout_s
        self.temperature_poll_s = temperature_poll_s
        self.reconnect = reconnect
        self._trace = trace
        self.engine = MarlinProtocol(self.settings)
        self._serial: serial.Serial | None = None
        self._fd = -1
        self._wbuf = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._job_done: asyncio.Future[JobFinished] | None = None
        self._streamed: StreamedCommands | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Event] = set()
        self._temps = Temperatures()
        self._last_progress = self._last_rx = self._last_poll = self._last_answer = 0.0
        self._last_ack, self._answered = 0.0, 0  # when the engine's count of acknowledged lines last moved
        self._closing = False
        self._connected_once = False
        self.timeouts = 0
        self.probes = 0

    # -- PrinterDriver ---------------------------------------------------
    async def connect(self) -> None:
        """Open the port, handshake (M110, M115) and wait until the printer is idle.

        Raises:
            ConnectionFailed: the port cannot be opened or the printer does not answer.
            PrinterNotReady: the firmware reported a fatal error during the handshake.
        """
        self._loop = asyncio.get_running_loop()
        self._closing = False
        if self._fd >= 0 and self.engine.state is not State.ERROR:
            return  # already connected
        self._release_port()
        await self._open_and_handshake()
        self._connected_once = True
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name=f"serial-watchdog-{self.name}")

    async def close(self) -> None:
        """Stop, fail a running job ("driver closed") and release the port; idempotent."""
        self._closing = True
        for task in (self._watchdog, self._reconnector):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watchdog = self._reconnector = None
        if self.engine.state in (State.PRINTING, State.PAUSED, State.CANCELLING):
            self.engine.fail("the driver was closed", retryable=True)
        self._drain()
        self._release_port()
        self._notify()

    def status(self) -> PrinterStatus:
        """Return the current snapshot (no I/O)."""
        engine = self.engine
        job = engine.job
        phase = _PHASES[engine.state]
        if self._fd < 0:  # the port is closed or gone: say so, whatever the engine ended in
            phase = PrinterPhase.CONNECTING if self._reconnector else PrinterPhase.DISCONNECTED
        total = len(job.commands) if job else 0
        acked = engine.lines_acknowledged if job else 0
        return PrinterStatus(
            phase=phase,
            temperatures=self._temps,
            job_name=job.name if job else None,
            lines_total=total,
            lines_sent=engine.lines_sent if job else 0,
            bytes_sent=engine.job_bytes_sent,
            resends=engine.resends,
            layer=engine.layer,
            percent=100.0 * acked / total if total else 0.0,
            error=engine.error,
            firmware=engine.firmware.name if engine.firmware else None,
        )

    async def print_job(self, job: SafeJob) -> PrintResult:
        """Stream one checked job from disk through the engine and wait for its end.

        The file is read line by line as the window allows (bounded memory, any
        size). If it changed since its check, the stand-in ``M400`` replaces the
        rest, the job is cancelled with the safe end sequence and ends FAILED.

        Raises:
            PrinterNotReady: not connected, or another job is running.
        """
        if self._fd < 0:
            raise PrinterNotReady(f"printer {self.name!r} is not connected")
        prepared = job.prepared()
        commands = prepared.commands
        assert isinstance(commands, StreamedCommands)
        try:
            self._note_job(job)
            self.engine.start_job(prepared)
        except LocalProtocolError as exc:
            commands.close()
            raise PrinterNotReady(f"printer {self.name!r}: {exc}") from exc
        assert self._loop is not None
        started = time.monotonic()
        self._job_done = self._loop.create_future()
        self._streamed = commands
        try:
            self._drain()
            self._flush()
            finished = await self._job_done
        finally:
            self._streamed = None
            commands.close()
        outcome, reason, retryable = finished.outcome.value, finished.reason, finished.retryable
        if commands.changed is not None:
            outcome, reason, retryable = PrintOutcome.FAILED.value, commands.changed, False
        return PrintResult(
            outcome=PrintOutcome(outcome),
            lines_sent=self.engine.lines_sent,
            resends=self.engine.resends,
            seconds=time.monotonic() - started,
            reason=reason,
            retryable=retryable,
        )

    def _note_job(self, job: SafeJob) -> None:
        if self._trace is None:
            return
        self._trace("!", f"job {job.name}")
        for _, command in job.stream():  # a second read, only when recording a transcript
            self._trace("+", command)

    async def pause(self) -> None:
        """Hold the stream (Raises: PrinterNotReady when no job is printing)."""
        self._command(self.engine.pause)

    async def resume(self) -> None:
        """Continue a paused job (Raises: PrinterNotReady when not paused)."""
        self._command(self.engine.resume)

    async def cancel(self) -> None:
        """Stop the job and run the safe end sequence (Raises: PrinterNotReady)."""
        self._command(self.engine.cancel)

    async def emergency_stop(self) -> None:
        """Send M112 ahead of everything queued; the printer then needs a reset.

        Raises:
            PrinterNotReady: the port is not open.
        """
        if self._fd < 0:
            raise PrinterNotReady(f"printer {self.name!r} is not connected")
        self._note("emergency_stop")
        self.engine.emergency_stop()
        self._drain()
        self._flush()

    async def updates(self) -> AsyncIterator[PrinterStatus]:
        """Yield a snapshot after every change (coalesced while the consumer is busy), until ``close()``."""
        changed = asyncio.Event()
        self._subscribers.add(changed)
        try:
            yield self.status()
            while not self._closing:
                await changed.wait()
                changed.clear()
                yield self.status()
        finally:
            self._subscribers.discard(changed)

    # -- commands ----------------------------------------------------------
    def _command(self, action: Callable[[], None]) -> None:
        self._note(action.__name__)
        try:
            action()
        except LocalProtocolError as exc:
            raise PrinterNotReady(f"printer {self.name!r}: {exc}") from exc
        self._drain()
        self._flush()
        self._notify()

    def _note(self, command: str) -> None:
        if self._trace:
            self._trace("!", command)

    # -- port ----------------------------------------------------------------
    async def _open_and_handshake(self) -> None:
        assert self._loop is not None
        self._open_port()
        self.engine = MarlinProtocol(self.settings)
        ready = self._ready = self._loop.create_future()
        start = self._last_progress = self._last_rx = self._last_answer = self._loop.time()
        self._last_ack, self._answered = start, 0
        self._note("connect")
        self.engine.connect()
        self._flush()
        deadline = start + self.connect_timeout_s
        while not ready.done():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                self._release_port()
                raise ConnectionFailed(
                    f"no answer to M115 from {self.port} at {self.baud} baud within "
                    f"{self.connect_timeout_s:g} s; check the port, the baud rate and that "
                    "the printer is powered"
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(ready), min(remaining, 1.0))
            if not ready.done() and self.engine.state is State.CONNECTING:
                self._note("connect")
                self.engine.connect()  # the board may have been booting: say hello again
                self._flush()
        ready.result()  # raises ConnectionFailed when the port went away meanwhile
        if self.engine.state is State.ERROR:
            self._release_port()
            raise PrinterNotReady(f"printer {self.name!r} reports: {self.engine.error}")

    def _open_port(self) -> None:
        assert self._loop is not None
        try:
            port = serial.Serial(self.port, self.baud, timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConnectionFailed(f"cannot open {self.port} at {self.baud} baud: {exc}") from exc
        port.reset_input_buffer()  # stale bytes from before we opened are not ours
        self._serial = port
        self._fd = port.fileno()
        os.set_blocking(self._fd, False)
        self._wbuf.clear()
        self._loop.add_reader(self._fd, self._on_readable)

    def _release_port(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            return self._lost(f"lost the connection to {self.port}: {exc}")
        if not data:
            return self._lost(f"{self.port} was closed by the other side")
        assert self._loop is not None
        self._last_rx = self._loop.time()
        if self._trace:
            self._trace("<", data.decode("ascii", "replace"))
        self.engine.receive_data(data)
        self._drain()
        self._flush()

    def _flush(self) -> None:
        data = self.engine.data_to_send()
        streamed = self._streamed
        if streamed is not None and streamed.changed and self.engine.state is State.PRINTING:
            self._note("cancel")
            self.engine.cancel()  # the file changed under us: stop, safe end sequence
            data += self.engine.data_to_send()
        if data and self._trace:
            self._trace(">", data.decode("ascii"))
        if data and self._fd >= 0:
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self._wbuf:
            self._wbuf += data
            return
        try:
            written = os.write(self._fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            return self._lost(f"lost the connection to {self.port}: {exc}")
        if written < len(data):
            assert self._loop is not None
            self._wbuf += data[written:]
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        try:
            written = os.write(self._fd, self._wbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            return self._lost(f"lost the connection to {self.port}: {exc}")
        del self._wbuf[:written]
        if not self._wbuf and self._loop is not None:
            self._loop.remove_writer(self._fd)

    # -- events ----------------------------------------------------------
    def _drain(self) -> None:
        engine = self.engine
        changed = False
        while True:
            try:
                event = engine.next_event()
            except RemoteProtocolError as exc:
                engine.fail(f"the printer broke the protocol: {exc}", retryable=True)
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(None)  # the handshake ends now, naming the reason
                continue
            if event is NEED_DATA:
                break
            changed = True
            self._handle(event)  # type: ignore[arg-type]
        if engine.answered != self._answered and self._loop is not None:
            self._answered, self._last_ack = engine.answered, self._loop.time()
        if changed:
            self._notify()

    def _handle(self, event: Event) -> None:
        assert self._loop is not None
        if self._trace and not isinstance(event, Ok):
            self._trace("=", repr(event))
        if isinstance(event, _PROGRESS_EVENTS):
            self._last_progress = self._last_answer = self._loop.time()
        if isinstance(event, TemperatureReport):
            old = self._temps  # a report may carry only some values (M109's "T:203.1")
            self._temps = Temperatures(
                _pick(reading(event.hotend_c), old.hotend_c),
                _pick(reading(event.hotend_target_c), old.hotend_target_c),
                _pick(reading(event.bed_c), old.bed_c),
                _pick(reading(event.bed_target_c), old.bed_target_c),
            )
        elif isinstance(event, FirmwareInfo):
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif isinstance(event, JobFinished):
            if self._job_done is not None and not self._job_done.done():
                self._job_done.set_result(event)
        elif isinstance(event, FirmwareError) and event.fatal:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif isinstance(event, ConnectionClosed):
            self._lost(f"{self.port} closed")

    def _notify(self) -> None:
        for changed in self._subscribers:
            changed.set()

    # -- failure and recovery ----------------------------------------------
    def _lost(self, reason: str) -> None:
        self._release_port()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionFailed(reason))
        self.engine.fail(reason, retryable=True)
        self._drain()
        self._notify()
        if self.reconnect and not self._closing and self._connected_once and not self._reconnector:
            assert self._loop is not None
            self._reconnector = self._loop.create_task(self._reconnect(), name="serial-reconnect")

    async def _reconnect(self) -> None:
        delay = 0.2
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self._open_and_handshake()
                except (ConnectionFailed, PrinterNotReady):
                    delay = min(delay * 2, 5.0)
                    continue
                return
        finally:
            self._reconnector = None
            self._notify()

    async def _watch(self) -> None:
        assert self._loop is not None
        tick = min(0.1, self.comm_timeout_s / 4)
        while not self._closing:
            await asyncio.sleep(tick)
            if self._fd >= 0:
                self._check_timers(self._loop.time())

    def _check_timers(self, now: float) -> None:
        engine = self.engine
        if engine.state is State.ERROR:
            return
        if engine.state is State.CONNECTING:
            return  # the handshake loop retries the hello itself
        self._poll_temperatures(now)
        if not engine.awaiting_response:
            self._last_progress = self._last_answer = self._last_ack = now
            return
        ceiling, running = self.busy_limits.ceiling(engine.in_flight)
        if now - self._last_ack > ceiling:
            return self._lost(self._stuck_reason(running, ceiling))
        if engine.long_running:  # M109 may print only temperatures while it heats
            limit, last = self.long_dead_after_s, self._last_rx
        else:  # any other command is answered (ok, busy, ...) within dead_after_s
            limit, last = self.dead_after_s, self._last_answer
        if now - last > limit:
            return self._lost(self._dead_reason(now, limit))
        if now - self._last_progress > self.comm_timeout_s:
            self.timeouts += 1
            self._last_progress = now
            self._note("probe")
            if engine.probe():
                self.probes += 1
            self._flush()

    def _dead_reason(self, now: float, limit: float) -> str:
        if now - self._last_rx > limit:
            return f"printer on {self.port} stopped answering for {limit:g} s"
        return (f"printer on {self.port} acknowledged nothing for {limit:g} s: it still sends "
                "text (temperatures, echo, noise) but answers no command; its command queue is stuck")

    def _stuck_reason(self, command: str | None, limit: float) -> str:
        doing = f"{command!r}" if command else "its command"
        return (f"printer on {self.port} worked on {doing} for {limit:g} s without finishing it (the "
                "longest a command of this kind may take): the firmware still answers (busy, "
                "temperatures) but is stuck, e.g. a heater that never reaches its target or a "
                "probe that never triggers; check the printer")

    def _poll_temperatures(self, now: float) -> None:
        firmware = self.engine.firmware
        if firmware is None or firmware.has("AUTOREPORT_TEMP"):
            return
        if now - self._last_poll >= self.temperature_poll_s:
            self._last_poll = now
            self._note("probe")
            if self.engine.probe():
                self._flush()
