"""Customers' orders: quote, place, follow, cancel and rate; the order's state follows its jobs.

Quotes come from the best printers that qualify now: the database matches and
orders them by price (OrderStore._candidate_rows), the build volume and exact
distance are checked here (hub.scheduler), each priced at its node's published
rates with a real slice on the hub, corrected by the node's measured history.
Placing an order writes it with one object and one job per (manifest part, copy)
in one transaction, each job claiming the first candidate printer still free
(JobService._claim_writer); a listener on job changes moves the order, settles
paid orders into the value ledger once, and wakes WatchOrder streams.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import hashlib
import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from hub import geo, ledger, licenses, orders, quotes
from hub import ratings as ratings_rules
from hub.domain import Account, Attribution, Design, Revision, Role
from hub.errors import (
    FailedPrecondition,
    HubError,
    InvalidArgument,
    LicenseConflict,
    NotFound,
    PermissionDenied,
)
from hub.jobs import Job, JobSpec, JobState
from hub.limits import check_page_size, check_page_token, check_plain_text
from hub.manifest import MESH_SUFFIXES, Manifest, parse_manifest
from hub.scheduler import PrinterRecord, qualifies
from hub.service.batching import GroupCommit
from hub.service.common import Clock, format_time
from hub.service.designs import check_slug
from hub.service.grants import GrantService, LicenceGate
from hub.service.order_values import (
    attribution_dict,
    attributions,
    decode_token,
    encode_token,
    option_from_json,
    option_json,
)
from hub.service.quoting import MeshPlan, SliceEstimator, check_parameters
from hub.store.designs import DesignStore
from hub.store.jobs import JobWriter
from hub.store.orders import (
    Basis,
    Build,
    Match,
    Matching,
    MatchQuery,
    OrderStore,
    Placement,
    PlaceResult,
)

__all__ = ["JobPort", "NodePort", "OrderRequest", "OrderService", "OrderView", "QuoteResult", "qr_payload"]

log = logging.getLogger("hub.orders")
MATERIALS = ("PLA", "PETG", "ABS", "ASA", "TPU", "PA", "PC", "HIPS", "PVA", "PLA-CF", "PETG-CF")
MAX_PARAMETERS, MAX_PARAM_NAME, MAX_PARAM_VALUE = 64, 64, 1024
MAX_KM = 20_000.0
QUOTE_TTL_S = 15 * 60
MAX_KEY, MAX_REASON = 64, 1024
QR_PREFIX = "SPIME:"
QUOTE_OPTIONS = 20     # the best candidates a quote shows and a rule chooses among
MAX_CANDIDATES = 200   # printers an order's jobs may be offered to, best first
RULE_SPARE = 8         # candidates beyond one per object an order by a rule keeps for lost races
MAX_OBJECTS = 500      # objects (parts x copies) of one order
REVISION_CACHE = 4096  # revisions (immutable per id) kept with their manifests
PLACE_BATCH = 32       # orders written in one transaction at most
RUNGS = ("consume", "co-design", "co-create")
_B32 = "abcdefghijklmnopqrstuvwxyz234567"


class JobPort(Protocol):
    """What the order service needs of HUBNODES' JobService."""

    def _thd_create_job(self, spec: JobSpec, created_by: str) -> Job: ...
    def _claim_writer(self, wanted: Sequence[tuple[str, JobSpec, Sequence[tuple[str, str]]]], created_by: str
                      ) -> JobWriter: ...
    def _claimed(self, made: Sequence[Job]) -> None: ...
    def new_job_id(self) -> str: ...
    def _thd_jobs_of_order(self, order_id: str) -> list[Job]: ...
    def _thd_jobs_of_orders(self, order_ids: Sequence[str]) -> dict[str, list[Job]]: ...
    def _thd_cancel_job(self, job_id: str, reason: str) -> Job: ...
    def add_listener(self, fn: Callable[[Job], None]) -> None: ...


class NodePort(Protocol):
    def _thd_printers(self) -> list[PrinterRecord]: ...


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a customer asks for (OrderSpec)."""

    design: str
    revision_id: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    material: str = ""
    color: str = ""
    quantity: int = 1
    near: str = ""
    paid: bool = False
    max_km: float = 0.0

    def canonical(self) -> str:
        return json.dumps({"design": self.design, "revision_id": self.revision_id, "parameters": dict(self.parameters),
                           "material": self.material, "color": self.color, "quantity": self.quantity,
                           "near": self.near, "paid": self.paid, "max_km": self.max_km}, sort_keys=True)


@dataclass(frozen=True, slots=True)
class QuoteResult:
    id: str
    revision_id: str
    options: tuple[quotes.QuoteOption, ...]
    refusal: str
    expires_at: str
    attributions: tuple[Attribution, ...]
    cached: bool


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order with its jobs, as shown to a person."""

    order: orders.Order
    jobs: tuple[Job, ...]
    progress_percent: float
    layer: int


def check_request(req: OrderRequest) -> OrderRequest:
    """Validate every field before anything is looked up: the request with its material and place normalised.

    Raises:
        InvalidArgument: names the field and what is allowed.
    """
    check_slug(req.design)
    if req.revision_id and not all(c in "0123456789abcdef" for c in req.revision_id) or len(req.revision_id) > 64:
        raise InvalidArgument(f"revision_id {req.revision_id!r:.80} is not a revision id (64 hex digits)")
    if not 1 <= req.quantity <= quotes.MAX_QUANTITY:
        raise InvalidArgument(f"quantity must be 1 to {quotes.MAX_QUANTITY}, got {req.quantity}")
    material = req.material.upper()
    if material not in MATERIALS:
        raise InvalidArgument(f"unknown material {req.material!r:.40}: use one of {', '.join(MATERIALS)}")
    if len(req.parameters) > MAX_PARAMETERS:
        raise InvalidArgument(f"at most {MAX_PARAMETERS} parameters")
    for name, value in req.parameters.items():
        check_plain_text(name, "parameter name", MAX_PARAM_NAME, field="spec.parameters")
        check_plain_text(value, f"parameter {name}", MAX_PARAM_VALUE, field=f"spec.parameters[{name}]")
    if req.color:
        # Orders and jobs keep no colour and no printer is matched by the colour it has loaded: taking
        # one would promise what the hub cannot keep.
        raise InvalidArgument("color: choosing a colour is not offered yet; order without a colour and agree "
                              "it with the maker", reason="COLOR_NOT_OFFERED", field="spec.color")
    near = geo.parse_near(req.near).text if req.near else ""
    if not (0.0 <= req.max_km <= MAX_KM):  # also refuses NaN
        raise InvalidArgument(f"max_km must be 0 (no limit) to {MAX_KM:g}, got {req.max_km}")
    if req.max_km and not req.near:
        raise InvalidArgument("max_km needs near=LAT,LON")
    return replace(req, material=material, near=near)


