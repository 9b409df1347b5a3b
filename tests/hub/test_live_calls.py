"""The registry of open streams that a revoked token ends (hub/api/live_calls.py)."""

from __future__ import annotations

import asyncio

import pytest

from hub.api.live_calls import LiveCalls


async def _stream(calls: LiveCalls, digest: str, opened: asyncio.Event) -> str:
    """A stream's handler: runs until cancelled, then says whether its token was revoked."""
    with calls.opened(digest):
        opened.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if not calls.take_revoked():
                raise
            return "revoked"
    return "ended"


def test_only_streams_of_revoked_tokens_end_and_each_is_told_once() -> None:
    async def scenario() -> None:
        calls = LiveCalls()
        events = {name: asyncio.Event() for name in ("a1", "a2", "b")}
        tasks = {name: asyncio.create_task(_stream(calls, name[0], events[name])) for name in events}
        for event in events.values():
            await event.wait()
        assert calls.digests() == ["a", "b"] and len(calls) == 3
        assert calls.end_revoked(["a", "b"], live=["b"]) == 2
        assert calls.end_revoked(["a", "b"], live=["b"]) == 0  # already ending: not cancelled twice
        assert await tasks["a1"] == "revoked" and await tasks["a2"] == "revoked"
        assert not tasks["b"].done() and len(calls) == 1
        tasks["b"].cancel()  # a client's own cancel is not mistaken for a revocation
        with pytest.raises(asyncio.CancelledError):
            await tasks["b"]
        assert len(calls) == 0

    asyncio.run(scenario())


def test_a_stream_opened_while_tokens_were_being_checked_waits_for_the_next_check() -> None:
    async def scenario() -> None:
        calls = LiveCalls()
        opened = asyncio.Event()
        checked = calls.digests()  # the check starts: no stream yet
        task = asyncio.create_task(_stream(calls, "new", opened))
        await opened.wait()
        assert calls.end_revoked(checked, live=[]) == 0 and not task.done()
        assert calls.end_revoked(calls.digests(), live=[]) == 1
        assert await task == "revoked"

    asyncio.run(scenario())


def test_a_stream_waiting_for_a_send_is_marked_not_cancelled_and_told_once_the_send_is_done() -> None:
    async def scenario() -> None:
        calls = LiveCalls()
        in_send, sent = asyncio.Event(), asyncio.Event()

        async def stream() -> str:
            with calls.opened("a"):
                with calls.sending():  # grpc holds the yielded message until the client reads
                    in_send.set()
                    await sent.wait()
                return "revoked" if calls.take_revoked() else "sent on"

        task = asyncio.create_task(stream())
        await in_send.wait()
        assert calls.waiting_on_clients() == 1
        assert calls.end_revoked(["a"], live=[]) == 1
        await asyncio.sleep(0)
        assert not task.done() and not task.cancelling()  # a cancelled send would end the call without a status
        sent.set()
        assert await task == "revoked" and len(calls) == 0 and calls.waiting_on_clients() == 0

    asyncio.run(scenario())
