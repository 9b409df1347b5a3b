"""Running sums of the community record, kept in the transaction of every write that changes them.

The record of a design shows, over every fabrication and rating, counts and sums per printer model
and material and the design's reputation. Aggregating 10,000 rows on each read is what made the
record slow, so the writers add each row's share here instead (tables ``record_print_stats``,
``record_print_settings`` and ``record_votes``, migration 0010) and the record reads a few rows:

* :func:`fabrication_added`, after a fabrication is inserted (hub/store/jobs.py);
* :func:`votes_changed`, with the ratings a write removed and added (hub/store/orders.py);
* :func:`rebuild`, recomputing every sum from the rows (rows written around the writers, e.g. by a
  benchmark's or a test's bulk insert; migration 0010 backfills with the same queries).

Fabrications are never updated or deleted; a rating is replaced by a delete and an insert in one
transaction. Each function takes the writer's connection, so a sum moves exactly when its row does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub.store import schema

__all__ = ["STARS", "VOTE_COLUMNS", "VOTING_ROLES", "fabrication_added", "print_errors", "rebuild",
           "vote_deltas", "votes_changed"]

f, rt = schema.fabrications, schema.ratings
ps, pset, rv = schema.record_print_stats, schema.record_print_settings, schema.record_votes
VOTING_ROLES = ("customer", "maker")
STARS = ""  # the record_votes criterion that holds the stars
VOTE_COLUMNS = (rt.c.design, rt.c.role, rt.c.stars, rt.c.criteria)
"""What :func:`votes_changed` needs of a rating row, e.g. ``delete(...).returning(*VOTE_COLUMNS)``."""

VoteRow = Sequence[Any]  # (design, role, stars, criteria JSON)


def print_errors(outcome: str, estimated_s: float, actual_s: float, estimated_g: float,
                 actual_g: float) -> tuple[int, float, float]:
    """(measured 0/1, relative time error, relative filament error) of one fabrication.

    A print is measured when it succeeded with an estimated and an actual time; its filament error
    counts only when grams were estimated too (0.0 otherwise).
    """
    if outcome != "success" or estimated_s <= 0 or actual_s <= 0:
        return 0, 0.0, 0.0
    grams = (actual_g - estimated_g) / estimated_g if estimated_g > 0 else 0.0
    seconds = (actual_s - estimated_s) / estimated_s
    if not (math.isfinite(seconds) and math.isfinite(grams)):  # a sum once infinite stays so: never counted
        return 0, 0.0, 0.0
    return 1, seconds, grams


def vote_deltas(removed: Iterable[VoteRow], added: Iterable[VoteRow]) -> dict[tuple[str, str], tuple[int, int]]:
    """Net (total, count) change per (design, criterion) of replacing ``removed`` ratings by ``added``.

    Only customers' and makers' ratings make a design's reputation; criterion :data:`STARS` sums stars.
    """
    deltas: dict[tuple[str, str], tuple[int, int]] = {}
    for sign, rows in ((-1, removed), (1, added)):
        for design, role, stars, criteria in rows:
            if role not in VOTING_ROLES:
                continue
            values = json.loads(criteria) if isinstance(criteria, str) else dict(criteria)
            for name, value in ((STARS, stars), *values.items()):
                total, count = deltas.get((design, name), (0, 0))
                deltas[(design, name)] = (total + sign * int(value), count + sign)
    return {k: v for k, v in deltas.items() if v != (0, 0)}


def _add(conn: sa.Connection, table: sa.Table, key: Mapping[str, object], amounts: Mapping[str, int | float]) -> None:
    """Add ``amounts`` to the row of ``key`` (created at ``amounts`` when missing), one statement."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values({**key, **amounts})
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key),
                                            set_={c: table.c[c] + stmt.excluded[c] for c in amounts}))


