"""Shared pieces of the ``spime`` commands: options, output, errors, progress.

Output rule: with ``--json`` a command prints exactly one JSON document on
stdout; otherwise a short human summary. Progress and logs always go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from hub.client.progress import Progress
from hub.client.terminal import shown

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "ClientError",
    "HubRefused",
    "Progress",
    "UsageError",
    "add_hub_command",
    "add_hub_options",
    "add_json_option",
    "bounded_int",
    "emit",
    "env_or",
    "log",
    "shown",
    "split_ref",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``; anything else is a usage
    error naming the range (the values go into unsigned or bounded request fields)."""
    def number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high}")
        return value

    return number


class ClientError(Exception):
    """Something failed on the client side after the command started (exit 1)."""


class UsageError(ClientError):
    """The command line or local input is wrong; nothing was sent (exit 2)."""


class HubRefused(ClientError):
    """The hub answered with a gRPC error status (exit 1).

    Attributes:
        code_name: the gRPC status name, e.g. ``FAILED_PRECONDITION``.
        details: the hub's message.
        hint: what the user can do next.
    """

    def __init__(self, code_name: str, details: str, hint: str = "") -> None:
        super().__init__(f"{code_name}: {details}")
        self.code_name = code_name
        self.details = details
        self.hint = hint


def add_hub_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--hub``, ``--token`` and ``--ca`` (defaults from SPIME_HUB/SPIME_TOKEN/SPIME_CA)."""
    group = parser.add_argument_group("hub connection")
    group.add_argument("--hub", default=None, help="hub address HOST:PORT (env SPIME_HUB)")
    group.add_argument("--token", default=None, help="bearer token (env SPIME_TOKEN)")
    group.add_argument("--ca", default=None, help="CA certificate file for TLS (env SPIME_CA)")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: print one JSON document on stdout instead of text."""
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def add_hub_command(subparsers: argparse._SubParsersAction, name: str, text: str,  # type: ignore[type-arg]
                    func: Callable[[argparse.Namespace], int],
                    description: str | None = None) -> argparse.ArgumentParser:
    """Add a subcommand that talks to the hub and can print JSON; ``func`` runs it."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=text, description=description or text)
    add_hub_options(parser)
    add_json_option(parser)
    parser.set_defaults(func=func)
    return parser


def emit(args: argparse.Namespace, document: Any, human: Callable[[Any], str]) -> None:
    """Print ``document`` as JSON when ``--json`` was given, else ``shown(human(document))``."""
    if getattr(args, "json", False):
        json.dump(document, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        text = human(document)
        if text:
            print(shown(text))


def log(message: str) -> None:
    """Write a progress or log line to stderr (controls escaped, see :func:`shown`)."""
    print(shown(message), file=sys.stderr, flush=True)


def split_ref(ref: str) -> tuple[str, str]:
    """Split ``DESIGN[@REV]`` into (design, revision or "").

    Raises:
        UsageError: the reference is empty or has an empty part.
    """
    design, _, rev = ref.partition("@")
    if not design or (("@" in ref) and not rev):
        raise UsageError(f"{ref!r} is not DESIGN or DESIGN@REVISION")
    return design, rev


def env_or(value: str | None, name: str) -> str:
    """Return ``value`` if given, else the environment variable ``name`` (or "")."""
    return value if value else os.environ.get(name, "")
