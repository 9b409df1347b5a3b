"""The ``spime`` CLI against a real hub (a ``spime-hub serve`` subprocess on 127.0.0.1).

One hub serves the whole module (started with the CLI's own EmbeddedHub, as
``spime demo`` does), once on SQLite and once on PostgreSQL; each test uses its own design names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.client.cli import main
from hub.client.embedded import EmbeddedHub
from tests.fixtures.postgres import create_database

DESIGNS = Path(__file__).resolve().parents[3] / "designs"


def embedded_on(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EmbeddedHub:
    """A hub (not started yet) on the database the fixture's parameter names: "sqlite" or "postgresql"."""
    database = create_database(request.getfixturevalue("postgres_server")) if request.param == "postgresql" else ""
    return EmbeddedHub(data=tmp_path_factory.mktemp("hub"), database=database)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def embedded_hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedHub]:
    embedded = embedded_on(request, tmp_path_factory)
    for name in ("alice", "bob", "carol"):
        embedded.add_user(name, "designer")
    embedded.add_user("cust", "customer")
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


class Spime:
    """Runs ``spime`` in process as one user and returns (exit code, JSON or None, stderr)."""

    def __init__(self, hub: EmbeddedHub, capsys: pytest.CaptureFixture[str]) -> None:
        self.hub = hub
        self.capsys = capsys

    def __call__(self, user: str, *argv: str, json_out: bool = True
                 ) -> tuple[int, Any, str]:
        self.capsys.readouterr()
        extra = ["--json"] if json_out else []
        code = main([*argv, *extra, "--hub", self.hub.address, "--token", self.hub.tokens[user]])
        out, err = self.capsys.readouterr()
        doc = json.loads(out) if json_out and out.strip() else None
        if json_out and code == 0:
            assert doc is not None, f"no JSON on stdout: {err}"
        return code, doc, err

    def ok(self, user: str, *argv: str) -> Any:
        code, doc, err = self(user, *argv)
        assert code == 0, err
        return doc


@pytest.fixture
def spime(embedded_hub: EmbeddedHub, capsys: pytest.CaptureFixture[str]) -> Spime:
    return Spime(embedded_hub, capsys)


def _copy(tmp_path: Path, design: str, slug: str) -> Path:
    folder = tmp_path / slug
    shutil.copytree(DESIGNS / design, folder)
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace(f'name = "{design}"', f'name = "{slug}"'))
    return folder


def _make_unique(folder: Path) -> None:
    """Give the design blobs no other test has uploaded (blobs are shared by hash)."""
    for scad in folder.glob("*.scad"):
        scad.write_text(scad.read_text() + f"// copy {folder.name}\n")
    (folder / "NOTES.md").write_text(f"Notes for {folder.name}\n")


def test_whoami(spime: Spime) -> None:
    doc = spime.ok("alice", "whoami")
    assert doc["name"] == "alice" and doc["role"] == "designer"


def test_push_log_show_get_round_trip(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "box-with-lid", "rt-box")
    pushed = spime.ok("alice", "push", str(folder), "--new", "-m", "first")
    assert pushed["blobs_uploaded"] == 3 and not pushed["is_proposal"]
    log = spime.ok("alice", "log", "rt-box")
    assert [r["id"] for r in log["revisions"]] == [pushed["revision_id"]]
    shown = spime.ok("cust", "show", f"rt-box@{pushed['revision_id'][:12]}")
    assert shown["design"]["license"] == "CERN-OHL-S-2.0"
    assert {f["path"] for f in shown["revision"]["files"]} == {"box.stl", "lid.stl",
                                                               "box-with-lid.scad"}
    out = tmp_path / "fetched"
    got = spime.ok("cust", "get", "rt-box", "-o", str(out))
    assert got["verified"] and got["revision_id"] == pushed["revision_id"]
    for name in ("box.stl", "lid.stl", "box-with-lid.scad", "spime.toml"):
        assert (out / name).read_bytes() == (folder / name).read_bytes()


def test_unchanged_repush_sends_zero_bytes(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "rp-cube")
    first = spime.ok("alice", "push", str(folder), "--new")
    again = spime.ok("alice", "push", str(folder))
    assert again["unchanged"] and again["bytes_uploaded"] == 0 and again["blobs_uploaded"] == 0
    assert len(spime.ok("alice", "log", "rp-cube")["revisions"]) == 1
    assert again["revision_id"] == first["revision_id"]


def test_second_revision_uploads_only_the_changed_file(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "shelf-bracket", "rev-bracket")
    spime.ok("alice", "push", str(folder), "--new")
    scad = folder / "shelf-bracket.scad"
    scad.write_text(scad.read_text() + "\n// tweak\n")
    second = spime.ok("alice", "push", str(folder), "-m", "tweak")
    assert second["blobs_uploaded"] == 1 and second["bytes_uploaded"] == scad.stat().st_size
    revs = spime.ok("alice", "log", "rev-bracket")["revisions"]
    assert len(revs) == 2 and revs[0]["parent_ids"] == [revs[1]["id"]]


