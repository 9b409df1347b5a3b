"""Nodes, their printers, enrollment tokens (stored hashed) and the hub -> agent command outbox."""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa

from hub.errors import AlreadyExists, NotFound, StorageError, Unauthenticated
from hub.jobs import Command
from hub.scheduler import PrinterRecord
from hub.store import schema
from hub.store.accounts import token_digest
from hub.store.driver import Prepared
from hub.store.engine import connect, write

__all__ = ["CHANNEL", "NODE_OF_PRINTER", "NODE_ROUTABLE", "HelloRecord", "NodeInfo", "NodeStore", "enqueue", "notify",
           "printers_in", "translated"]

n, pr, cmd, en = schema.nodes, schema.printers, schema.node_commands, schema.enrollment_tokens
# What a printer query reads of the printer's node (_printer): liveness, place, drain.
NODE_OF_PRINTER = (n.c.online, n.c.latitude, n.c.longitude, n.c.last_seen, n.c.drained)
# A node that may be routed a new job: its agent connected, not drained by the hub's admin.
NODE_ROUTABLE = (n.c.online.is_(True), n.c.drained == "")
hr = schema.hub_replicas
# PostgreSQL wake-up channel of hub replicas (hub/store/notify.py): payload "NODE" = a command was
# committed for NODE; "NODE EPOCH" = NODE said Hello and its session EPOCH supersedes older ones.
CHANNEL = "spime_node_commands"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    session_epoch: int
    online: bool
    last_agent_seq: int
    hub_seq: int
    hub_seq_acked: int
    location: str
    latitude: float | None
    longitude: float | None
    last_seen: str
    disconnected_at: str
    drained: str = ""  # why a hub admin drained the node, "" when not drained


P = ParamSpec("P")
R = TypeVar("R")


