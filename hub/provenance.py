"""Content hashes, revision ids, signatures and chain verification.

Pure: no I/O. The hub and the offline ``spime verify`` run the same code, so a
bundle exported from one hub can be checked anywhere. A revision id is the
SHA-256 of the canonical JSON document::

    {"author", "created_at", "files": [{"path", "sha256", "size"} sorted by path],
     "manifest", "message", "parents"}

Canonical JSON = sorted keys, no spaces, UTF-8 (non-ASCII kept as is); dates
and times inside the manifest are written in ISO 8601.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub import keys
from hub.domain import FileEntry
from hub.errors import IntegrityError, InvalidArgument
from hub.keys import KeyRegistration

__all__ = [
    "AuthorshipCheck",
    "ChainLink",
    "ChainReport",
    "FileEntry",
    "canonical_json",
    "generate_private_key",
    "public_key_of",
    "registered_authorship",
    "revision_document",
    "revision_id",
    "sha256_hex",
    "sign",
    "verify_chain",
    "verify_signature",
]

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")

BlobLookup = Callable[[str], "bytes | str | None"]


def _json_default(value: object) -> str:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    raise InvalidArgument(f"value {value!r} of type {type(value).__name__} cannot be hashed canonically")


def canonical_json(value: object) -> bytes:
    """Serialise to canonical JSON bytes (sorted keys, no spaces, UTF-8).

    Raises:
        InvalidArgument: the value holds something JSON cannot express.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return text.encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def revision_document(
    parents: Sequence[str],
    manifest: Mapping[str, object],
    files: Sequence[FileEntry],
    author: str,
    created_at: str,
    message: str,
) -> dict[str, object]:
    """The document whose hash is the revision id (files sorted by path)."""
    ordered = sorted(files, key=lambda f: f.path)
    return {
        "parents": list(parents),
        "manifest": dict(manifest),
        "files": [{"path": f.path, "sha256": f.sha256, "size": int(f.size)} for f in ordered],
        "author": author,
        "created_at": created_at,
        "message": message,
    }


def revision_id(
    parents: Sequence[str],
    manifest: Mapping[str, object],
    files: Sequence[FileEntry],
    author: str,
    created_at: str,
    message: str,
) -> str:
    """The id of a revision: SHA-256 hex of its canonical document.

    Raises:
        InvalidArgument: the manifest holds a value JSON cannot express.
    """
    doc = revision_document(parents, manifest, files, author, created_at, message)
    return sha256_hex(canonical_json(doc))


def generate_private_key() -> bytes:
    """A new raw 32-byte Ed25519 private key."""
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def public_key_of(private_key_bytes: bytes) -> bytes:
    """The raw 32-byte public key of a raw Ed25519 private key.

    Raises:
        InvalidArgument: the private key is not 32 bytes.
    """
    from cryptography.hazmat.primitives import serialization

    key = _private_key(private_key_bytes).public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _private_key(private_key_bytes: bytes) -> Ed25519PrivateKey:
    if len(private_key_bytes) != 32:
        raise InvalidArgument(f"an Ed25519 private key has 32 bytes, got {len(private_key_bytes)}")
    return Ed25519PrivateKey.from_private_bytes(private_key_bytes)


def sign(private_key_bytes: bytes, revision_id: str) -> bytes:
    """Sign a revision id (its ASCII hex) with a raw Ed25519 private key.

    Raises:
        InvalidArgument: the key is not a raw 32-byte Ed25519 key.
    """
    return _private_key(private_key_bytes).sign(revision_id.encode("ascii"))


def verify_signature(public_key: bytes, revision_id: str, signature: bytes) -> None:
    """Check an Ed25519 signature over a revision id, strictly (see :mod:`hub.keys`).

    This proves only that the key signed; :func:`registered_authorship` proves
    that the key was the author's.

    Raises:
        IntegrityError: a malformed or weak key, a non-canonical signature, or a mismatch.
    """
    if len(public_key) != 32:
        raise IntegrityError(f"revision {revision_id[:12]}: public key must be 32 raw bytes, got {len(public_key)}")
    keys.verify_strict(public_key, revision_id.encode("ascii"), signature,
                       what=f"revision {revision_id[:12]}: signature")


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One revision as needed for verification.

    Attributes:
        id: the claimed revision id.
        parents: parent revision ids (first parent = previous head).
        manifest: the parsed spime.toml as a dict (``Manifest.to_dict()``).
        files: the revision's files.
        author, created_at, message: as hashed.
        signature: Ed25519 signature over the id, or empty when unsigned.
        public_key: the signer's raw key, or empty.
    """

    id: str
    parents: tuple[str, ...]
    manifest: Mapping[str, object]
    files: tuple[FileEntry, ...]
    author: str
    created_at: str
    message: str
    signature: bytes = b""
    public_key: bytes = b""


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What verify_chain checked."""

    revisions: tuple[str, ...]
    signed: tuple[str, ...]
    unsigned: tuple[str, ...]
    files_checked: int
    external_parents: tuple[str, ...] = field(default=())


