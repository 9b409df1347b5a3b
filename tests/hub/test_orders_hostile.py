"""Hostile input to Orders (and the ledger half of Records) through real stubs, on SQLite and PostgreSQL:
each refusal has its status, names the field or limit, and changes nothing stored."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from alembic import command
from spimeforge.v1 import designs_pb2, nodes_pb2, orders_pb2, orders_pb2_grpc, records_pb2

from hub import limits
from hub.store.engine import _alembic_config
from tests.hub.fake_agent import FakeAgent, printer, wait_for
from tests.hub.grant_signing import registered_key, signed_grant
from tests.hub.harness import InProcessHub, manifest_toml
from tests.hub.refusal import details_of, refused

ROOT = Path(__file__).resolve().parents[2]
CUBE = ROOT / "designs" / "calibration-cube"
FILES = {"calibration-cube.stl": (CUBE / "calibration-cube.stl").read_bytes(),
         "calibration-cube.scad": (CUBE / "calibration-cube.scad").read_bytes()}
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _push(api: InProcessHub) -> None:
    manifest = manifest_toml("cube", files=("calibration-cube.stl",),
                             extra='[openscad]\nsource = "calibration-cube.scad"\n'
                                   'parameters = { size = 20, mark_depth = 0.6, chamfer = 0.6 }\n')
    api.push("alice", "cube", FILES, manifest=manifest, create=True)


def _spec(**kw: object) -> orders_pb2.OrderSpec:
    fields: dict[str, object] = {"design": "cube", "material": "PLA", "quantity": 1, "near": "52.52,13.40"}
    fields.update(kw)
    return orders_pb2.OrderSpec(**fields)  # type: ignore[arg-type]


def _stub(api: InProcessHub) -> orders_pb2_grpc.OrdersStub:
    return orders_pb2_grpc.OrdersStub(api.channel)


@pytest.fixture()
def lab(any_api: InProcessHub) -> Iterator[FakeAgent]:
    """The cube design pushed and node lab-1 connected with one PLA printer."""
    _push(any_api)
    agent = FakeAgent.enrolled(any_api, "lab-1", [printer()])
    agent.connect()
    yield agent
    agent.close()


def _place(api: InProcessHub, key: str = "k", **spec: object) -> orders_pb2.Order:
    quote = _stub(api).Quote(orders_pb2.QuoteRequest(spec=_spec(**spec)), metadata=api.md("carol"))
    assert quote.fabricable, quote.refusal
    placed: orders_pb2.Order = _stub(api).PlaceOrder(
        orders_pb2.PlaceOrderRequest(quote_id=quote.quote_id, idempotency_key=key), metadata=api.md("carol"))
    return placed


def _quote_and_order_refuse(api: InProcessHub, spec: orders_pb2.OrderSpec, *words: str) -> str:
    stub = _stub(api)
    refusal = refused(api, lambda: stub.Quote(orders_pb2.QuoteRequest(spec=spec), metadata=api.md("carol")),
                      INVALID, ("INVALID_ARGUMENT", "CONTROL_CHARACTER", "COLOR_NOT_OFFERED"), *words)
    placed = refused(api, lambda: stub.PlaceOrder(orders_pb2.PlaceOrderRequest(spec=spec, best="cheapest"),
                                                  metadata=api.md("carol")),
                     INVALID, refusal.info.reason, *words)
    assert placed.message == refusal.message
    return str(refusal.info.metadata["field"])


# -- 1, 2: parameters that crashed the hub -------------------------------------------------------

@pytest.mark.parametrize(("value", "words"), [
    ("[" * 1024, ("'size'", "nests lists too deeply")),  # RecursionError in json.loads
    ("1" * 400, ("'size'", "out of range")),            # OverflowError at math.isfinite
])
def test_a_parameter_that_crashed_the_hub_is_refused_naming_it(any_api: InProcessHub, value: str,
                                                                words: tuple[str, ...]) -> None:
    _push(any_api)
    _quote_and_order_refuse(any_api, _spec(parameters={"size": value}), *words)


# -- 3: colour --------------------------------------------------------------------------------------

def test_a_colour_is_refused_until_the_hub_can_keep_it(any_api: InProcessHub) -> None:
    _push(any_api)
    field = _quote_and_order_refuse(any_api, _spec(color="red"), "color", "not offered yet")
    assert field == "spec.color"


# -- 9: near ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("near", ["5_2,1_3", "\u0665\u0662,\u0661\u0663", "\uff15\uff12,\uff11\uff13", " 52,13", "52,13\n"])
def test_near_takes_plain_decimals_only(any_api: InProcessHub, near: str) -> None:
    _push(any_api)
    assert _quote_and_order_refuse(any_api, _spec(near=near), "near", "plain decimal") == "near"


def test_near_is_stored_normalised(any_api: InProcessHub, lab: FakeAgent) -> None:
    placed = _place(any_api, near="52.5200,13.4000")
    assert placed.spec.near == "52.52,13.4"
    shown = _stub(any_api).GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=any_api.md("carol"))
    assert shown.spec.near == "52.52,13.4"


@pytest.mark.parametrize("near", ["0.00001,13.4", "51.4779,-0.00005", "0.00009,0.00009"])
def test_near_within_metres_of_the_equator_or_the_meridian_is_quoted_and_placed(
        any_api: InProcessHub, lab: FakeAgent, near: str) -> None:
    placed = _place(any_api, near=near)  # its normalised text was "1e-05,13.4", refused as not plain decimal
    assert placed.spec.near == near


# -- 6: what a stranger learns ----------------------------------------------------------------------

def test_a_stranger_learns_neither_the_customer_nor_the_job_ids(any_api: InProcessHub, lab: FakeAgent) -> None:
    placed = _place(any_api)
    stub, bob = _stub(any_api), any_api.md("bob")
    denied = grpc.StatusCode.PERMISSION_DENIED
    calls = {
        "GetOrder": lambda: stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=bob),
        "WatchOrder": lambda: list(stub.WatchOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=bob,
                                                   timeout=30)),
        "CancelOrder": lambda: stub.CancelOrder(orders_pb2.CancelOrderRequest(order_id=placed.id), metadata=bob),
    }
    for name, call in calls.items():
        refusal = refused(any_api, call, denied, "PERMISSION_DENIED", placed.id)
        assert "carol" not in refusal.message, (name, refusal.message)
    answers = set()
    for job_id in ("j-no-such-job", placed.job_id, ""):
        for role in ("customer", "maker"):
            request = orders_pb2.RateOrderRequest(order_id=placed.id, job_id=job_id,
                                                  rating={"role": role, "stars": 1})
            def rate(r: orders_pb2.RateOrderRequest = request) -> object:
                return stub.RateOrder(r, metadata=bob)

            refusal = refused(any_api, rate, denied, "PERMISSION_DENIED")
            answers.add((role, refusal.message))
    assert len(answers) == 2  # one answer per role, whichever job id was asked about


# -- 7: control and bidi characters in text others read --------------------------------------------

@pytest.mark.parametrize("bad", ["\u202e", "\u2066", "\u200f", "\x1b", "\x85", "\n", "\t"])
def test_control_and_bidi_characters_are_refused_in_one_line_fields(any_api: InProcessHub, lab: FakeAgent,
                                                                     bad: str) -> None:
    placed = _place(any_api)
    stub, carol = _stub(any_api), any_api.md("carol")
    cancel = orders_pb2.CancelOrderRequest(order_id=placed.id, reason=f"changed{bad}mind")
    refusal = refused(any_api, lambda: stub.CancelOrder(cancel, metadata=carol), INVALID, "CONTROL_CHARACTER",
                      "reason", f"U+{ord(bad):04X}")
    assert refusal.info.metadata["field"] == "reason"
    again = orders_pb2.PlaceOrderRequest(spec=_spec(), best="cheapest", idempotency_key=f"k{bad}")
    refused(any_api, lambda: stub.PlaceOrder(again, metadata=carol), INVALID, "CONTROL_CHARACTER", "idempotency_key")
    assert _quote_and_order_refuse(any_api, _spec(parameters={"size": f"2{bad}0"}), "parameter size") == \
        "spec.parameters[size]"


@pytest.mark.parametrize("bad", ["\u202e", "\u2069", "\u200e", "\x07", "\x7f", "\r", "\x9b"])
def test_a_rating_comment_takes_lines_and_tabs_but_no_other_control(any_api: InProcessHub, lab: FakeAgent,
                                                                     bad: str) -> None:
    placed = _place(any_api)
    stub, carol = _stub(any_api), any_api.md("carol")
    lab.print_job()
    wait_for(lambda: stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=carol).state
             == orders_pb2.ORDER_STATE_DELIVERED)  # the order follows its job off the agent's thread
    rating = {"role": "customer", "stars": 4, "comment": f"fine{bad}work"}
    request = orders_pb2.RateOrderRequest(order_id=placed.id, rating=rating)
    refusal = refused(any_api, lambda: stub.RateOrder(request, metadata=carol), INVALID, "CONTROL_CHARACTER",
                      "rating.comment", f"U+{ord(bad):04X}")
    assert refusal.info.metadata["field"] == "rating.comment"
    rating["comment"] = "fine work\n\tsmooth walls"
    stub.RateOrder(orders_pb2.RateOrderRequest(order_id=placed.id, rating=rating), metadata=carol)


def _delivered(api: InProcessHub, lab: FakeAgent) -> orders_pb2.Order:
    placed = _place(api)
    lab.print_job()
    wait_for(lambda: _stub(api).GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=api.md("carol"))
             .state == orders_pb2.ORDER_STATE_DELIVERED)
    return placed


def _at_once(call: Callable[[int], object], count: int = 8) -> list[object]:
    """``call(i)`` from ``count`` threads released together: each answer, or the status it was refused with."""
    start = threading.Barrier(count)

    def one(i: int) -> object:
        start.wait(30)
        try:
            return call(i)
        except grpc.RpcError as exc:
            return exc.code()

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_one_rating_sent_eight_times_at_once_is_stored_once(any_api: InProcessHub, lab: FakeAgent) -> None:
    """Each answer is OK, as for one after the other (PostgreSQL answered INTERNAL: two inserts raced)."""
    placed = _delivered(any_api, lab)
    request = orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "customer", "stars": 4})
    answers = _at_once(lambda i: _stub(any_api).RateOrder(request, metadata=any_api.md("carol")))
    assert not [a for a in answers if isinstance(a, grpc.StatusCode)], answers
    record = any_api.records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=any_api.md("bob"))
    assert [(r.rater, r.stars) for r in record.ratings] == [("carol", 4)] and record.design_reputation.count == 1


def test_a_rating_of_the_whole_order_and_of_its_job_count_once(any_api: InProcessHub, lab: FakeAgent) -> None:
    """One per person, role and job: rating the order replaces the person's rating of its job, and back."""
    placed = _delivered(any_api, lab)
    stub, carol = _stub(any_api), any_api.md("carol")
    for job_id, stars in (("", 5), (placed.job_id, 2), ("", 4)):
        stub.RateOrder(orders_pb2.RateOrderRequest(order_id=placed.id, job_id=job_id,
                                                   rating={"role": "customer", "stars": stars}), metadata=carol)
        record = any_api.records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=any_api.md("bob"))
        assert [(r.rater, r.stars) for r in record.ratings] == [("carol", stars)]
        assert record.design_reputation.count == 1
    stub.RateOrder(orders_pb2.RateOrderRequest(order_id=placed.id, rating={"role": "maker", "stars": 3}),
                   metadata=any_api.md("lab-1"))  # another role is another vote
    record = any_api.records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=any_api.md("bob"))
    assert sorted((r.rater, r.stars) for r in record.ratings) == [("carol", 4), ("lab-1", 3)]


