"""The agent loop: one Session with the hub, jobs from offer to outcome, printers, shutdown.

Lifecycle (STYLE habit 10): :meth:`Worker.run` keeps going until :meth:`Worker.shutdown`;
``shutdown()`` is idempotent and safe before ``run()``. Heartbeats run on their own task.
Rules it keeps (nodes.proto, agent_protocol.md 2c):

* write to the journal first, then act; every report goes through the outbox and is
  resent after a reconnect until the hub acknowledges it;
* apply each hub command once (``hub_seq`` watermark in the journal), then ack it; the
  effect is journaled before the watermark and every handler is idempotent (a re-offered
  job already accepted is accepted again, a repeated grant changes nothing), so a crash
  between the two replays harmlessly;
* never start a physical print without a StartGranted for the job's current epoch, and
  never while offline; a printer takes no next job until the operator confirms its bed
  is clear;
* losing the hub never aborts a running print; a running print is never restarted
  after a crash (the journal marks it interrupted);
* on shutdown: take nothing new, wait for running prints, then close the drivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from node_agent import messages as m
from node_agent.backoff import Retry, RetryPolicy
from node_agent.config import NodeConfig
from node_agent.drivers.base import (
    DriverError,
    PrinterDriver,
    PrinterPhase,
    PrinterStatus,
    PrintOutcome,
)
from node_agent.hub_client import HubError, HubRefused, ReconnectPolicy
from node_agent.jobs import (
    ACTIVE,
    TERMINAL,
    EventKind,
    InvalidEventData,
    InvalidTransition,
    JobState,
)
from node_agent.journal import Journal, JournalError, JournalJob
from node_agent.pipeline import PipelineSettings, StepFailed, prepare_job, safe_job
from node_agent.printers import Slot, decline, snapshot, status_entry

__all__ = ["AGENT_VERSION", "ControlError", "HubLink", "Session", "Worker"]

AGENT_VERSION = "spime-node 0.1"
ACCEPT_GRACE_S = 60.0
PRINTER_RETRY = RetryPolicy(base_s=10.0, cap_s=300.0)  # an unreachable printer: checked at each heartbeat
log = logging.getLogger("spime-node")


class ControlError(Exception):
    """An operator command cannot be done; the message says why and what to do."""


class Session(Protocol):
    async def send(self, message: m.AgentMessage) -> None: ...
    async def receive(self) -> m.HubCommand | None: ...
    async def close(self) -> None: ...


class HubLink(Protocol):
    """What the worker needs of the hub (``node_agent.hub_client.HubConnection``)."""

    async def session(self, hello: m.Hello) -> Session: ...
    async def fetch_artifact(self, ref: m.ArtifactRef, dest: Path) -> Path: ...
    async def close(self) -> None: ...


class _Ended(Exception):
    """The job ended (denied, cancelled) and said so already."""


@dataclass(eq=False)
class _Run:
    task: asyncio.Task[None]
    granted: asyncio.Event = field(default_factory=asyncio.Event)
    denied: str | None = None
    asked_in: int = 0                # the session that carried our StartRequest (0: none)


async def _db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


class Worker:
    """The node agent; construct with its adapters, then ``await run()``."""

    def __init__(self, config: NodeConfig, journal: Journal, hub: HubLink,
                 drivers: Mapping[str, PrinterDriver], pipeline: PipelineSettings,
                 rng: random.Random | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config, self.journal, self.hub, self.pipeline = config, journal, hub, pipeline
        self._slots = {p.name: Slot(p, drivers[p.name]) for p in config.printers}
        self._rng = rng or random.Random()
        self._clock = clock  # when an unreachable printer is tried again (Slot.retry)
        self._reconnect = ReconnectPolicy(self._rng)
        self._stop = asyncio.Event()
        self._leave = asyncio.Event()
        self._session: Session | None = None
        self._online = asyncio.Event()
        self._sent_seq = 0
        self._send_lock = asyncio.Lock()
        self._runs: dict[str, _Run] = {}
        self._draining = False
        self._drained_by_hub = ""  # why the hub drains this node in this session ("" = it does not)
        self._started = False
        self._connecting: asyncio.Task[None] | None = None  # printers being connected again (see _beat)
        self._session_no = 0
        self.ready = asyncio.Event()     # set once the printers were tried and the loop runs
        # Plain-data snapshots other threads may read (the metrics server), replaced whole.
        self.printer_snapshots: dict[str, PrinterStatus] = {}
        self.job_counts: dict[str, int] = {}
        self.heartbeat_s = config.node.heartbeat_s

    # ------------------------------------------------------------------ lifecycle
    def shutdown(self, leave_prints: bool = False) -> None:
        """Stop taking jobs and end ``run()`` once running prints are done; idempotent.

        A second call with ``leave_prints`` stops waiting: the journal keeps those jobs
        as printing, so the next start reports them interrupted.
        """
        self._draining = True
        self._stop.set()
        if leave_prints:
            self._leave.set()

    async def run(self) -> None:
        """Run until :meth:`shutdown`.

        Raises:
            HubRefused: the hub refused this node's credential (re-enroll).
        """
        if self._started:
            raise RuntimeError("Worker.run() may be called once")
        self._started = True
        for job in await _db(self.journal.recover):
            log.warning("job %s was printing when the agent stopped: reported interrupted, "
                        "not restarted", job.job_id)
        self._restore_slots()
        await self._connect_printers()
        await self._store_snapshots()
        self.ready.set()
        heartbeat = asyncio.create_task(self._heartbeats(), name="heartbeats")
        session = asyncio.create_task(self._sessions(), name="sessions")
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({session, stop}, return_when=asyncio.FIRST_COMPLETED)
            fatal = session.exception() if session.done() else None
            if fatal is not None:
                log.error("%s", fatal)
                self.shutdown()
            await self._wind_down()  # even a fatal refusal never aborts a running print
            if fatal is not None:
                raise fatal
        finally:
            for task in (heartbeat, session, stop):
                task.cancel()
            await asyncio.gather(heartbeat, session, stop, return_exceptions=True)
            await self._close()

    async def _wind_down(self) -> None:
        for job_id, run in list(self._runs.items()):
            job = await _db(self.journal.find, job_id)
            if job is None or job.state not in ACTIVE:
                run.task.cancel()  # preparation is cheap to redo after a restart
        printing = [r.task for r in self._runs.values() if not r.task.done()]
        if printing:
            log.warning("shutting down: waiting for %d running print(s) to finish "
                        "(signal again to leave them)", len(printing))
            leave = asyncio.create_task(self._leave.wait())
            await asyncio.wait({*printing, leave}, return_when=asyncio.FIRST_COMPLETED)
            leave.cancel()
            if any(not t.done() for t in printing):
                log.warning("leaving running print(s): they are reported interrupted on the "
                            "next start")
                return
        await asyncio.gather(*(r.task for r in self._runs.values()), return_exceptions=True)
        if self._online.is_set():
            await self._flush()

    async def _close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        for run in self._runs.values():
            run.task.cancel()
        await asyncio.gather(*(r.task for r in self._runs.values()), return_exceptions=True)
        for slot in self._slots.values():
            await slot.driver.close()
        await self.hub.close()

    def _restore_slots(self) -> None:
        for job in self.journal.jobs():
            if job.state not in TERMINAL and job.printer in self._slots:
                self._slots[job.printer].job = job.job_id

    async def _connect_printers(self) -> None:
        """Connect every printer not connected whose next attempt is due, all at once: one unreachable
        printer (each attempt may take its driver's timeout) delays no other, and is tried again after
        a full-jitter exponential backoff (PRINTER_RETRY), not at every heartbeat. A driver that lost
        its link and does not reconnect by itself (OctoPrint's push socket) shows DISCONNECTED: it is
        connected again."""
        now = self._clock()
        await asyncio.gather(*(self._connect(slot) for slot in self._slots.values() if slot.retry.due(now) and (
            not slot.connected or slot.driver.status().phase is PrinterPhase.DISCONNECTED)))

    async def _connect(self, slot: Slot) -> None:
        try:
            await slot.driver.connect()
            slot.connected, slot.error, slot.retry = True, "", Retry()
        except DriverError as exc:
            slot.connected, slot.error = False, str(exc)
            slot.retry = slot.retry.failed(self._clock(), str(exc), PRINTER_RETRY, self._rng)
            log.warning("printer %s: %s (attempt %d; the next in %.0f s)", slot.config.name, exc,
                        slot.retry.failures, slot.retry.next_at - self._clock())

    def _reconnect_printers(self) -> None:
        """Start reconnecting the printers that need it, unless that is still under way: the heartbeat
        never waits for a printer that does not answer."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect_printers(), name="connect printers")

    # ------------------------------------------------------------------ the session
    async def _sessions(self) -> None:
        reconnect = self._reconnect = ReconnectPolicy(self._rng, cap_s=self.config.node.reconnect_max_s)
        while True:  # also while winding down: reports of running prints still go out
            error: HubError | None = None
            try:
                await self._one_session()
            except HubRefused as exc:
                error = exc
                # Refused at Hello (wrong name, revoked credential) or superseded: fatal. A
                # refusal of one report mid-session was recorded and acked by the hub.
                if exc.code in _FATAL and not (self._online.is_set()
                                               and exc.code == "PERMISSION_DENIED"):
                    raise
                log.warning("hub refused: %s", exc)
            except HubError as exc:
                error = exc
                log.info("hub unreachable: %s", exc)
            finally:
                self._online.clear()
                self._session = None
            await asyncio.sleep(reconnect.delay(error))

    async def _one_session(self) -> None:
        session = await self.hub.session(await self._hello())
        self._session = session
        try:
            first = await session.receive()
            if not isinstance(first, m.Welcome):
                raise HubRefused(f"hub did not answer Hello with Welcome but {first!r}")
            self._reconnect.healthy()
            await self._welcome(first)
            while (command := await session.receive()) is not None:
                if isinstance(command, m.Superseded):
                    raise HubRefused("another agent connected as this node (session "
                                     f"{command.new_session_epoch}); this one stops", "SUPERSEDED")
                await self._apply(command)
        finally:
            await session.close()

    async def _hello(self) -> m.Hello:
        node = self.config.node
        return m.Hello(
            agent_id=node.name, agent_version=AGENT_VERSION,
            last_hub_seq_applied=await _db(self.journal.last_hub_seq_applied),
            printers=tuple(self._snapshot(s) for s in self._slots.values()),
            jobs=tuple(await _db(self.journal.held_jobs)), location=node.location,
            latitude=node.latitude or 0.0, longitude=node.longitude or 0.0)

    async def _welcome(self, welcome: m.Welcome) -> None:
        if self._drained_by_hub and not self._stop.is_set():  # the hub's drain lasts a session; it sends it again
            self._draining, self._drained_by_hub = False, ""
            log.info("new session: taking jobs again unless the hub drains this node again")
        await _db(self.journal.acknowledge, welcome.last_agent_seq_committed)
        if welcome.heartbeat_interval_s:
            self.heartbeat_s = float(welcome.heartbeat_interval_s)
        desired = {d.job_id: d for d in welcome.desired}
        self._sent_seq = welcome.last_agent_seq_committed
        self._session_no += 1
        self._online.set()
        log.info("connected to the hub (session %d)", welcome.session_epoch)
        await self._flush()
        for job in await _db(self.journal.jobs):
            await self._reconcile(job, desired.get(job.job_id))

    async def _reconcile(self, job: JournalJob, want: m.DesiredJob | None) -> None:
        wish = want.desired if want is not None else m.Desired.UNSPECIFIED
        if wish is m.Desired.FORGET and job.state not in ACTIVE:
            await self._end_run(job.job_id)
            await _db(self.journal.forget, job.job_id)
            self._release(job)
        elif wish is m.Desired.CANCEL:
            await self._cancel(job.job_id, "the hub cancelled the job")
        elif job.state in (JobState.PREPARING, JobState.READY) and job.job_id not in self._runs:
            self._start_run(job.job_id)
        elif job.state is JobState.READY and job.job_id in self._runs:
            self._runs[job.job_id].granted.set()  # wake it: it asks again in this session

    async def _send(self, message: m.AgentMessage) -> bool:
        session = self._session
        if session is None or not self._online.is_set():
            return False
        try:
            async with self._send_lock:
                await session.send(message)
        except HubError as exc:
            log.info("send failed, will resend after reconnect: %s", exc)
            return False
        return True

    async def _flush(self) -> None:
        """Send every journaled event the hub may not have, in agent_seq order."""
        async with self._send_lock:
            session = self._session
            if session is None or not self._online.is_set():
                return
            for event in await _db(self.journal.pending, self._sent_seq):
                try:
                    await session.send(event)
                except HubError:
                    return
                self._sent_seq = event.agent_seq

    async def _emit(self, job_id: str, kind: EventKind, data: Mapping[str, str]) -> None:
        await _db(self.journal.record, job_id, kind, data)
        await self._flush()

    async def _move(self, job_id: str, new: JobState, kind: EventKind | None = None,
                    data: Mapping[str, str] | None = None, reason: str = "") -> None:
        await _db(self.journal.transition, job_id, new, kind, data, reason)
        if kind is not None:
            await self._flush()

    # ------------------------------------------------------------------ hub commands
    async def _apply(self, command: m.HubCommand) -> None:
        if isinstance(command, m.EventAck):
            await _db(self.journal.acknowledge, command.agent_seq)
            await _db(self.journal.prune)
            return
        if isinstance(command, m.Ping | m.Welcome):
            return
        seq = command.hub_seq
        if seq and seq <= await _db(self.journal.last_hub_seq_applied):
            await self._send(m.CommandAck(seq))  # a redelivery: applied already
            return
        try:
            await self._handle(command)
        except (InvalidTransition, InvalidEventData, KeyError) as exc:
            # A command that does not fit the job's local state: redelivery would not help.
            log.error("hub command %s not applied: %s", type(command).__name__, exc)
        if seq:
            await _db(self._watermark, seq)
            await self._send(m.CommandAck(seq))

    def _watermark(self, seq: int) -> None:
        with self.journal.applying(seq):
            pass

    async def _handle(self, command: m.HubCommand) -> None:
        if isinstance(command, m.Offer):
            await self._offer(command)
        elif isinstance(command, m.Assigned):
            await self._assigned(command)
        elif isinstance(command, m.StartGranted):
            await self._granted(command)
        elif isinstance(command, m.StartDenied):
            await self._denied(command)
        elif isinstance(command, m.Cancel):
            await self._cancel(command.job_id, command.reason or "the hub cancelled the job")
        elif isinstance(command, m.Drain):
            self._draining, self._drained_by_hub = True, command.reason or "no reason given"
            log.warning("the hub drains this node (%s): finishing current jobs, taking no new ones",
                        command.reason or "no reason given")
        elif isinstance(command, m.Hold):
            log.info("hold for job %s: %s", command.job_id, command.reason)

    async def _offer(self, offer: m.Offer) -> None:
        held = await _db(self.journal.find, offer.job_id)
        if held is not None and held.state in TERMINAL and offer.lease_epoch > held.lease_epoch:
            await _db(self.journal.forget, held.job_id)  # requeued on the hub: a new epoch
            held = None
        if held is not None and held.state is not JobState.ACCEPTED:
            await self._send(m.OfferReply(offer.offer_id, False, m.DeclineReason.NO_CAPACITY,
                                          f"this node already holds job {offer.job_id}"))
            return
        problem = self._qualifies(offer)
        if problem is not None:
            reason, detail = problem
            log.info("declining offer %s: %s", offer.offer_id, detail)
            await self._send(m.OfferReply(offer.offer_id, False, reason, detail))
            return
        if held is None:
            await _db(self.journal.add_job, offer)
        else:
            await _db(self.journal.update, offer.job_id, offer_id=offer.offer_id,
                      lease_epoch=offer.lease_epoch)
        self._slots[offer.printer_id].job = offer.job_id
        log.info("accepting job %s (%s) on %s", offer.job_id, offer.design, offer.printer_id)
        await self._send(m.OfferReply(offer.offer_id, True))

    def _qualifies(self, offer: m.Offer) -> tuple[m.DeclineReason, str] | None:
        slot = self._slots.get(offer.printer_id)
        flags = self.journal.printer_flags(offer.printer_id)
        return decline(offer, slot, flags, self._draining)

    async def _assigned(self, assigned: m.Assigned) -> None:
        job = await _db(self.journal.find, assigned.job_id)
        if job is None or job.state is not JobState.ACCEPTED or job.offer_id != assigned.offer_id:
            log.info("ignoring assignment of job %s (not an offer we hold)", assigned.job_id)
            return
        await _db(self.journal.update, job.job_id, lease_epoch=assigned.lease_epoch)
        await self._move(job.job_id, JobState.PREPARING)
        log.info("job %s assigned (epoch %d): preparing", job.job_id, assigned.lease_epoch)
        self._start_run(job.job_id)

    async def _granted(self, grant: m.StartGranted) -> None:
        job = await _db(self.journal.find, grant.job_id)
        if job is None or job.lease_epoch != grant.lease_epoch:
            log.info("ignoring a start grant for job %s epoch %d", grant.job_id, grant.lease_epoch)
            return
        await _db(self.journal.update, job.job_id, granted_epoch=grant.lease_epoch)
        run = self._runs.get(job.job_id)
        if run is not None:
            run.granted.set()

    async def _denied(self, denied: m.StartDenied) -> None:
        run = self._runs.get(denied.job_id)
        if run is not None:
            run.denied = denied.reason or "the hub denied the start"
            run.granted.set()

    async def _cancel(self, job_id: str, reason: str) -> None:
        job = await _db(self.journal.find, job_id)
        if job is None or job.state in TERMINAL or job.state is JobState.FINISHED:
            return
        slot = self._slots.get(job.printer)
        if job.state in ACTIVE and slot is not None:
            log.info("cancelling the print of job %s: %s", job_id, reason)
            with contextlib.suppress(DriverError):
                await slot.driver.cancel()
            return  # the print task reports CANCELLED when the driver stops
        await self._end_run(job_id)
        await self._move(job_id, JobState.CANCELLED, EventKind.CANCELLED, {"reason": reason})
        self._release(job)

    async def _end_run(self, job_id: str) -> None:
        run = self._runs.pop(job_id, None)
        if run is not None and run.task is not asyncio.current_task():
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)

    def _release(self, job: JournalJob) -> None:
        slot = self._slots.get(job.printer)
        if slot is not None and slot.job == job.job_id:
            slot.job = None

    # ------------------------------------------------------------------ one job
    def _start_run(self, job_id: str) -> None:
        task = asyncio.create_task(self._job(job_id), name=f"job {job_id}")
        self._runs[job_id] = _Run(task)

    async def _job(self, job_id: str) -> None:
        try:
            job = await _db(self.journal.job, job_id)
            if job.state is JobState.PREPARING:
                await self._prepare(job)
            await self._await_start(job_id)
            await self._print(job_id)
        except StepFailed as exc:
            log.warning("job %s failed: %s", job_id, exc)
            await self._move(job_id, JobState.FAILED, EventKind.FAILED, exc.data(), exc.reason)
            self._release(await _db(self.journal.job, job_id))
        except (asyncio.CancelledError, _Ended):
            pass
        except Exception:  # a task failure fails that job, never the agent
            log.exception("job %s: unexpected error", job_id)
            job = await _db(self.journal.job, job_id)
            if job.state not in TERMINAL and job.state is not JobState.FINISHED:
                data = StepFailed(job.state.value, "agent", "internal error in the node agent",
                                  True).data()
                await self._move(job_id, JobState.FAILED, EventKind.FAILED, data)
                self._release(job)
        finally:
            run = self._runs.get(job_id)
            if run is not None and run.task is asyncio.current_task():
                del self._runs[job_id]

    async def _prepare(self, job: JournalJob) -> None:
        slot = self._slots[job.printer]

        async def emit(kind: EventKind, data: Mapping[str, str]) -> None:
            await self._emit(job.job_id, kind, data)

        prepared = await prepare_job(job.offer, slot.config, self.hub.fetch_artifact, emit,
                                     self.pipeline)
        await _db(self.journal.update, job.job_id, gcode_path=str(prepared.gcode_path),
                  estimated_seconds=prepared.metadata.estimated_seconds,
                  filament_mm=prepared.metadata.filament_mm)
        await self._move(job.job_id, JobState.READY)
        log.info("job %s ready: %d lines, about %.0f s", job.job_id, prepared.lines,
                 prepared.metadata.estimated_seconds)

    async def _await_start(self, job_id: str) -> None:
        run = self._runs[job_id]
        while True:
            job = await _db(self.journal.job, job_id)
            if job.state is not JobState.READY:
                raise StepFailed("start", "agent", f"job is {job.state.value}, not ready")
            if job.granted and self._online.is_set() and self._may_start(job):
                return
            if run.denied is not None:
                await self._move(job_id, JobState.CANCELLED, EventKind.CANCELLED,
                                 {"reason": f"start denied: {run.denied}"})
                self._release(job)
                raise _Ended
            # One request per session: the hub grants once per epoch and denies repeats.
            if not job.granted and self._may_start(job) and run.asked_in != self._session_no \
                    and await self._send(m.StartRequest(job_id, job.lease_epoch, job.printer)):
                run.asked_in = self._session_no
            run.granted.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.granted.wait(), self.heartbeat_s)

    def _may_start(self, job: JournalJob) -> bool:
        slot = self._slots[job.printer]
        flags = self.journal.printer_flags(job.printer)
        return not self._stop.is_set() and flags.mode == "online" and flags.bed_clear \
            and slot.connected and slot.driver.status().phase is PrinterPhase.IDLE

    async def _print(self, job_id: str) -> None:
        job = await _db(self.journal.job, job_id)
        slot = self._slots[job.printer]
        if not job.granted or job.gcode_path is None:
            raise StepFailed("start", "agent", "no start grant for this epoch")
        safe = await asyncio.to_thread(safe_job, Path(job.gcode_path), slot.config, job_id)
        await _db(self.journal.set_printer_flags, job.printer, bed_clear=False)
        # Tell the hub now: else it may offer the next job to this printer the moment the
        # print ends, the offer is declined and the hub stops offering that job to this node.
        await self._send(m.PrinterChanged(self._snapshot(slot)))
        await _db(self.journal.update, job_id, started_at=time.time())
        await self._move(job_id, JobState.PRINTING, EventKind.STARTED,
                         {"printer": job.printer, "printer_model": slot.config.model,
                          "lines": str(safe.commands)})
        started = time.monotonic()
        log.info("job %s: printing on %s (start granted for epoch %d)", job_id, job.printer,
                 job.lease_epoch)
        try:
            result = await slot.driver.print_job(safe)
        except DriverError as exc:
            raise StepFailed("stream", "agent", str(exc), exc.retryable) from exc
        await self._finish_print(job, result.outcome, result.reason or "", result.resends,
                                 result.seconds or time.monotonic() - started, result.retryable)

    async def _finish_print(self, job: JournalJob, outcome: PrintOutcome, reason: str,
                            resends: int, seconds: float, retryable: bool) -> None:
        log.info("job %s: print %s after %.0f s%s", job.job_id, outcome.value, seconds,
                 f" ({reason})" if reason else "")
        if outcome is PrintOutcome.COMPLETED:
            # No filament sensor: what the slicer planned is what was extruded.
            await self._move(job.job_id, JobState.FINISHED, EventKind.COMPLETED,
                             {"actual_seconds": f"{seconds:.1f}", "resends": str(resends),
                              "filament_mm_used": f"{job.filament_mm or 0.0:g}"})
            return  # the printer stays taken until the operator's outcome
        if outcome is PrintOutcome.CANCELLED:
            await self._move(job.job_id, JobState.CANCELLED, EventKind.CANCELLED,
                             {"reason": reason or "cancelled"})
        else:
            await self._move(job.job_id, JobState.FAILED, EventKind.FAILED,
                             {"failure_reason": reason or "the printer reported a failure",
                              "detected_by": "firmware", "step": "print",
                              "retryable": str(retryable).lower(), "resends": str(resends),
                              "actual_seconds": f"{seconds:.1f}"}, reason)
        self._release(job)

    # ------------------------------------------------------------------ heartbeats
    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._beat()
            except JournalError as exc:  # the disk: say so, keep beating (the hub sees us alive)
                log.error("heartbeat: %s", exc)
            except Exception:  # one bad beat (a printer's odd snapshot) never stops the beating
                log.exception("heartbeat failed; the next one is in %g s", self.heartbeat_s)

    async def _beat(self) -> None:
        self._reconnect_printers()
        await self._expire_accepted(time.time())
        await self._store_snapshots()
        if self._online.is_set():
            await self._send(m.Heartbeat(tuple(self._snapshot(s) for s in self._slots.values()),
                                         tuple(await self._progress())))

    async def _store_snapshots(self) -> None:
        self.printer_snapshots = {n: s.driver.status() for n, s in self._slots.items()}
        counts: dict[str, int] = {}
        for job in await _db(self.journal.jobs):
            counts[job.state.value] = counts.get(job.state.value, 0) + 1
        self.job_counts = counts

    async def _expire_accepted(self, now: float) -> None:
        """Forget accepted offers the hub never assigned (it gave the job to another node)."""
        for slot in self._slots.values():
            job = None if slot.job is None else await _db(self.journal.find, slot.job)
            if job is None or job.state is not JobState.ACCEPTED or not job.offer.expires_at:
                continue
            if now > job.offer.expires_at + ACCEPT_GRACE_S:
                log.info("offer %s was never assigned; forgetting job %s", job.offer_id,
                         job.job_id)
                await _db(self.journal.forget, job.job_id)
                self._release(job)

    async def _progress(self) -> list[m.JobProgress]:
        out = []
        for slot in self._slots.values():
            if slot.job is None:
                continue
            job = await _db(self.journal.find, slot.job)
            if job is not None and job.state in ACTIVE:
                status = slot.driver.status()
                out.append(m.JobProgress(job.job_id, job.lease_epoch, status.percent,
                                         status.layer or 0))
        return out

    def _snapshot(self, slot: Slot) -> m.PrinterSnapshot:
        return snapshot(slot, self.journal.printer_flags(slot.config.name), self._draining)

    # ------------------------------------------------------------------ operator commands
    async def status(self) -> dict[str, Any]:
        """A plain-data snapshot for ``spime-node status``."""
        jobs = await _db(self.journal.jobs)
        printers = [status_entry(s, self.journal.printer_flags(s.config.name), self._draining)
                    for s in self._slots.values()]
        return {"node": self.config.node.name, "hub": self.config.node.hub,
                "online": self._online.is_set(), "draining": self._draining,
                "drained_by_hub": self._drained_by_hub,
                "printers": printers,
                "jobs": [{"job": j.job_id, "state": j.state.value, "printer": j.printer,
                          "design": j.offer.design, "epoch": j.lease_epoch,
                          "reason": j.reason} for j in jobs],
                "outbox": len(await _db(self.journal.pending))}

    async def bed_clear(self, printer: str) -> dict[str, Any]:
        """The operator confirms the bed of ``printer`` is clear.

        Raises:
            ControlError: no such printer, or a print is on it right now.
        """
        slot = self._slot(printer)
        if slot.job is not None:
            job = await _db(self.journal.find, slot.job)
            if job is not None and job.state in ACTIVE:
                raise ControlError(f"{printer} is printing job {job.job_id}; wait for it to end")
        await _db(self.journal.set_printer_flags, printer, bed_clear=True)
        if slot.job is not None:
            job = await _db(self.journal.find, slot.job)
            if job is not None and job.state is JobState.FINISHED:
                slot.job = None  # the part is off the bed; its verdict may come later
        await self._send(m.PrinterChanged(self._snapshot(slot)))
        return {"printer": printer, "bed_clear": True}

    async def set_mode(self, printer: str, mode: str) -> dict[str, Any]:
        """Set ``printer`` online, offline or maintenance (the hub stops routing to it). Setting it
        online starts its connect backoff afresh: the operator has just seen to it (replugged, repaired),
        so the next heartbeat tries it at once rather than after a wait of up to PRINTER_RETRY's cap.

        Raises:
            ControlError: no such printer or mode.
        """
        slot = self._slot(printer)
        try:
            await _db(self.journal.set_printer_flags, printer, mode=mode)
        except ValueError as exc:
            raise ControlError(str(exc)) from exc
        if mode == "online":
            slot.retry = Retry()
        await self._send(m.PrinterChanged(self._snapshot(slot)))
        return {"printer": printer, "mode": mode}

    async def outcome(self, job_id: str, outcome: str, reason: str = "", notes: str = ""
                      ) -> dict[str, Any]:
        """Record the operator's verdict on a printed job (an OUTCOME event).

        Raises:
            ControlError: unknown job, a job not awaiting a verdict, or a bad value.
        """
        if outcome not in ("success", "failed"):
            raise ControlError(f"outcome must be success or failed, got {outcome!r}")
        for name, text in (("reason", reason), ("notes", notes)):
            if len(text) > 4000 or "\x00" in text:
                raise ControlError(f"--{name} must be at most 4000 characters without NUL")
        job = await _db(self.journal.find, job_id)
        if job is None:
            raise ControlError(f"this node holds no job {job_id}; see `spime-node status`")
        if job.state is not JobState.FINISHED:
            raise ControlError(f"job {job_id} is {job.state.value}; an outcome is for a "
                               "finished print")
        new = JobState.DONE if outcome == "success" else JobState.FAILED
        await self._move(job_id, new, EventKind.OUTCOME,
                         {"outcome": outcome, "reason": reason, "notes": notes}, reason)
        self._release(job)
        return {"job": job_id, "outcome": outcome}

    def _slot(self, printer: str) -> Slot:
        slot = self._slots.get(printer)
        if slot is None:
            raise ControlError(f"no printer {printer!r} (configured: {', '.join(self._slots)})")
        return slot


_FATAL = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "SUPERSEDED"})
