"""Orders through real stubs on SQLite and PostgreSQL: quote (a real slice), order, watch, print by a node, rate, ledger."""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path

import grpc
import pytest
from spimeforge.v1 import nodes_pb2, orders_pb2, orders_pb2_grpc, records_pb2, records_pb2_grpc

from hub import geo
from hub.service import quoting
from hub.service.revision_trees import TreeBudget
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, wait_for
from tests.hub.grant_signing import registered_key, signed_grant
from tests.hub.harness import manifest_toml

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL

ROOT = Path(__file__).resolve().parents[2]
CUBE = ROOT / "designs" / "calibration-cube"
FILES = {"calibration-cube.stl": (CUBE / "calibration-cube.stl").read_bytes(),
         "calibration-cube.scad": (CUBE / "calibration-cube.scad").read_bytes()}


def cube_manifest(name: str = "cube", license: str = "CC-BY-4.0") -> str:
    return manifest_toml(name, license=license, files=("calibration-cube.stl",),
                         extra='[openscad]\nsource = "calibration-cube.scad"\n'
                               'parameters = { size = 20, mark_depth = 0.6, chamfer = 0.6 }\n')


def _orders(hub: ClockedHub) -> orders_pb2_grpc.OrdersStub:
    return orders_pb2_grpc.OrdersStub(hub.channel)


def _lab(hub: ClockedHub) -> tuple[FakeAgent, orders_pb2_grpc.OrdersStub]:
    """Node lab-1 connected with one PLA printer, and the orders stub."""
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    return agent, _orders(hub)


def _push(hub: ClockedHub, name: str = "cube", license: str = "CC-BY-4.0") -> str:
    files = dict(FILES)
    return str(hub.push("alice", name, files, manifest=cube_manifest(name, license), create=True).revision_id)


def _spec(design: str = "cube", **kw: object) -> orders_pb2.OrderSpec:
    fields: dict[str, object] = {"design": design, "material": "PLA", "quantity": 1, "near": "52.52,13.40", "paid": True}
    fields.update(kw)
    return orders_pb2.OrderSpec(**fields)  # type: ignore[arg-type]


def _code(call: object, *args: object, **kwargs: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value.code()  # type: ignore[no-any-return]


def test_quotes_with_the_same_parameters_render_once_and_keep_no_copy(hub: ClockedHub) -> None:
    """A render with a customer's parameters goes through the hub's bounded render cache (its renders
    directory grew by one STL per parameter set ever quoted, for ever); a quote's own copy goes with it."""
    _push(hub)
    agent, stub = _lab(hub)

    def quote(size: str) -> orders_pb2.QuoteOption:
        answer = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(parameters={"size": size})), metadata=hub.md("carol"))
        return answer.options[0]

    first, again, other = quote("25"), quote("25"), quote("30")
    estimator = hub.composed.hub.orders.estimator  # type: ignore[union-attr]
    renders = estimator._renders
    assert renders is not None and (renders.renders, renders.hits) == (2, 1)
    assert first.price == again.price and other.filament_g > first.filament_g  # a larger cube: more filament
    assert renders.max_bytes == quoting.RENDER_CACHE_BYTES and renders.status()["entries"] == 2
    assert not list((estimator.work_dir / "tmp").iterdir())  # each quote's copy removed after slicing
    agent.close()


