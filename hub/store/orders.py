"""Orders, quotes, idempotency keys, grants, ratings, the value ledger and value equations (Core).

Invariants live in the schema: an idempotency key names one order per customer
(primary key), one rating per person per job per role (unique), and an order is
settled into the ledger once (a compare-and-set on `orders.settled`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from hub.domain import Attribution, Design, PrintabilityRecord, Revision
from hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    HubError,
    InvalidTransition,
    NotFound,
    StorageError,
)
from hub.jobs import Job
from hub.ledger import Share
from hub.orders import (
    LedgerRow,
    Order,
    OrderObject,
    OrderState,
    RatingRow,
    StoredQuote,
    derive_state,
)
from hub.quotes import Box
from hub.scheduler import PrinterRecord
from hub.store import record_sums, schema
from hub.store.designs import DesignStore, reports_of
from hub.store.driver import Prepared
from hub.store.engine import connect, write
from hub.store.nodes import NODE_OF_PRINTER, NODE_ROUTABLE, _printer

__all__ = ["Basis", "Build", "Match", "MatchQuery", "Matching", "OrderStore", "PlaceResult", "Placement"]

o, q, k, ob = schema.orders, schema.quotes, schema.order_keys, schema.order_objects
rt, lg, ve, pa, f = (schema.ratings, schema.ledger_entries, schema.value_equations,
                     schema.participation, schema.fabrications)


def _attributions(text: str) -> tuple[Attribution, ...]:
    return tuple(Attribution(**{**a, "contributors": tuple(a["contributors"])}) for a in json.loads(text))


def _attributions_json(items: Sequence[Attribution]) -> str:
    return json.dumps([{"design": a.design, "revision_id": a.revision_id, "title": a.title, "license": a.license,
                        "licensor": a.licensor, "contributors": list(a.contributors), "notice": a.notice}
                       for a in items], sort_keys=True)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _order(row: sa.Row[tuple[object, ...]], objects: tuple[OrderObject, ...]) -> Order:
    x = row._mapping
    return Order(
        id=x["id"], customer=x["customer"], design=x["design"], revision_id=x["revision_id"],
        parameters=json.loads(x["parameters"]), material=x["material"], quantity=x["quantity"], paid=bool(x["paid"]),
        currency=x["price_currency"], price_minor=x["price_minor"], state=OrderState(x["state"]),
        created_at=x["created_at"], updated_at=x["updated_at"], quote_id=x["quote_id"], rule=x["rule"],
        node=x["node"], printer=x["printer"], near=x["near"], material_minor=x["material_minor"],
        machine_minor=x["machine_minor"], fees_minor=x["fees_minor"], estimated_seconds=x["estimated_seconds"],
        attributions=_attributions(x["attributions"]), failure_reason=x["failure_reason"],
        partial_cost_minor=x["partial_cost_minor"], settled=bool(x["settled"]), objects=objects,
    )


def _order_values(order: Order) -> dict[str, object]:
    return {
        "id": order.id, "customer": order.customer, "design": order.design, "revision_id": order.revision_id,
        "parameters": json.dumps(dict(order.parameters), sort_keys=True), "material": order.material,
        "quantity": order.quantity, "paid": order.paid, "price_currency": order.currency,
        "price_minor": order.price_minor, "state": order.state.value, "created_at": order.created_at,
        "updated_at": order.updated_at, "quote_id": order.quote_id, "rule": order.rule, "node": order.node,
        "printer": order.printer, "near": order.near, "material_minor": order.material_minor,
        "machine_minor": order.machine_minor, "fees_minor": order.fees_minor,
        "estimated_seconds": order.estimated_seconds, "attributions": _attributions_json(order.attributions),
        "failure_reason": order.failure_reason, "partial_cost_minor": order.partial_cost_minor,
        "settled": order.settled,
    }


# -- matching statements, built once per shape (the database matches; Python only binds values) ----

_pr, _n, _jb = schema.printers, schema.nodes, schema.jobs
MAX_PRINTERS_ASKED = 64  # printers whose claims one statement checks (each a pair of bound parameters)


BoxShape = tuple[int, bool]
"""What a box's filter is made of: how many longitude ranges (-1: no box; 0: every longitude), and a disc."""


def _box_shape(box: Box | None) -> BoxShape:
    return (-1, False) if box is None else (len(box.lons), box.disc is not None)


def _match_params(material: str, box: Box | None, nodes: frozenset[str] | None) -> dict[str, object]:
    params: dict[str, object] = {"material": f'%"{_like_escape(material.lower())}"%'}
    if nodes is not None:
        params["nodes"] = sorted(nodes)
    if box is not None:
        params.update({"lat_min": box.lat_min, "lat_max": box.lat_max})
        for i, (lo, hi) in enumerate(box.lons):
            params.update({f"lo{i}": lo, f"hi{i}": hi})
        if box.disc is not None:
            params.update(zip(("c_lat", "c_lon", "c_scale", "c_r2"), box.disc, strict=True))
    return params


def _material_loaded(dialect: str) -> sa.ColumnElement[bool]:
    """The material (bound lower-case as :material, a LIKE pattern) in the printer's JSON list, any case:
    SQLite's LIKE ignores ASCII case by itself (material names are ASCII), PostgreSQL has ILIKE."""
    if dialect == "sqlite":
        return _pr.c.materials.like(sa.bindparam("material"), escape="\\")
    return _pr.c.materials.ilike(sa.bindparam("material"), escape="\\")


