"""`spime grant` end to end: signed with the user's registered key, listed with the key that signed (both databases)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub import grants as grant_rules
from hub.client.cli import main
from tests.hub.clocked import clocked_fixture
from tests.hub.fake_agent import ClockedHub
from tests.hub.test_orders_api import FILES, cube_manifest

hub = clocked_fixture()  # a clocked hub, once on SQLite and once on PostgreSQL


def _spime(hub: ClockedHub, capsys: pytest.CaptureFixture[str], user: str, *argv: str) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main([*argv, "--json", "--hub", hub.address, "--token", hub.tokens[user]])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_grant_is_signed_with_the_registered_key_and_listed_with_its_fingerprint(
        hub: ClockedHub, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    revision = hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True).revision_id
    key = tmp_path / "alice.key"
    grant = ("grant", f"cube@{revision[:12]}", "--scope", "paid", "--node", "lab-1", "--until", "2030-01-01")
    # no key yet: the hub refuses the unsigned grant and says how to sign
    code, _, err = _spime(hub, capsys, "alice", *grant, "--key", str(key))
    assert code == 1 and "INVALID_ARGUMENT" in err and "spime key gen" in err
    assert main(["key", "gen", "--key", str(key)]) == 0
    capsys.readouterr()
    # a key that is not registered yet
    code, _, err = _spime(hub, capsys, "alice", *grant, "--key", str(key))
    assert code == 1 and "PERMISSION_DENIED" in err and "not registered" in err
    code, reg, err = _spime(hub, capsys, "alice", "key", "register", "--key", str(key))
    assert code == 0, err
    code, recorded, err = _spime(hub, capsys, "alice", *grant, "--key", str(key))
    assert code == 0, err
    assert recorded["revision_id"] == revision and recorded["until"] == "2030-01-01T23:59:59Z"
    assert recorded["key_fingerprint"] == reg["fingerprint"] and recorded["signature_ok"]
    signed = grant_rules.parse_statement(recorded["statement"])
    assert (signed.design, signed.revision_id, signed.node, signed.granted_by) == ("cube", revision, "lab-1", "alice")
    code, listed, _ = _spime(hub, capsys, "carol", "grant", "cube", "--list")
    assert code == 0 and listed["grants"] == [recorded]
    capsys.readouterr()
    assert main(["grant", "cube", "--list", "--hub", hub.address, "--token", hub.tokens["carol"]]) == 0
    assert f"signed by key {reg['fingerprint']}" in capsys.readouterr().out
    # bob's key is his, not a maintainer's
    bobs = tmp_path / "bob.key"
    assert main(["key", "gen", "--key", str(bobs)]) == 0
    assert _spime(hub, capsys, "bob", "key", "register", "--key", str(bobs))[0] == 0
    code, _, err = _spime(hub, capsys, "bob", "grant", "cube", "--scope", "paid", "--any", "--until", "2030-01-01",
                          "--key", str(bobs))
    assert code == 1 and "PERMISSION_DENIED" in err
    # after revoking her key alice cannot grant with it
    assert _spime(hub, capsys, "alice", "key", "revoke", reg["fingerprint"])[0] == 0
    code, _, err = _spime(hub, capsys, "alice", *grant, "--key", str(key))
    assert code == 1 and "PERMISSION_DENIED" in err and "revoked" in err
    code, _, err = _spime(hub, capsys, "alice", "grant", "cube", "--any")
    assert code == 2 and "--scope" in err


def test_grant_revoke_signs_a_revocation_and_the_list_shows_the_grant_revoked(
        hub: ClockedHub, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hub.push("alice", "cube", dict(FILES), manifest=cube_manifest(), create=True)
    key = tmp_path / "alice.key"
    assert main(["key", "gen", "--key", str(key)]) == 0
    assert _spime(hub, capsys, "alice", "key", "register", "--key", str(key))[0] == 0
    code, recorded, err = _spime(hub, capsys, "alice", "grant", "cube", "--scope", "paid", "--any", "--until",
                                 "2030-01-01", "--key", str(key))
    assert code == 0, err
    code, revoked, err = _spime(hub, capsys, "alice", "grant", "revoke", recorded["id"], "--key", str(key))
    assert code == 0, err
    assert revoked["revoked"] and revoked["revoked_by"] == "alice" and revoked["revocation_ok"]
    assert revoked["revocation_key_fingerprint"] == recorded["key_fingerprint"]
    code, listed, _ = _spime(hub, capsys, "carol", "grant", "cube", "--list")
    assert code == 0 and listed["grants"] == [revoked]
    assert main(["grant", "cube", "--list", "--hub", hub.address, "--token", hub.tokens["carol"]]) == 0
    assert f"REVOKED at {revoked['revoked_at']} by alice" in capsys.readouterr().out
    # a second revocation: refused, saying when and by whom it was revoked
    code, _, err = _spime(hub, capsys, "alice", "grant", "revoke", recorded["id"], "--key", str(key))
    assert code == 1 and "FAILED_PRECONDITION" in err and "revoked already" in err
    code, _, err = _spime(hub, capsys, "alice", "grant", "revoke", "0" * 16, "--key", str(key))
    assert code == 1 and "NOT_FOUND" in err
    for argv in (("grant", "cube", recorded["id"]), ("grant", "revoke")):
        code, _, err = _spime(hub, capsys, "alice", *argv)
        assert code == 2 and "spime grant revoke ID" in err, argv
