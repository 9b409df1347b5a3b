"""Read side of the community record: fabrications, their aggregates, ratings and the value ledger of a design.

Aggregates are computed by the database (one GROUP BY per question), so a
design with tens of thousands of fabrications answers in one round trip each;
the record lists only the latest fabrications.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from hub.domain import Fabrication, LedgerLine, RatingRecord
from hub.store import schema
from hub.store.engine import connect

__all__ = ["AggregateRow", "RecordStore"]

f, rt, lg, pa, o = schema.fabrications, schema.ratings, schema.ledger_entries, schema.participation, schema.orders
FABRICATIONS_LISTED = 200


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


class RecordStore:
    """One connector for the record tables (written by the orders and nodes of later issues)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_fabrications(self, design: str, limit: int = FABRICATIONS_LISTED) -> list[Fabrication]:
        """The latest fabrications of a design, oldest of them first."""
        # finished_at alone, so that ix_fabrications_design_finished_at serves the order and the limit
        query = sa.select(f).where(f.c.design == design).order_by(f.c.finished_at.desc()).limit(limit)
        with connect(self.engine) as conn:
            return [_fabrication(x) for x in reversed(conn.execute(query).all())]

    def _thd_fabrication_count(self, design: str) -> int:
        with connect(self.engine) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(f).where(f.c.design == design)).scalar_one())

    def _thd_fabrication_mark(self, design: str) -> tuple[int, str]:
        """(count, latest finished_at) of a design's fabrications: changes whenever one is added."""
        query = sa.select(sa.func.count(), sa.func.max(f.c.finished_at)).where(f.c.design == design)
        with connect(self.engine) as conn:
            count, latest = conn.execute(query).one()
        return int(count), str(latest or "")

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

    def _thd_ratings(self, design: str) -> list[RatingRecord]:
        query = sa.select(rt).where(rt.c.design == design).order_by(rt.c.at, rt.c.id)
        with connect(self.engine) as conn:
            return [
                RatingRecord(x.rater, x.role, x.stars, json.loads(x.criteria), x.comment, x.at)
                for x in conn.execute(query)
            ]

    def _thd_ledger(self, design: str) -> list[LedgerLine]:
        query = sa.select(lg).where(lg.c.design == design).order_by(lg.c.at, lg.c.id).limit(FABRICATIONS_LISTED)
        with connect(self.engine) as conn:
            return [
                LedgerLine(x.order_id, x.recipient, x.share, x.currency, x.minor_units, x.equation_version,
                           x.explanation)
                for x in conn.execute(query)
            ]

    def _thd_orders_by_customer(self, design: str) -> list[tuple[str, bool, int]]:
        """(customer, with own parameters, orders) of a design's orders."""
        custom = o.c.parameters != "{}"
        query = (sa.select(o.c.customer, custom, sa.func.count()).where(o.c.design == design)
                 .group_by(o.c.customer, custom).order_by(o.c.customer))
        with connect(self.engine) as conn:
            return [(str(c), bool(p), int(n)) for c, p, n in conn.execute(query)]

    def _thd_rung(self, design: str) -> str:
        with connect(self.engine) as conn:
            return conn.execute(sa.select(pa.c.rung).where(pa.c.design == design)).scalar() or ""
