"""``spime key gen`` and ``spime key show``: the Ed25519 signing key."""

from __future__ import annotations

import argparse
import os

from hub.client.common import EXIT_OK, UsageError, add_json_option, emit
from hub.client.local import default_key_path, load_key
from hub.provenance import generate_private_key, public_key_of

__all__ = ["register", "run_gen", "run_show"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime key gen`` and ``spime key show``."""
    p = subparsers.add_parser("key", help="your Ed25519 signing key")
    sub = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    gen = sub.add_parser("gen", help="make a key (pushes are signed once it exists)")
    gen.add_argument("--force", action="store_true", help="replace an existing key")
    show = sub.add_parser("show", help="print the public key")
    for q, func in ((gen, run_gen), (show, run_show)):
        q.add_argument("--key", default=None,
                       help="key file (default $SPIME_KEY or ~/.config/spimeforge/key)")
        add_json_option(q)
        q.set_defaults(func=func)


def run_gen(args: argparse.Namespace) -> int:
    """Write a new key, readable only by its owner (0600)."""
    path = default_key_path(args.key)
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists (use --force to replace it)")
    key = generate_private_key()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex() + "\n")
    os.chmod(path, 0o600)
    doc = {"path": str(path), "public_key": public_key_of(key).hex()}
    emit(args, doc, lambda d: f"wrote {d['path']}; public key {d['public_key']}")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """Print the public key of the key file."""
    path = default_key_path(args.key)
    key = load_key(path)
    if key is None:
        raise UsageError(f"no key at {path}: make one with `spime key gen`")
    doc = {"path": str(path), "public_key": public_key_of(key).hex()}
    emit(args, doc, lambda d: d["public_key"])
    return EXIT_OK
