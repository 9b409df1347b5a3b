"""What keeps many agents on one hub cheap without weakening it, on SQLite and PostgreSQL:
the token cache (a revoked credential stops at once), admission of sessions (RESOURCE_EXHAUSTED
with a RetryInfo hint the real agent honours), and Hellos that rewrite only what changed."""

from __future__ import annotations

import asyncio
import random
import time

import grpc
import pytest
import sqlalchemy as sa
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from spimeforge.v1 import accounts_pb2

from hub.auth import TokenCache
from hub.domain import Account, Role
from hub.errors import NotFound, ResourceExhausted
from hub.scheduler import PrinterRecord
from hub.service.nodes import MAX_OPENING, MAX_OPENING_WAIT_S, Admission
from hub.store import schema
from hub.store.accounts import token_digest
from hub.store.nodes import HelloRecord
from node_agent import messages as m
from node_agent.hub_client import HubConnection, HubUnavailable, ReconnectPolicy
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, enroll, printer

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL

NOW = "2026-12-01T08:00:00Z"
LATER = "2026-12-01T09:00:00Z"


def _whoami(hub: ClockedHub, token: str) -> str:
    md = (("authorization", f"Bearer {token}"),)
    return str(hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=md, timeout=30).name)


# -- the token cache -----------------------------------------------------------------