def test_a_participation_rung_set_eight_times_at_once_answers_ok(any_api: InProcessHub) -> None:
    _push(any_api)
    request = records_pb2.SetParticipationRequest(design="cube", rung="consume")
    answers = _at_once(lambda i: any_api.records.SetParticipation(request, metadata=any_api.md("alice")))
    assert not [a for a in answers if isinstance(a, grpc.StatusCode)], answers
    record = any_api.records.GetRecord(records_pb2.GetRecordRequest(design="cube"), metadata=any_api.md("bob"))
    assert record.participation == "consume"


# -- 8: value equations -----------------------------------------------------------------------------

@pytest.mark.parametrize(("maker", "design"), [
    ("50.00000000000000000000000000001", "30"), ("-0", "85"), (" 50 ", "30"), ("\u0665\u0660", "30"),
    ("5_0", "30"), ("50.12345", "29.87655"), ("5E1", "30"), ("NaN", "30"), ("+50", "30"), ("50.", "30"),
])
def test_a_value_equation_takes_plain_decimals_that_add_up_exactly(any_api: InProcessHub, maker: str,
                                                                   design: str) -> None:
    _push(any_api)
    commons = "15" if maker == "-0" else "20"
    equation = records_pb2.ValueEquation(design="cube", maker=maker, design_lineage=design, commons=commons,
                                         own_revision="70", upstream="30")
    request = records_pb2.SetValueEquationRequest(equation=equation)
    refused(any_api, lambda: any_api.records.SetValueEquation(request, metadata=any_api.md("alice")), INVALID,
            "INVALID_ARGUMENT", "maker")


