"""Hub replicas on one database: their leases and the node sessions they hold (issue 9).

Every `spime-hub serve` process is a replica with an id. It heartbeats its `hub_replicas` row
(a lease until `expires_at`); `nodes.replica` names the replica holding a node's session. A
replica that starts releases only the sessions it held itself (and legacy ones held by nobody
named); sessions of a replica whose lease expired (killed, partitioned) are released by any live
replica, once: the release is a conditional update on (online, session_epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from hub.store import schema
from hub.store.engine import connect, write
from hub.store.nodes import translated

__all__ = ["Released", "ReplicaStore"]

n, hr = schema.nodes, schema.hub_replicas
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Released:
    """A node session released because its replica is gone: the node is offline now."""

    node: str
    session_epoch: int
    replica: str


class ReplicaStore:
    """Replica leases and session ownership on the nodes table."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @translated
    def _thd_beat(self, replica: str, now: str, expires_at: str) -> None:
        """Create or extend this replica's lease until expires_at.

        Raises:
            StorageError: the database failed.
        """
        with write(self.engine) as conn:
            done = conn.execute(sa.update(hr).where(hr.c.replica == replica).values(expires_at=expires_at)).rowcount
            if not done:
                conn.execute(sa.insert(hr).values(replica=replica, started_at=now, expires_at=expires_at))

    @translated
    def _thd_leave(self, replica: str) -> None:
        """A replica stopping gracefully gives up its lease (its sessions were closed already).

        Raises:
            StorageError: the database failed.
        """
        with write(self.engine) as conn:
            conn.execute(sa.delete(hr).where(hr.c.replica == replica))

    @translated
    def _thd_release_own(self, replica: str, now: str) -> list[Released]:
        """At start: sessions this replica id held (a previous life of it) and sessions held by no
        named replica (single-process hubs before replicas) are gone; returns them.

        Raises:
            StorageError: the database failed.
        """
        with write(self.engine) as conn:
            return _release(conn, n.c.replica.in_((replica, "")), now)

    @translated
    def _thd_release_dead(self, now: str) -> list[Released]:
        """Sessions held by replicas whose lease expired (or that left no lease) are gone; their
        leases are dropped. Safe to run on every replica at once: each session is released once.

        Raises:
            StorageError: the database failed.
        """
        live = sa.select(hr.c.replica).where(hr.c.expires_at > now)
        with write(self.engine) as conn:
            released = _release(conn, sa.and_(n.c.replica != "", n.c.replica.not_in(live)), now)
            conn.execute(sa.delete(hr).where(hr.c.expires_at <= now))
            return released

    @translated
    def _thd_holders(self, names: list[str]) -> dict[str, tuple[int, str]]:
        """(session_epoch, replica) of each named node, to find sessions superseded elsewhere.

        Raises:
            StorageError: the database failed.
        """
        found: dict[str, tuple[int, str]] = {}
        with connect(self.engine) as conn:
            for start in range(0, len(names), _CHUNK):  # bounded bind parameters per statement
                chunk = names[start:start + _CHUNK]
                rows = conn.execute(sa.select(n.c.name, n.c.session_epoch, n.c.replica).where(n.c.name.in_(chunk)))
                found.update({r.name: (int(r.session_epoch), str(r.replica)) for r in rows})
        return found

    @translated
    def _thd_replicas(self) -> dict[str, str]:
        """Every replica lease: id -> expires_at.

        Raises:
            StorageError: the database failed.
        """
        with connect(self.engine) as conn:
            return {r.replica: r.expires_at for r in conn.execute(sa.select(hr.c.replica, hr.c.expires_at))}


def _release(conn: sa.Connection, held_by: sa.ColumnElement[bool], now: str) -> list[Released]:
    # A Hello racing with the release bumps session_epoch (and sets online): the row's lock makes
    # one of them wait, and the update re-checks its condition, so a fresh session is never released.
    rows = conn.execute(
        sa.select(n.c.name, n.c.session_epoch, n.c.replica).where(n.c.online.is_(True), held_by)
    ).all()
    released = []
    for row in rows:
        done = conn.execute(
            sa.update(n).where(n.c.name == row.name, n.c.session_epoch == row.session_epoch, n.c.online.is_(True))
            .values(online=False, disconnected_at=now, replica="")
        ).rowcount
        if done:
            released.append(Released(str(row.name), int(row.session_epoch), str(row.replica)))
    return released