def _incarnation_id() -> str:
    return "".join(_B32[b % 32] for b in secrets.token_bytes(12))


def qr_payload(incarnation_id: str) -> str:
    """The short text of a QR label; GetIncarnation resolves it."""
    return f"{QR_PREFIX}{incarnation_id.upper()}"


def _order_id(now: dt.datetime) -> str:
    return f"o{int(now.timestamp() * 1000):012x}{secrets.token_hex(4)}"


def _objects(manifest: Manifest, changed: Mapping[str, str], quantity: int) -> list[str]:
    """The part of each object of an order, in order: every printable part (one with a mesh) as often
    as the manifest counts it, per copy; a design rendered with changed parameters is one object.

    Raises:
        InvalidArgument: more than MAX_OBJECTS objects.
    """
    if changed and manifest.openscad is not None:
        parts = [""]
    else:
        parts = [p.name for p in manifest.parts for _ in range(p.quantity)
                 if any(f.lower().endswith(MESH_SUFFIXES) for f in p.files)] or [""]
    if len(parts) * quantity > MAX_OBJECTS:
        raise InvalidArgument(f"{quantity} x {len(parts)} parts make {len(parts) * quantity} objects; "
                              f"an order makes at most {MAX_OBJECTS}")
    return parts * quantity


@functools.lru_cache(maxsize=1024)
def _fabrication(license: str, paid: bool, modified: bool) -> licenses.Decision:
    """The licence's own answer for an order (pure: kept per expression); a refusal goes to the grants."""
    return licenses.may_fabricate(license, paid, modified)


@functools.lru_cache(maxsize=256)
def _notices(license: str) -> tuple[str, ...]:
    """What a licence obliges an order to carry (the quote passed the licence gate with the same spec)."""
    return tuple(licenses.may_fabricate(license, False, False).obligations)


def _no_jobs(conn: object) -> list[Job]:
    return []


@dataclass(frozen=True, slots=True)
class _Basis:
    """What a quote rests on before matching."""

    req: OrderRequest
    design: Design
    revision: Revision
    manifest: Manifest
    changed: Mapping[str, str]
    gate: LicenceGate


@dataclass(frozen=True, slots=True)
class _Match:
    options: list[quotes.QuoteOption]  # best first by rule
    refusal: str
    cached: bool
    rule: str


@dataclass(frozen=True, slots=True)
class _Placing:
    """An order about to be placed: its request, what it makes, the chosen option, and the printers
    its jobs may be offered to, best first (the chosen one first)."""

    req: OrderRequest
    design: Design
    revision: Revision
    manifest: Manifest
    changed: Mapping[str, str]
    quote_id: str
    chosen: quotes.QuoteOption
    prefer: tuple[tuple[str, str], ...]
    new_quote: orders.StoredQuote | None


# per slicer profile: (a copy's estimate, every slice came from the cache, the first slice's settings,
# {manifest part: the estimate of one object of it})
_Sliced = tuple[quotes.Estimate, bool, object, Mapping[str, quotes.Estimate]]


