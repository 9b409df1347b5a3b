"""Node use cases: enrollment and the agent's Session (hello, heartbeats, reports, acks).

One live session per node. Hub -> agent commands live in the node's outbox table
(hub/store/nodes.py) until acked; a session is rung (a doorbell on its queue, thread
safe) whenever a command is committed, and then sends everything past what it sent.
A newer Hello of the same node supersedes the older session, also one held by another hub
replica on the same PostgreSQL (hub/service/replicas.py: NOTIFY wake-ups, leases, takeover).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import functools
import logging
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.auth import new_token
from hub.domain import Account, Attribution, Revision, Role
from hub.errors import (
    HubError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from hub.jobs import DEFAULT_TIMERS, MAX_PRINT_SECONDS, Command, Job, JobState, TimerPolicy
from hub.limits import MAX_HELD, MAX_PRINTERS, check_plain_text
from hub.manifest import MESH_SUFFIXES
from hub.orders import PrintedPart, openscad_source, printed_part
from hub.scheduler import PrinterRecord
from hub.service.accounts import check_account_name, check_new_account_name
from hub.service.batching import Opening, all_at_once, outbox_reader, session_closer, session_opener
from hub.service.common import Clock, format_time
from hub.service.job_changes import check_layer
from hub.service.jobs import Desired, HeldJob, JobService, Progress
from hub.service.lineage import attribution_of
from hub.service.quoting import as_published
from hub.service.replicas import new_replica_id
from hub.store.blobs import check_sha256
from hub.store.designs import DesignStore
from hub.store.jobs import EventRecord, JobStore
from hub.store.nodes import HelloRecord, NodeInfo, NodeStore
from hub.store.schema import MAX_DRAIN_REASON

__all__ = [
    "Ack", "Admission", "Drain", "EventAck", "Heartbeat", "Hello", "NodeService", "OfferDetails", "OfferReply",
    "PrinterChanged", "Session", "StartRequest", "Superseded", "Welcome", "check_printer",
]

log = logging.getLogger("hub.nodes")
MAX_MATERIALS = 32
LAST_SEEN_EVERY_S = 60
# Sessions between admission and Welcome: a reconnect storm of a full hub (10,000 agents, a few KB
# each while they wait) waits in line; more are told to come back later, unless the hub opens them
# within MAX_OPENING_WAIT_S at its recent rate. The floor is fixed: a rate measured in a slow moment
# must not refuse agents, whose retries would slow the hub further.
MAX_OPENING = 10_000
MAX_OPENING_WAIT_S = 20.0
# A session is authenticated when it opens; a credential revoked later (``spime-hub user revoke``,
# maybe by another process) ends the node's live session within this many seconds. Half the token
# cache's lifetime: the agent cannot open a new session with the revoked token after that either.
CREDENTIAL_RECHECK_S = 30.0
DRAIN_CHECK_S = 5.0  # how soon a drain or resume written by `spime-hub node` reaches a live session
_PRINTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_PHASES = frozenset({"idle", "printing", "paused", "error", "maintenance", "offline"})
_DOORBELL = object()
_PARTS_KEPT = 1024
_END = object()


@dataclass(frozen=True, slots=True)
class Hello:
    agent_id: str
    version: str
    last_hub_seq_applied: int
    printers: tuple[PrinterRecord, ...]
    held: tuple[HeldJob, ...]
    location: str = ""
    latitude: float | None = None
    longitude: float | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    printers: tuple[PrinterRecord, ...]
    progress: tuple[Progress, ...]


@dataclass(frozen=True, slots=True)
class OfferReply:
    offer_id: str
    accept: bool
    reason: str
    est_print_seconds: int = 0


@dataclass(frozen=True, slots=True)
class StartRequest:
    job_id: str
    lease_epoch: int
    printer: str


@dataclass(frozen=True, slots=True)
class Ack:
    hub_seq: int


@dataclass(frozen=True, slots=True)
class PrinterChanged:
    printer: PrinterRecord


@dataclass(frozen=True, slots=True)
class Welcome:
    session_epoch: int
    last_agent_seq_committed: int
    desired: tuple[Desired, ...]
    heartbeat_s: int
    lease_ttl_s: int


@dataclass(frozen=True, slots=True)
class EventAck:
    agent_seq: int


@dataclass(frozen=True, slots=True)
class Superseded:
    new_session_epoch: int


@dataclass(frozen=True, slots=True)
class Drain:
    """Finish the prints in hand, take no new job: the node is drained (sent in each of its sessions)."""

    reason: str


@dataclass(frozen=True, slots=True)
class OfferDetails:
    """A JobOffer as sent: the job's spec, its artifacts and attributions."""

    hub_seq: int
    offer_id: str
    job: Job
    artifacts: tuple[tuple[str, int, str, str], ...]  # sha256, size, kind, path
    bbox_mm: tuple[float, float, float] | None
    expires_at: str
    printer: str
    lease_epoch: int
    attributions: tuple[Attribution, ...]


