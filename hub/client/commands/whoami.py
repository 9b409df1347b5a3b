"""``spime whoami``: the account the token belongs to."""

from __future__ import annotations

import argparse

from spimeforge.v1 import accounts_pb2

from hub.client.common import EXIT_OK, add_hub_command, emit
from hub.client.connection import opened

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime whoami``."""
    add_hub_command(subparsers, "whoami", "show the account of your token", run)


def run(args: argparse.Namespace) -> int:
    """Ask the hub who we are."""
    with opened(args) as hub:
        acct = hub.call(hub.accounts.WhoAmI, accounts_pb2.WhoAmIRequest())
    doc = {"name": acct.name, "role": accounts_pb2.Role.Name(acct.role).removeprefix("ROLE_").lower(),
           "public_key": acct.public_key}
    emit(args, doc, lambda d: f"{d['name']} ({d['role']})")
    return EXIT_OK
