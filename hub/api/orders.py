"""grpc.aio servicer of Orders (and the ledger half of Records): parse → service call → convert."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

from spimeforge.v1 import common_pb2, orders_pb2, orders_pb2_grpc, records_pb2

from hub import ledger, limits, orders
from hub.api import convert as cv
from hub.api.interceptors import current_account
from hub.api.servicers import RecordsServicer
from hub.errors import FailedPrecondition, InvalidArgument
from hub.jobs import Job
from hub.quotes import QuoteOption
from hub.service import Hub
from hub.service.grants import GrantRequest, RecordedGrant, RevokeRequest, signer_fingerprint
from hub.service.orders import OrderRequest, OrderService, OrderView, QuoteResult, qr_payload

__all__ = ["OrdersServicer", "RecordsWithLedgerServicer"]

_STATE = {s: getattr(orders_pb2, f"ORDER_STATE_{s.name}") for s in orders.OrderState}


def _service(hub: Hub) -> OrderService:
    found = getattr(hub, "orders", None)
    if found is None:
        raise FailedPrecondition("this hub takes no orders")
    return found  # type: ignore[no-any-return]


def _money(currency: str, minor: int) -> common_pb2.Money:
    return common_pb2.Money(currency=currency, minor_units=minor)


def _spec_from_proto(spec: orders_pb2.OrderSpec) -> OrderRequest:
    if not math.isfinite(spec.max_km):
        raise InvalidArgument("max_km must be a finite number")
    return OrderRequest(design=spec.design, revision_id=spec.revision_id, parameters=dict(spec.parameters),
                        material=spec.material, color=spec.color, quantity=spec.quantity, near=spec.near,
                        paid=spec.paid, max_km=spec.max_km)


def _option_to_proto(index: int, o: QuoteOption) -> orders_pb2.QuoteOption:
    cur = o.price.currency
    return orders_pb2.QuoteOption(
        option=index, node=o.node, printer=o.printer, printer_model=o.printer_model,
        price=_money(cur, o.price.total_minor), material_cost=_money(cur, o.price.material_minor),
        machine_cost=_money(cur, o.price.machine_minor), fees=_money(cur, o.price.fees_minor),
        contribution=_money(cur, o.price.contribution_minor),
        estimated_seconds=o.estimated_seconds, filament_g=o.filament_g, has_distance=o.distance_km is not None,
        distance_km=o.distance_km or 0.0, reputation=o.reputation, ratings=o.ratings,
        earliest_start=o.earliest_start, correction=o.correction.note, history_prints=o.correction.prints,
    )


def _quote_to_proto(q: QuoteResult) -> orders_pb2.QuoteResponse:
    best = q.options[0] if q.options else None
    response = orders_pb2.QuoteResponse(
        fabricable=bool(q.options), refusal=q.refusal, quote_id=q.id, expires_at=q.expires_at,
        revision_id=q.revision_id, options=[_option_to_proto(i, o) for i, o in enumerate(q.options)],
        candidate_nodes=sorted({o.node for o in q.options}), sliced_from_cache=q.cached,
        attributions=[cv._attribution_to_proto(a) for a in q.attributions],
    )
    if best is not None:
        response.price.CopyFrom(_money(best.price.currency, best.price.total_minor))
        response.estimated_seconds = best.estimated_seconds
        response.estimated_filament_g = best.filament_g
    return response


def _object_to_proto(obj: orders.OrderObject, jobs: dict[str, Job]) -> orders_pb2.OrderObject:
    job = jobs.get(obj.job_id)
    out = orders_pb2.OrderObject(incarnation_id=obj.incarnation_id, qr_payload=qr_payload(obj.incarnation_id),
                                 job_id=obj.job_id)
    if job is not None:
        out.state = job.state.value
        out.progress_percent = job.progress_percent
        out.layer = job.layer
        out.node = job.node or ""
        out.printer = job.printer or ""
    return out


def _order_to_proto(view: OrderView) -> orders_pb2.Order:
    o = view.order
    jobs = {j.id: j for j in view.jobs}
    first = view.jobs[0] if view.jobs else None
    return orders_pb2.Order(
        id=o.id, customer=o.customer, state=_STATE[o.state], node=(first.node if first and first.node else o.node),
        printer=(first.printer if first and first.printer else o.printer), job_id=first.id if first else "",
        progress_percent=view.progress_percent, layer=view.layer,
        price=_money(o.currency, o.price_minor), created_at=o.created_at, updated_at=o.updated_at,
        failure_reason=o.failure_reason, attributions=[cv._attribution_to_proto(a) for a in o.attributions],
        objects=[_object_to_proto(x, jobs) for x in o.objects], partial_cost=_money(o.currency, o.partial_cost_minor),
        estimated_seconds=o.estimated_seconds, quote_id=o.quote_id,
        spec=orders_pb2.OrderSpec(design=o.design, revision_id=o.revision_id, parameters=dict(o.parameters),
                                  material=o.material, quantity=o.quantity, near=o.near, paid=o.paid),
    )


def _grant_to_proto(recorded: RecordedGrant) -> orders_pb2.GrantRecord:
    g = recorded.grant
    record = orders_pb2.GrantRecord(id=g.id, design=g.design, revision_id=g.revision_id, scope=g.scope, node=g.node,
                                    until=g.until, granted_by=g.granted_by, granted_at=g.granted_at,
                                    statement_sha256=g.statement_sha256, signature=g.signature,
                                    statement=recorded.statement, key_fingerprint=signer_fingerprint(recorded.statement))
    if (r := recorded.revocation) is not None:
        record.revoked_at, record.revoked_by, record.revocation = r.revoked_at, r.revoked_by, r.statement
        record.revocation_signature = r.signature
        record.revocation_key_fingerprint = signer_fingerprint(r.statement, revocation=True)
    return record


class OrdersServicer(orders_pb2_grpc.OrdersServicer):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def Quote(self, request, context):  # type: ignore[no-untyped-def]
        return _quote_to_proto(await _service(self.hub).quote(current_account(), _spec_from_proto(request.spec)))

    async def PlaceOrder(self, request, context):  # type: ignore[no-untyped-def]
        spec = _spec_from_proto(request.spec) if request.HasField("spec") and not request.quote_id else None
        view = await _service(self.hub).place(current_account(), spec, request.quote_id, int(request.option),
                                              request.best, request.idempotency_key)
        return _order_to_proto(view)

    async def GetOrder(self, request, context):  # type: ignore[no-untyped-def]
        return _order_to_proto(await _service(self.hub).view(current_account(), request.order_id))

    async def ListOrders(self, request, context):  # type: ignore[no-untyped-def]
        converted: list[orders_pb2.Order] = []

        def fits(views: Sequence[OrderView]) -> int:
            converted.extend(_order_to_proto(v) for v in views)
            return limits.cut_page([o.ByteSize() for o in converted]).count

        views, token = await _service(self.hub).list_orders(current_account(), request.include_final,
                                                            int(request.page.page_size), request.page.page_token, fits)
        return orders_pb2.ListOrdersResponse(orders=converted[:len(views)], next_page_token=token)

    async def WatchOrder(self, request, context) -> AsyncIterator[orders_pb2.Order]:  # type: ignore[no-untyped-def]
        async for view in _service(self.hub).watch(current_account(), request.order_id):
            yield _order_to_proto(view)

    async def CancelOrder(self, request, context):  # type: ignore[no-untyped-def]
        return _order_to_proto(await _service(self.hub).cancel(current_account(), request.order_id, request.reason))

    async def RateOrder(self, request, context):  # type: ignore[no-untyped-def]
        r = request.rating
        view = await _service(self.hub).rate(current_account(), request.order_id, request.job_id, r.role,
                                             int(r.stars), {k: int(v) for k, v in r.criteria.items()}, r.comment)
        return _order_to_proto(view)

    async def Grant(self, request, context):  # type: ignore[no-untyped-def]
        grant = await _service(self.hub).grants.grant(current_account(), GrantRequest(
            request.design, request.revision_id, request.scope, request.node, request.until, request.signature,
            request.statement))
        return _grant_to_proto(grant)

    async def RevokeGrant(self, request, context):  # type: ignore[no-untyped-def]
        revoked = await _service(self.hub).grants.revoke(current_account(), RevokeRequest(
            request.grant_id, request.signature, request.statement))
        return _grant_to_proto(revoked)

    async def GetGrant(self, request, context):  # type: ignore[no-untyped-def]
        return _grant_to_proto(await _service(self.hub).grants.get_grant(request.grant_id))

    async def ListGrants(self, request, context):  # type: ignore[no-untyped-def]
        converted: list[orders_pb2.GrantRecord] = []

        def fits(grants: Sequence[RecordedGrant]) -> int:
            converted.extend(_grant_to_proto(g) for g in grants)
            return limits.cut_page([g.ByteSize() for g in converted]).count

        grants, token = await _service(self.hub).grants.list_grants(
            request.design, int(request.page.page_size), request.page.page_token, fits)
        return orders_pb2.ListGrantsResponse(grants=converted[:len(grants)], next_page_token=token)

    async def GetIncarnation(self, request, context):  # type: ignore[no-untyped-def]
        found = await _service(self.hub).incarnation(request.incarnation_id)
        return orders_pb2.Incarnation(**found)  # type: ignore[arg-type]


# Plain ASCII decimals: Decimal() also takes " 50 ", "-0", "5_0", "٥٠", "1E1" and "NaN".
_PERCENT = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,4})?")


def _percent(text: str, name: str) -> Decimal:
    if not _PERCENT.fullmatch(text):
        raise InvalidArgument(f"equation.{name} must be a percentage from 0 to 100 in plain digits with at most "
                              f"4 decimal places, like 60 or 12.5, got {text!r:.20}", field=f"equation.{name}")
    return Decimal(text)


def _equation_to_proto(design: str, eq: ledger.ValueEquation) -> records_pb2.ValueEquation:
    return records_pb2.ValueEquation(design=design, version=eq.version, maker=str(eq.maker_percent),
                                     design_lineage=str(eq.design_percent), commons=str(eq.commons_percent),
                                     own_revision=str(eq.own_revision_percent), upstream=str(eq.upstream_percent))


class RecordsWithLedgerServicer(RecordsServicer):
    """Records: the community record with aggregates, the ledger, value equations and participation."""

    async def GetRecord(self, request, context):  # type: ignore[no-untyped-def]
        record = await self.hub.records.get_record(request.design)
        return _record_extras(cv._record_to_proto(record), record)

    async def GetLedger(self, request, context):  # type: ignore[no-untyped-def]
        balances, entries = await _service(self.hub).ledger(request.design, request.node, int(request.limit))
        return records_pb2.LedgerResponse(
            balances=[records_pb2.Balance(recipient=r, total=_money(c, m)) for r, c, m in balances],
            entries=[records_pb2.LedgerEntry(order_id=e.order_id, recipient=e.recipient, share=e.share,
                                             amount=_money(e.currency, e.minor_units),
                                             equation_version=e.equation_version, explanation=e.explanation,
                                             design=e.design, at=e.at) for e in entries])

    async def SetValueEquation(self, request, context):  # type: ignore[no-untyped-def]
        e = request.equation
        proposed = ledger.ValueEquation(
            "1", _percent(e.maker, "maker"), _percent(e.design_lineage, "design_lineage"),
            _percent(e.commons, "commons"), _percent(e.own_revision, "own_revision"), _percent(e.upstream, "upstream"))
        eq = await _service(self.hub).grants.set_equation(current_account(), e.design, proposed)
        return _equation_to_proto(e.design, eq)

    async def SetParticipation(self, request, context):  # type: ignore[no-untyped-def]
        await _service(self.hub).set_participation(current_account(), request.design, request.rung)
        record = await self.hub.records.get_record(request.design)
        return _record_extras(cv._record_to_proto(record), record)


def _record_extras(out: records_pb2.CommunityRecord, record: Any) -> records_pb2.CommunityRecord:
    extras = getattr(record, "extras", None)
    if extras is None:
        return out
    for agg in extras.aggregates:
        out.aggregates.add(printer_model=agg.printer_model, material=agg.material, prints=agg.prints,
                           successes=agg.successes, success_rate=agg.success_rate,
                           mean_time_error=agg.mean_time_error, mean_filament_error=agg.mean_filament_error,
                           typical_settings=dict(agg.typical_settings), summary=agg.summary)
    rep = extras.reputation
    out.design_reputation.CopyFrom(records_pb2.Reputation(
        score=rep.score, mean=rep.mean, count=rep.count, criteria={k: v[0] for k, v in rep.criteria.items()}))
    out.participation = extras.participation
    out.value_equation.CopyFrom(_equation_to_proto(record.design, extras.equation))
    out.fabrication_count = extras.fabrication_count
    for name, rung, count in extras.ladder:
        out.ladder.add(name=name, rung=rung, contributions=count)
    for fab, proto in zip(record.fabrications, out.fabrications, strict=True):
        proto.incarnation_id = getattr(fab, "incarnation_id", "")
    for entry, proto in zip(record.ledger, out.ledger, strict=True):
        proto.explanation = getattr(entry, "explanation", "")
    return out
