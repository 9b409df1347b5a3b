"""Read side of the community record: fabrications, their aggregates, ratings and the value ledger of a design.

Figures over every fabrication and rating come from the running sums of
:mod:`hub.store.record_sums` (a few rows per design, kept by the writers), the
contributors and lineage from one GROUP BY or join per question, and the lists
are the latest rows by an index: a design with tens of thousands of
fabrications and a long history answers in a fixed number of queries, all in
one read transaction (:meth:`RecordStore._thd_record`). The statements are
built once, at import; only the design changes between calls.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub.domain import Fabrication, LedgerLine, ProposalState, RatingRecord, RevisionKind
from hub.store import schema
from hub.store.engine import connect
from hub.store.record_sums import STARS

__all__ = ["AggregateRow", "HistoryRows", "RecordRows", "RecordStore", "VoteTotals"]

f, rt, lg, pa, o = schema.fabrications, schema.ratings, schema.ledger_entries, schema.participation, schema.orders
r, rp, p, ve = schema.revisions, schema.revision_parents, schema.proposals, schema.value_equations
ps, pset, rv = schema.record_print_stats, schema.record_print_settings, schema.record_votes
FABRICATIONS_LISTED = 200
RATINGS_LISTED = 200
LEDGER_LISTED = 200
TYPICAL_SETTINGS = 5
_JSON_CACHED = 4096


@dataclass(frozen=True, slots=True)
class HistoryRows:
    """Who contributed to a design and how it links to others, as the database counts them.

    Attributes:
        authored: (author, revisions in the commons: pushes, forks and merged proposals), by name.
        merged: (author, accepted proposals), by name.
        reviewers: people who decided a proposal, by name.
        upstream: (revision, parent design, parent revision) for parents in other designs, oldest revision first.
        forks: (child design, child revision, parent revision) for forks of this design's revisions.
    """

    authored: tuple[tuple[str, int], ...]
    merged: tuple[tuple[str, int], ...]
    reviewers: tuple[str, ...]
    upstream: tuple[tuple[str, str, str], ...]
    forks: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class VoteTotals:
    """Sums of the ratings that make a design's reputation (customers' and makers')."""

    count: int
    stars: int
    criteria: tuple[tuple[str, int, int], ...]  # (criterion, sum, count), by name


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """Counts of one (printer model, material) as the database sums them."""

    printer_model: str
    material: str
    prints: int
    successes: int
    time_error_sum: float
    filament_error_sum: float
    measured: int
    settings: tuple[tuple[str, int], ...]  # (settings JSON, count), most common first


@dataclass(frozen=True, slots=True)
class RecordRows:
    """Everything the record reads from the database, from one transaction."""

    history: HistoryRows
    fabrications: tuple[Fabrication, ...]
    fabrication_count: int
    aggregates: tuple[AggregateRow, ...]
    ratings: tuple[RatingRecord, ...]
    votes: VoteTotals
    ledger: tuple[LedgerLine, ...]
    orders_by_customer: tuple[tuple[str, bool, int], ...]
    rung: str
    equation: tuple[int, str] | None  # (version, equation JSON) of the newest stored value equation


@functools.lru_cache(maxsize=_JSON_CACHED)
def _json_map(text: str) -> Mapping[str, Any]:
    """A stored JSON object, read-only: settings and criteria repeat across rows, so each text is parsed once."""
    return types.MappingProxyType(json.loads(text))


def _design() -> sa.BindParameter[str]:
    return sa.bindparam("design", type_=sa.String)


