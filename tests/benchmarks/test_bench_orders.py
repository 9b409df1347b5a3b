"""Benchmark: order routing and the community record at scale, on SQLite and on PostgreSQL.

With 1,000 registered nodes (one idle PLA printer each, online, clear bed) and 10,000 designs:

* orders routed per second with full matching, from 8 concurrent clients (threads, each waiting for
  its order while the hub's own event loop runs them all, as its gRPC server runs every call, with
  its one thread pool), through the product's path:
  ``OrderService.place`` by the rule "cheapest"
  without a stored quote, exactly what ``spime order --best cheapest`` runs behind the gRPC
  adapter. Each order reads its design (fresh) and revision (cached per id, reports fresh), checks
  the licence, lets the database match every printer (online, accepting, idle, clear bed, material
  loaded, one currency, within ``--max-km`` of the customer by a bounding box and a disc, not holding a job)
  and return the best candidates by price, checks the build volume and exact distance, corrects
  the estimates by each candidate's history and reads its reputation (one query each), ranks
  them, and writes quote, order, objects, idempotency key, job and offer in one transaction whose
  claim takes the first candidate printer still free (a compare-and-set under the printer's lock)
  (target >= 500/s on SQLite). Customers sit in four cities and order within 600 km, so clients
  race for the same cheap printers. Afterwards no job may be offered to two printers, no printer
  may hold two jobs, and the jobs must have been offered across many nodes.
  The slicer is not part of this figure (a quote's real slice is cached per mesh and profile;
  see ``-k slicing``): the estimator seam gets a fixed mesh plan and estimate (``_FixedSlices``).
* reference in the same run: the bare claim query, one ``UPDATE … RETURNING`` per order
  (with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) from 8 threads on the same jobs table;
* ``spime record`` p50 and p99 through the real gRPC stub for a design with 10,000 fabrications
  (target < 100 ms) and a long history (1,000 revisions and proposals by 50 people, 20 forks,
  2,500 orders, 3,000 ratings, 10,000 ledger lines), next to the bare ``SELECT`` of the latest
  200 fabrications it lists; and the first call after the rows landed. Nothing is cached between
  calls: each one reads the database in one transaction. Figures over every fabrication and
  rating come from the running sums the writers keep (hub/store/record_sums.py); the benchmark
  inserts its rows in bulk, around the writers, so it sums them once with ``record_sums.rebuild``
  as migration 0010 backfills a database, and on PostgreSQL runs VACUUM ANALYZE, as autovacuum
  does soon after such a load in service (without it the planner still sees empty tables).

Run with ``bash ops/bench.sh -k orders`` (SPIME_BENCH_ORDERS=N changes the routed orders, default 800,
SPIME_BENCH_CLIENTS=N the clients placing them at once, default 8);
the record part alone with ``bash ops/bench.sh -k record``.
"""

from __future__ import annotations

import asyncio
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

from hub import licenses, quotes
from hub.domain import Account, Revision, Role
from hub.manifest import Manifest
from hub.runtime import tune_gc, tune_switching
from hub.service.orders import OrderRequest
from hub.service.quoting import MeshPlan, PartMesh, SliceEstimator
from hub.store import record_sums, schema
from tests.fixtures.postgres import create_database
from tests.hub.fake_agent import ClockedHub, start_clocked