def test_a_value_equation_with_four_decimal_places_is_published(any_api: InProcessHub) -> None:
    _push(any_api)
    equation = records_pb2.ValueEquation(design="cube", maker="50.1234", design_lineage="29.8766", commons="20",
                                         own_revision="70", upstream="30")
    published = any_api.records.SetValueEquation(records_pb2.SetValueEquationRequest(equation=equation),
                                                 metadata=any_api.md("alice"))
    assert (published.version, published.maker, published.design_lineage) == ("2", "50.1234", "29.8766")


# -- 4: concurrent WatchOrder streams ---------------------------------------------------------------

def test_one_account_watches_a_bounded_number_of_orders_at_once(any_api: InProcessHub, lab: FakeAgent) -> None:
    placed = _place(any_api)
    stub, watch = _stub(any_api), orders_pb2.GetOrderRequest(order_id=placed.id)
    most = limits.CONCURRENT_CALLS["Orders.WatchOrder"]
    assert 8 <= most <= 16
    streams = [stub.WatchOrder(watch, metadata=any_api.md("carol"), timeout=60) for _ in range(most)]
    try:
        assert all(next(s).id == placed.id for s in streams)  # all admitted and running
        one_more = stub.WatchOrder(watch, metadata=any_api.md("carol"), timeout=60)
        with pytest.raises(grpc.RpcError) as info:
            next(one_more)
        refusal = details_of(info.value)
        assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refusal.info.reason == "CONCURRENCY_LIMIT"
        assert "limit concurrent Orders.WatchOrder" in refusal.message and refusal.retry is not None
        admin = stub.WatchOrder(watch, metadata=any_api.md("admin"), timeout=60)  # another account watches on
        assert next(admin).id == placed.id
        admin.cancel()
        streams.pop().cancel()  # a slot is free again
        again = stub.WatchOrder(watch, metadata=any_api.md("carol"), timeout=60)
        assert next(again).id == placed.id
        streams.append(again)
    finally:
        for stream in streams:
            stream.cancel()


