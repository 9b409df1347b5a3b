"""``spime key gen|show|register|list|revoke|rotate|hub``: your Ed25519 signing key and the hub's record of it.

A push's signature counts only with a key registered to your account at the
revision's time, so ``gen`` is followed by ``register``. ``rotate`` makes a new
key, registers it and revokes the old one from a date on (now by default).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from spimeforge.v1 import accounts_pb2

from hub.client.common import (
    EXIT_OK,
    HubRefused,
    UsageError,
    add_hub_options,
    add_json_option,
    emit,
    log,
)
from hub.client.connection import Hub, opened
from hub.client.local import default_key_path, load_key
from hub.keys import fingerprint, prove_possession
from hub.localfiles import not_replaceable, replacing
from hub.provenance import generate_private_key, public_key_of

__all__ = ["register", "register_key", "run_gen", "run_hub", "run_list", "run_register", "run_revoke", "run_rotate",
           "run_show"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime key`` and its actions."""
    p = subparsers.add_parser("key", help="your Ed25519 signing key and its registration with the hub")
    sub = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    gen = sub.add_parser("gen", help="make a key (then `spime key register` it)")
    gen.add_argument("--force", action="store_true", help="replace an existing key")
    show = sub.add_parser("show", help="print the public key")
    reg = sub.add_parser("register", help="register your key with the hub (signatures count from now on)")
    lst = sub.add_parser("list", help="the keys registered to an account")
    lst.add_argument("account", nargs="?", default="", help="account (default: yours)")
    rev = sub.add_parser("revoke", help="revoke a key from a date on (signatures after it stop counting)")
    rev.add_argument("fingerprint", help="32 hex digits, as `spime key list` shows")
    rev.add_argument("--account", default="", help="another account's key (admins only: a leaked key)")
    rot = sub.add_parser("rotate", help="make a new key, register it, revoke the old one")
    hub = sub.add_parser("hub", help="the hub's own public key (pin it for `spime verify --bundle`)")
    for q in (rev, rot):
        q.add_argument("--at", default="", metavar="TIME",
                       help="revocation time, RFC 3339 UTC like 2026-01-31T12:00:00Z (default: now)")
    for q in (gen, show, reg, rot):
        q.add_argument("--key", default=None, help="key file (default $SPIME_KEY or ~/.config/spimeforge/key)")
    for q in (reg, lst, rev, rot, hub):
        add_hub_options(q)
    funcs = ((gen, run_gen), (show, run_show), (reg, run_register), (lst, run_list), (rev, run_revoke),
             (rot, run_rotate), (hub, run_hub))
    for q, func in funcs:
        add_json_option(q)
        q.set_defaults(func=func)


