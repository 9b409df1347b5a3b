"""Orders placed at the same time share one write transaction (hub.service.batching.GroupCommit and
OrderStore._thd_place_many), on SQLite and PostgreSQL: each keeps its own outcome, one failing order
does not fail its batch-mates, and the matching of each sees the claims of those before it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from hub.domain import Account, Role
from hub.errors import HubError
from hub.jobs import HELD
from hub.service.batching import GroupCommit
from hub.service.orders import OrderRequest, OrderView
from hub.store import schema
from hub.store.orders import MatchQuery
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer, wait_for
from tests.hub.harness import manifest_toml

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL

ROOT = Path(__file__).resolve().parents[2]
STL = (ROOT / "designs" / "calibration-cube" / "calibration-cube.stl").read_bytes()


# -- the group commit alone --------------------------------------------------------------------


def _gated(batches: list[list[str]], release: threading.Event):
    """A batch function that holds its first batch until released (so that calls queue behind it)."""
    def run(items: Sequence[str]) -> list[str | Exception]:
        batches.append(list(items))
        if len(batches) == 1:
            release.wait()
        return [ValueError(f"{item} is bad") if item.startswith("bad") else item.upper() for item in items]

    return run


def _call(group: GroupCommit[str, str], item: str, results: dict[str, object]) -> threading.Thread:
    def work() -> None:
        try:
            results[item] = group._thd_call(item)
        except ValueError as exc:
            results[item] = str(exc)

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_calls_made_while_a_batch_runs_are_answered_by_the_next_batch_each_with_its_own_result() -> None:
    batches: list[list[str]] = []
    release = threading.Event()
    group: GroupCommit[str, str] = GroupCommit(_gated(batches, release), max_batch=3)
    results: dict[str, object] = {}
    threads = [_call(group, "a", results)]
    wait_for(lambda: batches)
    threads += [_call(group, item, results) for item in ("b", "bad-c", "d", "e")]
    wait_for(lambda: len(group._pending) == 4)
    release.set()
    for thread in threads:
        thread.join()
    assert batches[0] == ["a"]
    assert sorted(len(b) for b in batches[1:]) == [1, 3]  # at most max_batch per batch, in arrival order
    assert sorted(x for b in batches[1:] for x in b) == ["b", "bad-c", "d", "e"]
    assert results == {"a": "A", "b": "B", "bad-c": "bad-c is bad", "d": "D", "e": "E"}


def test_a_batch_function_that_raises_fails_every_caller_of_that_batch_and_no_other() -> None:
    batches: list[list[str]] = []
    release = threading.Event()

    def run(items: Sequence[str]) -> list[str | Exception]:
        batches.append(list(items))
        if len(batches) == 1:
            release.wait()
        if len(batches) == 2:
            raise ValueError("the database went away")
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(run)
    results: dict[str, object] = {}
    threads = [_call(group, "a", results)]
    wait_for(lambda: batches)
    threads += [_call(group, item, results) for item in ("b", "c")]
    wait_for(lambda: len(group._pending) == 2)
    release.set()
    for thread in threads:
        thread.join()
    assert results == {"a": "A", "b": "the database went away", "c": "the database went away"}
    threads = [_call(group, "d", results)]  # the next batch runs as usual
    threads[0].join()
    assert results["d"] == "D"


def test_the_matching_index_names_exactly_the_job_states_that_hold_a_printer() -> None:
    assert schema.HELD_STATES == tuple(sorted(s.value for s in HELD))


# -- placing orders together -------------------------------------------------------------------


async def _place(hub: ClockedHub, key: str, material: str = "PLA") -> OrderView | str:
    """Place an order by the rule "cheapest" through the service (as PlaceOrder does behind the gRPC
    adapter, whose admission lets one account place only two at once): the order or the error's name."""
    service = hub.composed.hub.orders
    assert service is not None
    request = OrderRequest("cube", material=material, quantity=1, near="52.52,13.40", paid=True)
    try:
        return await service.place(Account("carol", Role.CUSTOMER), request, "", 0, "cheapest", key)
    except HubError as exc:
        return type(exc).__name__


def _held(hub: ClockedHub) -> list[tuple[str, int]]:
    j = schema.jobs
    with hub.engine.connect() as conn:
        return sorted((str(n), int(c)) for n, c in conn.execute(
            sa.select(j.c.node, sa.func.count()).where(j.c.state.in_(["offered", "assigned"])).group_by(j.c.node)))


