"""Money on the order's way: the price covers every object, a delivered order pays each node for the
objects it made (and only those), with the value equation in force when it was placed, and per-job
payouts add up to the price; on SQLite and PostgreSQL. (Cases from a red-team sweep.)"""

from __future__ import annotations

from spimeforge.v1 import nodes_pb2, orders_pb2, orders_pb2_grpc, records_pb2, records_pb2_grpc

from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, wait_for
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()



def _stub(h):
    return orders_pb2_grpc.OrdersStub(h.channel)


def _rec(h):
    return records_pb2_grpc.RecordsStub(h.channel)


def _spec(**kw):
    f = {"design": "cube", "material": "PLA", "quantity": 1, "near": "52.52,13.40", "paid": True}
    f.update(kw)
    return orders_pb2.OrderSpec(**f)


def _get(h, oid, who="carol"):
    return _stub(h).GetOrder(orders_pb2.GetOrderRequest(order_id=oid), metadata=h.md(who))


def _two_cube_order(hub: ClockedHub, *nodes: str) -> tuple[list[FakeAgent], orders_pb2.Order]:
    """A paid order of two cubes placed from a quote, with a connected agent (one printer) per node."""
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    agents = [FakeAgent.enrolled(hub, node, [printer()]) for node in nodes]
    for agent in agents:
        agent.connect()
    stub = _stub(hub)
    q = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(quantity=2)), metadata=hub.md("carol"))
    return agents, stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=q.quote_id), metadata=hub.md("carol"))


def _ledger(hub: ClockedHub, **wait: float):
    return wait_for(lambda: _rec(hub).GetLedger(records_pb2.LedgerRequest(design="cube"),
                                                metadata=hub.md("carol")).entries, **wait)


def test_an_order_made_by_two_nodes_pays_each_for_its_objects(hub: ClockedHub) -> None:
    """An order of 2 objects made by two nodes: the ledger credited one node for both."""
    (a, b), placed = _two_cube_order(hub, "lab-1", "lab-2")
    a.print_job()
    b.print_job()
    wait_for(lambda: _get(hub, placed.id).state == orders_pb2.ORDER_STATE_DELIVERED)
    by = {}
    for e in _ledger(hub):
        by[e.recipient] = by.get(e.recipient, 0) + e.amount.minor_units
    a.close()
    b.close()
    assert "lab-1" in by and "lab-2" in by, by


def test_an_order_cancelled_after_one_object_shares_out_only_what_was_made(hub: ClockedHub) -> None:
    (a,), placed = _two_cube_order(hub, "lab-1")
    a.print_job()
    wait_for(lambda: any(o.state == "done" for o in _get(hub, placed.id).objects))
    _stub(hub).CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id, reason="only want one"),
                           metadata=hub.md("carol"))
    total = sum(e.amount.minor_units for e in _ledger(hub, timeout=5))
    a.close()
    # one of two objects was cancelled before it was made: the ledger must not share out the whole price
    assert total < placed.price.minor_units


def _take(agent):
    offer = agent.expect("offer").offer
    agent.reply(offer)
    assigned = agent.expect("assigned").assigned
    agent.ack()
    return assigned.job_id, assigned.lease_epoch, offer.printer_id, offer.payout


def test_the_partial_cost_of_a_cancelled_order_stays_within_its_costs(hub: ClockedHub) -> None:
    """A design whose one part is made twice (2 objects, quantity 1): cancelling both prints at 90 %
    records a partial cost of 2 x 90 % of the whole order's material + machine time."""
    manifest = cube_manifest().replace("quantity = 1", "quantity = 2")
    hub.push("alice", "cube", dict(FILES), manifest=manifest, create=True)
    a = FakeAgent.enrolled(hub, "lab-1", [printer("mk3"), printer("mk3b")])
    a.connect()
    stub = _stub(hub)
    q = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(quantity=1)), metadata=hub.md("carol"))
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=q.quote_id), metadata=hub.md("carol"))
    assert len(placed.objects) == 2
    progress = []
    for _ in range(2):
        job_id, epoch, pr, _payout = _take(a)
        a.start(job_id, epoch, pr)
        a.expect("start_granted")
        a.ack()
        a.acked(a.event(job_id, epoch, nodes_pb2.EVENT_KIND_STARTED))
        progress.append(nodes_pb2.JobProgress(job_id=job_id, lease_epoch=epoch, percent=90.0, layer=40))
    a.heartbeat(progress)
    wait_for(lambda: _get(hub, placed.id).progress_percent == 90.0)
    asked = stub.CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id, reason="x"), metadata=hub.md("carol"))
    made = q.options[0].material_cost.minor_units + q.options[0].machine_cost.minor_units
    a.close()
    assert asked.partial_cost.minor_units <= made


