"""``spime record DESIGN [--json]``: the community record of a design."""

from __future__ import annotations

import argparse
from typing import Any

from google.protobuf.json_format import MessageToDict
from spimeforge.v1 import records_pb2

from hub.client.common import EXIT_OK, add_hub_command, emit
from hub.client.connection import opened

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime record``."""
    p = add_hub_command(subparsers, "record", "a design's community record: lineage, fabrications, ratings, ledger",
                        _record)
    p.add_argument("design")


def _record(args: argparse.Namespace) -> int:
    with opened(args) as hub:
        record = hub.call(hub.records.GetRecord, records_pb2.GetRecordRequest(design=args.design))
    doc = MessageToDict(record, preserving_proto_field_name=True)
    emit(args, doc, lambda _: _text(record))
    return EXIT_OK


def _text(r: Any) -> str:
    rep = r.design_reputation
    lines = [(f"{r.design} ({r.license}): {r.revision_count} revisions, {r.fabrication_count} fabrications, "
             f"participation {r.participation or '-'}"),
             f"  rated {rep.score:.1f}/5 from {rep.count} ratings" if rep.count else "  no ratings yet"]
    lines += [f"  {a.summary}" for a in r.aggregates]
    lines += [f"  contributor {c.name}: {c.revisions} revisions, {c.accepted_proposals} accepted proposals "
              f"({', '.join(c.roles)})" for c in r.contributors]
    lines += [f"  remix {e.child_design} of {e.parent_design}@{e.parent_revision_id[:12]}" for e in r.lineage]
    lines += [f"  {s.name} took part as {s.rung} ({s.contributions})" for s in r.ladder]
    for f in list(r.fabrications)[-10:]:
        lines.append(f"  made {f.finished_at} by {f.node}/{f.printer} ({f.printer_model}) in {f.material}: {f.outcome}, "
                     f"{f.actual_seconds}s (est. {f.estimated_seconds}s), {f.actual_filament_g:.1f} g")
    eq = r.value_equation
    lines.append(f"  value equation v{eq.version}: maker {eq.maker} %, design {eq.design_lineage} % "
                 f"(own {eq.own_revision} %, upstream {eq.upstream} %), commons {eq.commons} %")
    return "\n".join(lines)
