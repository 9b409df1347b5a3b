"""Jobs with fenced leases, every reported event, and the fabrications they produce.

Every change of a job runs in one write transaction: the row is locked (FOR UPDATE on
PostgreSQL; BEGIN IMMEDIATE serialises writers on SQLite), a pure `decide` function
of the service chooses the change, and the UPDATE is a compare-and-set on
(id, state, lease_epoch), together with the outbox commands, the event row and the
fabrication the change brings. Queued jobs are claimed with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from hub.errors import AlreadyClaimed, NotFound
from hub.jobs import HELD, Change, Command, Job, JobSpec, JobState
from hub.scheduler import PrinterRecord
from hub.store import record_sums, schema
from hub.store.driver import Prepared
from hub.store.engine import connect, one_writer, write
from hub.store.nodes import NODE_OF_PRINTER, NODE_ROUTABLE, _printer, enqueue, translated

__all__ = ["EventRecord", "JobStore", "JobWriter", "Outcome"]

j, ev, fab = schema.jobs, schema.job_events, schema.fabrications
MAX_LIST = 1000
PAGE = 200  # free printers read per round while choosing one for a job


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A JobEvent as received: recorded once per (node, agent_seq), applied or not."""

    node: str
    agent_seq: int
    job_id: str
    lease_epoch: int
    kind: str
    at: str
    data: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a change did: the job after it (None if unknown), whether it moved, duplicates."""

    job: Job | None
    before: Job | None
    changed: bool
    duplicate: bool = False
    applied: bool = True
    note: str = ""
    commands: tuple[Command, ...] = ()  # put in outboxes by the change, with their hub_seq


Decide = Callable[[Job | None], Change]
# the part of an order's write transaction that creates its jobs (JobService._claim_writer)
JobWriter = Callable[[sa.Connection], list[Job]]
Pick = Callable[[Job, list[PrinterRecord], frozenset[tuple[str, str]], tuple[float, float, float] | None],
                PrinterRecord | None]


def _job(row: Any) -> Job:
    return Job(
        id=row.id, design=row.design, revision_id=row.revision_id, material=row.material,
        parameters=json.loads(row.parameters), order_id=row.order_id, state=JobState(row.state), node=row.node,
        printer=row.printer, lease_epoch=int(row.lease_epoch), progress_percent=row.progress, layer=row.layer,
        estimated_seconds=row.estimated_seconds, created_at=row.created_at, updated_at=row.updated_at,
        failure_reason=row.failure_reason, paid=row.paid, payout_currency=row.payout_currency,
        payout_minor=int(row.payout_minor), offer_id=row.offer_id, offer_expires_at=row.offer_expires_at,
        started_at=row.started_at, cancel_requested=row.cancel_requested, want_node=row.want_node,
        want_printer=row.want_printer, tried_nodes=tuple(json.loads(row.tried_nodes)),
        production=json.loads(row.production), lost_at=row.lost_at, part=row.part, tried_at=row.tried_at,
    )


def _holds(node: sa.ColumnElement[str] | str, printer: sa.ColumnElement[str] | str) -> list[sa.ColumnElement[bool]]:
    """The conditions of a job that keeps a printer busy (offered to it, assigned, printing ...). The states
    are spelled out as the partial index ix_jobs_held_printer has them: bound as parameters, the planners
    cannot use that index and read every job the node ever had (1.5 ms a claim at 5,000 of them on SQLite)."""
    return [j.c.node == node, j.c.printer == printer,
            j.c.state.in_([sa.literal_column(repr(s)) for s in schema.HELD_STATES])]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _free_query() -> sa.Select:  # type: ignore[type-arg]
    """Printers that could take a job now, in (node, printer) order: the database does the filtering
    (the caller still checks materials exactly and the build volume). _free_for narrows it to a job."""
    pr, n = schema.printers, schema.nodes
    return (
        sa.select(pr, *NODE_OF_PRINTER).join(n, n.c.name == pr.c.node)
        .where(*NODE_ROUTABLE, pr.c.accepting.is_(True), pr.c.phase == "idle", pr.c.bed_clear.is_(True),
               ~sa.exists().where(*_holds(pr.c.node, pr.c.printer)))
        .order_by(pr.c.node, pr.c.printer)
    )


# an order's jobs are created and claimed by prebuilt statements run on the driver (hot path: one order,
# one transaction; hub/store/driver.py)
_INSERT_JOB = Prepared(sa.insert(j))
_CLAIM = Prepared(sa.select(schema.printers, *NODE_OF_PRINTER)
          .join(schema.nodes, schema.nodes.c.name == schema.printers.c.node)
          .where(schema.printers.c.node == sa.bindparam("node"), schema.printers.c.printer == sa.bindparam("printer"),
                 *NODE_ROUTABLE, schema.printers.c.accepting.is_(True),
                 schema.printers.c.phase == "idle", schema.printers.c.bed_clear.is_(True),
                 sa.func.lower(schema.printers.c.materials).like(sa.bindparam("material"), escape="\\"))
          .with_for_update(of=schema.printers, skip_locked=True))
_HELD = Prepared(sa.select(sa.func.count()).where(*_holds(sa.bindparam("node"), sa.bindparam("printer"))))
_OFFER_FIELDS = frozenset({"node", "printer", "offer_id", "offer_expires_at"})
_OFFER = Prepared(
    sa.update(j).where(j.c.id == sa.bindparam("job_id"), j.c.state == JobState.QUEUED.value, j.c.lease_epoch == 0)
    .values({c: sa.bindparam(c) for c in (*sorted(_OFFER_FIELDS), "updated_at")}).values(state=JobState.OFFERED.value))
# the job-change hot path (create, offer, every report): prebuilt statements run on the driver; building
# one costs several times what running it costs on SQLite, and so does Connection.execute (hub/store/driver.py)
_BY_ID = Prepared(sa.select(j).where(j.c.id == sa.bindparam("b_id")))
_BY_ID_LOCKED = Prepared(sa.select(j).where(j.c.id == sa.bindparam("b_id")).with_for_update())
_EXTENTS = Prepared(sa.select(schema.printability_reports.c.report).where(
    schema.printability_reports.c.revision_id == sa.bindparam("b_revision")))
_LOCK_PRINTER = Prepared(
    sa.select(schema.printers.c.node)
    .where(schema.printers.c.node == sa.bindparam("node"), schema.printers.c.printer == sa.bindparam("printer"))
    .with_for_update())
_QUEUED_IDS = (sa.select(j.c.id).where(j.c.state == JobState.QUEUED.value).order_by(j.c.created_at)
               .limit(sa.bindparam("b_limit", type_=sa.Integer)))
_SEEN = Prepared(sa.select(sa.func.count()).where(ev.c.node == sa.bindparam("b_node"),
                                                  ev.c.agent_seq == sa.bindparam("b_seq")))
_INSERT_EVENT = Prepared(sa.insert(ev))
_LAST_AGENT_SEQ = Prepared(sa.update(schema.nodes).where(schema.nodes.c.name == sa.bindparam("b_node"),
                                                         schema.nodes.c.last_agent_seq < sa.bindparam("b_seq"))
                           .values(last_agent_seq=sa.bindparam("b_seq")))
_FREE: dict[tuple[bool, bool, bool, bool], sa.Select] = {}  # type: ignore[type-arg]
# The batched session reads (a reconnect storm runs them once per batch of Hellos and of ended sessions):
# IN lists bound at execution. Built per call from a Python list, each name became a bound literal to
# coerce and key: ~2 ms a batch of 15 nodes on SQLite, more than running the query.
_NODES: sa.BindParameter[str] = sa.bindparam("b_nodes", expanding=True)
_HELD_BY = (sa.select(j).where(j.c.node.in_(_NODES), j.c.state.in_(sa.bindparam("b_states", expanding=True)))
            .order_by(j.c.created_at, j.c.id))
_QUEUED_FOR = (sa.select(j).where(j.c.state == JobState.QUEUED.value, sa.or_(j.c.want_node.is_(None), j.c.want_node.in_(_NODES)))
               .order_by(j.c.created_at, j.c.id).limit(sa.bindparam("b_limit", type_=sa.Integer)))
_FREE_OF = _free_query().where(schema.printers.c.node.in_(_NODES))
_UPDATES: dict[tuple[tuple[str, ...], bool], Prepared] = {}


def _free_for(job: Job, after: tuple[str, str] | None) -> tuple[sa.Select, dict[str, object]]:  # type: ignore[type-arg]
    """The free printers for a job: with its material loaded, on its pinned node/printer, not on nodes
    that declined it; a page of PAGE printers after `after`. A statement built once per shape, and its
    parameters."""
    pr = schema.printers
    shape = (job.want_node is not None, job.want_printer is not None, bool(job.tried_nodes), after is not None)
    query = _FREE.get(shape)
    if query is None:
        query = (_free_query().where(sa.func.lower(pr.c.materials).like(sa.bindparam("b_material"), escape="\\"))
                 .limit(PAGE))
        if shape[0]:
            query = query.where(pr.c.node == sa.bindparam("b_node"))
        if shape[1]:
            query = query.where(pr.c.printer == sa.bindparam("b_printer"))
        if shape[2]:
            query = query.where(pr.c.node.not_in(sa.bindparam("b_tried", expanding=True)))
        if shape[3]:
            query = query.where(sa.tuple_(pr.c.node, pr.c.printer) > sa.tuple_(sa.bindparam("b_after_node"),
                                                                              sa.bindparam("b_after_printer")))
        query = _FREE.setdefault(shape, query)
    params: dict[str, object] = {"b_material": f'%"{_like_escape(job.material.lower())}"%'}
    if shape[0]:
        params["b_node"] = job.want_node
    if shape[1]:
        params["b_printer"] = job.want_printer
    if shape[2]:
        params["b_tried"] = list(job.tried_nodes)
    if after is not None:
        params["b_after_node"], params["b_after_printer"] = after
    return query, params


def _update_for(columns: tuple[str, ...], bump_epoch: bool) -> Prepared:
    """The compare-and-set UPDATE of a job on (id, state, lease_epoch) setting these columns (bound as
    v_<column>), returning the changed row (none: the job had moved on), built once per shape."""
    key = (columns, bump_epoch)
    statement = _UPDATES.get(key)
    if statement is None:
        values: dict[str, object] = {c: sa.bindparam(f"v_{c}", type_=j.c[c].type) for c in columns}
        if bump_epoch:
            values["lease_epoch"] = j.c.lease_epoch + 1
        statement = _UPDATES.setdefault(key, Prepared(sa.update(j).where(
            j.c.id == sa.bindparam("w_id"), j.c.state == sa.bindparam("w_state"),
            j.c.lease_epoch == sa.bindparam("w_epoch", type_=sa.BigInteger)).values(values).returning(*j.c)))
    return statement


def _queued_job(job_id: str, spec: JobSpec, now: str) -> Job:
    """A job as _INSERT_JOB of _job_row stores it."""
    return Job(id=job_id, design=spec.design, revision_id=spec.revision_id, material=spec.material,
               parameters=dict(spec.parameters), order_id=spec.order_id, state=JobState.QUEUED, node=None,
               printer=None, lease_epoch=0, progress_percent=0.0, layer=0, estimated_seconds=0, created_at=now,
               updated_at=now, failure_reason="", paid=spec.paid, payout_currency=spec.payout_currency,
               payout_minor=spec.payout_minor, want_node=spec.node, want_printer=spec.printer, part=spec.part)


def _job_row(job_id: str, spec: JobSpec, created_by: str, now: str) -> dict[str, object]:
    return {
        "id": job_id, "order_id": spec.order_id, "design": spec.design, "revision_id": spec.revision_id,
        "material": spec.material, "parameters": json.dumps(dict(spec.parameters), sort_keys=True),
        "state": JobState.QUEUED.value, "want_node": spec.node, "want_printer": spec.printer, "paid": spec.paid,
        "payout_currency": spec.payout_currency, "payout_minor": spec.payout_minor, "created_by": created_by,
        "created_at": now, "updated_at": now, "part": spec.part}


def _insert_of_revision() -> sa.Insert:
    """_INSERT_JOB of a _job_row, but only for a revision of its design that exists: one statement,
    returning nothing if there is none."""
    columns = tuple(_job_row("", JobSpec("", "", ""), "", ""))
    values = sa.select(*(sa.bindparam(c, type_=j.c[c].type) for c in columns)).where(
        sa.exists().where(schema.revisions.c.id == sa.bindparam("revision_id"),
                          schema.revisions.c.design == sa.bindparam("design")))
    return sa.insert(j).from_select(columns, values).returning(j.c.id)


_INSERT_JOB_OF_REVISION = _insert_of_revision()


def _incarnation_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()[:12]


class JobStore:
    """One connector for jobs, job events and fabrications."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- reads -------------------------------------------------------------------

    @translated
    def _thd_get(self, job_id: str) -> Job:
        """Raises: NotFound: no such job."""
        with connect(self.engine) as conn:
            row = _BY_ID.first(conn, {"b_id": job_id})
        if row is None:
            raise NotFound(f"no job {job_id!r}: `spime-hub job list` shows the jobs")
        return _job(row)

    @translated
    def _thd_list(self, states: Sequence[JobState] = (), node: str | None = None, order_id: str | None = None,
                  limit: int = MAX_LIST) -> list[Job]:
        query = sa.select(j).order_by(j.c.created_at, j.c.id).limit(limit)
        if states:
            query = query.where(j.c.state.in_([s.value for s in states]))
        if node is not None:
            query = query.where(j.c.node == node)
        if order_id is not None:
            query = query.where(j.c.order_id == order_id)
        with connect(self.engine) as conn:
            return [_job(row) for row in conn.execute(query)]

    def _thd_of_orders(self, order_ids: Sequence[str]) -> dict[str, list[Job]]:
        """The jobs of each order (a page of orders at once; an order's jobs are bounded when it is placed)."""
        out: dict[str, list[Job]] = {o: [] for o in order_ids}
        if order_ids:
            query = sa.select(j).where(j.c.order_id.in_(list(order_ids))).order_by(j.c.created_at, j.c.id)
            with connect(self.engine) as conn:
                for row in conn.execute(query):
                    out[row.order_id].append(_job(row))
        return out

    def _thd_events(self, job_id: str) -> list[tuple[EventRecord, bool, str]]:
        """Every event recorded for a job (applied or not), in arrival order."""
        query = sa.select(ev).where(ev.c.job_id == job_id).order_by(ev.c.received_at, ev.c.agent_seq)
        with connect(self.engine) as conn:
            return [(EventRecord(r.node, int(r.agent_seq), r.job_id, int(r.lease_epoch), r.kind, r.at,
                                 json.loads(r.data)), r.applied, r.note) for r in conn.execute(query)]

    def _thd_fabrications_of(self, job_id: str) -> list[dict[str, object]]:
        with connect(self.engine) as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(fab).where(fab.c.job_id == job_id))]

    def _thd_may_fetch(self, node: str, sha256: str) -> bool:
        """Whether a blob belongs to a revision of a job the node holds."""
        rf = schema.revision_files
        query = (
            sa.select(sa.func.count()).select_from(rf.join(j, j.c.revision_id == rf.c.revision_id))
            .where(rf.c.sha256 == sha256, j.c.node == node, j.c.state.in_([s.value for s in HELD]))
        )
        with connect(self.engine) as conn:
            return bool(conn.scalar(query))

    def _thd_free_printers(self, nodes: Sequence[str] | None = None
                           ) -> tuple[list[PrinterRecord], frozenset[tuple[str, str]]]:
        """The printers (of these nodes) that could take a job now (online, accepting, idle, clear
        bed, holding no job; the database filters them) and the busy pairs (none: filtered out)."""
        query, params = (_free_query(), {}) if nodes is None else (_FREE_OF, {"b_nodes": list(nodes)})
        with connect(self.engine) as conn:
            return [_printer(row) for row in conn.execute(query, params)], frozenset()

    def _thd_held_by(self, nodes: Sequence[str], states: Sequence[JobState]) -> list[Job]:
        """Jobs in these states held by any of these nodes (one query for a batch of sessions)."""
        params = {"b_nodes": list(nodes), "b_states": [s.value for s in states]}
        with connect(self.engine) as conn:
            return [_job(row) for row in conn.execute(_HELD_BY, params)]

    def _thd_queued_for(self, nodes: Sequence[str], limit: int = MAX_LIST) -> list[Job]:
        """Queued jobs that one of these nodes could take: pinned to one of them or not pinned."""
        with connect(self.engine) as conn:
            return [_job(row) for row in conn.execute(_QUEUED_FOR, {"b_nodes": list(nodes), "b_limit": limit})]

    def _thd_of_offline_nodes(self, states: Sequence[JobState]) -> list[tuple[Job, str]]:
        """Jobs in these states held by a node that is offline, with when it went (one query)."""
        n = schema.nodes
        query = (
            sa.select(j, n.c.disconnected_at.label("node_gone_at")).join(n, n.c.name == j.c.node)
            .where(j.c.state.in_([s.value for s in states]), n.c.online.is_(False))
        )
        with connect(self.engine) as conn:
            return [(_job(row), str(row.node_gone_at)) for row in conn.execute(query)]

    def _thd_queued_ids(self, limit: int = MAX_LIST) -> list[str]:
        """The oldest queued jobs' ids (the queue poll runs this 20 times a second)."""
        with connect(self.engine) as conn:
            return list(conn.execute(_QUEUED_IDS, {"b_limit": limit}).scalars())

    def _thd_state_counts(self) -> dict[str, int]:
        """How many jobs are in each state (the metrics gauge; one indexed GROUP BY)."""
        query = sa.select(j.c.state, sa.func.count()).group_by(j.c.state)
        with connect(self.engine) as conn:
            return {str(state): int(n) for state, n in conn.execute(query)}

    def _thd_due(self, state: JobState, column: str, before: str) -> list[Job]:
        """Jobs in a state whose time column is set and earlier than `before`."""
        col = j.c[column]
        with connect(self.engine) as conn:
            rows = conn.execute(sa.select(j).where(j.c.state == state.value, col != "", col < before))
            return [_job(row) for row in rows]

    # -- writes ------------------------------------------------------------------

    @translated
    def _thd_create(self, job_id: str, spec: JobSpec, created_by: str, now: str) -> Job:
        """Insert a queued job for an existing design revision.

        Raises:
            NotFound: no such design or revision.
        """
        with write(self.engine) as conn:
            return self._insert(conn, job_id, spec, created_by, now)

    @translated
    def _thd_create_offered(self, job_id: str, spec: JobSpec, created_by: str, now: str, pick: Pick,
                            change_for: Callable[[Job, PrinterRecord], Change], sent: list[Command] | None = None
                            ) -> tuple[Job, Job | None]:
        """Insert a queued job and offer it in the same transaction, as _thd_dispatch would (one
        write transaction instead of two); returns (the created job, the offered job or None).
        ``sent`` receives the offer as put in the node's outbox (with its hub_seq).

        Raises:
            NotFound: no such design or revision.
        """
        with write(self.engine) as conn:
            created = self._insert(conn, job_id, spec, created_by, now)
            return created, self._offer(conn, created, pick, change_for, now, sent)

    @staticmethod
    def _insert(conn: sa.Connection, job_id: str, spec: JobSpec, created_by: str, now: str) -> Job:
        if conn.execute(_INSERT_JOB_OF_REVISION, _job_row(job_id, spec, created_by, now)).first() is None:
            raise NotFound(f"design {spec.design!r} has no revision {spec.revision_id[:16]!r}")
        return _queued_job(job_id, spec, now)

    def _create_claiming(self, conn: sa.Connection, job_id: str, spec: JobSpec, created_by: str, now: str,
                         prefer: Sequence[tuple[str, str]], change_for: Callable[[Job, PrinterRecord], Change],
                         sent: list[Command] | None = None) -> Job:
        """Insert a queued job inside the caller's write transaction (its revision was checked by the
        caller) and offer it to the first of `prefer` that is still free: each claim locks the
        printer's row, checks again that it qualifies (online, accepting, idle, clear bed, the
        material loaded) and, in a statement of its own (a fresh snapshot on PostgreSQL), that no
        job holds it; only then the job is offered, a compare-and-set on (id, queued, epoch 0).
        A printer another placement is claiming right now is skipped (SKIP LOCKED: that claim
        lost the race; waiting could deadlock, as each claimer keeps the locks of the printers it
        found busy). None free: the job stays queued for the dispatcher. ``sent`` receives the
        offer as put in the node's outbox (with its hub_seq).
        """
        _INSERT_JOB.count(conn, _job_row(job_id, spec, created_by, now))
        job = _queued_job(job_id, spec, now)
        pattern = f'%"{_like_escape(spec.material.lower())}"%'
        for node, printer in prefer:
            row = _CLAIM.first(conn, {"node": node, "printer": printer, "material": pattern})
            if row is None or _HELD.scalar(conn, {"node": node, "printer": printer}):
                continue
            change = change_for(job, _printer(row))
            assert change.target is JobState.OFFERED and set(change.values) <= _OFFER_FIELDS
            done = _OFFER.count(conn, {"job_id": job_id, "updated_at": now, **change.values})
            if done != 1:
                raise AlreadyClaimed(f"job {job_id} changed while we worked on it; try again")
            offered = replace(job, state=JobState.OFFERED, updated_at=now, **change.values)  # type: ignore[arg-type]
            self._side_effects(conn, offered, change, now, sent)
            return offered
        return job

    @translated
    def _thd_forget_declines(self, before: str) -> list[str]:
        """Queued jobs whose nodes declined (or let an offer expire) before `before` may be offered to
        those nodes again: their tried_nodes are cleared; returns their ids."""
        with write(self.engine) as conn:
            return list(conn.execute(
                sa.update(j).where(j.c.state == JobState.QUEUED.value, j.c.tried_at != "", j.c.tried_at <= before)
                .values(tried_nodes="[]", tried_at="").returning(j.c.id)).scalars())

    @translated
    def _thd_change(self, job_id: str, decide: Decide, now: str, event: EventRecord | None = None) -> Outcome:
        """Lock a job, let `decide` choose the change, apply it as a CAS with its side effects.

        With an event, the event is recorded in the same transaction; a (node, agent_seq)
        already recorded changes nothing and comes back as a duplicate.

        Raises:
            NotFound: no such job (without an event).
            AlreadyClaimed: the job changed under us (a concurrent writer won the CAS).
            HubError: whatever `decide` raises; then nothing changes.
        """
        sent: list[Command] = []
        try:
            with write(self.engine) as conn:
                if event is not None and self._seen(conn, event):
                    return Outcome(None, None, False, duplicate=True)
                row = _BY_ID_LOCKED.first(conn, {"b_id": job_id})
                if row is None and event is None:
                    raise NotFound(f"no job {job_id!r}: `spime-hub job list` shows the jobs")
                before = None if row is None else _job(row)
                change = decide(before)
                after = before if before is None else self._apply(conn, before, change, now, sent)
                if event is not None:
                    self._record(conn, event, change, now)
        except sa.exc.IntegrityError as exc:
            if event is None:
                raise AlreadyClaimed(f"job {job_id} changed while we worked on it; try again") from exc
            return Outcome(None, None, False, duplicate=True)  # the same report, recorded concurrently
        return Outcome(after, before, after is not before, applied=change.applied, note=change.note,
                       commands=tuple(sent))

    @translated
    def _thd_dispatch(self, job_id: str, pick: Pick, change_for: Callable[[Job, PrinterRecord], Change],
                      now: str, sent: list[Command] | None = None) -> Job | None:
        """Claim a queued job (SKIP LOCKED) and offer it to the printer `pick` chooses.

        Returns the offered job, or None when the job is not queued (any more) or no printer fits.
        ``sent`` receives the offer as put in the node's outbox (with its hub_seq).
        """
        with write(self.engine) as conn:
            row = conn.execute(
                sa.select(j).where(j.c.id == job_id, j.c.state == JobState.QUEUED.value)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            return self._offer(conn, _job(row), pick, change_for, now, sent)

    def _offer(self, conn: sa.Connection, job: Job, pick: Pick, change_for: Callable[[Job, PrinterRecord], Change],
               now: str, sent: list[Command] | None = None) -> Job | None:
        chosen = self._choose(conn, job, pick)
        return None if chosen is None else self._apply(conn, job, change_for(job, chosen), now, sent)

    def _choose(self, conn: sa.Connection, job: Job, pick: Pick) -> PrinterRecord | None:
        """Pick a printer among the free ones the database finds for the job, a page at a time, and
        lock its row; another claimer may have just taken it (PostgreSQL runs claimers concurrently),
        so the chosen printer is checked again once its lock is held. Where this transaction is the
        only writer (SQLite), the page it read is still true: nothing to lock or recheck."""
        alone = one_writer(conn)
        extents, taken = self._extents(conn, job.revision_id), set[tuple[str, str]]()
        after: tuple[str, str] | None = None
        while True:
            page = [_printer(row) for row in conn.execute(*_free_for(job, after))]
            if not page:
                return None
            after = (page[-1].node, page[-1].printer)
            while (chosen := pick(job, page, frozenset(taken), extents)) is not None:
                if alone:
                    return chosen
                where = {"node": chosen.node, "printer": chosen.printer}
                _LOCK_PRINTER.rows(conn, where)
                if not _HELD.scalar(conn, where):
                    return chosen
                taken.add((chosen.node, chosen.printer))

    # -- helpers -----------------------------------------------------------------

    @staticmethod
    def _seen(conn: sa.Connection, event: EventRecord) -> bool:
        return bool(_SEEN.scalar(conn, {"b_node": event.node, "b_seq": event.agent_seq}))

    def _apply(self, conn: sa.Connection, job: Job, change: Change, now: str, sent: list[Command] | None = None
               ) -> Job:
        if change.target is None and not change.values and not change.production and not change.bump_epoch:
            self._side_effects(conn, job, change, now, sent)
            return job
        values: dict[str, object] = {"updated_at": now, **change.values}
        if "tried_nodes" in values:
            values["tried_nodes"] = json.dumps(list(values["tried_nodes"]))  # type: ignore[call-overload]
        if change.target is not None:
            values["state"] = change.target.value
        if change.production:
            values["production"] = json.dumps({**job.production, **change.production}, sort_keys=True)
        columns = tuple(sorted(values))
        params = {f"v_{c}": values[c] for c in columns}
        params.update(w_id=job.id, w_state=job.state.value, w_epoch=job.lease_epoch)
        row = _update_for(columns, change.bump_epoch).first(conn, params)
        if row is None:
            raise AlreadyClaimed(f"job {job.id} changed while we worked on it; try again")
        after = _job(row)
        self._side_effects(conn, after, change, now, sent)
        return after

    def _side_effects(self, conn: sa.Connection, job: Job, change: Change, now: str,
                      sent: list[Command] | None = None) -> None:
        for command in change.commands:
            seq = enqueue(conn, command, now)
            if sent is not None:
                sent.append(replace(command, hub_seq=seq))
        if change.fabrication is not None and job.node and job.printer:
            self._fabricate(conn, job, change.fabrication, now)

    @staticmethod
    def _record(conn: sa.Connection, event: EventRecord, change: Change, now: str) -> None:
        # An event that changed nothing (stale, refused, not this node's job) is kept as kind and note
        # only: its data would let any node fill the database with reports on jobs it cannot touch.
        data = json.dumps(dict(event.data), sort_keys=True) if change.applied else "{}"
        _INSERT_EVENT.count(conn, {
            "node": event.node, "agent_seq": event.agent_seq, "job_id": event.job_id, "lease_epoch": event.lease_epoch,
            "kind": event.kind, "at": event.at, "data": data,
            "applied": change.applied, "note": change.note, "received_at": now})
        _LAST_AGENT_SEQ.count(conn, {"b_node": event.node, "b_seq": event.agent_seq})

    @staticmethod
    def _extents(conn: sa.Connection, revision_id: str) -> tuple[float, float, float] | None:
        """The largest extents of the revision's checked meshes (None: nothing checked)."""
        rows = _EXTENTS.rows(conn, {"b_revision": revision_id})
        sizes = []
        for (text,) in rows:
            extents = json.loads(text).get("extents_mm")
            if isinstance(extents, list) and len(extents) == 3:
                sizes.append(tuple(sorted(float(e) for e in extents)))
        if not sizes:
            return None
        return (max(s[0] for s in sizes), max(s[1] for s in sizes), max(s[2] for s in sizes))

    @staticmethod
    def _fabricate(conn: sa.Connection, job: Job, outcome: str, now: str) -> None:
        exists = conn.scalar(sa.select(sa.func.count()).where(fab.c.job_id == job.id,
                                                               fab.c.lease_epoch == job.lease_epoch))
        if exists:
            return
        pr = schema.printers
        model = conn.scalar(sa.select(pr.c.model).where(pr.c.node == job.node, pr.c.printer == job.printer)) or ""
        p = job.production

        def num(key: str) -> float:
            value = p.get(key, 0)
            return float(value) if isinstance(value, int | float) else 0.0

        settings = {k: str(p[k]) for k in ("layer_height_mm",) if k in p}
        conn.execute(sa.insert(fab).values(
            incarnation_id=_incarnation_id(), job_id=job.id, lease_epoch=job.lease_epoch, order_id=job.order_id,
            design=job.design, revision_id=job.revision_id, parameters=json.dumps(dict(job.parameters)),
            node=job.node, printer=job.printer, printer_model=model, material=job.material,
            # the agent's texts as the columns hold them (an event keeps up to 1,024 characters)
            slicer=str(p.get("slicer", ""))[:64], slicer_version=str(p.get("slicer_version", ""))[:64],
            slicer_profile=str(p.get("slicer_profile", ""))[:64], settings=json.dumps(settings),
            estimated_seconds=int(num("estimated_seconds")), actual_seconds=int(num("actual_seconds")),
            estimated_filament_mm=num("estimated_filament_mm"), estimated_filament_g=num("estimated_filament_g"),
            actual_filament_mm=num("actual_filament_mm"), actual_filament_g=num("actual_filament_g"),
            outcome=outcome, failure_reason=job.failure_reason, operator_notes=str(p.get("operator_notes", "")),
            resends=int(num("resends")), findings=json.dumps(p.get("findings", [])), started_at=job.started_at,
            finished_at=now,
        ))
        record_sums.fabrication_added(conn, job.id, job.lease_epoch)  # the record's running sums (hub/store/record_sums.py)