def test_job_payouts_add_up_to_the_price(hub: ClockedHub) -> None:
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    a = FakeAgent.enrolled(hub, "lab-1", [printer()])
    a.connect()
    stub = _stub(hub)
    for qty in (3, 7):
        q = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(quantity=qty)), metadata=hub.md("carol"))
        price = q.options[0].price.minor_units
        if price % qty:
            break
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=q.quote_id), metadata=hub.md("carol"))
    jobs = hub.composed.hub.jobs._thd_jobs_of_order(placed.id)
    payouts = [j.payout_minor for j in jobs]
    a.close()
    assert sum(payouts) == placed.price.minor_units


def cube_stl(s: float) -> bytes:
    import struct
    v = [(0, 0, 0), (s, 0, 0), (s, s, 0), (0, s, 0), (0, 0, s), (s, 0, s), (s, s, s), (0, s, s)]
    faces = [(0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4), (1, 2, 6), (1, 6, 5),
             (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7)]
    out = bytearray(b"\0" * 80) + struct.pack("<I", len(faces))
    for a, b, c in faces:
        out += struct.pack("<3f", 0, 0, 0)
        for i in (a, b, c):
            out += struct.pack("<3f", *v[i])
        out += b"\0\0"
    return bytes(out)


def test_every_object_of_an_order_is_priced(hub: ClockedHub) -> None:
    """A design whose part is made twice: the order has 2 objects but the price of 1."""
    from tests.hub.harness import manifest_toml
    stl = cube_stl(20)
    hub.push("alice", "one", {"cube.stl": stl}, manifest=manifest_toml("one", files=("cube.stl",)), create=True)
    hub.push("alice", "two", {"cube.stl": stl},
             manifest=manifest_toml("two", files=("cube.stl",)).replace("quantity = 1", "quantity = 2"), create=True)
    a = FakeAgent.enrolled(hub, "lab-1", [printer()])
    a.connect()
    stub = _stub(hub)
    one2 = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design="one", quantity=2)), metadata=hub.md("carol"))
    two1 = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design="two", quantity=1)), metadata=hub.md("carol"))
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=two1.quote_id), metadata=hub.md("carol"))
    a.close()
    assert len(placed.objects) == 2
    assert placed.price.minor_units == one2.options[0].price.minor_units


def test_a_price_the_ledger_cannot_share_is_never_offered(hub: ClockedHub) -> None:
    """A node at its highest allowed rates priced 20 big cubes over the ledger's limit: the order was
    placed, and from its delivery on its settlement failed inside every read (GetOrder, ListOrders and
    CancelOrder answered INVALID_ARGUMENT for good)."""
    from tests.hub.harness import manifest_toml
    big = printer(volume=(400, 400, 400))
    big.rate_per_gram.minor_units = 100_000_000
    big.rate_per_hour.minor_units = 100_000_000
    hub.push("alice", "big", {"big.stl": cube_stl(120)}, manifest=manifest_toml("big", files=("big.stl",)), create=True)
    a = FakeAgent.enrolled(hub, "lab-1", [big])
    a.connect()
    stub = _stub(hub)
    one = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design="big", quantity=1)), metadata=hub.md("carol"))
    assert one.options and one.options[0].price.minor_units <= 10**12  # one object is within the limit
    many = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design="big", quantity=20)), metadata=hub.md("carol"))
    a.close()
    assert not many.fabricable and not many.options


def test_an_order_is_settled_with_the_equation_in_force_when_placed(hub: ClockedHub) -> None:
    """The maintainer publishes maker 0 % / design 100 % while the node prints an order placed under v1:
    the order is settled with the new equation, so the maker's share of a job it took under 60 % is 0."""
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    a = FakeAgent.enrolled(hub, "lab-1", [printer()])
    a.connect()
    stub = _stub(hub)
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec()), metadata=hub.md("carol"))
    job_id, epoch = a.take_job()
    hub.clock.advance(60)
    eq = records_pb2.ValueEquation(design="cube", maker="0", design_lineage="100", commons="0",
                                   own_revision="100", upstream="0")
    _rec(hub).SetValueEquation(records_pb2.SetValueEquationRequest(equation=eq), metadata=hub.md("alice"))
    a.run_to_printed(job_id, epoch)
    a.acked(a.event(job_id, epoch, nodes_pb2.EVENT_KIND_OUTCOME, {"outcome": "success", "reason": "", "notes": ""}))
    wait_for(lambda: _get(hub, placed.id).state == orders_pb2.ORDER_STATE_DELIVERED)
    entries = wait_for(lambda: _rec(hub).GetLedger(records_pb2.LedgerRequest(design="cube"), metadata=hub.md("carol")).entries)
    a.close()
    assert {e.equation_version for e in entries} == {"1"}


