"""Coalesce many concurrent calls of one blocking function into batches: one thread hop and one
database transaction serve every caller that arrived while the previous batch ran.

When thousands of agents reconnect at once, each Hello would otherwise take its own write
transaction (SQLite serialises them) and its own worker-thread hop; a batch takes one of each.
``GroupCommit`` does the same for callers already in worker threads (any event loop): orders
placed at the same time share one write transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hub.errors import StorageError
from hub.jobs import Command
from hub.service.jobs import Desired, HeldJob, JobService
from hub.store.nodes import HelloRecord, NodeInfo, NodeStore

__all__ = ["Batcher", "GroupCommit", "Opened", "Opening", "all_at_once", "outbox_reader", "session_closer", "session_opener"]

log = logging.getLogger("hub.batching")

T = TypeVar("T")
R = TypeVar("R")

BatchRun = Callable[[Sequence[T]], Sequence["R | Exception"]]


class Batcher(Generic[T, R]):
    """Runs ``run(items)`` in a worker thread for the items submitted while it was busy.

    ``run`` returns one result per item, in order: a value, or the exception that item's caller
    gets. An exception raised by ``run`` itself goes to every caller of that batch. One batch runs
    at a time; calls are answered in the order they came. ``dropped(item, result)`` runs (in a
    worker thread) for a result whose caller was cancelled meanwhile, to undo what it did.
    ``posted(item, result)`` runs (on the loop) for each item queued by :meth:`post`.
    """

    def __init__(self, run: BatchRun[T, R], max_batch: int = 64, dropped: Callable[[T, R], None] | None = None,
                 posted: Callable[[T, R | Exception], None] | None = None) -> None:
        self._run, self._max, self._dropped, self._posted = run, max_batch, dropped, posted
        self._pending: list[tuple[T, asyncio.Future[R] | None]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """The result of ``run`` for this item.

        Raises:
            Exception: whatever ``run`` gave or raised for this item.
        """
        return await self.add(item)

    def add(self, item: T) -> asyncio.Future[R]:
        """Queue this item without waiting: the future of its result (of submit). For a caller that
        must not wait, instead of a task of its own around submit: a reconnect storm ends and opens
        10,000 sessions at once, and a task per item costs the event loop more than its share of the batch.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue(item, future)
        return future

    def post(self, item: T) -> None:
        """Queue this item with no future at all: its result goes to ``posted``. For an item nobody
        waits for (a session's end, the dispatch after its Hello): a future and its done callback per
        item cost a reconnect storm's event loop 20,000 of each. :meth:`idle` waits for it."""
        self._queue(item, None)

    def _queue(self, item: T, future: asyncio.Future[R] | None) -> None:
        loop = asyncio.get_running_loop()
        self._pending.append((item, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())

    def busy(self) -> bool:
        """Whether a batch runs or waits to run on the running loop."""
        task = self._task
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    async def idle(self) -> None:
        """Return once every item queued on this loop so far (and any queued meanwhile) is done."""
        while self.busy():
            assert self._task is not None
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:self._max], self._pending[self._max:]
            try:
                results: Sequence[R | Exception] = await asyncio.to_thread(self._run, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                results = [exc] * len(batch)
            for (item, future), result in zip(batch, results, strict=True):
                if future is None:
                    self._answer_posted(item, result)
                    continue
                if future.done():  # the caller was cancelled
                    if self._dropped is not None and not isinstance(result, Exception):
                        await self._undo(item, result)
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _answer_posted(self, item: T, result: R | Exception) -> None:
        if self._posted is None:
            if isinstance(result, Exception):
                log.error("a batched call failed", exc_info=result)
            return
        try:
            self._posted(item, result)
        except Exception:
            log.exception("handling the result of a batched call failed")

    async def _undo(self, item: T, result: R) -> None:
        assert self._dropped is not None
        try:
            await asyncio.to_thread(self._dropped, item, result)
        except Exception:
            log.exception("undoing a batched call whose caller went away failed")


class _Call(Generic[T, R]):
    __slots__ = ("done", "item", "result", "turn")

    def __init__(self, item: T) -> None:
        self.item, self.done = item, False
        self.result: R | BaseException | None = None
        self.turn = threading.Lock()  # held until its caller may go on: answered, or to lead the next batch
        self.turn.acquire()


class GroupCommit(Generic[T, R]):
    """Runs ``run(items)`` for the calls made from worker threads while the previous batch ran.

    The first caller finding no batch running runs the batch of every call waiting by then, in
    its own thread; the others wait for their result, or for their turn to lead the next batch
    (the first call waiting when a batch ends leads the next). One batch runs at a time; ``run``
    returns one result per item, in order: a value, or the exception that item's caller gets. An
    exception raised by ``run`` itself goes to every caller of that batch. Each waiting caller is
    woken once, by its own lock: a shared condition woke every waiting thread at each batch's end,
    and under load those wake-ups cost more than the batches saved.
    """

    def __init__(self, run: BatchRun[T, R], max_batch: int = 64) -> None:
        self._run, self._max = run, max_batch
        self._lock = threading.Lock()
        self._pending: list[_Call[T, R]] = []
        self._running = False

    def _thd_call(self, item: T) -> R:
        """The result of ``run`` for this item (blocks: call it from a worker thread).

        Raises:
            Exception: whatever ``run`` gave or raised for this item.
        """
        call: _Call[T, R] = _Call(item)
        with self._lock:
            self._pending.append(call)
            wait, self._running = self._running, True
        if wait:
            call.turn.acquire()
        if not call.done:  # its turn to lead: its call is the first waiting, so in the batch
            with self._lock:
                batch, self._pending = self._pending[:self._max], self._pending[self._max:]
            self._lead(batch)
        if isinstance(call.result, BaseException):
            raise call.result
        return call.result  # type: ignore[return-value]

    def _lead(self, batch: list[_Call[T, R]]) -> None:
        results: list[R | BaseException] = [RuntimeError("the batch was interrupted")] * len(batch)
        try:
            got = list(self._run([c.item for c in batch]))
            if len(got) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} calls gave {len(got)} results")
            results = list(got)
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
            results = [exc] * len(batch)
        finally:  # even when interrupted: the waiting callers learn it and the next batch may run
            for call, result in zip(batch, results, strict=True):
                call.result, call.done = result, True
            with self._lock:
                following = self._pending[0] if self._pending else None
                self._running = following is not None
            for call in batch[1:]:  # the leader's own call (the first) is not waiting
                call.turn.release()
            if following is not None:
                following.turn.release()


