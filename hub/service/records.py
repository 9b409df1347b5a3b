"""The community record of a design and its exports (PROV-JSON, OKH)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from hub import exports, ledger
from hub import ratings as ratings_rules
from hub.domain import (
    Attribution,
    Fabrication,
    LedgerLine,
    RatingRecord,
    Revision,
)
from hub.errors import InvalidArgument
from hub.service.designs import check_slug
from hub.store.designs import DesignStore
from hub.store.orders import OrderStore
from hub.store.records import AggregateRow, HistoryRows, RecordStore

__all__ = ["CommunityRecord", "Contributor", "LineageEdge", "PrintAggregate", "RecordExtras", "RecordService",
           "summarize"]

MAX_LINEAGE = 10_000
DEFAULT_RUNG = "co-create"


@dataclass(frozen=True, slots=True)
class Contributor:
    name: str
    revisions: int
    accepted_proposals: int
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineageEdge:
    child_design: str
    child_revision_id: str
    parent_design: str
    parent_revision_id: str


@dataclass(frozen=True, slots=True)
class PrintAggregate:
    """How a design prints on one printer model in one material."""

    printer_model: str
    material: str
    prints: int
    successes: int
    success_rate: float
    mean_time_error: float
    mean_filament_error: float
    typical_settings: dict[str, str]
    summary: str


@dataclass(frozen=True, slots=True)
class RecordExtras:
    """What issue 8 adds to the record: aggregates, reputation, the ladder rung and the value equation."""

    aggregates: tuple[PrintAggregate, ...]
    reputation: ratings_rules.Reputation
    participation: str
    equation: ledger.ValueEquation
    fabrication_count: int
    ladder: tuple[tuple[str, str, int], ...] = ()  # (name, rung, contributions)


def summarize(row: AggregateRow) -> PrintAggregate:
    """Aggregate counts → "prints well on a Prusa MK3S in PETG at 0.2 mm, 94 % of 37 prints succeeded"."""
    rate = row.successes / row.prints if row.prints else 0.0
    settings: dict[str, str] = json.loads(row.settings[0][0]) if row.settings else {}
    model = row.printer_model or "an unnamed printer"
    verdict = "prints well" if rate >= 0.8 else "prints with trouble" if rate >= 0.5 else "often fails"
    layer = settings.get("layer_height_mm")
    at = f" at {layer} mm" if layer else ""
    summary = f"{verdict} on {model} in {row.material}{at}, {rate * 100:.0f} % of {row.prints} prints succeeded"
    return PrintAggregate(row.printer_model, row.material, row.prints, row.successes, round(rate, 4),
                          round(row.time_error_sum / row.measured, 4) if row.measured else 0.0,
                          round(row.filament_error_sum / row.measured, 4) if row.measured else 0.0,
                          {str(k): str(v) for k, v in settings.items()}, summary)


@dataclass(frozen=True, slots=True)
class CommunityRecord:
    design: str
    license: str
    revision_count: int
    contributors: tuple[Contributor, ...]
    lineage: tuple[LineageEdge, ...]
    fabrications: tuple[Fabrication, ...]
    ratings: tuple[RatingRecord, ...]
    ledger: tuple[LedgerLine, ...]
    attributions: tuple[Attribution, ...]
    extras: RecordExtras | None = None


class RecordService:
    def __init__(self, designs: DesignStore, records: RecordStore, orders: OrderStore | None = None) -> None:
        self.designs, self.records, self.orders = designs, records, orders

    async def get_record(self, slug: str) -> CommunityRecord:
        """Raises: NotFound, InvalidArgument."""
        return await asyncio.to_thread(self._thd_record, check_slug(slug))

    def _thd_record(self, slug: str) -> CommunityRecord:
        design = self.designs._thd_get_design(slug)
        rows = self.records._thd_record(slug)
        stored = rows.equation if self.orders is not None else None
        history = rows.history
        votes = rows.votes
        extras = RecordExtras(
            aggregates=tuple(summarize(row) for row in rows.aggregates),
            reputation=ratings_rules.reputation_of_totals(votes.count, votes.stars, votes.criteria),
            participation=rows.rung or DEFAULT_RUNG,
            equation=ledger.DEFAULT_EQUATION if stored is None else ledger.parse_equation(stored[1]),
            fabrication_count=rows.fabrication_count,
            ladder=_ladder(rows.orders_by_customer, history.merged),
        )
        return CommunityRecord(
            design=slug, license=design.license, revision_count=design.revision_count,
            contributors=_contributors(history, design.maintainers), lineage=_lineage_edges(slug, history),
            fabrications=rows.fabrications, ratings=rows.ratings, ledger=rows.ledger,
            attributions=design.attributions, extras=extras,
        )

    async def export(self, slug: str, revision_id: str, fmt: str) -> tuple[str, bytes]:
        """(media type, document) of a design's PROV-JSON lineage or OKH manifest.

        Raises:
            NotFound: no such design or revision.
            InvalidArgument: unknown format.
        """
        design = await asyncio.to_thread(self.designs._thd_get_design, check_slug(slug))
        revision = await asyncio.to_thread(self.designs._thd_get_revision, slug, revision_id)
        if fmt == "okh":
            return exports.OKH_MEDIA_TYPE, exports.okh_manifest(design, revision)
        if fmt == "prov":
            lineage = await self._lineage(slug, revision)
            return exports.PROV_MEDIA_TYPE, exports.prov_json(lineage)
        raise InvalidArgument(f"unknown export format {fmt!r}: use prov or okh")

    async def _lineage(self, slug: str, start: Revision) -> exports.Lineage:
        seen = {rev.id: rev for rev in await asyncio.to_thread(self.designs._thd_lineage, start.id, MAX_LINEAGE)}
        # Only the lineage's accepted proposals (their merge time and reviewer), not every proposal of its designs.
        proposals = await asyncio.to_thread(self.designs._thd_accepted_proposals, seen)
        ordered = sorted(seen.values(), key=lambda r: (r.created_at, r.id))
        fabrications = await asyncio.to_thread(self.records._thd_fabrications, slug)
        return exports.Lineage(slug, ordered, proposals, fabrications)


@dataclass
class _Tally:
    revisions: int = 0
    accepted: int = 0
    roles: set[str] = field(default_factory=set)


def _contributors(history: HistoryRows, maintainers: tuple[str, ...]) -> tuple[Contributor, ...]:
    """Authors of revisions in the commons, authors of merged proposals, reviewers and maintainers, by name."""
    tally: dict[str, _Tally] = {}
    for name, revisions in history.authored:
        entry = tally.setdefault(name, _Tally())
        entry.revisions += revisions
        entry.roles.add("author")
    for name, accepted in history.merged:
        tally.setdefault(name, _Tally()).accepted += accepted
    for name in history.reviewers:
        tally.setdefault(name, _Tally()).roles.add("reviewer")
    for name in maintainers:
        tally.setdefault(name, _Tally()).roles.add("maintainer")
    return tuple(Contributor(n, t.revisions, t.accepted, tuple(sorted(t.roles))) for n, t in sorted(tally.items()))


def _lineage_edges(slug: str, history: HistoryRows) -> tuple[LineageEdge, ...]:
    """Parents of this design's revisions in other designs, then other designs' forks of it."""
    edges = [LineageEdge(slug, rev, parent_design, parent) for rev, parent_design, parent in history.upstream]
    edges += [LineageEdge(child, child_rev, slug, parent) for child, child_rev, parent in history.forks]
    return tuple(edges)


def _ladder(orders_by_customer: tuple[tuple[str, bool, int], ...],
            merged: tuple[tuple[str, int], ...]) -> tuple[tuple[str, str, int], ...]:
    """(name, rung, contributions): customers consume or co-design, authors of merged proposals co-create."""
    steps = [(name, "co-design" if custom else "consume", n) for name, custom, n in orders_by_customer]
    steps += [(name, "co-create", n) for name, n in sorted(merged)]
    return tuple(steps)
