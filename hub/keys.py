"""Ed25519 public keys and signatures, checked strictly; key registrations. Pure.

``cryptography`` (OpenSSL) verifies signatures the RFC 8032 way but accepts
any point as a public key, so a small-order key with a crafted signature
verifies on *every* message ("Taming the many EdDSAs", Chalkias et al. 2020,
and libsodium's ``ge25519_has_small_order`` blocklist). Before a key or a
signature counts, it is decoded here with the curve's own arithmetic and
refused when it is:

* not 32 bytes, or a non-canonical encoding (y >= p, or x = 0 with the sign bit set);
* not on the curve;
* of small order (one of the 8 torsion points, the blocklist below), or not in
  the prime-order subgroup at all (a torsion component hidden in an honest-looking key);
* a signature whose S is not reduced (S >= L) or whose R is non-canonical or of small order.

A key registration is the hub's signed statement that an account held a key
from ``registered_at`` (inclusive) until ``revoked_at`` (exclusive, empty while live),
as the hub knew it at ``as_of``. A revocation can be scheduled and can later move
earlier (a stolen key is revoked from the theft), so a statement proves a signature
only for moments up to its ``as_of``: an old copy from before a revocation says
nothing of the time after it was made.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.errors import IntegrityError, InvalidArgument

__all__ = [
    "FINGERPRINT_HEX",
    "REGISTRATION_TYPE",
    "SMALL_ORDER_ENCODINGS",
    "KeyRegistration",
    "check_public_key",
    "fingerprint",
    "proof_message",
    "prove_possession",
    "registration_message",
    "sign_registration",
    "verify_registration",
    "verify_strict",
    "vouch",
]

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

FINGERPRINT_HEX = 32
_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\Z")  # compares correctly as text
REGISTRATION_TYPE = "spimeforge-key-registration/1"
PROOF_TYPE = "spimeforge-key-proof/1"

# libsodium's blocklist (ed25519_ref10.c, ge25519_has_small_order), canonical
# encodings with the sign bit clear: order 4 (y=0), order 1 (y=1), two of order 8,
# order 2 (y=p-1). With the sign bit set they name the remaining torsion points.
SMALL_ORDER_ENCODINGS: tuple[bytes, ...] = (
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
)

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z
_IDENTITY: _Point = (0, 1, 1, 0)


def _add(a: _Point, b: _Point) -> _Point:
    # RFC 8032 section 5.1.4, complete for every pair of points.
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa, bb = (y1 - x1) * (y2 - x2) % _P, (y1 + x1) * (y2 + x2) % _P
    cc, dd = t1 * 2 * _D * t2 % _P, z1 * 2 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: _Point) -> _Point:
    result = _IDENTITY
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _is_identity(point: _Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


def _decode(encoded: bytes, what: str) -> _Point:
    """RFC 8032 section 5.1.3, refusing the non-canonical encodings it tolerates."""
    if len(encoded) != 32:
        raise InvalidArgument(f"{what} must be 32 raw bytes, got {len(encoded)}")
    value = int.from_bytes(encoded, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    if y >= _P:
        raise InvalidArgument(f"{what} is not canonically encoded (y >= p)")
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif v * x * x % _P != u:
        raise InvalidArgument(f"{what} is not a point on Ed25519")
    if x == 0 and sign:
        raise InvalidArgument(f"{what} is not canonically encoded (x = 0 with the sign bit set)")
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _check_point(encoded: bytes, what: str) -> _Point:
    point = _decode(encoded, what)
    if _is_identity(_multiply(8, point)):
        raise InvalidArgument(f"{what} is a small-order point: it would verify forged signatures")
    return point


def _check_r(encoded: bytes) -> None:
    # libsodium's way for R: canonical y and not on the blocklist (sign bit ignored). No decoding
    # here: OpenSSL decodes R and a point off the curve simply fails to verify.
    value = int.from_bytes(encoded, "little")
    if value & ((1 << 255) - 1) >= _P:
        raise InvalidArgument("the signature's R is not canonically encoded (y >= p)")
    if (value & ((1 << 255) - 1)).to_bytes(32, "little") in SMALL_ORDER_ENCODINGS:
        raise InvalidArgument("the signature's R is a small-order point")


@functools.lru_cache(maxsize=4096)
def _key_problem(public_key: bytes) -> str:
    # Cached: the subgroup check is ~250 point additions in Python, and a chain repeats its few keys.
    try:
        point = _check_point(public_key, "the Ed25519 public key")
    except InvalidArgument as exc:
        return str(exc)
    if not _is_identity(_multiply(_L, point)):
        return "the Ed25519 public key has a small-order component (not in the prime-order subgroup)"
    return ""


def check_public_key(public_key: bytes) -> bytes:
    """Accept only a canonical Ed25519 key of prime order.

    Raises:
        InvalidArgument: wrong length, non-canonical, off the curve, small order,
            or outside the prime-order subgroup.
    """
    problem = _key_problem(bytes(public_key)) if len(public_key) == 32 else (
        f"the Ed25519 public key must be 32 raw bytes, got {len(public_key)}")
    if problem:
        raise InvalidArgument(problem)
    return bytes(public_key)


def verify_strict(public_key: bytes, message: bytes, signature: bytes, what: str = "signature") -> None:
    """Verify an Ed25519 signature with the checks OpenSSL leaves out.

    Raises:
        IntegrityError: a weak key, a malformed or non-canonical signature, or a mismatch.
    """
    try:
        check_public_key(public_key)
        if len(signature) != 64:
            raise InvalidArgument(f"an Ed25519 signature has 64 bytes, got {len(signature)}")
        if int.from_bytes(signature[32:], "little") >= _L:
            raise InvalidArgument("the signature's S is not reduced modulo the group order (non-canonical)")
        _check_r(signature[:32])
    except InvalidArgument as exc:
        raise IntegrityError(f"{what}: {exc}") from exc
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), message)
    except InvalidSignature as exc:
        raise IntegrityError(f"{what} does not match key {fingerprint(public_key)}") from exc


def fingerprint(public_key: bytes) -> str:
    """The first 32 hex digits of SHA-256 of the raw key: how people name a key."""
    return hashlib.sha256(bytes(public_key)).hexdigest()[:FINGERPRINT_HEX]


def proof_message(account: str, public_key: bytes, signed_at: str, hub_key: bytes) -> bytes:
    """The challenge a key signs to prove its holder registers it (see accounts.proto)."""
    return "\n".join((PROOF_TYPE, account, bytes(public_key).hex(), signed_at, bytes(hub_key).hex())).encode()


def prove_possession(private_key: bytes, account: str, signed_at: str, hub_key: bytes) -> tuple[bytes, bytes]:
    """The raw public key and the proof of possession a registration sends.

    Raises:
        InvalidArgument: the private key is not a raw 32-byte Ed25519 key.
    """
    if len(private_key) != 32:
        raise InvalidArgument(f"an Ed25519 private key has 32 bytes, got {len(private_key)}")
    key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
    public = key.public_key().public_bytes_raw()
    return public, key.sign(proof_message(account, public, signed_at, hub_key))


@dataclass(frozen=True, slots=True)
class KeyRegistration:
    """One key of one account, as the hub signed it.

    Attributes:
        account: the account name.
        public_key: raw 32-byte Ed25519 key.
        registered_at: RFC 3339 UTC; the key counts from this moment on.
        revoked_at: RFC 3339 UTC from which it no longer counts; "" while live.
        hub_signature: the hub key's signature over :func:`registration_message`.
        as_of: RFC 3339 UTC when the hub vouched for it (:func:`vouch`); "" in the hub's own
            records, which are the truth as of now.
    """

    account: str
    public_key: bytes
    registered_at: str
    revoked_at: str = ""
    hub_signature: bytes = b""
    as_of: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def valid_at(self, moment: str) -> bool:
        """Whether a signature made at ``moment`` (RFC 3339 UTC, "Z") counts."""
        if not all(_TIME.match(t) for t in (moment, self.registered_at, self.revoked_at or moment)):
            return False
        return self.registered_at <= moment and (not self.revoked_at or moment < self.revoked_at)

    def vouched_at(self, moment: str) -> bool:
        """Whether this statement proves that a signature made at ``moment`` counts: valid then, and
        no later than ``as_of`` (a statement without one proves nothing)."""
        return bool(self.as_of) and _TIME.match(self.as_of) is not None and moment <= self.as_of \
            and self.valid_at(moment)


def registration_message(reg: KeyRegistration) -> bytes:
    """The canonical JSON bytes the hub signs for a registration (``as_of`` only when set, so the
    stored signatures of the hub's own records keep verifying)."""
    doc = {"type": REGISTRATION_TYPE, "account": reg.account, "public_key": reg.public_key.hex(),
           "fingerprint": reg.fingerprint, "registered_at": reg.registered_at, "revoked_at": reg.revoked_at}
    if reg.as_of:
        doc["as_of"] = reg.as_of
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign_registration(hub_private_key: bytes, reg: KeyRegistration) -> KeyRegistration:
    """The registration with the hub's signature over it.

    Raises:
        InvalidArgument: the hub key is not a raw 32-byte Ed25519 private key.
    """
    if len(hub_private_key) != 32:
        raise InvalidArgument(f"an Ed25519 private key has 32 bytes, got {len(hub_private_key)}")
    signature = Ed25519PrivateKey.from_private_bytes(hub_private_key).sign(registration_message(reg))
    return replace(reg, hub_signature=signature)


def vouch(hub_private_key: bytes, reg: KeyRegistration, now: str) -> KeyRegistration:
    """The registration as the hub vouches for it at ``now`` (RFC 3339 UTC), signed.

    Raises:
        InvalidArgument: as sign_registration.
    """
    return sign_registration(hub_private_key, replace(reg, as_of=now))


def verify_registration(hub_public_key: bytes, reg: KeyRegistration) -> None:
    """Check that the hub key signed this registration as it reads now.

    Raises:
        IntegrityError: the registration was altered, or another key signed it.
    """
    what = f"the hub's signature on the registration of key {reg.fingerprint} to {reg.account!r:.80}"
    verify_strict(hub_public_key, registration_message(reg), reg.hub_signature, what=what)