def _match_filters(nodes: bool, box: BoxShape, dialect: str) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [
        *NODE_ROUTABLE, _pr.c.accepting == sa.true(), _pr.c.bed_clear == sa.true(), _pr.c.phase == "idle",
        _pr.c.hour_currency != "", _pr.c.hour_currency == _pr.c.gram_currency,
        _material_loaded(dialect)]
    if nodes:
        where.append(_pr.c.node.in_(sa.bindparam("nodes", expanding=True)))
    lons, disc = box
    if lons >= 0:
        where.append(_n.c.latitude.between(sa.bindparam("lat_min"), sa.bindparam("lat_max")))
    if lons > 0:
        where.append(sa.or_(*(_n.c.longitude.between(sa.bindparam(f"lo{i}"), sa.bindparam(f"hi{i}"))
                              for i in range(lons))))
    if disc:  # the box's corners out (see Box.disc): arithmetic only, the exact distance is checked after
        dlat = _n.c.latitude - sa.bindparam("c_lat", type_=sa.Float)
        dlon = (_n.c.longitude - sa.bindparam("c_lon", type_=sa.Float)) * sa.bindparam("c_scale", type_=sa.Float)
        where.append(dlat * dlat + dlon * dlon <= sa.bindparam("c_r2", type_=sa.Float))
    return where


def _values_of(column: sa.Column[str], name: str) -> sa.CTE:
    """The distinct values of an indexed column, one index seek each (a loose index scan: the least
    value, then the least one above it, ...) instead of reading every entry: with a thousand
    printers and a handful of values, 10 us instead of 150-300."""
    table = column.table
    first = sa.select(sa.func.min(column).label("value")).cte(name, recursive=True)
    above = sa.select(sa.func.min(column)).select_from(table).where(column > first.c.value).scalar_subquery()
    return first.union_all(sa.select(above).where(first.c.value.is_not(None)))


@functools.lru_cache(maxsize=64)
def _profiles_query(nodes: bool, box: BoxShape, dialect: str) -> Prepared:
    """The slicer profiles in use (a loose index scan) that some matching printer has: a semi-join that
    stops at the first such printer of each profile instead of matching every printer."""
    values = _values_of(_pr.c.slicer_profile, "profiles")
    used = sa.select(values.c.value.label("profile")).where(values.c.value.is_not(None)).subquery("used")
    some = (sa.select(sa.literal(1)).select_from(_pr.join(_n, _n.c.name == _pr.c.node))
            .where(*_match_filters(nodes, box, dialect), _pr.c.slicer_profile == used.c.profile))
    return Prepared(sa.select(used.c.profile).where(some.exists()))


def _held(node: sa.ColumnElement[str], printer: sa.ColumnElement[str]) -> sa.Exists:
    """A job keeps this printer busy; the states spelled out as the partial index ix_jobs_held_printer has them."""
    return sa.exists().where(_jb.c.node == node, _jb.c.printer == printer,
                             _jb.c.state.in_([sa.literal_column(repr(s)) for s in schema.HELD_STATES]))


@functools.lru_cache(maxsize=256)
def _candidates_query(profiles: int, nodes: bool, box: BoxShape, order: str, dialect: str) -> Prepared:
    """Printers that can take a job with one of `profiles` slicer profiles (bound as p0.., with hours
    h0.. and grams g0.. of one object): free ones first (column ``busy`` 0), then those holding a job
    (an order placed on them waits in the queue), each best first by `order`; a page of :lim after :off.

    "cheapest" takes the printers of one currency (bound as :currency) by price: the caller interleaves
    the currencies (see _interleaved). Ranking within each currency in the statement itself takes a
    window function, which costs SQLite several times the match (7 ms instead of 1 ms over 800 printers)."""
    hours = sa.case(*((_pr.c.slicer_profile == sa.bindparam(f"p{i}"), sa.bindparam(f"h{i}", type_=sa.Float))
                      for i in range(profiles)), else_=0.0)
    grams = sa.case(*((_pr.c.slicer_profile == sa.bindparam(f"p{i}"), sa.bindparam(f"g{i}", type_=sa.Float))
                      for i in range(profiles)), else_=0.0)
    cost = _pr.c.hour_minor * hours + _pr.c.gram_minor * grams
    busy = sa.case((_held(_pr.c.node, _pr.c.printer), 1), else_=0).label("busy")
    where = [*_match_filters(nodes, box, dialect), _pr.c.slicer_profile.in_([sa.bindparam(f"p{i}") for i in range(profiles)])]
    # prices in different currencies are never compared (hub.quotes.rank): ties by the currency's code
    keys: list[sa.ColumnElement[Any]] = [cost]
    if order == "cheapest":
        where.append(_pr.c.hour_currency == sa.bindparam("currency"))
    elif order == "fastest":
        keys = [hours, _pr.c.hour_currency, cost]
    elif order == "nearest":
        dlat = _n.c.latitude - sa.bindparam("near_lat", type_=sa.Float)
        dlon = _n.c.longitude - sa.bindparam("near_lon", type_=sa.Float)
        keys = [_n.c.latitude.is_(None), dlat * dlat + dlon * dlon * sa.bindparam("stretch", type_=sa.Float),
                _pr.c.hour_currency, cost]
    return Prepared(sa.select(_pr, *NODE_OF_PRINTER, busy).join(_n, _n.c.name == _pr.c.node).where(*where)
                    .order_by(busy, *keys, _pr.c.node, _pr.c.printer)
                    .limit(sa.bindparam("lim", type_=sa.Integer)).offset(sa.bindparam("off", type_=sa.Integer)))


# the currencies printers charge in (a superset of those of the matching printers, "" among them when a
# printer publishes no rates): "cheapest" matches each
_CURRENCY_VALUES = _values_of(_pr.c.hour_currency, "currencies")
_CURRENCIES = Prepared(sa.select(_CURRENCY_VALUES.c.value).where(_CURRENCY_VALUES.c.value.is_not(None)))


