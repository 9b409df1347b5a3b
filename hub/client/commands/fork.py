"""``spime fork DESIGN[@REV] [DESIGN2[@REV]…] --name NEW``: fork or remix under the license rules."""

from __future__ import annotations

import argparse
from typing import Any

from spimeforge.v1 import designs_pb2

from hub.client import convert
from hub.client.common import EXIT_OK, add_hub_command, emit, split_ref
from hub.client.connection import opened

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime fork``."""
    p = add_hub_command(
        subparsers, "fork", "fork a design, or remix several, into a new design", run,
        description="The hub applies the license rules: ND designs cannot be forked, and the "
                    "new license must be one every parent allows.")
    p.add_argument("parents", nargs="+", metavar="DESIGN[@REV]", help="parent design(s)")
    p.add_argument("--name", required=True, help="slug of the new design")
    p.add_argument("--license", default="", help="SPDX license of the new design "
                   "(default: the parent's; required for a remix of several)")
    p.add_argument("--title", default="", help="title of the new design")
    p.add_argument("-m", "--message", default="", help="why you fork")


def run(args: argparse.Namespace) -> int:
    """Ask the hub to fork."""
    parents = [designs_pb2.ForkParent(design=d, revision_id=r)
               for d, r in (split_ref(ref) for ref in args.parents)]
    request = designs_pb2.ForkRequest(parents=parents, name=args.name, license=args.license,
                                      message=args.message, title=args.title)
    with opened(args) as hub:
        resp = hub.call(hub.designs.Fork, request)
    doc = {"design": convert.design(resp.design), "revision": convert.revision(resp.revision)}
    emit(args, doc, _human)
    return EXIT_OK


def _human(doc: dict[str, Any]) -> str:
    d = doc["design"]
    lines = [f"created {d['slug']} ({d['license']}) at {doc['revision']['id'][:12]}"]
    lines += [f"attribution: {a['notice']}" for a in d["attributions"]]
    return "\n".join(lines)