def _priced_in(currency: str, per_hour: int, per_gram: int, name: str = "mk3"):
    p = printer(name)
    p.rate_per_hour.currency = p.rate_per_gram.currency = currency
    p.rate_per_hour.minor_units, p.rate_per_gram.minor_units = per_hour, per_gram
    return p


def test_cheapest_never_compares_prices_in_different_currencies(hub: ClockedHub) -> None:
    """21 printers charging in EUR and one in JPY at ten times the minor units (yet about a sixteenth of
    the worth): the JPY printer is among the quote's 20 options, each currency's options cheapest first
    and together; ranking raw minor units left it out for 20 EUR ones."""
    from tests.hub.test_orders_api import FILES, cube_manifest
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    eur = FakeAgent.enrolled(hub, "lab-1", [_priced_in("EUR", 300 + 100 * i, 5, f"mk{i:02}") for i in range(21)])
    jpy = FakeAgent.enrolled(hub, "lab-2", [_priced_in("JPY", 3000, 50)])
    eur.connect()
    jpy.connect()
    q = _stub(hub).Quote(orders_pb2.QuoteRequest(spec=_spec()), metadata=hub.md("carol"))
    shown = [(o.price.currency, o.price.minor_units, o.node) for o in q.options]
    eur.close()
    jpy.close()
    assert len(shown) == 20 and shown[-1][0::2] == ("JPY", "lab-2"), shown
    assert shown == sorted(shown), shown  # by currency, then price within it
    assert shown[0][1] < shown[1][1]  # the EUR printers really are priced apart


def test_an_order_by_cheapest_across_currencies_is_refused_and_a_chosen_option_keeps_its_currency(
        hub: ClockedHub) -> None:
    """Two nodes, one charging in EUR (three printers), one in JPY (one printer): "cheapest" cannot choose
    between them (FAILED_PRECONDITION saying what to do instead); an order of the JPY option is priced
    and paid in JPY and its second object waits for the JPY node rather than go to a EUR printer."""
    import grpc
    import pytest

    from tests.hub.refusal import details_of
    from tests.hub.test_orders_api import FILES, cube_manifest
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    eur = FakeAgent.enrolled(hub, "lab-1", [_priced_in("EUR", 300, 5, f"mk{i}") for i in range(3)])
    jpy = FakeAgent.enrolled(hub, "lab-2", [_priced_in("JPY", 300, 5)])
    eur.connect()
    jpy.connect()
    stub = _stub(hub)
    with pytest.raises(grpc.RpcError) as refused:
        stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec(), best="cheapest"), metadata=hub.md("carol"))
    refusal = details_of(refused.value)
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION and refusal.info.reason == "CURRENCIES_NOT_COMPARED"
    assert "charge in EUR, JPY" in refusal.message and "--option" in refusal.message
    with pytest.raises(grpc.RpcError) as refused:  # no rule given: cheapest
        stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec()), metadata=hub.md("carol"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not stub.ListOrders(orders_pb2.ListOrdersRequest(include_final=True), metadata=hub.md("carol")).orders
    q = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(quantity=2)), metadata=hub.md("carol"))
    option = next(i for i, o in enumerate(q.options) if o.price.currency == "JPY")
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=q.quote_id, option=option), metadata=hub.md("carol"))
    jobs = hub.composed.hub.jobs._thd_jobs_of_order(placed.id)
    eur.close()
    jpy.close()
    assert placed.price.currency == "JPY" and {j.payout_currency for j in jobs} == {"JPY"}
    held = sorted((j.want_node, j.node or "", j.state.value) for j in jobs)
    assert held == [("lab-2", "", "queued"), ("lab-2", "lab-2", "offered")], held