def test_signed_push_verifies_online_and_offline(spime: Spime, tmp_path: Path) -> None:
    key = tmp_path / "key"
    assert main(["key", "gen", "--key", str(key)]) == 0
    folder = _copy(tmp_path, "calibration-cube", "signed-cube")
    code, _, err = spime("alice", "push", str(folder), "--new", "--key", str(key))
    assert code == 1 and "PERMISSION_DENIED" in err and "spime key register" in err  # not registered yet
    spime.ok("alice", "key", "register", "--key", str(key))
    pushed = spime.ok("alice", "push", str(folder), "--new", "--key", str(key))
    assert pushed["signed"]
    log = spime.ok("alice", "log", "signed-cube")
    assert log["revisions"][0]["signature"]
    online = spime.ok("alice", "verify", "signed-cube")
    assert online["ok"] and online["signed"] == [pushed["revision_id"]]
    bundle = tmp_path / "bundle"
    spime.ok("alice", "export", "signed-cube", "-o", str(bundle))
    hub_key = spime.ok("cust", "key", "hub")["public_key"]
    assert spime.ok("cust", "verify", "signed-cube", "--hub-key", hub_key)["hub_key"] == hub_key
    code, doc, _ = spime("cust", "verify", "signed-cube", "--hub-key", "ab" * 32)  # pinned another hub
    assert code == 1 and "not the pinned hub key" in doc["error"]
    assert main(["verify", "--bundle", str(bundle), "--json", "--hub-key", hub_key]) == 0
    assert main(["verify", "--bundle", str(bundle), "--json"]) == 1  # nothing pinned: authorship unproven
    blob = next((bundle / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes() + b"x")
    assert main(["verify", "--bundle", str(bundle), "--hub-key", hub_key]) == 1


def test_push_to_a_missing_design_without_new(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "nowhere-cube")
    code, _, err = spime("bob", "push", str(folder))
    assert code == 1 and "NOT_FOUND" in err and "--new" in err


def test_invalid_manifest_is_refused_locally(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "bad-cube")
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace('license = "CC0-1.0"', 'license = "CC0-9"'))
    code, _, err = spime("alice", "push", str(folder), "--new")
    assert code == 2 and "CC0-9" in err


def test_fork_of_nd_design_is_refused(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "cable-clip", "nd-clip")
    spime.ok("alice", "push", str(folder), "--new")
    code, _, err = spime("bob", "fork", "nd-clip", "--name", "nd-clip-remix")
    assert code == 1 and "FAILED_PRECONDITION" in err and "nd-clip" in err
    code, _, _ = spime("bob", "show", "nd-clip-remix")
    assert code == 1


def test_fork_and_remix_carry_attribution(spime: Spime, tmp_path: Path) -> None:
    spime.ok("alice", "push", str(_copy(tmp_path, "shelf-bracket", "fk-bracket")), "--new")
    spime.ok("alice", "push", str(_copy(tmp_path, "calibration-cube", "fk-cube")), "--new")
    fork = spime.ok("bob", "fork", "fk-bracket", "--name", "fk-bracket-gpl",
                    "--license", "GPL-3.0-or-later")
    assert fork["design"]["license"] == "GPL-3.0-or-later"
    assert any(a["design"] == "fk-bracket" for a in fork["design"]["attributions"])
    remix = spime.ok("bob", "fork", "fk-cube", "fk-bracket", "--name", "fk-remix",
                     "--license", "CC-BY-SA-4.0")
    assert len(remix["revision"]["parent_ids"]) == 2
    spime.ok("cust", "show", "fk-remix")


def test_proposal_accept_and_decline(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "gov-cube")
    spime.ok("alice", "push", str(folder), "--new")
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "1.0.1"'))
    proposal = spime.ok("bob", "push", str(folder), "-m", "bump")
    assert proposal["is_proposal"] and proposal["proposal_id"]
    head_before = spime.ok("alice", "show", "gov-cube")["design"]["head_revision_id"]
    assert head_before != proposal["revision_id"]
    code, _, err = spime("bob", "accept", "gov-cube", proposal["proposal_id"])
    assert code == 1 and "PERMISSION_DENIED" in err
    listed = spime.ok("alice", "proposals", "gov-cube")
    assert [p["id"] for p in listed["proposals"]] == [proposal["proposal_id"]]
    accepted = spime.ok("alice", "accept", "gov-cube", proposal["proposal_id"])
    assert accepted["proposal"]["state"] == "accepted"
    assert accepted["design"]["head_revision_id"] != head_before
    manifest.write_text(manifest.read_text().replace('version = "1.0.1"', 'version = "1.0.2"'))
    second = spime.ok("carol", "push", str(folder), "-m", "another bump")
    declined = spime.ok("alice", "decline", "gov-cube", second["proposal_id"],
                        "--reason", "not needed")
    assert declined["state"] == "declined" and declined["reason"] == "not needed"
    spime.ok("alice", "maintainer", "add", "gov-cube", "carol")
    manifest.write_text(manifest.read_text().replace('version = "1.0.2"', 'version = "1.0.3"'))
    direct = spime.ok("carol", "push", str(folder), "-m", "as maintainer")
    assert not direct["is_proposal"]


