"""Streams in flight, by the token that opened them, so that revoking the token ends them.

A token is checked when a call opens. A unary call is over within seconds, but a stream (an order
watched until it is delivered, a long download or upload) would outlive the revocation of the token
it was opened with. The interceptor registers every streaming call here; the server rechecks the
tokens of the open streams every RECHECK_S against the database (hub.api.server), so a revocation
made by another process (`spime-hub user revoke`) counts too. Each stream whose token is no longer
live is cancelled, and the interceptor answers it UNAUTHENTICATED. A stream whose handler is waiting
for grpc to send its last message (the client reads slowly, flow control holds the message) is not
cancelled but marked: grpc ends a call cancelled during a send without any status, which would leave
the client waiting until its deadline; the interceptor ends the marked stream once that send is done.

Node agents' sessions are not registered: hub.service.nodes rechecks them itself, and also takes
the node offline. Everything here runs on the server's event loop: no lock.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RECHECK_S", "LiveCalls"]

RECHECK_S = 30.0
"""How often the tokens of open streams are checked again (the longest a revoked one runs on)."""


class LiveCalls:
    """The tasks of open streaming calls and the digests of their tokens."""

    def __init__(self) -> None:
        self._open: dict[asyncio.Task[Any], str] = {}
        self._sending: set[asyncio.Task[Any]] = set()  # handing a message to grpc (see sending)
        # cancelled for a revoked token; weak, since a task cancelled outside its wrapper never asks
        self._revoked: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    @contextmanager
    def opened(self, digest: str) -> Iterator[None]:
        """Register the current task's call, opened with the token of ``digest``, while it runs."""
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing could cancel it
            yield
            return
        self._open[task] = digest
        try:
            yield
        finally:
            self._open.pop(task, None)

    @contextmanager
    def sending(self) -> Iterator[None]:
        """While the current stream's handler waits for grpc to send the message it yielded."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._sending.add(task)
        try:
            yield
        finally:
            self._sending.discard(task)

    def waiting_on_clients(self) -> int:
        """How many open streams wait for grpc to send a message (their clients read slowly)."""
        return len(self._sending)

    def digests(self) -> list[str]:
        """The token digests of the open streams, each once."""
        return sorted(set(self._open.values()))

    def end_revoked(self, checked: Collection[str], live: Collection[str]) -> int:
        """End the open streams whose token digest was ``checked`` and found not ``live``: cancel them,
        or mark those waiting for a send (see the module); returns how many (a stream opened while the
        check ran is left for the next one)."""
        revoked = set(checked).difference(live)
        ended = [task for task, digest in self._open.items() if digest in revoked and task not in self._revoked]
        for task in ended:
            self._revoked.add(task)
            if task not in self._sending:
                task.cancel()
        return len(ended)

    def take_revoked(self) -> bool:
        """Whether the current task was cancelled or marked because its token was revoked (asked once)."""
        task = asyncio.current_task()
        if task is None or task not in self._revoked:
            return False
        self._revoked.discard(task)
        if task.cancelling():
            task.uncancel()  # the cancellation was ours and is handled: the call goes on to answer
        return True

    def __len__(self) -> int:
        return len(self._open)