def translated(fn: Callable[P, R]) -> Callable[P, R]:
    """Database failures (not our constraints) become StorageError: the hub's fault, retry later."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except sa.exc.IntegrityError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"the database failed: {type(exc).__name__}; try again") from exc

    return wrapper


def _node(row: sa.Row) -> NodeInfo:  # type: ignore[type-arg]
    return NodeInfo(row.name, row.session_epoch, row.online, row.last_agent_seq, row.hub_seq, row.hub_seq_acked,
                    row.location, row.latitude, row.longitude, row.last_seen, row.disconnected_at, row.drained)


# the columns of a printer as a Hello or a heartbeat reports it (besides its node and id)
_PRINTER_FIELDS = ("model", "build_x_mm", "build_y_mm", "build_z_mm", "nozzle_mm", "materials", "phase", "bed_clear",
                   "accepting", "hour_currency", "hour_minor", "gram_currency", "gram_minor", "slicer_profile")
# where each field of a PrinterRecord sits in a row of sa.select(printers, *NODE_OF_PRINTER, ...)
_ROW_COLUMNS = [c.name for c in pr.c] + [c.name for c in NODE_OF_PRINTER]
_PRINTER_FIELDS_OF_ROW = operator.itemgetter(*(_ROW_COLUMNS.index(name) for name in (
    "node", "printer", "model", "build_x_mm", "build_y_mm", "build_z_mm", "nozzle_mm", "materials", "phase", "bed_clear",
    "accepting", "online", "hour_currency", "hour_minor", "gram_currency", "gram_minor", "slicer_profile", "latitude",
    "longitude", "last_seen", "drained")))


def _printer(row: sa.Row) -> PrinterRecord:  # type: ignore[type-arg]
    """A row of sa.select(printers, *NODE_OF_PRINTER, ...) (every caller's shape) as a PrinterRecord. Read by
    position: matching converts a few dozen rows per order, and a row's attributes cost ten times as much."""
    (node, printer, model, x, y, z, nozzle, materials, phase, bed_clear, accepting, online, hour_currency, hour_minor,
     gram_currency, gram_minor, profile, latitude, longitude, last_seen, drained) = _PRINTER_FIELDS_OF_ROW(row)
    return PrinterRecord(
        node=node, printer=printer, model=model, build_volume_mm=(x, y, z), nozzle_mm=nozzle,
        materials=_materials(materials), phase=phase, bed_clear=bool(bed_clear), accepting=bool(accepting),
        online=bool(online), rate_per_hour=(hour_currency, hour_minor), rate_per_gram=(gram_currency, gram_minor),
        slicer_profile=profile, latitude=latitude, longitude=longitude, last_seen=last_seen, drained=drained,
    )


@functools.lru_cache(maxsize=1024)
def _materials(text: str) -> tuple[str, ...]:
    """A printer's materials column (a JSON list) as a tuple: kept per text, as most printers load the same few."""
    return tuple(json.loads(text))


def _printer_values(p: PrinterRecord, now: str) -> dict[str, object]:
    return {**dict(zip(_PRINTER_FIELDS, _printer_key(p), strict=True)), "updated_at": now}


def _printer_key(p: PrinterRecord) -> tuple[object, ...]:
    """A printer's stored columns (_PRINTER_FIELDS), as the database gives them back."""
    x, y, z = p.build_volume_mm
    return (p.model, x, y, z, p.nozzle_mm, _materials_text(tuple(p.materials)), p.phase, p.bed_clear, p.accepting,
            p.rate_per_hour[0], p.rate_per_hour[1], p.rate_per_gram[0], p.rate_per_gram[1], p.slicer_profile)


@functools.lru_cache(maxsize=1024)
def _materials_text(materials: tuple[str, ...]) -> str:
    """The materials column of a printer (a JSON list): kept per list, as most printers load the same few."""
    return json.dumps(list(materials))


def printers_in(conn: sa.Connection, node: str | None = None) -> list[PrinterRecord]:
    """Every known printer (of one node) with its node's liveness, inside a transaction."""
    query = (
        sa.select(pr, *NODE_OF_PRINTER).join(n, n.c.name == pr.c.node).order_by(pr.c.node, pr.c.printer)
    )
    if node is not None:
        query = query.where(pr.c.node == node)
    return [_printer(row) for row in conn.execute(query)]


def notify(conn: sa.Connection, payload: str) -> None:
    """On PostgreSQL, wake the hub replicas (delivered when the caller's transaction commits);
    elsewhere nothing: one hub process rings its sessions itself."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))


@dataclass(frozen=True, slots=True)
class HelloRecord:
    """What a Hello stores: the node, (location, latitude, longitude), agent version, the newest
    hub_seq the agent applied, its printers, when, and the replica holding the session."""

    name: str
    place: tuple[str, float | None, float | None]
    version: str
    applied_hub_seq: int
    printers: tuple[PrinterRecord, ...]
    now: str
    replica: str = ""


def _hello(conn: sa.Connection, h: HelloRecord, printers: bool = True) -> NodeInfo:
    """Store a Hello (without `printers`: only the node row; the caller trims the outbox and
    replaces the printers).

    Raises:
        NotFound: no such node (nothing written).
    """
    location, lat, lon = h.place
    row = conn.execute(
        sa.update(n).where(n.c.name == h.name).values(
            session_epoch=n.c.session_epoch + 1, online=True, location=location, latitude=lat,
            longitude=lon, agent_version=h.version, last_seen=h.now, replica=h.replica,
            hub_seq_acked=_acked(sa.literal(h.applied_hub_seq, sa.BigInteger)),
        ).returning(*n.c)
    ).first()
    if row is None:
        raise NotFound(f"no node named {h.name!r}")
    notify(conn, f"{h.name} {row.session_epoch}")
    if not printers:
        return _node(row)
    conn.execute(sa.delete(cmd).where(cmd.c.node == h.name, cmd.c.hub_seq <= row.hub_seq_acked))
    conn.execute(sa.delete(pr).where(pr.c.node == h.name))
    if h.printers:
        conn.execute(sa.insert(pr), [{"node": h.name, "printer": p.printer, **_printer_values(p, h.now)}
                                     for p in h.printers])
    return _node(row)


def _acked(seq: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    """A node's hub_seq_acked after the agent says it applied everything up to ``seq``: it only grows,
    and never past the commands the hub has issued (``hub_seq``). An agent claiming more (a bug, a
    restored database, a rogue node) would otherwise never be sent the next commands."""
    issued = sa.case((seq > n.c.hub_seq, n.c.hub_seq), else_=seq)
    return sa.case((n.c.hub_seq_acked < issued, issued), else_=n.c.hub_seq_acked)


# Statements of the batched session writes, built once (building and keying a statement costs more
# than running it on SQLite); executed with one parameter set per node.
_HELLO_UPDATE = sa.update(n).where(n.c.name == sa.bindparam("b_name")).values(
    session_epoch=n.c.session_epoch + 1, online=True, location=sa.bindparam("b_location"),
    latitude=sa.bindparam("b_lat"), longitude=sa.bindparam("b_lon"), agent_version=sa.bindparam("b_version"),
    last_seen=sa.bindparam("b_now"), replica=sa.bindparam("b_replica"),
    hub_seq_acked=_acked(sa.bindparam("b_applied", type_=sa.BigInteger)),
)
_ACK = sa.update(n).where(n.c.name == sa.bindparam("b_name")).values(
    hub_seq_acked=_acked(sa.bindparam("b_seq", type_=sa.BigInteger)))
_TRIM_OUTBOX = sa.delete(cmd).where(cmd.c.node == sa.bindparam("b_name"), cmd.c.hub_seq <= sa.bindparam("b_seq"))
_DISCONNECT = sa.update(n).where(n.c.name == sa.bindparam("b_name"), n.c.session_epoch == sa.bindparam("b_epoch")) \
    .values(online=False, disconnected_at=sa.bindparam("b_now"), last_seen=sa.bindparam("b_now"), replica="")
# The batched reads of the same (a batch of Hellos or ended sessions): IN lists bound at execution,
# not a statement built per call with a bound literal per name to coerce and key.
_NAMES: sa.BindParameter[str] = sa.bindparam("b_names", expanding=True)
_NODES_NAMED = sa.select(n).where(n.c.name.in_(_NAMES))
_EPOCHS_LOCKED = sa.select(n.c.name, n.c.session_epoch).where(n.c.name.in_(_NAMES)).order_by(n.c.name).with_for_update()
_PENDING_OF = sa.select(cmd).where(cmd.c.node.in_(_NAMES)).order_by(cmd.c.node, cmd.c.hub_seq)
# node, printer, then the columns of _printer_key: read by position (a row's _mapping costs more than the
# comparison, for every printer of every Hello of a reconnect storm)
_PRINTERS_OF = sa.select(pr.c.node, pr.c.printer, *(pr.c[f] for f in _PRINTER_FIELDS)).where(pr.c.node.in_(_NAMES))


def _hello_params(h: HelloRecord) -> dict[str, object]:
    location, lat, lon = h.place
    return {"b_name": h.name, "b_location": location, "b_lat": lat, "b_lon": lon, "b_version": h.version,
            "b_now": h.now, "b_replica": h.replica, "b_applied": h.applied_hub_seq}


def _notify_many(conn: sa.Connection, payloads: Sequence[str]) -> None:
    """notify() for many payloads in one statement."""
    if conn.dialect.name == "postgresql" and payloads:
        conn.execute(sa.text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p"),
                     {"channel": CHANNEL, "payloads": list(payloads)})


def _replace_changed_printers(conn: sa.Connection, hellos: Mapping[str, HelloRecord]) -> None:
    """Make the stored printers of these nodes what their Hellos say, writing only nodes that changed."""
    stored: dict[str, dict[str, tuple[object, ...]]] = {name: {} for name in hellos}
    for node, printer, *columns in conn.execute(_PRINTERS_OF, {"b_names": sorted(hellos)}):
        stored[node][printer] = tuple(columns)
    changed = sorted(name for name, h in hellos.items()
                     if stored[name] != {p.printer: _printer_key(p) for p in h.printers})
    if not changed:
        return
    conn.execute(sa.delete(pr).where(pr.c.node.in_(changed)))
    rows = [{"node": name, "printer": p.printer, **_printer_values(p, hellos[name].now)}
            for name in changed for p in hellos[name].printers]
    if rows:
        conn.execute(sa.insert(pr), rows)


# every command sent (an offer with each order placed): run on the driver (hub/store/driver.py)
_NEXT_SEQ = Prepared(sa.update(n).where(n.c.name == sa.bindparam("b_name")).values(hub_seq=n.c.hub_seq + 1)
                     .returning(n.c.hub_seq))
_INSERT_COMMAND = Prepared(sa.insert(cmd))


def enqueue(conn: sa.Connection, command: Command, now: str) -> int:
    """Put a command in its node's outbox inside the caller's transaction; returns its hub_seq.
    The replica holding the node's session is woken by NOTIFY at commit (PostgreSQL)."""
    seq = _NEXT_SEQ.scalar(conn, {"b_name": command.node})
    if seq is None:
        raise sa.exc.NoResultFound(f"no node {command.node!r} to send a command to")
    _INSERT_COMMAND.count(conn, {"node": command.node, "hub_seq": seq, "kind": command.kind,
                                   "job_id": command.job_id, "body": json.dumps(dict(command.body)), "created_at": now})
    notify(conn, command.node)
    return int(seq)


class NodeStore:
    """One connector for the nodes aggregate."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @translated
    def _thd_add_node(self, name: str, enrollment_token: str, now: str, expires_at: str) -> None:
        """Create the node's account (role node), its node row and a one-time enrollment token.

        Raises:
            AlreadyExists: the name is taken.
        """
        with write(self.engine) as conn:
            if conn.scalar(sa.select(sa.func.count()).where(schema.accounts.c.name == name)):
                raise AlreadyExists(f"account {name!r} already exists; pick another node name")
            conn.execute(sa.insert(schema.accounts).values(name=name, role="node", created_at=now))
            conn.execute(sa.insert(n).values(name=name, created_at=now))
            conn.execute(sa.insert(en).values(token_sha256=token_digest(enrollment_token), node=name,
                                              created_at=now, expires_at=expires_at))

    @translated
    def _thd_new_enrollment(self, name: str, enrollment_token: str, now: str, expires_at: str) -> int:
        """Another one-time enrollment token for an existing node (its agent lost its credential, or
        it leaked), replacing what the node held: its unused enrollment tokens are voided and its
        live credentials revoked in the same transaction; returns how many credentials were revoked.

        The unused tokens go first: on PostgreSQL an Enroll racing with this either consumed its token
        before (its new credential is committed by the time the revocation reads, so it is revoked) or
        finds the token gone.

        Raises:
            NotFound: no such node.
        """
        with write(self.engine) as conn:
            if not conn.scalar(sa.select(sa.func.count()).where(n.c.name == name)):
                raise NotFound(f"no node named {name!r}: create it with `spime-hub node add {name}`")
            conn.execute(sa.delete(en).where(en.c.node == name, en.c.used_at == ""))
            revoked = conn.execute(sa.update(schema.tokens).where(
                schema.tokens.c.account == name, schema.tokens.c.revoked_at.is_(None)).values(revoked_at=now)).rowcount
            conn.execute(sa.insert(en).values(token_sha256=token_digest(enrollment_token), node=name,
                                              created_at=now, expires_at=expires_at))
            return int(revoked)

    @translated
    def _thd_enroll(self, enrollment_token: str, bearer: str, now: str) -> str:
        """Consume an enrollment token once and give its node a bearer token; returns the node.

        Raises:
            Unauthenticated: the token is unknown, used or expired.
        """
        digest = token_digest(enrollment_token)
        # Read first: a wrong token (anyone may send one) costs a read, never a write transaction.
        with connect(self.engine) as conn:
            _usable(conn.execute(sa.select(en).where(en.c.token_sha256 == digest)).first(), now)
        with write(self.engine) as conn:
            row = _usable(conn.execute(sa.select(en).where(en.c.token_sha256 == digest)).first(), now)
            done = conn.execute(sa.update(en).where(en.c.token_sha256 == digest, en.c.used_at == "")
                                .values(used_at=now)).rowcount
            if done != 1:
                raise Unauthenticated("this enrollment token was just used by another call")
            conn.execute(sa.insert(schema.tokens).values(token_sha256=token_digest(bearer), account=row.node,
                                                         created_at=now))
            return str(row.node)

    def _thd_node(self, name: str) -> NodeInfo:
        """Raises: NotFound: no such node."""
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(n).where(n.c.name == name)).first()
        if row is None:
            raise NotFound(f"no node named {name!r}: create it with `spime-hub node add {name}`")
        return _node(row)

    def _thd_nodes(self, online_only: bool = False) -> list[NodeInfo]:
        """Every node (or the online ones), by name."""
        query = sa.select(n).order_by(n.c.name)
        if online_only:
            query = query.where(n.c.online == sa.true())
        with connect(self.engine) as conn:
            return [_node(row) for row in conn.execute(query)]

    @translated
    def _thd_hello(self, name: str, place: tuple[str, float | None, float | None], version: str,
                   applied_hub_seq: int, printers: Sequence[PrinterRecord], now: str, replica: str = "") -> NodeInfo:
        """Open a session held by `replica`: bump session_epoch, mark online, replace printers, trim
        acked commands, and tell the other replicas (NOTIFY "NODE EPOCH": an older session is superseded).

        Raises:
            NotFound: no such node.
        """
        with write(self.engine) as conn:
            return _hello(conn, HelloRecord(name, place, version, applied_hub_seq, tuple(printers), now, replica))

    @translated
    def _thd_hello_many(self, hellos: Sequence[HelloRecord]) -> list[NodeInfo | NotFound]:
        """_thd_hello for many nodes in one write transaction; an unknown node gets NotFound.

        A statement per step for the whole batch, not per node: the node rows are updated by one
        executemany and read back by one query; printers are rewritten only for the nodes whose
        reported printers differ from the stored ones (a reconnect of an unchanged node writes none).
        A node named twice in the batch: each later Hello gets its own, newer session epoch.

        Raises:
            StorageError: the database failed (then none was recorded).
        """
        done: dict[int, NodeInfo | NotFound] = {}
        first: dict[str, int] = {}
        repeats: list[int] = []
        for i, h in enumerate(hellos):
            if h.name in first:
                repeats.append(i)
            else:
                first[h.name] = i
        with write(self.engine) as conn:
            names = sorted(first)  # one lock order for all writers
            if names:
                conn.execute(_HELLO_UPDATE, [_hello_params(hellos[first[name]]) for name in names])
                rows = {row.name: _node(row) for row in conn.execute(_NODES_NAMED, {"b_names": names})}
                for name in names:
                    found = rows.get(name)
                    done[first[name]] = found if found is not None else NotFound(f"no node named {name!r}")
                _notify_many(conn, [f"{name} {info.session_epoch}" for name, info in rows.items()])
            for i in repeats:  # rare: the same node twice in one batch
                try:
                    done[i] = _hello(conn, hellos[i], printers=False)
                except NotFound as exc:
                    done[i] = exc
            stored = [(h, r) for h, r in zip(hellos, (done[i] for i in range(len(hellos))), strict=True)
                      if isinstance(r, NodeInfo)]
            if stored:  # the outbox trims and printer replacements of the batch, a statement each
                trims = {r.name: r.hub_seq_acked for _, r in stored}
                conn.execute(_TRIM_OUTBOX, [{"b_name": k, "b_seq": v} for k, v in sorted(trims.items())])
                latest = {h.name: h for h, _ in stored}  # a node named twice: its last Hello wins
                _replace_changed_printers(conn, latest)
        return [done[i] for i in range(len(hellos))]

    @translated
    def _thd_disconnect(self, name: str, session_epoch: int, now: str) -> bool:
        """Mark a node offline if `session_epoch` is still its current session; returns whether it was."""
        with write(self.engine) as conn:
            return bool(conn.execute(
                sa.update(n).where(n.c.name == name, n.c.session_epoch == session_epoch)
                .values(online=False, disconnected_at=now, last_seen=now, replica="")
            ).rowcount)

    @translated
    def _thd_disconnect_many(self, sessions: Sequence[tuple[str, int, str]]) -> list[bool]:
        """_thd_disconnect for many (node, session_epoch, now) in one write transaction: one read of
        the nodes' current epochs (locked), one executemany for those still current."""
        names = sorted({name for name, _, _ in sessions})
        with write(self.engine) as conn:
            epochs = {row.name: int(row.session_epoch) for row in conn.execute(_EPOCHS_LOCKED, {"b_names": names})}
            current = [epochs.get(name) == epoch for name, epoch, _ in sessions]
            rows = {name: {"b_name": name, "b_epoch": epoch, "b_now": now}
                    for (name, epoch, now), is_current in zip(sessions, current, strict=True) if is_current}
            if rows:
                conn.execute(_DISCONNECT, [rows[name] for name in sorted(rows)])
            return current

    def _thd_mark_offline(self, names: Sequence[str], now: str) -> None:
        """Nodes whose heartbeats stopped (SUSPECT) count as disconnected from now."""
        if names:
            with write(self.engine) as conn:
                conn.execute(sa.update(n).where(n.c.name.in_(names), n.c.online.is_(True))
                             .values(online=False, disconnected_at=now))

    def _thd_reset_online(self, now: str) -> None:
        """At hub start nobody is connected yet (one hub process per database): every node is offline
        until its agent says Hello again."""
        with write(self.engine) as conn:
            conn.execute(sa.update(n).where(n.c.online.is_(True)).values(online=False, disconnected_at=now))

    def _thd_outbox_heads(self) -> dict[str, int]:
        """The newest unacked hub_seq per node (commands written by other processes show up here).
        The outbox holds only unacked commands, so this stays small whatever the node count."""
        query = sa.select(cmd.c.node, sa.func.max(cmd.c.hub_seq).label("seq")).group_by(cmd.c.node)
        with connect(self.engine) as conn:
            return {r.node: int(r.seq) for r in conn.execute(query)}

    def _thd_seen(self, name: str, now: str) -> None:
        with write(self.engine) as conn:
            conn.execute(sa.update(n).where(n.c.name == name).values(last_seen=now))

    @translated
    def _thd_seen_many(self, seen: Sequence[tuple[str, str]]) -> None:
        """_thd_seen for many (node, now) in one write transaction."""
        with write(self.engine) as conn:
            conn.execute(sa.update(n).where(n.c.name == sa.bindparam("b_name")).values(last_seen=sa.bindparam("b_now")),
                         [{"b_name": name, "b_now": now} for name, now in sorted(seen)])

    @translated
    def _thd_set_drained(self, name: str, reason: str, now: str) -> NodeInfo:
        """Drain a node (``reason`` given: no new job is routed to it) or resume it (``reason`` "").

        Raises:
            NotFound: no such node.
        """
        with write(self.engine) as conn:
            found = conn.execute(sa.update(n).where(n.c.name == name)
                                 .values(drained=reason, drained_at=now if reason else "")).rowcount
            if not found:
                raise NotFound(f"no node named {name!r}: `spime-hub node list` shows the nodes")
            return _node(conn.execute(sa.select(n).where(n.c.name == name)).one())

    @translated
    def _thd_drained(self) -> dict[str, str]:
        """The drained nodes and why (few, if any: one short scan of the nodes)."""
        with connect(self.engine) as conn:
            rows = conn.execute(sa.select(n.c.name, n.c.drained).where(n.c.drained != ""))
            return {str(name): str(reason) for name, reason in rows}

    @translated
    def _thd_set_printers(self, name: str, printers: Sequence[PrinterRecord], now: str) -> None:
        """Upsert printers of a node as reported by a heartbeat or PrinterChanged."""
        with write(self.engine) as conn:
            for p in printers:
                values = _printer_values(p, now)
                done = conn.execute(sa.update(pr).where(pr.c.node == name, pr.c.printer == p.printer)
                                    .values(**values)).rowcount
                if not done:
                    conn.execute(sa.insert(pr).values(node=name, printer=p.printer, **values))

    @translated
    def _thd_printers(self) -> list[PrinterRecord]:
        """Every printer known to the hub, with its node's liveness and location."""
        with connect(self.engine) as conn:
            return printers_in(conn)

    @translated
    def _thd_ack(self, name: str, hub_seq: int) -> None:
        """The agent applied every command up to hub_seq: drop them from the outbox."""
        with write(self.engine) as conn:
            conn.execute(sa.delete(cmd).where(cmd.c.node == name, cmd.c.hub_seq <= hub_seq))
            conn.execute(_ACK, {"b_name": name, "b_seq": hub_seq})

    @translated
    def _thd_ack_many(self, acks: Sequence[tuple[str, int]]) -> None:
        """_thd_ack for many (node, hub_seq) in one write transaction."""
        rows = [{"b_name": name, "b_seq": seq} for name, seq in sorted(acks)]
        with write(self.engine) as conn:
            conn.execute(sa.delete(cmd).where(cmd.c.node == sa.bindparam("b_name"), cmd.c.hub_seq <= sa.bindparam("b_seq")),
                         rows)
            conn.execute(_ACK, rows)

    @translated
    def _thd_pending(self, name: str, after: int) -> list[Command]:
        """Commands of a node's outbox with hub_seq > after, oldest first."""
        query = sa.select(cmd).where(cmd.c.node == name, cmd.c.hub_seq > after).order_by(cmd.c.hub_seq)
        with connect(self.engine) as conn:
            return [Command(row.kind, row.job_id, row.node, _body(row.body), int(row.hub_seq))
                    for row in conn.execute(query)]

    @translated
    def _thd_pending_of(self, names: Sequence[str]) -> dict[str, list[Command]]:
        """Every unacked command of these nodes, oldest first per node (one query for a batch)."""
        out: dict[str, list[Command]] = {name: [] for name in names}
        with connect(self.engine) as conn:
            for row in conn.execute(_PENDING_OF, {"b_names": list(names)}):
                out[row.node].append(Command(row.kind, row.job_id, row.node, _body(row.body), int(row.hub_seq)))
        return out

    def _thd_drop_commands(self, name: str, job_id: str, kinds: Sequence[str]) -> None:
        """Forget undelivered commands that no longer mean anything (an expired offer)."""
        with write(self.engine) as conn:
            conn.execute(sa.delete(cmd).where(cmd.c.node == name, cmd.c.job_id == job_id, cmd.c.kind.in_(kinds)))


def _body(text: str) -> Mapping[str, object]:
    body = json.loads(text)
    return body if isinstance(body, dict) else {}


def _usable(row: Any, now: str) -> Any:
    """Raises: Unauthenticated: the enrollment token's row is missing, used or expired."""
    if row is None or row.used_at or row.expires_at <= now:
        raise Unauthenticated("unknown, used or expired enrollment token: ask the hub's admin for a new one "
                              "(`spime-hub node add NAME`)")
    return row
