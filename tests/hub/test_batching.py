"""Batched session work (hub/service/batching.py) and the batched store calls, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.__main__ import Composed, compose
from hub.config import HubConfig
from hub.domain import Account, Role
from hub.errors import NotFound
from hub.jobs import TimerPolicy
from hub.scheduler import PrinterRecord
from hub.service.batching import Batcher
from hub.service.nodes import Hello
from hub.store.nodes import HelloRecord, NodeInfo
from tests.fixtures.postgres import create_database
from tests.hub.fake_agent import ManualClock

NOW = "2026-12-01T04:00:00Z"


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Composed]:
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    composed = compose(HubConfig(data_dir=tmp_path / "data", database_url=url), clock=ManualClock(),
                       printability=None, timers=TimerPolicy())
    try:
        yield composed
    finally:
        composed.close()


def _printer(name: str, printer: str) -> PrinterRecord:
    return PrinterRecord(name, printer, "MK3S", (250.0, 210.0, 210.0), 0.4, ("PLA",), "idle", True, True, True)


def test_batcher_coalesces_concurrent_calls_and_answers_each_caller() -> None:
    batches: list[list[int]] = []
    gate = threading.Event()

    def run(items: Sequence[int]) -> list[int | Exception]:
        gate.wait(timeout=30)  # the first batch holds until every call was submitted
        batches.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    async def main() -> list[object]:
        batcher: Batcher[int, int] = Batcher(run, max_batch=8)
        calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(20)]
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(main())
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        i * 10 if i % 2 == 0 else f"odd {i}" for i in range(20)]
    assert sorted(i for b in batches for i in b) == list(range(20))
    assert len(batches) < 20 and all(len(b) <= 8 for b in batches)


def test_batcher_gives_a_failed_batch_to_every_caller_of_it() -> None:
    def run(items: Sequence[str]) -> list[str | Exception]:
        raise RuntimeError("the database went away")

    async def main() -> list[object]:
        batcher: Batcher[str, str] = Batcher(run)
        return list(await asyncio.gather(batcher.submit("a"), batcher.submit("b"), return_exceptions=True))

    assert [str(r) for r in asyncio.run(main())] == ["the database went away"] * 2


def test_hello_many_stores_each_known_node_and_refuses_unknown_ones(hub: Composed) -> None:
    nodes = hub.store.nodes
    for name in ("lab-a", "lab-b"):
        hub.hub.nodes._thd_add_node(name)
    nodes._thd_hello("lab-a", ("", None, None), "t", 0, [_printer("lab-a", "old")], NOW)
    hellos = [HelloRecord(name, ("Berlin", 52.5, 13.4), "v2", 0, (_printer(name, "p1"), _printer(name, "p2")), NOW)
              for name in ("lab-b", "ghost", "lab-a")]
    results = nodes._thd_hello_many(hellos)
    assert isinstance(results[1], NotFound)
    infos = [r for r in results if isinstance(r, NodeInfo)]
    assert [i.name for i in infos] == ["lab-b", "lab-a"] and all(i.online for i in infos)
    assert infos[1].session_epoch == 2  # lab-a's second Hello
    printers = sorted((p.node, p.printer) for p in nodes._thd_printers())
    assert printers == [("lab-a", "p1"), ("lab-a", "p2"), ("lab-b", "p1"), ("lab-b", "p2")]


def test_disconnect_many_marks_only_current_sessions_offline(hub: Composed) -> None:
    nodes = hub.store.nodes
    for name in ("lab-a", "lab-b"):
        hub.hub.nodes._thd_add_node(name)
        nodes._thd_hello(name, ("", None, None), "t", 0, [], NOW)
    assert nodes._thd_disconnect_many([("lab-a", 1, NOW), ("lab-b", 7, NOW)]) == [True, False]
    assert not nodes._thd_node("lab-a").online and nodes._thd_node("lab-b").online


def test_batched_session_reads_run_statements_built_once(hub: Composed) -> None:
    """A reconnect storm runs these once per batch of Hellos or ended sessions: each statement is
    built once with its IN list bound at execution, not built again (a bound literal per name to
    coerce and key) for every batch."""
    nodes, jobs, job_store = hub.store.nodes, hub.hub.jobs, hub.hub.jobs.jobs
    for name in ("lab-a", "lab-b", "lab-c"):
        hub.hub.nodes._thd_add_node(name)
    executed: list[object] = []
    sa.event.listen(nodes.engine, "before_execute", lambda _c, clause, *_: executed.append(clause))

    def statements(names: list[str]) -> list[object]:
        executed.clear()
        infos = nodes._thd_hello_many([HelloRecord(n, ("", None, None), "t", 0, (_printer(n, "p1"),), NOW)
                                       for n in names])
        jobs._thd_reconcile_many([(n, (), 0) for n in names])
        jobs._thd_dispatch_nodes(names)
        job_store._thd_free_printers(names)
        nodes._thd_disconnect_many([(n, i.session_epoch, NOW) for n, i in zip(names, infos, strict=True)
                                    if isinstance(i, NodeInfo)])
        jobs._thd_nodes_lost(names)
        return [clause for clause in executed if isinstance(clause, sa.Select)]

    first, second = statements(["lab-a"]), statements(["lab-b", "lab-c"])
    assert len(first) >= 7 and [id(s) for s in first] == [id(s) for s in second]
    assert not any(n.online for n in nodes._thd_nodes())


def test_sessions_opened_and_ended_together_cost_no_task_each(hub: Composed) -> None:
    """Ending a session (its stream handler cannot wait) and the dispatch after a Hello queue their
    batched writes without a task of their own: 10,000 agents dropping and reconnecting at once
    cost the event loop a few batches, not 20,000 tasks. drain() still waits for every write."""
    service = hub.hub.nodes
    names = [f"lab-{i:02d}" for i in range(40)]
    for name in names:
        service._thd_add_node(name)

    async def main() -> tuple[int, int]:
        before = len(asyncio.all_tasks())
        sessions = await asyncio.gather(*(service.open(Account(n, Role.NODE), Hello(n, "t", 0, (), ())) for n in names))
        opened = len(asyncio.all_tasks()) - before
        await service.drain()
        for session in sessions:
            service.close_soon(session)
        closing = len(asyncio.all_tasks()) - before
        await service.drain()
        return opened, closing

    opened, closing = asyncio.run(main())
    assert opened <= 2 and closing <= 2  # the batchers' own tasks
    assert service.online() == [] and not any(n.online for n in hub.store.nodes._thd_nodes())


class _CountedFuture(asyncio.Future[Any]):
    """A future that counts how many were made and how often one is formatted (for an error
    message nobody reads)."""

    made = formatted = 0

    def __repr__(self) -> str:
        type(self).formatted += 1
        return super().__repr__()


class _CountingLoop(asyncio.SelectorEventLoop):
    def create_future(self) -> asyncio.Future[Any]:
        _CountedFuture.made += 1
        return _CountedFuture(loop=self)


def test_sessions_ended_together_make_no_future_each(hub: Composed) -> None:
    """A stream handler that ends (every one of them when 10,000 agents drop at once) queues its
    session's close with no future and done callback of its own; drain() still waits for the writes,
    and the close is logged as before."""
    service = hub.hub.nodes
    names = [f"lab-{i:02d}" for i in range(40)]
    for name in names:
        service._thd_add_node(name)

    async def main() -> int:
        sessions = await asyncio.gather(*(service.open(Account(n, Role.NODE), Hello(n, "t", 0, (), ())) for n in names))
        await service.drain()
        made = _CountedFuture.made
        for session in sessions:
            service.close_soon(session)
        await service.drain()
        return _CountedFuture.made - made

    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        futures = runner.run(main())
    assert futures < len(names) / 4  # the batches' thread hops and drain()'s own waits
    assert service.online() == [] and not any(n.online for n in hub.store.nodes._thd_nodes())


def test_a_sender_cancelled_as_an_item_wakes_it_loses_nothing_and_formats_nothing(hub: Composed) -> None:
    """Every stream of a reconnect storm ends as its last item wakes its sender: the item stays for the
    next sender, and nothing is formatted on the way (asyncio.Queue formatted the woken sender's future
    into a ValueError it then dropped, 10,000 times when 10,000 agents dropped at once)."""
    service = hub.hub.nodes
    service._thd_add_node("lab-a")

    async def main() -> tuple[str, list[object]]:
        session = await service.open(Account("lab-a", Role.NODE), Hello("lab-a", "t", 0, (), ()))
        sender = service.outgoing(session)
        first = type(await anext(sender)).__name__  # Welcome; then the sender waits for the next item
        waiting = asyncio.ensure_future(anext(sender))
        await asyncio.sleep(0)
        session.end()  # wakes the sender ...
        waiting.cancel()  # ... which is cancelled before it runs (the stream is gone)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rest = [item async for item in service.outgoing(session)]  # the end is still there: no items, done
        await service.close(session)
        return first, rest

    _CountedFuture.formatted = 0
    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        first, rest = runner.run(main())
    assert first == "Welcome" and rest == []
    assert _CountedFuture.formatted == 0
