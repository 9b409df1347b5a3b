"""``spime maintainer add DESIGN ACCOUNT``: a maintainer adds another."""

from __future__ import annotations

import argparse

from spimeforge.v1 import designs_pb2

from hub.client import convert
from hub.client.common import EXIT_OK, add_hub_options, add_json_option, emit
from hub.client.connection import opened

__all__ = ["register", "run_add"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime maintainer add``."""
    p = subparsers.add_parser("maintainer", help="manage a design's maintainers")
    sub = p.add_subparsers(dest="maintainer_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="make ACCOUNT a maintainer of DESIGN")
    add.add_argument("design")
    add.add_argument("account")
    add_hub_options(add)
    add_json_option(add)
    add.set_defaults(func=run_add)


def run_add(args: argparse.Namespace) -> int:
    """Add a maintainer."""
    with opened(args) as hub:
        resp = hub.call(hub.designs.AddMaintainer, designs_pb2.AddMaintainerRequest(
            design=args.design, account=args.account))
    doc = convert.design(resp)
    emit(args, doc, lambda d: f"{d['slug']} maintainers: {', '.join(d['maintainers'])}")
    return EXIT_OK