# -- 5: ListOrders pages by bytes -------------------------------------------------------------------

def test_list_orders_cuts_pages_by_bytes_and_pages_on(any_api: InProcessHub, lab: FakeAgent,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    placed = [_place(any_api, key=f"k{i}", quantity=3) for i in range(4)]
    stub, carol = _stub(any_api), any_api.md("carol")
    whole = stub.ListOrders(orders_pb2.ListOrdersRequest(include_final=True), metadata=carol)
    assert [o.id for o in whole.orders] == [o.id for o in reversed(placed)] and not whole.next_page_token
    one = max(o.ByteSize() for o in whole.orders)
    cut_page = limits.cut_page
    monkeypatch.setattr(limits, "cut_page", lambda sizes: cut_page(sizes, one * 2 + 8))  # two orders a page
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListOrders(orders_pb2.ListOrdersRequest(include_final=True, page={"page_size": 10,
                                                                                       "page_token": token}),
                               metadata=carol)
        assert 1 <= len(page.orders) <= 2 and page.ByteSize() <= one * 2 + 64
        seen += [o.id for o in page.orders]
        pages, token = pages + 1, page.next_page_token
        if not token:
            break
    assert seen == [o.id for o in whole.orders] and pages == 2


# -- who may order what, and what a rater is answered ---------------------------------------------

def _proposed(api: InProcessHub, tag: bytes = b"\n") -> str:
    """bob's proposal of another cube mesh (the STL with ``tag`` appended) for the cube design: its revision id."""
    head = api.designs.GetDesign(designs_pb2.GetDesignRequest(design="cube"), metadata=api.md("bob")).head_revision_id
    files = {**FILES, "calibration-cube.stl": FILES["calibration-cube.stl"] + tag}
    pushed = api.push("bob", "cube", files, manifest=manifest_toml("cube", files=("calibration-cube.stl",),
                                                                    title="Bob's cube"), parents=(head,))
    assert pushed.is_proposal
    return str(pushed.revision_id)


def test_a_proposal_not_accepted_is_never_quoted_or_ordered(any_api: InProcessHub, lab: FakeAgent) -> None:
    revision = _proposed(any_api)
    stub = _stub(any_api)
    refused(any_api, lambda: stub.Quote(orders_pb2.QuoteRequest(spec=_spec(revision_id=revision)),
                                        metadata=any_api.md("carol")),
            grpc.StatusCode.FAILED_PRECONDITION, "REVISION_NOT_ACCEPTED", f"cube@{revision[:12]}", "not accepted")
    refused(any_api, lambda: stub.PlaceOrder(orders_pb2.PlaceOrderRequest(
        spec=_spec(revision_id=revision[:12]), best="cheapest"), metadata=any_api.md("carol")),
            grpc.StatusCode.FAILED_PRECONDITION, "REVISION_NOT_ACCEPTED")
    proposal = any_api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="cube"),
                                             metadata=any_api.md("alice")).proposals[0]
    any_api.designs.AcceptProposal(designs_pb2.AcceptProposalRequest(design="cube", proposal_id=proposal.id),
                                   metadata=any_api.md("alice"))
    assert _place(any_api, revision_id=revision).spec.revision_id == revision


