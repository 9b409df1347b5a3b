"""Registered keys through the real API, on SQLite and PostgreSQL (issue 10 section 4).

A revision's signature counts only with a key registered to its author at the
revision's time; weak keys are refused; every refusal leaves the store unchanged.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
from dataclasses import replace
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from spimeforge.v1 import accounts_pb2, designs_pb2

from hub import keys, provenance
from hub.errors import IntegrityError
from hub.keys import KeyRegistration
from hub.manifest import parse_manifest
from tests.hub.harness import InProcessHub, manifest_toml, now_z, register_key, sha

CUBE = b"solid cube\nendsolid cube\n" * 10
IDENTITY = bytes([1]) + bytes(31)
UNIVERSAL = IDENTITY + bytes(32)  # R = identity, S = 0: "verifies" any message under the identity key


def _refused(api: InProcessHub, call: Any, code: grpc.StatusCode, words: str = "") -> str:
    before = api.snapshot()
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert words.lower() in (info.value.details() or "").lower(), info.value.details()
    assert api.snapshot() == before
    return info.value.details() or ""


def _hub_key(api: InProcessHub) -> bytes:
    return bytes(api.accounts.GetHubKey(accounts_pb2.GetHubKeyRequest(), metadata=api.md("carol")).public_key)


def _keys(api: InProcessHub, account: str, caller: str = "carol") -> list[KeyRegistration]:
    resp = api.accounts.ListKeys(accounts_pb2.ListKeysRequest(account=account), metadata=api.md(caller))
    assert resp.hub_public_key == _hub_key(api)
    return [KeyRegistration(k.account, k.public_key, k.registered_at, k.revoked_at, k.hub_signature,
                            k.as_of) for k in resp.keys]


def _revoke(api: InProcessHub, user: str, fingerprint: str, at: str = "",
            account: str = "") -> accounts_pb2.KeyRegistration:
    request = accounts_pb2.RevokeKeyRequest(fingerprint=fingerprint, effective_at=at, account=account)
    return api.accounts.RevokeKey(request, metadata=api.md(user))


def _signed_push(api: InProcessHub, user: str, key: bytes | None, *, create: bool = False,
                 parents: tuple[str, ...] = (), created_at: str | None = None, body: bytes = CUBE,
                 public_key: bytes | None = None, signature: bytes | None = None) -> tuple[str, Any]:
    """Push cube.stl signed with ``key``; returns (revision id, a callable doing the push)."""
    when = created_at or now_z()
    manifest = parse_manifest(manifest_toml("cube")).to_dict()
    entries = [provenance.FileEntry("cube.stl", sha(body), len(body))]
    rid = provenance.revision_id(list(parents), manifest, entries, user, when, "signed")
    api.upload(user, body)
    pub = public_key if public_key is not None else provenance.public_key_of(key) if key else b""
    sig = signature if signature is not None else provenance.sign(key, rid) if key else b""
    return rid, lambda: api.push(user, "cube", {"cube.stl": body}, create=create, parents=parents, created_at=when,
                                 message="signed", signature=sig, public_key=pub, upload=False)


def _at(text: str, seconds: int) -> str:
    moment = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_register_list_revoke_and_rotate(any_api: InProcessHub) -> None:
    api = any_api
    old, new = provenance.generate_private_key(), provenance.generate_private_key()
    reg = register_key(api, "alice", old)
    assert reg.account == "alice" and reg.fingerprint == keys.fingerprint(provenance.public_key_of(old))
    assert not reg.revoked_at
    # rotation: register the new key, revoke the old one from a date on
    register_key(api, "alice", new)
    revoke_at = _at(now_z(), 60)
    revoked = _revoke(api, "alice", reg.fingerprint, revoke_at)
    assert revoked.revoked_at == revoke_at
    listed = {k.public_key: k for k in _keys(api, "alice")}
    assert set(listed) == {provenance.public_key_of(old), provenance.public_key_of(new)}
    for k in listed.values():  # every registration, revoked ones too, carries the hub's signature as it reads now
        keys.verify_registration(_hub_key(api), k)
        assert k.registered_at <= k.as_of and k.vouched_at(k.registered_at)  # vouched for as of the hub's time
        with pytest.raises(IntegrityError):  # a copy cannot be made to vouch for a later time
            keys.verify_registration(_hub_key(api), replace(k, as_of=_at(k.as_of, 3600)))
    assert listed[provenance.public_key_of(old)].revoked_at == revoke_at
    assert not listed[provenance.public_key_of(new)].revoked_at
    # a revocation moves earlier, never later
    _refused(api, lambda: _revoke(api, "alice", reg.fingerprint, _at(revoke_at, 10)),
             grpc.StatusCode.FAILED_PRECONDITION, "never later")
    assert _revoke(api, "alice", reg.fingerprint, _at(revoke_at, -30)).revoked_at == _at(revoke_at, -30)
    _refused(api, lambda: _revoke(api, "alice", reg.fingerprint, "2001-01-01T00:00:00Z"),
             grpc.StatusCode.INVALID_ARGUMENT, "before")
    assert _keys(api, "", caller="bob") == []  # "" = the caller


def test_key_requests_are_checked_before_the_store(any_api: InProcessHub) -> None:
    api = any_api
    key = provenance.generate_private_key()
    register_key(api, "alice", key)
    fp = keys.fingerprint(provenance.public_key_of(key))
    cases = [
        (lambda: _revoke(api, "alice", "zz" * 16), grpc.StatusCode.INVALID_ARGUMENT, "fingerprint"),
        (lambda: _revoke(api, "alice", fp[:31] + "\x00"), grpc.StatusCode.INVALID_ARGUMENT, "fingerprint"),
        (lambda: _revoke(api, "alice", fp, "soon\x00"), grpc.StatusCode.INVALID_ARGUMENT, "effective_at"),
        (lambda: _revoke(api, "alice", fp, "soon"), grpc.StatusCode.INVALID_ARGUMENT, "RFC 3339"),
        (lambda: _revoke(api, "alice", fp, "2999-01-01T00:00:00Z"), grpc.StatusCode.INVALID_ARGUMENT, "ahead"),
        (lambda: _revoke(api, "bob", fp), grpc.StatusCode.NOT_FOUND, "no key"),
        (lambda: _revoke(api, "carol", fp), grpc.StatusCode.PERMISSION_DENIED, "RevokeKey"),
        (lambda: _revoke(api, "bob", fp, account="alice"), grpc.StatusCode.PERMISSION_DENIED, "only an admin"),
        (lambda: _revoke(api, "admin", fp, account="Alice"), grpc.StatusCode.INVALID_ARGUMENT, "account name"),
        (lambda: api.accounts.ListKeys(accounts_pb2.ListKeysRequest(account="Al\x00ice"), metadata=api.md("bob")),
         grpc.StatusCode.INVALID_ARGUMENT, "account"),
        (lambda: api.accounts.ListKeys(accounts_pb2.ListKeysRequest(account="Alice"), metadata=api.md("bob")),
         grpc.StatusCode.INVALID_ARGUMENT, "account name"),
        (lambda: api.accounts.ListKeys(accounts_pb2.ListKeysRequest(account="nobody"), metadata=api.md("bob")),
         grpc.StatusCode.NOT_FOUND, "nobody"),
        (lambda: register_key(api, "alice", key), grpc.StatusCode.ALREADY_EXISTS, "already registered"),
        (lambda: register_key(api, "bob", key), grpc.StatusCode.ALREADY_EXISTS, "another account"),
        (lambda: register_key(api, "bob", provenance.generate_private_key(), signed_at=now_z(-3600)),
         grpc.StatusCode.INVALID_ARGUMENT, "clock"),
        (lambda: register_key(api, "carol", provenance.generate_private_key()),
         grpc.StatusCode.PERMISSION_DENIED, "RegisterKey"),
    ]
    for call, code, words in cases:
        _refused(api, call, code, words)
    assert _revoke(api, "admin", fp, account="alice").revoked_at  # an admin revokes a leaked key


def test_proof_of_possession_is_required(any_api: InProcessHub) -> None:
    api = any_api
    key = provenance.generate_private_key()
    at = now_z()
    public, proof_for_bob = keys.prove_possession(key, "bob", at, _hub_key(api))
    _, proof_other_hub = keys.prove_possession(key, "alice", at, provenance.public_key_of(key))
    for proof in (proof_for_bob, proof_other_hub, b"", b"\x00" * 64, proof_for_bob + b"x"):
        request = accounts_pb2.RegisterKeyRequest(public_key=public, signed_at=at, proof=proof)
        _refused(api, lambda r=request: api.accounts.RegisterKey(r, metadata=api.md("alice")),
                 grpc.StatusCode.INVALID_ARGUMENT, "proof")
    for public_key in (b"", public[:31], public + b"\x00"):
        request = accounts_pb2.RegisterKeyRequest(public_key=public_key, signed_at=at, proof=proof_for_bob)
        _refused(api, lambda r=request: api.accounts.RegisterKey(r, metadata=api.md("alice")),
                 grpc.StatusCode.INVALID_ARGUMENT, "32")


def test_small_order_key_is_refused_although_openssl_accepts_its_universal_signature(any_api: InProcessHub) -> None:
    api = any_api
    rid1, push1 = _signed_push(api, "alice", None, create=True, public_key=IDENTITY, signature=UNIVERSAL)
    rid2, push2 = _signed_push(api, "alice", None, create=True, public_key=IDENTITY, signature=UNIVERSAL,
                               body=CUBE * 2)
    # the danger: one signature that OpenSSL accepts for two different revisions (for any message at all),
    # and so also as a proof of possession of a key nobody holds
    hub_key = _hub_key(api)
    at = now_z()
    for message in (rid1.encode(), rid2.encode(), keys.proof_message("alice", IDENTITY, at, hub_key)):
        Ed25519PublicKey.from_public_bytes(IDENTITY).verify(UNIVERSAL, message)
    request = accounts_pb2.RegisterKeyRequest(public_key=IDENTITY, signed_at=at, proof=UNIVERSAL)
    _refused(api, lambda: api.accounts.RegisterKey(request, metadata=api.md("alice")),
             grpc.StatusCode.INVALID_ARGUMENT, "small-order")
    for push in (push1, push2):
        _refused(api, push, grpc.StatusCode.INVALID_ARGUMENT, "small-order")


def test_only_the_authors_registered_key_counts(any_api: InProcessHub) -> None:
    api = any_api
    alice, bob, stranger = (provenance.generate_private_key() for _ in range(3))
    register_key(api, "alice", alice)
    register_key(api, "bob", bob)
    _, unregistered = _signed_push(api, "alice", stranger, create=True)
    assert "spime key register" in _refused(api, unregistered, grpc.StatusCode.PERMISSION_DENIED, "no account")
    _, as_bob = _signed_push(api, "alice", bob, create=True)  # alice pushes, signed with bob's key
    _refused(api, as_bob, grpc.StatusCode.PERMISSION_DENIED, "another account")
    rid, forged = _signed_push(api, "alice", alice, create=True, signature=provenance.sign(bob, "0" * 64))
    _refused(api, forged, grpc.StatusCode.INVALID_ARGUMENT, "signature")
    _, key_only = _signed_push(api, "alice", alice, create=True, signature=b"")
    _refused(api, key_only, grpc.StatusCode.INVALID_ARGUMENT, "both")
    rid, good = _signed_push(api, "alice", alice, create=True)
    assert good().revision_id == rid
    _, unsigned = _signed_push(api, "bob", None, parents=(rid,), body=CUBE * 2)
    assert unsigned().is_proposal  # unsigned pushes stay allowed


def test_revocation_invalidates_later_signatures_only(any_api: InProcessHub) -> None:
    api = any_api
    key = provenance.generate_private_key()
    fp = register_key(api, "alice", key).fingerprint
    start = now_z()
    rid1, push1 = _signed_push(api, "alice", key, create=True, created_at=start)
    assert push1().revision_id == rid1
    _revoke(api, "alice", fp, _at(start, 2))
    _, late = _signed_push(api, "alice", key, parents=(rid1,), created_at=_at(start, 3), body=CUBE * 3)
    _refused(api, late, grpc.StatusCode.FAILED_PRECONDITION, "revoked")
    # the revision made before the revocation still proves its author, offline too
    rev = api.designs.GetRevision(designs_pb2.GetRevisionRequest(design="cube"), metadata=api.md("carol"))
    link = provenance.ChainLink(rev.id, tuple(rev.parent_ids), parse_manifest(rev.manifest_toml).to_dict(),
                                tuple(provenance.FileEntry(f.path, f.sha256, f.size) for f in rev.files),
                                rev.author, rev.created_at, rev.message, rev.signature, rev.public_key)
    check = provenance.registered_authorship(_keys(api, "alice"), _hub_key(api))
    assert provenance.verify_chain([link], authorship=check).signed == (rid1,)
    # a backdated revocation (the key leaked earlier) takes that revision's proof away
    _revoke(api, "alice", fp, start)
    check = provenance.registered_authorship(_keys(api, "alice"), _hub_key(api))
    with pytest.raises(IntegrityError, match="counts only"):
        provenance.verify_chain([link], authorship=check)


def test_revocations_at_once_keep_the_earliest(any_api: InProcessHub) -> None:
    """Eight revocations of one key at once, each a day later than the one before: whichever order they run
    in, the earliest stands (a revocation moves earlier, never later). On PostgreSQL two of them read the
    same old row and a later one replaced an earlier one already answered OK."""
    api = any_api
    reg = register_key(api, "alice", provenance.generate_private_key())
    times = [_at(reg.registered_at, 86400 * (10 + i)) for i in range(8)]
    start = threading.Barrier(len(times))

    def revoke(at: str) -> None:
        start.wait(30)
        try:
            _revoke(api, "alice", reg.fingerprint, at)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()

    with concurrent.futures.ThreadPoolExecutor(len(times)) as pool:
        list(pool.map(revoke, times))
    [listed] = [k for k in _keys(api, "alice") if k.fingerprint == reg.fingerprint]
    assert listed.revoked_at == times[0]
