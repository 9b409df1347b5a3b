"""Routing orders on SQLite and PostgreSQL: jobs per manifest part and copy across nodes, placements
racing for one printer, and a declined job offered to its node again after a while."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from spimeforge.v1 import nodes_pb2, orders_pb2, orders_pb2_grpc

from hub.jobs import DEFAULT_TIMERS, TimerPolicy
from hub.store import schema
from tests.hub.clocked import start_either
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, wait_for
from tests.hub.harness import manifest_toml

ROOT = Path(__file__).resolve().parents[2]
STL = (ROOT / "designs" / "calibration-cube" / "calibration-cube.stl").read_bytes()
TTL = 30  # shorter than the silence after which a node counts as gone (45 s)


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClockedHub]:
    running = start_either(request, tmp_path, TimerPolicy(sweep_interval_s=3600, queue_poll_s=3600, decline_ttl_s=TTL))
    try:
        yield running
    finally:
        running.stop()


def _push_kit(hub: ClockedHub) -> None:
    """A design of two parts: a lid made twice per kit and a body, each its own mesh."""
    lid = '[[parts]]\nname = "lid"\nfiles = ["lid.stl"]\nmaterial = "PLA"\nquantity = 2\n'
    hub.push("alice", "kit", {"lid.stl": STL, "body.stl": STL + b"\n"},
             manifest=manifest_toml("kit", files=("body.stl",), extra=lid), create=True)


def _push_cube(hub: ClockedHub) -> None:
    hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)), create=True)


def _place(hub: ClockedHub, design: str, key: str, quantity: int = 1) -> orders_pb2.Order:
    spec = orders_pb2.OrderSpec(design=design, material="PLA", quantity=quantity, near="52.52,13.40", paid=True)
    return orders_pb2_grpc.OrdersStub(hub.channel).PlaceOrder(
        orders_pb2.PlaceOrderRequest(spec=spec, best="cheapest", idempotency_key=key), metadata=hub.md("carol"))


def _held(hub: ClockedHub) -> list[tuple[str, str, int]]:
    """(node, printer, jobs) of every printer that holds a job."""
    j = schema.jobs
    with hub.engine.connect() as conn:
        return [(str(n), str(p), int(c)) for n, p, c in conn.execute(
            sa.select(j.c.node, j.c.printer, sa.func.count()).where(j.c.state.in_(["offered", "assigned"]))
            .group_by(j.c.node, j.c.printer))]


def test_an_order_splits_into_one_job_per_part_and_copy_across_nodes(hub: ClockedHub) -> None:
    _push_kit(hub)
    agents = [FakeAgent.enrolled(hub, f"lab-{i}", [printer()]) for i in (1, 2)]
    for agent in agents:
        agent.connect()
    placed = _place(hub, "kit", "k1")
    service = hub.composed.hub.orders
    assert service is not None and service.jobs is not None
    order = service.store._thd_get_order(placed.id)
    assert [o.part for o in order.objects] == ["lid", "lid", "body"]
    jobs = {j.id: j for j in service.jobs._thd_jobs_of_order(placed.id)}
    assert [jobs[o.job_id].part for o in order.objects] == ["lid", "lid", "body"]
    # two nodes with one printer each: the chosen node (lab-1, cheapest by name) takes the first lid,
    # lab-2 the second; the body waits for the chosen node; the quote's price is kept
    states = [(jobs[o.job_id].state.value, jobs[o.job_id].node) for o in order.objects]
    assert states == [("offered", "lab-1"), ("offered", "lab-2"), ("queued", None)]
    assert jobs[order.objects[2].job_id].want_node == "lab-1" and order.price_minor == placed.price.minor_units
    # each offer carries only its part's files
    for agent in agents:
        offer = agent.expect("offer").offer
        assert offer.job_id in (order.objects[0].job_id, order.objects[1].job_id)
        assert [a.path for a in offer.artifacts] == ["lid.stl"]
    for agent in agents:
        agent.close()


KIT_SCAD = b"""part = "body"; // [body, lid]
width = 20; // [10:1:40]
if (part == "lid") cube([width, width, 2]); else cube([width, width, 10]);
"""


def _place_with(hub: ClockedHub, design: str, key: str, parameters: dict[str, str]) -> orders_pb2.Order:
    spec = orders_pb2.OrderSpec(design=design, material="PLA", quantity=1, near="52.52,13.40", paid=True,
                                parameters=parameters)
    return orders_pb2_grpc.OrdersStub(hub.channel).PlaceOrder(
        orders_pb2.PlaceOrderRequest(spec=spec, best="cheapest", idempotency_key=key), metadata=hub.md("carol"))


def test_a_part_ordered_with_the_default_parameters_is_offered_its_mesh_and_changed_ones_the_source(
        hub: ClockedHub) -> None:
    """A customer who sends a parameter at its default gets the published meshes: each part's job offers
    its mesh alone (it offered the OpenSCAD source too, and the node rendered the source's default part,
    the body, for the lid's job). Changed parameters make one object, rendered from the source."""
    lid = '[[parts]]\nname = "lid"\nfiles = ["lid.stl"]\nmaterial = "PLA"\nquantity = 1\n'
    scad = '[openscad]\nsource = "kit.scad"\nparameters = { part = "body", width = 20 }\n'
    hub.push("alice", "kit", {"lid.stl": STL, "body.stl": STL + b"\n", "kit.scad": KIT_SCAD},
             manifest=manifest_toml("kit", files=("body.stl",), extra=lid + scad), create=True)
    agents = [FakeAgent.enrolled(hub, f"lab-{i}", [printer()]) for i in (1, 2)]
    for agent in agents:
        agent.connect()
    try:
        placed = _place_with(hub, "kit", "k1", {"width": "20"})
        offers = {o.part: [(a.path, a.kind) for a in o.artifacts] for o in (a.expect("offer").offer for a in agents)}
        assert offers == {"lid": [("lid.stl", "mesh")], "body": [("body.stl", "mesh")]}
        assert len(placed.objects) == 2
        agents.append(FakeAgent.enrolled(hub, "lab-3", [printer()]))  # the one printer free
        agents[-1].connect()
        placed = _place_with(hub, "kit", "k2", {"width": "25"})
        offer = agents[-1].expect("offer").offer
        assert len(placed.objects) == 1 and offer.part == "" and dict(offer.parameters) == {"width": "25"}
        assert {a.path: a.kind for a in offer.artifacts} == {"kit.scad": "scad", "body.stl": "mesh", "lid.stl": "mesh"}
    finally:
        for agent in agents:
            agent.close()


def test_placements_racing_for_one_printer_never_share_it(hub: ClockedHub) -> None:
    _push_cube(hub)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    start = threading.Barrier(2)
    placed: list[orders_pb2.Order] = []

    def race(key: str) -> None:
        start.wait()
        placed.append(_place(hub, "cube", key))

    threads = [threading.Thread(target=race, args=(f"race-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(placed) == 2 and placed[0].id != placed[1].id
    assert sorted(o.objects[0].state for o in placed) == ["offered", "queued"]
    assert _held(hub) == [("lab-1", "mk3", 1)]
    # a second printer: lab-1's is busy, so one racer gets lab-2's and the other waits
    other = FakeAgent.enrolled(hub, "lab-2", [printer()])
    other.connect()
    more: list[orders_pb2.Order] = []
    start = threading.Barrier(2)

    def race_again(key: str) -> None:
        start.wait()
        more.append(_place(hub, "cube", key))

    threads = [threading.Thread(target=race_again, args=(f"again-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(more) == 2
    assert sorted(_held(hub)) == [("lab-1", "mk3", 1), ("lab-2", "mk3", 1)]
    offered = [o.objects[0] for o in more if o.objects[0].state == "offered"]
    assert [(o.node, o.printer) for o in offered] == [("lab-2", "mk3")]
    agent.close()
    other.close()


def test_a_declined_job_is_offered_to_that_node_again_after_a_while(hub: ClockedHub) -> None:
    _push_cube(hub)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    placed = _place(hub, "cube", "k1")
    jobs = hub.composed.hub.jobs
    job_id = placed.objects[0].job_id
    offer = agent.expect("offer").offer
    agent.reply(offer, accept=False, reason=nodes_pb2.DECLINE_REASON_UNSPECIFIED)
    wait_for(lambda: jobs._thd_get_job(job_id).state.value == "queued")
    assert jobs._thd_get_job(job_id).tried_nodes == ("lab-1",)
    hub.sweep()  # lab-1 declined it: not asked again at once
    assert jobs._thd_get_job(job_id).state.value == "queued"
    hub.clock.advance(TTL - 5)
    hub.sweep()
    assert jobs._thd_get_job(job_id).state.value == "queued"
    hub.clock.advance(10)
    hub.sweep()  # the decline is forgotten: offered to lab-1 again
    again = jobs._thd_get_job(job_id)
    assert (again.state.value, again.node, again.tried_nodes) == ("offered", "lab-1", ())
    assert agent.expect("offer").offer.job_id == job_id
    agent.close()


def test_the_default_decline_ttl_is_finite() -> None:
    assert 0 < DEFAULT_TIMERS.decline_ttl_s < 24 * 3600


def test_an_order_placed_while_every_printer_is_busy_waits_in_the_queue(hub: ClockedHub) -> None:
    _push_cube(hub)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    first = _place(hub, "cube", "k1")
    second = _place(hub, "cube", "k2")
    assert (first.objects[0].state, first.objects[0].node) == ("offered", "lab-1")
    assert second.objects[0].state == "queued" and second.node == "lab-1"
    assert _held(hub) == [("lab-1", "mk3", 1)]
    agent.close()