def test_a_declined_proposal_is_never_ordered(any_api: InProcessHub, lab: FakeAgent) -> None:
    revision = _proposed(any_api)
    pending = any_api.designs.ListProposals(designs_pb2.ListProposalsRequest(design="cube"),
                                            metadata=any_api.md("alice")).proposals[0]
    any_api.designs.DeclineProposal(designs_pb2.DeclineProposalRequest(design="cube", proposal_id=pending.id,
                                                                       reason="no"), metadata=any_api.md("alice"))
    refused(any_api, lambda: _stub(any_api).Quote(orders_pb2.QuoteRequest(spec=_spec(revision_id=revision)),
                                                  metadata=any_api.md("carol")),
            grpc.StatusCode.FAILED_PRECONDITION, "REVISION_NOT_ACCEPTED")


def test_a_maintainers_rating_is_answered_without_the_customers_order(any_api: InProcessHub, lab: FakeAgent) -> None:
    placed = _delivered(any_api, lab)
    rated = _stub(any_api).RateOrder(orders_pb2.RateOrderRequest(
        order_id=placed.id, rating={"role": "designer", "stars": 5}), metadata=any_api.md("alice"))
    assert (rated.id, rated.spec.design, rated.state) == (placed.id, "cube", orders_pb2.ORDER_STATE_DELIVERED)
    assert (rated.customer, rated.spec.near, rated.price.minor_units, rated.quote_id, rated.job_id,
            list(rated.objects)) == ("", "", 0, "", "", [])
    mine = _stub(any_api).RateOrder(orders_pb2.RateOrderRequest(
        order_id=placed.id, rating={"role": "customer", "stars": 5}), metadata=any_api.md("carol"))
    assert mine.customer == "carol" and mine.spec.near and mine.objects[0].job_id