_Row = Any  # a row of a Prepared statement: a named tuple (or an sa.Row)


def _interleaved(pages: Sequence[Sequence[_Row]], limit: int, offset: int) -> list[_Row]:
    """Rows ``offset`` to ``offset + limit`` of the "cheapest" order, from each currency's first
    ``offset + limit`` printers best first (free ones first, each group by price): free printers first,
    then the cheapest of each currency, then the second cheapest of each, ... (ties by the currency's
    code, then name). A printer of a currency past its first ``offset + limit`` has at least as many
    printers before it in this order too, so it is never on the page."""
    ranked: list[tuple[tuple[Any, ...], _Row]] = []
    for rows in pages:
        rank = {0: 0, 1: 0}
        for row in rows:
            busy = int(row.busy)
            rank[busy] += 1
            ranked.append(((busy, rank[busy], row.hour_currency, row.node, row.printer), row))
    ranked.sort(key=lambda item: item[0])
    return [row for _, row in ranked[offset:offset + limit]]


# an order's hot path (placing: one transaction; matching: one read) runs on the driver (hub/store/driver.py)
_INSERT_QUOTE, _INSERT_ORDER, _INSERT_KEY, _INSERT_OBJECT = (Prepared(t.insert()) for t in (q, o, k, ob))
_SET_STATE = Prepared(o.update().where(o.c.id == sa.bindparam("order_id")).values(state=sa.bindparam("state")))
_ORDER_OF_QUOTE = sa.select(o.c.id).where(o.c.quote_id == sa.bindparam("quote_id")).limit(1)
_DESIGN = Prepared(sa.select(schema.designs, sa.select(pa.c.rung).where(pa.c.design == schema.designs.c.slug)
                             .scalar_subquery().label("rung")).where(schema.designs.c.slug == sa.bindparam("slug")))
# a revision of the design that is a proposal not (yet) accepted
_UNACCEPTED = sa.select(schema.proposals.c.id).where(
    schema.proposals.c.design == sa.bindparam("slug"), schema.proposals.c.revision_id == sa.bindparam("revision_id"),
    schema.proposals.c.state != "accepted").limit(1)
_KEYED = Prepared(sa.select(k.c.order_id, k.c.request_sha256).where(k.c.customer == sa.bindparam("customer"),
                                                                   k.c.key == sa.bindparam("key")))


@functools.lru_cache(maxsize=MAX_PRINTERS_ASKED)
def _held_among(count: int) -> Prepared:
    """Which of ``count`` printers (bound as n0, p0, ...) a job holds: one seek of ix_jobs_held_printer each.
    A filter by their nodes instead reads every held job of the hub on SQLite, whose planner takes the
    state index for it (0.5 ms at 2,000 held jobs, in the write transaction)."""
    # a UNION ALL of one-row SELECTs: SQLite names no columns of a VALUES list in FROM
    wanted = sa.union_all(*(sa.select(sa.bindparam(f"n{i}", type_=sa.String).label("node"),
                                      sa.bindparam(f"p{i}", type_=sa.String).label("printer"))
                            for i in range(count))).subquery("wanted")
    return Prepared(sa.select(wanted.c.node, wanted.c.printer).where(_held(wanted.c.node, wanted.c.printer)))


@functools.lru_cache(maxsize=64)
def _vote_totals(nodes: int, roles: int) -> Prepared:
    """The count and sum of the stars given to each of ``nodes`` nodes (bound as n0, n1, ...) by raters in
    ``roles`` roles (r0, ...): an IN list of single parameters, built once per length and run on the driver."""
    return Prepared(sa.select(rt.c.node, sa.func.count(), sa.func.sum(rt.c.stars))
                    .where(rt.c.node.in_([sa.bindparam(f"n{i}") for i in range(nodes)]),
                           rt.c.role.in_([sa.bindparam(f"r{i}") for i in range(roles)])).group_by(rt.c.node))


@functools.lru_cache(maxsize=MAX_PRINTERS_ASKED)
def _latest_of(count: int) -> Prepared:
    """The latest ``lim`` successful prints in a material of ``count`` (node, printer model) pairs (bound as
    n0, m0, ...), tagged by pair: one backward walk of ix_fabrications_node_model_material each, however
    long the node's history. Ranking every print of the nodes with a window function read them all."""
    walks = []
    for i in range(count):
        walk = (sa.select(sa.literal(i, sa.Integer).label("pair"), f.c.estimated_seconds, f.c.actual_seconds,
                          f.c.estimated_filament_g, f.c.actual_filament_g)
                .where(f.c.node == sa.bindparam(f"n{i}", type_=sa.String),
                       f.c.printer_model == sa.bindparam(f"m{i}", type_=sa.String),
                       f.c.material == sa.bindparam("material"), f.c.outcome == "success")
                .order_by(f.c.finished_at.desc(), f.c.incarnation_id.desc())
                .limit(sa.bindparam("lim", type_=sa.Integer)).subquery(f"w{i}"))
        walks.append(sa.select(walk))
    return Prepared(sa.union_all(*walks))


@dataclass(frozen=True, slots=True)
class Basis:
    """What quoting or placing an order reads before matching, in one read transaction.

    Attributes:
        design: the design (read fresh); its participation rung (None: never set).
        revision: the revision wanted, read in full, or None when the caller has it cached (then
            ``reports`` are its printability reports as stored now).
        profiles: the slicer profiles of the printers that could take it (see _thd_profiles).
    """

    design: Design
    rung: str | None
    revision_id: str
    revision: Revision | None
    reports: tuple[PrintabilityRecord, ...]
    profiles: list[str]