class OrderService:
    """Quote, place, show, watch, cancel and rate orders."""

    def __init__(self, designs: DesignStore, store: OrderStore, grants: GrantService, estimator: SliceEstimator,
                 clock: Clock, jobs: JobPort | None = None, nodes: NodePort | None = None) -> None:
        self.designs, self.store, self.grants, self.estimator, self.clock = designs, store, grants, estimator, clock
        self.jobs, self.nodes = jobs, nodes
        # orders placed at the same time share one write transaction (SQLite has one writer anyway)
        self._writer: GroupCommit[Build, PlaceResult] = GroupCommit(store._thd_place_many, max_batch=PLACE_BATCH)
        self._revisions: OrderedDict[str, tuple[Revision, Manifest, str | None]] = OrderedDict()
        self._credits: OrderedDict[tuple[object, ...], tuple[Attribution, ...]] = OrderedDict()
        self._watchers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()
        if jobs is not None:
            jobs.add_listener(self._on_job)

    # -- quotes ------------------------------------------------------------------------------

    async def quote(self, caller: Account, request: OrderRequest) -> QuoteResult:
        """Quotes from the best printers that can make it now (at most QUOTE_OPTIONS), cheapest first.

        Raises:
            InvalidArgument: a malformed field, an unknown material, a parameter out of range.
            NotFound: no such design or revision.
            LicenseConflict: the licence refuses this order and no grant is on record.
            FailedPrecondition: the design has no printable mesh or the mesh has printability errors.
        """
        prepared = await asyncio.to_thread(self._thd_prepare, check_request(request))
        assert not isinstance(prepared, str)  # no idempotency key given
        basis, profiles = prepared
        mesh, slices = await self._slices(basis, profiles)
        match = await asyncio.to_thread(self._thd_match, basis, mesh, slices, QUOTE_OPTIONS, "cheapest")
        result, row = self._quote_result(caller, basis, match)
        await asyncio.to_thread(self.store._thd_save_quote, row)
        return result

    def _quote_result(self, caller: Account, basis: _Basis, match: _Match) -> tuple[QuoteResult, orders.StoredQuote]:
        now = self.clock()
        shown = tuple(match.options if match.rule == "cheapest" else quotes.rank(match.options, "cheapest"))
        result = QuoteResult(secrets.token_hex(8), basis.revision.id, shown, "" if shown else match.refusal,
                             format_time(now + dt.timedelta(seconds=QUOTE_TTL_S)),
                             self._attributions(basis.design, basis.revision, basis.manifest, basis.gate.notices), match.cached)
        return result, orders.StoredQuote(
            result.id, caller.name, basis.design.slug, basis.revision.id, basis.req.canonical(),
            json.dumps([option_json(o) for o in shown]), format_time(now), result.expires_at)

    def _thd_prepare(self, req: OrderRequest, customer: str = "", key: str = "", sha: str = ""
                     ) -> tuple[_Basis, list[str]] | str:
        """The basis of a quote and the slicer profiles of the printers that could make it, or the
        order an idempotency key (of ``customer``) already names: its id.

        Raises:
            AlreadyExists: the key names an order placed with a different request.
            NotFound, InvalidArgument, FailedPrecondition, LicenseConflict: as for quote.
        """
        box = _box(req)
        read = self._thd_read(req.design, req.revision_id, req.material, box, customer, key, sha)
        if isinstance(read, str):
            return read
        design, revision, manifest, scad, rows = read
        basis = self._basis(req, design, revision, manifest, scad, rows.rung)
        if basis.gate.nodes is None:
            return basis, rows.profiles
        return basis, self.store._thd_profiles(req.material, box, basis.gate.nodes)

    def _basis(self, req: OrderRequest, design: Design, revision: Revision, manifest: Manifest, scad: str | None,
               rung: str | None) -> _Basis:
        """Everything a quote rests on before matching: the parameters and the licence checked.

        Raises:
            InvalidArgument, FailedPrecondition, LicenseConflict: as for quote.
        """
        changed = check_parameters(manifest, scad, req.parameters)
        _objects(manifest, changed, req.quantity)  # at most MAX_OBJECTS, before anything is sliced
        if changed and rung == "consume":
            raise FailedPrecondition(f"{design.slug} is open to ordering only (participation rung consume): "
                                     "its maintainers do not take customers' parameters")
        gate = self._thd_licence(design, revision.id, req.paid, bool(changed))
        return _Basis(req, design, revision, manifest, changed, gate)

    def _thd_licence(self, design: Design, revision_id: str, paid: bool, modified: bool) -> LicenceGate:
        """The licence's answer for an order now, with the grants in force now (not revoked, not ended).

        Raises:
            LicenseConflict: the licence refuses it and no grant in force allows it.
        """
        decision = _fabrication(design.license, paid, modified)
        if decision.allowed:
            return LicenceGate(decision.rule, None, decision.obligations)
        return self.grants._thd_gate(design, revision_id, paid, modified)

    def _thd_read(self, slug: str, revision_id: str, material: str = "", box: quotes.Box | None = None,
                  customer: str = "", key: str = "", sha: str = ""
                  ) -> tuple[Design, Revision, Manifest, str | None, Basis] | str:
        """Design (read fresh: it changes), revision and manifest (cached: immutable per id; the
        printability reports are read fresh) and the OpenSCAD source, in one read transaction, or
        the order the idempotency key already names (its id).

        Raises:
            AlreadyExists, NotFound, InvalidArgument: see OrderStore._thd_basis.
        """
        seen: dict[str, tuple[Revision, Manifest, str | None]] = {}

        def known(wanted: str) -> bool:
            with self._lock:
                entry = self._revisions.get(wanted)
            if entry is not None and entry[0].design == slug:
                seen[wanted] = entry
            return wanted in seen

        rows = self.store._thd_basis(slug, revision_id, known, material, box, customer, key, sha)
        if isinstance(rows, str):
            return rows
        if rows.revision is None:
            revision, manifest, scad = seen[rows.revision_id]
            return rows.design, replace(revision, reports=rows.reports), manifest, scad, rows
        revision = rows.revision
        manifest = parse_manifest(revision.manifest_toml)
        scad = self._scad_source(revision, manifest.openscad.source if manifest.openscad else "")
        with self._lock:
            self._revisions[revision.id] = (revision, manifest, scad)
            while len(self._revisions) > REVISION_CACHE:
                self._revisions.popitem(last=False)
        return rows.design, revision, manifest, scad, rows

    def _thd_revision(self, slug: str, revision_id: str) -> tuple[Design, Revision, Manifest, str | None]:
        """(design, revision with its current reports, its manifest, its OpenSCAD source).

        Raises:
            NotFound, InvalidArgument: see OrderStore._thd_basis.
        """
        read = self._thd_read(slug, revision_id)
        assert not isinstance(read, str)  # no key given
        return read[:4]

    def _attributions(self, design: Design, revision: Revision, manifest: Manifest, notices: Sequence[str]
                      ) -> tuple[Attribution, ...]:
        """The attribution bundle of an order, kept per (revision, design lineage, notices): all immutable values."""
        key = (revision.id, design.slug, design.attributions, tuple(notices))
        with self._lock:
            found = self._credits.get(key)
        if found is None:
            found = attributions(design, revision, notices, manifest)
            with self._lock:
                self._credits[key] = found
                while len(self._credits) > REVISION_CACHE:
                    self._credits.popitem(last=False)
        return found

    def _scad_source(self, revision: Revision, source: str) -> str | None:
        entry = next((f for f in revision.files if f.path == source), None) if source else None
        if entry is None:
            return None
        return self.estimator.blob_path(entry.sha256).read_text(encoding="utf-8", errors="replace")

    async def _slices(self, basis: _Basis, profiles: Sequence[str]) -> tuple[MeshPlan, dict[str, _Sliced]]:
        """The meshes of one copy and, per profile, the copy's estimate: each distinct mesh sliced on its own
        (the slice cache makes a repeat cheap) times how many objects of it a copy makes, summed."""
        plan = await self.estimator.plan(basis.revision, basis.manifest, basis.changed,
                                         {r.path: r.report for r in basis.revision.reports})
        try:
            return plan, {p: await self._copy_estimate(plan, p) for p in profiles}
        finally:
            self.estimator.release(plan)  # matching reads the plan's sizes, not its files

    async def _copy_estimate(self, plan: MeshPlan, profile: str) -> _Sliced:
        """(one copy's estimate with a profile, every slice came from the cache, the first slice's settings,
        the estimate of one object of each manifest part)."""
        sliced = [(await self.estimator.estimate(mesh, profile), mesh) for mesh in plan.meshes]
        return (quotes.per_copy([(estimate, mesh.count) for (estimate, _, _), mesh in sliced]),
                all(cached for (_, cached, _), _ in sliced), sliced[0][0][2],
                {part: estimate for (estimate, _, _), mesh in sliced for part in mesh.parts})

    def _thd_match(self, basis: _Basis, mesh: MeshPlan, slices: Mapping[str, _Sliced],
                   limit: int, rule: str, match: Match | None = None) -> _Match:
        """The best `limit` printers by `rule` that can make it now, priced, or why there are none;
        ``match`` reads the printers (default: in a read transaction of its own)."""
        options = self._thd_options(basis, mesh, slices, limit, rule, match or self.store._thd_matching)
        refusal = "" if options else self._thd_refusal(mesh, basis.req, basis.gate.nodes)
        return _Match(options, refusal, bool(slices) and all(s[1] for s in slices.values()), rule)

    def _thd_options(self, basis: _Basis, mesh: MeshPlan, slices: Mapping[str, _Sliced],
                     limit: int, rule: str, match: Match) -> list[quotes.QuoteOption]:
        """The database matches and orders the printers; the build volume, the exact distance and the
        history corrections follow on what it returns (one read transaction)."""
        return self._priced(basis, slices, match(_match_query(basis, mesh, slices, limit, rule)), rule)

    def _priced(self, basis: _Basis, slices: Mapping[str, _Sliced], found: Matching,
                rule: str) -> list[quotes.QuoteOption]:
        """The matched printers as quote options, each priced with its node's history correction, by ``rule``."""
        req = basis.req
        near = geo.parse_near(req.near) if req.near else None
        now = format_time(self.clock())
        # every object the order makes is charged: a copy's estimate holds each part's own mesh as often as
        # the manifest counts the part (see _slices)
        copies = req.quantity
        out = []
        for p in found.printers:
            estimate = slices[p.slicer_profile][0]
            fix = quotes.correction([quotes.HistoryPoint(*h) for h in found.histories.get((p.node, p.model), [])])
            corrected = _corrected(estimate, fix)
            rates = quotes.Rates(p.rate_per_hour[0], p.rate_per_hour[1], p.rate_per_gram[1])
            weights = tuple((part, quotes.part_weight(_corrected(one, fix), rates))
                            for part, one in slices[p.slicer_profile][3].items())
            priced = quotes.price(corrected, copies, rates)
            if priced.total_minor > ledger.MAX_MINOR:  # its value could never be shared out
                continue
            rep = ratings_rules.reputation_of_totals(*found.votes.get(p.node, (0, 0)), ())
            out.append(quotes.QuoteOption(
                p.node, p.printer, p.model, priced,
                round(corrected.seconds * copies), round(corrected.filament_g * copies, 2),
                _distance(near, p) if near else None, rep.score, rep.count, now, fix, weights))
        return quotes.rank(out, rule)

    def _thd_refusal(self, mesh: MeshPlan, req: OrderRequest, allowed: frozenset[str] | None) -> str:
        """Why nothing qualifies, printer by printer (only read when nothing does)."""
        printers = self.nodes._thd_printers() if self.nodes is not None else []
        chosen, refusal = self._qualifying(printers, mesh, req, allowed)
        return "no printer can make it now: every printer that qualifies is busy" if chosen else refusal

    @staticmethod
    def _qualifying(printers: Sequence[PrinterRecord], mesh: MeshPlan, req: OrderRequest,
                    allowed: frozenset[str] | None) -> tuple[list[PrinterRecord], str]:
        near = geo.parse_near(req.near) if req.near else None
        chosen: list[PrinterRecord] = []
        reasons: list[str] = []
        for p in printers:
            reason = _unfit(mesh, req.material, p)
            if reason is None and allowed is not None and p.node not in allowed:
                reason = f"the licence grant does not cover node {p.node}"
            if reason is None and req.max_km and near is not None:
                km = _distance(near, p)
                if km is None or km > req.max_km:
                    reason = f"node {p.node} is {'at an unknown place' if km is None else f'{km:.0f} km away'}"
            if reason is None and (not p.rate_per_hour[0] or p.rate_per_hour[0] != p.rate_per_gram[0]):
                reason = f"printer {p.printer} of {p.node} publishes no rates in one currency"
            if reason:
                reasons.append(reason)
            else:
                chosen.append(p)
        refusal = "no printer can make it now: " + "; ".join(sorted(set(reasons))[:10]) if reasons else \
            "no printer is registered with the hub"
        return chosen, refusal

    # -- placing -----------------------------------------------------------------------------

    async def place(self, caller: Account, request: OrderRequest | None, quote_id: str, option: int,
                    best: str, key: str) -> OrderView:
        """Place an order from a stored quote's option, or by a rule over fresh quotes.

        The order, its objects (one per part and copy), its key and its jobs are written in one
        transaction; each job is offered to the first of the order's printers still free (the
        chosen one first), or stays queued for the dispatcher, pinned to the chosen node.

        Raises:
            InvalidArgument: bad fields or rule; NotFound: unknown quote, design or revision;
            FailedPrecondition: the quote expired or nothing can make it; AlreadyExists: the key
            names a different order; LicenseConflict: as for quotes.
        """
        check_plain_text(key, "idempotency_key", MAX_KEY)
        if best and best not in quotes.RANK_RULES:
            raise InvalidArgument(f"unknown rule {best!r:.40}: use {', '.join(quotes.RANK_RULES)}")
        asked = json.dumps({"quote": quote_id, "option": option, "best": best,
                            "spec": request.canonical() if request and not quote_id else ""}, sort_keys=True)
        sha = hashlib.sha256(asked.encode()).hexdigest()
        if not quote_id and request is None:
            raise InvalidArgument("give a quote_id, or a spec to quote and choose by a rule")
        if quote_id:
            if key:
                existing = await asyncio.to_thread(self._keyed_order, caller.name, key, sha)
                if existing is not None:
                    return await self.view(caller, existing)
            placing = await self._from_quote(caller, quote_id, option)
            return await asyncio.to_thread(self._thd_place, caller, placing, best, key, sha)
        assert request is not None
        # by a rule: two trips to a worker thread, around the (cached) slices
        prepared = await asyncio.to_thread(self._thd_prepare, check_request(request), caller.name, key, sha)
        if isinstance(prepared, str):
            return await self.view(caller, prepared)
        basis, profiles = prepared
        mesh, slices = await self._slices(basis, profiles)
        return await asyncio.to_thread(self._thd_place_by_rule, caller, basis, mesh, slices, best, key, sha)

    def _thd_place_by_rule(self, caller: Account, basis: _Basis, mesh: MeshPlan,
                           slices: Mapping[str, _Sliced], best: str, key: str,
                           sha: str) -> OrderView:
        """Match, choose by the rule and write. The printers are matched first in a read transaction
        of the order's own (orders placed together match in parallel); the write transaction the
        order shares with those placed at the same time then drops the printers claimed since (by
        them or anyone) and matches again only when none is left: its jobs rarely lose a race.

        Raises:
            FailedPrecondition: nothing can make it now (the refusal says why).
        """
        rule = best or "cheapest"
        limit = min(RULE_SPARE + len(_objects(basis.manifest, basis.changed, basis.req.quantity)), MAX_CANDIDATES)
        seen = self.store._thd_matching(_match_query(basis, mesh, slices, limit, rule))

        def build(match: Match) -> Placement:
            found = self._thd_match(basis, mesh, slices, limit, rule, lambda query: match(replace(query, seen=seen)))
            if not found.options:
                raise FailedPrecondition(found.refusal)
            if rule == "cheapest" and len(shown := quotes.currencies(found.options)) > 1:
                raise FailedPrecondition(
                    f"the printers that can make it charge in {', '.join(shown)}, and the hub does not compare prices "
                    "in different currencies: quote it (`spime quote`) and order the option you choose "
                    "(`spime order --quote ID --option N`), or choose by --best fastest or nearest",
                    reason="CURRENCIES_NOT_COMPARED")
            result, row = self._quote_result(caller, basis, found)
            ranked = found.options
            placing = _Placing(basis.req, basis.design, basis.revision, basis.manifest, basis.changed, result.id,
                               ranked[0], _prefer(ranked[0], ranked), row)
            return self._placement(caller, placing, best, key, sha)

        return self._thd_write(build)

    def _thd_place(self, caller: Account, placing: _Placing, best: str, key: str, sha: str) -> OrderView:
        """Write a chosen order with its objects, key and jobs in one transaction (the jobs claim printers)."""
        placement = self._placement(caller, placing, best, key, sha)
        return self._thd_write(lambda match: placement)

    def _placement(self, caller: Account, placing: _Placing, best: str, key: str, sha: str) -> Placement:
        order, wanted = self._new_order(caller, placing, best)
        create = self.jobs._claim_writer(wanted, caller.name) if self.jobs is not None else _no_jobs
        return Placement(order, key, sha, placing.new_quote, create)

    def _thd_write(self, build: Build) -> OrderView:
        """Place an order in the write transaction it shares with those placed at the same time
        (OrderStore._thd_place_many); then ring the nodes its jobs were offered to."""
        stored, made, created = self._writer._thd_call(build)
        if not created:  # a concurrent placement with the same key won
            return self._thd_view(stored.id)
        if self.jobs is not None:
            self.jobs._claimed(made)
        return OrderView(stored, tuple(made), 0.0, 0)

    def _keyed_order(self, customer: str, key: str, sha: str) -> str | None:
        return self.store._thd_key(customer, key, sha)

    async def _from_quote(self, caller: Account, quote_id: str, option: int) -> _Placing:
        check_plain_text(quote_id, "quote_id", 32)
        row = await asyncio.to_thread(self.store._thd_get_quote, quote_id)
        if row.customer != caller.name:
            raise NotFound(f"no quote {quote_id!r}: ask for a new one with `spime quote`")  # as for an unknown one
        if row.expires_at <= format_time(self.clock()):
            raise FailedPrecondition(f"quote {quote_id} expired at {row.expires_at}: ask for a new one with `spime quote`")
        options = [option_from_json(o) for o in json.loads(row.options_json)]
        if not 0 <= option < len(options):
            raise InvalidArgument(f"quote {quote_id} has options 0 to {len(options) - 1}, not {option}")
        spec = json.loads(row.spec_json)
        req = OrderRequest(**{**spec, "parameters": spec["parameters"]})
        design, revision, manifest, scad = await asyncio.to_thread(self._thd_revision, row.design, row.revision_id)
        changed = await asyncio.to_thread(check_parameters, manifest, scad, req.parameters)
        chosen = options[option]
        # The licence again, as of now: a grant the quote counted on may have been revoked or ended since.
        gate = await asyncio.to_thread(self._thd_licence, design, revision.id, req.paid, bool(changed))
        if gate.nodes is not None and chosen.node not in gate.nodes:
            raise LicenseConflict(f"{design.slug} is licensed {design.license}: no grant in force covers node "
                                  f"{chosen.node} any more; ask for a new quote with `spime quote`")
        return _Placing(req, design, revision, manifest, changed, row.id, chosen, _prefer(chosen, options), None)

    def _new_order(self, caller: Account, placing: _Placing, rule: str
                   ) -> tuple[orders.Order, list[tuple[str, JobSpec, Sequence[tuple[str, str]]]]]:
        """The order with one object per (part, copy), and the job of each object."""
        req, design, revision, chosen = placing.req, placing.design, placing.revision, placing.chosen
        now_dt = self.clock()
        now = format_time(now_dt)
        order_id = _order_id(now_dt)
        parts = _objects(placing.manifest, placing.changed, req.quantity)
        price = chosen.price
        paid_minor = price.total_minor if req.paid else 0
        wanted: list[tuple[str, JobSpec, Sequence[tuple[str, str]]]] = []
        objects = []
        # each object is paid its part's share of the price (a body more than a lid); together the price
        payouts = ledger.payouts(paid_minor, parts, dict(chosen.part_weights))
        for position, (part, payout) in enumerate(zip(parts, payouts, strict=True)):
            job_id = self.jobs.new_job_id() if self.jobs is not None else ""
            objects.append(orders.OrderObject(_incarnation_id(), position, job_id, part))
            # the chosen node's printers first, then the other candidates; none free: queued for the
            # chosen node (the licence and the distance were checked for it)
            wanted.append((job_id, JobSpec(
                design=design.slug, revision_id=revision.id, material=req.material, parameters=dict(req.parameters),
                order_id=order_id, node=chosen.node or None, paid=req.paid, payout_currency=price.currency,
                payout_minor=payout, part=part), placing.prefer))
        # the quote passed the licence gate with the same spec; this only collects the notices
        notices = _notices(design.license)
        order = orders.Order(
            id=order_id, customer=caller.name, design=design.slug, revision_id=revision.id,
            parameters=dict(req.parameters), material=req.material, quantity=req.quantity, paid=req.paid,
            currency=price.currency, price_minor=price.total_minor if req.paid else 0,
            state=orders.OrderState.PLACED, created_at=now, updated_at=now, quote_id=placing.quote_id, rule=rule,
            node=chosen.node, printer=chosen.printer, near=req.near, material_minor=price.material_minor,
            machine_minor=price.machine_minor, fees_minor=price.fees_minor,
            estimated_seconds=chosen.estimated_seconds, attributions=self._attributions(design, revision, placing.manifest, notices),
            objects=tuple(objects))
        return order, wanted if self.jobs is not None else []


    # -- reading and following ---------------------------------------------------------------

    def _thd_view(self, order_id: str) -> OrderView:
        return self._thd_view_of(self.store._thd_get_order(order_id))

    def _thd_view_of(self, order: orders.Order) -> OrderView:
        return self._thd_view_with(order, tuple(self.jobs._thd_jobs_of_order(order.id)) if self.jobs is not None else ())

    def _thd_views_of(self, found: Sequence[orders.Order]) -> list[OrderView]:
        """The views of a page of orders, their jobs read in one query."""
        jobs = self.jobs._thd_jobs_of_orders([o.id for o in found]) if self.jobs is not None else {}
        return [self._thd_view_with(o, tuple(jobs.get(o.id, ()))) for o in found]

    def _thd_view_with(self, order: orders.Order, jobs: tuple[Job, ...]) -> OrderView:
        order = self._thd_refresh(order, jobs)
        active = [j for j in jobs if j.state.value not in ("cancelled",)]
        progress = sum(100.0 if j.state.value in ("printed", "done") else j.progress_percent for j in active)
        return OrderView(order, jobs, round(progress / len(active), 1) if active else 0.0,
                         max((j.layer for j in jobs), default=0))

    def _thd_refresh(self, order: orders.Order, jobs: Sequence[Job]) -> orders.Order:
        """Move the stored order to the state its jobs imply; settle it when it is delivered."""
        if not jobs:
            return order
        target = orders.derive_state(j.state.value for j in jobs)
        failure = "; ".join(sorted({j.failure_reason for j in jobs if j.failure_reason}))[:1000]
        while target is not order.state and order.state not in orders.FINAL_STATES:
            orders.advance(order.state, target)
            self.store._thd_update_state(order.id, order.state, target, format_time(self.clock()), failure)
            order = self.store._thd_get_order(order.id)  # ours or a concurrent refresh's: both derive the same
        if order.state is orders.OrderState.DELIVERED and order.paid and not order.settled:
            # each node is credited with the payouts of the objects it made (their parts' share of the price)
            made: collections.Counter[str] = collections.Counter()
            for j in jobs:
                if j.state.value == "done" and j.node and j.payout_minor > 0:
                    made[j.node] += j.payout_minor
            try:
                self.grants._thd_settle(order, made, order.price_minor)
            except HubError:  # the order stays unsettled and readable; an admin sees why in the log
                log.exception("order %s could not be settled", order.id)
        return order

    async def view(self, caller: Account, order_id: str) -> OrderView:
        """Raises: InvalidArgument, NotFound, PermissionDenied."""
        check_plain_text(order_id, "order_id", 32)
        shown = await asyncio.to_thread(self._thd_view, order_id)
        _require_party(caller, shown)
        return shown

    async def list_orders(self, caller: Account, include_final: bool, page_size: int, token: str,
                          fits: Callable[[Sequence[OrderView]], int] = len) -> tuple[list[OrderView], str]:
        """A page of the caller's orders (an admin's: everyone's), newest first, and the next page's token.

        Args:
            fits: how many of the leading views one answer carries (the API measures their bytes); the
                page ends there (after one view at least) and the token continues after it.

        Raises:
            InvalidArgument: a bad page token, or page_size over the maximum.
        """
        limit = check_page_size(page_size, "ListOrders")
        before = decode_token(check_page_token(token))
        customer = None if caller.role is Role.ADMIN else caller.name
        found = await asyncio.to_thread(self.store._thd_list_orders, customer, include_final,
                                        [s.value for s in orders.FINAL_STATES], limit + 1, before)
        views = await asyncio.to_thread(self._thd_views_of, found[:limit])
        shown = max(1, min(fits(views), len(views))) if views else 0
        more = shown < len(views) or len(found) > limit
        return views[:shown], encode_token(views[shown - 1].order.id) if more else ""

    async def watch(self, caller: Account, order_id: str) -> AsyncIterator[OrderView]:
        """The order now, then after every change of its jobs, until it is final."""
        shown = await self.view(caller, order_id)
        yield shown
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._watchers.setdefault(order_id, []).append(entry)
        try:
            last = _fingerprint(shown)
            while shown.order.state not in orders.FINAL_STATES:
                try:
                    await asyncio.wait_for(event.wait(), timeout=30.0)
                except TimeoutError:
                    pass
                event.clear()
                shown = await asyncio.to_thread(self._thd_view, order_id)
                if _fingerprint(shown) != last:
                    last = _fingerprint(shown)
                    yield shown
        finally:
            with self._lock:
                self._watchers[order_id].remove(entry)
                if not self._watchers[order_id]:
                    del self._watchers[order_id]

    def _on_job(self, job: Job) -> None:
        """JobService listener (any thread): wake watchers; settle finished orders off the caller's thread."""
        if not job.order_id:
            return
        with self._lock:
            waiting = list(self._watchers.get(job.order_id, ()))
        for loop, event in waiting:
            loop.call_soon_threadsafe(event.set)
        if job.state.value in ("done", "failed", "cancelled", "lost_contact"):
            threading.Thread(target=self._refresh_quietly, args=(job.order_id,), daemon=True).start()

    def _refresh_quietly(self, order_id: str) -> None:
        try:
            self._thd_view(order_id)
        except Exception:  # noqa: BLE001 - the next read refreshes again
            return

    # -- cancelling --------------------------------------------------------------------------

    async def cancel(self, caller: Account, order_id: str, reason: str) -> OrderView:
        """Cancel an order: unstarted jobs at once, printing ones by asking the node to stop.

        Raises:
            NotFound, PermissionDenied (not the customer), FailedPrecondition (already final).
        """
        check_plain_text(reason, "reason", MAX_REASON)
        shown = await self.view(caller, order_id)
        if caller.name != shown.order.customer and caller.role is not Role.ADMIN:
            raise PermissionDenied(f"only the customer who placed order {order_id} may cancel it")
        if not orders.cancellable(shown.order.state):
            raise FailedPrecondition(f"order {order_id} is {shown.order.state.value}: nothing to cancel")
        partial = 0
        weight = _job_weights(shown.jobs)
        for job in shown.jobs:
            if job.state.value in ("done", "failed", "cancelled", "printed"):
                continue
            if job.state.value == "printing" and self.jobs is not None:  # its share of the order's costs so far
                share = (shown.order.material_minor + shown.order.machine_minor) * weight[job.id]
                partial += round(share * job.progress_percent / 100)
            await asyncio.to_thread(self.jobs._thd_cancel_job, job.id, reason or "cancelled by the customer")  # type: ignore[union-attr]
        if not shown.jobs:
            await asyncio.to_thread(self.store._thd_update_state, order_id, shown.order.state,
                                    orders.OrderState.CANCELLED, format_time(self.clock()), reason or "cancelled")
        if partial:
            # not a compare-and-set of the state: the jobs just cancelled move the order concurrently
            await asyncio.to_thread(self.store._thd_set_partial_cost, order_id, partial, format_time(self.clock()))
        return await self.view(caller, order_id)

    # -- ratings, the object's record, the ledger, the ladder --------------------------------

    async def rate(self, caller: Account, order_id: str, job_id: str, role: str, stars: int,
                   criteria: Mapping[str, int], comment: str) -> OrderView:
        """Rate an order (or one of its jobs) in the role the caller took in it.

        Raises:
            InvalidArgument: stars/criteria/comment out of bounds, an unknown role or job.
            NotFound: no such order. PermissionDenied: the caller took no part in it in that role.
            FailedPrecondition: nothing was made yet.
        """
        ratings_rules.check_rating(stars, criteria, comment)
        check_plain_text(comment, "rating.comment", ratings_rules.MAX_COMMENT_CHARS, multiline=True)
        check_plain_text(job_id, "job_id", 32)
        if role not in ratings_rules.ROLES:
            raise InvalidArgument(f"role {role!r:.20}: use {', '.join(ratings_rules.ROLES)}")
        check_plain_text(order_id, "order_id", 32)
        shown = await asyncio.to_thread(self._thd_view, order_id)
        design = await asyncio.to_thread(self.designs._thd_get_design, shown.order.design)
        # the caller's part in the order first: a stranger must not learn which job ids it has
        _require_role(caller, role, shown, shown.jobs, design)
        jobs = [j for j in shown.jobs if not job_id or j.id == job_id]
        if job_id and not jobs:
            raise InvalidArgument(f"order {order_id} has no job {job_id!r}", field="job_id")
        _require_role(caller, role, shown, jobs, design)
        if not any(j.state in _MADE for j in jobs):
            raise FailedPrecondition(f"order {order_id} is {shown.order.state.value}: rate it once something was made")
        node = next((j.node for j in jobs if j.node), shown.order.node) or ""
        await asyncio.to_thread(self.store._thd_put_rating, orders.RatingRow(
            order_id, job_id, shown.order.design, "" if role == "maker" else node, caller.name, role, stars,
            dict(criteria), comment, format_time(self.clock())))
        return shown if _takes_part(caller, shown) else _as_public(shown)

    async def incarnation(self, text: str) -> dict[str, object]:
        """What a QR label resolves to.

        Raises:
            InvalidArgument: not an incarnation id or payload. NotFound: unknown.
        """
        ident = text.removeprefix(QR_PREFIX).lower()
        if not (1 <= len(ident) <= 16 and all(c in _B32 for c in ident)):
            raise InvalidArgument(f"{text!r:.40} is not an incarnation id (12 letters and digits 2-7)")
        order, obj = await asyncio.to_thread(self.store._thd_incarnation, ident)
        job = next((j for j in await asyncio.to_thread(self._jobs_of, order.id) if j.id == obj.job_id), None)
        return {"incarnation_id": ident, "order_id": order.id, "design": order.design,
                "revision_id": order.revision_id, "parameters": dict(order.parameters),
                "node": (job.node if job else None) or order.node, "printer": (job.printer if job else None) or order.printer,
                "material": order.material, "date": (job.updated_at if job else order.created_at),
                "state": job.state.value if job else order.state.value,
                "attributions": [attribution_dict(a) for a in order.attributions]}

    def _jobs_of(self, order_id: str) -> list[Job]:
        return self.jobs._thd_jobs_of_order(order_id) if self.jobs is not None else []

    async def ledger(self, design: str, node: str, limit: int) -> tuple[list[tuple[str, str, int]], list[orders.LedgerRow]]:
        """Balances and the latest entries of a design's or a node's ledger.

        Raises:
            InvalidArgument: neither or both of design and node, or a limit over 1000.
        """
        if bool(design) == bool(node):
            raise InvalidArgument("give exactly one of design or node")
        if limit > 1000:
            raise InvalidArgument("limit is at most 1000")
        if design:
            check_slug(design)
            await asyncio.to_thread(self.designs._thd_get_design, design)
        else:
            check_plain_text(node, "node", 64)
        kwargs = {"design": design} if design else {"recipient": node}
        balances = await asyncio.to_thread(lambda: self.store._thd_balances(**kwargs))
        entries = await asyncio.to_thread(lambda: self.store._thd_ledger(**kwargs, limit=limit or 100))
        return balances, entries

    async def set_participation(self, caller: Account, slug: str, rung: str) -> None:
        """Raises: InvalidArgument (unknown rung), NotFound, PermissionDenied (not a maintainer)."""
        design = await asyncio.to_thread(self.designs._thd_get_design, check_slug(slug))
        if caller.role is not Role.ADMIN and caller.name not in design.maintainers:
            raise PermissionDenied(f"only maintainers of {slug} may set its participation; {caller.name} is not one")
        if rung not in RUNGS:
            raise InvalidArgument(f"rung {rung!r:.20}: use {', '.join(RUNGS)}")
        await asyncio.to_thread(self.store._thd_set_rung, slug, rung, caller.name, format_time(self.clock()))


