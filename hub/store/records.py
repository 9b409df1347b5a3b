"""Read side of the community record: fabrications, ratings and the value ledger of a design."""

from __future__ import annotations

import json

import sqlalchemy as sa

from hub.domain import Fabrication, LedgerLine, RatingRecord
from hub.store import schema
from hub.store.engine import connect

__all__ = ["RecordStore"]

f, rt, lg = schema.fabrications, schema.ratings, schema.ledger_entries


class RecordStore:
    """One connector for the record tables (written by the orders and nodes of later issues)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _thd_fabrications(self, design: str) -> list[Fabrication]:
        query = sa.select(f).where(f.c.design == design).order_by(f.c.finished_at, f.c.job_id)
        with connect(self.engine) as conn:
            return [
                Fabrication(
                    job_id=x.job_id, order_id=x.order_id, revision_id=x.revision_id, node=x.node,
                    printer=x.printer, material=x.material, settings=json.loads(x.settings),
                    estimated_seconds=x.estimated_seconds, actual_seconds=x.actual_seconds,
                    estimated_filament_g=x.estimated_filament_g, actual_filament_g=x.actual_filament_g,
                    outcome=x.outcome, failure_reason=x.failure_reason, finished_at=x.finished_at,
                )
                for x in conn.execute(query)
            ]

    def _thd_ratings(self, design: str) -> list[RatingRecord]:
        query = sa.select(rt).where(rt.c.design == design).order_by(rt.c.at, rt.c.id)
        with connect(self.engine) as conn:
            return [
                RatingRecord(x.rater, x.role, x.stars, json.loads(x.criteria), x.comment, x.at)
                for x in conn.execute(query)
            ]

    def _thd_ledger(self, design: str) -> list[LedgerLine]:
        query = sa.select(lg).where(lg.c.design == design).order_by(lg.c.at, lg.c.id)
        with connect(self.engine) as conn:
            return [
                LedgerLine(x.order_id, x.recipient, x.share, x.currency, x.minor_units, x.equation_version)
                for x in conn.execute(query)
            ]
