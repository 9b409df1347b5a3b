"""Benchmark: order routing and the community record at scale, on SQLite and on PostgreSQL.

With 1,000 registered nodes (one idle PLA printer each, online, clear bed) and 10,000 designs:

* orders routed per second with full matching, from 8 concurrent clients (threads): each
  routed order lets the database match every printer (OrderStore._thd_candidates: online,
  accepting, idle, clear bed, material loaded, cheapest first), checks the build volume
  (hub.scheduler.qualifies), prices and ranks them (hub.quotes), stores the order with its
  idempotency key and objects (OrderStore), and creates its job through the job service, whose
  dispatch claims a printer with a compare-and-set (target >= 500/s on SQLite). Afterwards no job may be
  offered to two printers and no printer may hold two jobs.
  The slicer is not part of this figure (a quote's real slice is cached per mesh and profile;
  see ``-k slicing``): the routed orders use a known estimate.
* reference in the same run: the bare claim query, one ``UPDATE … RETURNING`` per order
  (with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) from 8 threads on the same jobs table;
* ``spime record`` p99 through the real gRPC stub for a design with 10,000 fabrications
  (target < 100 ms), next to the bare ``SELECT`` of the latest 200 fabrications it lists.

Run with ``bash ops/bench.sh -k orders`` (SPIME_BENCH_ORDERS=N changes the routed orders, default 800).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from spimeforge.v1 import records_pb2

from hub import orders, quotes
from hub.jobs import JobSpec
from hub.scheduler import qualifies
from hub.store import schema
from tests.fixtures.postgres import create_database
from tests.hub.fake_agent import ClockedHub, start_clocked

NODES, DESIGNS, FABRICATIONS = 1000, 10_000, 10_000
ORDERS = int(os.environ.get("SPIME_BENCH_ORDERS", "800"))
CLIENTS = 8
RECORD_CALLS = 100
NOW = "2026-12-01T04:00:00Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClockedHub]:
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    running = start_clocked(tmp_path / "data", url)
    try:
        yield running
    finally:
        running.stop()


def _populate(engine: sa.Engine) -> list[tuple[str, str]]:
    """1,000 nodes with one printer each, 10,000 designs with one revision each: (design, revision)."""
    names = [f"lab-{i:04d}" for i in range(NODES)]
    designs = [(f"d-{i:05d}", f"{i:064x}") for i in range(DESIGNS)]
    with engine.begin() as conn:
        conn.execute(schema.accounts.insert(), [{"name": n, "role": "node", "created_at": NOW} for n in names])
        conn.execute(schema.nodes.insert(), [{"name": n, "online": True, "latitude": 52.0 + i / 1000,
                                              "longitude": 13.0 + i / 1000, "last_seen": NOW, "created_at": NOW}
                                             for i, n in enumerate(names)])
        conn.execute(schema.printers.insert(), [{
            "node": n, "printer": "mk3", "model": "Prusa MK3S", "build_x_mm": 250, "build_y_mm": 210,
            "build_z_mm": 210, "materials": '["PLA"]', "phase": "idle", "bed_clear": True, "accepting": True,
            "hour_currency": "EUR", "hour_minor": 200 + i % 97, "gram_currency": "EUR", "gram_minor": 3 + i % 5,
            "slicer_profile": "prusa_mk3s", "updated_at": NOW} for i, n in enumerate(names)])
        conn.execute(schema.designs.insert(), [{
            "slug": d, "title": d, "license": "CC-BY-4.0", "head_revision_id": r, "created_by": "alice",
            "created_at": NOW, "updated_at": NOW} for d, r in designs])
        conn.execute(schema.revisions.insert(), [{
            "id": r, "design": d, "seq": 1, "manifest_toml": "", "author": "alice", "created_at": NOW, "message": "m",
            "signature": b"", "public_key": b"", "kind": "push", "stored_at": NOW} for d, r in designs])
    return designs


def _threads(work: Callable[[int], None], count: int) -> float:
    """Run work(i) for i < count on CLIENTS threads; the wall time in seconds."""
    lock, next_i = threading.Lock(), [0]

    def loop() -> None:
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= count:
                return
            work(i)

    threads = [threading.Thread(target=loop) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def _bare_claims(engine: sa.Engine, designs: list[tuple[str, str]], count: int) -> float:
    """The reference: queued jobs claimed one UPDATE … RETURNING each."""
    jobs = schema.jobs
    with engine.begin() as conn:
        conn.execute(jobs.insert(), [{"id": f"ref-{i:06d}", "design": designs[i][0], "revision_id": designs[i][1],
                                      "material": "PLA", "state": "queued", "created_by": "bench", "created_at": NOW,
                                      "updated_at": NOW} for i in range(count)])
    pick = sa.select(jobs.c.id).where(jobs.c.state == "queued", jobs.c.id.like("ref-%")).order_by(jobs.c.id).limit(1)
    if engine.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    claimed: list[str] = []

    def claim(i: int) -> None:
        stmt = (sa.update(jobs).where(jobs.c.id == pick.scalar_subquery(), jobs.c.state == "queued")
                .values(state="offered", node=f"lab-{i % NODES:04d}", printer="mk3").returning(jobs.c.id))
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            got = conn.execute(stmt).scalar()
        if got is not None:
            claimed.append(got)

    elapsed = _threads(claim, count)
    assert len(claimed) == len(set(claimed)) == count
    with engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.id.like("ref-%")))
    return elapsed


def _route(hub: ClockedHub, designs: list[tuple[str, str]], split: list[float],
           failures: list[str]) -> Callable[[int], None]:
    service = hub.composed.hub.orders
    assert service is not None
    store, jobs = service.store, hub.composed.hub.jobs
    estimate = quotes.Estimate(seconds=1800, filament_g=12.0)
    lock = threading.Lock()

    def route(i: int) -> None:
        try:
            route_one(i)
        except Exception as exc:  # noqa: BLE001 - counted and shown: the figure must say what failed
            with lock:
                failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    def route_one(i: int) -> None:
        design, revision = designs[i % len(designs)]
        started = time.perf_counter()
        found = [p for p in store._thd_candidates("PLA", 0.5, 12.0, 20) if qualifies((20, 20, 20), "PLA", p) is None]
        options = [quotes.QuoteOption(p.node, p.printer, p.model, quotes.price(
            estimate, 1, quotes.Rates("EUR", p.rate_per_hour[1], p.rate_per_gram[1])), 1800, 12.0, None, 3.0, 0,
            NOW, quotes.correction([])) for p in found]
        best = quotes.rank(options, "cheapest")[0]
        order = orders.Order(
            id=f"o-bench-{i:06d}", customer="carol", design=design, revision_id=revision, parameters={},
            material="PLA", quantity=1, paid=True, currency="EUR", price_minor=best.price.total_minor,
            state=orders.OrderState.PLACED, created_at=NOW, updated_at=NOW,
            objects=(orders.OrderObject(f"inc{i:09d}", 0, "", ""),))
        store._thd_create_order(order, f"key-{i}", "sha")
        matched = time.perf_counter()
        jobs._thd_create_job(JobSpec(design, revision, "PLA", order_id=order.id, node=best.node, paid=True), "carol")
        with lock:
            split[0] += matched - started
            split[1] += time.perf_counter() - matched

    return route


def _check_no_double_assignment(engine: sa.Engine) -> tuple[int, int]:
    jobs, commands = schema.jobs, schema.node_commands
    with engine.connect() as conn:
        held = conn.execute(sa.select(jobs.c.node, jobs.c.printer, sa.func.count()).where(
            jobs.c.state.in_(["offered", "assigned"])).group_by(jobs.c.node, jobs.c.printer)).all()
        offers = conn.execute(sa.select(commands.c.job_id, sa.func.count()).where(commands.c.kind == "offer")
                              .group_by(commands.c.job_id)).all()
    assert all(n == 1 for _, _, n in held), "a printer holds two jobs"
    assert all(n == 1 for _, n in offers), "a job was offered twice"
    return len(held), len(offers)


def _fabrications(engine: sa.Engine, design: str, revision: str) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    models = ("Prusa MK3S", "Prusa MINI", "Ender 3")
    with engine.begin() as conn:
        conn.execute(schema.jobs.insert(), [{"id": f"fab-{i:06d}", "design": design, "revision_id": revision,
                                             "material": "PLA", "state": "done", "created_by": "bench",
                                             "created_at": NOW, "updated_at": NOW} for i in range(FABRICATIONS)])
        conn.execute(schema.fabrications.insert(), [{
            "incarnation_id": f"i{i:011d}", "job_id": f"fab-{i:06d}", "lease_epoch": 1, "design": design,
            "revision_id": revision, "node": f"lab-{i % NODES:04d}", "printer": "mk3", "printer_model": models[i % 3],
            "material": ("PLA", "PETG")[i % 2], "settings": json.dumps({"layer_height_mm": "0.2"}),
            "estimated_seconds": 1800, "actual_seconds": 1750 + i % 200, "estimated_filament_g": 12.0,
            "actual_filament_g": 11.5 + (i % 10) / 10, "outcome": "success" if i % 17 else "failed",
            "finished_at": (start + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for i in range(FABRICATIONS)])


def _p99_ms(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))]


def test_bench_orders(hub: ClockedHub) -> None:
    backend = hub.engine.dialect.name
    designs = _populate(hub.engine)
    reference = _bare_claims(hub.engine, designs, ORDERS)
    split, failures = [0.0, 0.0], []
    routed = _threads(_route(hub, designs, split, failures), ORDERS)
    held, offered = _check_no_double_assignment(hub.engine)
    print(f"\n[{backend}] {NODES} nodes, {DESIGNS} designs, {CLIENTS} clients, {ORDERS} orders")
    print(f"[{backend}] bare claim (reference): {ORDERS / reference:8.0f} claims/s")
    print(f"[{backend}] routed with full matching: {ORDERS / routed:8.0f} orders/s "
          f"(ratio to reference {reference / routed:.3f}); {offered} offered, {held} printers busy, none twice")
    if failures:
        print(f"[{backend}] {len(failures)} orders failed, e.g. {sorted(set(failures))[:2]}")
    print(f"[{backend}] time per routed order: ORDERS matching + order row {split[0] / ORDERS * 1000:.1f} ms, "
          f"job creation + dispatch (JobService) {split[1] / ORDERS * 1000:.1f} ms")
    design, revision = designs[0]
    _fabrications(hub.engine, design, revision)
    request = records_pb2.GetRecordRequest(design=design)
    record = hub.records.GetRecord(request, metadata=hub.md("carol"))
    assert record.fabrication_count == FABRICATIONS and len(record.aggregates) == 6
    f = schema.fabrications
    bare = sa.select(f).where(f.c.design == design).order_by(f.c.finished_at.desc()).limit(200)

    def select() -> None:
        with hub.engine.connect() as conn:
            conn.execute(bare).all()

    ref_median, ref_p99 = _p99_ms(select, RECORD_CALLS)
    median, p99 = _p99_ms(lambda: hub.records.GetRecord(request, metadata=hub.md("carol")), RECORD_CALLS)
    print(f"[{backend}] bare SELECT of the latest 200 fabrications (reference): median {ref_median:.1f} ms, "
          f"p99 {ref_p99:.1f} ms")
    print(f"[{backend}] spime record over gRPC ({FABRICATIONS} fabrications): median {median:.1f} ms, "
          f"p99 {p99:.1f} ms (ratio to reference {p99 / ref_p99:.1f}); load average {os.getloadavg()[0]:.1f}")