_RevisionParts = tuple[tuple[tuple[str, int, str, str], ...], tuple[float, float, float] | None,
                       tuple[Attribution, ...]]


@dataclass(frozen=True, slots=True)
class _KeptParts:
    """A revision's offer parts as last read; ``final`` once every mesh has its printability report."""

    parts: _RevisionParts
    meshes: frozenset[str]
    final: bool
Incoming = Heartbeat | OfferReply | StartRequest | EventRecord | Ack | PrinterChanged
Outgoing = Welcome | Command | OfferDetails | EventAck | Superseded | Drain


@dataclass(frozen=True, slots=True)
class _Committed:
    """Commands of one transaction for a session's node, handed over at commit: (hub_seq, what to
    send, None for nothing) each, consecutive hub_seqs (one transaction holds the node's counter)."""

    items: tuple[tuple[int, Outgoing | None], ...]


class _SendQueue:
    """What a session's sender sends next, in order: items and the one sender's waiter (on the loop).

    asyncio.Queue does more than a session needs (a bound, waiting putters, task counting with an
    Event of its own) and, when a stream ends just as an item wakes its sender, formats the sender's
    future into the message of a ValueError it then discards (deque.remove): a reconnect storm of
    10,000 agents paid that on every dropped stream, and each open session kept the Queue's five
    extra containers.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: object) -> None:
        """Queue an item and wake the sender (call on the loop the sender runs on)."""
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> object:
        """The next item, once there is one."""
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        return self._items.popleft()


@dataclass(eq=False)
class Session:
    """One agent's live stream: its epoch and the queue its sender drains."""

    node: str
    epoch: int
    loop: asyncio.AbstractEventLoop
    sent: int
    queue: _SendQueue = field(default_factory=_SendQueue)
    last_heard: dt.datetime | None = None
    last_written: dt.datetime | None = None  # when nodes.last_seen was last stored
    handed: int = 0  # the newest hub_seq handed over at commit (queued, maybe not sent yet)
    printers: dict[str, PrinterRecord] = field(default_factory=dict)
    credential: str = ""  # the stored form (token_digest) of the token the session opened with
    drained: bool = False  # the agent was told to drain in this session

    def push(self, item: object) -> None:
        """Queue an item for the sender (from any thread; on the session's own loop without waking it
        through its self-pipe)."""
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is self.loop:
            self.queue.put(item)
        else:
            self.loop.call_soon_threadsafe(self.queue.put, item)

    def ring(self) -> None:
        self.push(_DOORBELL)

    def end(self, error: BaseException | None = None) -> None:
        self.push(_END if error is None else error)

    def drain(self, reason: str) -> None:
        """Tell the agent to finish its prints and take no new job, for the rest of this session."""
        self.push(Drain(reason))
        self.drained = True


MAX_RATE_MINOR = 100_000_000  # a printer's rate per hour or gram: node_agent.config's 1,000,000 in cents


def check_printer(p: PrinterRecord) -> PrinterRecord:
    """Bounds of a reported printer.

    Raises:
        InvalidArgument: a malformed id, size, phase or too many materials.
    """
    if not _PRINTER.match(p.printer):
        raise InvalidArgument(f"printer id {p.printer[:80]!r} must be 1-64 letters, digits, '_', '.' or '-'")
    check_plain_text(p.model, "printer model", 64)
    check_plain_text(p.slicer_profile, "slicer profile", 64)
    if not all(0 < v <= 10_000 for v in p.build_volume_mm):
        raise InvalidArgument(f"printer {p.printer}: build volume must be 0-10000 mm on each axis")
    if not 0 <= p.nozzle_mm <= 10:
        raise InvalidArgument(f"printer {p.printer}: nozzle diameter must be 0-10 mm")
    if p.phase not in _PHASES:
        raise InvalidArgument(f"printer {p.printer}: phase must be one of {', '.join(sorted(_PHASES))}")
    if len(p.materials) > MAX_MATERIALS:
        raise InvalidArgument(f"printer {p.printer}: at most {MAX_MATERIALS} materials")
    for material in p.materials:
        check_plain_text(material, "material", 32)
    for currency, minor in (p.rate_per_hour, p.rate_per_gram):
        if (currency and not re.match(r"^[A-Z]{3}\Z", currency)) or not 0 <= minor <= MAX_RATE_MINOR:
            raise InvalidArgument(f"printer {p.printer}: rates are amounts of 0 to {MAX_RATE_MINOR} minor units "
                                  "(as spime-node's 1,000,000 a unit) in an ISO 4217 currency")
    return p


def _check_printer_ids(printers: Sequence[PrinterRecord]) -> None:
    """Raises: InvalidArgument: two of the printers share an id (one message describes each printer once)."""
    ids = [p.printer for p in printers]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise InvalidArgument(f"printer id {twice[0][:64]!r} appears twice: each printer is reported once per message")