def test_the_ledgers_own_recipients_cannot_be_account_names(hub: ClockedHub) -> None:
    """An account named commons-fund or payment-fees would have its credits merged with the fund's or the
    fees' (balances and GetLedger go by recipient): neither `user add` nor `node add` makes one, while
    lookups by such a name still answer as for any unknown account."""
    import pytest

    from hub.domain import Role
    from hub.errors import InvalidArgument, NotFound
    from hub.ledger import RESERVED_RECIPIENTS
    accounts, nodes = hub.composed.hub.accounts, hub.composed.hub.nodes
    assert RESERVED_RECIPIENTS == {"commons-fund", "payment-fees"}
    for name in sorted(RESERVED_RECIPIENTS):
        for add, args in ((accounts._thd_add_user, (name, Role.DESIGNER)), (nodes._thd_add_node, (name,))):
            with pytest.raises(InvalidArgument) as refused:
                add(*args)
            assert refused.value.reason == "ACCOUNT_NAME_RESERVED" and "is reserved" in refused.value.message
        with pytest.raises(NotFound):
            nodes._thd_add_node(name, again=True)
        with pytest.raises(NotFound):
            accounts._thd_new_token(name)
        assert not hub.composed.store.accounts._thd_exists(name)
    accounts._thd_add_user("commons-fund-2", Role.DESIGNER)  # only the recipients themselves are taken


def _cube_stl(size_mm: float) -> bytes:
    """A binary STL of a closed cube of that size."""
    import struct
    s = size_mm
    v = [(0, 0, 0), (s, 0, 0), (s, s, 0), (0, s, 0), (0, 0, s), (s, 0, s), (s, s, s), (0, s, s)]
    faces = [(0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4), (1, 2, 6), (1, 6, 5),
             (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7)]
    out = bytearray(80) + struct.pack("<I", len(faces))
    for face in faces:
        out += struct.pack("<3f", 0, 0, 0)
        for i in face:
            out += struct.pack("<3f", *v[i])
        out += b"\0\0"
    return bytes(out)


def test_a_kit_of_different_parts_is_priced_part_by_part(hub: ClockedHub) -> None:
    """A kit of two 20 mm lids and one 30 mm body, each part its own mesh (the lids listed first): its
    estimate is the body's plus twice the lid's, each sliced on its own; it was the first mesh (a lid)
    times three objects, the body's extra size never charged."""
    from tests.hub.harness import manifest_toml
    lid, body = _cube_stl(20), _cube_stl(30)  # (PrusaSlicer reads an STL of 10 mm cubes as text: its bytes are ASCII)
    hub.push("alice", "lid", {"lid.stl": lid}, manifest=manifest_toml("lid", files=("lid.stl",)), create=True)
    hub.push("alice", "body", {"body.stl": body}, manifest=manifest_toml("body", files=("body.stl",)), create=True)
    lids = '[[parts]]\nname = "lid"\nfiles = ["lid.stl"]\nmaterial = "PLA"\nquantity = 2\n'
    hub.push("alice", "kit", {"lid.stl": lid, "body.stl": body},
             manifest=manifest_toml("kit", files=("body.stl",), extra=lids), create=True)
    a = FakeAgent.enrolled(hub, "lab-1", [printer()])
    a.connect()
    stub = _stub(hub)
    quoted = {d: stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design=d)), metadata=hub.md("carol")).options[0]
              for d in ("lid", "body", "kit")}
    placed = stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=_spec(design="kit")), metadata=hub.md("carol"))
    a.close()
    one_lid, one_body, kit = quoted["lid"], quoted["body"], quoted["kit"]
    assert one_body.filament_g > 2 * one_lid.filament_g  # the parts really differ
    assert abs(kit.estimated_seconds - (one_body.estimated_seconds + 2 * one_lid.estimated_seconds)) <= 2
    assert abs(kit.filament_g - (one_body.filament_g + 2 * one_lid.filament_g)) <= 0.03
    made = (one_body.material_cost.minor_units + 2 * one_lid.material_cost.minor_units
            + one_body.machine_cost.minor_units + 2 * one_lid.machine_cost.minor_units)
    assert abs(kit.material_cost.minor_units + kit.machine_cost.minor_units - made) <= 3  # rounded once, not per part
    assert len(placed.objects) == 3 and placed.price.minor_units == kit.price.minor_units


def _kit(hub: ClockedHub, lids: int = 1) -> None:
    """Push design "kit": ``lids`` 20 mm lids (listed first) and one 30 mm body, each part its own mesh."""
    from tests.hub.harness import manifest_toml
    extra = f'[[parts]]\nname = "lid"\nfiles = ["lid.stl"]\nmaterial = "PLA"\nquantity = {lids}\n'
    hub.push("alice", "kit", {"lid.stl": _cube_stl(20), "body.stl": _cube_stl(30)},
             manifest=manifest_toml("kit", files=("body.stl",), extra=extra), create=True)


