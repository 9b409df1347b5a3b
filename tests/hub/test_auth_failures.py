"""Failed authentications are held to a budget per peer address (a wrong token belongs to no account, so
the per-account limits never saw them): past it every call from the address is refused before its token
is looked up, RESOURCE_EXHAUSTED with a RetryInfo hint. Valid tokens cost nothing. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from spimeforge.v1 import accounts_pb2

from hub import limits
from hub.api.interceptors import peer_network
from hub.errors import ResourceExhausted
from hub.workers import FailureGate
from tests.hub.harness import InProcessHub
from tests.hub.refusal import details_of

WRONG = (("authorization", "Bearer not-a-token-of-this-hub"),)


def _who(api: InProcessHub, metadata: Any) -> grpc.StatusCode:
    try:
        api.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_wrong_tokens_from_one_address_are_refused_after_the_budget(any_api: InProcessHub,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    api = any_api
    store = api.composed.hub.accounts.accounts
    lookups: list[int] = []
    real = store._thd_by_digests
    monkeypatch.setattr(store, "_thd_by_digests", lambda digests: (lookups.append(len(digests)), real(digests))[1])
    # honest calls first: they take nothing from the address's budget
    assert {_who(api, api.md("carol")) for _ in range(100)} == {grpc.StatusCode.OK}
    codes: list[grpc.StatusCode] = []
    while grpc.StatusCode.RESOURCE_EXHAUSTED not in codes:
        assert len(codes) < 200, "two hundred wrong tokens from one address, never throttled"
        codes.append(_who(api, WRONG))
        if len(codes) == 10:  # within the budget a valid token works, from the same address
            assert _who(api, api.md("alice")) == grpc.StatusCode.OK
    burst = limits.DEFAULT_RATES["auth"].burst
    assert set(codes[:-1]) == {grpc.StatusCode.UNAUTHENTICATED} and len(codes) > burst
    with pytest.raises(grpc.RpcError) as info:
        api.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=WRONG, timeout=30)
    refusal = details_of(info.value)
    assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED and refusal.info.reason == "RATE_LIMIT"
    assert "limit rate auth" in refusal.message and "ipv4:127.0.0.1" in refusal.message
    assert refusal.retry is not None and refusal.retry.retry_delay.ToTimedelta().total_seconds() > 0
    # Exhausted, the address is refused before any token is looked up, a valid one too: otherwise a
    # right guess would answer OK while the wrong ones are refused, and guessing would go on at full speed.
    looked_up = len(lookups)
    assert _who(api, api.md("alice")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _who(api, WRONG) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(lookups) == looked_up


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refused(gate: FailureGate, peer: str) -> float:
    """0 when a call from ``peer`` is admitted, else the refusal's retry hint in seconds."""
    try:
        asyncio.run(gate.admit(lambda: peer))
    except ResourceExhausted as exc:
        assert "limit rate auth" in exc.message and exc.retryable and exc.retry_after_s > 0
        return exc.retry_after_s
    return 0.0


def test_the_budget_refills_and_addresses_that_paid_off_are_forgotten() -> None:
    clock = _Clock()
    gate = FailureGate(limits.RateLimit(per_s=1, burst=3), max_wait_s=0, clock=clock)
    assert not _refused(gate, "ipv4:192.0.2.1") and len(gate) == 0  # nothing failed: nothing tracked
    for _ in range(4):
        gate.failed("ipv4:192.0.2.1")
    assert not _refused(gate, "ipv4:192.0.2.2")
    hint = _refused(gate, "ipv4:192.0.2.1")
    clock.now += hint / 2  # calling on before the hint: refused, and the wait grows
    longer = _refused(gate, "ipv4:192.0.2.1")
    assert longer > hint / 2
    clock.now += longer  # an address that waits as told may try again
    assert not _refused(gate, "ipv4:192.0.2.1")
    clock.now += 3600
    for i in range(2048):  # others' failures: the paid-off address is forgotten along the way
        gate.failed(f"ipv4:198.51.100.{i % 200}")
    assert "ipv4:192.0.2.1" not in gate._buckets


def test_memory_stays_bounded_under_many_failing_addresses() -> None:
    clock = _Clock()
    gate = FailureGate(limits.RateLimit(per_s=1, burst=3), max_wait_s=0, max_peers=100, clock=clock)
    for i in range(10_000):
        gate.failed(f"ipv6:[2001:db8:{i:x}::]/64")
    assert len(gate) <= 101  # the tracked addresses and the one budget the others share
    # the untracked addresses are still held to a budget: together
    assert _refused(gate, "ipv6:[2001:db8:ffff::]/64")
    clock.now += 20_000  # the shared budget pays off its 9,900 failures
    assert not _refused(gate, "ipv6:[2001:db8:ffff::]/64")


def test_an_address_is_counted_by_its_host_and_an_ipv6_one_by_its_64() -> None:
    assert peer_network("ipv4:192.0.2.1:50123") == peer_network("ipv4:192.0.2.1:50124") == "ipv4:192.0.2.1"
    assert peer_network("ipv6:[2001:db8:1:2:3:4:5:6]:443") == peer_network("ipv6:[2001:db8:1:2::9]:1")
    assert peer_network("ipv6:[2001:db8:1:3::9]:1") != peer_network("ipv6:[2001:db8:1:2::9]:1")
    assert peer_network("ipv6:[::ffff:192.0.2.1]:1") == "ipv4:192.0.2.1"
    assert peer_network("unix:/run/hub.sock") == "unix:/run/hub.sock"