def _check_hello(account: Account, hello: Hello) -> None:
    if hello.agent_id != account.name:
        raise PermissionDenied(f"Hello.agent_id {hello.agent_id[:64]!r} is not this credential's node "
                               f"{account.name!r}")
    check_plain_text(hello.version, "agent version", 64)
    check_plain_text(hello.location, "location", 128)
    if hello.latitude is not None and not -90 <= hello.latitude <= 90:
        raise InvalidArgument("latitude must be -90..90 degrees")
    if hello.longitude is not None and not -180 <= hello.longitude <= 180:
        raise InvalidArgument("longitude must be -180..180 degrees")
    if len(hello.printers) > MAX_PRINTERS or len(hello.held) > MAX_HELD:
        raise InvalidArgument(f"at most {MAX_PRINTERS} printers and {MAX_HELD} held jobs per Hello")
    _check_printer_ids(hello.printers)
    for p in hello.printers:
        check_printer(p)
    for held in hello.held:
        check_plain_text(held.job_id, "held job id", 32)


class Admission:
    """How many sessions may be opening at once (Hello received, Welcome not yet queued).

    Sessions queue while the hub would open every one already waiting within ``max_wait_s`` at
    the rate it has just been opening them (and never fewer than ``limit``). Beyond that a Hello is
    refused with RESOURCE_EXHAUSTED and a RetryInfo hint: the time the sessions already opening
    need at that rate, so a reconnect storm is served at the hub's pace instead of queueing
    without bound or every agent timing out and backing off exponentially. Waiting in line is
    cheaper than coming back: a refused Hello costs the hub a stream, a token check and a refusal
    (10,000 agents reconnecting: 18 s and 18 CPU-s queued against 33 s and 31 CPU-s refused).
    """

    WINDOW_S = 2.0

    def __init__(self, limit: int, min_hint_s: float = 0.25, max_hint_s: float = 10.0,
                 default_rate: float = 500.0, max_wait_s: float = 0.0) -> None:
        self.limit, self.min_hint_s, self.max_hint_s, self.max_wait_s = limit, min_hint_s, max_hint_s, max_wait_s
        self.default_rate = default_rate  # sessions per second while too few were opened to measure
        self.opening = 0
        self._done: deque[float] = deque(maxlen=8192)  # when recent sessions finished opening

    def enter(self) -> None:
        """Raises: ResourceExhausted: the hub is opening as many sessions as it may."""
        if self.opening >= self.limit and self.opening >= self.rate() * self.max_wait_s:
            hint = self.hint_s()
            raise ResourceExhausted(
                f"the hub is opening {self.opening} agent sessions; try again in {hint:.1f} s",
                retryable=True, retry_after_s=hint, reason="SESSIONS_OPENING")
        self.opening += 1

    def leave(self) -> None:
        self.opening -= 1
        self._done.append(time.monotonic())

    def rate(self) -> float:
        """Sessions opened per second over the last WINDOW_S seconds (default_rate when too few)."""
        since = time.monotonic() - self.WINDOW_S
        recent = len(self._done) - bisect.bisect_left(self._done, since)
        return self.default_rate if recent < 50 else recent / self.WINDOW_S

    def hint_s(self) -> float:
        """When a refused agent should come back: the backlog at the recent opening rate."""
        return min(self.max_hint_s, max(self.min_hint_s, self.opening / self.rate()))


