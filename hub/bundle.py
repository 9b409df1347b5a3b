"""The offline bundle document (``bundle.json``): build it, and parse it with bounds. Pure.

A bundle carries a design's revisions and what proves who signed them: the key
registrations of every signer, each signed by the hub's own key. The verifier
pins the hub key (``spime verify --bundle DIR --hub-key KEY``), never trusting
the ``hub_public_key`` written in the bundle itself.

Parsing is bounded, so a hostile bundle gets a clear error, never a traceback
or an exhausted machine: at most :data:`MAX_BUNDLE_BYTES` of JSON nested at
most :data:`MAX_DEPTH` deep, :data:`MAX_REVISIONS` revisions of at most
:data:`MAX_FILES` files, :data:`MAX_REGISTRATIONS` registrations; every hash is
64 lowercase hex digits (so a "hash" can never name a path), every field has its type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.errors import InvalidArgument
from hub.keys import KeyRegistration

__all__ = [
    "BUNDLE_FORMAT",
    "FORMATS",
    "MAX_BUNDLE_BYTES",
    "MAX_DEPTH",
    "MAX_FILES",
    "MAX_REGISTRATIONS",
    "MAX_REVISIONS",
    "Bundle",
    "bundle_document",
    "parse_bundle",
]

BUNDLE_FORMAT = "spimeforge-bundle/2"
FORMATS = ("spimeforge-bundle/1", BUNDLE_FORMAT)  # /1 has no key registrations: signatures are unproven
MAX_BUNDLE_BYTES = 64 << 20
MAX_DEPTH = 32
MAX_REVISIONS = 100_000
MAX_FILES = 10_000
MAX_PARENTS = 64
MAX_REGISTRATIONS = 10_000
MAX_TEXT = 1 << 20  # manifest, message: 1 MiB each
MAX_NAME = 4096     # paths, names, times

_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_HEX = re.compile(r"^(?:[0-9a-f]{2})*\Z")


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed, type-checked bundle.

    Attributes:
        format: the format tag.
        design: the design as exported (slug, head_revision_id, …).
        revisions: revision dicts whose verified fields have their types.
        hub_public_key: the key the bundle *says* signed its registrations (not trusted).
        registrations: the signers' key registrations.
    """

    format: str
    design: Mapping[str, Any]
    revisions: tuple[dict[str, Any], ...]
    hub_public_key: bytes = b""
    registrations: tuple[KeyRegistration, ...] = ()


def bundle_document(design: Mapping[str, Any], revisions: Sequence[Mapping[str, Any]], hub_public_key: bytes,
                    registrations: Sequence[KeyRegistration]) -> dict[str, Any]:
    """The JSON document of a bundle (the caller writes it as bundle.json)."""
    regs = [{"account": r.account, "public_key": r.public_key.hex(), "registered_at": r.registered_at,
             "revoked_at": r.revoked_at, "as_of": r.as_of, "hub_signature": r.hub_signature.hex()}
            for r in registrations]
    return {"format": BUNDLE_FORMAT, "design": dict(design), "revisions": [dict(r) for r in revisions],
            "keys": {"hub_public_key": hub_public_key.hex(), "registrations": regs}}


