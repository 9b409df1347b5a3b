"""What the hub tests' harness promises: a snapshot of the store changes with what a call stores, and
not with the hub's own timers (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from hub.service.replicas import DEFAULT_POLICY
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import WAIT_S, ClockedHub

hub = clocked_fixture()


def test_a_snapshot_sees_what_a_call_stores_and_not_the_hubs_lease_renewal(hub: ClockedHub) -> None:
    """refused() holds a call to leaving the store as it was by comparing snapshots taken around it. The
    hub renews its replica lease every few seconds meanwhile: a refusal whose snapshots straddled a
    renewal failed on PostgreSQL (a rating comment's, test_orders_hostile [postgresql-\\u200e], once
    under load)."""
    before = hub.snapshot()
    hub.clock.advance(DEFAULT_POLICY.beat_s)
    asyncio.run_coroutine_threadsafe(hub.server.replicas.round(), hub.loop).result(timeout=WAIT_S)
    assert hub.snapshot() == before
    hub.composed.hub.nodes._thd_add_node("lab-1")
    assert hub.snapshot() != before
