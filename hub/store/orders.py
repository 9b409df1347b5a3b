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
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from hub.domain import Attribution, Design, PrintabilityRecord
from hub.errors import AlreadyExists, InvalidTransition, NotFound, StorageError
from hub.jobs import HELD, Job
from hub.ledger import Share
from hub.orders import (
    Grant,
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
from hub.store import schema
from hub.store.engine import connect, write

__all__ = ["OrderStore"]

o, q, k, ob = schema.orders, schema.quotes, schema.order_keys, schema.order_objects
g, rt, lg, ve, pa, f = (schema.grants, schema.ratings, schema.ledger_entries, schema.value_equations,
                        schema.participation, schema.fabrications)


def _attributions(text: str) -> tuple[Attribution, ...]:
    return tuple(Attribution(**{**a, "contributors": tuple(a["contributors"])}) for a in json.loads(text))


def _attributions_json(items: Sequence[Attribution]) -> str:
    return json.dumps([{"design": a.design, "revision_id": a.revision_id, "title": a.title, "license": a.license,
                        "licensor": a.licensor, "contributors": list(a.contributors), "notice": a.notice}
                       for a in items], sort_keys=True)


def _printer(row: sa.Row[tuple[object, ...]]) -> PrinterRecord:
    x = row._mapping
    return PrinterRecord(
        node=x["node"], printer=x["printer"], model=x["model"],
        build_volume_mm=(x["build_x_mm"], x["build_y_mm"], x["build_z_mm"]), nozzle_mm=x["nozzle_mm"],
        materials=tuple(json.loads(x["materials"])), phase=x["phase"], bed_clear=bool(x["bed_clear"]),
        accepting=bool(x["accepting"]), online=bool(x["online"]), rate_per_hour=(x["hour_currency"], x["hour_minor"]),
        rate_per_gram=(x["gram_currency"], x["gram_minor"]), slicer_profile=x["slicer_profile"],
        latitude=x["latitude"], longitude=x["longitude"], last_seen=x["last_seen"],
    )


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


def _lon_ranges(box: Box | None) -> int:
    """-1: no box; else how many longitude ranges it has (0 = every longitude)."""
    return -1 if box is None else len(box.lons)


def _match_params(material: str, box: Box | None, nodes: frozenset[str] | None) -> dict[str, object]:
    params: dict[str, object] = {"material": f'%"{_like_escape(material.lower())}"%'}
    if nodes is not None:
        params["nodes"] = sorted(nodes)
    if box is not None:
        params.update({"lat_min": box.lat_min, "lat_max": box.lat_max})
        for i, (lo, hi) in enumerate(box.lons):
            params.update({f"lo{i}": lo, f"hi{i}": hi})
    return params


def _material_loaded(dialect: str) -> sa.ColumnElement[bool]:
    """The material (bound lower-case as :material, a LIKE pattern) in the printer's JSON list, any case:
    SQLite's LIKE ignores ASCII case by itself (material names are ASCII), PostgreSQL has ILIKE."""
    if dialect == "sqlite":
        return _pr.c.materials.like(sa.bindparam("material"), escape="\\")
    return _pr.c.materials.ilike(sa.bindparam("material"), escape="\\")


def _match_filters(nodes: bool, lons: int, dialect: str) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [
        _n.c.online == sa.true(), _pr.c.accepting == sa.true(), _pr.c.bed_clear == sa.true(), _pr.c.phase == "idle",
        _pr.c.hour_currency != "", _pr.c.hour_currency == _pr.c.gram_currency,
        _material_loaded(dialect)]
    if nodes:
        where.append(_pr.c.node.in_(sa.bindparam("nodes", expanding=True)))
    if lons >= 0:
        where.append(_n.c.latitude.between(sa.bindparam("lat_min"), sa.bindparam("lat_max")))
    if lons > 0:
        where.append(sa.or_(*(_n.c.longitude.between(sa.bindparam(f"lo{i}"), sa.bindparam(f"hi{i}"))
                              for i in range(lons))))
    return where


@functools.lru_cache(maxsize=64)
def _profiles_query(nodes: bool, lons: int, dialect: str) -> sa.Select[tuple[object]]:
    return (sa.select(_pr.c.slicer_profile).join(_n, _n.c.name == _pr.c.node)
            .where(*_match_filters(nodes, lons, dialect)).distinct())


@functools.lru_cache(maxsize=256)
def _candidates_query(profiles: int, nodes: bool, lons: int, order: str, dialect: str
                      ) -> sa.Select[tuple[object, ...]]:
    """Printers that can take a job with one of `profiles` slicer profiles (bound as p0.., with hours
    h0.. and grams g0.. of one object): free ones first, then those holding a job (an order placed
    on them waits in the queue), each best first by `order`; a page of :lim after :off."""
    hours = sa.case(*((_pr.c.slicer_profile == sa.bindparam(f"p{i}"), sa.bindparam(f"h{i}", type_=sa.Float))
                      for i in range(profiles)), else_=0.0)
    grams = sa.case(*((_pr.c.slicer_profile == sa.bindparam(f"p{i}"), sa.bindparam(f"g{i}", type_=sa.Float))
                      for i in range(profiles)), else_=0.0)
    cost = _pr.c.hour_minor * hours + _pr.c.gram_minor * grams
    keys: list[sa.ColumnElement[Any]] = [cost]
    if order == "fastest":
        keys = [hours, cost]
    elif order == "nearest":
        dlat = _n.c.latitude - sa.bindparam("near_lat", type_=sa.Float)
        dlon = _n.c.longitude - sa.bindparam("near_lon", type_=sa.Float)
        keys = [_n.c.latitude.is_(None), dlat * dlat + dlon * dlon * sa.bindparam("stretch", type_=sa.Float), cost]
    busy = sa.case((sa.exists().where(_jb.c.node == _pr.c.node, _jb.c.printer == _pr.c.printer,
                                      _jb.c.state.in_([s.value for s in HELD])), 1), else_=0)
    return (sa.select(_pr, _n.c.online, _n.c.latitude, _n.c.longitude, _n.c.last_seen).join(_n, _n.c.name == _pr.c.node)
            .where(*_match_filters(nodes, lons, dialect),
                   _pr.c.slicer_profile.in_([sa.bindparam(f"p{i}") for i in range(profiles)]))
            .order_by(busy, *keys, _pr.c.node, _pr.c.printer)
            .limit(sa.bindparam("lim", type_=sa.Integer)).offset(sa.bindparam("off", type_=sa.Integer)))


_INSERT_QUOTE, _INSERT_ORDER, _INSERT_KEY, _INSERT_OBJECT = q.insert(), o.insert(), k.insert(), ob.insert()
_SET_STATE = o.update().where(o.c.id == sa.bindparam("order_id")).values(state=sa.bindparam("state"))
_DESIGN = sa.select(schema.designs).where(schema.designs.c.slug == sa.bindparam("slug"))
_REPORTS = (sa.select(schema.printability_reports)
            .where(schema.printability_reports.c.revision_id == sa.bindparam("revision_id"))
            .order_by(schema.printability_reports.c.path))
_VOTES = sa.select(rt.c.node, rt.c.stars, rt.c.criteria).where(
    rt.c.node.in_(sa.bindparam("nodes", expanding=True)), rt.c.role.in_(sa.bindparam("roles", expanding=True)))
_RANK = sa.func.row_number().over(partition_by=(f.c.node, f.c.printer_model),
                                  order_by=(f.c.finished_at.desc(), f.c.incarnation_id.desc()))
_LATEST = (sa.select(f.c.node, f.c.printer_model, f.c.estimated_seconds, f.c.actual_seconds, f.c.estimated_filament_g,
                     f.c.actual_filament_g, _RANK.label("rank"))
           .where(f.c.node.in_(sa.bindparam("nodes", expanding=True)), f.c.material == sa.bindparam("material"),
                  f.c.outcome == "success").subquery())
_HISTORIES = sa.select(_LATEST).where(_LATEST.c.rank <= sa.bindparam("lim", type_=sa.Integer))


class OrderStore:
    """One connector for the order aggregate and the tables that hang off it."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

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
        if found.request_sha256 != request_sha256:
            raise AlreadyExists(f"idempotency key {key!r} already placed order {found.order_id} with a different "
                                "request: use a new key for a new order")
        return str(found.order_id)

    @staticmethod
    def _keyed(conn: sa.Connection, customer: str, key: str) -> sa.Row[tuple[object, ...]] | None:
        return conn.execute(sa.select(k).where(k.c.customer == customer, k.c.key == key)).first()

    def _same_request(self, conn: sa.Connection, keyed: sa.Row[tuple[object, ...]], sha: str, key: str) -> Order:
        if keyed.request_sha256 != sha:
            raise AlreadyExists(f"idempotency key {key!r} already placed order {keyed.order_id} with a different "
                                "request: use a new key for a new order")
        return self._load(conn, str(keyed.order_id))

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
        query = sa.select(o.c.id).order_by(o.c.id.desc()).limit(limit)
        if customer is not None:
            query = query.where(o.c.customer == customer)
        if not include_final:
            query = query.where(o.c.state.not_in(list(finals)))
        if before:
            query = query.where(o.c.id < before)
        with connect(self.engine) as conn:
            return [self._load(conn, str(i)) for i in conn.execute(query).scalars()]

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
        """Store a rating; a second one by the same person for the same job and role replaces the first."""
        key = (rt.c.order_id == rating.order_id, rt.c.job_id == rating.job_id, rt.c.rater == rating.rater,
               rt.c.role == rating.role)
        with write(self.engine) as conn:
            conn.execute(rt.delete().where(*key))
            conn.execute(rt.insert().values(
                design=rating.design, order_id=rating.order_id, job_id=rating.job_id, node=rating.node,
                rater=rating.rater, role=rating.role, stars=rating.stars,
                criteria=json.dumps(dict(rating.criteria), sort_keys=True), comment=rating.comment, at=rating.at))

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

    # -- grants ------------------------------------------------------------------------------

    def _thd_add_grant(self, grant: Grant, statement: str) -> None:
        with write(self.engine) as conn:
            conn.execute(g.insert().values(
                id=grant.id, design=grant.design, revision_id=grant.revision_id, scope=grant.scope, node=grant.node,
                until=grant.until, granted_by=grant.granted_by, granted_at=grant.granted_at, statement=statement,
                statement_sha256=grant.statement_sha256, signature=grant.signature))

    def _thd_grants(self, design: str, now: str | None = None) -> list[Grant]:
        """A design's grants (only those valid at ``now`` when given), oldest first."""
        query = sa.select(g).where(g.c.design == design, g.c.revoked_at == "").order_by(g.c.granted_at, g.c.id)
        if now is not None:
            query = query.where(g.c.until > now)
        with connect(self.engine) as conn:
            return [Grant(x.id, x.design, x.revision_id, x.scope, x.node, x.until, x.granted_by, x.granted_at,
                          x.statement_sha256, x.signature) for x in conn.execute(query)]

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

    def _thd_equation(self, design: str) -> tuple[int, str] | None:
        query = sa.select(ve.c.version, ve.c.equation).where(ve.c.design == design).order_by(ve.c.version.desc()).limit(1)
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

    def _thd_rung(self, design: str) -> str | None:
        with connect(self.engine) as conn:
            return conn.execute(sa.select(pa.c.rung).where(pa.c.design == design)).scalar()

    def _thd_set_rung(self, design: str, rung: str, by: str, now: str) -> None:
        with write(self.engine) as conn:
            conn.execute(pa.delete().where(pa.c.design == design))
            conn.execute(pa.insert().values(design=design, rung=rung, set_by=by, set_at=now))

    # -- matching ----------------------------------------------------------------------------

    def _thd_design(self, slug: str) -> Design:
        """A design as an order needs it, in one read: slug, title, licence, head revision and the
        attributions of its lineage (maintainers, tags and counts are left empty).

        Raises:
            NotFound: no such design.
        """
        with connect(self.engine) as conn:
            x = conn.execute(_DESIGN, {"slug": slug}).first()
        if x is None:
            raise NotFound(f"no design named {slug!r}; push it with --create or search with `spime search`")
        return Design(x.slug, x.title, x.description, x.license, x.head_revision_id or "", (), (), (),
                      x.created_at, x.updated_at, 0, _attributions(x.attributions or "[]"))

    def _thd_profiles(self, material: str, box: Box | None = None, nodes: frozenset[str] | None = None) -> list[str]:
        """The slicer profiles of the printers that could take a job (each needs its own slice);
        printers busy now count too, so that this read stays cheap."""
        query = _profiles_query(nodes is not None, _lon_ranges(box), self.engine.dialect.name)
        with connect(self.engine) as conn:
            return sorted(str(p) for p in conn.execute(query, _match_params(material, box, nodes)).scalars())

    def _thd_candidates(self, material: str, estimates: Mapping[str, tuple[float, float]], limit: int, *,
                        box: Box | None = None, nodes: frozenset[str] | None = None, offset: int = 0,
                        order: str = "cheapest", near: tuple[float, float] | None = None) -> list[PrinterRecord]:
        """The best printers for a job, matched by the database over every printer.

        Online node, accepting, idle, clear bed, the material loaded (the caller checks it exactly),
        rates in one currency, within the box and among the licensed nodes when given; free printers
        first, then those holding a job (offered to them, assigned, printing ...), so that an order
        still finds a node to wait for when every printer is busy. ``estimates`` maps each slicer
        profile to (seconds, grams) of one object; only printers with one of these profiles come
        back, ordered by the price of that estimate at their rates ("cheapest"), by time
        ("fastest"), or by distance from ``near`` ("nearest"); ties by price, then name. The caller
        still checks the build volume (any orientation) and the exact distance on what comes back.
        """
        if not estimates:
            return []
        ordering = order if order in ("cheapest", "fastest") or near is not None else "cheapest"
        query = _candidates_query(len(estimates), nodes is not None, _lon_ranges(box), ordering,
                                  self.engine.dialect.name)
        params = _match_params(material, box, nodes)
        for i, (profile, (seconds, grams)) in enumerate(sorted(estimates.items())):
            params.update({f"p{i}": profile, f"h{i}": seconds / 3600, f"g{i}": grams})
        if near is not None:
            params.update({"near_lat": near[0], "near_lon": near[1], "stretch": math.cos(math.radians(near[0])) ** 2})
        params.update({"lim": limit, "off": offset})
        with connect(self.engine) as conn:
            return [_printer(row) for row in conn.execute(query, params)]

    def _thd_reports(self, revision_id: str) -> tuple[PrintabilityRecord, ...]:
        """A revision's printability reports as stored now (a report may be replaced after the push)."""
        with connect(self.engine) as conn:
            return tuple(PrintabilityRecord(x.path, bool(x.ok), json.loads(x.report))
                         for x in conn.execute(_REPORTS, {"revision_id": revision_id}))

    def _thd_votes(self, nodes: Sequence[str], roles: Sequence[str]) -> dict[str, list[tuple[int, dict[str, int]]]]:
        """(stars, criteria) of the ratings of these nodes in these roles, per node (one query)."""
        out: dict[str, list[tuple[int, dict[str, int]]]] = {}
        if not nodes:
            return out
        with connect(self.engine) as conn:
            for node, stars, criteria in conn.execute(_VOTES, {"nodes": list(nodes), "roles": list(roles)}):
                out.setdefault(str(node), []).append((int(stars), json.loads(criteria)))
        return out

    def _thd_histories(self, pairs: Sequence[tuple[str, str]], material: str, limit: int = 200
                       ) -> dict[tuple[str, str], list[tuple[float, float, float, float]]]:
        """(estimated s, actual s, estimated g, actual g) of the latest `limit` successful prints of
        each (node, printer model) in a material, in one query."""
        if not pairs:
            return {}
        wanted = set(pairs)
        out: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {p: [] for p in wanted}
        params = {"nodes": sorted({p[0] for p in pairs}), "material": material, "lim": limit}
        with connect(self.engine) as conn:
            for node, model, a, b, c, d, _ in conn.execute(_HISTORIES, params):
                if (node, model) in wanted:
                    out[(node, model)].append((float(a), float(b), float(c), float(d)))
        return out

    # -- placing an order in one transaction ---------------------------------------------------

    def _thd_place(self, order: Order, key: str, request_sha256: str, quote: StoredQuote | None,
                   create_jobs: Callable[[sa.Connection], list[Job]]) -> tuple[Order, list[Job], bool]:
        """Write an order, its objects, its idempotency key (and the quote it was chosen from when
        that is new) and its jobs in one write transaction; the order's state follows its jobs.
        ``create_jobs`` runs inside the transaction (JobService._claim_writer).

        Returns:
            (the order, its jobs, True when it was created now); an order the key already names
            (the caller looked it up before; a concurrent placement may have used it since) comes
            back with no jobs and False.

        Raises:
            AlreadyExists: the key already names an order placed with a different request.
            StorageError: the database is busy (retryable).
        """
        try:
            with write(self.engine) as conn:
                # a key used meanwhile fails the insert below (its primary key): answered in the except
                if quote is not None:
                    conn.execute(_INSERT_QUOTE, {
                        "id": quote.id, "customer": quote.customer, "design": quote.design,
                        "revision_id": quote.revision_id, "spec": quote.spec_json, "options": quote.options_json,
                        "created_at": quote.created_at, "expires_at": quote.expires_at})
                conn.execute(_INSERT_ORDER, _order_values(order))
                if key:
                    conn.execute(_INSERT_KEY, {"customer": order.customer, "key": key, "request_sha256": request_sha256,
                                               "order_id": order.id, "created_at": order.created_at})
                jobs = create_jobs(conn)
                if order.objects:
                    conn.execute(_INSERT_OBJECT, [{"incarnation_id": x.incarnation_id, "order_id": order.id,
                                                   "position": x.position, "job_id": x.job_id, "part": x.part}
                                                  for x in order.objects])
                state = derive_state(j.state.value for j in jobs)
                if state is not order.state:
                    conn.execute(_SET_STATE, {"order_id": order.id, "state": state.value})
        except sa.exc.OperationalError as exc:
            raise StorageError(f"order {order.id} could not be stored now (the database is busy): retry",
                               retryable=True) from exc
        except sa.exc.IntegrityError as exc:
            with connect(self.engine) as conn:
                found = self._keyed(conn, order.customer, key) if key else None
                if found is None:
                    raise StorageError(f"order {order.id} could not be stored: {exc.orig}") from exc
                return self._same_request(conn, found, request_sha256, key), [], False
        return replace(order, state=state), jobs, True