def test_an_offer_alone_is_no_part_in_an_order(any_api: InProcessHub, lab: FakeAgent) -> None:
    """A node offered a job it never accepted rates nothing as its maker and cannot fail or cancel it."""
    other = FakeAgent.enrolled(any_api, "lab-2", [printer()])
    other.connect()
    try:
        placed = _place(any_api, quantity=2)  # one job offered to each lab
        lab.print_job()
        offer = other.expect("offer").offer
        stub = _stub(any_api)
        wait_for(lambda: any(o.state == "done" for o in stub.GetOrder(
            orders_pb2.GetOrderRequest(order_id=placed.id), metadata=any_api.md("carol")).objects))
        refused(any_api, lambda: stub.RateOrder(orders_pb2.RateOrderRequest(
            order_id=placed.id, rating={"role": "maker", "stars": 1}), metadata=any_api.md("lab-2")),
                grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", "lab-2 took no part")
        other.event(offer.job_id, offer.lease_epoch - 1, nodes_pb2.EVENT_KIND_FAILED, {"failure_reason": "nope"})
        assert other.ended() == grpc.StatusCode.PERMISSION_DENIED
        order = stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=any_api.md("carol"))
        assert order.state != orders_pb2.ORDER_STATE_FAILED and "nope" not in order.failure_reason
    finally:
        other.close()


def test_the_same_grant_sent_at_once_is_recorded_once(any_api: InProcessHub) -> None:
    any_api.push("alice", "nc-cube", {"a.stl": FILES["calibration-cube.stl"]},
                 manifest=manifest_toml("nc-cube", files=("a.stl",), license="CC-BY-NC-4.0"), create=True)
    request = signed_grant(registered_key(any_api, "alice"), "alice", "nc-cube")
    answers = _at_once(lambda i: _stub(any_api).Grant(request, metadata=any_api.md("alice")))
    assert len({a.id for a in answers}) == 1, answers  # type: ignore[union-attr]
    listed = _stub(any_api).ListGrants(orders_pb2.ListGrantsRequest(design="nc-cube"), metadata=any_api.md("carol"))
    assert len(listed.grants) == 1


def test_a_part_name_as_long_as_a_manifest_allows_is_ordered(any_api: InProcessHub) -> None:
    """PostgreSQL kept a job's part name in 128 characters and answered INTERNAL to such an order."""
    name = "p" * 300
    manifest = manifest_toml("cube", files=("calibration-cube.stl",)).replace('name = "body"', f'name = "{name}"')
    assert name in manifest
    any_api.push("alice", "cube", FILES, manifest=manifest, create=True)
    agent = FakeAgent.enrolled(any_api, "lab-1", [printer()])
    agent.connect()
    try:
        placed = _place(any_api)
        assert agent.expect("offer").offer.part == name
        assert [o.job_id for o in placed.objects] and placed.state != orders_pb2.ORDER_STATE_FAILED
    finally:
        agent.close()


def test_a_hub_holding_jobs_takes_the_part_name_migration(any_api: InProcessHub, lab: FakeAgent) -> None:
    """Rebuilding SQLite's jobs table for it failed on the tables that refer to jobs: the hub did not start."""
    placed = _delivered(any_api, lab)
    config = _alembic_config(any_api.engine)
    command.downgrade(config, "0012")
    command.upgrade(config, "head")
    order = _stub(any_api).GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=any_api.md("carol"))
    assert [o.job_id for o in order.objects] == [o.job_id for o in placed.objects]
