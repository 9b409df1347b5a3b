"""Per-account admission (issue 10, section 2): rate limits per account and method class,
and the concurrency limit of expensive RPCs, both with a short wait before a refusal.

A flood is refused RESOURCE_EXHAUSTED with a RetryInfo hint naming the limit, before the
request is decoded and with nothing stored; a normal burst is accepted (at most slowed);
other accounts are unaffected. The API cases run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from spimeforge.v1 import designs_pb2, orders_pb2, orders_pb2_grpc

from hub import limits
from hub.config import HubConfig
from hub.errors import InvalidArgument, ResourceExhausted
from hub.limits import DEFAULT_RATES, RateLimit, TokenBucket, parse_rates
from hub.workers import Admission, CallGate, RateGate
from tests.fixtures.postgres import create_database
from tests.hub.harness import InProcessHub, start_in_process

SEARCH = "/spimeforge.v1.Designs/Search"


def _hub(request: pytest.FixtureRequest, tmp_path: Path, **settings: object) -> Iterator[InProcessHub]:
    """A hub on the fixture's database with these settings, stopped after the test."""
    url = "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    hub = start_in_process(tmp_path / "data", url, settings=settings)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def strict(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """Searches: bursts of 5, then one every 100 s (no token comes back during a test); short waits."""
    yield from _hub(request, tmp_path, rate_limits="search=0.01/5", admission_wait_s=0.2)


COSTLY_BURST = limits.REFUSAL_COST["search"] + 3


@pytest.fixture(params=["sqlite", "postgresql"])
def costly(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """Searches: bursts of a refused call's cost and three more; no token comes back during a test."""
    yield from _hub(request, tmp_path, rate_limits=f"search=0.01/{COSTLY_BURST}", admission_wait_s=0.2)


