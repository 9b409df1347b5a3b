"""Read side of the community record: fabrications, their aggregates, ratings and the value ledger of a design.

Aggregates are computed by the database (one GROUP BY per question), so a
design with tens of thousands of fabrications and a long history answers in a
few round trips, all in one read transaction (:meth:`RecordStore._thd_record`);
the record lists only the latest fabrications, ratings and ledger lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from hub.domain import Fabrication, LedgerLine, ProposalState, RatingRecord, RevisionKind
from hub.store import schema
from hub.store.engine import connect

__all__ = ["AggregateRow", "HistoryRows", "RecordRows", "RecordStore", "VoteTotals"]

f, rt, lg, pa, o = schema.fabrications, schema.ratings, schema.ledger_entries, schema.participation, schema.orders
r, rp, p = schema.revisions, schema.revision_parents, schema.proposals
FABRICATIONS_LISTED = 200
RATINGS_LISTED = 200
LEDGER_LISTED = 200
VOTING_ROLES = ("customer", "maker")


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
class RecordRows:
    """Everything the record reads from the database, from one transaction."""

    history: HistoryRows
    fabrications: tuple[Fabrication, ...]
    fabrication_count: int
    latest_finish: str
    ratings: tuple[RatingRecord, ...]
    votes: VoteTotals
    ledger: tuple[LedgerLine, ...]
    orders_by_customer: tuple[tuple[str, bool, int], ...]
    rung: str


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


def _fabrication(x: sa.Row[tuple[object, ...]]) -> Fabrication:
    m = x._mapping
    return Fabrication(
        job_id=m["job_id"], order_id=m["order_id"] or "", revision_id=m["revision_id"], node=m["node"],
        printer=m["printer"], material=m["material"], settings=json.loads(m["settings"]),
        estimated_seconds=m["estimated_seconds"], actual_seconds=m["actual_seconds"],
        estimated_filament_g=m["estimated_filament_g"], actual_filament_g=m["actual_filament_g"],
        outcome=m["outcome"], failure_reason=m["failure_reason"], finished_at=m["finished_at"],
        incarnation_id=m["incarnation_id"], printer_model=m["printer_model"], parameters=json.loads(m["parameters"]),
        actual_filament_mm=m["actual_filament_mm"], resends=m["resends"],
    )


def _rating(x: sa.Row[tuple[object, ...]]) -> RatingRecord:
    m = x._mapping
    return RatingRecord(m["rater"], m["role"], m["stars"], json.loads(m["criteria"]), m["comment"], m["at"])


def _ledger_line(x: sa.Row[tuple[object, ...]]) -> LedgerLine:
    m = x._mapping
    return LedgerLine(m["order_id"], m["recipient"], m["share"], m["currency"], m["minor_units"],
                      m["equation_version"], m["explanation"])


def _latest(table: sa.Table, design: str, limit: int, *order: sa.ColumnElement[object]) -> sa.Select[tuple[object, ...]]:
    """The newest ``limit`` rows of a design by ``order`` (served backwards by a (design, *order) index)."""
    return sa.select(table).where(table.c.design == design).order_by(*(c.desc() for c in order)).limit(limit)


def _history(conn: sa.Connection, design: str) -> HistoryRows:
    accepted = sa.select(p.c.revision_id).where(p.c.design == design, p.c.state == ProposalState.ACCEPTED.value)
    authored = (sa.select(r.c.author, sa.func.count()).where(
        r.c.design == design, sa.or_(r.c.kind != RevisionKind.PROPOSAL.value, r.c.id.in_(accepted)))
        .group_by(r.c.author).order_by(r.c.author))
    merged = (sa.select(p.c.author, sa.func.count()).where(p.c.design == design, p.c.state == ProposalState.ACCEPTED.value)
              .group_by(p.c.author).order_by(p.c.author))
    reviewers = sa.select(p.c.decided_by).where(p.c.design == design, p.c.decided_by != "").distinct()
    up = r.alias("up")
    upstream = (sa.select(r.c.id, up.c.design, rp.c.parent_id).join(rp, rp.c.revision_id == r.c.id)
                .join(up, up.c.id == rp.c.parent_id).where(r.c.design == design, up.c.design != design)
                .order_by(r.c.seq, rp.c.position))
    ours = sa.select(r.c.id).where(r.c.design == design)
    forks = (sa.select(r.c.design, r.c.id, rp.c.parent_id).join(rp, rp.c.revision_id == r.c.id)
             .where(rp.c.parent_id.in_(ours), r.c.kind == RevisionKind.FORK.value)
             .order_by(r.c.design, r.c.seq, rp.c.position))
    return HistoryRows(
        authored=tuple((str(a), int(n)) for a, n in conn.execute(authored)),
        merged=tuple((str(a), int(n)) for a, n in conn.execute(merged)),
        reviewers=tuple(sorted(str(x) for x in conn.scalars(reviewers))),
        upstream=tuple((str(a), str(b), str(c)) for a, b, c in conn.execute(upstream)),
        forks=tuple((str(a), str(b), str(c)) for a, b, c in conn.execute(forks)),
    )


def _criteria_pairs(conn: sa.Connection) -> sa.TableValuedAlias:
    """(key, value) of each rating's criteria object, as a table the query joins laterally."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB

        return sa.func.jsonb_each_text(sa.cast(rt.c.criteria, JSONB)).table_valued("key", "value")
    return sa.func.json_each(rt.c.criteria).table_valued("key", "value")


