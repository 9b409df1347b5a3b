"""``spime verify DESIGN | --bundle DIR [--hub-key KEY]``: re-check every hash and signature of a chain.

A signature counts only when its key was registered to the revision's author
at the revision's time, as the hub's own key attests. Offline, that hub key is
*pinned* (``--hub-key`` hex or a file holding it, or SPIME_HUB_KEY): a bundle
re-signed by anyone else, or carrying another hub key, fails.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from hub.bundle import MAX_BUNDLE_BYTES, MAX_DEPTH
from hub.client.chain import (
    collect_chain,
    collect_keys,
    read_bundle,
    remote_blob_hasher,
    verify_revisions,
)
from hub.client.common import (
    EXIT_OK,
    EXIT_REFUSED,
    ClientError,
    UsageError,
    add_hub_command,
    emit,
    env_or,
    log,
)
from hub.client.connection import opened
from hub.client.local import read_local_file
from hub.errors import HubError
from hub.keys import KeyRegistration, fingerprint
from hub.manifest import parse_manifest
from hub.provenance import registered_authorship

__all__ = ["pinned_hub_key", "register", "run"]

_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}\Z")
_MAX_KEY_FILE_BYTES = 4096


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``spime verify``."""
    p = add_hub_command(
        subparsers, "verify", "re-check every revision id, file hash and signature of a design", run,
        description="Online against a hub, or offline on an exported bundle (--bundle) with the hub's "
                    "key pinned (--hub-key). A signature counts only with a key the hub registered to the "
                    f"revision's author at its time. bundle.json is read up to {MAX_BUNDLE_BYTES >> 20} MiB, "
                    f"nested at most {MAX_DEPTH} deep.")
    p.add_argument("design", nargs="?", help="design slug (online)")
    p.add_argument("--bundle", type=Path, help="verify an exported bundle directory offline")
    p.add_argument("--hub-key", default=None, metavar="KEY",
                   help="the hub's public key (64 hex digits, or a file holding them; env SPIME_HUB_KEY): "
                        "`spime-hub key show` on the hub, or `spime key hub`")


def pinned_hub_key(value: str) -> bytes | None:
    """The pinned hub key from hex or a file holding hex; None when not given.

    Raises:
        UsageError: neither 64 hex digits nor a readable file holding them (a regular file of
            at most 4 KiB).
    """
    if not value:
        return None
    text = value.strip()
    if not _HEX_KEY.match(text):
        data = read_local_file(Path(value), _MAX_KEY_FILE_BYTES, "the hub key file")
        if data is None:
            raise UsageError(f"--hub-key {value[:80]!r} is neither 64 hex digits nor a readable key file")
        text = data.decode("ascii", errors="replace").strip()
        if not _HEX_KEY.match(text):
            raise UsageError(f"{value[:80]} does not hold a hub key (64 hex digits)")
    return bytes.fromhex(text)


def run(args: argparse.Namespace) -> int:
    """Verify and report; exit 1 when anything does not match."""
    if bool(args.design) == bool(args.bundle):
        raise UsageError("give either DESIGN or --bundle DIR")
    pinned = pinned_hub_key(env_or(args.hub_key, "SPIME_HUB_KEY"))
    if args.bundle:
        doc = _offline(args.bundle, pinned)
    else:
        with opened(args) as hub:
            info, revisions = collect_chain(hub, args.design)
            hub_key, registrations = collect_keys(hub, revisions)
            trusted = _trusted_key(hub_key, pinned, f"hub {hub.address}")
            doc = _check(info, revisions, remote_blob_hasher(hub), f"hub {hub.address}", trusted, registrations)
    emit(args, doc, _human)
    if not doc["ok"]:
        if not getattr(args, "json", False):
            log(f"spime: verification FAILED: {doc['error']}")
        return EXIT_REFUSED
    return EXIT_OK


def _offline(folder: Path, pinned: bytes | None) -> dict[str, Any]:
    source = str(folder)
    try:
        bundle, lookup = read_bundle(folder)
    except ClientError as exc:
        return {"design": "", "source": source, "revisions": 0, "ok": False, "error": str(exc)}
    signed = sum(1 for r in bundle.revisions if r.get("signature"))
    if pinned is None and signed:
        trusted: bytes | str = (f"{signed} revision(s) are signed, but no hub key is pinned, so nothing proves who "
                                "signed them: pass --hub-key KEY (the hub's admin prints it with `spime-hub key "
                                "show`; `spime key hub` asks the hub)")
    else:
        trusted = _trusted_key(bundle.hub_public_key, pinned, f"bundle {folder}") if pinned else b""
    return _check(bundle.design, list(bundle.revisions), lookup, source, trusted, list(bundle.registrations))


def _trusted_key(claimed: bytes, pinned: bytes | None, where: str) -> bytes | str:
    """The hub key to trust, or why there is none (a message)."""
    if pinned is None:
        return claimed
    if claimed != pinned:
        shown = fingerprint(claimed) if claimed else "none"
        return (f"the {where} names hub key {shown}, not the pinned hub key {fingerprint(pinned)}: "
                "it was not exported from that hub, or it was rewritten")
    return pinned


def _check(info: Any, revisions: list[dict[str, Any]], lookup: Any, source: str,
           hub_key: bytes | str, registrations: list[KeyRegistration]) -> dict[str, Any]:
    """Verify; ``hub_key`` is the trusted hub key, b"" for none needed, or why none can be trusted."""
    doc: dict[str, Any] = {"design": info.get("slug", ""), "source": source, "revisions": len(revisions)}
    try:
        authorship = registered_authorship(registrations, hub_key) if isinstance(hub_key, bytes) and hub_key else None
        report = verify_revisions(revisions, lookup, authorship)
    except HubError as exc:
        return {**doc, "ok": False, "error": str(exc)}
    if isinstance(hub_key, str):  # the content holds together, but nothing proves who signed it
        return {**doc, "ok": False, "error": hub_key}
    head = info.get("head_revision_id", "")
    if head and head not in report.revisions:
        return {**doc, "ok": False, "error": f"the head {head[:12]} is not in the chain"}
    signed = set(report.signed)
    signers = {r["id"]: {"author": r["author"], "key": fingerprint(bytes.fromhex(r["public_key"]))}
               for r in revisions if r["id"] in signed}
    doc["design"] = _verified_name(revisions, head or (report.revisions[-1] if report.revisions else ""))
    return {**doc, "ok": True, "error": "", "signed": list(report.signed), "signers": signers,
            "unsigned": list(report.unsigned), "files_checked": report.files_checked,
            "external_parents": list(report.external_parents),
            "hub_key": hub_key.hex() if hub_key else ""}


def _verified_name(revisions: list[dict[str, Any]], head: str) -> str:
    """The design name inside the head revision's manifest, which its id (and signature) covers.

    The bundle's or hub's ``design.slug`` is covered by nothing, so a rewritten bundle could
    claim any name there; the report names only what was verified.
    """
    for revision in revisions:
        if revision["id"] == head:
            try:
                return parse_manifest(revision["manifest_toml"]).name
            except HubError:  # verify_revisions parsed it already; kept for safety
                return ""
    return ""


def _human(doc: dict[str, Any]) -> str:
    if not doc["ok"]:
        return ""
    return (f"{doc['design']}: OK ({doc['source']}): {doc['revisions']} revision(s), "
            f"{doc['files_checked']} file(s), {len(doc['signed'])} signed by their authors' registered keys, "
            f"{len(doc['unsigned'])} unsigned, {len(doc['external_parents'])} external parent(s)")
