"""Coalesce many concurrent calls of one blocking function into batches: one thread hop and one
database transaction serve every caller that arrived while the previous batch ran.

When thousands of agents reconnect at once, each Hello would otherwise take its own write
transaction (SQLite serialises them) and its own worker-thread hop; a batch takes one of each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

BatchRun = Callable[[Sequence[T]], Sequence["R | Exception"]]


class Batcher(Generic[T, R]):
    """Runs ``run(items)`` in a worker thread for the items submitted while it was busy.

    ``run`` returns one result per item, in order: a value, or the exception that item's caller
    gets. An exception raised by ``run`` itself goes to every caller of that batch. One batch runs
    at a time; calls are answered in the order they came.
    """

    def __init__(self, run: BatchRun[T, R], max_batch: int = 64) -> None:
        self._run, self._max = run, max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """The result of ``run`` for this item.

        Raises:
            Exception: whatever ``run`` gave or raised for this item.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:self._max], self._pending[self._max:]
            try:
                results: Sequence[R | Exception] = await asyncio.to_thread(self._run, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller was cancelled
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
