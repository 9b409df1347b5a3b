"""Nodes.Enroll needs no token, so anyone can call it: it answers like every other RPC (decoded by
the hub, refusals with their details) and a caller guessing tokens is held to a rate per address
and costs no write transaction. Both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from spimeforge.v1 import nodes_pb2, nodes_pb2_grpc

import hub.store.nodes as store_nodes
from hub.api.interceptors import peer_host
from tests.hub.harness import InProcessHub
from tests.hub.refusal import details_of

ENROLL = "/spimeforge.v1.Nodes/Enroll"


def _raw(api: InProcessHub) -> grpc.UnaryUnaryMultiCallable:
    assert api.channel is not None
    return api.channel.unary_unary(ENROLL, request_serializer=lambda b: b, response_deserializer=lambda b: b)


@pytest.mark.parametrize("payload", [b"\x0a\x03\xff\xfe\xfd", b"\xff\xff\xff", b"\x0a\x80"],
                         ids=["bad-utf8", "bad-wire-type", "truncated"])
def test_an_undecodable_enrollment_is_invalid_argument_with_details(api: InProcessHub, payload: bytes) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _raw(api)(payload, timeout=30)
    refusal = details_of(info.value)
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal.message
    assert refusal.info.reason == "REQUEST_UNDECODABLE"


@pytest.mark.parametrize(("request_", "field", "reason"), [
    (nodes_pb2.EnrollRequest(agent_version="x"), "enrollment_token", "INVALID_ARGUMENT"),
    (nodes_pb2.EnrollRequest(enrollment_token="t" * 129), "enrollment_token", "FIELD_TOO_LARGE"),
    (nodes_pb2.EnrollRequest(enrollment_token="a\x00b"), "enrollment_token", "NUL_CHARACTER"),
    (nodes_pb2.EnrollRequest(enrollment_token="abc", agent_version="\x07"), "agent_version", "CONTROL_CHARACTER"),
])
def test_enrollment_refusals_carry_their_details(api: InProcessHub, request_: nodes_pb2.EnrollRequest, field: str,
                                                 reason: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        nodes_pb2_grpc.NodesStub(api.channel).Enroll(request_, timeout=30)
    refusal = details_of(info.value)
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT, refusal.message
    assert refusal.info.reason == reason, refusal.message
    assert refusal.bad_request is not None and refusal.bad_request.field_violations[0].field == field


def test_guessed_enrollment_tokens_take_no_write_transaction_and_are_throttled(
        any_api: InProcessHub, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[object] = []
    real: Callable[..., Any] = store_nodes.write
    monkeypatch.setattr(store_nodes, "write", lambda engine: (writes.append(engine), real(engine))[1])
    stub = nodes_pb2_grpc.NodesStub(any_api.channel)
    codes: list[grpc.StatusCode] = []
    while grpc.StatusCode.RESOURCE_EXHAUSTED not in codes:
        assert len(codes) < 100, "a hundred wrong enrollment tokens from one address, never throttled"
        with pytest.raises(grpc.RpcError) as info:
            stub.Enroll(nodes_pb2.EnrollRequest(enrollment_token=f"guess-{len(codes)}", agent_version="x"), timeout=30)
        codes.append(info.value.code())
    assert set(codes[:-1]) == {grpc.StatusCode.UNAUTHENTICATED}
    assert writes == [], f"{len(writes)} write transactions for {len(codes)} wrong enrollment tokens"
    refusal = details_of(info.value)
    assert "limit rate enroll" in refusal.message and refusal.retry is not None


def test_an_enrollment_still_works_and_each_address_is_counted_without_its_port(api: InProcessHub) -> None:
    _, enrollment, _ = api.composed.hub.nodes._thd_add_node("lab-1")
    reply = nodes_pb2_grpc.NodesStub(api.channel).Enroll(
        nodes_pb2.EnrollRequest(enrollment_token=enrollment, agent_version="t/1"), timeout=30)
    assert reply.node == "lab-1" and reply.token
    assert peer_host("ipv4:127.0.0.1:50123") == "ipv4:127.0.0.1"
    assert peer_host("ipv6:[::1]:50123") == "ipv6:[::1]"
    assert peer_host("unix:/run/hub.sock") == "unix:/run/hub.sock"