def test_revision_trees_for_quotes_stay_within_their_budget(hub: ClockedHub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each quoted revision's files were laid out under quotes/revisions/<id> and kept for ever (anyone can
    quote any revision); past the budget the least recently used tree goes, and comes back when quoted again."""
    monkeypatch.setattr(quoting, "TREE_BUDGET", TreeBudget(max_bytes=1 << 30, max_trees=1))
    first, second = _push(hub, "cube"), _push(hub, "cube-b")
    agent, stub = _lab(hub)

    def quote(design: str) -> orders_pb2.QuoteOption:
        return stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design)), metadata=hub.md("carol")).options[0]

    estimator = hub.composed.hub.orders.estimator  # type: ignore[union-attr]
    trees = estimator.work_dir / "trees" / "by-id"
    before = quote("cube")
    assert [p.name for p in trees.iterdir()] == [first]
    quote("cube-b")
    assert [p.name for p in trees.iterdir()] == [second] and not (estimator.work_dir / "revisions").exists()
    assert quote("cube").price == before.price  # built again on demand
    assert [p.name for p in trees.iterdir()] == [first] and estimator._trees.status()["held"] == 0
    agent.close()


def test_quote_order_print_rate_and_ledger(hub: ClockedHub) -> None:
    _push(hub)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer(materials=("PLA", "PETG"))])
    agent.connect()
    stub = _orders(hub)
    quote = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(quantity=2)), metadata=hub.md("carol"))
    assert quote.fabricable and quote.candidate_nodes == ["lab-1"] and quote.quote_id
    [option] = quote.options
    assert option.node == "lab-1" and option.has_distance and option.distance_km < 20
    assert option.estimated_seconds > 0 and option.filament_g > 0 and option.ratings == 0
    parts = (option.material_cost, option.machine_cost, option.fees, option.contribution)
    assert option.price.minor_units == sum(p.minor_units for p in parts) and option.contribution.minor_units > 0
    assert "measured print" in option.correction
    again = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(quantity=2)), metadata=hub.md("carol"))
    assert again.sliced_from_cache and again.options[0].price == option.price
    assert quote.attributions[0].design == "cube" and "CC-BY-4.0" in quote.attributions[0].notice

    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=quote.quote_id, idempotency_key="k1"),
                             metadata=hub.md("carol"))
    assert placed.price == option.price and len(placed.objects) == 2
    assert all(o.qr_payload == "SPIME:" + o.incarnation_id.upper() for o in placed.objects)
    same = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=quote.quote_id, idempotency_key="k1"),
                           metadata=hub.md("carol"))
    assert same.id == placed.id
    assert _code(stub.PlaceOrder, orders_pb2.PlaceOrderRequest(quote_id=again.quote_id, idempotency_key="k1"),
                 metadata=hub.md("carol")) == grpc.StatusCode.ALREADY_EXISTS

    seen: list[int] = []
    watcher = threading.Thread(target=lambda: seen.extend(
        o.state for o in stub.WatchOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=hub.md("carol"),
                                         timeout=60)), daemon=True)
    watcher.start()
    agent.print_job()
    agent.heartbeat()  # the printer is idle with a clear bed again: the second object is offered
    hub.sweep()
    agent.print_job()
    watcher.join(60)
    assert seen[-1] == orders_pb2.ORDER_STATE_DELIVERED and len(seen) >= 2
    done = stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=hub.md("carol"))
    assert done.state == orders_pb2.ORDER_STATE_DELIVERED and done.progress_percent == 100.0

    records = records_pb2_grpc.RecordsStub(hub.channel)
    ledger = wait_for(lambda: records.GetLedger(records_pb2.LedgerRequest(design="cube"), metadata=hub.md("carol")).entries)
    assert sum(e.amount.minor_units for e in ledger) == placed.price.minor_units
    assert {e.share for e in ledger} >= {"reimbursement", "maker", "design", "commons"}
    assert all(e.explanation and e.equation_version == "1" for e in ledger)
    node_ledger = records.GetLedger(records_pb2.LedgerRequest(node="lab-1"), metadata=hub.md("carol"))
    assert node_ledger.balances[0].recipient == "lab-1" and node_ledger.balances[0].total.minor_units > 0

    rate = orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "customer", "stars": 5,
                                                                   "criteria": {"quality": 5, "fairness": 4}})
    stub.RateOrder(rate, metadata=hub.md("carol"))
    rate.rating.stars = 4
    stub.RateOrder(rate, metadata=hub.md("carol"))  # replaces the first
    stub.RateOrder(orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "maker", "stars": 3}),
                   metadata=hub.md("lab-1"))
    assert _code(stub.RateOrder, orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "customer", "stars": 5}),
                 metadata=hub.md("bob")) == grpc.StatusCode.PERMISSION_DENIED
    record = records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=hub.md("carol"))
    assert sorted((r.rater, r.stars) for r in record.ratings) == [("carol", 4), ("lab-1", 3)]
    assert record.design_reputation.count == 2 and record.fabrication_count == 2
    [agg] = record.aggregates
    assert (agg.printer_model, agg.material, agg.prints, agg.successes) == ("Prusa MK3S", "PLA", 2, 2)
    assert agg.summary == "prints well on Prusa MK3S in PLA at 0.2 mm, 100 % of 2 prints succeeded"
    assert {f.incarnation_id for f in record.fabrications} and record.participation == "co-create"
    assert [(s.name, s.rung, s.contributions) for s in record.ladder] == [("carol", "consume", 1)]
    second = stub.Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol")).options[0]
    assert second.ratings == 1 and second.reputation == pytest.approx((5 * 3 + 4) / 6, abs=1e-3)
    incarnation = stub.GetIncarnation(orders_pb2.GetIncarnationRequest(incarnation_id=placed.objects[0].qr_payload),
                                      metadata=hub.md("bob"))
    assert (incarnation.design, incarnation.node, incarnation.state) == ("cube", "lab-1", "done")
    agent.close()


def test_a_quote_is_ordered_once(hub: ClockedHub) -> None:
    """A second order from one quote (another key, or none) is refused; the key's retry still answers; eight
    clients placing one quote at once under their own keys make one order."""
    _push(hub)
    agent, stub = _lab(hub)
    quote = stub.Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol")).quote_id
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=quote, idempotency_key="k1"), metadata=hub.md("carol"))
    for key in ("k2", ""):
        with pytest.raises(grpc.RpcError) as info:
            stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=quote, idempotency_key=key), metadata=hub.md("carol"))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"ordered already (order {placed.id})" in info.value.details() and "spime quote" in info.value.details()
    again = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=quote, idempotency_key="k1"), metadata=hub.md("carol"))
    assert again.id == placed.id
    fresh = stub.Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol")).quote_id
    outcomes: list[object] = []

    def place(i: int) -> None:
        request = orders_pb2.PlaceOrderRequest(quote_id=fresh, idempotency_key=f"race-{i}")
        try:
            outcomes.append(stub.PlaceOrder(request, metadata=hub.md("carol")).id)
        except grpc.RpcError as exc:
            outcomes.append(exc.code())

    threads = [threading.Thread(target=place, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len([o for o in outcomes if isinstance(o, str)]) == 1
    assert sorted(map(str, (o for o in outcomes if not isinstance(o, str)))) == [str(grpc.StatusCode.FAILED_PRECONDITION)] * 7
    listed = stub.ListOrders(orders_pb2.ListOrdersRequest(include_final=True), metadata=hub.md("carol")).orders
    assert len(listed) == 2
    agent.close()


def test_bad_input_is_refused_and_changes_nothing(hub: ClockedHub) -> None:
    _push(hub)
    agent, stub = _lab(hub)
    ok = stub.Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol"))
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=ok.quote_id, idempotency_key="k"), metadata=hub.md("carol"))
    before = hub.snapshot()
    bad_specs = {
        "quantity 0": _spec(quantity=0), "quantity 1000": _spec(quantity=1000), "material": _spec(material="CHEESE"),
        "param range": _spec(parameters={"size": "400"}), "param type": _spec(parameters={"size": '"big"'}),
        "param unknown": _spec(parameters={"colour": "1"}), "latitude": _spec(near="95,10"),
        "longitude": _spec(near="10,200"), "near text": _spec(near="Berlin"), "max_km": _spec(max_km=-1),
        "nul": _spec(parameters={"size": "2\x000"}), "design": _spec(design="No Such"),
    }
    for name, spec in bad_specs.items():
        assert _code(stub.Quote, orders_pb2.QuoteRequest(spec=spec), metadata=hub.md("carol")) == \
            grpc.StatusCode.INVALID_ARGUMENT, name
        assert _code(stub.PlaceOrder, orders_pb2.PlaceOrderRequest(spec=spec), metadata=hub.md("carol")) == \
            grpc.StatusCode.INVALID_ARGUMENT, name
    assert _code(stub.Quote, orders_pb2.QuoteRequest(spec=_spec(design="nope")), metadata=hub.md("carol")) == grpc.StatusCode.NOT_FOUND
    assert _code(stub.Quote, orders_pb2.QuoteRequest(spec=_spec(revision_id="ab" * 32)), metadata=hub.md("carol")) == grpc.StatusCode.NOT_FOUND
    assert _code(stub.PlaceOrder, orders_pb2.PlaceOrderRequest(quote_id="0123456789abcdef"), metadata=hub.md("carol")) == grpc.StatusCode.NOT_FOUND
    assert _code(stub.PlaceOrder, orders_pb2.PlaceOrderRequest(quote_id=ok.quote_id, option=7), metadata=hub.md("carol")) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(stub.PlaceOrder, orders_pb2.PlaceOrderRequest(quote_id=ok.quote_id, idempotency_key="k", option=0, best="fastest"), metadata=hub.md("carol")) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(stub.RateOrder, orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "customer", "stars": 5}), metadata=hub.md("bob")) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(stub.RateOrder, orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "customer", "stars": 9}), metadata=hub.md("carol")) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(stub.CancelOrder, orders_pb2.CancelOrderRequest(order_id=placed.id), metadata=hub.md("bob")) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(stub.GetOrder, orders_pb2.GetOrderRequest(order_id="o-nope"), metadata=hub.md("carol")) == grpc.StatusCode.NOT_FOUND
    assert _code(stub.ListOrders, orders_pb2.ListOrdersRequest(page={"page_size": 501}), metadata=hub.md("carol")) == grpc.StatusCode.INVALID_ARGUMENT
    assert hub.snapshot() == before
    hub.clock.advance(16 * 60)
    assert _code(stub.PlaceOrder, orders_pb2.PlaceOrderRequest(quote_id=ok.quote_id), metadata=hub.md("carol")) == grpc.StatusCode.FAILED_PRECONDITION
    assert hub.snapshot() == before
    agent.close()


def test_cancel_before_the_print_starts_and_list(hub: ClockedHub) -> None:
    _push(hub)
    agent, stub = _lab(hub)
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec(), best="nearest"), metadata=hub.md("carol"))
    assert placed.state in (orders_pb2.ORDER_STATE_QUEUED, orders_pb2.ORDER_STATE_ASSIGNED)
    cancelled = stub.CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id, reason="changed my mind"),
                                 metadata=hub.md("carol"))
    assert cancelled.state == orders_pb2.ORDER_STATE_CANCELLED and cancelled.partial_cost.minor_units == 0
    assert _code(stub.CancelOrder, orders_pb2.CancelOrderRequest(order_id=placed.id), metadata=hub.md("carol")) == grpc.StatusCode.FAILED_PRECONDITION
    listed = stub.ListOrders(orders_pb2.ListOrdersRequest(include_final=True), metadata=hub.md("carol"))
    assert [o.id for o in listed.orders] == [placed.id]
    assert not stub.ListOrders(orders_pb2.ListOrdersRequest(), metadata=hub.md("carol")).orders
    assert not stub.ListOrders(orders_pb2.ListOrdersRequest(include_final=True), metadata=hub.md("bob")).orders
    agent.close()


def test_licence_rules_at_order_time(hub: ClockedHub) -> None:
    _push(hub, "nc-cube", "CC-BY-NC-4.0")
    _push(hub, "nd-cube", "CC-BY-ND-4.0")
    agent, stub = _lab(hub)

    def quote(design: str, **kw: object) -> orders_pb2.QuoteResponse:
        return stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design, **kw)), metadata=hub.md("carol"))

    with pytest.raises(grpc.RpcError) as info:
        quote("nc-cube")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "CC-BY-NC-4.0" in (info.value.details() or "")
    assert quote("nc-cube", paid=False).fabricable
    with pytest.raises(grpc.RpcError) as info:
        quote("nd-cube", parameters={"size": "30"})
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "--scope modified" in (info.value.details() or "")
    assert quote("nd-cube", parameters={"size": "20"}).fabricable  # the defaults are not an adaptation
    grant = orders_pb2.GrantRequest(design="nc-cube", scope="paid", until="2030-01-01")
    assert _code(stub.Grant, grant, metadata=hub.md("bob")) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(stub.Grant, orders_pb2.GrantRequest(design="nc-cube", scope="paid", until="2001-01-01"),
                 metadata=hub.md("alice")) == grpc.StatusCode.INVALID_ARGUMENT
    recorded = stub.Grant(signed_grant(registered_key(hub, "alice"), "alice", "nc-cube"), metadata=hub.md("alice"))
    assert recorded.granted_by == "alice" and len(recorded.statement_sha256) == 64
    assert quote("nc-cube").fabricable
    assert [g.id for g in stub.ListGrants(orders_pb2.ListGrantsRequest(design="nc-cube"), metadata=hub.md("carol")).grants] == [recorded.id]
    records = records_pb2_grpc.RecordsStub(hub.channel)
    ladder = records_pb2.SetParticipationRequest(design="nc-cube", rung="consume")
    assert _code(records.SetParticipation, ladder, metadata=hub.md("bob")) == grpc.StatusCode.PERMISSION_DENIED
    assert records.SetParticipation(ladder, metadata=hub.md("alice")).participation == "consume"
    with pytest.raises(grpc.RpcError) as info:
        quote("nc-cube", parameters={"size": "30"})
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "consume" in (info.value.details() or "")
    equation = records_pb2.ValueEquation(design="nc-cube", maker="50", design_lineage="30", commons="20",
                                         own_revision="70", upstream="30")
    published = records.SetValueEquation(records_pb2.SetValueEquationRequest(equation=equation), metadata=hub.md("alice"))
    assert published.version == "2" and published.maker == "50"
    bad = records_pb2.ValueEquation(design="nc-cube", maker="90", design_lineage="30", commons="20",
                                    own_revision="70", upstream="30")
    assert _code(records.SetValueEquation, records_pb2.SetValueEquationRequest(equation=bad),
                 metadata=hub.md("alice")) == grpc.StatusCode.INVALID_ARGUMENT
    assert records.GetRecord(records_pb2.GetRecordRequest(design="nc-cube"), metadata=hub.md("carol")).value_equation.version == "2"
    agent.close()


def test_cancel_while_printing_asks_the_node_and_records_the_partial_cost(hub: ClockedHub) -> None:
    _push(hub)
    agent, stub = _lab(hub)
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec()), metadata=hub.md("carol"))
    job_id, epoch = agent.take_job()
    agent.start(job_id, epoch)
    agent.expect("start_granted")
    agent.ack()
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_STARTED))
    agent.heartbeat([nodes_pb2.JobProgress(job_id=job_id, lease_epoch=epoch, percent=50.0, layer=40)])
    wait_for(lambda: stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=hub.md("carol")).progress_percent == 50.0)
    asked = stub.CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id, reason="wrong colour"), metadata=hub.md("carol"))
    assert asked.state == orders_pb2.ORDER_STATE_PRINTING
    assert 0 < asked.partial_cost.minor_units < placed.price.minor_units  # half the material and machine time
    assert agent.expect("cancel").cancel.job_id == job_id
    agent.ack()
    agent.acked(agent.event(job_id, epoch, nodes_pb2.EVENT_KIND_CANCELLED, {"reason": "customer"}))
    final = wait_for(lambda: (o := stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=hub.md("carol"))).state == orders_pb2.ORDER_STATE_CANCELLED and o)
    assert final.partial_cost.minor_units == asked.partial_cost.minor_units
    agent.close()


class _Watch:
    """A customer's WatchOrder stream read in a thread: the states seen, then how it ended."""

    def __init__(self, hub: ClockedHub, order_id: str, customer: str) -> None:
        self.states: list[int] = []
        self.error: grpc.RpcError | None = None
        self.call = _orders(hub).WatchOrder(orders_pb2.GetOrderRequest(order_id=order_id),
                                            metadata=hub.md(customer), timeout=120)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            self.states.extend(o.state for o in self.call)
        except grpc.RpcError as exc:
            self.error = exc

    def ended(self) -> grpc.StatusCode | None:
        self.thread.join(60)
        assert not self.thread.is_alive(), "the stream did not end"
        return self.error.code() if self.error is not None else None


