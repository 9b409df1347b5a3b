"""Signed licence grants on record, with the statement each one stands for (Core).

This connector writes signed grants (at most hub.limits.MAX_LIVE_GRANTS in force per
design), lists them with their statements so they can be verified, and answers the
licence gate of orders from the live grants alone (the partial index ix_grants_live).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from hub import limits
from hub.errors import FailedPrecondition, InvalidArgument, NotFound
from hub.orders import Grant
from hub.store import schema
from hub.store.engine import connect, write

__all__ = ["GrantStore", "RecordedGrant", "Revocation", "already_revoked"]

g = schema.grants


@dataclass(frozen=True, slots=True)
class Revocation:
    """A maintainer's signed revocation of a grant: when, by whom, the statement and its signature."""

    revoked_at: str
    revoked_by: str
    statement: str
    signature: str


@dataclass(frozen=True, slots=True)
class RecordedGrant:
    """A grant on record, the exact statement its signature covers, and its revocation if revoked."""

    grant: Grant
    statement: str
    revocation: Revocation | None = None


def already_revoked(grant_id: str, revocation: Revocation) -> FailedPrecondition:
    """The answer to revoking a grant that another revocation revoked already (nothing changes)."""
    return FailedPrecondition(f"grant {grant_id} was revoked already, at {revocation.revoked_at} by "
                              f"{revocation.revoked_by}; nothing changed", reason="GRANT_ALREADY_REVOKED")


def _recorded(x: sa.Row[tuple[object, ...]]) -> RecordedGrant:
    m = x._mapping
    grant = Grant(m["id"], m["design"], m["revision_id"], m["scope"], m["node"], m["until"], m["granted_by"],
                  m["granted_at"], m["statement_sha256"], m["signature"])
    revoked = Revocation(m["revoked_at"], m["revoked_by"], m["revocation"], m["revocation_signature"]) \
        if m["revoked_at"] else None
    return RecordedGrant(grant, str(m["statement"]), revoked)


def _live(design: str, now: str) -> tuple[sa.ColumnElement[bool], ...]:
    """The grants of a design in force at ``now`` (what ix_grants_live covers)."""
    return g.c.design == design, g.c.revoked_at == "", g.c.until > now


class GrantStore:
    """One connector for the grants table's signed records."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_add(self, recorded: RecordedGrant, now: str, max_live: int = limits.MAX_LIVE_GRANTS) -> RecordedGrant:
        """Store a grant once per statement: the same signed statement sent again returns the first record.

        Args:
            now: the hub's time (RFC 3339 UTC); grants whose ``until`` is not after it no longer count.
            max_live: the most grants of one design in force at once.

        Raises:
            ResourceExhausted: the design already has ``max_live`` grants in force.
        """
        grant = recorded.grant
        same = sa.select(g).where(g.c.design == grant.design, g.c.statement_sha256 == grant.statement_sha256)
        with write(self.engine) as conn:
            # the design's row locked first: the same statement sent at once is stored once (PostgreSQL too)
            conn.execute(sa.select(schema.designs.c.slug).where(schema.designs.c.slug == grant.design).with_for_update())
            existing = conn.execute(same.order_by(g.c.id).limit(1)).first()
            if existing is not None:
                return _recorded(existing)
            live = conn.execute(sa.select(sa.func.count()).select_from(g).where(*_live(grant.design, now))).scalar_one()
            if live >= max_live:
                raise limits.too_many_grants(grant.design, live)
            conn.execute(g.insert().values(
                id=grant.id, design=grant.design, revision_id=grant.revision_id, scope=grant.scope, node=grant.node,
                until=grant.until, granted_by=grant.granted_by, granted_at=grant.granted_at,
                statement=recorded.statement, statement_sha256=grant.statement_sha256, signature=grant.signature))
            return recorded

    def _thd_get(self, grant_id: str) -> RecordedGrant:
        """Raises: NotFound: no grant has this id."""
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(g).where(g.c.id == grant_id)).first()
        if row is None:
            raise NotFound(f"no grant {grant_id!r:.40}: `spime grant DESIGN --list` shows a design's grants")
        return _recorded(row)

    def _thd_revoke(self, grant_id: str, revocation: Revocation) -> RecordedGrant:
        """Record a grant's revocation once: the same signed revocation again returns the record as it is.

        Raises:
            NotFound: no grant has this id.
            FailedPrecondition: the grant was revoked already, by another revocation (nothing changed).
        """
        with write(self.engine) as conn:
            conn.execute(g.update().where(g.c.id == grant_id, g.c.revoked_at == "").values(
                revoked_at=revocation.revoked_at, revoked_by=revocation.revoked_by, revocation=revocation.statement,
                revocation_signature=revocation.signature))
            row = conn.execute(sa.select(g).where(g.c.id == grant_id)).first()
        if row is None:
            raise NotFound(f"no grant {grant_id!r:.40}: `spime grant DESIGN --list` shows a design's grants")
        recorded = _recorded(row)
        if recorded.revocation is not None and recorded.revocation.statement != revocation.statement:
            raise already_revoked(recorded.grant.id, recorded.revocation)
        return recorded

    def _thd_list(self, design: str, limit: int | None = None, after: str = "") -> list[RecordedGrant]:
        """A design's grants, revoked and ended ones too, oldest first, with their statements: at most
        ``limit``, those after the grant ``after`` (the last of the page before).

        Raises:
            InvalidArgument: ``after`` is no grant of the design.
        """
        query = sa.select(g).where(g.c.design == design).order_by(g.c.granted_at, g.c.id)
        with connect(self.engine) as conn:
            if after:
                mark = conn.execute(sa.select(g.c.granted_at).where(g.c.id == after, g.c.design == design)).scalar()
                if mark is None:
                    raise InvalidArgument("page_token is not one this hub handed out for this design",
                                          field="page.page_token")
                query = query.where(sa.or_(g.c.granted_at > mark, sa.and_(g.c.granted_at == mark, g.c.id > after)))
            if limit is not None:
                query = query.limit(limit)
            return [_recorded(x) for x in conn.execute(query)]

    def _thd_covering(self, design: str, revision_id: str, scope: str, now: str) -> list[tuple[str, str]]:
        """Which nodes the grants in force at ``now`` let make ``revision_id`` within ``scope`` (or scope any):
        (node, one such grant's id) per node, sorted by node, so "" (any node) comes first.
        Filtered and grouped in SQL on the live grants alone: one row per node, whatever else is on record.
        """
        query = (sa.select(g.c.node, sa.func.min(g.c.id))
                 .where(*_live(design, now), g.c.revision_id.in_(("", revision_id)), g.c.scope.in_((scope, "any")))
                 .group_by(g.c.node).order_by(g.c.node))
        with connect(self.engine) as conn:
            return [(str(node), str(first)) for node, first in conn.execute(query)]
