"""``spime verify DESIGN | --bundle DIR``: re-check every hash and signature of a chain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hub.client.chain import collect_chain, read_bundle, remote_blob_hasher, verify_revisions
from hub.client.common import (
    EXIT_OK,
    EXIT_REFUSED,
    UsageError,
    add_hub_command,
    emit,
    log,
)
from hub.client.connection import opened
from hub.errors import HubError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime verify``."""
    p = add_hub_command(
        subparsers, "verify", "re-check every revision id, file hash and signature of a design", run,
        description="Online against a hub, or offline on an exported bundle (--bundle).")
    p.add_argument("design", nargs="?", help="design slug (online)")
    p.add_argument("--bundle", type=Path, help="verify an exported bundle directory offline")


def run(args: argparse.Namespace) -> int:
    """Verify and report; exit 1 when anything does not match."""
    if bool(args.design) == bool(args.bundle):
        raise UsageError("give either DESIGN or --bundle DIR")
    if args.bundle:
        info, revisions, lookup = read_bundle(args.bundle)
        source = str(args.bundle)
        doc = _check(info, revisions, lookup, source)
    else:
        with opened(args) as hub:
            info, revisions = collect_chain(hub, args.design)
            doc = _check(info, revisions, remote_blob_hasher(hub), f"hub {hub.address}")
    emit(args, doc, _human)
    if not doc["ok"]:
        if not getattr(args, "json", False):
            log(f"spime: verification FAILED: {doc['error']}")
        return EXIT_REFUSED
    return EXIT_OK


def _check(info: dict[str, Any], revisions: list[dict[str, Any]], lookup: Any,
           source: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"design": info.get("slug", ""), "source": source,
                           "revisions": len(revisions)}
    try:
        report = verify_revisions(revisions, lookup)
    except HubError as exc:
        return {**doc, "ok": False, "error": str(exc)}
    head = info.get("head_revision_id", "")
    if head and head not in report.revisions:
        return {**doc, "ok": False, "error": f"the head {head[:12]} is not in the chain"}
    return {**doc, "ok": True, "error": "", "signed": list(report.signed),
            "unsigned": list(report.unsigned), "files_checked": report.files_checked,
            "external_parents": list(report.external_parents)}


def _human(doc: dict[str, Any]) -> str:
    if not doc["ok"]:
        return ""
    return (f"{doc['design']}: OK ({doc['source']}): {doc['revisions']} revision(s), "
            f"{doc['files_checked']} file(s), {len(doc['signed'])} signed, "
            f"{len(doc['unsigned'])} unsigned, {len(doc['external_parents'])} external parent(s)")
