"""Orders, quotes, idempotency keys, grants, ratings, the value ledger and value equations (Core).

Invariants live in the schema: an idempotency key names one order per customer
(primary key), one rating per person per job per role (unique), and an order is
settled into the ledger once (a compare-and-set on `orders.settled`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from hub.domain import Attribution
from hub.errors import AlreadyExists, InvalidTransition, NotFound, StorageError
from hub.jobs import HELD
from hub.ledger import Share
from hub.orders import Grant, LedgerRow, Order, OrderObject, OrderState, RatingRow, StoredQuote
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

    def _thd_create_order(self, order: Order, key: str, request_sha256: str) -> tuple[Order, bool]:
        """Insert an order with its objects and its idempotency key, or return the order the key names.

        Returns:
            (the order, True when it was created now).

        Raises:
            AlreadyExists: the key already names an order placed with a different request.
        """
        try:
            with write(self.engine) as conn:
                if key:
                    found = self._keyed(conn, order.customer, key)
                    if found is not None:
                        return self._same_request(conn, found, request_sha256, key), False
                conn.execute(o.insert().values(**_order_values(order)))
                if order.objects:
                    conn.execute(ob.insert(), [{"incarnation_id": x.incarnation_id, "order_id": order.id,
                                                "position": x.position, "job_id": x.job_id, "part": x.part}
                                               for x in order.objects])
                if key:
                    conn.execute(k.insert().values(customer=order.customer, key=key, request_sha256=request_sha256,
                                                   order_id=order.id, created_at=order.created_at))
        except sa.exc.OperationalError as exc:
            raise StorageError(f"order {order.id} could not be stored now (the database is busy): retry",
                               retryable=True) from exc
        except sa.exc.IntegrityError as exc:
            # a concurrent PlaceOrder with the same key won the insert: answer with its order
            with connect(self.engine) as conn:
                found = self._keyed(conn, order.customer, key) if key else None
                if found is None:
                    raise StorageError(f"order {order.id} could not be stored: {exc.orig}") from exc
                return self._same_request(conn, found, request_sha256, key), False
        return order, True

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

    def _thd_set_jobs(self, order_id: str, jobs: Mapping[str, str], state: OrderState, now: str) -> Order:
        """Record the job of each object (incarnation id → job id) and the order's new state."""
        with write(self.engine) as conn:
            for incarnation, job_id in jobs.items():
                conn.execute(ob.update().where(ob.c.incarnation_id == incarnation).values(job_id=job_id))
            conn.execute(o.update().where(o.c.id == order_id).values(state=state.value, updated_at=now))
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

    def _thd_candidates(self, material: str, per_hour: float, grams: float, limit: int) -> list[PrinterRecord]:
        """The cheapest printers that can take a job now, matched by the database over every printer.

        Online node, accepting, idle, clear bed, the material loaded and no job held (offered to it,
        assigned, printing ...); ordered by the price of
        ``per_hour`` hours and ``grams`` of filament at each printer's rates. The caller still checks
        the build volume (any orientation) on what comes back.
        """
        pr, n, jb = schema.printers, schema.nodes, schema.jobs
        cost = pr.c.hour_minor * per_hour + pr.c.gram_minor * grams
        busy = sa.exists().where(jb.c.node == pr.c.node, jb.c.printer == pr.c.printer,
                                 jb.c.state.in_([s.value for s in HELD]))
        query = (sa.select(pr, n.c.online, n.c.latitude, n.c.longitude, n.c.last_seen).join(n, n.c.name == pr.c.node)
                 .where(n.c.online == sa.true(), pr.c.accepting == sa.true(), pr.c.bed_clear == sa.true(),
                        pr.c.phase == "idle", pr.c.hour_currency != "", pr.c.hour_currency == pr.c.gram_currency,
                        pr.c.materials.ilike(f'%"{_like_escape(material)}"%', escape="\\"), ~busy)
                 .order_by(cost, pr.c.node, pr.c.printer).limit(limit))
        with connect(self.engine) as conn:
            return [_printer(row) for row in conn.execute(query)]

    # -- measured history for quotes ---------------------------------------------------------

    def _thd_history(self, node: str, printer_model: str, material: str, limit: int = 200) -> list[tuple[float, float, float, float]]:
        """(estimated s, actual s, estimated g, actual g) of the node's latest successful prints of a model and material."""
        query = (sa.select(f.c.estimated_seconds, f.c.actual_seconds, f.c.estimated_filament_g, f.c.actual_filament_g)
                 .where(f.c.node == node, f.c.printer_model == printer_model, f.c.material == material,
                        f.c.outcome == "success")
                 .order_by(f.c.finished_at.desc()).limit(limit))
        with connect(self.engine) as conn:
            return [(float(a), float(b), float(c), float(d)) for a, b, c, d in conn.execute(query)]