class NodeService:
    """Enrollment and the sessions of connected agents."""

    def __init__(self, nodes: NodeStore, jobs: JobService, job_store: JobStore, designs: DesignStore,
                 clock: Clock, timers: TimerPolicy = DEFAULT_TIMERS,
                 credentials: Callable[[Sequence[str]], Mapping[str, Account]] | None = None) -> None:
        """``credentials``: the accounts of live tokens by stored form (AccountService._thd_live_accounts),
        to end the sessions whose token was revoked (see recheck_credentials)."""
        self.nodes, self.jobs, self.job_store, self.designs = nodes, jobs, job_store, designs
        self._credentials = credentials
        self.clock, self.timers = clock, timers
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Future[Any]] = set()  # the closes drain() waits for (besides the batchers')
        self._lock = threading.Lock()
        self.replica = new_replica_id()  # this process among the hub replicas (hub/service/replicas.py)
        self._newer: dict[str, int] = {}  # epochs of Hellos elsewhere that arrived before our own session
        self._missed: set[str] = set()  # nodes rung while they had no session here (see _open)
        self._opener, self._closer = session_opener(nodes, jobs), session_closer(nodes, jobs, self._closed)
        self._acks, self._seen = all_at_once(nodes._thd_ack_many), all_at_once(nodes._thd_seen_many)
        self._dispatch = all_at_once(jobs._thd_dispatch_nodes)  # queued jobs these nodes could take
        self._outbox = outbox_reader(nodes, self._thd_render)
        self._parts: dict[str, _KeptParts] = {}  # by revision id, see _thd_revision_parts
        self._admission = Admission(MAX_OPENING, max_wait_s=MAX_OPENING_WAIT_S)
        self._printed_parts: dict[tuple[str, str], PrintedPart] = {}  # see _thd_published_meshes
        jobs.ring = self.ring

    def ring(self, node: str, sent: Sequence[Command] = (), job: Job | None = None) -> None:
        """A command for node was committed: wake its session, if any (thread safe; from a worker
        thread when ``sent`` is given). ``sent``: the commands just committed (with their hub_seq) and
        ``job`` the job after that change; the session sends them as they are when they are the next
        the agent is owed, without reading its outbox (which keeps them for replay until acked)."""
        with self._lock:
            session = self._sessions.get(node)
            if session is None:  # a session opening now learns it was rung (see _open)
                self._missed.add(node)
                return
        handed = self._thd_handover(sent, job) if sent else None
        if handed is None:
            session.ring()
        else:
            session.handed = max(session.handed, handed.items[-1][0])
            session.push(handed)

    def _thd_handover(self, sent: Sequence[Command], job: Job | None) -> _Committed | None:
        """The committed commands as the session sends them (None: let it read its outbox)."""
        try:
            return _Committed(tuple((c.hub_seq, self._thd_render(c, job)) for c in sorted(sent, key=_seq)))
        except Exception:  # the outbox still holds them: the session reads it instead
            log.warning("rendering committed commands failed; the session reads its outbox", exc_info=True)
            return None

    def ring_all(self) -> None:
        """Ring every local session (after a LISTEN (re)connect: wake-ups may have been missed)."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.ring()

    def supersede(self, node: str, epoch: int) -> None:
        """The node said Hello with session `epoch` on another replica: end an older session here
        (thread safe). Its close() then finds the node is no longer its own and leaves it online."""
        with self._lock:
            session = self._sessions.get(node)
            if session is None:  # our own Hello may still be committing: open() looks here
                self._newer[node] = max(self._newer.get(node, 0), epoch)
            if session is None or session.epoch >= epoch:
                return
            del self._sessions[node]
        log.info("session superseded on another replica", extra={"node": node, "session_epoch": session.epoch})
        session.push(Superseded(epoch))
        session.end()

    def drop(self, node: str, epoch: int) -> None:
        """Another replica released this session (our lease had lapsed): end it without touching the
        node's row; the agent reconnects and says Hello again (thread safe)."""
        with self._lock:
            session = self._sessions.get(node)
            if session is None or session.epoch != epoch:
                return
            del self._sessions[node]
        log.warning("session released by another replica", extra={"node": node, "session_epoch": epoch})
        session.end()

    def local_epochs(self) -> dict[str, int]:
        """The session epoch of every session held by this process."""
        with self._lock:
            return {name: s.epoch for name, s in self._sessions.items()}

    def online(self) -> list[str]:
        with self._lock:
            return sorted(self._sessions)

    def _current(self, session: Session) -> bool:
        with self._lock:
            return self._sessions.get(session.node) is session

    # -- enrollment ------------------------------------------------------------------

    def _thd_add_node(self, name: str, again: bool = False) -> tuple[str, str, str]:
        """Create a node account (or, with again, a new token for an existing node); returns
        (name, one-time enrollment token, expires_at).

        With again the node's earlier unused enrollment tokens are void and its credentials revoked
        at once (its live session ends within a sweep, see recheck_credentials): a re-issue is for a
        credential that is lost or leaked, so whoever holds the old one is shut out now, and the node
        is back once its agent enrolls with the new token.

        Raises:
            InvalidArgument: bad name (or, without again, a reserved one).
            AlreadyExists: the name is taken (without again).
            NotFound: no such node (with again).
        """
        now = self.clock()
        expires = format_time(now + dt.timedelta(seconds=self.timers.enrollment_ttl_s))
        token = "spe_" + new_token().removeprefix("spf_")
        if not again:
            self.nodes._thd_add_node(check_new_account_name(name), token, format_time(now), expires)
            return name, token, expires
        revoked = self.nodes._thd_new_enrollment(check_account_name(name), token, format_time(now), expires)
        log.warning("node enrollment re-issued: its earlier enrollment tokens are void and its credentials revoked",
                    extra={"node": name, "revoked": revoked})
        return name, token, expires

    def _thd_drain_node(self, name: str, reason: str) -> NodeInfo:
        """Drain a node: no new job is routed to it from now on (every replica's routing reads it),
        the prints it holds run on and report as ever, and its agent is told within a sweep.

        Raises:
            InvalidArgument: bad name, or a reason that is empty, too long or holds a NUL.
            NotFound: no such node.
        """
        if not reason.strip():
            raise InvalidArgument("say why the node is drained (--reason): its operator reads it")
        check_plain_text(reason, "the reason", MAX_DRAIN_REASON)
        info = self.nodes._thd_set_drained(check_account_name(name), reason.strip(), format_time(self.clock()))
        log.info("node drained", extra={"node": name, "reason": reason})
        return info

    def _thd_resume_node(self, name: str) -> NodeInfo:
        """Undo a drain: the node takes jobs again once its agent opens its next session (the hub
        closes the drained one within a sweep).

        Raises:
            InvalidArgument: bad name.
            NotFound: no such node.
        """
        info = self.nodes._thd_set_drained(check_account_name(name), "", format_time(self.clock()))
        log.info("node resumed", extra={"node": name})
        return info

    async def apply_drains(self) -> int:
        """Bring the live sessions in line with the nodes' drains, which `spime-hub node drain|resume`
        writes from another process: a newly drained node's agent gets Drain; a resumed node's
        session is closed, so that its agent reconnects and takes jobs again. Returns how many changed."""
        with self._lock:
            live = list(self._sessions.values())
        if not live:
            return 0
        drained = await asyncio.to_thread(self.nodes._thd_drained)
        changed = 0
        for session in live:
            reason = drained.get(session.node)
            if reason and not session.drained:
                session.drain(reason)
                changed += 1
            elif not reason and session.drained:
                log.info("node resumed: closing its drained session", extra={"node": session.node})
                session.end()
                await self.close(session)
                changed += 1
        return changed

    async def enroll(self, enrollment_token: str, agent_version: str) -> tuple[str, str]:
        """Exchange an enrollment token for the node's bearer token; returns (node, token).

        Raises:
            InvalidArgument: the token or version is malformed.
            Unauthenticated: unknown, used or expired enrollment token.
        """
        if not enrollment_token or len(enrollment_token) > 128:
            raise InvalidArgument("enrollment_token must be 1-128 characters (from `spime-hub node add NAME`)",
                                  reason="FIELD_TOO_LARGE" if enrollment_token else None,
                                  field="enrollment_token")
        check_plain_text(enrollment_token, "enrollment_token", 128)
        check_plain_text(agent_version, "agent version", 64, field="agent_version")
        bearer = new_token()
        node = await asyncio.to_thread(self.nodes._thd_enroll, enrollment_token, bearer, format_time(self.clock()))
        log.info("node enrolled", extra={"node": node, "agent_version": agent_version})
        return node, bearer

    # -- sessions ----------------------------------------------------------------------

    async def open(self, account: Account, hello: Hello, credential: str = "") -> Session:
        """Start a session: record the node's state, reconcile held jobs, queue Welcome.
        ``credential``: the stored form of the token the caller authenticated with.

        Raises:
            PermissionDenied: agent_id is not the caller's node, or the caller is not a node.
            InvalidArgument: a malformed Hello.
            ResourceExhausted: too many sessions are being opened right now (retryable, with a hint
                of when to come back: see Admission).
        """
        if account.role is not Role.NODE:
            raise PermissionDenied(f"{account.name} is not a node account")
        _check_hello(account, hello)
        self._admission.enter()
        try:
            return await self._open(account, hello, credential)
        finally:
            self._admission.leave()

    async def _open(self, account: Account, hello: Hello, credential: str) -> Session:
        now = format_time(self.clock())
        place = (hello.location, hello.latitude, hello.longitude)
        # Batched: Hellos arriving together share one write transaction and one thread hop.
        info, desired = await self._opener.submit(Opening(HelloRecord(
            account.name, place, hello.version, hello.last_hub_seq_applied, tuple(hello.printers), now, self.replica),
            tuple(hello.held)))
        session = Session(account.name, info.session_epoch, asyncio.get_running_loop(),
                          # an agent claiming commands the hub never issued is sent the next ones all the same
                          sent=max(min(hello.last_hub_seq_applied, info.hub_seq), info.hub_seq_acked),
                          last_heard=self.clock(),
                          last_written=self.clock(),  # the Hello stored last_seen
                          printers={p.printer: p for p in hello.printers}, credential=credential)
        session.push(Welcome(info.session_epoch, info.last_agent_seq, tuple(desired), self.timers.heartbeat_s,
                             self.timers.lease_ttl_s))
        if info.drained:
            session.drain(info.drained)
        with self._lock:
            old, self._sessions[account.name] = self._sessions.get(account.name), session
            newer = self._newer.pop(account.name, 0)
            rung = account.name in self._missed
            self._missed.discard(account.name)
        # The outbox is read only if it may hold something the agent is owed: commands committed
        # before the Hello (the node's hub_seq counter) or rung since (before this session was findable).
        if rung or info.hub_seq > session.sent:
            session.ring()
        if old is not None:
            old.push(Superseded(info.session_epoch))
            old.end()
        if newer > info.session_epoch:  # a Hello on another replica overtook ours
            self.supersede(account.name, newer)
        log.info("session opened", extra={"node": account.name, "session_epoch": info.session_epoch})
        # Welcome goes out now; offering queued jobs to the new printers need not delay it.
        self._dispatch.post(account.name)
        return session

    async def handle(self, session: Session, message: Incoming) -> None:
        """Apply one agent message of a live session (a superseded session's messages are ignored).

        Raises:
            InvalidArgument: a malformed message.
            NotFound: a report on an unknown job.
            PermissionDenied: a report or request about another node's job.
        """
        if not self._current(session):
            return
        session.last_heard = self.clock()
        if isinstance(message, EventRecord):
            await self._event(session, message)
        elif isinstance(message, Heartbeat):
            await self._heartbeat(session, message)
        elif isinstance(message, OfferReply):
            check_plain_text(message.offer_id, "offer id", 64)
            if message.est_print_seconds > MAX_PRINT_SECONDS:
                raise InvalidArgument(f"est_print_seconds must be at most {MAX_PRINT_SECONDS} (30 days)")
            await asyncio.to_thread(self.jobs._thd_offer_reply, session.node, message.offer_id, message.accept,
                                    message.reason, message.est_print_seconds)
        elif isinstance(message, StartRequest):
            check_plain_text(message.job_id, "job id", 32)
            check_plain_text(message.printer, "printer id", 64)
            await asyncio.to_thread(self.jobs._thd_start, session.node, message.job_id, message.lease_epoch,
                                    message.printer)
        elif isinstance(message, Ack):
            await self._acks.submit((session.node, message.hub_seq))  # batched
        else:
            await self._printers(session, (check_printer(message.printer),))

    async def _event(self, session: Session, event: EventRecord) -> None:
        try:
            await asyncio.to_thread(self.jobs._thd_event, session.node, event)
        except (InvalidArgument, PermissionDenied, NotFound):
            if event.agent_seq > 0:
                session.push(EventAck(event.agent_seq))  # recorded as refused: the outbox moves on
            raise
        session.push(EventAck(event.agent_seq))

    async def _heartbeat(self, session: Session, beat: Heartbeat) -> None:
        if len(beat.printers) > MAX_PRINTERS or len(beat.progress) > MAX_HELD:
            raise InvalidArgument(f"at most {MAX_PRINTERS} printers and {MAX_HELD} progress entries per heartbeat")
        for item in beat.progress:
            check_plain_text(item.job_id, "progress job id", 32)
            if not 0 <= item.percent <= 100:  # also refuses NaN
                raise InvalidArgument(f"progress of job {item.job_id} must be 0-100 percent")
            check_layer(item.layer)
        _check_printer_ids(beat.printers)
        changed = tuple(check_printer(p) for p in beat.printers if session.printers.get(p.printer) != p)
        if changed:
            await self._printers(session, changed)
        if beat.progress:
            await asyncio.to_thread(self.jobs._thd_progress, session.node, beat.progress)
        now = self.clock()
        if session.last_written is None or now - session.last_written >= dt.timedelta(seconds=LAST_SEEN_EVERY_S):
            # Heartbeats stay in memory; the stored last_seen is refreshed about once a minute.
            session.last_written = now
            await self._seen.submit((session.node, format_time(now)))  # batched

    async def _printers(self, session: Session, printers: Sequence[PrinterRecord]) -> None:
        """Store new or changed printers of the session's node; a Hello alone replaces the whole set.

        Raises:
            InvalidArgument: the node would have more than MAX_PRINTERS printers.
        """
        count = len(session.printers.keys() | {p.printer for p in printers})
        if count > MAX_PRINTERS:
            raise InvalidArgument(f"node {session.node} would have {count} printers; at most {MAX_PRINTERS}: "
                                  "send a Hello with the whole set to replace them", reason="TOO_MANY_PRINTERS",
                                  field="printers")
        await asyncio.to_thread(self.nodes._thd_set_printers, session.node, printers, format_time(self.clock()))
        session.printers.update({p.printer: p for p in printers})
        await self._dispatch.submit(session.node)

    async def close(self, session: Session) -> None:
        """The stream ended: if it was the node's current session, the node is offline and its
        printing jobs are LOST_CONTACT."""
        ending = self._forget(session)
        if ending is not None:
            closing = self._closer.add(ending)  # with _thd_node_lost
            self._closing.add(closing)  # drain() waits for it, also when our caller is cancelled
            closing.add_done_callback(functools.partial(self._close_done, ending))
            await asyncio.shield(closing)

    def close_soon(self, session: Session) -> None:
        """close() without waiting for it: a cancelled stream handler cannot await it (drain() waits)."""
        ending = self._forget(session)
        if ending is not None:
            self._closer.post(ending)  # answered in _closed

    def _forget(self, session: Session) -> tuple[str, int, str] | None:
        """The session is no longer its node's: what the batched close writes (None: it was not the
        node's current session, nothing to write)."""
        with self._lock:
            current = self._sessions.get(session.node) is session
            if current:
                del self._sessions[session.node]
        return (session.node, session.epoch, format_time(self.clock())) if current else None

    def _close_done(self, ending: tuple[str, int, str], closing: asyncio.Future[bool]) -> None:
        self._closing.discard(closing)
        if not closing.cancelled():
            self._closed(ending, closing.exception() or closing.result())

    def _closed(self, ending: tuple[str, int, str], result: bool | BaseException) -> None:
        if isinstance(result, BaseException):
            log.error("session task failed", exc_info=result)
        else:
            log.info("session closed", extra={"node": ending[0], "session_epoch": ending[1]})

    async def drain(self) -> None:
        """Wait until every ended session is closed and every dispatch after a Hello done (before the
        store goes away)."""
        while self._closing or self._closer.busy() or self._dispatch.busy():
            await asyncio.gather(*self._closing, self._closer.idle(), self._dispatch.idle(), return_exceptions=True)

    async def outgoing(self, session: Session) -> AsyncIterator[Outgoing]:
        """What to send on the stream, in order, until the session ends (or fails)."""
        while True:
            item = await session.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, _Committed):
                first, last = item.items[0][0], item.items[-1][0]
                if first == session.sent + 1:  # the next commands the agent is owed: as committed
                    for seq, rendered in item.items:
                        session.sent = seq
                        if rendered is not None:
                            yield rendered
                    continue
                if last <= session.sent:  # an outbox read already sent them
                    continue
                item = _DOORBELL  # a gap: an earlier commit's handover is still on its way
            if item is _DOORBELL:
                pending = await self._outbox.submit((session.node, session.sent))  # batched reads
                for seq, rendered in pending:
                    session.sent = max(session.sent, seq)
                    if rendered is not None:
                        yield rendered
                continue
            yield item  # type: ignore[misc]

    def _thd_render(self, command: Command, known: Job | None = None) -> Outgoing | None:
        """An offer becomes the full JobOffer; a stale offer is skipped (its seq is acked later).
        ``known``: the job as the command's transaction left it (else it is read)."""
        if command.kind != "offer":
            return command
        job = known if known is not None and known.id == command.job_id else self.job_store._thd_get(command.job_id)
        if job.state is not JobState.OFFERED or job.offer_id != command.body.get("offer_id"):
            return None
        artifacts, bbox, attributions = self._thd_revision_parts(job.revision_id)
        if job.part:  # a job makes one manifest part (issue 8): as published, from its mesh alone
            meshes = self._thd_published_meshes(job)
            artifacts = tuple(a for a in artifacts if a[3] in meshes) or artifacts
        return OfferDetails(
            command.hub_seq, job.offer_id, job, artifacts, bbox,
            job.offer_expires_at, str(command.body.get("printer_id", "")), int(str(command.body["lease_epoch"])),
            attributions,
        )

    def _thd_published_meshes(self, job: Job) -> frozenset[str]:
        """The mesh files of the job's part when the job makes it as published: its parameters are the
        manifest's defaults, which the meshes show (an order makes part jobs only so). Else none: it
        renders the design's OpenSCAD source with them. A revision's manifest never changes: kept."""
        key = (job.revision_id, job.part)
        part = self._printed_parts.get(key)
        if part is None:
            revision = self.designs._thd_revision_by_id(job.revision_id)
            part = printed_part(revision.manifest_toml, job.part) if revision is not None else PrintedPart()
            while len(self._printed_parts) >= _PARTS_KEPT:
                self._printed_parts.pop(next(iter(self._printed_parts)), None)
            self._printed_parts[key] = part
        return part.meshes if as_published(part.defaults, job.parameters) else frozenset()

    def _thd_revision_parts(self, revision_id: str) -> _RevisionParts:
        """What an offer says about its revision: artifacts, bounding box, attributions. A revision's
        files and credits never change: they are read once and kept. Its bounding box comes from the
        printability reports, which arrive after the push: until every mesh has its report, only the
        reports are read again (one query), so offers of a design whose checks are pending or off
        cost no more than those of a checked one."""
        kept = self._parts.get(revision_id)
        if kept is not None and kept.final:
            return kept.parts
        if kept is None:
            revision = self.designs._thd_revision_by_id(revision_id)
            if revision is None:
                return (), None, ()
            source = openscad_source(revision.manifest_toml)
            artifacts = tuple((f.sha256, f.size, _kind(f.path, source), f.path) for f in revision.files)
            attributions = (*_own_attribution(revision), *revision.attributions)
            meshes = frozenset(f.path for f in revision.files if _kind(f.path, None) == "mesh")
            reports = revision.reports
        else:
            (artifacts, _, attributions), meshes = kept.parts, kept.meshes
            reports = self.designs._thd_reports(revision_id)
        parts = (artifacts, _bbox(reports), attributions)
        while len(self._parts) >= _PARTS_KEPT:
            self._parts.pop(next(iter(self._parts)), None)
        self._parts[revision_id] = _KeptParts(parts, meshes, meshes <= {r.path for r in reports})
        return parts

    async def check_liveness(self) -> None:
        """End sessions silent for longer than timers.suspect_after_s (SUSPECT: treated as gone)."""
        limit = self.clock() - dt.timedelta(seconds=self.timers.suspect_after_s)
        with self._lock:
            silent = [s for s in self._sessions.values() if s.last_heard is not None and s.last_heard < limit]
        for session in silent:
            log.warning("node silent, ending its session", extra={"node": session.node})
            session.end()
            await self.close(session)

    async def recheck_credentials(self) -> int:
        """End the live sessions whose token is no longer live (revoked since the session opened)
        with UNAUTHENTICATED, as if they had never opened; returns how many ended."""
        if self._credentials is None:
            return 0
        with self._lock:
            live = [s for s in self._sessions.values() if s.credential]
        if not live:
            return 0
        digests = sorted({s.credential for s in live})
        found = await asyncio.to_thread(self._credentials, digests)
        ended = 0
        for session in live:
            owner = found.get(session.credential)
            if owner is None or owner.name != session.node or owner.role is not Role.NODE:
                log.warning("node credential revoked, ending its session", extra={"node": session.node})
                session.end(Unauthenticated(
                    f"the credential of node {session.node} was revoked: enroll the node again "
                    "(spime-hub node add, then spime-node enroll)"))
                await self.close(session)
                ended += 1
        return ended

    async def may_fetch(self, account: Account, sha256: str) -> None:
        """Raises: InvalidArgument: not a SHA-256; PermissionDenied: the blob is not part of a job this node holds."""
        check_sha256(sha256)
        if account.role is Role.ADMIN:
            return
        if not await asyncio.to_thread(self.job_store._thd_may_fetch, account.name, sha256):
            raise PermissionDenied(f"blob {sha256[:16]} belongs to no job of node {account.name}")

    async def startup(self) -> None:
        """Before serving on SQLite: no session exists yet, so no node is online (one hub process per
        database; on PostgreSQL ReplicaService.start releases only this replica's sessions)."""
        await asyncio.to_thread(self.nodes._thd_reset_online, format_time(self.clock()))

    async def ring_behind(self) -> None:
        """Ring sessions whose outbox holds commands they have not sent (written by another process,
        e.g. `spime-hub job add|cancel`)."""
        heads = await asyncio.to_thread(self.nodes._thd_outbox_heads)
        with self._lock:  # the outbox heads are few (unacked commands only); the sessions may be 10,000s
            behind = [s for name, head in heads.items()
                      if (s := self._sessions.get(name)) is not None and head > max(s.sent, s.handed)]
        for session in behind:
            session.ring()

    async def run_sweeper(self, stop: asyncio.Event) -> None:
        """Liveness and job timers, every timers.sweep_interval_s, until stop is set (and the
        queue poll for jobs queued by other processes, every timers.queue_poll_s)."""
        poll = asyncio.create_task(self._poll_queue(stop))
        try:
            await self._sweep_until(stop)
        finally:
            await poll

    async def _poll_queue(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.jobs._thd_dispatch_new)
                await self.ring_behind()
            except Exception:
                log.exception("queue poll failed")  # the poll must survive one bad round
            try:
                await asyncio.wait_for(stop.wait(), self.timers.queue_poll_s)
            except TimeoutError:
                pass

    async def _sweep_until(self, stop: asyncio.Event) -> None:
        # Scanning every session (10,000s) stalls the loop for milliseconds: a tenth of the silence
        # that makes a node SUSPECT is soon enough, and that is rarer than a sweep.
        liveness_every_s = max(self.timers.sweep_interval_s, self.timers.suspect_after_s / 10)
        scanned = rechecked = drains_checked = time.monotonic() - liveness_every_s
        while not stop.is_set():
            try:
                if time.monotonic() - scanned >= liveness_every_s:
                    scanned = time.monotonic()
                    await self.check_liveness()
                if time.monotonic() - rechecked >= CREDENTIAL_RECHECK_S:
                    rechecked = time.monotonic()
                    await self.recheck_credentials()
                if time.monotonic() - drains_checked >= DRAIN_CHECK_S:
                    drains_checked = time.monotonic()
                    await self.apply_drains()
                await asyncio.to_thread(self.jobs._thd_sweep)
                await self.ring_behind()
            except Exception:
                log.exception("sweep failed")
            try:
                await asyncio.wait_for(stop.wait(), self.timers.sweep_interval_s)
            except TimeoutError:
                pass


