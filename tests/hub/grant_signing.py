"""Keys registered over the real Accounts service and grant statements signed with them, for tests."""

from __future__ import annotations

import datetime as dt

from spimeforge.v1 import accounts_pb2, accounts_pb2_grpc, orders_pb2

from hub import grants as grant_rules
from hub.keys import prove_possession
from hub.provenance import generate_private_key, public_key_of
from tests.hub.harness import InProcessHub

UNTIL = "2030-01-01T23:59:59Z"


def now_text(offset_s: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def registered_key(hub: InProcessHub, user: str) -> bytes:
    """A new private key, registered to ``user`` with its proof of possession."""
    accounts = accounts_pb2_grpc.AccountsStub(hub.channel)
    hub_key = accounts.GetHubKey(accounts_pb2.GetHubKeyRequest(), metadata=hub.md(user)).public_key
    key, signed_at = generate_private_key(), now_text()
    public, proof = prove_possession(key, user, signed_at, hub_key)
    accounts.RegisterKey(accounts_pb2.RegisterKeyRequest(public_key=public, signed_at=signed_at, proof=proof),
                         metadata=hub.md(user))
    return key


def statement(key: bytes, user: str, design: str, *, scope: str = "paid", node: str = "", until: str = UNTIL,
              revision_id: str = "", granted_at: str = "") -> grant_rules.GrantStatement:
    return grant_rules.GrantStatement(design=design, revision_id=revision_id, scope=scope, node=node, until=until,
                                      granted_by=user, granted_at=granted_at or now_text(),
                                      public_key=public_key_of(key).hex())


def signed_grant(key: bytes, user: str, design: str, **fields: str) -> orders_pb2.GrantRequest:
    """A GrantRequest whose statement ``user`` signed with ``key`` (the plain fields left empty)."""
    text, signature = grant_rules.sign_statement(key, statement(key, user, design, **fields))
    return orders_pb2.GrantRequest(statement=text, signature=signature.hex())
