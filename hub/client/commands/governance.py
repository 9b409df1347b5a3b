"""``spime participation DESIGN RUNG`` and ``spime equation DESIGN …``: what a design's maintainers declare.

How far a design opens up (consume: customers order it; co-design: they set its parameters;
co-create: anyone may propose revisions) and the value equation its paid orders are shared by
(published and versioned on the record; the platform's voluntary policy, never a licence fee).
"""

from __future__ import annotations

import argparse

from google.protobuf.json_format import MessageToDict
from spimeforge.v1 import records_pb2

from hub.client.common import EXIT_OK, add_hub_command, emit
from hub.client.connection import opened

__all__ = ["register"]

RUNGS = ("consume", "co-design", "co-create")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime participation`` and ``spime equation``."""
    p = add_hub_command(subparsers, "participation", "declare how far a design opens up (maintainers)",
                        _participation)
    p.add_argument("design")
    p.add_argument("rung", choices=RUNGS, help="consume: customers order it; co-design: they set its "
                   "parameters; co-create: anyone may propose revisions")
    e = add_hub_command(subparsers, "equation", "publish a new version of a design's value equation (maintainers)",
                        _equation, description="How a paid order's price is shared after its costs, in percent "
                        "(plain decimals that add up to 100): the platform's voluntary policy, never a licence fee.")
    e.add_argument("design")
    e.add_argument("--maker", required=True, help="the node that made the object, e.g. 60")
    e.add_argument("--lineage", required=True, help="the design's lineage, e.g. 25")
    e.add_argument("--commons", required=True, help="the commons fund, e.g. 15")
    e.add_argument("--own", default="70", help="of the lineage's share: the made revision's contributors (70)")
    e.add_argument("--upstream", default="30", help="of the lineage's share: passed to parent designs (30)")


def _participation(args: argparse.Namespace) -> int:
    with opened(args) as hub:
        record = hub.call(hub.records.SetParticipation,
                          records_pb2.SetParticipationRequest(design=args.design, rung=args.rung))
    emit(args, MessageToDict(record, preserving_proto_field_name=True),
         lambda _: f"{record.design}: participation {record.participation}")
    return EXIT_OK


def _equation(args: argparse.Namespace) -> int:
    equation = records_pb2.ValueEquation(design=args.design, maker=args.maker, design_lineage=args.lineage,
                                         commons=args.commons, own_revision=args.own, upstream=args.upstream)
    with opened(args) as hub:
        published = hub.call(hub.records.SetValueEquation, records_pb2.SetValueEquationRequest(equation=equation))
    emit(args, MessageToDict(published, preserving_proto_field_name=True),
         lambda _: (f"{published.design}: value equation v{published.version}: maker {published.maker} %, design "
                    f"{published.design_lineage} % (own {published.own_revision} %, upstream {published.upstream} %), "
                    f"commons {published.commons} %"))
    return EXIT_OK