def _votes(conn: sa.Connection, design: str) -> VoteTotals:
    voting = sa.and_(rt.c.design == design, rt.c.role.in_(VOTING_ROLES))
    count, stars = conn.execute(sa.select(sa.func.count(), sa.func.sum(rt.c.stars)).where(voting)).one()
    pairs = _criteria_pairs(conn)
    per = (sa.select(pairs.c.key, sa.func.sum(sa.cast(pairs.c.value, sa.Integer)), sa.func.count())
           .select_from(rt).join(pairs, sa.true()).where(voting).group_by(pairs.c.key).order_by(pairs.c.key))
    return VoteTotals(int(count), int(stars or 0), tuple((str(k), int(t), int(n)) for k, t, n in conn.execute(per)))


class RecordStore:
    """One connector for the record tables (written by the orders and nodes of later issues)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_record(self, design: str) -> RecordRows:
        """What the community record of a design shows, read in one transaction.

        Lists are the latest FABRICATIONS_LISTED / RATINGS_LISTED / LEDGER_LISTED rows, oldest of them
        first; counts and sums cover every row.
        """
        with connect(self.engine) as conn:
            fabrications = conn.execute(_latest(f, design, FABRICATIONS_LISTED, f.c.finished_at)).all()
            count, latest = conn.execute(sa.select(sa.func.count(), sa.func.max(f.c.finished_at))
                                         .where(f.c.design == design)).one()
            return RecordRows(
                history=_history(conn, design),
                fabrications=tuple(_fabrication(x) for x in reversed(fabrications)),
                fabrication_count=int(count), latest_finish=str(latest or ""),
                ratings=tuple(_rating(x) for x in reversed(
                    conn.execute(_latest(rt, design, RATINGS_LISTED, rt.c.at, rt.c.id)).all())),
                votes=_votes(conn, design),
                ledger=tuple(_ledger_line(x) for x in reversed(
                    conn.execute(_latest(lg, design, LEDGER_LISTED, lg.c.at, lg.c.id)).all())),
                orders_by_customer=tuple(self._orders_by_customer(conn, design)),
                rung=conn.execute(sa.select(pa.c.rung).where(pa.c.design == design)).scalar() or "",
            )

    def _thd_fabrications(self, design: str, limit: int = FABRICATIONS_LISTED) -> list[Fabrication]:
        """The latest fabrications of a design, oldest of them first."""
        # finished_at alone, so that ix_fabrications_design_finished_at serves the order and the limit
        query = sa.select(f).where(f.c.design == design).order_by(f.c.finished_at.desc()).limit(limit)
        with connect(self.engine) as conn:
            return [_fabrication(x) for x in reversed(conn.execute(query).all())]

    def _thd_aggregates(self, design: str) -> list[AggregateRow]:
        """Per (printer model, material): prints, successes, summed relative estimate errors, common settings."""
        success = sa.case((f.c.outcome == "success", 1), else_=0)
        measured = sa.and_(f.c.outcome == "success", f.c.estimated_seconds > 0, f.c.actual_seconds > 0)
        time_err = sa.case((measured, (f.c.actual_seconds - f.c.estimated_seconds) * 1.0 / f.c.estimated_seconds),
                           else_=0.0)
        grams = sa.and_(measured, f.c.estimated_filament_g > 0)
        gram_err = sa.case((grams, (f.c.actual_filament_g - f.c.estimated_filament_g) / f.c.estimated_filament_g),
                           else_=0.0)
        counts = (sa.select(f.c.printer_model, f.c.material, sa.func.count(), sa.func.sum(success),
                            sa.func.sum(time_err), sa.func.sum(gram_err), sa.func.sum(sa.case((measured, 1), else_=0)))
                  .where(f.c.design == design).group_by(f.c.printer_model, f.c.material))
        settings = (sa.select(f.c.printer_model, f.c.material, f.c.settings, sa.func.count())
                    .where(f.c.design == design, f.c.outcome == "success")
                    .group_by(f.c.printer_model, f.c.material, f.c.settings))
        with connect(self.engine) as conn:
            common: dict[tuple[str, str], list[tuple[str, int]]] = {}
            for model, material, text, n in conn.execute(settings):
                common.setdefault((model, material), []).append((text, int(n)))
            return [
                AggregateRow(model, material, int(n), int(ok or 0), float(te or 0), float(ge or 0), int(meas or 0),
                             tuple(sorted(common.get((model, material), []), key=lambda c: (-c[1], c[0]))[:5]))
                for model, material, n, ok, te, ge, meas in conn.execute(counts)
            ]

    @staticmethod
    def _orders_by_customer(conn: sa.Connection, design: str) -> list[tuple[str, bool, int]]:
        custom = o.c.parameters != "{}"
        query = (sa.select(o.c.customer, custom, sa.func.count()).where(o.c.design == design)
                 .group_by(o.c.customer, custom).order_by(o.c.customer))
        return [(str(c), bool(x), int(n)) for c, x, n in conn.execute(query)]