def test_stale_parent_is_aborted(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "stale-cube")
    spime.ok("alice", "push", str(folder), "--new")
    mine = tmp_path / "mine"
    spime.ok("alice", "get", "stale-cube", "-o", str(mine))
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', 'version = "1.1.0"'))
    spime.ok("alice", "push", str(folder))
    mine_manifest = mine / "spime.toml"
    mine_manifest.write_text(mine_manifest.read_text().replace('version = "1.0.0"',
                                                               'version = "2.0.0"'))
    code, _, err = spime("alice", "push", str(mine))
    assert code == 1 and "ABORTED" in err and "spime get" in err
    assert len(spime.ok("alice", "log", "stale-cube")["revisions"]) == 2


def test_search_by_license_and_tag(spime: Spime, tmp_path: Path) -> None:
    spime.ok("alice", "push", str(_copy(tmp_path, "cable-clip", "srch-clip")), "--new")
    found = spime.ok("cust", "search", "", "--license", "CC-BY-ND-4.0")
    assert "srch-clip" in [d["slug"] for d in found["designs"]]
    found = spime.ok("cust", "search", "cable", "--tag", "cable-management")
    assert "srch-clip" in [d["slug"] for d in found["designs"]]


def test_export_prov_and_okh(spime: Spime, tmp_path: Path) -> None:
    spime.ok("alice", "push", str(_copy(tmp_path, "box-with-lid", "exp-box")), "--new")
    prov = spime.ok("alice", "export", "exp-box", "--format", "prov",
                    "-o", str(tmp_path / "p.json"))
    doc = json.loads((tmp_path / "p.json").read_text())
    assert prov["bytes"] > 0 and "entity" in doc and "agent" in doc
    spime.ok("alice", "export", "exp-box", "--format", "okh", "-o", str(tmp_path / "o.toml"))
    assert "CERN-OHL-S-2.0" in (tmp_path / "o.toml").read_text()


def test_wrong_token_is_unauthenticated(embedded_hub: EmbeddedHub,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["whoami", "--hub", embedded_hub.address, "--token", "not-a-token"])
    _, err = capsys.readouterr()
    assert code == 1 and "UNAUTHENTICATED" in err and "SPIME_TOKEN" in err


def test_human_output_is_not_json(spime: Spime) -> None:
    code, _, _ = spime("alice", "whoami", json_out=False)
    assert code == 0


def test_interrupted_push_resumes_by_hash(spime: Spime, tmp_path: Path) -> None:
    from spimeforge.v1 import designs_pb2

    from hub.client.commands.push import upload_missing
    from hub.client.connection import opened
    from hub.client.local import scan_design_dir

    folder = _copy(tmp_path, "box-with-lid", "resume-box")
    _make_unique(folder)
    _, _, files = scan_design_dir(folder)
    args = type("Args", (), {"hub": spime.hub.address, "token": spime.hub.tokens["alice"],
                             "ca": None})()
    with opened(args) as conn:  # type: ignore[arg-type]
        missing = set(conn.call(conn.designs.MissingBlobs, designs_pb2.MissingBlobsRequest(
            sha256=[f.sha256 for f in files])).sha256)
        assert len(missing) >= 2
        first = next(f for f in files if f.sha256 in missing)
        assert upload_missing(conn, [first], progress=False) == (1, first.size)
    done = spime.ok("alice", "push", str(folder), "--new")
    assert done["blobs_uploaded"] == len(missing) - 1
    assert done["bytes_uploaded"] == sum(f.size for f in files
                                         if f.sha256 in missing and f is not first)


def test_push_shows_a_progress_bar_on_stderr(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "shelf-bracket", "progress-bracket")
    _make_unique(folder)
    code, _, err = spime("alice", "push", str(folder), "--new", json_out=False)
    # stderr is not a terminal here: plain lines (hub/client/progress.py), the last one "done"
    assert code == 0 and "uploading " in err and ": done (" in err and "\r" not in err


