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

A maintainer revokes a grant the same way: a signed revocation statement naming
the grant (its id, design and the SHA-256 of its statement), who revokes it and
when. The grant stays on record, with the revocation beside it.
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
    "REVOCATION_TYPE",
    "GrantStatement",
    "RevocationStatement",
    "canonical_until",
    "parse_revocation",
    "parse_statement",
    "sign_statement",
    "statement_key",
    "statement_sha256",
    "statement_text",
]

GRANT_TYPE = "spimeforge-grant/1"
REVOCATION_TYPE = "spimeforge-grant-revocation/1"
MAX_STATEMENT_CHARS = 1024
# used with fullmatch: "$" would let a trailing newline through, and \d any script's digits
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("type", "design", "revision_id", "scope", "node", "until", "granted_by", "granted_at", "public_key")
_REVOCATION_FIELDS = ("type", "grant_id", "design", "statement_sha256", "revoked_by", "revoked_at", "public_key")


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


@dataclass(frozen=True, slots=True)
class RevocationStatement:
    """What a maintainer signs when revoking a grant (every field a string).

    Attributes:
        statement_sha256: the SHA-256 of the revoked grant's statement (which grant, beyond its id).
        public_key: hex of the raw Ed25519 key that signs this statement.
    """

    grant_id: str
    design: str
    statement_sha256: str
    revoked_by: str
    revoked_at: str
    public_key: str
    type: str = REVOCATION_TYPE

    @property
    def fingerprint(self) -> str:
        return fingerprint(bytes.fromhex(self.public_key))


def canonical_until(text: str) -> str:
    """A last day "YYYY-MM-DD" becomes its last second "YYYY-MM-DDT23:59:59Z"; other text is kept."""
    return f"{text}T23:59:59Z" if _DATE.fullmatch(text) else text


def statement_text(statement: GrantStatement | RevocationStatement) -> str:
    """The canonical JSON that is signed and stored."""
    return json.dumps(asdict(statement), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def statement_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_statement(text: str) -> GrantStatement:
    """Read a grant statement exactly as signed.

    Raises:
        InvalidArgument: too long, not JSON (or JSON nested too deeply to read), other fields than a grant's, a field that is not a string, another
            type, a public key that is not 64 hex digits, or not in canonical form (the bytes would differ).
    """
    return GrantStatement(**_parse(text, "grant", _FIELDS, GRANT_TYPE))


def parse_revocation(text: str) -> RevocationStatement:
    """Read a revocation statement exactly as signed.

    Raises:
        InvalidArgument: as for :func:`parse_statement`, with a revocation's fields and type.
    """
    return RevocationStatement(**_parse(text, "revocation", _REVOCATION_FIELDS, REVOCATION_TYPE))


def _parse(text: str, what: str, fields: tuple[str, ...], type_: str) -> dict[str, str]:
    """The fields of a canonical statement of one kind (see :func:`parse_statement`)."""
    if len(text) > MAX_STATEMENT_CHARS:
        raise InvalidArgument(f"the {what} statement has more than {MAX_STATEMENT_CHARS} characters")
    try:
        doc = json.loads(text)
    except RecursionError as exc:  # json raises it past the interpreter's depth ("[" * 1024)
        raise InvalidArgument(f"the {what} statement nests JSON too deeply: a {what} statement is one flat JSON "
                              "object", field="statement") from exc
    except ValueError as exc:
        raise InvalidArgument(f"the {what} statement is not JSON: {exc}", field="statement") from exc
    if not isinstance(doc, dict) or sorted(doc) != sorted(fields):
        raise InvalidArgument(f"a {what} statement is a JSON object with exactly the fields {', '.join(fields)}")
    if not all(isinstance(v, str) for v in doc.values()):
        raise InvalidArgument(f"every field of a {what} statement is a string")
    if doc["type"] != type_:
        raise InvalidArgument(f"the statement's type is {doc['type']!r:.40}, not {type_!r}")
    if not _HEX64.fullmatch(doc["public_key"]):
        raise InvalidArgument("the statement's public_key must be 64 lowercase hex digits (a raw Ed25519 key)")
    if json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) != text:
        raise InvalidArgument(f"the {what} statement is not canonical JSON (sorted keys, no spaces, UTF-8): "
                              "sign exactly the bytes you send")
    return doc


def statement_key(statement: GrantStatement | RevocationStatement) -> bytes:
    """The raw public key the statement names."""
    return bytes.fromhex(statement.public_key)


def sign_statement(private_key: bytes, statement: GrantStatement | RevocationStatement) -> tuple[str, bytes]:
    """(canonical text, Ed25519 signature) of a grant or revocation statement, signed with a raw 32-byte private key.

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