AuthorshipCheck = Callable[[ChainLink], None]


def registered_authorship(registrations: Iterable[KeyRegistration], hub_public_key: bytes) -> AuthorshipCheck:
    """A check that a signed link's key was registered to its author when it was made.

    Every registration a signed link relies on must carry the hub key's
    signature; give the *pinned* hub key here, never one read from the bundle
    being checked.

    Raises:
        IntegrityError: two registrations name one key (the returned check raises
            IntegrityError for a link whose key is unregistered, registered to
            someone else, not live at the link's time, not vouched for by the hub as of a
            moment at or after it (KeyRegistration.vouched_at), or not signed by the hub).
    """
    by_key: dict[bytes, KeyRegistration] = {}
    for reg in registrations:
        if by_key.setdefault(reg.public_key, reg) != reg:
            raise IntegrityError(f"key {reg.fingerprint} has two different registrations")
    verified: set[bytes] = set()  # each used registration is checked once; unused ones cost nothing

    def check(link: ChainLink) -> None:
        reg = by_key.get(link.public_key)
        where = f"revision {link.id[:12]}: the signing key {keys.fingerprint(link.public_key)}"
        if reg is None:
            raise IntegrityError(f"{where} has no registration signed by the hub: it is not {link.author}'s key")
        if reg.public_key not in verified:
            keys.verify_registration(hub_public_key, reg)
            verified.add(reg.public_key)
        if reg.account != link.author:
            raise IntegrityError(f"{where} is registered to {reg.account}, not to the author {link.author}")
        if not reg.valid_at(link.created_at):
            span = f"from {reg.registered_at}" + (f" until {reg.revoked_at}" if reg.revoked_at else "")
            raise IntegrityError(f"{where} counts only {span}, not at {link.created_at}")
        if not reg.vouched_at(link.created_at):
            vouched = f"as of {reg.as_of}" if reg.as_of else "with no as-of time (a bundle of before 2026-12-03)"
            raise IntegrityError(f"{where}: the hub vouched for it {vouched}, which proves nothing of a revision "
                                 f"made at {link.created_at}: export the bundle again, or verify against the hub "
                                 "(after that moment, for a revision dated ahead of the hub's clock)")

    return check


def _check_link(link: ChainLink) -> None:
    computed = revision_id(link.parents, link.manifest, link.files, link.author, link.created_at, link.message)
    if computed != link.id:
        raise IntegrityError(
            f"revision {link.id[:12]}: content hashes to {computed[:12]}, so its manifest, files, "
            "parents, author, time or message were altered"
        )
    if link.signature or link.public_key:
        verify_signature(link.public_key, link.id, link.signature)


def _check_file(link: ChainLink, entry: FileEntry, lookup: BlobLookup) -> None:
    found = lookup(entry.sha256)
    if found is None:
        raise IntegrityError(f"revision {link.id[:12]}: file {entry.path} ({entry.sha256[:12]}) is missing")
    if isinstance(found, bytes):
        if len(found) != entry.size:
            raise IntegrityError(
                f"revision {link.id[:12]}: file {entry.path} has {len(found)} bytes, declared {entry.size}"
            )
        found = sha256_hex(found)
    if found != entry.sha256:
        raise IntegrityError(
            f"revision {link.id[:12]}: file {entry.path} hashes to {found[:12]}, declared {entry.sha256[:12]}"
        )


def verify_chain(revisions: Iterable[ChainLink], blobs: BlobLookup | None = None,
                 authorship: AuthorshipCheck | None = None) -> ChainReport:
    """Re-check every revision id, file hash and signature of a chain.

    Args:
        revisions: the revisions, in any order.
        blobs: given a declared sha256, returns the file's bytes, or the sha256
            of its bytes as actually stored, or None when missing. Without it,
            only ids and signatures are checked.
        authorship: checks that each signed link's key was its author's
            (:func:`registered_authorship`); without it a signature proves only
            that *some* key signed.

    Returns:
        A report of what was checked; parents outside the given set (a fork's
        upstream) are listed as external.

    Raises:
        IntegrityError: the first id, file or signature that does not match.
    """
    links = list(revisions)
    known = {link.id for link in links}
    files_checked = 0
    for link in links:
        _check_link(link)
        if authorship is not None and link.signature:
            authorship(link)
        if blobs is None:
            continue
        for entry in link.files:
            _check_file(link, entry, blobs)
            files_checked += 1
    external = sorted({p for link in links for p in link.parents if p not in known})
    signed = tuple(link.id for link in links if link.signature)
    unsigned = tuple(link.id for link in links if not link.signature)
    return ChainReport(tuple(link.id for link in links), signed, unsigned, files_checked, tuple(external))