def test_tls_with_the_ca_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    certs = tmp_path / "tls"
    script = Path(__file__).resolve().parents[3] / "ops" / "tls" / "make-dev-ca.sh"
    subprocess.run(["bash", str(script), str(certs), "localhost", "127.0.0.1"], check=True,
                   capture_output=True, timeout=60)
    tls = EmbeddedHub(data=tmp_path / "hub", ca=certs / "ca.crt",
                      extra_args=("--tls-cert", str(certs / "hub.crt"),
                                  "--tls-key", str(certs / "hub.key")))
    tls.data.mkdir()
    tls.add_user("tina", "designer")
    tls.start()
    try:
        monkeypatch.setenv("SPIME_HUB", tls.address)
        monkeypatch.setenv("SPIME_TOKEN", tls.tokens["tina"])
        monkeypatch.setenv("SPIME_CA", str(certs / "ca.crt"))
        assert main(["whoami", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["name"] == "tina"
        monkeypatch.delenv("SPIME_CA")
        assert main(["whoami"]) == 1
        assert "UNAVAILABLE" in capsys.readouterr().err
    finally:
        tls.stop()


def test_get_resumes_a_partial_download_and_drops_a_corrupt_one(spime: Spime,
                                                                tmp_path: Path) -> None:
    folder = _copy(tmp_path, "shelf-bracket", "dl-bracket")
    spime.ok("alice", "push", str(folder), "--new")
    stl = (folder / "shelf-bracket.stl").read_bytes()
    # Partial downloads live under .spime/ (a name no revision file can take), named by content.
    part = Path(".spime") / "downloading" / f"{hashlib.sha256(stl).hexdigest()}.part"
    out = tmp_path / "out"
    (out / part).parent.mkdir(parents=True)
    (out / part).write_bytes(stl[:50_000])
    spime.ok("cust", "get", "dl-bracket", "-o", str(out))
    assert (out / "shelf-bracket.stl").read_bytes() == stl
    assert not (out / part).exists()
    again = tmp_path / "again"
    (again / part).parent.mkdir(parents=True)
    (again / part).write_bytes(b"garbage" * 1000)
    code, _, err = spime("cust", "get", "dl-bracket", "-o", str(again))
    assert code == 1 and "corrupted" in err
    assert not (again / "shelf-bracket.stl").exists()
    assert not (again / part).exists()
    spime.ok("cust", "get", "dl-bracket", "-o", str(again))
    assert (again / "shelf-bracket.stl").read_bytes() == stl


def test_a_customer_cannot_push(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "cust-cube")
    code, _, err = spime("cust", "push", str(folder), "--new")
    assert code == 1 and "PERMISSION_DENIED" in err
    code, _, err = spime("cust", "show", "cust-cube")
    assert code == 1 and "NOT_FOUND" in err


def test_register_list_rotate_revoke(spime: Spime, tmp_path: Path) -> None:
    key = tmp_path / "bob.key"
    made = json.loads(_key_gen(key))
    reg = spime.ok("bob", "key", "register", "--key", str(key))
    assert reg["fingerprint"] == made["fingerprint"] and reg["account"] == "bob" and not reg["revoked_at"]
    listed = spime.ok("carol", "key", "list", "bob")
    assert [k["fingerprint"] for k in listed["keys"]] == [reg["fingerprint"]]
    assert listed["hub_public_key"] == spime.ok("carol", "key", "hub")["public_key"]
    code, _, err = spime("bob", "key", "register", "--key", str(key))
    assert code == 1 and "ALREADY_EXISTS" in err
    # rotation: a new key in the file, the old kept beside it and revoked
    rotated = spime.ok("bob", "key", "rotate", "--key", str(key))
    assert rotated["revoked"]["fingerprint"] == reg["fingerprint"] and rotated["revoked"]["revoked_at"]
    assert rotated["registered"]["fingerprint"] != reg["fingerprint"]
    assert Path(rotated["old_key_file"]).read_text().strip() != key.read_text().strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    states = {k["fingerprint"]: k["revoked_at"] for k in spime.ok("bob", "key", "list")["keys"]}
    assert states[reg["fingerprint"]] and not states[rotated["registered"]["fingerprint"]]
    # pushes sign with the new key; the old one no longer counts
    folder = _copy(tmp_path, "calibration-cube", "bob-rotated")
    assert spime.ok("bob", "push", str(folder), "--new", "--key", str(key))["signed"]
    code, _, err = spime("bob", "push", str(_copy(tmp_path / "old", "calibration-cube", "bob-old")), "--new",
                         "--key", rotated["old_key_file"])
    assert code == 1 and "FAILED_PRECONDITION" in err and "revoked" in err
    new_fp = rotated["registered"]["fingerprint"]
    code, _, err = spime("bob", "key", "revoke", new_fp, "--at", "2000-01-01T00:00:00Z")
    assert code == 1 and "INVALID_ARGUMENT" in err and "before" in err
    assert spime.ok("bob", "key", "revoke", new_fp)["revoked_at"]


def _key_gen(key: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["key", "gen", "--key", str(key), "--json"]) == 0
    return out.getvalue()