def test_revoking_a_token_ends_the_streams_it_opened(hub: ClockedHub) -> None:
    """`spime-hub user revoke` runs in its own process: the hub finds the revocation in the database
    when it rechecks the tokens of its open streams, and ends those (not the others)."""
    _push(hub)
    hub.add_user("dan", "customer")
    agent, stub = _lab(hub)
    orders = {who: stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec(), best="nearest", idempotency_key=who),
                                   metadata=hub.md(who)).id for who in ("carol", "dan")}
    watches = {who: _Watch(hub, order, who) for who, order in orders.items()}
    wait_for(lambda: all(w.states for w in watches.values()) and len(hub.server.interceptor.live_calls) == 2)

    def recheck() -> int:
        return asyncio.run_coroutine_threadsafe(hub.server.recheck_streams(), hub.loop).result(timeout=30)

    assert recheck() == 0
    hub.composed.store.accounts._thd_revoke_tokens("carol", "2026-12-01T00:00:00Z")  # as the CLI does
    assert recheck() == 1
    assert watches["carol"].ended() == grpc.StatusCode.UNAUTHENTICATED
    assert watches["carol"].error is not None and "revoked" in (watches["carol"].error.details() or "")
    assert _code(stub.GetOrder, orders_pb2.GetOrderRequest(order_id=orders["carol"]),
                 metadata=hub.md("carol")) == grpc.StatusCode.UNAUTHENTICATED  # the token left the cache too
    assert recheck() == 0 and watches["dan"].thread.is_alive()  # the other customer's stream runs on
    watches["dan"].call.cancel()
    assert watches["dan"].ended() == grpc.StatusCode.CANCELLED
    wait_for(lambda: len(hub.server.interceptor.live_calls) == 0)
    agent.close()