@pytest.fixture(params=["sqlite", "postgresql"])
def paced(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """Searches: 20 a second with no burst to speak of; a call may wait up to 5 s for its turn."""
    yield from _hub(request, tmp_path, rate_limits="search=20/1", admission_wait_s=5.0)


def _search(hub: InProcessHub, user: str, **fields: object) -> designs_pb2.SearchResponse:
    response: designs_pb2.SearchResponse = hub.designs.Search(
        designs_pb2.SearchRequest(**fields), metadata=hub.md(user), timeout=60)  # type: ignore[arg-type]
    return response


def _refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def _retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    raise AssertionError("no RetryInfo in the refusal")


def test_a_search_flood_is_refused_with_a_retry_hint_and_other_accounts_are_unaffected(
        strict: InProcessHub) -> None:
    hub = strict
    strict.push("alice", "cube", {"cube.stl": b"solid c\nendsolid c\n"}, create=True)
    before = hub.snapshot()
    for _ in range(5):  # a normal burst
        assert [d.slug for d in _search(hub, "carol").designs] == ["cube"]
    error = _refusal(lambda: _search(hub, "carol"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit rate search" in (error.details() or "")
    assert _retry_delay(error) > 1.0  # the next token is ~100 s away
    assert hub.snapshot() == before
    # Alice's own bucket is full: her searches are answered at once.
    assert [d.slug for d in _search(hub, "alice").designs] == ["cube"]
    # Other classes of carol's calls are not limited by her searches.
    assert hub.designs.GetDesign(designs_pb2.GetDesignRequest(design="cube"), metadata=hub.md("carol")).slug == "cube"


def test_a_limited_call_is_refused_before_its_request_is_decoded(strict: InProcessHub) -> None:
    hub = strict
    assert hub.channel is not None
    raw = hub.channel.unary_unary(SEARCH, request_serializer=None, response_deserializer=None)
    garbage = b"\xff\xff\xff\xff"
    assert _refusal(lambda: raw(garbage, metadata=hub.md("carol"), timeout=60)).code() == \
        grpc.StatusCode.INVALID_ARGUMENT  # admitted: decoded and refused, which costs REFUSAL_COST more tokens
    error = _refusal(lambda: raw(garbage, metadata=hub.md("carol"), timeout=60))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()


def test_refused_requests_cost_their_account_more_tokens(costly: InProcessHub) -> None:
    hub = costly
    bad = _refusal(lambda: _search(hub, "carol", tags=[f"t{i}" for i in range(5000)]))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(COSTLY_BURST - 1 - limits.REFUSAL_COST["search"]):
        _search(hub, "carol")
    assert _refusal(lambda: _search(hub, "carol")).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for _ in range(COSTLY_BURST):  # bob sent nothing bad: his whole burst
        _search(hub, "bob")


def test_a_burst_over_the_rate_is_slowed_not_refused(paced: InProcessHub) -> None:
    hub = paced
    for _ in range(10):
        assert list(_search(hub, "carol").designs) == []


# -- the parts, without a server -------------------------------------------------------

def test_the_default_rates_let_a_1000_file_push_and_a_paging_search_through_without_waiting() -> None:
    blobs, search = TokenBucket(DEFAULT_RATES["blobs"]), TokenBucket(DEFAULT_RATES["search"])
    assert all(blobs.reserve(0.0, 0.0) == 0.0 for _ in range(limits.MAX_FILES + 20))  # uploads + MissingBlobs
    assert all(search.reserve(0.0, 0.0) == 0.0 for _ in range(20))


def test_a_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(RateLimit(per_s=10, burst=2))
    assert bucket.reserve(0.0, 0.0) == 0.0 and bucket.reserve(0.0, 0.0) == 0.0
    assert bucket.reserve(0.0, 0.0) is None  # empty, and no wait accepted: nothing taken
    assert bucket.reserve(0.0, 1.0) == pytest.approx(0.1)
    assert bucket.retry_after(0.0) == pytest.approx(0.2)
    assert bucket.reserve(10.0, 0.0) == 0.0 and bucket.idle(10.2)


def test_rates_are_configured_per_class_and_bad_ones_refused(tmp_path: Path) -> None:
    rates = parse_rates("search=20/100, order=2")
    assert rates["search"] == RateLimit(20, 100) and rates["order"] == RateLimit(2, 2)
    assert rates["blobs"] == DEFAULT_RATES["blobs"]
    for bad in ("searches=1/1", "search=0/5", "search=1/0", "search=fast", "search"):
        with pytest.raises(InvalidArgument, match="--rate-limit"):
            parse_rates(bad)
    with pytest.raises(InvalidArgument, match="--rate-limit"):
        HubConfig(data_dir=tmp_path, rate_limits="search=1/x")
    with pytest.raises(InvalidArgument, match="--admission-wait"):
        HubConfig(data_dir=tmp_path, admission_wait_s=-1)


def test_a_rate_gate_holds_a_flooding_account_to_its_rate() -> None:
    async def flood() -> tuple[int, int, float]:
        gate = RateGate({"search": RateLimit(per_s=50, burst=1)}, max_wait_s=0.5, max_waiting=4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(*(gate.admit("Designs.Search", "sybil") for _ in range(20)),
                                       return_exceptions=True)
        refused = sum(isinstance(r, ResourceExhausted) for r in results)
        return len(results) - refused, refused, loop.time() - started

    admitted, refused, elapsed = asyncio.run(flood())
    # One at once, four waiting for their tokens, the other fifteen refused (too many waiting).
    assert (admitted, refused) == (5, 15)
    assert elapsed >= 4 / 50 * 0.9


def test_a_call_over_the_concurrency_limit_waits_for_a_slot_then_is_refused() -> None:
    async def scenario() -> tuple[list[str], str]:
        gate = CallGate({"Designs.Push": 1}, max_wait_s=5.0)
        order: list[str] = []
        release = asyncio.Event()

        async def first() -> None:
            async with gate.enter("Designs.Push", "alice"):
                order.append("first in")
                await release.wait()
            order.append("first out")

        async def second() -> None:
            async with gate.enter("Designs.Push", "alice"):
                order.append("second in")

        one = asyncio.create_task(first())
        await asyncio.sleep(0)
        two = asyncio.create_task(second())
        await asyncio.sleep(0.05)
        async with gate.enter("Designs.Push", "bob"):  # another account is not held up
            order.append("bob")
        release.set()
        await asyncio.gather(one, two)
        short = CallGate({"Designs.Push": 1}, max_wait_s=0.05)
        async with short.enter("Designs.Push", "alice"):
            try:
                async with short.enter("Designs.Push", "alice"):
                    pass
            except ResourceExhausted as exc:
                return order, exc.message
        return order, ""

    order, refusal = asyncio.run(scenario())
    assert order == ["first in", "bob", "first out", "second in"]
    assert "limit concurrent Designs.Push" in refusal


@pytest.fixture(params=["sqlite", "postgresql"])
def grants_strict(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    """Grants: bursts of 3, then one every 100 s; short waits."""
    yield from _hub(request, tmp_path, rate_limits="grant=0.01/3", admission_wait_s=0.2)


def test_grants_and_revocations_share_one_rate_per_account(grants_strict: InProcessHub) -> None:
    """A grant-then-revoke loop leaves a row on record each time: both calls draw from the class "grant"."""
    hub = grants_strict
    orders = orders_pb2_grpc.OrdersStub(hub.channel)
    for _ in range(3):  # admitted: refused by the service for what they say, not by the rate
        code = _refusal(lambda: orders.Grant(orders_pb2.GrantRequest(), metadata=hub.md("alice"), timeout=60)).code()
        assert code != grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in (lambda: orders.Grant(orders_pb2.GrantRequest(), metadata=hub.md("alice"), timeout=60),
                 lambda: orders.RevokeGrant(orders_pb2.RevokeGrantRequest(), metadata=hub.md("alice"), timeout=60)):
        error = _refusal(call)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit rate grant" in (error.details() or "")
    other = _refusal(lambda: orders.RevokeGrant(orders_pb2.RevokeGrantRequest(), metadata=hub.md("bob"), timeout=60))
    assert other.code() != grpc.StatusCode.RESOURCE_EXHAUSTED  # another account's bucket is full


def test_a_method_under_no_limit_is_admitted_without_a_context_of_its_own() -> None:
    """An agent's Session stream is under no rate or concurrency limit: its admission is one shared
    empty context, not two async generators held for the stream's life (10,000 of them in a
    reconnect storm); a limited method still gets its own."""
    admission = Admission(rates={"search": RateLimit(1.0, 5)}, concurrent={"Designs.Push": 1})
    free = admission.enter("Nodes.Session", "lab-1")
    assert free is admission.enter("Nodes.Session", "lab-2")
    assert admission.enter("Designs.Search", "alice") is not admission.enter("Designs.Search", "alice")
    assert admission.enter("Designs.Push", "alice") is not free

    async def scenario() -> str:
        async with free:  # enters and leaves like any other, as often as asked
            pass
        async with admission.enter("Designs.Push", "alice"):
            try:
                async with admission.enter("Designs.Push", "alice"):  # the limit still holds
                    pass
            except ResourceExhausted as exc:
                return exc.message
        return ""

    assert "limit concurrent Designs.Push" in asyncio.run(scenario())
