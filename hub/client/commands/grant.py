"""``spime grant DESIGN --scope paid|modified|any [--node N | --any] --until DATE``: a licensor's signed grant.

The grant statement (hub.grants) is signed with the user's key, the one ``spime push``
signs revisions with (``--key``, else $SPIME_KEY, else ~/.config/spimeforge/key), which
must be registered to the account (``spime key register``). ``spime grant DESIGN --list``
shows a design's grants with the fingerprint of the key that signed each one and
whether its signature matches its statement.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2, orders_pb2, orders_pb2_grpc

from hub import grants as grant_rules
from hub.client.common import EXIT_OK, UsageError, add_hub_command, emit, split_ref
from hub.client.connection import Hub, opened
from hub.client.local import default_key_path, load_key
from hub.errors import InvalidArgument
from hub.keys import verify_strict
from hub.provenance import public_key_of

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime grant``."""
    p = add_hub_command(subparsers, "grant", "record a licensor's signed permission to fabricate (maintainers)",
                        _grant, description="paid: paid orders of an NC design; modified: changed parameters of an "
                                            "ND design; any: both (all-rights-reserved designs need it). The grant is "
                                            "signed with your registered key; --list shows a design's grants.")
    p.add_argument("ref", metavar="DESIGN[@REV]")
    p.add_argument("--list", action="store_true", help="list the design's grants and who signed them")
    p.add_argument("--scope", choices=("paid", "modified", "any"))
    who = p.add_mutually_exclusive_group()
    who.add_argument("--node", default="", help="only this node")
    who.add_argument("--any", action="store_true", help="any node")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="last day it holds (UTC)")
    p.add_argument("--key", default=None, help="signing key (default $SPIME_KEY or ~/.config/spimeforge/key)")


def _grant(args: argparse.Namespace) -> int:
    design, rev = split_ref(args.ref)
    if args.list:
        return _list(args, design)
    if not args.scope or not args.until or not (args.node or args.any):
        raise UsageError("a grant needs --scope, --until and one of --node N or --any")
    key = load_key(default_key_path(args.key))
    with opened(args) as hub:
        request = orders_pb2.GrantRequest(design=design, revision_id=rev, scope=args.scope, node=args.node,
                                          until=args.until)
        if key is not None:
            _sign(hub, request, key)
        # Without a key the request goes unsigned and the hub says why it refuses (and how to make a key).
        grant = hub.call(orders_pb2_grpc.OrdersStub(hub.channel).Grant, request)
    emit(args, _grant_doc(grant),
         lambda d: f"grant {d['id']}: {d['scope']} fabrication of {d['design']} on {d['node'] or 'any node'} "
                   f"until {d['until']}, by {d['granted_by']} (signed by key {d['key_fingerprint']})")
    return EXIT_OK


def _sign(hub: Hub, request: orders_pb2.GrantRequest, key: bytes) -> None:
    """Fill the request's statement and signature: the full revision id, the until moment, our name and time."""
    revision = request.revision_id
    if revision:
        found = hub.call(hub.designs.GetRevision, designs_pb2.GetRevisionRequest(design=request.design,
                                                                                 revision_id=revision))
        revision = found.id
    name = hub.call(hub.accounts.WhoAmI, accounts_pb2.WhoAmIRequest()).name
    statement = grant_rules.GrantStatement(
        design=request.design, revision_id=revision, scope=request.scope, node=request.node,
        until=grant_rules.canonical_until(request.until), granted_by=name,
        granted_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), public_key=public_key_of(key).hex())
    try:
        text, signature = grant_rules.sign_statement(key, statement)
    except InvalidArgument as exc:
        raise UsageError(f"cannot sign the grant: {exc}") from exc
    request.revision_id, request.statement, request.signature = revision, text, signature.hex()


def _list(args: argparse.Namespace, design: str) -> int:
    docs: list[dict[str, Any]] = []
    with opened(args) as hub:
        stub, token = orders_pb2_grpc.OrdersStub(hub.channel), ""
        while True:  # every page: the hub hands out at most 500 grants (and 4 MiB) at a time
            found = hub.call(stub.ListGrants, orders_pb2.ListGrantsRequest(
                design=design, page=common_pb2.PageRequest(page_size=500, page_token=token)))
            docs.extend(_grant_doc(g) for g in found.grants)
            token = found.next_page_token
            if not token:
                break
    emit(args, {"design": design, "grants": docs}, lambda d: "\n".join(_line(g) for g in d["grants"])
         or f"{design}: no grants on record")
    return EXIT_OK


def _grant_doc(grant: orders_pb2.GrantRecord) -> dict[str, Any]:
    return {"id": grant.id, "design": grant.design, "revision_id": grant.revision_id, "scope": grant.scope,
            "node": grant.node, "until": grant.until, "granted_by": grant.granted_by, "granted_at": grant.granted_at,
            "statement_sha256": grant.statement_sha256, "statement": grant.statement, "signature": grant.signature,
            "key_fingerprint": grant.key_fingerprint, "signature_ok": _signature_ok(grant)}


def _signature_ok(grant: orders_pb2.GrantRecord) -> bool:
    """Whether the signature matches the statement and the key it names (not whether that key was registered)."""
    try:
        statement = grant_rules.parse_statement(grant.statement)
        verify_strict(grant_rules.statement_key(statement), grant.statement.encode("utf-8"),
                      bytes.fromhex(grant.signature))
    except (InvalidArgument, ValueError):
        return False
    return (statement.design, statement.scope, statement.node, statement.until, statement.granted_by) == (
        grant.design, grant.scope, grant.node, grant.until, grant.granted_by)


def _line(d: dict[str, Any]) -> str:
    signed = f"signed by key {d['key_fingerprint']}" if d["signature_ok"] else "signature NOT valid"
    revision = f"@{d['revision_id'][:12]}" if d["revision_id"] else ""
    return (f"{d['id']}  {d['scope']} of {d['design']}{revision} on {d['node'] or 'any node'} until {d['until']}, "
            f"by {d['granted_by']} at {d['granted_at']}, {signed}")
