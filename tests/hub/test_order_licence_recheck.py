"""Placing an order from a quote checks the licence again, as of then: a grant the quote counted on may have
ended or been revoked since (the quote holds 15 minutes). SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import grpc
from spimeforge.v1 import orders_pb2, orders_pb2_grpc

from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer
from tests.hub.grant_signing import registered_key, signed_grant
from tests.hub.refusal import refused
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL


def quote(hub: ClockedHub) -> orders_pb2.QuoteResponse:
    spec = orders_pb2.OrderSpec(design="nc-cube", material="PLA", quantity=1, near="52.52,13.40", paid=True)
    return orders_pb2_grpc.OrdersStub(hub.channel).Quote(orders_pb2.QuoteRequest(spec=spec), metadata=hub.md("carol"))


def place(hub: ClockedHub, quoted: orders_pb2.QuoteResponse) -> orders_pb2.Order:
    return orders_pb2_grpc.OrdersStub(hub.channel).PlaceOrder(
        orders_pb2.PlaceOrderRequest(quote_id=quoted.quote_id), metadata=hub.md("carol"))


def test_a_quote_taken_under_a_grant_that_ended_since_is_not_placed(hub: ClockedHub) -> None:
    """Placing from a quote skipped the licence: a grant ended (or revoked) after the quote still counted."""
    hub.push("alice", "nc-cube", dict(FILES), manifest=cube_manifest("nc-cube", "CC-BY-NC-4.0"), create=True)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    until = (hub.clock() + dt.timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    orders_pb2_grpc.OrdersStub(hub.channel).Grant(
        signed_grant(registered_key(hub, "alice"), "alice", "nc-cube", until=until), metadata=hub.md("alice"))
    quoted = quote(hub)
    hub.clock.advance(11 * 60)  # the grant ended; the quote (15 minutes) has not
    refused(hub, lambda: place(hub, quoted), grpc.StatusCode.FAILED_PRECONDITION, "LICENSE_CONFLICT", "CC-BY-NC-4.0")
    agent.close()
