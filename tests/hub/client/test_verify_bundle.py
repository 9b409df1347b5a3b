"""Offline ``spime verify --bundle`` proves who signed, against a pinned hub key (issue 10 section 4).

A rewritten bundle re-signed with another key fails, so does one naming another
hub key; malformed bundles exit 1 with a message that names the problem, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.bundle import MAX_BUNDLE_BYTES, MAX_DEPTH
from hub.domain import FileEntry
from hub.keys import KeyRegistration, sign_registration
from hub.manifest import parse_manifest
from hub.provenance import generate_private_key, public_key_of, revision_id, sign
from tests.hub.client.test_spime_cli_offline import (
    ADA_KEY,
    HUB_KEY,
    _bundle,
    _registration,
    _verify,
    run,
)


def _doc(bundle: Path) -> dict[str, Any]:
    return dict(json.loads((bundle / "bundle.json").read_text()))


def _save(bundle: Path, doc: dict[str, Any]) -> None:
    (bundle / "bundle.json").write_text(json.dumps(doc))


def _rewrite(doc: dict[str, Any], author: str = "ada") -> bytes:
    """Change the last revision's message, recompute its id and re-sign it with a new key; that key."""
    mallory = generate_private_key()
    rev = doc["revisions"][-1]
    manifest = parse_manifest(rev["manifest_toml"]).to_dict()
    rev["message"], rev["author"] = "innocent tweak", author
    files = [FileEntry(f["path"], f["sha256"], f["size"]) for f in rev["files"]]
    rev["id"] = revision_id(rev["parent_ids"], manifest, files, author, rev["created_at"], rev["message"])
    rev["signature"], rev["public_key"] = sign(mallory, rev["id"]).hex(), public_key_of(mallory).hex()
    doc["design"]["head_revision_id"] = rev["id"]
    return mallory


def test_genuine_bundle_passes_with_the_pinned_hub_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    code, doc = _verify(capsys, bundle)
    assert code == 0 and doc["ok"] and len(doc["signed"]) == 2 and doc["hub_key"] == public_key_of(HUB_KEY).hex()
    assert {s["author"] for s in doc["signers"].values()} == {"ada"}
    key_file = tmp_path / "hub.pub"
    key_file.write_text(public_key_of(HUB_KEY).hex() + "\n")
    assert _verify(capsys, bundle, "--hub-key", str(key_file))[0] == 0  # a pinned key file works too


def test_rewritten_and_resigned_bundle_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    doc = _doc(bundle)
    _rewrite(doc)
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and not out["ok"] and "no registration signed by the hub" in out["error"]


def test_rewritten_bundle_with_a_forged_registration_fails(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    doc = _doc(bundle)
    mallory = _rewrite(doc)
    evil_hub = generate_private_key()
    doc["keys"]["registrations"].append(_registration("ada", mallory, hub_key=evil_hub))
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)  # the registration is not signed by the pinned hub key
    assert code == 1 and "hub's signature on the registration" in out["error"]
    doc["keys"]["hub_public_key"] = public_key_of(evil_hub).hex()  # ... and the bundle names the forger's hub key
    doc["keys"]["registrations"] = [_registration("ada", mallory, hub_key=evil_hub)]
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and "not the pinned hub key" in out["error"]
    # without a pin nothing proves who signed: refused, with what to do
    code, out = _verify(capsys, bundle, "--hub-key", "")
    assert code == 1 and "--hub-key" in out["error"]