def _require_role(caller: Account, role: str, shown: OrderView, jobs: Sequence[Job], design: Design) -> None:
    took_part = {
        "customer": caller.name == shown.order.customer,
        "maker": any(j.node == caller.name and j.state in _MADE for j in jobs),  # an offer alone is no part
        "designer": caller.name in design.maintainers,
    }[role]
    if not took_part:
        raise PermissionDenied(f"{caller.name} took no part in order {shown.order.id} as {role}: "
                               "only its customer, the node that made it and the design's maintainers rate it")



# jobs that something was made of; a node holds a job it accepted (an offer it has not is no part)
_MADE = frozenset({JobState.PRINTED, JobState.DONE, JobState.FAILED, JobState.LOST_CONTACT})
_HELD = frozenset(JobState) - {JobState.QUEUED, JobState.OFFERED, JobState.CANCELLED}


def _takes_part(caller: Account, shown: OrderView) -> bool:
    """Whether the caller may see the whole order: an admin, its customer, a node holding one of its jobs."""
    return caller.role is Role.ADMIN or caller.name == shown.order.customer or any(
        j.node == caller.name and j.state in _HELD for j in shown.jobs)


def _as_public(shown: OrderView) -> OrderView:
    """The order as anyone may see it on the design's record (design, revision, state): never its
    customer, place, price, quote or jobs. A maintainer's rating is answered with this."""
    o = shown.order
    public = orders.Order(id=o.id, customer="", design=o.design, revision_id=o.revision_id, parameters={},
                          material=o.material, quantity=o.quantity, paid=o.paid, currency="", price_minor=0,
                          state=o.state, created_at=o.created_at, updated_at=o.updated_at)
    return OrderView(public, (), shown.progress_percent, shown.layer)


