"""``spime grant DESIGN --scope paid|modified|any [--node N | --any] --until DATE``: a licensor's grant on record."""

from __future__ import annotations

import argparse

from google.protobuf.json_format import MessageToDict
from spimeforge.v1 import orders_pb2, orders_pb2_grpc

from hub.client.common import EXIT_OK, UsageError, add_hub_command, emit, split_ref
from hub.client.connection import opened

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime grant``."""
    p = add_hub_command(subparsers, "grant", "record a licensor's permission to fabricate (maintainers)", _grant,
                        description="paid: paid orders of an NC design; modified: changed parameters of an ND "
                                    "design; any: both (all-rights-reserved designs need it).")
    p.add_argument("ref", metavar="DESIGN[@REV]")
    p.add_argument("--scope", required=True, choices=("paid", "modified", "any"))
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--node", default="", help="only this node")
    who.add_argument("--any", action="store_true", help="any node")
    p.add_argument("--until", required=True, metavar="YYYY-MM-DD", help="last day it holds (UTC)")
    p.add_argument("--signature", default="", help="hex Ed25519 signature of the statement (optional)")


def _grant(args: argparse.Namespace) -> int:
    design, rev = split_ref(args.ref)
    if args.any and args.node:
        raise UsageError("--node and --any exclude each other")
    with opened(args) as hub:
        grant = hub.call(orders_pb2_grpc.OrdersStub(hub.channel).Grant, orders_pb2.GrantRequest(
            design=design, revision_id=rev, scope=args.scope, node=args.node, until=args.until,
            signature=args.signature))
    emit(args, MessageToDict(grant, preserving_proto_field_name=True),
         lambda _: f"grant {grant.id}: {grant.scope} fabrication of {grant.design} on {grant.node or 'any node'} "
                   f"until {grant.until}, by {grant.granted_by} (statement {grant.statement_sha256[:16]})")
    return EXIT_OK