class _Round:
    """Orders placed while the writer is held by a first one, so that they form the next batch."""

    def __init__(self, hub: ClockedHub) -> None:
        service = hub.composed.hub.orders
        assert service is not None
        self.hub, self.writer, self.store = hub, service._writer, service.store
        self.batches: list[int] = []
        self.singles = 0
        self.results: dict[str, OrderView | str] = {}
        self.release = threading.Event()
        self.loop = asyncio.new_event_loop()  # one loop for every placement, as in the hub
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        run, single = self.writer._run, self.store._thd_place

        def gated(builds: Sequence[object]) -> object:
            self.batches.append(len(builds))
            if len(self.batches) == 1:
                self.release.wait()
            return run(builds)  # type: ignore[arg-type]

        def counted(build: object) -> object:
            self.singles += 1
            return single(build)  # type: ignore[arg-type]

        self.writer._run = gated  # type: ignore[assignment]
        self.store._thd_place = counted  # type: ignore[method-assign,assignment]

    def place(self, name: str, key: str, material: str = "PLA") -> concurrent.futures.Future[None]:
        async def work() -> None:
            self.results[name] = await _place(self.hub, key, material)

        return asyncio.run_coroutine_threadsafe(work(), self.loop)

    def run(self, first: tuple[str, str], rest: Sequence[tuple[str, str, str]]) -> None:
        try:
            placing = [self.place(*first)]
            wait_for(lambda: self.batches)
            placing += [self.place(*item) for item in rest]
            wait_for(lambda: len(self.writer._pending) == len(rest))
            self.release.set()
            for future in placing:
                future.result()
        finally:
            self.release.set()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()


def test_orders_placed_together_are_written_in_one_transaction_each_with_its_own_outcome(hub: ClockedHub) -> None:
    hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)), create=True)
    agents = [FakeAgent.enrolled(hub, f"lab-{i}", [printer()]) for i in range(1, 5)]
    for agent in agents:
        agent.connect()
    together = _Round(hub)
    together.run(("first", "k0"), [("plain", "k1", "PLA"), ("petg", "k2", "PETG"), ("other", "k3", "PLA")])
    assert together.batches == [1, 3] and together.singles == 1  # the three in one transaction, no retry
    results = together.results
    assert results["petg"] == "FailedPrecondition"  # no printer has PETG loaded: that order alone fails
    placed = [results[name] for name in ("first", "plain", "other")]
    assert all(isinstance(o, OrderView) and [j.state.value for j in o.jobs] == ["offered"] for o in placed)
    # each order's matching saw the claims before it: three printers, none offered two jobs
    assert _held(hub) == [("lab-1", 1), ("lab-2", 1), ("lab-3", 1)]
    for agent in agents:
        agent.close()


def test_a_batch_whose_write_fails_is_placed_order_by_order(hub: ClockedHub) -> None:
    hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)), create=True)
    agents = [FakeAgent.enrolled(hub, f"lab-{i}", [printer()]) for i in range(1, 4)]
    for agent in agents:
        agent.connect()
    together = _Round(hub)
    # two placements with one idempotency key (the same request) in one batch: its keys' insert fails,
    # so each order is placed on its own and the twin gets the order its key names
    together.run(("first", "k0"), [("twin-a", "twin", "PLA"), ("twin-b", "twin", "PLA"), ("plain", "k1", "PLA")])
    assert together.batches == [1, 3] and together.singles == 4
    results = together.results
    twin, again, plain = results["twin-a"], results["twin-b"], results["plain"]
    assert isinstance(twin, OrderView) and isinstance(again, OrderView) and isinstance(plain, OrderView)
    assert twin.order.id == again.order.id != plain.order.id
    assert _held(hub) == [("lab-1", 1), ("lab-2", 1), ("lab-3", 1)]
    for agent in agents:
        agent.close()


