"""``spime ledger DESIGN | --node N``: balances and entries of the value ledger."""

from __future__ import annotations

import argparse

from google.protobuf.json_format import MessageToDict
from spimeforge.v1 import records_pb2

from hub.client.common import EXIT_OK, UsageError, add_hub_command, bounded_int, emit
from hub.client.connection import opened

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime ledger``."""
    p = add_hub_command(subparsers, "ledger", "value ledger balances of a design or a node", _ledger,
                        description="The platform's voluntary value equation, never a licence fee.")
    p.add_argument("design", nargs="?", default="")
    p.add_argument("--node", default="")
    p.add_argument("--limit", type=bounded_int(1, 1000), default=100, help="entries to list (max 1000)")


def _ledger(args: argparse.Namespace) -> int:
    if bool(args.design) == bool(args.node):
        raise UsageError("give a DESIGN or --node NAME (one of them)")
    with opened(args) as hub:
        reply = hub.call(hub.records.GetLedger, records_pb2.LedgerRequest(
            design=args.design, node=args.node, limit=args.limit))
    doc = MessageToDict(reply, preserving_proto_field_name=True)
    lines = [f"{b.recipient}: {b.total.minor_units / 100:.2f} {b.total.currency}" for b in reply.balances]
    lines += [f"  {e.order_id} {e.share} → {e.recipient}: {e.amount.minor_units / 100:.2f} {e.amount.currency} "
              f"({e.explanation})" for e in reply.entries]
    emit(args, doc, lambda _: "\n".join(lines) or "no ledger entries")
    return EXIT_OK