def _require_party(caller: Account, shown: OrderView) -> None:
    if _takes_part(caller, shown):
        return
    # never the customer's name: a stranger learns nothing of whose the order is
    raise PermissionDenied(f"{caller.name} takes no part in order {shown.order.id}: only its customer and the "
                           "nodes that make it may follow it")


def _prefer(chosen: quotes.QuoteOption, options: Sequence[quotes.QuoteOption]) -> tuple[tuple[str, str], ...]:
    """The printers an order's jobs may go to: the chosen one first, then the other options priced in its
    currency (the order's price and its jobs' payouts are in that currency; another node's rates are not)."""
    return ((chosen.node, chosen.printer), *((o.node, o.printer) for o in options
                                             if o is not chosen and o.price.currency == chosen.price.currency))


def _job_weights(jobs: Sequence[Job]) -> dict[str, float]:
    """Each job's fraction of its order's costs: its payout's share of the price (a paid order's payouts
    weigh its parts), or an equal share where there are no payouts (an unpaid order)."""
    paid = sum(j.payout_minor for j in jobs)
    return {j.id: j.payout_minor / paid if paid > 0 else 1 / len(jobs) for j in jobs}


def _corrected(estimate: quotes.Estimate, fix: quotes.Correction) -> quotes.Estimate:
    return quotes.Estimate(estimate.seconds * fix.time_factor, estimate.filament_g * fix.filament_factor)