def parse_bundle(data: bytes) -> Bundle:
    """Parse and type-check bundle.json.

    Raises:
        InvalidArgument: too big, too deep, not JSON, a string UTF-8 cannot encode, or a field
            of the wrong type or form (the message names the field).
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise InvalidArgument(f"bundle.json has {len(data)} bytes; at most {MAX_BUNDLE_BYTES >> 20} MiB are read")
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise InvalidArgument(f"bundle.json is nested more than {MAX_DEPTH} levels deep") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"bundle.json is not JSON: {str(exc)[:200]}") from exc
    _check_tree(doc)
    doc = _dict(doc, "the document")
    fmt = doc.get("format")
    if fmt not in FORMATS:
        raise InvalidArgument(f"format {str(fmt)[:40]!r} is not one of {', '.join(FORMATS)}")
    design = _dict(doc.get("design", {}), "design")
    for name in ("slug", "head_revision_id"):
        _text(design.get(name, ""), f"design.{name}", MAX_NAME)
    if design.get("head_revision_id"):
        _hex64(design["head_revision_id"], "design.head_revision_id")
    revisions = _list(doc.get("revisions"), "revisions", MAX_REVISIONS)
    checked = tuple(_revision(r, f"revisions[{i}]") for i, r in enumerate(revisions))
    hub_key, regs = _keys(doc.get("keys", {"hub_public_key": "", "registrations": []}))
    return Bundle(str(fmt), design, checked, hub_key, regs)


def _check_tree(doc: Any) -> None:
    """Refuse nesting past MAX_DEPTH and any string (key or value) that UTF-8 cannot encode:
    JSON may escape a lone surrogate ("\\ud800"), which breaks hashing and printing later."""
    stack = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidArgument(f"bundle.json is nested more than {MAX_DEPTH} levels deep")
        children = [*value, *value.values()] if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, str):
                _utf8(child)
            elif isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def _utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"bundle.json holds a string that is not valid Unicode ({text[:40]!a}): "
                              "a lone surrogate escape such as \\ud800") from exc


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be a JSON object, not {type(value).__name__}")
    return value


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} must be a JSON list, not {type(value).__name__}")
    if len(value) > limit:
        raise InvalidArgument(f"{where} has {len(value)} entries; at most {limit}")
    return value


def _text(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{where} must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise InvalidArgument(f"{where} is longer than {limit} characters")
    return value


def _hex64(value: Any, where: str) -> str:
    if not _HEX64.match(_text(value, where, 64)):
        raise InvalidArgument(f"{where} {str(value)[:80]!r} is not a SHA-256 (64 lowercase hex digits)")
    return str(value)


def _hex(value: Any, where: str, sizes: tuple[int, ...]) -> bytes:
    text = _text(value, where, 2 * max(sizes))
    if not _HEX.match(text) or len(text) // 2 not in sizes:
        raise InvalidArgument(f"{where} must be hex of {' or '.join(map(str, sizes))} bytes")
    return bytes.fromhex(text)


def _revision(value: Any, where: str) -> dict[str, Any]:
    rev = _dict(value, where)
    _hex64(rev.get("id"), f"{where}.id")
    for i, parent in enumerate(_list(rev.get("parent_ids"), f"{where}.parent_ids", MAX_PARENTS)):
        _hex64(parent, f"{where}.parent_ids[{i}]")
    _text(rev.get("manifest_toml"), f"{where}.manifest_toml", MAX_TEXT)
    _text(rev.get("message"), f"{where}.message", MAX_TEXT)
    for name in ("author", "created_at"):
        _text(rev.get(name), f"{where}.{name}", MAX_NAME)
    _hex(rev.get("signature", ""), f"{where}.signature", (0, 64))
    _hex(rev.get("public_key", ""), f"{where}.public_key", (0, 32))
    for i, entry in enumerate(_list(rev.get("files"), f"{where}.files", MAX_FILES)):
        _file(entry, f"{where}.files[{i}]")
    return rev


def _file(value: Any, where: str) -> None:
    entry = _dict(value, where)
    _text(entry.get("path"), f"{where}.path", MAX_NAME)
    _hex64(entry.get("sha256"), f"{where}.sha256")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 1 << 53:
        raise InvalidArgument(f"{where}.size must be a whole number of bytes, 0 or more")


def _keys(value: Any) -> tuple[bytes, tuple[KeyRegistration, ...]]:
    keys = _dict(value, "keys")
    hub_key = _hex(keys.get("hub_public_key", ""), "keys.hub_public_key", (0, 32))
    regs = _list(keys.get("registrations", []), "keys.registrations", MAX_REGISTRATIONS)
    return hub_key, tuple(_registration(r, f"keys.registrations[{i}]") for i, r in enumerate(regs))


def _registration(value: Any, where: str) -> KeyRegistration:
    reg = _dict(value, where)
    return KeyRegistration(
        account=_text(reg.get("account"), f"{where}.account", MAX_NAME),
        public_key=_hex(reg.get("public_key"), f"{where}.public_key", (32,)),
        registered_at=_text(reg.get("registered_at"), f"{where}.registered_at", 32),
        revoked_at=_text(reg.get("revoked_at", ""), f"{where}.revoked_at", 32),
        as_of=_text(reg.get("as_of", ""), f"{where}.as_of", 32),  # absent in bundles of before 2026-12-03
        hub_signature=_hex(reg.get("hub_signature"), f"{where}.hub_signature", (64,)),
    )
