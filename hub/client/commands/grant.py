"""``spime grant DESIGN --scope paid|modified|any [--node N | --any] --until DATE``: a licensor's signed grant.

The grant statement (hub.grants) is signed with the user's key, the one ``spime push``
signs revisions with (``--key``, else $SPIME_KEY, else ~/.config/spimeforge/key), which
must be registered to the account (``spime key register``). ``spime grant DESIGN --list``
shows a design's grants with the fingerprint of the key that signed each one and
whether its signature matches its statement, revoked ones marked so.
``spime grant revoke ID`` revokes a grant with a revocation signed the same way: orders
placed after it no longer count on the grant; orders placed before stay valid.
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
                                            "signed with your registered key; --list shows a design's grants. "
                                            "`spime grant revoke ID` revokes one (signed too): orders placed after "
                                            "that no longer count on it, orders placed before stay valid.")
    p.add_argument("ref", metavar="DESIGN[@REV] | revoke")
    p.add_argument("grant_id", nargs="?", metavar="ID", help="with revoke: the grant to revoke (as --list shows)")
    p.add_argument("--list", action="store_true", help="list the design's grants and who signed them")
    p.add_argument("--scope", choices=("paid", "modified", "any"))
    who = p.add_mutually_exclusive_group()
    who.add_argument("--node", default="", help="only this node")
    who.add_argument("--any", action="store_true", help="any node")
    p.add_argument("--until", metavar="YYYY-MM-DD", help="last day it holds (UTC)")
    p.add_argument("--key", default=None, help="signing key (default $SPIME_KEY or ~/.config/spimeforge/key)")


def _grant(args: argparse.Namespace) -> int:
    if args.grant_id is not None or (args.ref == "revoke" and not (args.list or args.scope)):
        if args.ref != "revoke" or args.grant_id is None or args.list or args.scope or args.until or args.node \
                or args.any:
            raise UsageError("to revoke a grant: spime grant revoke ID [--key FILE]")
        return _revoke(args)
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


def _revoke(args: argparse.Namespace) -> int:
    key = load_key(default_key_path(args.key))
    with opened(args) as hub:
        stub = orders_pb2_grpc.OrdersStub(hub.channel)
        request = orders_pb2.RevokeGrantRequest(grant_id=args.grant_id)
        grant = hub.call(stub.GetGrant, orders_pb2.GetGrantRequest(grant_id=args.grant_id))
        # A revoked grant is not signed for again: the hub answers that it was revoked, when and by whom.
        if key is not None and not grant.revoked_at:
            name = hub.call(hub.accounts.WhoAmI, accounts_pb2.WhoAmIRequest()).name
            statement = grant_rules.RevocationStatement(
                grant_id=grant.id, design=grant.design, statement_sha256=grant.statement_sha256, revoked_by=name,
                revoked_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), public_key=public_key_of(key).hex())
            try:
                request.statement, signature = grant_rules.sign_statement(key, statement)
            except InvalidArgument as exc:
                raise UsageError(f"cannot sign the revocation: {exc}") from exc
            request.signature = signature.hex()
        # Without a key the request goes unsigned and the hub says why it refuses (and how to make a key).
        revoked = hub.call(stub.RevokeGrant, request)
    emit(args, _grant_doc(revoked),
         lambda d: f"grant {d['id']} of {d['design']} revoked at {d['revoked_at']} by {d['revoked_by']} (signed by key "
                   f"{d['revocation_key_fingerprint']}); orders placed before stay valid")
    return EXIT_OK


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
            "key_fingerprint": grant.key_fingerprint, "signature_ok": _signature_ok(grant),
            "revoked": bool(grant.revoked_at), "revoked_at": grant.revoked_at, "revoked_by": grant.revoked_by,
            "revocation": grant.revocation, "revocation_signature": grant.revocation_signature,
            "revocation_key_fingerprint": grant.revocation_key_fingerprint,
            "revocation_ok": _revocation_ok(grant) if grant.revoked_at else None}


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


def _revocation_ok(grant: orders_pb2.GrantRecord) -> bool:
    """Whether the revocation's signature matches it and it names this very grant (its statement's hash)."""
    try:
        revocation = grant_rules.parse_revocation(grant.revocation)
        verify_strict(grant_rules.statement_key(revocation), grant.revocation.encode("utf-8"),
                      bytes.fromhex(grant.revocation_signature))
    except (InvalidArgument, ValueError):
        return False
    return (revocation.grant_id, revocation.design, revocation.statement_sha256, revocation.revoked_by,
            revocation.revoked_at) == (grant.id, grant.design, grant.statement_sha256, grant.revoked_by, grant.revoked_at)


def _line(d: dict[str, Any]) -> str:
    signed = f"signed by key {d['key_fingerprint']}" if d["signature_ok"] else "signature NOT valid"
    revision = f"@{d['revision_id'][:12]}" if d["revision_id"] else ""
    line = (f"{d['id']}  {d['scope']} of {d['design']}{revision} on {d['node'] or 'any node'} until {d['until']}, "
            f"by {d['granted_by']} at {d['granted_at']}, {signed}")
    if d["revoked"]:
        valid = f"signed by key {d['revocation_key_fingerprint']}" if d["revocation_ok"] else "revocation NOT valid"
        line += f"; REVOKED at {d['revoked_at']} by {d['revoked_by']}, {valid}"
    return line