NODES, DESIGNS, FABRICATIONS = 1000, 10_000, 10_000
ORDERS = int(os.environ.get("SPIME_BENCH_ORDERS", "800"))
CLIENTS = int(os.environ.get("SPIME_BENCH_CLIENTS", "8"))
RECORD_CALLS = 100
# the record design's history besides its fabrications
PEOPLE, REVISIONS, FORKS, ORDERS_DONE, RATINGS, LEDGER_LINES = 50, 1000, 20, 2500, 3000, 10_000
NOW = "2026-12-01T04:00:00Z"
CITIES = ("49.0,9.0", "50.5,11.0", "47.5,8.5", "51.5,13.0")
MAX_KM = 600.0
MANIFEST = """name = "{name}"
title = "Bench part"
license = "CC-BY-4.0"
licensor = "alice"
version = "1.0"
function = "a part to route"

[[parts]]
name = "body"
files = ["body.stl"]
material = "PLA"
quantity = 1
"""


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
        conn.execute(schema.nodes.insert(), [{"name": n, "online": True, "latitude": 45.0 + (i % 40) * 0.25,
                                              "longitude": 5.0 + (i // 40) * 0.6, "last_seen": NOW, "created_at": NOW}
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
            "id": r, "design": d, "seq": 1, "manifest_toml": MANIFEST.format(name=d), "author": "alice",
            "created_at": NOW, "message": "m",
            "signature": b"", "public_key": b"", "kind": "push", "stored_at": NOW} for d, r in designs])
    return designs


def _analyze(engine: sa.Engine) -> None:
    """On PostgreSQL, what autovacuum does within a minute of a bulk load in service: without it the
    planner still sees empty tables and joins the printers to the nodes by a filter (300 ms a match
    instead of 7). SQLite keeps no statistics unless asked, so it is left as the hub runs it."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


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


class _FixedSlices(SliceEstimator):
    """The estimator seam with the slicer left out: every object is a 20 mm cube of 30 min and 12 g."""

    def __init__(self) -> None:
        super().__init__(lambda sha: Path(sha), Path("/nonexistent"))

    async def plan(self, revision: Revision, manifest: Manifest, changed: object, reports: object) -> MeshPlan:
        return MeshPlan((PartMesh(Path("body.stl"), (20.0, 20.0, 20.0), sum(p.quantity for p in manifest.parts)),),
                        False, False)

    async def estimate(self, mesh: PartMesh, profile: str) -> tuple[quotes.Estimate, bool, dict[str, str]]:
        return quotes.Estimate(seconds=1800, filament_g=12.0), True, {"profile": profile}


def _route(hub: ClockedHub, designs: list[tuple[str, str]], latencies: list[float], failures: list[str]
           ) -> Callable[[int], None]:
    """One client's order: placed on the hub's own event loop (where its gRPC server runs every call),
    the client thread waiting for the answer."""
    service = hub.composed.hub.orders
    assert service is not None
    service.estimator = _FixedSlices()
    carol = Account("carol", Role.CUSTOMER)
    lock = threading.Lock()

    def route(i: int) -> None:
        design, _ = designs[i * 7919 % len(designs)]
        request = OrderRequest(design, material="PLA", quantity=1, paid=True, near=CITIES[i % len(CITIES)],
                               max_km=MAX_KM)
        started = time.perf_counter()
        try:
            asyncio.run_coroutine_threadsafe(service.place(carol, request, "", 0, "cheapest", f"key-{i}"),
                                             hub.loop).result()
        except Exception as exc:  # noqa: BLE001 - counted and shown: the figure must say what failed
            with lock:
                failures.append(f"{type(exc).__name__}: {str(exc)[:120]} ({str(exc.__cause__)[:160]})")
        with lock:
            latencies.append(time.perf_counter() - started)

    return route


def _check_no_double_assignment(engine: sa.Engine) -> tuple[int, int, int]:
    """(printers holding a job, offers made, nodes holding a job); no printer holds two, no job is offered twice."""
    jobs, commands = schema.jobs, schema.node_commands
    with engine.connect() as conn:
        held = conn.execute(sa.select(jobs.c.node, jobs.c.printer, sa.func.count()).where(
            jobs.c.state.in_(["offered", "assigned"])).group_by(jobs.c.node, jobs.c.printer)).all()
        offers = conn.execute(sa.select(commands.c.job_id, sa.func.count()).where(commands.c.kind == "offer")
                              .group_by(commands.c.job_id)).all()
    assert all(n == 1 for _, _, n in held), "a printer holds two jobs"
    assert all(n == 1 for _, n in offers), "a job was offered twice"
    return len(held), len(offers), len({node for node, _, _ in held})


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


def _history(engine: sa.Engine, design: str, first_revision: str) -> None:
    """A long history for the design: revisions and proposals by many people, forks, orders, ratings, ledger."""
    people = [f"maker-{i:02d}" for i in range(PEOPLE)]
    revs = [first_revision] + [f"{design}-r{i:06d}".encode().hex()[:64].ljust(64, "0") for i in range(1, REVISIONS)]
    kinds = ["proposal" if i % 5 == 0 else "push" for i in range(REVISIONS)]
    kinds[0] = "push"
    states = ("accepted", "declined", "open")
    with engine.begin() as conn:
        conn.execute(schema.accounts.insert(), [{"name": n, "role": "designer", "created_at": NOW} for n in people])
        conn.execute(schema.maintainers.insert(), [{"design": design, "account": n, "position": i, "added_by": "alice",
                                                    "added_at": NOW} for i, n in enumerate(("alice", people[0]))])
        conn.execute(schema.revisions.insert(), [{
            "id": revs[i], "design": design, "seq": i + 1, "manifest_toml": "x" * 2000, "author": people[i % PEOPLE],
            "created_at": NOW, "message": "m", "signature": b"", "public_key": b"", "kind": kinds[i], "stored_at": NOW}
            for i in range(1, REVISIONS)])
        conn.execute(schema.revision_parents.insert(), [{"revision_id": revs[i], "position": 0, "parent_id": revs[i - 1]}
                                                        for i in range(1, REVISIONS)])
        conn.execute(schema.proposals.insert(), [{
            "id": f"p{i:06d}", "design": design, "revision_id": revs[i], "base_revision_id": revs[i - 1],
            "author": people[i % PEOPLE], "state": states[i // 5 % 3], "decided_by": "" if i // 5 % 3 == 2 else "alice",
            "created_at": NOW, "decided_at": ""} for i in range(1, REVISIONS) if kinds[i] == "proposal"])
        forks = [(f"d-{i:05d}", f"{i:064x}") for i in range(1, 1 + FORKS)]
        conn.execute(schema.revision_parents.insert(), [{"revision_id": r, "position": 0, "parent_id": revs[-1 - i]}
                                                        for i, (_, r) in enumerate(forks)])
        conn.execute(schema.revisions.update().where(schema.revisions.c.id.in_([r for _, r in forks]))
                     .values(kind="fork"))
        conn.execute(schema.designs.update().where(schema.designs.c.slug == design).values(head_revision_id=revs[-1]))
        conn.execute(schema.orders.insert(), [{
            "id": f"o-hist-{i:06d}", "customer": people[i % PEOPLE], "design": design, "revision_id": revs[-1],
            "parameters": "{}" if i % 2 else '{"width": "40"}', "state": "delivered", "paid": True,
            "created_at": NOW, "updated_at": NOW} for i in range(ORDERS_DONE)])
        conn.execute(schema.ratings.insert(), [{
            "design": design, "order_id": f"o-hist-{i // 3:06d}", "job_id": "", "rater": people[i % PEOPLE],
            "role": ("customer", "maker", "designer")[i % 3], "stars": 1 + i % 5,
            "criteria": json.dumps({"quality": 1 + i % 5, "printability": 1 + i % 4}, sort_keys=True),
            "comment": "fine", "at": NOW} for i in range(RATINGS)])
        conn.execute(schema.ledger_entries.insert(), [{
            "order_id": f"o-hist-{i // 4:06d}", "design": design, "recipient": people[i % PEOPLE],
            "share": ("costs", "maker", "design", "commons")[i % 4], "currency": "EUR", "minor_units": 100 + i,
            "equation_version": "1", "at": NOW, "explanation": "share of the price"} for i in range(LEDGER_LINES)])


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
    _analyze(hub.engine)
    # as `spime-hub serve` starts (hub/__main__.py): the SPDX tables built once by its warm-up thread,
    # not within the first order; start-up's objects frozen, GIL switching shortened (hub/runtime.py).
    # The reference's claims run under the same settings.
    licenses.parse_expression("CC-BY-4.0")
    tune_gc()
    tune_switching()
    reference = _bare_claims(hub.engine, designs, ORDERS)
    latencies: list[float] = []
    failures: list[str] = []
    cpu = time.process_time()
    routed = _threads(_route(hub, designs, latencies, failures), ORDERS)
    cpu = time.process_time() - cpu
    held, offered, nodes = _check_no_double_assignment(hub.engine)
    print(f"\n[{backend}] {NODES} nodes, {DESIGNS} designs, {CLIENTS} clients, {ORDERS} orders")
    print(f"[{backend}] bare claim (reference): {ORDERS / reference:8.0f} claims/s")
    print(f"[{backend}] routed with full matching (OrderService.place): {ORDERS / routed:8.0f} orders/s "
          f"(ratio to reference {reference / routed:.3f}); {offered} offered to {nodes} nodes, "
          f"{held} printers busy, none twice; CPU {cpu / ORDERS * 1000:.1f} ms per order (one process: hub and "
          f"clients); load average {os.getloadavg()[0]:.1f}")
    latencies.sort()
    print(f"[{backend}] per order on one client: mean {statistics.fmean(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.1f} ms")
    if failures:
        print(f"[{backend}] {len(failures)} orders failed, e.g. {sorted(set(failures))[:2]}")
    assert not failures, failures[:3]
    assert offered >= ORDERS * 0.9, f"only {offered} of {ORDERS} orders got a job offered"
    assert nodes >= min(ORDERS, NODES) * 0.5, f"the jobs went to only {nodes} nodes"


def test_bench_record(hub: ClockedHub) -> None:
    """The record part alone (``bash ops/bench.sh -k record``; ``-k orders`` runs both parts)."""
    backend = hub.engine.dialect.name
    designs = _populate(hub.engine)
    design, revision = designs[0]
    _fabrications(hub.engine, design, revision)
    _history(hub.engine, design, revision)
    with hub.engine.begin() as conn:  # rows inserted around the writers: sum them as migration 0010 backfills
        record_sums.rebuild(conn, design)
    _analyze(hub.engine)
    tune_gc()  # as `spime-hub serve` does once it is up (hub/runtime.py)
    tune_switching()  # likewise
    request = records_pb2.GetRecordRequest(design=design)
    started = time.perf_counter()
    record = hub.records.GetRecord(request, metadata=hub.md("carol"))
    cold = (time.perf_counter() - started) * 1000
    assert record.fabrication_count == FABRICATIONS and len(record.aggregates) == 6
    assert len(record.contributors) == PEOPLE + 1 and len(record.lineage) == FORKS
    assert record.design_reputation.count == RATINGS * 2 // 3 and len(record.ratings) == len(record.ledger) == 200
    f = schema.fabrications
    bare = sa.select(f).where(f.c.design == design).order_by(f.c.finished_at.desc()).limit(200)

    def select() -> None:
        with hub.engine.connect() as conn:
            conn.execute(bare).all()

    ref_median, ref_p99 = _p99_ms(select, RECORD_CALLS)
    median, p99 = _p99_ms(lambda: hub.records.GetRecord(request, metadata=hub.md("carol")), RECORD_CALLS)
    print(f"[{backend}] bare SELECT of the latest 200 fabrications (reference): median {ref_median:.1f} ms, "
          f"p99 {ref_p99:.1f} ms")
    print(f"[{backend}] spime record over gRPC ({FABRICATIONS} fabrications, {REVISIONS} revisions, {RATINGS} "
          f"ratings, {LEDGER_LINES} ledger lines): median {median:.1f} ms, p99 {p99:.1f} ms (ratio to reference "
          f"{p99 / ref_p99:.1f}); cold first call {cold:.1f} ms; load average {os.getloadavg()[0]:.1f}")