def test_a_revoked_node_credential_stops_at_once_although_it_was_cached(hub: ClockedHub) -> None:
    token = enroll(hub, "lab-1")
    assert _whoami(hub, token) == "lab-1"
    assert len(hub.composed.hub.accounts.token_cache) >= 1  # the check above was cached
    assert hub.composed.hub.accounts._thd_revoke_tokens("lab-1") == 1
    with pytest.raises(grpc.RpcError) as info:
        _whoami(hub, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    agent = FakeAgent(hub, "lab-1", token, [printer()])
    with pytest.raises(AssertionError):
        agent.connect()
    assert agent.ended() == grpc.StatusCode.UNAUTHENTICATED
    assert _whoami(hub, hub.tokens["alice"]) == "alice"  # other accounts' tokens are untouched


def test_a_revocation_made_elsewhere_counts_once_the_cache_entry_expires(hub: ClockedHub) -> None:
    token = enroll(hub, "lab-1")
    cache = hub.composed.hub.accounts.token_cache
    assert _whoami(hub, token) == "lab-1"
    with hub.engine.begin() as conn:  # another hub replica (or an operator's SQL) revokes it
        conn.execute(sa.update(schema.tokens).where(schema.tokens.c.account == "lab-1").values(revoked_at=NOW))
    cache.clear()  # what the TTL does after ttl_s (TokenCache's own test covers the clock)
    with pytest.raises(grpc.RpcError) as info:
        _whoami(hub, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_found_live_by_the_recheck_are_cached_afresh_and_revoked_ones_dropped(hub: ClockedHub) -> None:
    """The recheck of open streams reads every token in the database: the live ones stay cached
    (a reconnect storm after a drop finds them there), a revoked one leaves the cache at once."""
    token = enroll(hub, "lab-1")
    accounts, digest = hub.composed.hub.accounts, token_digest(token)
    cache, lab = accounts.token_cache, Account("lab-1", Role.NODE)
    cache.put(digest, lab, time.monotonic() - cache.ttl_s + 1)  # checked a TTL ago: expires in a second
    assert accounts._thd_live_accounts([digest]) == {digest: lab}
    assert cache.get(digest, time.monotonic() + cache.ttl_s / 2) == lab
    with hub.engine.begin() as conn:  # revoked by another hub replica (or an operator's SQL)
        conn.execute(sa.update(schema.tokens).where(schema.tokens.c.account == "lab-1").values(revoked_at=NOW))
    assert accounts._thd_live_accounts([digest]) == {}
    assert cache.get(digest, time.monotonic()) is None
    with pytest.raises(grpc.RpcError) as info:
        _whoami(hub, token)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_cache_keeps_live_tokens_for_its_ttl_and_a_bounded_number() -> None:
    cache = TokenCache(ttl_s=30, max_entries=2)
    alice, bob = Account("alice", Role.DESIGNER), Account("bob", Role.NODE)
    cache.put("d-alice", alice, now=100.0)
    assert cache.get("d-alice", 129.9) == alice
    assert cache.get("d-alice", 130.0) is None  # expired: the next check goes to the database
    cache.put("d-alice", alice, 200.0)
    cache.put("d-bob", bob, 200.0)
    cache.put("d-bob2", bob, 200.0)
    assert len(cache) == 2 and cache.get("d-alice", 200.0) is None  # the oldest went first
    cache.forget_account("bob")
    assert cache.get("d-bob", 200.0) is None and cache.get("d-bob2", 200.0) is None and len(cache) == 0


# -- admission -------------------------------------------------------------------------

def test_sessions_beyond_admission_are_told_when_to_come_back(hub: ClockedHub) -> None:
    token = enroll(hub, "lab-1")
    nodes = hub.composed.hub.nodes
    epoch_before = nodes.nodes._thd_node("lab-1").session_epoch
    nodes._admission.limit = 0  # as if MAX_OPENING sessions were being opened right now ...
    nodes._admission.max_wait_s = 0.0  # ... and more than the hub opens in MAX_OPENING_WAIT_S
    agent = FakeAgent(hub, "lab-1", token, [printer()])
    with pytest.raises(AssertionError):
        agent.connect()
    assert agent.ended() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert agent.error is not None
    status = rpc_status.from_call(agent.error)
    assert status is not None
    hints = []
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            hints.append(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    assert len(hints) == 1
    hint = hints[0]
    assert 0.25 <= hint <= 10
    refused = nodes.nodes._thd_node("lab-1")
    assert refused.session_epoch == epoch_before and not refused.online  # nothing was stored

    # spime-node's view: a retryable error carrying the hint, and a wait of at least that long
    error = asyncio.run(_agent_session_error(hub.address, token))
    assert error.code == "RESOURCE_EXHAUSTED" and error.retryable
    assert error.retry_after_s == pytest.approx(hint, abs=0.3)
    policy = ReconnectPolicy(random.Random(7))
    policy.healthy()  # even right after a healthy session, the hub's hint wins
    waits = [policy.delay(error) for _ in range(20)]
    told = error.retry_after_s
    assert told is not None and all(told <= w <= 2 * told for w in waits)

    nodes._admission.limit, nodes._admission.max_wait_s = MAX_OPENING, MAX_OPENING_WAIT_S
    welcome = agent.connect()
    assert welcome.session_epoch == epoch_before + 1
    assert nodes._admission.opening == 0


def test_admission_hint_is_the_backlog_at_the_opening_rate() -> None:
    gate = Admission(limit=2, default_rate=4.0)
    gate.enter()
    gate.enter()
    with pytest.raises(ResourceExhausted) as info:
        gate.enter()
    assert info.value.retryable and info.value.reason == "SESSIONS_OPENING"
    assert info.value.retry_after_s == pytest.approx(0.5)  # 2 opening at 4 per second
    gate.leave()
    gate.enter()  # a slot came free
    assert gate.opening == 2


def test_admission_lets_sessions_wait_in_line_as_long_as_the_hub_opens_them_within_the_wait() -> None:
    gate = Admission(limit=2, default_rate=4.0, max_wait_s=1.5)
    for _ in range(6):  # 4 per second for 1.5 s: six wait in line, beyond the limit of 2
        gate.enter()
    with pytest.raises(ResourceExhausted) as info:
        gate.enter()
    assert info.value.retry_after_s == pytest.approx(1.5)  # six opening at 4 per second
    assert gate.opening == 6


async def _agent_session_error(address: str, token: str) -> HubUnavailable:
    conn = HubConnection(address, token)
    try:
        session = await conn.session(m.Hello("lab-1", "test/1", 0, (), ()))
        with pytest.raises(HubUnavailable) as info:
            await session.receive()
        return info.value
    finally:
        await conn.close()


# -- Hellos of many nodes ----------------------------------------------------------------

def _record(name: str, printer_id: str = "mk3", phase: str = "idle") -> PrinterRecord:
    return PrinterRecord(node=name, printer=printer_id, model="Prusa MK3S", build_volume_mm=(250.0, 210.0, 210.0),
                         nozzle_mm=0.4, materials=("PLA",), phase=phase, bed_clear=True, accepting=True, online=True,
                         rate_per_hour=("EUR", 300), rate_per_gram=("EUR", 5), slicer_profile="prusa_mk3s")


def _printer_rows(hub: ClockedHub) -> dict[tuple[str, str], tuple[str, str]]:
    pr = schema.printers
    with hub.engine.connect() as conn:
        return {(r.node, r.printer): (r.phase, r.updated_at)
                for r in conn.execute(sa.select(pr.c.node, pr.c.printer, pr.c.phase, pr.c.updated_at))}


def test_a_batch_of_hellos_rewrites_only_the_printers_that_changed(hub: ClockedHub) -> None:
    store = hub.composed.hub.nodes.nodes
    for name in ("lab-a", "lab-b", "lab-c"):
        hub.composed.hub.nodes._thd_add_node(name)
    first = store._thd_hello_many([HelloRecord(n, ("", None, None), "t", 0, (_record(n),), NOW)
                                   for n in ("lab-a", "lab-b", "lab-c")])
    assert [getattr(i, "session_epoch", None) for i in first] == [1, 1, 1]
    again = store._thd_hello_many([
        HelloRecord("lab-a", ("", None, None), "t", 0, (_record("lab-a"),), LATER),  # unchanged
        HelloRecord("lab-b", ("", None, None), "t", 0, (_record("lab-b", phase="printing"),), LATER),
        HelloRecord("lab-c", ("", None, None), "t", 0, (_record("lab-c", "xl"),), LATER),  # another printer
        HelloRecord("nobody", ("", None, None), "t", 0, (), LATER),
    ])
    assert [getattr(i, "session_epoch", None) for i in again[:3]] == [2, 2, 2]
    assert isinstance(again[3], NotFound)
    assert _printer_rows(hub) == {("lab-a", "mk3"): ("idle", NOW),  # not rewritten
                                  ("lab-b", "mk3"): ("printing", LATER), ("lab-c", "xl"): ("idle", LATER)}


def test_the_same_node_twice_in_one_batch_gets_two_epochs_and_the_later_hello_wins(hub: ClockedHub) -> None:
    store = hub.composed.hub.nodes.nodes
    hub.composed.hub.nodes._thd_add_node("lab-a")
    infos = store._thd_hello_many([HelloRecord("lab-a", ("", None, None), "t", 0, (_record("lab-a"),), NOW),
                                   HelloRecord("lab-a", ("", None, None), "t", 0, (_record("lab-a", "xl"),), NOW)])
    epochs = [getattr(i, "session_epoch", None) for i in infos]
    assert epochs == [1, 2]
    assert set(_printer_rows(hub)) == {("lab-a", "xl")}
    # only the newer session's end marks the node offline
    assert store._thd_disconnect_many([("lab-a", 1, LATER), ("lab-a", 2, LATER)]) == [False, True]
    assert not store._thd_node("lab-a").online