def test_a_registration_of_another_account_or_time_does_not_count(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    doc = _doc(bundle)
    mallory = _rewrite(doc)
    doc["keys"]["registrations"].append(_registration("mallory", mallory))  # a genuine key, of someone else
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and "registered to mallory, not to the author ada" in out["error"]
    doc = _doc(bundle)
    reg = doc["keys"]["registrations"][0]
    reg["revoked_at"] = "2026-01-01T12:00:00Z"  # moved by hand: the hub's signature no longer matches
    _save(bundle, doc)
    assert _verify(capsys, bundle)[0] == 1


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with(edit: Any) -> Any:
    def apply(doc: dict[str, Any]) -> str:
        edit(doc)
        return json.dumps(doc)
    return apply


MALFORMED: list[tuple[str, Any, str]] = [
    ("deep-nesting", lambda doc: _nested(200_000), "nested more than"),
    ("nesting-over-the-limit", lambda doc: json.dumps({**doc, "x": json.loads(_nested(MAX_DEPTH + 5))}),
     "nested more than"),
    ("not-json", lambda doc: "{not json", "not JSON"),
    ("not-utf8", lambda doc: "\udcff", "not JSON"),
    ("top-level-list", lambda doc: "[]", "JSON object"),
    ("wrong-format", _with(lambda d: d.update(format="zip")), "format"),
    ("revisions-not-a-list", _with(lambda d: d.update(revisions={"a": 1})), "revisions must be a JSON list"),
    ("revision-not-an-object", _with(lambda d: d["revisions"].append(7)), "revisions[2] must be a JSON object"),
    ("size-is-text", _with(lambda d: d["revisions"][0]["files"][0].update(size="12")), "size"),
    ("size-is-bool", _with(lambda d: d["revisions"][0]["files"][0].update(size=True)), "size"),
    ("hash-is-a-path", _with(lambda d: d["revisions"][0]["files"][0].update(sha256="../" * 21 + "x")),
     "is not a SHA-256"),
    ("hash-is-absolute", _with(lambda d: d["revisions"][0]["files"][0].update(sha256="/etc/passwd")),
     "is not a SHA-256"),
    ("id-is-a-number", _with(lambda d: d["revisions"][0].update(id=12)), "must be a string"),
    ("signature-not-hex", _with(lambda d: d["revisions"][0].update(signature="zz" * 64)), "signature must be hex"),
    ("huge-message", _with(lambda d: d["revisions"][0].update(message="x" * (2 << 20))), "longer than"),
    ("registrations-wrong", _with(lambda d: d["keys"].update(registrations=[{"account": "ada"}])),
     "keys.registrations[0].public_key"),
    ("manifest-nested-deep", _with(lambda d: d["revisions"][0].update(manifest_toml="a = " + _nested(100_000))),
     "manifest is invalid"),
    ("head-is-a-path", _with(lambda d: d["design"].update(head_revision_id="../../etc")), "not a SHA-256"),
    ("lone-surrogate-message", _with(lambda d: d["revisions"][0].update(message="\ud800")), "not valid Unicode"),
    ("lone-surrogate-key", _with(lambda d: d["design"].update({"\udc00x": 1})), "not valid Unicode"),
]


@pytest.mark.parametrize(("name", "make", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_bundle_exits_1_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  name: str, make: Any, words: str) -> None:
    bundle = _bundle(tmp_path)
    text = make(_doc(bundle))
    (bundle / "bundle.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    code, out, err = run(capsys, "verify", "--bundle", str(bundle))
    assert code == 1 and words in err and "Traceback" not in err + out
    code, doc = _verify(capsys, bundle)
    assert code == 1 and not doc["ok"] and words in doc["error"]


def test_oversized_bundle_is_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    with (bundle / "bundle.json").open("r+b") as fh:
        fh.truncate(MAX_BUNDLE_BYTES + 10)  # sparse: no real 64 MiB written
    code, doc = _verify(capsys, bundle)
    assert code == 1 and "at most 64 MiB" in doc["error"]


def test_bad_hub_key_argument_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "verify", "--bundle", str(_bundle(tmp_path)), "--hub-key", "not-a-key")
    assert code == 2 and "--hub-key" in err


def test_verify_names_the_signed_manifest_not_the_unsigned_slug_and_escapes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    doc = _doc(bundle)
    doc["design"]["slug"] = "trusted-brand\x1b]0;OWNED\x07\x1b[2J\u202e"
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 0 and out["design"] == "calibration-cube"
    code, text, err = run(capsys, "verify", "--bundle", str(bundle), "--hub-key",
                          public_key_of(HUB_KEY).hex())
    assert code == 0 and text.startswith("calibration-cube: OK")
    assert "trusted-brand" not in text + err and "\x1b" not in text + err


def test_a_registration_proves_a_signature_only_up_to_its_as_of(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A copy of the hub's statement made before a revocation says nothing of the time after it: a key stolen
    and revoked later cannot sign a revision dated after the copy and pass with the old registration."""
    bundle = _bundle(tmp_path)  # revisions of 2026-01-01 and 2026-01-02
    doc = _doc(bundle)
    doc["keys"]["registrations"] = [_registration("ada", ADA_KEY, as_of="2026-01-01T12:00:00Z")]
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and "as of 2026-01-01T12:00:00Z" in out["error"] and "2026-01-02T00:00:00Z" in out["error"]
    doc["keys"]["registrations"][0]["as_of"] = "2026-03-01T00:00:00Z"  # moved later by hand: the signature breaks
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and "hub's signature on the registration" in out["error"]


def test_a_registration_without_as_of_proves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The hub's stored registrations (and bundles exported before as_of existed) carry no as-of time: genuine
    hub signatures, but they could predate any revocation, so offline verification asks for a fresh export."""
    bundle = _bundle(tmp_path)
    doc = _doc(bundle)
    reg = sign_registration(HUB_KEY, KeyRegistration("ada", public_key_of(ADA_KEY), "2025-12-31T00:00:00Z"))
    doc["keys"]["registrations"] = [{"account": "ada", "public_key": reg.public_key.hex(),
                                     "registered_at": reg.registered_at, "revoked_at": "",
                                     "hub_signature": reg.hub_signature.hex()}]
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and "no as-of time" in out["error"] and "export the bundle again" in out["error"]


def test_a_revoked_registration_counts_before_its_revocation_only(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    doc = _doc(bundle)
    doc["keys"]["registrations"] = [_registration("ada", ADA_KEY, revoked_at="2026-01-03T00:00:00Z")]
    _save(bundle, doc)
    assert _verify(capsys, bundle)[0] == 0  # both revisions were signed before it
    doc["keys"]["registrations"] = [_registration("ada", ADA_KEY, revoked_at="2026-01-01T06:00:00Z")]
    _save(bundle, doc)
    code, out = _verify(capsys, bundle)
    assert code == 1 and "until 2026-01-01T06:00:00Z" in out["error"]