@dataclass(frozen=True, slots=True)
class Opening:
    """A session to open: the Hello to store and the jobs the agent says it holds."""

    hello: HelloRecord
    held: tuple[HeldJob, ...]


Opened = tuple[NodeInfo, list[Desired]]


def session_opener(nodes: NodeStore, jobs: JobService) -> Batcher[Opening, Opened]:
    """Hellos of many agents stored in one write transaction, then each agent's held jobs reconciled
    (NodeService.open); a caller that went away meanwhile has its session closed again."""
    def one(hello: HelloRecord) -> NodeInfo | Exception:
        try:
            return nodes._thd_hello(hello.name, hello.place, hello.version, hello.applied_hub_seq, hello.printers,
                                    hello.now, hello.replica)
        except Exception as exc:  # noqa: BLE001 - that caller gets it
            return exc

    def run(items: Sequence[Opening]) -> list[Opened | Exception]:
        try:
            infos: Sequence[NodeInfo | Exception] = nodes._thd_hello_many([i.hello for i in items])
        except Exception:  # noqa: BLE001 - the batch failed as a whole: each Hello on its own, so one
            infos = [one(i.hello) for i in items]  # caller's bad Hello fails only that caller
        opened = [(item, info) for item, info in zip(items, infos, strict=True) if not isinstance(info, Exception)]
        try:
            reconciled = jobs._thd_reconcile_many([(i.hello.name, i.held, i.hello.applied_hub_seq) for i, _ in opened])
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
            reconciled = [exc] * len(opened)
        desired = {id(item): r for (item, _), r in zip(opened, reconciled, strict=True)}
        out: list[Opened | Exception] = []
        for item, info in zip(items, infos, strict=True):
            result = info if isinstance(info, Exception) else desired[id(item)]
            if isinstance(result, Exception):
                if not isinstance(info, Exception):  # its session is not open after all
                    _attempt(nodes._thd_disconnect, item.hello.name, info.session_epoch, item.hello.now)
                out.append(result)
            else:
                assert not isinstance(info, Exception)
                out.append((info, result))
        return out

    def dropped(item: Opening, opened: Opened) -> None:
        nodes._thd_disconnect(item.hello.name, opened[0].session_epoch, item.hello.now)

    return Batcher(run, dropped=dropped)


def session_closer(nodes: NodeStore, jobs: JobService,
                   posted: Callable[[tuple[str, int, str], bool | Exception], None] | None = None,
                   ) -> Batcher[tuple[str, int, str], bool]:
    """Ended sessions (node, session_epoch, now) marked offline in one write transaction; a node whose
    session was still current has its printing jobs LOST_CONTACT. Each caller learns whether it was
    (``posted`` for the sessions queued by Batcher.post)."""
    def run(items: Sequence[tuple[str, int, str]]) -> list[bool | Exception]:
        try:
            current: list[bool | Exception] = list(nodes._thd_disconnect_many(items))
        except StorageError:  # the batch failed as a whole: each on its own
            current = [_attempt(nodes._thd_disconnect, *item) for item in items]
        gone = [node for (node, _, _), was in zip(items, current, strict=True) if was is True]
        if gone:
            lost = _attempt(jobs._thd_nodes_lost, gone)
            if isinstance(lost, Exception):
                log.error("marking the jobs of gone nodes failed", exc_info=lost, extra={"nodes": gone[:10]})
        return current

    return Batcher(run, posted=posted)


def _attempt(fn: Callable[..., R], *args: object) -> R | Exception:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - that caller gets it
        return exc


def all_at_once(store: Callable[[Sequence[T]], object]) -> Batcher[T, None]:
    """A batcher for writes that answer nothing (heartbeat last_seen, command acks): one call of
    ``store`` per batch; its failure goes to every caller of the batch."""
    def run(items: Sequence[T]) -> list[None | Exception]:
        store(items)
        return [None] * len(items)

    return Batcher(run, max_batch=512)


def outbox_reader(nodes: NodeStore, render: Callable[[Command], R]) -> Batcher[tuple[str, int], list[tuple[int, R]]]:
    """The commands of each (node, after hub_seq) rung at about the same time, read with one query
    and rendered: [(hub_seq, render(command))] per caller (a render that fails fails that caller)."""
    def run(items: Sequence[tuple[str, int]]) -> list[list[tuple[int, R]] | Exception]:
        pending = nodes._thd_pending_of(sorted({node for node, _ in items}))
        out: list[list[tuple[int, R]] | Exception] = []
        for node, after in items:
            try:
                out.append([(c.hub_seq, render(c)) for c in pending.get(node, ()) if c.hub_seq > after])
            except Exception as exc:  # noqa: BLE001 - that caller gets it
                out.append(exc)
        return out

    return Batcher(run, max_batch=256)
