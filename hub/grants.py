"""The signed statement of a licence grant. Pure.

A grant (design, revision or all, scope, node or any, until when) is the
licensor's word, so the maintainer who gives it signs it with the Ed25519 key
registered to their account. What is signed is the statement itself, canonical
JSON in UTF-8 (sorted keys, no spaces), and the hub stores exactly those bytes
with the signature: anyone can check a grant later against the key it names
(``public_key``) and that key's registration at ``granted_at``.

The client builds the statement (the full revision id, ``until`` as an RFC 3339
UTC moment, its own clock for ``granted_at``); the hub refuses any statement that
is not in this exact form rather than re-serialising it, so the bytes the
signature covers are the bytes on record.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.errors import InvalidArgument
from hub.keys import fingerprint

__all__ = [
    "GRANT_TYPE",
    "MAX_STATEMENT_CHARS",
    "GrantStatement",
    "canonical_until",
    "parse_statement",
    "sign_statement",
    "statement_key",
    "statement_sha256",
    "statement_text",
]

GRANT_TYPE = "spimeforge-grant/1"
MAX_STATEMENT_CHARS = 1024
# used with fullmatch: "$" would let a trailing newline through, and \d any script's digits
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("type", "design", "revision_id", "scope", "node", "until", "granted_by", "granted_at", "public_key")


@dataclass(frozen=True, slots=True)
class GrantStatement:
    """What a maintainer signs when granting (every field a string; "" = every revision / any node).

    Attributes:
        public_key: hex of the raw Ed25519 key that signs this statement.
    """

    design: str
    revision_id: str
    scope: str
    node: str
    until: str
    granted_by: str
    granted_at: str
    public_key: str
    type: str = GRANT_TYPE

    @property
    def fingerprint(self) -> str:
        return fingerprint(bytes.fromhex(self.public_key))


def canonical_until(text: str) -> str:
    """A last day "YYYY-MM-DD" becomes its last second "YYYY-MM-DDT23:59:59Z"; other text is kept."""
    return f"{text}T23:59:59Z" if _DATE.fullmatch(text) else text


def statement_text(statement: GrantStatement) -> str:
    """The canonical JSON that is signed and stored."""
    return json.dumps(asdict(statement), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def statement_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_statement(text: str) -> GrantStatement:
    """Read a statement exactly as signed.

    Raises:
        InvalidArgument: too long, not JSON (or JSON nested too deeply to read), other fields than a grant's, a field that is not a string, another
            type, a public key that is not 64 hex digits, or not in canonical form (the bytes would differ).
    """
    if len(text) > MAX_STATEMENT_CHARS:
        raise InvalidArgument(f"the grant statement has more than {MAX_STATEMENT_CHARS} characters")
    try:
        doc = json.loads(text)
    except RecursionError as exc:  # json raises it past the interpreter's depth ("[" * 1024)
        raise InvalidArgument("the grant statement nests JSON too deeply: a grant statement is one flat JSON "
                              "object", field="statement") from exc
    except ValueError as exc:
        raise InvalidArgument(f"the grant statement is not JSON: {exc}", field="statement") from exc
    if not isinstance(doc, dict) or sorted(doc) != sorted(_FIELDS):
        raise InvalidArgument(f"a grant statement is a JSON object with exactly the fields {', '.join(_FIELDS)}")
    if not all(isinstance(v, str) for v in doc.values()):
        raise InvalidArgument("every field of a grant statement is a string")
    if doc["type"] != GRANT_TYPE:
        raise InvalidArgument(f"the statement's type is {doc['type']!r:.40}, not {GRANT_TYPE!r}")
    if not _HEX64.fullmatch(doc["public_key"]):
        raise InvalidArgument("the statement's public_key must be 64 lowercase hex digits (a raw Ed25519 key)")
    statement = GrantStatement(**doc)
    if statement_text(statement) != text:
        raise InvalidArgument("the grant statement is not canonical JSON (sorted keys, no spaces, UTF-8): "
                              "sign exactly the bytes you send")
    return statement


def statement_key(statement: GrantStatement) -> bytes:
    """The raw public key the statement names."""
    return bytes.fromhex(statement.public_key)


def sign_statement(private_key: bytes, statement: GrantStatement) -> tuple[str, bytes]:
    """(canonical text, Ed25519 signature) of a statement, signed with a raw 32-byte private key.

    Raises:
        InvalidArgument: the key is not a raw 32-byte Ed25519 key, or not the one the statement names.
    """
    if len(private_key) != 32:
        raise InvalidArgument(f"an Ed25519 private key has 32 bytes, got {len(private_key)}")
    key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
    if key.public_key().public_bytes_raw().hex() != statement.public_key:
        raise InvalidArgument("the statement names another public key than the signing key's")
    text = statement_text(statement)
    return text, key.sign(text.encode("utf-8"))
