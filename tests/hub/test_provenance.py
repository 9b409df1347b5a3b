"""Revision ids, canonical JSON, signatures and chain verification (pure)."""

from __future__ import annotations

import hashlib
import json

import pytest

from hub import provenance
from hub.errors import IntegrityError
from hub.provenance import ChainLink, FileEntry

A, B = b"first file", b"second file"
FILES = (FileEntry("b.stl", hashlib.sha256(B).hexdigest(), len(B)), FileEntry("a.scad", hashlib.sha256(A).hexdigest(), len(A)))
BLOBS = {hashlib.sha256(x).hexdigest(): x for x in (A, B)}
MANIFEST = {"name": "demo", "title": "Démo", "parts": [{"name": "p", "files": ["b.stl"]}]}


def _link(parents: tuple[str, ...] = (), message: str = "m", key: bytes | None = None) -> ChainLink:
    rid = provenance.revision_id(parents, MANIFEST, FILES, "alice", "2026-01-01T00:00:00Z", message)
    sig = provenance.sign(key, rid) if key else b""
    pub = provenance.public_key_of(key) if key else b""
    return ChainLink(rid, parents, MANIFEST, FILES, "alice", "2026-01-01T00:00:00Z", message, sig, pub)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert provenance.canonical_json({"b": 1, "a": ["é", 2.5]}) == '{"a":["é",2.5],"b":1}'.encode()


def test_revision_id_is_the_hash_of_the_documented_document() -> None:
    doc = {
        "parents": [], "manifest": MANIFEST, "author": "alice", "created_at": "2026-01-01T00:00:00Z", "message": "m",
        "files": [{"path": "a.scad", "sha256": FILES[1].sha256, "size": len(A)},
                  {"path": "b.stl", "sha256": FILES[0].sha256, "size": len(B)}],
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert _link().id == hashlib.sha256(text).hexdigest()


def test_revision_id_ignores_file_order_but_not_content() -> None:
    base = provenance.revision_id([], MANIFEST, FILES, "alice", "t", "m")
    assert provenance.revision_id([], MANIFEST, FILES[::-1], "alice", "t", "m") == base
    for changed in (
        provenance.revision_id(["0" * 64], MANIFEST, FILES, "alice", "t", "m"),
        provenance.revision_id([], {**MANIFEST, "title": "x"}, FILES, "alice", "t", "m"),
        provenance.revision_id([], MANIFEST, FILES, "bob", "t", "m"),
        provenance.revision_id([], MANIFEST, FILES, "alice", "t2", "m"),
        provenance.revision_id([], MANIFEST, FILES, "alice", "t", "m2"),
    ):
        assert changed != base


def test_signature_round_trip_and_forgery() -> None:
    key = provenance.generate_private_key()
    rid = _link().id
    signature = provenance.sign(key, rid)
    provenance.verify_signature(provenance.public_key_of(key), rid, signature)
    with pytest.raises(IntegrityError, match="signature"):
        provenance.verify_signature(provenance.public_key_of(provenance.generate_private_key()), rid, signature)
    with pytest.raises(IntegrityError):
        provenance.verify_signature(b"short", rid, signature)


def test_verify_chain_accepts_a_good_chain() -> None:
    key = provenance.generate_private_key()
    first = _link(key=key)
    second = _link((first.id, "f" * 64), "second")
    report = provenance.verify_chain([second, first], BLOBS.get)
    assert report.files_checked == 4 and report.signed == (first.id,) and report.unsigned == (second.id,)
    assert report.external_parents == ("f" * 64,)
    assert provenance.verify_chain([first], lambda h: hashlib.sha256(BLOBS[h]).hexdigest()).files_checked == 2


def test_verify_chain_detects_tampering() -> None:
    key = provenance.generate_private_key()
    good = _link(key=key)
    tampered = [
        (ChainLink(good.id, good.parents, {**MANIFEST, "title": "evil"}, good.files, good.author, good.created_at, good.message, good.signature, good.public_key), "altered"),
        (ChainLink(good.id, good.parents, good.manifest, good.files, good.author, good.created_at, good.message, b"x" * 64, good.public_key), "signature"),
    ]
    for link, words in tampered:
        with pytest.raises(IntegrityError, match=words):
            provenance.verify_chain([link], BLOBS.get)
    with pytest.raises(IntegrityError, match="b.stl"):
        provenance.verify_chain([good], lambda h: BLOBS[h] + b"!" if BLOBS[h] == B else BLOBS[h])
    with pytest.raises(IntegrityError, match="missing"):
        provenance.verify_chain([good], lambda h: None)
