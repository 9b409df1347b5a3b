"""Job use cases: create, offer to a printer, apply the agents' reports, timers, admin decisions.

Each use case is a pure `decide(job) -> Change` run by the store on the locked job row
(see hub/store/jobs.py); commands for agents go to the node's outbox in the same
transaction, then the node's session is rung. Listeners hear every committed change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hub.errors import HubError, InvalidArgument, InvalidTransition, NotFound, PermissionDenied
from hub.jobs import (
    DEFAULT_TIMERS,
    EVENT_KINDS,
    MAX_REASON,
    TERMINAL,
    Change,
    Command,
    Job,
    JobSpec,
    JobState,
    TimerPolicy,
    check_data,
    check_transition,
    event_effect,
    is_unstarted,
    lost_contact_deadline,
    production_update,
)
from hub.scheduler import PrinterRecord, candidates
from hub.service.common import Clock, format_time, parse_time
from hub.service.job_changes import (
    JOB_ID,
    RESET,
    cancel_change,
    check_reason,
    check_spec,
    cmd,
    ended,
    progress_values,
    requeue_if_unchanged,
    unknown_to_agent,
)
from hub.store.jobs import EventRecord, JobStore, JobWriter, Outcome, Pick
from hub.store.nodes import NodeStore

__all__ = ["Desired", "HeldJob", "JobService", "Progress", "check_spec"]

log = logging.getLogger("hub.jobs")
S = JobState
Listener = Callable[[Job], None]
# After a commit: wake the node's session; with the commands just put in its outbox (with their hub_seq)
# and the job after the change, so a live session can send them without reading its outbox again.
Ring = Callable[[str, Sequence[Command], Job | None], None]



@dataclass(frozen=True, slots=True)
class HeldJob:
    """A job a (re)connecting agent says it holds (Hello.jobs)."""

    job_id: str
    lease_epoch: int
    state: str  # preparing|ready|printing|paused|finished|done|failed|cancelled|interrupted
    printer: str = ""


@dataclass(frozen=True, slots=True)
class Desired:
    """What the hub wants the agent to do with a held job: run|hold|cancel|forget."""

    job_id: str
    lease_epoch: int
    desired: str


@dataclass(frozen=True, slots=True)
class Progress:
    job_id: str
    lease_epoch: int
    percent: float
    layer: int


class _Made(list[Job]):
    """The jobs an order's transaction created, and the offers it put in outboxes (JobService._claimed)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Command] = []


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


