"""Strict Ed25519 (hub.keys, pure): weak keys and malleable signatures are refused.

The small-order encodings are libsodium's blocklist (ed25519_ref10.c,
``ge25519_has_small_order``), also listed in "Taming the many EdDSAs"
(Chalkias, Garillot, Nikolaenko, SSR 2020, table 6c). The tests check them
against the curve arithmetic instead of trusting either copy.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hub import keys, provenance
from hub.errors import IntegrityError, InvalidArgument
from hub.keys import KeyRegistration

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493


def _with_sign(encoding: bytes) -> bytes:
    return encoding[:31] + bytes([encoding[31] | 0x80])


def _encode(point: tuple[int, int, int, int]) -> bytes:
    x, y, z, _ = point
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _small_order_points() -> set[bytes]:
    """All 8 torsion points, as canonical encodings (the identity and order 2 have x = 0: no sign variant)."""
    found = set()
    for encoding in keys.SMALL_ORDER_ENCODINGS:
        for candidate in (encoding, _with_sign(encoding)):
            try:
                point = keys._decode(candidate, "k")
            except InvalidArgument:
                continue
            assert keys._is_identity(keys._multiply(8, point))
            found.add(candidate)
    return found


def test_the_blocklist_names_all_eight_small_order_points() -> None:
    assert len(_small_order_points()) == 8


@pytest.mark.parametrize("encoding", sorted(_small_order_points()), ids=lambda e: e.hex()[:8])
def test_small_order_keys_are_refused(encoding: bytes) -> None:
    with pytest.raises(InvalidArgument, match="small-order"):
        keys.check_public_key(encoding)


@pytest.mark.parametrize("encoding", [
    (P).to_bytes(32, "little"),                      # y = p (= 0): order 4, non-canonical
    (P + 1).to_bytes(32, "little"),                  # y = p + 1 (= 1): the identity, non-canonical
    _with_sign((P + 1).to_bytes(32, "little")),
    (2**255 - 1).to_bytes(32, "little"),             # y = 2^255 - 1 >= p
    _with_sign(bytes([1]) + bytes(31)),              # the identity with x = 0 "negative"
], ids=["y=p", "y=p+1", "y=p+1,sign", "y=max", "identity,sign"])
def test_non_canonical_keys_are_refused(encoding: bytes) -> None:
    with pytest.raises(InvalidArgument, match="canonical"):
        keys.check_public_key(encoding)


def test_off_curve_and_short_keys_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="not a point"):
        keys.check_public_key((2).to_bytes(32, "little"))  # y = 2 has no x on Ed25519
    with pytest.raises(InvalidArgument, match="32"):
        keys.check_public_key(bytes(31))


def test_key_with_a_hidden_torsion_component_is_refused() -> None:
    honest = provenance.public_key_of(provenance.generate_private_key())
    point = keys._add(keys._decode(honest, "k"), keys._decode(keys.SMALL_ORDER_ENCODINGS[2], "t"))
    with pytest.raises(InvalidArgument, match="prime-order subgroup"):
        keys.check_public_key(_encode(point))
    assert keys.check_public_key(honest) == honest


def test_universal_signature_of_the_identity_key_is_refused() -> None:
    identity, universal = bytes([1]) + bytes(31), bytes([1]) + bytes(63)
    for message in (b"revision one", b"revision two"):  # what OpenSSL alone would accept
        Ed25519PublicKey.from_public_bytes(identity).verify(universal, message)
        with pytest.raises(IntegrityError, match="small-order"):
            keys.verify_strict(identity, message, universal)


def test_signature_malleability_is_refused() -> None:
    private = provenance.generate_private_key()
    public = provenance.public_key_of(private)
    signature = provenance.sign(private, "a" * 64)
    keys.verify_strict(public, b"a" * 64, signature)
    s = int.from_bytes(signature[32:], "little")
    with pytest.raises(IntegrityError, match="non-canonical"):
        keys.verify_strict(public, b"a" * 64, signature[:32] + (s + L).to_bytes(32, "little"))
    small_r = keys.SMALL_ORDER_ENCODINGS[2] + signature[32:]
    with pytest.raises(IntegrityError, match="R"):
        keys.verify_strict(public, b"a" * 64, small_r)
    for r in (_with_sign(keys.SMALL_ORDER_ENCODINGS[3]), (P + 1).to_bytes(32, "little")):
        with pytest.raises(IntegrityError, match="R is"):
            keys.verify_strict(public, b"a" * 64, r + signature[32:])
    with pytest.raises(IntegrityError, match="64 bytes"):
        keys.verify_strict(public, b"a" * 64, signature[:63])
    with pytest.raises(IntegrityError, match="does not match"):
        keys.verify_strict(public, b"b" * 64, signature)


def test_registrations_are_signed_over_every_field() -> None:
    hub, user = provenance.generate_private_key(), provenance.generate_private_key()
    reg = keys.sign_registration(hub, KeyRegistration("ada", provenance.public_key_of(user), "2026-01-01T00:00:00Z"))
    keys.verify_registration(provenance.public_key_of(hub), reg)
    for altered in (KeyRegistration("bob", reg.public_key, reg.registered_at, "", reg.hub_signature),
                    KeyRegistration("ada", reg.public_key, "2020-01-01T00:00:00Z", "", reg.hub_signature),
                    KeyRegistration("ada", reg.public_key, reg.registered_at, "2030-01-01T00:00:00Z", reg.hub_signature)):
        with pytest.raises(IntegrityError, match="hub's signature"):
            keys.verify_registration(provenance.public_key_of(hub), altered)
    with pytest.raises(IntegrityError):
        keys.verify_registration(provenance.public_key_of(user), reg)


def test_validity_window_is_half_open_and_needs_strict_times() -> None:
    reg = KeyRegistration("ada", b"k" * 32, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    assert reg.valid_at("2026-01-01T00:00:00Z") and reg.valid_at("2026-01-31T23:59:59Z")
    assert not reg.valid_at("2026-02-01T00:00:00Z") and not reg.valid_at("2025-12-31T23:59:59Z")
    assert not reg.valid_at("2026-01-15T00:00:00+00:00")  # only the canonical form compares as text
    assert not reg.valid_at("\uff12026-01-15T00:00:00Z")  # nor another script's digits (a fullwidth 2)


def test_a_vouched_registration_proves_moments_up_to_its_as_of_only() -> None:
    hub, user = provenance.generate_private_key(), provenance.generate_private_key()
    live = KeyRegistration("ada", provenance.public_key_of(user), "2026-01-01T00:00:00Z")
    assert live.valid_at("2027-01-01T00:00:00Z") and not live.vouched_at("2026-01-02T00:00:00Z")  # no as_of
    vouched = keys.vouch(hub, live, "2026-03-01T00:00:00Z")
    keys.verify_registration(provenance.public_key_of(hub), vouched)
    assert vouched.vouched_at("2026-03-01T00:00:00Z") and not vouched.vouched_at("2026-03-01T00:00:01Z")
    assert not vouched.vouched_at("2025-12-31T23:59:59Z")  # before the registration
    revoked = keys.vouch(hub, replace(live, revoked_at="2026-02-01T00:00:00Z"), "2026-03-01T00:00:00Z")
    assert revoked.vouched_at("2026-01-31T23:59:59Z") and not revoked.vouched_at("2026-02-01T00:00:00Z")
    with pytest.raises(IntegrityError, match="hub's signature"):  # as_of is signed
        keys.verify_registration(provenance.public_key_of(hub), replace(vouched, as_of="2027-01-01T00:00:00Z"))
    assert not replace(vouched, as_of="soon").vouched_at("2026-01-02T00:00:00Z")


def test_proof_of_possession_binds_account_time_and_hub() -> None:
    private, hub = provenance.generate_private_key(), provenance.public_key_of(provenance.generate_private_key())
    public, proof = keys.prove_possession(private, "ada", "2026-01-01T00:00:00Z", hub)
    keys.verify_strict(public, keys.proof_message("ada", public, "2026-01-01T00:00:00Z", hub), proof)
    for account, at, hub_key in (("bob", "2026-01-01T00:00:00Z", hub), ("ada", "2026-01-01T00:00:01Z", hub),
                                 ("ada", "2026-01-01T00:00:00Z", public)):
        with pytest.raises(IntegrityError):
            keys.verify_strict(public, keys.proof_message(account, public, at, hub_key), proof)