def test_a_matching_made_before_the_write_keeps_only_the_printers_still_free_or_matches_again(hub: ClockedHub) -> None:
    hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)), create=True)
    agents = [FakeAgent.enrolled(hub, f"lab-{i}", [printer()]) for i in range(1, 4)]
    for agent in agents:
        agent.connect()
    service = hub.composed.hub.orders
    assert service is not None
    store = service.store
    query = MatchQuery("PLA", {"prusa_mk3s": (1800.0, 12.0)}, 2, lambda p: True)
    seen = store._thd_matching(query)
    assert [p.node for p in seen.printers] == ["lab-1", "lab-2"]  # same price: by name
    placed = asyncio.run(_place(hub, "k0"))
    assert isinstance(placed, OrderView) and [j.node for j in placed.jobs] == ["lab-1"]
    with hub.engine.connect() as conn:
        kept = store._matching(conn, replace(query, seen=seen))
        assert [p.node for p in kept.printers] == ["lab-2"]  # lab-1 was claimed since: dropped, nothing re-read
        only_claimed = replace(seen, printers=seen.printers[:1])
        again = store._matching(conn, replace(query, seen=only_claimed))
        assert [p.node for p in again.printers] == ["lab-2", "lab-3"]  # none left: matched again, free ones first
    for agent in agents:
        agent.close()


def _rated(name: str, currency: str, per_hour: int, per_gram: int):
    p = printer(name)
    p.rate_per_hour.currency = p.rate_per_gram.currency = currency
    p.rate_per_hour.minor_units, p.rate_per_gram.minor_units = per_hour, per_gram
    return p


def test_cheapest_matching_puts_free_printers_first_and_takes_each_currency_in_turn_page_by_page(
        hub: ClockedHub) -> None:
    """Three EUR printers (the cheapest busy) and two JPY ones: the free ones first, the cheapest of each
    currency, then the second cheapest of each (ties by the currency's code), then the busy one; any page
    of it is that slice of the whole."""
    pushed = hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)),
                      create=True)
    agents = [FakeAgent.enrolled(hub, "lab-1", [_rated(f"e{i}", "EUR", 200 + 100 * i, 5) for i in (1, 2, 3)]),
              FakeAgent.enrolled(hub, "lab-2", [_rated("j1", "JPY", 3000, 50), _rated("j2", "JPY", 2000, 50)])]
    for agent in agents:
        agent.connect()
    with hub.engine.begin() as conn:  # e1, the cheapest, holds a job
        conn.execute(schema.jobs.insert().values(
            id="j-held", design="cube", revision_id=pushed.revision_id, material="PLA", state="offered",
            node="lab-1", printer="e1", created_by="admin", created_at="2026-01-01T00:00:00Z",
            updated_at="2026-01-01T00:00:00Z"))
    service = hub.composed.hub.orders
    assert service is not None
    query = MatchQuery("PLA", {"prusa_mk3s": (1800.0, 12.0)}, 10, lambda p: True)

    def page(limit: int, offset: int) -> list[str]:
        with hub.engine.connect() as conn:
            return [f"{row.node}/{row.printer}" for row in service.store._candidate_rows(conn, query, limit, offset)]

    whole = ["lab-1/e2", "lab-2/j2", "lab-1/e3", "lab-2/j1", "lab-1/e1"]
    assert page(10, 0) == whole
    assert page(2, 0) + page(2, 2) + page(2, 4) == whole
    assert page(1, 3) == ["lab-2/j1"] and page(3, 5) == []
    for agent in agents:
        agent.close()