@dataclass(frozen=True, slots=True)
class Matching:
    """The best printers for a job with what prices them, in one read transaction.

    Attributes:
        printers: best first, each accepted by the caller's check.
        histories: (node, model) -> (estimated s, actual s, estimated g, actual g) of its latest prints.
        votes: node -> (how many ratings, their stars' sum) by its customers and designers.
    """

    printers: list[PrinterRecord]
    histories: dict[tuple[str, str], list[tuple[float, float, float, float]]]
    votes: dict[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """Which printers a job wants (see OrderStore._candidate_rows): ``limit`` of them that ``accept``
    takes (the caller's checks: the build volume, the exact distance)."""

    material: str
    estimates: Mapping[str, tuple[float, float]]
    limit: int
    accept: Callable[[PrinterRecord], bool]
    box: Box | None = None
    nodes: frozenset[str] | None = None
    order: str = "cheapest"
    near: tuple[float, float] | None = None
    seen: Matching | None = None
    """What matching found for this query a moment ago, outside the write transaction: in it, only
    whether those printers were claimed since is checked (see OrderStore._matching)."""


Match = Callable[[MatchQuery], Matching]


@dataclass(frozen=True, slots=True)
class Placement:
    """One order to write (see OrderStore._thd_place)."""

    order: Order
    key: str
    request_sha256: str
    quote: StoredQuote | None
    create_jobs: Callable[[sa.Connection], list[Job]]


# Chooses an order inside the write transaction that stores it, matching printers with what that
# transaction sees (the claims of the orders written before it in the same transaction included).
# A HubError it raises is that order's outcome; nothing of it was written.
Build = Callable[[Match], Placement]
PlaceResult = tuple[Order, list[Job], bool]
_PENDING = StorageError("not written yet")  # a slot of _write_placements' answer, filled before it returns


def _same_key(order_id: object, stored_sha256: object, request_sha256: str, key: str) -> str:
    """The order a used idempotency key names.

    Raises:
        AlreadyExists: it was placed with a different request.
    """
    if stored_sha256 != request_sha256:
        raise AlreadyExists(f"idempotency key {key!r} already placed order {order_id} with a different "
                            "request: use a new key for a new order")
    return str(order_id)


def _design(x: Any) -> Design:
    """A design as an order needs it (maintainers, tags and counts are left empty)."""
    return Design(x.slug, x.title, x.description, x.license, x.head_revision_id or "", (), (), (),
                  x.created_at, x.updated_at, 0, _attributions(x.attributions or "[]"))


class OrderStore:
    """One connector for the order aggregate and the tables that hang off it."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._designs = DesignStore(engine)

    # -- quotes ------------------------------------------------------------------------------

    def _thd_save_quote(self, quote: StoredQuote) -> None:
        with write(self.engine) as conn:
            conn.execute(q.insert().values(
                id=quote.id, customer=quote.customer, design=quote.design, revision_id=quote.revision_id,
                spec=quote.spec_json, options=quote.options_json, created_at=quote.created_at,
                expires_at=quote.expires_at))

    def _thd_get_quote(self, quote_id: str) -> StoredQuote:
        """Raises: NotFound."""
        with connect(self.engine) as conn:
            x = conn.execute(sa.select(q).where(q.c.id == quote_id)).first()
        if x is None:
            raise NotFound(f"no quote {quote_id!r}: ask for a new one with `spime quote`")
        return StoredQuote(x.id, x.customer, x.design, x.revision_id, x.spec, x.options, x.created_at, x.expires_at)

    def _thd_drop_expired_quotes(self, now: str) -> int:
        with write(self.engine) as conn:
            return conn.execute(q.delete().where(q.c.expires_at < now)).rowcount

    # -- orders ------------------------------------------------------------------------------

    def _thd_key(self, customer: str, key: str, request_sha256: str) -> str | None:
        """The order an idempotency key already names (None when unused).

        Raises:
            AlreadyExists: the key names an order placed with a different request.
        """
        with connect(self.engine) as conn:
            found = self._keyed(conn, customer, key)
        if found is None:
            return None
        return _same_key(found.order_id, found.request_sha256, request_sha256, key)

    @staticmethod
    def _keyed(conn: sa.Connection, customer: str, key: str) -> Any | None:
        return _KEYED.first(conn, {"customer": customer, "key": key})

    def _same_request(self, conn: sa.Connection, keyed: Any, sha: str, key: str) -> Order:
        return self._load(conn, _same_key(keyed.order_id, keyed.request_sha256, sha, key))

    def _load(self, conn: sa.Connection, order_id: str) -> Order:
        row = conn.execute(sa.select(o).where(o.c.id == order_id)).first()
        if row is None:
            raise NotFound(f"no order {order_id!r}")
        objects = tuple(OrderObject(x.incarnation_id, x.position, x.job_id, x.part) for x in conn.execute(
            sa.select(ob).where(ob.c.order_id == order_id).order_by(ob.c.position)))
        return _order(row, objects)

    def _thd_get_order(self, order_id: str) -> Order:
        """Raises: NotFound."""
        with connect(self.engine) as conn:
            return self._load(conn, order_id)

    def _thd_list_orders(self, customer: str | None, include_final: bool, finals: Sequence[str],
                         limit: int, before: str) -> list[Order]:
        """Up to ``limit`` orders, newest first, with their objects (two queries for the page)."""
        query = sa.select(o).order_by(o.c.id.desc()).limit(limit)
        if customer is not None:
            query = query.where(o.c.customer == customer)
        if not include_final:
            query = query.where(o.c.state.not_in(list(finals)))
        if before:
            query = query.where(o.c.id < before)
        with connect(self.engine) as conn:
            rows = conn.execute(query).all()
            objects: dict[str, list[OrderObject]] = {row.id: [] for row in rows}
            if objects:
                for x in conn.execute(sa.select(ob).where(ob.c.order_id.in_(list(objects)))
                                      .order_by(ob.c.order_id, ob.c.position)):
                    objects[x.order_id].append(OrderObject(x.incarnation_id, x.position, x.job_id, x.part))
        return [_order(row, tuple(objects[row.id])) for row in rows]

    def _thd_update_state(self, order_id: str, expected: OrderState, new: OrderState, now: str,
                          failure_reason: str = "", partial_cost_minor: int | None = None) -> bool:
        """Compare-and-set of the order's state; False when someone else moved it first."""
        values: dict[str, object] = {"state": new.value, "updated_at": now}
        if failure_reason:
            values["failure_reason"] = failure_reason
        if partial_cost_minor is not None:
            values["partial_cost_minor"] = partial_cost_minor
        with write(self.engine) as conn:
            done = conn.execute(o.update().where(o.c.id == order_id, o.c.state == expected.value).values(**values))
            return bool(done.rowcount)

    def _thd_set_partial_cost(self, order_id: str, partial_cost_minor: int, now: str) -> None:
        """Record what the prints cancelled after they started cost, whatever state the order is in."""
        with write(self.engine) as conn:
            conn.execute(o.update().where(o.c.id == order_id)
                         .values(partial_cost_minor=partial_cost_minor, updated_at=now))

    def _thd_incarnation(self, incarnation_id: str) -> tuple[Order, OrderObject]:
        """Raises: NotFound."""
        with connect(self.engine) as conn:
            row = conn.execute(sa.select(ob).where(ob.c.incarnation_id == incarnation_id)).first()
            if row is None:
                raise NotFound(f"no fabricated object {incarnation_id!r}")
            order = self._load(conn, row.order_id)
        return order, next(x for x in order.objects if x.incarnation_id == incarnation_id)

    # -- ratings -----------------------------------------------------------------------------

    def _thd_put_rating(self, rating: RatingRow) -> None:
        """Store a rating: one per person, role and job. A second one for the same job replaces the first;
        a rating of the whole order (no job) replaces the person's ratings of its jobs in that role, and a
        rating of one job replaces the person's rating of the whole order (it covered that job too).
        On PostgreSQL the order's row is locked first, so the same rating sent twice at once takes
        turns (SQLite has one writer)."""
        same = (rt.c.order_id == rating.order_id, rt.c.rater == rating.rater, rt.c.role == rating.role)
        key = (*same, rt.c.job_id.in_([rating.job_id, ""])) if rating.job_id else same
        with write(self.engine) as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(o.c.id).where(o.c.id == rating.order_id).with_for_update())
            removed = conn.execute(rt.delete().where(*key).returning(*record_sums.VOTE_COLUMNS)).all()
            added = conn.execute(rt.insert().values(
                design=rating.design, order_id=rating.order_id, job_id=rating.job_id, node=rating.node,
                rater=rating.rater, role=rating.role, stars=rating.stars,
                criteria=json.dumps(dict(rating.criteria), sort_keys=True), comment=rating.comment, at=rating.at)
                .returning(*record_sums.VOTE_COLUMNS)).all()
            record_sums.votes_changed(conn, removed, added)  # the record's running sums (hub/store/record_sums.py)

    def _thd_ratings(self, *, order_id: str | None = None, node: str | None = None,
                     design: str | None = None, roles: Sequence[str] = ()) -> list[RatingRow]:
        query = sa.select(rt).order_by(rt.c.at, rt.c.id)
        for column, value in ((rt.c.order_id, order_id), (rt.c.node, node), (rt.c.design, design)):
            if value is not None:
                query = query.where(column == value)
        if roles:
            query = query.where(rt.c.role.in_(list(roles)))
        with connect(self.engine) as conn:
            return [RatingRow(x.order_id or "", x.job_id, x.design, x.node, x.rater, x.role, x.stars,
                              json.loads(x.criteria), x.comment, x.at) for x in conn.execute(query)]

    # -- the value ledger --------------------------------------------------------------------

    def _thd_settle(self, order_id: str, design: str, currency: str, shares: Sequence[Share],
                    equation_version: str, equation_json: str, now: str) -> bool:
        """Write an order's ledger entries exactly once; False when it was settled already."""
        with write(self.engine) as conn:
            claimed = conn.execute(o.update().where(o.c.id == order_id, o.c.settled == sa.false()).values(settled=True))
            if not claimed.rowcount:
                return False
            if shares:
                conn.execute(lg.insert(), [{
                    "order_id": order_id, "design": design, "recipient": s.recipient, "share": s.share,
                    "currency": currency, "minor_units": s.minor_units, "equation_version": equation_version,
                    "at": now, "explanation": s.explanation, "equation": equation_json} for s in shares])
            return True

    def _thd_ledger(self, *, design: str | None = None, recipient: str | None = None, limit: int = 10_000) -> list[LedgerRow]:
        query = sa.select(lg).order_by(lg.c.at, lg.c.id).limit(limit)
        if design is not None:
            query = query.where(lg.c.design == design)
        if recipient is not None:
            query = query.where(lg.c.recipient == recipient)
        with connect(self.engine) as conn:
            return [LedgerRow(x.order_id, x.design, x.recipient, x.share, x.currency, x.minor_units,
                              x.equation_version, x.explanation, x.at) for x in conn.execute(query)]

    def _thd_balances(self, *, design: str | None = None, recipient: str | None = None) -> list[tuple[str, str, int]]:
        """(recipient, currency, total minor units), by recipient."""
        query = sa.select(lg.c.recipient, lg.c.currency, sa.func.sum(lg.c.minor_units)).group_by(
            lg.c.recipient, lg.c.currency).order_by(lg.c.recipient, lg.c.currency)
        if design is not None:
            query = query.where(lg.c.design == design)
        if recipient is not None:
            query = query.where(lg.c.recipient == recipient)
        with connect(self.engine) as conn:
            return [(str(a), str(b), int(c)) for a, b, c in conn.execute(query)]

    # -- value equations and the ladder of participation ------------------------------------

    def _thd_equation(self, design: str, at: str | None = None) -> tuple[int, str] | None:
        """The latest (version, equation JSON) published, or the latest published by time ``at``."""
        query = sa.select(ve.c.version, ve.c.equation).where(ve.c.design == design).order_by(ve.c.version.desc()).limit(1)
        if at is not None:
            query = query.where(ve.c.set_at <= at)
        with connect(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else (int(row.version), str(row.equation))

    def _thd_set_equation(self, design: str, expected_version: int, equation_json: str, by: str, now: str) -> int:
        """Publish the next version of a design's value equation.

        Raises:
            InvalidTransition: someone published another version first.
        """
        try:
            with write(self.engine) as conn:
                conn.execute(ve.insert().values(design=design, version=expected_version + 1, equation=equation_json,
                                                set_by=by, set_at=now))
        except sa.exc.IntegrityError as exc:
            raise InvalidTransition(f"value equation of {design} changed meanwhile: read it again") from exc
        return expected_version + 1

    def _thd_set_rung(self, design: str, rung: str, by: str, now: str) -> None:
        """Set a design's participation rung (the design's row is locked first on PostgreSQL, so two
        settings at once take turns; SQLite has one writer)."""
        with write(self.engine) as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(schema.designs.c.slug).where(schema.designs.c.slug == design).with_for_update())
            conn.execute(pa.delete().where(pa.c.design == design))
            conn.execute(pa.insert().values(design=design, rung=rung, set_by=by, set_at=now))

    # -- matching ----------------------------------------------------------------------------

    @staticmethod
    def _design_row(conn: sa.Connection, slug: str) -> Any:
        x = _DESIGN.first(conn, {"slug": slug})
        if x is None:
            raise NotFound(f"no design named {slug!r}; create it with `spime push --new` or search with `spime search`")
        return x

    def _thd_basis(self, slug: str, revision_id: str, known: Callable[[str], bool], material: str,
                   box: Box | None, customer: str = "", key: str = "", request_sha256: str = "") -> Basis | str:
        """What an order rests on before matching, in one read transaction: the order the idempotency
        key already names (its id; nothing else is read), or the design, the revision (in full unless
        ``known(id)``: the caller keeps revisions, immutable per id), its printability reports as
        stored now, and the slicer profiles of the printers that could take it (every node counts:
        the licence's grants are not known yet).

        Raises:
            AlreadyExists: the key names an order placed with a different request.
            NotFound: no such design or revision. InvalidArgument: a revision prefix too short or ambiguous.
            FailedPrecondition: the revision is a proposal its maintainers have not accepted.
        """
        with connect(self.engine) as conn:
            if key:
                keyed = _KEYED.first(conn, {"customer": customer, "key": key})
                if keyed is not None:
                    return _same_key(keyed.order_id, keyed.request_sha256, request_sha256, key)
            x = self._design_row(conn, slug)
            design = _design(x)
            wanted = revision_id if len(revision_id) == 64 else "" if revision_id else design.head_revision_id
            revision: Revision | None = None
            if wanted and known(wanted):
                reports = reports_of(conn, wanted)
            else:
                revision = self._revision(conn, slug, wanted or revision_id)
                wanted, reports = revision.id, revision.reports
            if wanted != design.head_revision_id and conn.scalar(_UNACCEPTED, {"slug": slug, "revision_id": wanted}):
                raise FailedPrecondition(
                    f"revision {slug}@{wanted[:12]} is a proposal its maintainers have not accepted; only accepted "
                    f"revisions are made (see `spime log {slug}`)", reason="REVISION_NOT_ACCEPTED", field="revision_id")
            profiles = self._profiles(conn, material, box, None)
        return Basis(design, x.rung, wanted, revision, reports, profiles)

    def _revision(self, conn: sa.Connection, slug: str, revision_id: str) -> Revision:
        """A revision of this design by id or unique prefix.

        Raises:
            NotFound: the design has no such revision. InvalidArgument: a prefix too short or ambiguous.
        """
        missing = f"{slug} has no revision {revision_id[:16] or '(head)'}: see `spime log {slug}`"
        try:
            full = revision_id if len(revision_id) == 64 else self._designs._resolve(conn, slug, revision_id)
            revision = self._designs._revision(conn, full)
        except NotFound as exc:
            raise NotFound(missing) from exc
        if revision.design != slug:
            raise NotFound(missing)
        return revision

    def _thd_profiles(self, material: str, box: Box | None = None, nodes: frozenset[str] | None = None) -> list[str]:
        """The slicer profiles of the printers that could take a job (each needs its own slice);
        printers busy now count too, so that this read stays cheap."""
        with connect(self.engine) as conn:
            return self._profiles(conn, material, box, nodes)

    def _profiles(self, conn: sa.Connection, material: str, box: Box | None, nodes: frozenset[str] | None
                  ) -> list[str]:
        query = _profiles_query(nodes is not None, _box_shape(box), self.engine.dialect.name)
        return sorted(str(p) for (p,) in query.rows(conn, _match_params(material, box, nodes)))

    def _thd_matching(self, query: MatchQuery) -> Matching:
        """The best printers for a job (see _matching), in one read transaction."""
        with connect(self.engine) as conn:
            return self._matching(conn, query)

    def _matching(self, conn: sa.Connection, query: MatchQuery, roles: Sequence[str] = ("customer", "designer"),
                  history: int = 200) -> Matching:
        """The best ``query.limit`` printers for a job that ``query.accept`` takes, their nodes'
        histories (see _histories) and ratings. The printers come as from _candidate_rows, a
        page at a time until enough are accepted."""
        found: list[PrinterRecord] = []
        if query.seen is not None:
            still = self._unclaimed(conn, query.seen.printers)
            if still:
                return Matching(still, query.seen.histories, query.seen.votes)
        page, offset = 2 * query.limit + 8, 0  # spare for the build volume and the exact distance: one page as a rule
        while len(found) < query.limit:
            rows = self._candidate_rows(conn, query, page, offset)
            for row in rows:
                printer = _printer(row)
                if query.accept(printer):
                    found.append(printer)
                    if len(found) == query.limit:
                        break
            if len(rows) < page:
                break
            offset += page
        histories = self._histories(conn, [(p.node, p.model) for p in found], query.material, history)
        votes: dict[str, tuple[int, int]] = {}
        if found:
            nodes = sorted({p.node for p in found})
            params = {**{f"n{i}": x for i, x in enumerate(nodes)}, **{f"r{i}": x for i, x in enumerate(roles)}}
            votes = {str(n): (int(c), int(t or 0)) for n, c, t in _vote_totals(len(nodes), len(roles)).rows(conn, params)}
        return Matching(found, histories, votes)

    @staticmethod
    def _unclaimed(conn: sa.Connection, printers: Sequence[PrinterRecord]) -> list[PrinterRecord]:
        """The printers of a matching that no job holds now, in its order. The matching put free printers
        before busy ones and each group best first, so the first of them is the best free printer there is
        (one freed since the matching aside); [] when every one is held (then match again)."""
        if not printers:
            return []
        held: set[tuple[str, str]] = set()
        for start in range(0, len(printers), MAX_PRINTERS_ASKED):
            some = printers[start:start + MAX_PRINTERS_ASKED]
            params = {f"{k}{i}": v for i, x in enumerate(some) for k, v in (("n", x.node), ("p", x.printer))}
            held.update((str(n), str(p)) for n, p in _held_among(len(some)).rows(conn, params))
        return [x for x in printers if (x.node, x.printer) not in held]

    def _candidate_rows(self, conn: sa.Connection, q: MatchQuery, limit: int, offset: int
                        ) -> Sequence[sa.Row[tuple[object, ...]]]:
        """A page (``limit`` after ``offset``) of the best printers for ``q``, matched by the database over
        every printer.

        Online node, accepting, idle, clear bed, the material loaded (the caller checks it exactly), rates
        in one currency, within the box and its disc (see Box) and among the licensed nodes when given; free
        printers first, then those holding a job (offered to them, assigned, printing ...), so that an order
        still finds a node to wait for when every printer is busy. ``q.estimates`` maps each slicer profile
        to (seconds, grams) of one object; only printers with one of these profiles come back, ordered by
        the price of that estimate at their rates ("cheapest": within each currency, the currencies taking
        turns), by time ("fastest"), or by distance from ``q.near`` ("nearest"); ties by currency and price,
        then name. The caller still checks the build volume (any
        orientation) and the exact distance on what comes back.
        """
        if not q.estimates:
            return []
        ordering = q.order if q.order in ("cheapest", "fastest") or q.near is not None else "cheapest"
        query = _candidates_query(len(q.estimates), q.nodes is not None, _box_shape(q.box), ordering,
                                  self.engine.dialect.name)
        params = _match_params(q.material, q.box, q.nodes)
        for i, (profile, (seconds, grams)) in enumerate(sorted(q.estimates.items())):
            params.update({f"p{i}": profile, f"h{i}": seconds / 3600, f"g{i}": grams})
        if q.near is not None:
            params.update({"near_lat": q.near[0], "near_lon": q.near[1],
                           "stretch": math.cos(math.radians(q.near[0])) ** 2})
        if ordering != "cheapest":
            params.update({"lim": limit, "off": offset})
            return query.rows(conn, params)
        params.update({"lim": offset + limit, "off": 0})
        pages = [query.rows(conn, {**params, "currency": c}) for (c,) in _CURRENCIES.rows(conn) if c]
        return _interleaved(pages, limit, offset)

    @staticmethod
    def _histories(conn: sa.Connection, pairs: Sequence[tuple[str, str]], material: str, limit: int
                   ) -> dict[tuple[str, str], list[tuple[float, float, float, float]]]:
        """(estimated s, actual s, estimated g, actual g) of the latest `limit` successful prints of
        each (node, printer model) in a material (in no set order), in one query per MAX_PRINTERS_ASKED pairs."""
        wanted = sorted(set(pairs))
        out: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {p: [] for p in wanted}
        for start in range(0, len(wanted), MAX_PRINTERS_ASKED):
            chunk = wanted[start:start + MAX_PRINTERS_ASKED]
            params: dict[str, object] = {"material": material, "lim": limit}
            for i, (node, model) in enumerate(chunk):
                params.update({f"n{i}": node, f"m{i}": model})
            for pair, a, b, c, d in _latest_of(len(chunk)).rows(conn, params):
                out[chunk[pair]].append((float(a), float(b), float(c), float(d)))
        return out

    # -- placing orders: one write transaction per order, or one for many -------------------

    def _thd_place(self, build: Build) -> PlaceResult:
        """Choose and write an order in one write transaction: ``build`` chooses it, matching printers
        with what the transaction sees; the order, its objects, its idempotency key (and the quote it
        was chosen from when that is new) and its jobs are written, the order's state following its
        jobs. ``Placement.create_jobs`` runs inside the transaction (JobService._claim_writer).

        Returns:
            (the order, its jobs, True when it was created now); an order the key already names
            (the caller looked it up before; a concurrent placement may have used it since) comes
            back with no jobs and False.

        Raises:
            AlreadyExists: the key already names an order placed with a different request.
            StorageError: the database is busy (retryable).
            HubError: what ``build`` raised (nothing was written).
        """
        built: list[Placement | None] = []
        try:
            with write(self.engine) as conn:
                # a key used meanwhile fails its insert (primary key): answered in the except
                (made,) = self._write_placements(conn, [build], built)
        except sa.exc.OperationalError as exc:
            raise StorageError("the order could not be stored now (the database is busy): retry",
                               retryable=True) from exc
        except sa.exc.IntegrityError as exc:
            placed = built[0] if built else None
            if placed is None or not placed.key:
                raise StorageError(f"the order could not be stored: {exc.orig}") from exc
            with connect(self.engine) as conn:
                found = self._keyed(conn, placed.order.customer, placed.key)
                if found is None:
                    raise StorageError(f"order {placed.order.id} could not be stored: {exc.orig}") from exc
                return self._same_request(conn, found, placed.request_sha256, placed.key), [], False
        if isinstance(made, HubError):
            raise made
        return made

    def _thd_place_many(self, builds: Sequence[Build]) -> list[PlaceResult | Exception]:
        """Choose and write many orders in one write transaction, each as _thd_place would, one after
        the other (each one's matching sees the claims of those before it), with one statement per
        table for their quotes, keys and objects. Should a write fail, each order is placed on its
        own, so that one order's failure (a key used meanwhile, a busy database) is its own and not
        its batch-mates'.

        Returns:
            per build, what _thd_place returns or the exception it raises.
        """
        if len(builds) > 1:
            try:
                with write(self.engine) as conn:
                    return list(self._write_placements(conn, builds, []))
            except (sa.exc.SQLAlchemyError, HubError):
                pass  # rolled back: each on its own below
        out: list[PlaceResult | Exception] = []
        for build in builds:
            try:
                out.append(self._thd_place(build))
            except (HubError, sa.exc.SQLAlchemyError) as exc:
                out.append(exc)
        return out

    def _order_of_quote(self, conn: sa.Connection, placed: Placement) -> str | None:
        """The order a stored quote was placed as, if any, unless the placement's key was used already (a
        retry racing its first attempt gets that order, as from the key). On PostgreSQL the quote's row is
        locked first, so two placements of one quote take turns (SQLite has one writer)."""
        quote_id = placed.order.quote_id
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.select(q.c.id).where(q.c.id == quote_id).with_for_update())
        found = conn.execute(_ORDER_OF_QUOTE, {"quote_id": quote_id}).scalar()
        if found is None or (placed.key and self._keyed(conn, placed.order.customer, placed.key) is not None):
            return None  # free, or the key names an order already: its insert fails and the key's answer follows
        return str(found)

    def _write_placements(self, conn: sa.Connection, builds: Sequence[Build], built: list[Placement | None]
                          ) -> list[PlaceResult | HubError]:
        """Build and write each order in turn (its row and its jobs, which claim printers), then the
        quotes, keys, objects and states of all of them; ``built`` collects what each build chose."""
        def match(query: MatchQuery) -> Matching:
            return self._matching(conn, query)

        out: list[PlaceResult | HubError] = []
        written: list[tuple[int, Placement, list[Job]]] = []
        for build in builds:
            try:
                placed = build(match)
            except HubError as exc:  # that order's outcome; it wrote nothing
                built.append(None)
                out.append(exc)
                continue
            used = self._order_of_quote(conn, placed) if placed.quote is None and placed.order.quote_id else None
            if used is not None:
                built.append(None)
                out.append(FailedPrecondition(f"quote {placed.order.quote_id} was ordered already (order {used}): "
                                              "ask for a new quote with `spime quote` to order again"))
                continue
            built.append(placed)
            _INSERT_ORDER.count(conn, _order_values(placed.order))
            written.append((len(out), placed, placed.create_jobs(conn)))
            out.append(_PENDING)
        items = [x for _, x, _ in written]
        quotes = [{"id": x.quote.id, "customer": x.quote.customer, "design": x.quote.design,
                   "revision_id": x.quote.revision_id, "spec": x.quote.spec_json, "options": x.quote.options_json,
                   "created_at": x.quote.created_at, "expires_at": x.quote.expires_at}
                  for x in items if x.quote is not None]
        if quotes:
            _INSERT_QUOTE.many(conn, quotes)
        keys = [{"customer": x.order.customer, "key": x.key, "request_sha256": x.request_sha256,
                 "order_id": x.order.id, "created_at": x.order.created_at} for x in items if x.key]
        if keys:
            _INSERT_KEY.many(conn, keys)
        objects = [{"incarnation_id": o.incarnation_id, "order_id": x.order.id, "position": o.position,
                    "job_id": o.job_id, "part": o.part} for x in items for o in x.order.objects]
        if objects:
            _INSERT_OBJECT.many(conn, objects)
        moved = []
        for i, x, jobs in written:
            state = derive_state(j.state.value for j in jobs)
            if state is not x.order.state:
                moved.append({"order_id": x.order.id, "state": state.value})
            out[i] = (replace(x.order, state=state), jobs, True)
        if moved:
            _SET_STATE.many(conn, moved)
        return out
