"""A maintainer revokes a licence grant before its until with a signed revocation: the grant stays on record,
shown revoked; orders placed afterwards (from quotes taken before too) no longer count on it, orders placed
before stay valid. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import grpc
from spimeforge.v1 import orders_pb2, orders_pb2_grpc

from hub import grants as grant_rules
from hub.keys import fingerprint, verify_strict
from hub.provenance import public_key_of
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub, FakeAgent, printer
from tests.hub.grant_signing import now_text, registered_key, signed_grant
from tests.hub.harness import InProcessHub, manifest_toml
from tests.hub.refusal import refused
from tests.hub.test_order_licence_recheck import place, quote
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL
STL = b"solid s\nendsolid s\n"


def revocation(key: bytes, user: str, grant: orders_pb2.GrantRecord, **changes: str) -> orders_pb2.RevokeGrantRequest:
    """A RevokeGrantRequest for ``grant`` that ``user`` signed with ``key``."""
    statement = grant_rules.RevocationStatement(grant_id=grant.id, design=grant.design,
                                                statement_sha256=grant.statement_sha256, revoked_by=user,
                                                revoked_at=now_text(), public_key=public_key_of(key).hex())
    text, signature = grant_rules.sign_statement(key, dataclasses.replace(statement, **changes))
    return orders_pb2.RevokeGrantRequest(grant_id=grant.id, statement=text, signature=signature.hex())


def _granted(api: InProcessHub) -> tuple[bytes, orders_pb2.GrantRecord]:
    manifest = manifest_toml("nc-cube", license="CC-BY-NC-4.0", files=("part.stl",))
    api.push("alice", "nc-cube", {"part.stl": STL}, manifest=manifest, create=True)
    key = registered_key(api, "alice")
    grant = orders_pb2_grpc.OrdersStub(api.channel).Grant(signed_grant(key, "alice", "nc-cube", node="lab-1"),
                                                          metadata=api.md("alice"))
    return key, grant


def test_a_revoked_grant_stays_on_record_with_its_signed_revocation(any_api: InProcessHub) -> None:
    api = any_api
    key, grant = _granted(api)
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    request = revocation(key, "alice", grant)
    revoked = stub.RevokeGrant(request, metadata=api.md("alice"))
    assert (revoked.id, revoked.revoked_by, revoked.revocation, revoked.revocation_signature) == (
        grant.id, "alice", request.statement, request.signature)
    assert revoked.revoked_at and revoked.revocation_key_fingerprint == fingerprint(public_key_of(key))
    # the grant itself is unchanged, and anyone can check the revocation against the grant it names
    assert revoked.statement == grant.statement and revoked.signature == grant.signature
    signed = grant_rules.parse_revocation(revoked.revocation)
    verify_strict(bytes.fromhex(signed.public_key), revoked.revocation.encode(), bytes.fromhex(revoked.revocation_signature))
    assert (signed.grant_id, signed.design, signed.statement_sha256) == (grant.id, grant.design, grant.statement_sha256)
    # shown revoked, not vanished
    [listed] = stub.ListGrants(orders_pb2.ListGrantsRequest(design="nc-cube"), metadata=api.md("carol")).grants
    assert listed == revoked
    assert stub.GetGrant(orders_pb2.GetGrantRequest(grant_id=grant.id), metadata=api.md("carol")) == revoked
    # the same signed revocation again (a retry) answers the record as it is
    assert stub.RevokeGrant(request, metadata=api.md("alice")) == revoked
    # another revocation of the revoked grant: a clear refusal, nothing changed
    again = revocation(key, "alice", grant, revoked_at=now_text(1))
    refused(api, lambda: stub.RevokeGrant(again, metadata=api.md("alice")), grpc.StatusCode.FAILED_PRECONDITION,
            "GRANT_ALREADY_REVOKED", "revoked already", revoked.revoked_at, "nothing changed")


def test_only_a_maintainer_revokes_and_only_with_a_revocation_of_that_grant(any_api: InProcessHub) -> None:
    api = any_api
    key, grant = _granted(api)
    stub = orders_pb2_grpc.OrdersStub(api.channel)
    bobs = registered_key(api, "bob")

    def revoke(user: str, request: orders_pb2.RevokeGrantRequest, code: grpc.StatusCode, reason: str,
               *words: str) -> None:
        refused(api, lambda: stub.RevokeGrant(request, metadata=api.md(user)), code, reason, *words)

    denied = grpc.StatusCode.PERMISSION_DENIED
    revoke("bob", revocation(bobs, "bob", grant), denied, "PERMISSION_DENIED", "only maintainers")
    revoke("alice", revocation(bobs, "alice", grant), denied, "PERMISSION_DENIED", "registered to another account")
    revoke("alice", revocation(key, "bob", grant), denied, "PERMISSION_DENIED", "revoked by 'bob'")
    unknown = orders_pb2.RevokeGrantRequest(grant_id="0" * 16, statement=revocation(key, "alice", grant).statement)
    revoke("alice", unknown, grpc.StatusCode.NOT_FOUND, "NOT_FOUND", "no grant")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    revoke("alice", orders_pb2.RevokeGrantRequest(grant_id=grant.id), bad, "INVALID_ARGUMENT", "must be signed")
    revoke("alice", revocation(key, "alice", grant, statement_sha256="0" * 64), bad, "INVALID_ARGUMENT",
           "sign one for this grant")
    revoke("alice", revocation(key, "alice", grant, revoked_at=now_text(-3600)), bad, "INVALID_ARGUMENT",
           "check your clock")
    tampered = revocation(key, "alice", grant)
    tampered.signature = revocation(key, "alice", grant, revoked_at=now_text(-1)).signature
    revoke("alice", tampered, bad, "INTEGRITY_MISMATCH", "signature does not match")
    revoke("alice", orders_pb2.RevokeGrantRequest(grant_id="x" * 33), bad, "FIELD_TOO_LARGE",
           "RevokeGrantRequest.grant_id")
    assert not stub.GetGrant(orders_pb2.GetGrantRequest(grant_id=grant.id), metadata=api.md("carol")).revoked_at
    # an admin revokes like a maintainer, with a key of their own
    revoked = stub.RevokeGrant(revocation(registered_key(api, "admin"), "admin", grant), metadata=api.md("admin"))
    assert revoked.revoked_by == "admin"


def test_a_revocation_counts_for_orders_placed_after_it_and_placed_orders_stay_valid(hub: ClockedHub) -> None:
    hub.push("alice", "nc-cube", dict(FILES), manifest=cube_manifest("nc-cube", "CC-BY-NC-4.0"), create=True)
    agent = FakeAgent.enrolled(hub, "lab-1", [printer()])
    agent.connect()
    key = registered_key(hub, "alice")
    stub = orders_pb2_grpc.OrdersStub(hub.channel)
    grant = stub.Grant(signed_grant(key, "alice", "nc-cube", node="lab-1"), metadata=hub.md("alice"))
    placed = place(hub, quote(hub))
    later = quote(hub)  # taken under the grant, placed after the revocation
    stub.RevokeGrant(revocation(key, "alice", grant), metadata=hub.md("alice"))
    refused(hub, lambda: place(hub, later), grpc.StatusCode.FAILED_PRECONDITION, "LICENSE_CONFLICT", "CC-BY-NC-4.0")
    refused(hub, lambda: quote(hub), grpc.StatusCode.FAILED_PRECONDITION, "LICENSE_CONFLICT", "--scope paid")
    # the order placed under the grant is made and delivered
    agent.print_job()
    done = stub.GetOrder(orders_pb2.GetOrderRequest(order_id=placed.id), metadata=hub.md("carol"))
    assert done.state == orders_pb2.ORDER_STATE_DELIVERED
    agent.close()