def _place_kit(hub: ClockedHub) -> tuple[orders_pb2.QuoteOption, orders_pb2.Order]:
    """The kit placed from its quote's first option: (that option, the order)."""
    stub = _stub(hub)
    q = stub.Quote(orders_pb2.QuoteRequest(spec=_spec(design="kit")), metadata=hub.md("carol"))
    return q.options[0], stub.PlaceOrder(orders_pb2.PlaceOrderRequest(quote_id=q.quote_id), metadata=hub.md("carol"))


def _credits(hub: ClockedHub, **wait: float) -> dict[str, int]:
    entries = wait_for(lambda: _rec(hub).GetLedger(records_pb2.LedgerRequest(design="kit"),
                                                   metadata=hub.md("carol")).entries, **wait)
    by: dict[str, int] = {}
    for e in entries:
        by[e.recipient] = by.get(e.recipient, 0) + e.amount.minor_units
    return by


def test_a_kit_made_by_two_nodes_pays_more_to_the_node_that_made_the_bigger_part(hub: ClockedHub) -> None:
    """A kit of a 20 mm lid and a 30 mm body, placed from a quote, one part made by each of two nodes: each
    object's payout is its part's share of the price (together the price), and the node that made the
    body is credited more than the one that made the lid; every object was paid (and settled) alike."""
    _kit(hub)
    a, b = (FakeAgent.enrolled(hub, node, [printer()]) for node in ("lab-1", "lab-2"))
    a.connect()
    b.connect()
    _, placed = _place_kit(hub)
    a.print_job()
    b.print_job()
    wait_for(lambda: _get(hub, placed.id).state == orders_pb2.ORDER_STATE_DELIVERED)
    credits = _credits(hub)
    jobs = {j.part: j for j in hub.composed.hub.jobs._thd_jobs_of_order(placed.id)}
    a.close()
    b.close()
    lid, body = jobs["lid"], jobs["body"]
    assert {lid.node, body.node} == {"lab-1", "lab-2"}
    assert lid.payout_minor + body.payout_minor == placed.price.minor_units
    assert body.payout_minor > 1.5 * lid.payout_minor, (lid.payout_minor, body.payout_minor)
    assert credits[body.node] > 1.5 * credits[lid.node], credits
    assert sum(credits.values()) == placed.price.minor_units


def test_a_partly_cancelled_kit_shares_out_only_the_made_parts_weight(hub: ClockedHub) -> None:
    """A kit of a lid and a body on a node with one printer: the lid (listed first) is made, then the
    order is cancelled before the body is: the ledger shares out the lid's payout, its weighted share of
    the price, not half of the price."""
    _kit(hub)
    a = FakeAgent.enrolled(hub, "lab-1", [printer()])
    a.connect()
    _, placed = _place_kit(hub)
    a.print_job()
    wait_for(lambda: any(o.state == "done" for o in _get(hub, placed.id).objects))
    _stub(hub).CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id, reason="only the lid"),
                           metadata=hub.md("carol"))
    total = sum(_credits(hub, timeout=5).values())
    jobs = {j.part: j for j in hub.composed.hub.jobs._thd_jobs_of_order(placed.id)}
    a.close()
    assert jobs["lid"].state.value == "done" and jobs["body"].state.value == "cancelled"
    assert total == jobs["lid"].payout_minor
    assert 3 * total < placed.price.minor_units, (total, placed.price.minor_units)  # the lid is the small part


def test_the_partial_cost_of_a_cancelled_kit_weighs_the_part_being_printed(hub: ClockedHub) -> None:
    """A kit of a lid and a body, the lid printing at 50 % when the order is cancelled: the partial cost is
    half of the lid's share of material + machine time, not half of an equal share (a body's worth)."""
    _kit(hub)
    a = FakeAgent.enrolled(hub, "lab-1", [printer()])
    a.connect()
    option, placed = _place_kit(hub)
    job_id, epoch, pr, payout = _take(a)
    a.start(job_id, epoch, pr)
    a.expect("start_granted")
    a.ack()
    a.acked(a.event(job_id, epoch, nodes_pb2.EVENT_KIND_STARTED))
    a.heartbeat([nodes_pb2.JobProgress(job_id=job_id, lease_epoch=epoch, percent=50.0, layer=10)])
    wait_for(lambda: _get(hub, placed.id).progress_percent == 25.0)
    asked = _stub(hub).CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id, reason="x"),
                                   metadata=hub.md("carol"))
    a.close()
    costs = option.material_cost.minor_units + option.machine_cost.minor_units
    price = placed.price.minor_units
    assert 3 * payout.minor_units < price  # the lid
    assert abs(asked.partial_cost.minor_units - costs * payout.minor_units / price * 0.5) <= 1, \
        (asked.partial_cost.minor_units, costs, payout.minor_units, price)
