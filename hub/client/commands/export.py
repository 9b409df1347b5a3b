"""``spime export DESIGN [--format bundle|prov|okh] -o PATH``."""

from __future__ import annotations

import argparse
from pathlib import Path

from spimeforge.v1 import records_pb2

from hub.client.chain import write_bundle
from hub.client.common import EXIT_OK, UsageError, add_hub_command, emit, split_ref
from hub.client.connection import Hub, opened
from hub.localfiles import not_replaceable, replacing

__all__ = ["register", "run"]

_FORMATS = {"prov": records_pb2.EXPORT_FORMAT_PROV_JSON, "okh": records_pb2.EXPORT_FORMAT_OKH}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime export``."""
    p = add_hub_command(
        subparsers, "export", "export a design: an offline-verifiable bundle, PROV-JSON or OKH", run,
        description="bundle = a directory with every revision's JSON and every blob; "
                    "prov = W3C PROV-JSON of the lineage; okh = an Open Know-How manifest.")
    p.add_argument("ref", metavar="DESIGN[@REV]", help="design (a revision for prov/okh)")
    p.add_argument("--format", choices=("bundle", "prov", "okh"), default="bundle")
    p.add_argument("-o", "--output", type=Path, required=True, help="output path")


def run(args: argparse.Namespace) -> int:
    """Write the export."""
    design, rev = split_ref(args.ref)
    out: Path = args.output
    if args.format != "bundle" and (problem := not_replaceable(out)):
        raise UsageError(f"cannot export there: {problem}")
    with opened(args) as hub:
        if args.format == "bundle":
            doc = write_bundle(hub, design, out)
        else:
            media_type, size = _write_document(hub, records_pb2.ExportRequest(
                design=design, revision_id=rev, format=_FORMATS[args.format]), out)
            doc = {"design": design, "output": str(out), "media_type": media_type, "bytes": size}
    doc["format"] = args.format
    emit(args, doc, lambda d: f"exported {d['design']} as {d['format']} to {d['output']}")
    return EXIT_OK


def _write_document(hub: Hub, request: records_pb2.ExportRequest, out: Path) -> tuple[str, int]:
    """Stream the document to ``out`` (through a temporary file beside it); its media type and size.

    Raises:
        HubRefused: the hub refused the export, or the stream broke off (nothing is left at ``out``).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    media_type, written = "", 0
    with hub.errors(), replacing(out) as fh:
        for chunk in hub.records.Export(request, metadata=hub.metadata, timeout=600):
            media_type = media_type or chunk.media_type
            written += fh.write(chunk.document)
    return media_type, written