def _latest(table: sa.Table, columns: tuple[sa.ColumnElement[Any], ...], limit: int,
            *order: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """The newest ``limit`` rows of a design by ``order`` (served backwards by a (design, *order) index)."""
    return sa.select(*columns).where(table.c.design == _design()).order_by(*(c.desc() for c in order)).limit(limit)


_FAB_COLUMNS = (f.c.job_id, f.c.order_id, f.c.revision_id, f.c.node, f.c.printer, f.c.material, f.c.settings,
                f.c.estimated_seconds, f.c.actual_seconds, f.c.estimated_filament_g, f.c.actual_filament_g,
                f.c.outcome, f.c.failure_reason, f.c.finished_at, f.c.incarnation_id, f.c.printer_model,
                f.c.parameters, f.c.actual_filament_mm, f.c.resends)
# finished_at alone, so that ix_fabrications_design_finished_at serves the order and the limit
_FABRICATIONS = _latest(f, _FAB_COLUMNS, FABRICATIONS_LISTED, f.c.finished_at)
_RATINGS = _latest(rt, (rt.c.rater, rt.c.role, rt.c.stars, rt.c.criteria, rt.c.comment, rt.c.at), RATINGS_LISTED,
                   rt.c.at, rt.c.id)
_LEDGER = _latest(lg, (lg.c.order_id, lg.c.recipient, lg.c.share, lg.c.currency, lg.c.minor_units,
                       lg.c.equation_version, lg.c.explanation), LEDGER_LISTED, lg.c.at, lg.c.id)
_PRINT_STATS = (sa.select(ps.c.printer_model, ps.c.material, ps.c.prints, ps.c.successes, ps.c.time_error_sum,
                          ps.c.filament_error_sum, ps.c.measured)
                .where(ps.c.design == _design()).order_by(ps.c.printer_model, ps.c.material))
_PRINT_SETTINGS = (sa.select(pset.c.printer_model, pset.c.material, pset.c.settings, pset.c.successes)
                   .where(pset.c.design == _design()))
_VOTES = sa.select(rv.c.criterion, rv.c.total, rv.c.count).where(rv.c.design == _design()).order_by(rv.c.criterion)
_CUSTOM = o.c.parameters != "{}"
_ORDERS_BY_CUSTOMER = (sa.select(o.c.customer, _CUSTOM, sa.func.count()).where(o.c.design == _design())
                       .group_by(o.c.customer, _CUSTOM).order_by(o.c.customer))
_RUNG = sa.select(pa.c.rung).where(pa.c.design == _design())
_EQUATION = sa.select(ve.c.version, ve.c.equation).where(ve.c.design == _design()).order_by(ve.c.version.desc()).limit(1)


def _history_queries() -> tuple[sa.Select[Any], ...]:
    accepted = sa.select(p.c.revision_id).where(p.c.design == _design(), p.c.state == ProposalState.ACCEPTED.value)
    authored = (sa.select(r.c.author, sa.func.count()).where(
        r.c.design == _design(), sa.or_(r.c.kind != RevisionKind.PROPOSAL.value, r.c.id.in_(accepted)))
        .group_by(r.c.author).order_by(r.c.author))
    merged = (sa.select(p.c.author, sa.func.count())
              .where(p.c.design == _design(), p.c.state == ProposalState.ACCEPTED.value)
              .group_by(p.c.author).order_by(p.c.author))
    reviewers = (sa.select(p.c.decided_by).where(p.c.design == _design(), p.c.decided_by != "").distinct()
                 .order_by(p.c.decided_by))
    # Edges that cross the design's border, found by their ends' ids against the design's own (an
    # index-only set), so that only those few edges look up the revision at the other end.
    ours = sa.select(r.c.id).where(r.c.design == _design())
    up = r.alias("up")
    upstream = (sa.select(r.c.id, up.c.design, rp.c.parent_id).join(rp, rp.c.revision_id == r.c.id)
                .join(up, up.c.id == rp.c.parent_id).where(r.c.design == _design(), rp.c.parent_id.not_in(ours))
                .order_by(r.c.seq, rp.c.position))
    forks = (sa.select(r.c.design, r.c.id, rp.c.parent_id).join(rp, rp.c.revision_id == r.c.id)
             .where(rp.c.parent_id.in_(ours), rp.c.revision_id.not_in(ours), r.c.kind == RevisionKind.FORK.value)
             .order_by(r.c.design, r.c.seq, rp.c.position))
    return authored, merged, reviewers, upstream, forks


_AUTHORED, _MERGED, _REVIEWERS, _UPSTREAM, _FORKS = _history_queries()


def _fabrication(x: Sequence[Any]) -> Fabrication:
    return Fabrication(x[0], x[1] or "", x[2], x[3], x[4], x[5], _json_map(x[6]), x[7], x[8], x[9], x[10], x[11],
                       x[12], x[13], x[14], x[15], _json_map(x[16]), x[17], x[18])


def _history(conn: sa.Connection, at: dict[str, str]) -> HistoryRows:
    return HistoryRows(
        authored=tuple((str(a), int(n)) for a, n in conn.execute(_AUTHORED, at)),
        merged=tuple((str(a), int(n)) for a, n in conn.execute(_MERGED, at)),
        reviewers=tuple(str(x) for x in conn.scalars(_REVIEWERS, at)),
        upstream=tuple((str(a), str(b), str(c)) for a, b, c in conn.execute(_UPSTREAM, at)),
        forks=tuple((str(a), str(b), str(c)) for a, b, c in conn.execute(_FORKS, at)),
    )


def _votes(conn: sa.Connection, at: dict[str, str]) -> VoteTotals:
    sums = {str(c): (int(t), int(n)) for c, t, n in conn.execute(_VOTES, at) if n}
    count_stars = sums.pop(STARS, (0, 0))
    return VoteTotals(count_stars[1], count_stars[0], tuple((c, t, n) for c, (t, n) in sorted(sums.items())))


def _aggregates(conn: sa.Connection, at: dict[str, str]) -> tuple[AggregateRow, ...]:
    """Per (printer model, material): prints, successes, summed relative estimate errors, common settings."""
    common: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for model, material, text, n in conn.execute(_PRINT_SETTINGS, at):
        if n:
            common.setdefault((model, material), []).append((text, int(n)))
    return tuple(
        AggregateRow(model, material, int(n), int(ok), float(te), float(ge), int(meas),
                     tuple(sorted(common.get((model, material), []), key=lambda c: (-c[1], c[0]))[:TYPICAL_SETTINGS]))
        for model, material, n, ok, te, ge, meas in conn.execute(_PRINT_STATS, at) if n
    )


class RecordStore:
    """One connector for the record tables (written by the orders and nodes of later issues)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_record(self, design: str) -> RecordRows:
        """What the community record of a design shows, read in one transaction.

        Lists are the latest FABRICATIONS_LISTED / RATINGS_LISTED / LEDGER_LISTED rows, oldest of them
        first; counts and sums cover every row.
        """
        at = {"design": design}
        with connect(self.engine) as conn:
            aggregates = _aggregates(conn, at)
            equation = conn.execute(_EQUATION, at).first()
            return RecordRows(
                history=_history(conn, at),
                fabrications=tuple(_fabrication(x) for x in reversed(conn.execute(_FABRICATIONS, at).all())),
                fabrication_count=sum(a.prints for a in aggregates), aggregates=aggregates,
                ratings=tuple(RatingRecord(x[0], x[1], x[2], _json_map(x[3]), x[4], x[5])
                              for x in reversed(conn.execute(_RATINGS, at).all())),
                votes=_votes(conn, at),
                ledger=tuple(LedgerLine(*x) for x in reversed(conn.execute(_LEDGER, at).all())),
                orders_by_customer=tuple((str(c), bool(x), int(n)) for c, x, n in conn.execute(_ORDERS_BY_CUSTOMER, at)),
                rung=conn.execute(_RUNG, at).scalar() or "",
                equation=None if equation is None else (int(equation[0]), str(equation[1])),
            )

    def _thd_fabrications(self, design: str, limit: int = FABRICATIONS_LISTED) -> list[Fabrication]:
        """The latest fabrications of a design, oldest of them first."""
        with connect(self.engine) as conn:
            rows = conn.execute(_FABRICATIONS.limit(limit), {"design": design}).all()
        return [_fabrication(x) for x in reversed(rows)]