class JobService:
    """Jobs: the use cases ORDERS, the admin CLI and the node sessions call."""

    def __init__(self, jobs: JobStore, nodes: NodeStore, clock: Clock, timers: TimerPolicy = DEFAULT_TIMERS) -> None:
        self.jobs, self.nodes, self.clock, self.timers = jobs, nodes, clock, timers
        self.ring: Ring = lambda node, sent, job: None
        self._listeners: list[Listener] = []
        self._tried: set[str] = set()  # job ids this process tried to offer (the queue poll skips them)

    def add_listener(self, fn: Listener) -> None:
        """Call fn(job) after every committed change of a job (from any thread)."""
        self._listeners.append(fn)

    def _now(self) -> str:
        return format_time(self.clock())

    def _emit(self, job: Job | None) -> None:
        if job is None:
            return
        for fn in list(self._listeners):
            try:
                fn(job)
            except Exception:
                log.exception("job listener failed", extra={"job": job.id})

    def _commit(self, job_id: str, decide: Callable[[Job | None], Change],
                event: EventRecord | None = None) -> Outcome:
        made: list[Change] = []

        def run(job: Job | None) -> Change:
            made.append(decide(job))
            return made[-1]

        outcome = self.jobs._thd_change(job_id, run, self._now(), event)
        if made and not outcome.duplicate:
            self._ring(outcome.commands, outcome.job)
        if outcome.changed:
            self._emit(outcome.job)
        return outcome

    # -- reads ---------------------------------------------------------------------

    def _thd_get_job(self, job_id: str) -> Job:
        """Raises: NotFound."""
        return self.jobs._thd_get(job_id)

    def _thd_jobs_of_order(self, order_id: str) -> list[Job]:
        return self.jobs._thd_list(order_id=order_id)

    def _thd_jobs_of_orders(self, order_ids: Sequence[str]) -> dict[str, list[Job]]:
        return self.jobs._thd_of_orders(order_ids)

    def _thd_list_jobs(self, states: Sequence[JobState] = ()) -> list[Job]:
        return self.jobs._thd_list(states)

    # -- create, dispatch ------------------------------------------------------------

    def _thd_create_job(self, spec: JobSpec, created_by: str) -> Job:
        """Queue a job and offer it at once (same transaction) if a printer qualifies.

        Raises:
            InvalidArgument: a field of the spec is malformed.
            NotFound: no such design revision.
        """
        job_id = _new_id("j-")
        pick, change_for, now = self._offer_rules(job_id)
        sent: list[Command] = []
        created, offered = self.jobs._thd_create_offered(job_id, check_spec(spec), created_by, now, pick, change_for,
                                                         sent)
        self._tried.add(job_id)
        self._emit(created)
        self._offered(offered, sent)
        return offered or created

    def _claim_writer(self, wanted: Sequence[tuple[str, JobSpec, Sequence[tuple[str, str]]]], created_by: str
                      ) -> JobWriter:
        """The part of an order's write transaction that creates its jobs: each job (id, spec,
        (node, printer) pairs best first) is offered to the first of its printers still free (JobStore's claim,
        a compare-and-set under the printer's lock), or stays queued for the dispatcher.
        Call _claimed with the result once the transaction committed."""
        checked = [(job_id, check_spec(spec), prefer) for job_id, spec, prefer in wanted]

        def create(conn: Any) -> list[Job]:
            made = _Made()
            for job_id, spec, prefer in checked:
                _, change_for, now = self._offer_rules(job_id)
                made.append(self.jobs._create_claiming(conn, job_id, spec, created_by, now, prefer, change_for,
                                                       made.sent))
            return made

        return create

    def _claimed(self, made: Sequence[Job]) -> None:
        """After the commit of _claim_writer's jobs: ring their nodes (handing the offers over) and tell
        the listeners."""
        sent: Sequence[Command] = made.sent if isinstance(made, _Made) else ()
        for job in made:
            self._tried.add(job.id)
            self._emit(job)
            if job.node:
                self.ring(job.node, [c for c in sent if c.job_id == job.id], job)

    def _ring(self, sent: Sequence[Command], job: Job | None) -> None:
        """After a commit: wake the sessions of the nodes these commands went to, handing them over."""
        for node in dict.fromkeys(c.node for c in sent):
            self.ring(node, [c for c in sent if c.node == node], job)

    @staticmethod
    def new_job_id() -> str:
        return _new_id("j-")

    async def create_job(self, spec: JobSpec, created_by: str) -> Job:
        """Raises: InvalidArgument, NotFound."""
        return await asyncio.to_thread(self._thd_create_job, spec, created_by)

    def _offer_rules(self, job_id: str) -> tuple[Pick, Callable[[Job, PrinterRecord], Change], str]:
        """How a dispatch of job_id picks a printer and the offer it makes: (pick, change_for, now)."""
        now = self.clock()
        expires = format_time(now + dt.timedelta(seconds=self.timers.offer_expiry_s))
        offer_id = f"{job_id}/{secrets.token_hex(4)}"

        def pick(job: Job, printers: list[PrinterRecord], busy: frozenset[tuple[str, str]],
                 extents: tuple[float, float, float] | None) -> PrinterRecord | None:
            found = candidates(printers, extents, job.material, busy=busy, exclude_nodes=frozenset(job.tried_nodes),
                               node=job.want_node, printer=job.want_printer)
            return found[0] if found else None

        def change_for(job: Job, p: PrinterRecord) -> Change:
            offer = cmd("offer", job, p.node, job.lease_epoch + 1, offer_id=offer_id, printer_id=p.printer,
                         expires_at=expires)
            return Change(S.OFFERED, {"node": p.node, "printer": p.printer, "offer_id": offer_id,
                                      "offer_expires_at": expires}, commands=(offer,))

        return pick, change_for, format_time(now)

    def _offered(self, job: Job | None, sent: Sequence[Command]) -> None:
        if job is not None and job.node:
            self.ring(job.node, sent, job)
            self._emit(job)

    def _thd_dispatch(self, job_id: str) -> Job | None:
        """Offer a queued job to the first printer that qualifies; None if none does (or not queued)."""
        sent: list[Command] = []
        job = self.jobs._thd_dispatch(job_id, *self._offer_rules(job_id), sent)
        self._tried.add(job_id)
        self._offered(job, sent)
        return job

    def _thd_dispatch_all(self) -> int:
        """Offer every queued job that some printer can take; returns how many were offered."""
        queued = self.jobs._thd_list((S.QUEUED,))
        self._tried.intersection_update(job.id for job in queued)  # only queued ids matter to the poll
        if not queued:
            return 0
        return self._offer_hopeful(queued, self.jobs._thd_free_printers()[0])

    def _thd_dispatch_nodes(self, nodes: Sequence[str]) -> int:
        """Offer the queued jobs these nodes (just connected, or their printers changed) could take."""
        queued = self.jobs._thd_queued_for(nodes)
        if not queued:
            return 0
        return self._offer_hopeful(queued, self.jobs._thd_free_printers(nodes)[0])

    def _offer_hopeful(self, queued: Sequence[Job], printers: Sequence[PrinterRecord]) -> int:
        """Dispatch the jobs some of these free printers could take (one read of the printers rules
        out most jobs at once; a claim re-checks under its lock)."""
        by_node: dict[str, list[PrinterRecord]] = {}
        for p in printers:
            by_node.setdefault(p.node, []).append(p)
        verdicts: dict[tuple[object, ...], bool] = {}

        def hopeful(job: Job) -> bool:
            key = (job.material.casefold(), job.want_node, job.want_printer, job.tried_nodes)
            if key not in verdicts:
                pool = printers if job.want_node is None else by_node.get(job.want_node, [])
                verdicts[key] = bool(candidates(pool, None, job.material, exclude_nodes=frozenset(job.tried_nodes),
                                                node=job.want_node, printer=job.want_printer))
            return verdicts[key]

        return sum(self._thd_dispatch(job.id) is not None for job in queued if hopeful(job))

    def _thd_dispatch_new(self) -> int:
        """Offer queued jobs this hub never tried to dispatch (created by another process, e.g.
        `spime-hub job add`); cheap enough to poll often."""
        return sum(self._thd_dispatch(job_id) is not None
                   for job_id in self.jobs._thd_queued_ids() if job_id not in self._tried)

    # -- the agent's side ------------------------------------------------------------

    def _thd_offer_reply(self, node: str, offer_id: str, accept: bool, reason: str,
                         est_seconds: int = 0) -> Job | None:
        """Accept (assign, new epoch) or decline (back to the queue, next candidate) an offer.

        A reply to an offer that expired or was replaced changes nothing.

        Raises:
            NotFound: the offer names no job.
            PermissionDenied: the offer was made to another node.
        """
        job_id = offer_id.partition("/")[0]

        def decide(job: Job | None) -> Change:
            if job is None:
                raise NotFound(f"offer {offer_id[:40]!r} names no job")
            if job.offer_id != offer_id or job.state is not S.OFFERED:
                return Change(applied=False, note="offer no longer valid")
            if job.node != node:
                raise PermissionDenied(f"offer {offer_id} was made to another node")
            if accept:
                assigned = cmd("assigned", job, node, job.lease_epoch + 1, offer_id=offer_id)
                values = {"offer_expires_at": "", "estimated_seconds": est_seconds or job.estimated_seconds}
                return Change(S.ASSIGNED, values, bump_epoch=True, commands=(assigned,))
            log.info("offer declined", extra={"job": job.id, "node": node, "reason": reason[:200]})
            # the node is left out for decline_ttl_s (the sweep forgets it), not forever
            return Change(S.QUEUED, {"node": None, "printer": None, "offer_expires_at": "",
                                     "tried_nodes": (*job.tried_nodes, node), "tried_at": self._now()})

        outcome = self._commit(job_id, decide)
        if outcome.changed and not accept:
            return self._thd_dispatch(job_id) or outcome.job
        return outcome.job

    def _thd_start(self, node: str, job_id: str, epoch: int, printer: str) -> bool:
        """The start fence: grant exactly once per epoch, to the epoch's holder; returns whether granted.

        The grant or the denial goes to the node's outbox (StartGranted / StartDenied).

        Raises:
            NotFound: no such job.
            PermissionDenied: the job is not this node's.
        """
        def decide(job: Job | None) -> Change:
            if job is None:
                raise NotFound(f"no job {job_id[:40]!r}")
            if job.node != node and epoch >= job.lease_epoch:
                raise PermissionDenied(f"job {job_id} is not assigned to node {node}")
            # a stale epoch is denied, not refused (its holder must stop); another node's job tells nothing more
            deny = self._denial(job, epoch, printer) if job.node == node else f"job {job_id} is not node {node}'s now"
            if deny:
                return Change(commands=(cmd("start_denied", job, node, epoch, reason=deny),), applied=False)
            granted = cmd("start_granted", job, node, epoch)
            return Change(S.PRINTING, {"started_at": self._now(), "progress": 0.0}, commands=(granted,))

        return self._commit(job_id, decide).applied

    @staticmethod
    def _denial(job: Job, epoch: int, printer: str) -> str:
        if epoch != job.lease_epoch:
            return f"lease epoch {epoch} is stale; the job is at epoch {job.lease_epoch}"
        if job.cancel_requested:
            return "the job is being cancelled"
        if printer and printer != job.printer:
            return f"the job was assigned to printer {job.printer}, not {printer}"
        if not is_unstarted(job.state):
            return f"the job is {job.state.value}: a print starts at most once per epoch"
        return ""

    def _thd_event(self, node: str, event: EventRecord) -> Outcome:
        """Record a report once per (node, agent_seq) and apply it if its epoch is current.

        A refused report is recorded too (so the agent's outbox moves on), then raised.

        Raises:
            InvalidArgument: malformed kind, data or ids.
            NotFound: the job does not exist.
            PermissionDenied: the job is not this node's.
        """
        try:
            event = self._valid_event(event)
        except InvalidArgument as exc:
            self._refuse(replace(event, job_id="", data={}, kind="invalid", at=self._now()), exc)
            raise
        refusal: list[HubError] = []
        outcome = self._commit(event.job_id, lambda job: self._decide_event(node, event, job, refusal), event)
        if refusal:
            raise refusal[0]
        return outcome

    def _refuse(self, event: EventRecord, exc: HubError) -> None:
        if event.agent_seq > 0:
            self._commit("", lambda job: Change(applied=False, note=str(exc)[:MAX_REASON]), event)

    @staticmethod
    def _valid_event(event: EventRecord) -> EventRecord:
        if event.agent_seq < 1 or event.agent_seq >= 2**63:
            raise InvalidArgument("agent_seq must be 1 or more (the agent's outbox sequence)")
        if not JOB_ID.match(event.job_id):
            raise InvalidArgument(f"job id {event.job_id[:40]!r} is malformed")
        if event.kind not in EVENT_KINDS:
            raise InvalidArgument(f"event kind {event.kind[:40]!r} is not one of {', '.join(EVENT_KINDS)}")
        parse_time(event.at, "event time")
        return replace(event, data=check_data(event.data))

    def _decide_event(self, node: str, event: EventRecord, job: Job | None, refusal: list[HubError]) -> Change:
        if job is None:
            refusal.append(NotFound(f"no job {event.job_id!r}"))
            return Change(applied=False, note="unknown job")
        if event.lease_epoch < job.lease_epoch:  # fenced: whoever held the old epoch, it changes nothing
            return Change(applied=False, note=f"stale epoch {event.lease_epoch}; job is at {job.lease_epoch}")
        if job.node != node or event.lease_epoch != job.lease_epoch:
            refusal.append(PermissionDenied(f"job {job.id} at epoch {event.lease_epoch} is not node {node}'s"))
            return Change(applied=False, note="not this node's job")
        if job.state is S.OFFERED:  # the lease is the accepted offer's epoch: an offer alone holds nothing
            refusal.append(PermissionDenied(f"job {job.id} is only offered to node {node}: accept the offer first"))
            return Change(applied=False, note="offered, not accepted")
        try:
            target = event_effect(event.kind, job.state, event.data)
            production = production_update(event.kind, event.data)
            values = self._event_values(event, job.state, target, production)
        except InvalidTransition as exc:
            return Change(applied=False, note=str(exc))
        except InvalidArgument as exc:
            refusal.append(exc)
            return Change(applied=False, note=str(exc)[:MAX_REASON])
        return Change(target, values, production=production,
                      fabrication=None if target is None else ended(job, target, event.kind))

    @staticmethod
    def _event_values(event: EventRecord, state: JobState, target: JobState | None,
                      production: Mapping[str, object]) -> dict[str, object]:
        values: dict[str, object] = {}
        if "estimated_seconds" in production:
            values["estimated_seconds"] = int(float(str(production["estimated_seconds"])))
        if target is S.PRINTING:
            values["lost_at"] = ""
        if target is S.PRINTED:
            values["progress"] = 100.0
        if target is S.FAILED or target is S.CANCELLED:
            reason = event.data.get("failure_reason") or event.data.get("reason") or event.kind
            values["failure_reason"] = reason[:MAX_REASON]
        if event.kind == "progress":
            checked = progress_values(event.data)  # refuses bad values whatever the state
            if (target or state) is S.PRINTING:  # a finished job's progress stays what it was
                values.update(checked)
        return values

    def _thd_progress(self, node: str, items: Sequence[Progress]) -> None:
        """Heartbeat progress of printing jobs (current epoch only); a silent job found printing again."""
        for item in items:
            def decide(job: Job | None, item: Progress = item) -> Change:
                if job is None or job.node != node or job.lease_epoch != item.lease_epoch:
                    return Change(applied=False)
                if job.state not in (S.PRINTING, S.LOST_CONTACT):
                    return Change(applied=False)
                target = S.PRINTING if job.state is S.LOST_CONTACT else None
                pct = min(100.0, max(0.0, item.percent))
                if target is None and (pct, item.layer) == (job.progress_percent, job.layer):
                    return Change(applied=False)
                return Change(target, {"progress": pct, "layer": item.layer, "lost_at": ""})

            try:
                self._commit(item.job_id, decide)
            except NotFound:
                continue

    def _thd_reconcile(self, node: str, held: Sequence[HeldJob], applied_hub_seq: int = 0) -> list[Desired]:
        """Level-triggered resume: what the agent should do with each job it says it holds; jobs the
        hub thinks it holds but it does not know (a lost journal) are fenced off.

        Raises:
            HubError: the store failed.
        """
        result = self._thd_reconcile_many([(node, tuple(held), applied_hub_seq)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _thd_reconcile_many(self, sessions: Sequence[tuple[str, tuple[HeldJob, ...], int]]
                            ) -> list[list[Desired] | Exception]:
        """_thd_reconcile for a batch of opening sessions (node, held, applied_hub_seq): two reads for
        the batch, then each node on its own; a node that fails gets its exception."""
        nodes = sorted({node for node, _, _ in sessions})
        pending = self.nodes._thd_pending_of(nodes)
        holds: dict[str, list[Job]] = {}
        for job in self.jobs._thd_held_by(nodes, (S.ASSIGNED, S.PREPARING, S.READY, S.PRINTING)):
            holds.setdefault(job.node or "", []).append(job)
        out: list[list[Desired] | Exception] = []
        for node, held, applied in sessions:
            undelivered = {c.job_id for c in pending.get(node, ()) if c.hub_seq > applied}
            try:
                out.append(self._reconcile(node, held, undelivered, holds.get(node, [])))
            except Exception as exc:  # noqa: BLE001 - that session gets it
                out.append(exc)
        return out

    def _reconcile(self, node: str, held: Sequence[HeldJob], undelivered: set[str], holds: Sequence[Job]
                   ) -> list[Desired]:
        desired = [self._desired(node, h) for h in held]
        known = {h.job_id for h in held}
        for job in holds:
            if job.id in known or job.id in undelivered:
                continue
            log.warning("node does not know a job it holds", extra={"node": node, "job": job.id})
            target = S.LOST_CONTACT if job.state is S.PRINTING else S.QUEUED
            self._commit(job.id, unknown_to_agent(job, target, self._now()))
        return desired

    def _desired(self, node: str, held: HeldJob) -> Desired:
        printing = held.state in ("printing", "paused")
        try:
            job = self.jobs._thd_get(held.job_id)
        except NotFound:
            return Desired(held.job_id, held.lease_epoch, "cancel" if printing else "forget")
        if job.node != node or job.lease_epoch != held.lease_epoch:
            return Desired(held.job_id, held.lease_epoch, "cancel" if printing else "forget")
        if job.state in TERMINAL:
            return Desired(job.id, job.lease_epoch, "forget")
        if job.cancel_requested:
            return Desired(job.id, job.lease_epoch, "cancel")
        if printing and job.state in (S.LOST_CONTACT, S.OUTCOME_UNKNOWN):
            self._commit(job.id, lambda j: Change(S.PRINTING, {"lost_at": ""})
                         if j is not None and j.state is job.state and j.lease_epoch == job.lease_epoch
                         else Change(applied=False))
        return Desired(job.id, job.lease_epoch, "run")

    def _thd_node_lost(self, node: str) -> None:
        """The node's session ended: its printing jobs are LOST_CONTACT (never requeued by themselves)."""
        self._thd_nodes_lost([node])

    def _thd_nodes_lost(self, nodes: Sequence[str]) -> None:
        """_thd_node_lost for a batch of ended sessions (one read)."""
        for job in self.jobs._thd_held_by(nodes, (S.PRINTING,)):
            node = job.node
            self._commit(job.id, lambda j, node=node: Change(S.LOST_CONTACT, {"lost_at": self._now()})  # type: ignore[misc]
                         if j is not None and j.state is S.PRINTING and j.node == node else Change(applied=False))

    # -- admin decisions ---------------------------------------------------------------

    def _thd_cancel_job(self, job_id: str, reason: str) -> Job:
        """Cancel a job: at once before printing; while printing, the node is told and the job
        ends cancelled when the agent reports CANCELLED.

        Raises:
            NotFound: no such job.
            InvalidTransition: the job already ended (or its print finished).
        """
        reason = check_reason(reason)

        def decide(job: Job | None) -> Change:
            assert job is not None
            tell = (cmd("cancel", job, job.node, job.lease_epoch, reason=reason),) if job.node else ()
            return cancel_change(job, tell, reason)

        outcome = self._commit(job_id, decide)
        if outcome.before is not None and outcome.before.state is S.OFFERED and outcome.before.node:
            self.nodes._thd_drop_commands(outcome.before.node, job_id, ("offer",))
        assert outcome.job is not None
        return outcome.job

    def _thd_requeue(self, job_id: str) -> Job:
        """A person decided to print again: back to the queue under a new epoch (fences the old node).

        Raises:
            NotFound: no such job.
            InvalidTransition: only outcome_unknown and failed jobs can be requeued.
        """
        def decide(job: Job | None) -> Change:
            assert job is not None
            check_transition(job.state, S.QUEUED)
            if is_unstarted(job.state) or job.state is S.OFFERED:
                raise InvalidTransition(f"the job is {job.state.value}, still with its node: cancel it instead")
            return Change(S.QUEUED, RESET, bump_epoch=True)

        outcome = self._commit(job_id, decide)
        return self._thd_dispatch(job_id) or self.jobs._thd_get(job_id) if outcome.changed else self._get(outcome)

    def _thd_fail(self, job_id: str, reason: str) -> Job:
        """A person decided the job failed (typically an outcome_unknown job).

        Raises:
            NotFound: no such job.
            InvalidTransition: the job already ended.
        """
        reason = check_reason(reason) or "failed by an admin"

        def decide(job: Job | None) -> Change:
            assert job is not None
            check_transition(job.state, S.FAILED)
            tell = () if job.state in (S.QUEUED, S.OFFERED, S.PRINTED) or not job.node else (
                cmd("cancel", job, job.node, job.lease_epoch, reason=reason),)
            return Change(S.FAILED, {"failure_reason": reason}, commands=tell,
                          fabrication=ended(job, S.FAILED, "failed"))

        return self._get(self._commit(job_id, decide))

    @staticmethod
    def _get(outcome: Outcome) -> Job:
        assert outcome.job is not None
        return outcome.job

    # -- timers ------------------------------------------------------------------------

    def _thd_sweep(self) -> None:
        """Expire offers, forget old declines, requeue unstarted jobs of vanished nodes, time out lost
        contact, dispatch."""
        now = self.clock()
        stamp = format_time(now)
        for job in self.jobs._thd_due(S.OFFERED, "offer_expires_at", stamp):
            self._expire_offer(job, stamp)
        self.jobs._thd_forget_declines(format_time(now - dt.timedelta(seconds=self.timers.decline_ttl_s)))
        self._requeue_abandoned(now)
        for job in self.jobs._thd_list((S.LOST_CONTACT,)):
            self._maybe_unknown(job, now)
        self._thd_dispatch_all()

    def _expire_offer(self, job: Job, stamp: str) -> None:
        def decide(j: Job | None) -> Change:
            if j is None or j.state is not S.OFFERED or j.offer_id != job.offer_id or j.offer_expires_at > stamp:
                return Change(applied=False)
            return Change(S.QUEUED, {"node": None, "printer": None, "offer_expires_at": "",
                                     "tried_nodes": (*j.tried_nodes, j.node or ""), "tried_at": stamp})

        if self._commit(job.id, decide).changed and job.node:
            self.nodes._thd_drop_commands(job.node, job.id, ("offer",))

    def _requeue_abandoned(self, now: dt.datetime) -> None:
        """Jobs of offline nodes: a print is LOST_CONTACT, an unstarted lease runs out after lease_ttl_s."""
        for node in {job.node for job, _ in self.jobs._thd_of_offline_nodes((S.PRINTING,)) if job.node}:
            self._thd_node_lost(node)
        ttl = dt.timedelta(seconds=self.timers.lease_ttl_s)
        for job, since in self.jobs._thd_of_offline_nodes((S.ASSIGNED, S.PREPARING, S.READY)):
            if since and parse_time(since) + ttl <= now:
                self._commit(job.id, requeue_if_unchanged(job))

    def _maybe_unknown(self, job: Job, now: dt.datetime) -> None:
        started = parse_time(job.started_at) if job.started_at else None
        since = parse_time(job.lost_at) if job.lost_at else now
        if lost_contact_deadline(started, since, job.estimated_seconds, self.timers) > now:
            return
        self._commit(job.id, lambda j: Change(S.OUTCOME_UNKNOWN)
                     if j is not None and j.state is S.LOST_CONTACT and j.lease_epoch == job.lease_epoch
                     else Change(applied=False))