def _fingerprint(view: OrderView) -> tuple[object, ...]:
    return (view.order.state, view.progress_percent, view.layer, tuple((j.state, j.node) for j in view.jobs))


def _match_query(basis: _Basis, mesh: MeshPlan, slices: Mapping[str, _Sliced],
                 limit: int, rule: str) -> MatchQuery:
    """What to ask the database for: printers of the sliced profiles, checked here for the build volume
    and the exact distance."""
    req = basis.req
    near = geo.parse_near(req.near) if req.near else None

    def accept(p: PrinterRecord) -> bool:
        return _unfit(mesh, req.material, p) is None and _within(near, req.max_km, p)

    estimates = {p: (s[0].seconds, s[0].filament_g) for p, s in slices.items()}
    return MatchQuery(req.material, estimates, limit, accept, _box(req), basis.gate.nodes, rule,
                      (near.latitude, near.longitude) if near else None)


def _unfit(plan: MeshPlan, material: str, p: PrinterRecord) -> str | None:
    """Why the printer cannot make every object of a copy (each mesh in its build volume), or None."""
    for extents in plan.extents_mm:
        reason = qualifies(extents, material, p)
        if reason is not None:
            return reason
    return None


def _box(req: OrderRequest) -> quotes.Box | None:
    """The bounding box of --max-km around --near (None: no distance limit)."""
    if not (req.near and req.max_km):
        return None
    near = geo.parse_near(req.near)
    return quotes.bounding_box(near.latitude, near.longitude, req.max_km)


def _within(near: geo.Point | None, max_km: float, p: PrinterRecord) -> bool:
    if not max_km or near is None:
        return True
    km = _distance(near, p)
    return km is not None and km <= max_km


def _distance(near: geo.Point | None, p: PrinterRecord) -> float | None:
    if near is None or p.latitude is None or p.longitude is None:
        return None
    return round(geo.distance_km(near, geo.Point(p.latitude, p.longitude)), 1)




