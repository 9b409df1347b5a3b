"""Collect a design's revision chain from a hub, and read/write offline bundles.

A bundle is a directory: ``bundle.json`` (the design, every revision, and the
hub-signed key registrations of every signer; see :mod:`hub.bundle`) and
``blobs/<sha256>`` (every file's bytes). ``spime verify --bundle`` checks it
without a hub, against a pinned hub key.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spimeforge.v1 import accounts_pb2, designs_pb2

from hub.bundle import BUNDLE_FORMAT, MAX_BUNDLE_BYTES, Bundle, bundle_document, parse_bundle
from hub.client import convert
from hub.client.common import ClientError, HubRefused
from hub.client.connection import Hub
from hub.client.download import download_blob
from hub.client.local import read_local_file
from hub.errors import HubError
from hub.keys import KeyRegistration
from hub.provenance import AuthorshipCheck, ChainReport, verify_chain

__all__ = [
    "BUNDLE_FORMAT",
    "collect_chain",
    "collect_keys",
    "read_bundle",
    "remote_blob_hasher",
    "verify_revisions",
    "write_bundle",
]


def collect_chain(hub: Hub, design: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The design and every revision reachable from its head within the design.

    Parents in other designs (a fork's upstream) are left out and reported as
    external by the verifier.

    Raises:
        HubRefused: the design does not exist or access is refused.
    """
    info = convert.design(hub.call(hub.designs.GetDesign,
                                   designs_pb2.GetDesignRequest(design=design)))
    resp = hub.call(hub.designs.Log, designs_pb2.LogRequest(design=design))
    revs = {r.id: convert.revision(r) for r in resp.revisions}
    pending = [p for r in list(revs.values()) for p in r["parent_ids"] if p not in revs]
    while pending:
        rid = pending.pop()
        if rid in revs:
            continue
        rev = _maybe_revision(hub, design, rid)
        if rev is not None:
            revs[rid] = rev
            pending.extend(p for p in rev["parent_ids"] if p not in revs)
    return info, list(revs.values())


def _maybe_revision(hub: Hub, design: str, rid: str) -> dict[str, Any] | None:
    try:
        msg = hub.call(hub.designs.GetRevision,
                       designs_pb2.GetRevisionRequest(design=design, revision_id=rid))
    except HubRefused as exc:
        if exc.code_name == "NOT_FOUND":
            return None
        raise
    return convert.revision(msg)


def collect_keys(hub: Hub, revisions: list[dict[str, Any]]) -> tuple[bytes, list[KeyRegistration]]:
    """The hub's public key and the registrations of every account that signed a revision.

    Raises:
        HubRefused: the hub refused a call (an author the hub no longer knows is skipped).
    """
    hub_key = bytes(hub.call(hub.accounts.GetHubKey, accounts_pb2.GetHubKeyRequest()).public_key)
    found: list[KeyRegistration] = []
    for author in sorted({r["author"] for r in revisions if r.get("signature")}):
        try:
            resp = hub.call(hub.accounts.ListKeys, accounts_pb2.ListKeysRequest(account=author))
        except HubRefused as exc:
            if exc.code_name in ("NOT_FOUND", "INVALID_ARGUMENT"):
                continue
            raise
        found.extend(KeyRegistration(k.account, bytes(k.public_key), k.registered_at, k.revoked_at,
                                     bytes(k.hub_signature), k.as_of) for k in resp.keys)
    return hub_key, found


def verify_revisions(revisions: list[dict[str, Any]], blobs: Callable[[str], str | None] | None,
                     authorship: AuthorshipCheck | None = None) -> ChainReport:
    """Check every id, signature and (with ``blobs``) file hash of the revisions.

    Args:
        revisions: revision dicts.
        blobs: see :func:`hub.provenance.verify_chain`.
        authorship: proves each signer was the author (:func:`hub.provenance.registered_authorship`).

    Raises:
        IntegrityError: the first thing that does not match.
    """
    return verify_chain([convert.chain_link(r) for r in revisions], blobs, authorship)


def remote_blob_hasher(hub: Hub) -> Callable[[str], str | None]:
    """A blob lookup that streams each blob from the hub and hashes it (cached)."""
    cache: dict[str, str | None] = {}

    def lookup(sha256: str) -> str | None:
        if sha256 not in cache:
            cache[sha256] = _hash_remote(hub, sha256)
        return cache[sha256]

    return lookup


def _hash_remote(hub: Hub, sha256: str) -> str | None:
    digest = hashlib.sha256()
    request = designs_pb2.DownloadBlobRequest(sha256=sha256)
    try:
        with hub.errors():
            for chunk in hub.designs.DownloadBlob(request, metadata=hub.metadata, timeout=3600):
                digest.update(chunk.data)
    except HubRefused as exc:
        if exc.code_name == "NOT_FOUND":
            return None
        raise
    return digest.hexdigest()


def write_bundle(hub: Hub, design: str, out: Path) -> dict[str, Any]:
    """Export a design's chain with every blob into the directory ``out``.

    The bundle is written into a hidden folder beside ``out``, renamed to ``out`` when
    complete and removed when the export fails or is interrupted: ``out`` never holds half
    a bundle, and running the export again starts afresh.

    Raises:
        ClientError: ``out`` exists and is not an empty directory, names no folder of its
            own (``.``, ``/``), or a blob is corrupted.
        HubRefused: the hub refused a call.
    """
    if out.name in ("", ".", ".."):
        raise ClientError(f"{out} names no folder of its own; give the bundle a new folder name")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ClientError(f"{out} exists and is not an empty directory; choose a new path")
    info, revisions = collect_chain(hub, design)
    hub_key, registrations = collect_keys(hub, revisions)
    blobs = {f["sha256"]: int(f["size"]) for r in revisions for f in r["files"]}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    (staging / "blobs").mkdir(parents=True)  # a new folder: never one left there, nor through a link
    try:
        for sha, size in sorted(blobs.items()):
            download_blob(hub, sha, size, staging / "blobs" / sha)
        doc = bundle_document(info, revisions, hub_key, registrations)
        (staging / "bundle.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(staging, out)  # over nothing, or over the empty folder checked above
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"design": design, "output": str(out), "revisions": len(revisions),
            "blobs": len(blobs), "bytes": sum(blobs.values()), "hub_public_key": hub_key.hex(),
            "key_registrations": len(registrations)}


def read_bundle(folder: Path) -> tuple[Bundle, Callable[[str], str | None]]:
    """Load a bundle (bounded, type-checked) and a lookup hashing ``blobs/<sha>``.

    Raises:
        ClientError: the bundle is missing, too big, or malformed (the message says where).
    """
    path = folder / "bundle.json"
    data = read_local_file(path, MAX_BUNDLE_BYTES, "the bundle document")
    if data is None:
        raise ClientError(f"{folder} is not a bundle (it has no bundle.json)")
    try:
        bundle = parse_bundle(data)
    except HubError as exc:
        raise ClientError(f"{path} is not a valid bundle: {exc}") from exc

    def lookup(sha256: str) -> str | None:
        path = folder / "blobs" / sha256
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256) or not path.is_file():
            return None
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    return bundle, lookup