def fabrication_added(conn: sa.Connection, job_id: str, lease_epoch: int) -> None:
    """Add the fabrication of ``(job_id, lease_epoch)``, just inserted on ``conn``, to its design's sums."""
    row = conn.execute(sa.select(f.c.design, f.c.printer_model, f.c.material, f.c.settings, f.c.outcome,
                                 f.c.estimated_seconds, f.c.actual_seconds, f.c.estimated_filament_g,
                                 f.c.actual_filament_g)
                       .where(f.c.job_id == job_id, f.c.lease_epoch == lease_epoch)).one()
    key = {"design": row.design, "printer_model": row.printer_model, "material": row.material}
    success = int(row.outcome == "success")
    measured, time_error, filament_error = print_errors(row.outcome, row.estimated_seconds, row.actual_seconds,
                                                        row.estimated_filament_g, row.actual_filament_g)
    _add(conn, ps, key, {"prints": 1, "successes": success, "measured": measured, "time_error_sum": time_error,
                         "filament_error_sum": filament_error})
    if success:
        _add(conn, pset, {**key, "settings": row.settings}, {"successes": 1})


def votes_changed(conn: sa.Connection, removed: Iterable[VoteRow], added: Iterable[VoteRow]) -> None:
    """Move the design's vote sums by the ratings a write removed and added (rows of :data:`VOTE_COLUMNS`)."""
    for (design, criterion), (total, count) in sorted(vote_deltas(removed, added).items()):
        _add(conn, rv, {"design": design, "criterion": criterion}, {"total": total, "count": count})


def _criteria_pairs(conn: sa.Connection) -> sa.TableValuedAlias:
    """(key, value) of each rating's criteria object, as a table the query joins laterally."""
    if conn.dialect.name == "postgresql":
        return sa.func.jsonb_each_text(sa.cast(rt.c.criteria, postgresql.JSONB)).table_valued("key", "value")
    return sa.func.json_each(rt.c.criteria).table_valued("key", "value")


def rebuild(conn: sa.Connection, design: str | None = None) -> None:
    """Recompute the sums of ``design`` (every design when None) from its fabrications and ratings."""
    for table in (ps, pset, rv):
        conn.execute(table.delete().where(table.c.design == design) if design is not None else table.delete())
    mine = (lambda t: t.c.design == design) if design is not None else (lambda t: sa.true())
    measured = sa.and_(f.c.outcome == "success", f.c.estimated_seconds > 0, f.c.actual_seconds > 0)
    grams = sa.and_(measured, f.c.estimated_filament_g > 0)
    zero = sa.cast(0.0, sa.Float)
    group = (f.c.design, f.c.printer_model, f.c.material)
    conn.execute(ps.insert().from_select([c.name for c in ps.c], sa.select(
        *group, sa.func.count(), sa.func.sum(sa.case((f.c.outcome == "success", 1), else_=0)),
        sa.func.sum(sa.case((measured, 1), else_=0)),
        sa.func.sum(sa.case((measured, sa.cast(f.c.actual_seconds - f.c.estimated_seconds, sa.Float)
                             / f.c.estimated_seconds), else_=zero)),
        sa.func.sum(sa.case((grams, (f.c.actual_filament_g - f.c.estimated_filament_g) / f.c.estimated_filament_g),
                            else_=zero)),
    ).where(mine(f)).group_by(*group)))
    conn.execute(pset.insert().from_select([c.name for c in pset.c], sa.select(*group, f.c.settings, sa.func.count())
                                           .where(mine(f), f.c.outcome == "success").group_by(*group, f.c.settings)))
    voting = sa.and_(mine(rt), rt.c.role.in_(VOTING_ROLES))
    conn.execute(rv.insert().from_select([c.name for c in rv.c], sa.select(
        rt.c.design, sa.literal(STARS), sa.func.sum(rt.c.stars), sa.func.count()).where(voting).group_by(rt.c.design)))
    pairs = _criteria_pairs(conn)
    conn.execute(rv.insert().from_select([c.name for c in rv.c], sa.select(
        rt.c.design, pairs.c.key, sa.func.sum(sa.cast(pairs.c.value, sa.Integer)), sa.func.count())
        .select_from(rt).join(pairs, sa.true()).where(voting).group_by(rt.c.design, pairs.c.key)))
