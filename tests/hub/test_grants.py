"""Licence grants are signed by a maintainer's registered key and verified by the hub (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import grpc
import pytest
from spimeforge.v1 import accounts_pb2, accounts_pb2_grpc, orders_pb2, orders_pb2_grpc

from hub import grants as grant_rules
from hub.errors import InvalidArgument
from hub.keys import fingerprint, verify_strict
from hub.provenance import generate_private_key, public_key_of
from tests.hub.grant_signing import UNTIL, now_text, registered_key, signed_grant, statement
from tests.hub.harness import InProcessHub, manifest_toml
from tests.hub.refusal import refused

STL = b"solid s\nendsolid s\n"


def _design(api: InProcessHub, name: str = "nc-cube") -> str:
    files = ("part.stl",)
    return api.push("alice", name, {"part.stl": STL}, manifest=manifest_toml(name, license="CC-BY-NC-4.0", files=files),
                    create=True).revision_id


def _refused(api: InProcessHub, user: str, request: orders_pb2.GrantRequest) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        orders_pb2_grpc.OrdersStub(api.channel).Grant(request, metadata=api.md(user))
    return info.value.code(), info.value.details() or ""


def test_a_signed_grant_is_stored_as_signed_and_verifiable_later(any_api: InProcessHub) -> None:
    api = any_api
    revision = _design(api)
    key = registered_key(api, "alice")
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    request = signed_grant(key, "alice", "nc-cube", revision_id=revision, node="lab-1")
    recorded = stub.Grant(request, metadata=api.md("alice"))
    assert (recorded.design, recorded.revision_id, recorded.scope, recorded.node, recorded.until) == (
        "nc-cube", revision, "paid", "lab-1", UNTIL)
    assert recorded.granted_by == "alice" and recorded.key_fingerprint == fingerprint(public_key_of(key))
    assert recorded.statement == request.statement and recorded.signature == request.signature
    assert recorded.statement_sha256 == hashlib.sha256(request.statement.encode()).hexdigest()
    # the same signed statement sent twice is one grant
    assert stub.Grant(request, metadata=api.md("alice")).id == recorded.id
    [listed] = stub.ListGrants(orders_pb2.ListGrantsRequest(design="nc-cube"), metadata=api.md("carol")).grants
    assert listed == recorded
    # anyone can check it: the statement names its key, the signature covers the stored bytes
    signed = grant_rules.parse_statement(listed.statement)
    verify_strict(bytes.fromhex(signed.public_key), listed.statement.encode(), bytes.fromhex(listed.signature))
    assert (signed.design, signed.revision_id, signed.granted_by, signed.granted_at) == (
        "nc-cube", revision, "alice", listed.granted_at)


def test_the_plain_fields_must_agree_with_the_statement(any_api: InProcessHub) -> None:
    api = any_api
    _design(api)
    key = registered_key(api, "alice")
    request = signed_grant(key, "alice", "nc-cube")
    request.scope, request.until = "paid", "2030-01-01"
    assert orders_pb2_grpc.OrdersStub(api.channel).Grant(request, metadata=api.md("alice")).scope == "paid"
    request = signed_grant(key, "alice", "nc-cube")
    request.scope = "any"
    code, details = _refused(api, "alice", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "scope" in details and "signed statement" in details


def test_missing_signature_or_statement_is_refused(any_api: InProcessHub) -> None:
    api = any_api
    _design(api)
    code, details = _refused(api, "alice", orders_pb2.GrantRequest(design="nc-cube", scope="paid", until="2030-01-01"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "must be signed" in details and "spime key register" in details
    request = signed_grant(registered_key(api, "alice"), "alice", "nc-cube")
    code, details = _refused(api, "alice", orders_pb2.GrantRequest(statement=request.statement))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "must be signed" in details
    # a non-maintainer hears that first, signed or not
    code, _ = _refused(api, "bob", orders_pb2.GrantRequest(design="nc-cube", scope="paid", until="2030-01-01"))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_a_key_not_registered_to_the_granting_maintainer_is_refused(any_api: InProcessHub) -> None:
    api = any_api
    _design(api)
    bobs = registered_key(api, "bob")
    code, details = _refused(api, "alice", signed_grant(bobs, "alice", "nc-cube"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "registered to another account" in details
    code, details = _refused(api, "alice", signed_grant(generate_private_key(), "alice", "nc-cube"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "not registered" in details
    # alice's statement claiming bob granted it, and bob (not a maintainer) with his own key
    code, details = _refused(api, "alice", signed_grant(registered_key(api, "alice"), "bob", "nc-cube"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "granted by 'bob'" in details
    code, _ = _refused(api, "bob", signed_grant(bobs, "bob", "nc-cube"))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_a_revoked_key_does_not_sign_grants(any_api: InProcessHub) -> None:
    api = any_api
    _design(api)
    key = registered_key(api, "alice")
    fp = fingerprint(public_key_of(key))
    accounts_pb2_grpc.AccountsStub(api.channel).RevokeKey(accounts_pb2.RevokeKeyRequest(fingerprint=fp),
                                                          metadata=api.md("alice"))
    code, details = _refused(api, "alice", signed_grant(key, "alice", "nc-cube"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and fp in details and "revoked from" in details
    listed = orders_pb2_grpc.OrdersStub(api.channel).ListGrants(orders_pb2.ListGrantsRequest(design="nc-cube"),
                                                                metadata=api.md("alice"))
    assert list(listed.grants) == []


def test_a_tampered_or_reserialised_statement_is_refused(any_api: InProcessHub) -> None:
    api = any_api
    _design(api)
    key = registered_key(api, "alice")
    request = signed_grant(key, "alice", "nc-cube", scope="paid")
    tampered = orders_pb2.GrantRequest(statement=request.statement.replace('"scope":"paid"', '"scope":"any"'),
                                       signature=request.signature)
    code, details = _refused(api, "alice", tampered)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "does not match key" in details
    spaced = json.dumps(json.loads(request.statement), sort_keys=True)
    code, details = _refused(api, "alice", orders_pb2.GrantRequest(statement=spaced, signature=request.signature))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "canonical" in details
    bad = bytearray(bytes.fromhex(request.signature))
    bad[0] ^= 1
    code, details = _refused(api, "alice", orders_pb2.GrantRequest(statement=request.statement, signature=bad.hex()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "signature" in details
    for broken in ("[]", "{", json.dumps({"type": "x"})):
        code, _ = _refused(api, "alice", orders_pb2.GrantRequest(statement=broken, signature=request.signature))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, broken


def test_signed_fields_are_checked_like_plain_ones(any_api: InProcessHub) -> None:
    api = any_api
    revision = _design(api)
    key = registered_key(api, "alice")
    cases = [
        ({"scope": "everything"}, grpc.StatusCode.INVALID_ARGUMENT, "scope"),
        ({"until": "2001-01-01T23:59:59Z"}, grpc.StatusCode.INVALID_ARGUMENT, "in the past"),
        ({"until": "2030-01-01"}, grpc.StatusCode.INVALID_ARGUMENT, "RFC 3339"),
        ({"node": "Not A Node"}, grpc.StatusCode.INVALID_ARGUMENT, "node"),
        ({"revision_id": revision[:12]}, grpc.StatusCode.INVALID_ARGUMENT, "full id"),
        ({"revision_id": "f" * 64}, grpc.StatusCode.NOT_FOUND, ""),
        ({"granted_at": now_text(-3600)}, grpc.StatusCode.INVALID_ARGUMENT, "check your clock"),
    ]
    for fields, expected, word in cases:
        code, details = _refused(api, "alice", signed_grant(key, "alice", "nc-cube", **fields))
        assert code == expected and word in details, (fields, details)
    code, _ = _refused(api, "alice", signed_grant(key, "alice", "no-such-design"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_an_admin_grants_only_with_an_own_registered_key(any_api: InProcessHub) -> None:
    api = any_api
    _design(api)
    alices = registered_key(api, "alice")
    code, _ = _refused(api, "admin", signed_grant(alices, "admin", "nc-cube"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    recorded = orders_pb2_grpc.OrdersStub(api.channel).Grant(
        signed_grant(registered_key(api, "admin"), "admin", "nc-cube"), metadata=api.md("admin"))
    assert recorded.granted_by == "admin"


def test_the_statement_is_refused_before_signing_with_another_key() -> None:
    key = generate_private_key()
    other = dataclasses.replace(statement(key, "alice", "cube"), public_key=public_key_of(generate_private_key()).hex())
    with pytest.raises(InvalidArgument):
        grant_rules.sign_statement(key, other)


def test_a_deeply_nested_statement_is_refused_naming_the_statement(any_api: InProcessHub) -> None:
    """JSON nested past the interpreter's depth raised RecursionError: INTERNAL, not the caller's fault."""
    api = any_api
    _design(api)
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    request = orders_pb2.GrantRequest(statement="[" * 1024, signature="ab" * 64)
    refusal = refused(api, lambda: stub.Grant(request, metadata=api.md("alice")), grpc.StatusCode.INVALID_ARGUMENT,
                      "INVALID_ARGUMENT", "grant statement", "too deeply")
    assert refusal.info.metadata["field"] == "statement"
    with pytest.raises(InvalidArgument, match="nests JSON too deeply"):
        grant_rules.parse_statement("[" * 1024)


def test_a_signed_node_with_a_trailing_newline_is_refused(any_api: InProcessHub) -> None:
    """The node pattern ended in "$", which re.match lets end before a final newline."""
    api = any_api
    _design(api)
    request = signed_grant(registered_key(api, "alice"), "alice", "nc-cube", node="lab-1\n")
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    refusal = refused(api, lambda: stub.Grant(request, metadata=api.md("alice")), grpc.StatusCode.INVALID_ARGUMENT,
                      "INVALID_ARGUMENT", "node")
    assert "not an account name" in refusal.message


@pytest.mark.parametrize("until", ["2030-01-01\n", "\u0662\u0660\u0663\u0660-\u0660\u0661-\u0660\u0661"])
def test_only_a_plain_last_day_becomes_its_last_second(until: str) -> None:
    assert grant_rules.canonical_until("2030-01-01") == "2030-01-01T23:59:59Z"
    assert grant_rules.canonical_until(until) == until