def _plan(conn: sa.Connection, statement: sa.Executable, params: dict[str, object]) -> str:
    """How the database runs a statement as the hub sends it (its own SQL and bound parameters)."""
    if conn.dialect.name == "sqlite":
        ran = conn.execute(statement, params)  # the SQL and parameters exactly as the hub sends them
        sql, bound = ran.context.statement, ran.context.parameters[0]
        raw = conn.connection.driver_connection
        return "\n".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", bound))  # type: ignore[union-attr]
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a test's tables are small: ask for the index anyway
    sql = str(statement.params(params).compile(conn, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
    return "\n".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN {sql % {}}").all())


def test_whether_a_printer_is_held_is_one_seek_of_the_held_printer_index(hub: ClockedHub) -> None:
    """A claim, matching's check of the printers it found and the dispatcher each ask whether a job holds a
    printer: one seek of ix_jobs_held_printer each, never a scan of every job of the node (its history)
    or of every held job of the hub. The states are named as the partial index names them: bound as
    parameters, no planner can prove the index applies (SQLite read every job the node ever had)."""
    from hub.store import jobs as job_store
    from hub.store import orders as order_store

    pushed = hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)),
                      create=True)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer("mk3"), printer("mini")])
    agent.connect()
    with hub.engine.begin() as conn:  # a node with a long history, and a job on one of its printers now
        conn.execute(schema.jobs.insert(), [{
            "id": f"j-{i:04d}", "design": "cube", "revision_id": pushed.revision_id, "material": "PLA",
            "state": "done" if i else "printing", "node": "lab-1", "printer": "mk3", "created_by": "admin",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"} for i in range(300)])
    pairs = {"n0": "lab-1", "p0": "mk3", "n1": "lab-1", "p1": "mini"}
    checks = [(job_store._HELD.statement, {"node": "lab-1", "printer": "mk3"}), (order_store._held_among(2).statement, pairs),
              (job_store._free_query(), {})]
    with hub.engine.connect() as conn, conn.begin():
        for statement, params in checks:
            held_states = ", ".join(repr(s) for s in schema.HELD_STATES)
            assert f"IN ({held_states})" in str(statement.compile(conn)), statement
            plan = _plan(conn, statement, params)
            assert "ix_jobs_held_printer" in plan and "ix_jobs_node" not in plan and "ix_jobs_state" not in plan, plan
        assert order_store._held_among(2).rows(conn, pairs) == [("lab-1", "mk3")]
    agent.close()


def test_a_printers_history_is_its_latest_prints_read_from_the_newest_back(hub: ClockedHub) -> None:
    """Quotes correct estimates by the latest prints of each candidate (node, printer model): exactly those,
    each pair read backwards along ix_fabrications_node_model_material and stopped at the limit, never
    every print of the node (a window function over them all grew with each node's history)."""
    from hub.store import orders as order_store

    revision = hub.push("alice", "cube", {"cube.stl": STL}, manifest=manifest_toml("cube", files=("cube.stl",)),
                        create=True).revision_id
    rows = [{"incarnation_id": f"i{i:011d}", "job_id": f"j-{i:04d}", "lease_epoch": 1, "design": "cube",
             "revision_id": revision, "node": ("lab-1", "lab-1", "lab-1", "lab-2")[i % 4], "printer": "p",
             "printer_model": ("Prusa MK3S", "Prusa MINI")[i % 2], "material": "PETG" if i % 5 == 0 else "PLA",
             "settings": "{}", "estimated_seconds": 1000 + i, "actual_seconds": 2000 + i, "estimated_filament_g": 1.0,
             "actual_filament_g": 2.0, "outcome": "failed" if i % 7 == 0 else "success",
             "finished_at": f"2026-01-01T{(i * 37 % 400) // 60:02d}:{(i * 37 % 400) % 60:02d}:00Z"} for i in range(400)]
    with hub.engine.begin() as conn:
        conn.execute(schema.jobs.insert(), [{
            "id": r["job_id"], "design": "cube", "revision_id": revision, "material": r["material"], "state": "done",
            "created_by": "admin", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}
            for r in rows])
        conn.execute(schema.fabrications.insert(), rows)
    pairs = [("lab-1", "Prusa MK3S"), ("lab-1", "Prusa MINI"), ("lab-2", "Prusa MK3S"), ("lab-2", "Prusa MINI"),
             ("lab-3", "Prusa MK3S")]

    def latest(node: str, model: str) -> list[float]:
        mine = [r for r in rows if (r["node"], r["printer_model"], r["material"], r["outcome"]) == (
            node, model, "PLA", "success")]
        return sorted(float(r["estimated_seconds"]) for r in sorted(mine, key=lambda r: r["finished_at"])[-5:])

    with hub.engine.connect() as conn, conn.begin():
        got = order_store.OrderStore._histories(conn, pairs, "PLA", 5)
        assert {p: sorted(h[0] for h in got[p]) for p in pairs} == {p: latest(*p) for p in pairs}
        assert got[("lab-3", "Prusa MK3S")] == [] and len(got[("lab-1", "Prusa MK3S")]) == 5
        plan = _plan(conn, order_store._latest_of(2).statement, {"n0": "lab-1", "m0": "Prusa MK3S", "n1": "lab-2",
                                                       "m1": "Prusa MINI", "material": "PLA", "lim": 5})
    assert "ix_fabrications_node_model_material" in plan and "WindowAgg" not in plan, plan
    if hub.engine.dialect.name == "sqlite":
        assert plan.count("(node=? AND printer_model=? AND material=?)") == 2, plan
    else:
        assert plan.count("Index Scan Backward using ix_fabrications_node_model_material") == 2, plan