def _seq(command: Command) -> int:
    return command.hub_seq


def _own_attribution(revision: Revision) -> tuple[Attribution, ...]:
    """The design's own credit first (the G-code header carries it), then its upstream's."""
    try:
        return (attribution_of(revision),)
    except HubError:  # a manifest the hub accepted once but cannot read now: upstream credit still goes
        log.warning("cannot build the attribution", extra={"revision": revision.id})
        return ()


def _kind(path: str, source: str | None) -> str:
    """An artifact's kind; of a parametric design's .scad files only the manifest's ``openscad.source``
    is "scad" (what the node renders), the others are "scad-include" (what it may include or use)."""
    name = path.lower()
    if name.endswith(MESH_SUFFIXES):
        return "mesh"
    if name.endswith(".scad"):
        return "scad-include" if source is not None and path != source else "scad"
    return "gcode" if name.endswith(".gcode") else "file"


def _bbox(reports: Sequence[object]) -> tuple[float, float, float] | None:
    sizes = []
    for record in reports:
        extents = getattr(record, "report", {}).get("extents_mm")
        if isinstance(extents, list) and len(extents) == 3:
            sizes.append(tuple(float(e) for e in extents))
    if not sizes:
        return None
    return (max(s[0] for s in sizes), max(s[1] for s in sizes), max(s[2] for s in sizes))