def test_a_drained_node_is_neither_quoted_nor_routed_an_order(hub: ClockedHub) -> None:
    _push(hub)
    agent, stub = _lab(hub)
    hub.composed.hub.nodes._thd_drain_node("lab-1", "moving to a new room")  # as `spime-hub node drain` does
    quote = stub.Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol"))
    assert not quote.fabricable and not quote.options and "drained by the hub (moving to a new room)" in quote.refusal
    with pytest.raises(grpc.RpcError) as refused:
        stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec(), best="cheapest", idempotency_key="k"),
                        metadata=hub.md("carol"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "drained" in (refused.value.details() or "")
    hub.composed.hub.nodes._thd_resume_node("lab-1")
    again = stub.Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol"))
    assert [o.node for o in again.options] == ["lab-1"]
    agent.close()


def _point_at(lat: float, lon: float, km: float, bearing: float) -> str:
    """--near text for the point ``km`` from (lat, lon) along ``bearing`` degrees (spherical destination)."""
    d, b, p1, l1 = km / geo.EARTH_RADIUS_KM, math.radians(bearing), math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return f"{math.degrees(p2):.6f},{math.degrees(l2):.6f}"


def test_max_km_keeps_every_node_within_the_distance_in_any_direction(hub: ClockedHub) -> None:
    """The database narrows by a box and a disc (hub.quotes.Box) before the exact distance: a node just
    inside --max-km is quoted whichever way it lies (the diagonals are where box and disc differ), one
    just beyond it is not, and the refusal says how far it is."""
    _push(hub)
    agent, stub = _lab(hub)  # lab-1 is at 52.5,13.4
    for km in (40.0, 900.0):
        for bearing in (0.0, 45.0, 135.0, 225.0, 315.0, 90.0):
            inside = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(near=_point_at(52.5, 13.4, km * 0.995, bearing),
                                                                   max_km=km)), metadata=hub.md("carol"))
            assert [o.node for o in inside.options] == ["lab-1"], (km, bearing, inside.refusal)
            beyond = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(near=_point_at(52.5, 13.4, km * 1.02, bearing),
                                                                   max_km=km)), metadata=hub.md("carol"))
            assert not beyond.options and "km away" in beyond.refusal, (km, bearing, beyond.refusal)
    agent.close()