def _write_key(path: Path, key: bytes) -> None:
    if problem := not_replaceable(path):
        raise UsageError(f"cannot write the key there: {problem}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with replacing(path, mode=0o600) as fh:  # created 0600: never readable by others, not even for a moment
        fh.write(key.hex().encode("ascii") + b"\n")


def _require_key(path: Path) -> bytes:
    key = load_key(path)
    if key is None:
        raise UsageError(f"no key at {path}: make one with `spime key gen`")
    return key


def run_gen(args: argparse.Namespace) -> int:
    """Write a new key, readable only by its owner (0600)."""
    path = default_key_path(args.key)
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists (use --force to replace it)")
    key = generate_private_key()
    _write_key(path, key)
    doc = {"path": str(path), "public_key": public_key_of(key).hex(), "fingerprint": fingerprint(public_key_of(key))}
    emit(args, doc, lambda d: f"wrote {d['path']}; public key {d['public_key']}\n"
                              "register it with the hub: spime key register")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """Print the public key of the key file."""
    path = default_key_path(args.key)
    public = public_key_of(_require_key(path))
    doc = {"path": str(path), "public_key": public.hex(), "fingerprint": fingerprint(public)}
    emit(args, doc, lambda d: d["public_key"])
    return EXIT_OK


def _registration(msg: accounts_pb2.KeyRegistration) -> dict[str, Any]:
    return {"account": msg.account, "public_key": msg.public_key.hex(), "fingerprint": msg.fingerprint,
            "registered_at": msg.registered_at, "revoked_at": msg.revoked_at, "as_of": msg.as_of,
            "hub_signature": msg.hub_signature.hex()}


def _whoami(hub: Hub) -> str:
    name: str = hub.call(hub.accounts.WhoAmI, accounts_pb2.WhoAmIRequest()).name
    return name


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_key(hub: Hub, key: bytes) -> dict[str, Any]:
    """Register a private key's public half to the caller's account (proof of possession included).

    Raises:
        HubRefused: the hub refused (weak key, already registered, clock too far off).
    """
    hub_key = hub.call(hub.accounts.GetHubKey, accounts_pb2.GetHubKeyRequest()).public_key
    signed_at = _now()
    public, proof = prove_possession(key, _whoami(hub), signed_at, hub_key)
    request = accounts_pb2.RegisterKeyRequest(public_key=public, signed_at=signed_at, proof=proof)
    return _registration(hub.call(hub.accounts.RegisterKey, request))


def _human_reg(d: dict[str, Any]) -> str:
    state = f"revoked from {d['revoked_at']}" if d["revoked_at"] else "live"
    return f"{d['fingerprint']}  {d['account']}  registered {d['registered_at']}  {state}"


def run_register(args: argparse.Namespace) -> int:
    """Register the key file's public key with the hub."""
    key = _require_key(default_key_path(args.key))
    with opened(args) as hub:
        doc = register_key(hub, key)
    emit(args, doc, lambda d: "registered " + _human_reg(d))
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    """List the keys registered to an account."""
    with opened(args) as hub:
        resp = hub.call(hub.accounts.ListKeys, accounts_pb2.ListKeysRequest(account=args.account))
        account = args.account or _whoami(hub)
    doc = {"account": account, "hub_public_key": resp.hub_public_key.hex(),
           "keys": [_registration(k) for k in resp.keys]}
    emit(args, doc, lambda d: "\n".join(_human_reg(k) for k in d["keys"]) or "no keys registered")
    return EXIT_OK


def _revoke(hub: Hub, fp: str, at: str, account: str = "") -> dict[str, Any]:
    request = accounts_pb2.RevokeKeyRequest(fingerprint=fp, effective_at=at, account=account)
    return _registration(hub.call(hub.accounts.RevokeKey, request))


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke one of your keys from ``--at`` (default now) on."""
    with opened(args) as hub:
        doc = _revoke(hub, args.fingerprint, args.at, args.account)
    emit(args, doc, lambda d: "revoked " + _human_reg(d))
    return EXIT_OK


def run_rotate(args: argparse.Namespace) -> int:
    """New key: register it, keep the old file beside it, revoke the old key from ``--at``."""
    path = default_key_path(args.key)
    old = _require_key(path)
    new = generate_private_key()
    old_fp = fingerprint(public_key_of(old))
    with opened(args) as hub:
        registered = register_key(hub, new)
        backup = path.with_name(f"{path.name}.{old_fp}.old")
        _write_key(backup, old)
        _write_key(path, new)
        try:
            revoked: dict[str, Any] | None = _revoke(hub, old_fp, args.at)
        except HubRefused as exc:
            if exc.code_name != "NOT_FOUND":
                log(f"spime: the new key is registered and in {path}, but revoking {old_fp} failed; "
                    f"run `spime key revoke {old_fp}`")
                raise
            revoked = None  # the old key was never registered: nothing to revoke
    doc = {"path": str(path), "old_key_file": str(backup), "registered": registered, "revoked": revoked}
    emit(args, doc, lambda d: f"new key {d['registered']['fingerprint']} registered; "
                              + (f"old key {old_fp} revoked from {d['revoked']['revoked_at']}"
                                 if d["revoked"] else f"old key {old_fp} was not registered"))
    return EXIT_OK


def run_hub(args: argparse.Namespace) -> int:
    """Print the hub's public key: pin it (`spime verify --bundle B --hub-key KEY`)."""
    with opened(args) as hub:
        resp = hub.call(hub.accounts.GetHubKey, accounts_pb2.GetHubKeyRequest())
    doc = {"hub": hub.address, "public_key": resp.public_key.hex(), "fingerprint": resp.fingerprint}
    emit(args, doc, lambda d: d["public_key"])
    return EXIT_OK
