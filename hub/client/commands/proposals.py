"""``spime proposals``, ``accept`` and ``decline``: maintainers review pushes by others."""

from __future__ import annotations

import argparse

from spimeforge.v1 import common_pb2, designs_pb2

from hub.client import convert
from hub.client.common import EXIT_OK, add_hub_command, emit
from hub.client.connection import opened

__all__ = ["register", "run_accept", "run_decline", "run_list"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime proposals``, ``accept`` and ``decline``."""
    p = add_hub_command(subparsers, "proposals", "list a design's proposals", run_list)
    p.add_argument("design")
    p.add_argument("--all", action="store_true", help="include accepted and declined ones")
    p = add_hub_command(subparsers, "accept", "accept a proposal: it becomes the head", run_accept)
    p.add_argument("design")
    p.add_argument("proposal")
    p = add_hub_command(subparsers, "decline", "decline a proposal with a reason", run_decline)
    p.add_argument("design")
    p.add_argument("proposal")
    p.add_argument("--reason", required=True, help="why (shown to the author)")



def run_list(args: argparse.Namespace) -> int:
    """List proposals."""
    proposals: list[designs_pb2.Proposal] = []
    token = ""
    with opened(args) as hub:
        while True:  # the hub pages its answer (at most 500 proposals and 4 MiB a page)
            resp = hub.call(hub.designs.ListProposals, designs_pb2.ListProposalsRequest(
                design=args.design, include_closed=args.all, page=common_pb2.PageRequest(page_size=500, page_token=token)))
            proposals += resp.proposals
            token = resp.next_page_token
            if not token:
                break
    doc = {"design": args.design, "proposals": [convert.proposal(p) for p in proposals]}
    emit(args, doc, lambda d: "\n".join(
        f"{p['id']}  {p['state']:<9} {p['author']:<12} {p['revision']['id'][:12]}  "
        f"{p['revision']['message']}" for p in d["proposals"]) or "no proposals")
    return EXIT_OK


def run_accept(args: argparse.Namespace) -> int:
    """Accept a proposal."""
    with opened(args) as hub:
        resp = hub.call(hub.designs.AcceptProposal, designs_pb2.AcceptProposalRequest(
            design=args.design, proposal_id=args.proposal))
    doc = {"proposal": convert.proposal(resp.proposal), "design": convert.design(resp.design)}
    emit(args, doc, lambda d: f"accepted {d['proposal']['id']}: {d['design']['slug']} head is "
                              f"now {d['design']['head_revision_id'][:12]}")
    return EXIT_OK


def run_decline(args: argparse.Namespace) -> int:
    """Decline a proposal."""
    with opened(args) as hub:
        resp = hub.call(hub.designs.DeclineProposal, designs_pb2.DeclineProposalRequest(
            design=args.design, proposal_id=args.proposal, reason=args.reason))
    doc = convert.proposal(resp)
    emit(args, doc, lambda d: f"declined {d['id']}: {d['reason']}")
    return EXIT_OK
