"""The ``spime`` CLI without a hub: arguments, init, keys, offline bundle verify, safe writes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from hub.client.cli import COMMAND_MODULES, main
from hub.client.common import ClientError
from hub.client.download import plan_targets
from hub.client.local import scan_design_dir
from hub.domain import FileEntry
from hub.keys import KeyRegistration, vouch
from hub.manifest import parse_manifest
from hub.provenance import generate_private_key, public_key_of, revision_id, sign

DESIGNS = Path(__file__).resolve().parents[3] / "designs"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_command_modules_include_check() -> None:
    assert "check" in COMMAND_MODULES


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["push"], ["fork", "a"],
                                  ["decline", "d", "p"], ["export", "d"],
                                  ["log", "d", "--limit", "x"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, _ = run(capsys, *argv)
    assert code == 2 and out == ""


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "push" in out


def test_missing_hub_address_is_a_usage_error(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPIME_HUB", raising=False)
    code, _, err = run(capsys, "whoami")
    assert code == 2 and "SPIME_HUB" in err


def test_bad_ref_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show", "cube@", "--hub", "127.0.0.1:1", "--token", "t")
    assert code == 2 and "DESIGN@REVISION" in err


def test_init_scaffolds_a_valid_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "My Widget"
    folder.mkdir()
    (folder / "widget.stl").write_bytes(b"solid x\nendsolid x\n")
    (folder / "widget.scad").write_text("cube(1);\n")
    code, out, _ = run(capsys, "init", str(folder), "--license", "CERN-OHL-S-2.0", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["manifest"]["name"] == "my-widget"
    m = parse_manifest((folder / "spime.toml").read_text())
    assert m.license == "CERN-OHL-S-2.0" and m.parts[0].files == ("widget.stl",)
    assert m.openscad is not None and m.openscad.source == "widget.scad"
    _, _, files = scan_design_dir(folder)
    assert [f.path for f in files] == ["widget.scad", "widget.stl"]
    code, _, err = run(capsys, "init", str(folder))
    assert code == 2 and "already exists" in err


def test_init_refuses_a_bad_license(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "init", str(tmp_path / "x"), "--license", "NOT-A-LICENSE")
    assert code == 2 and "NOT-A-LICENSE" in err
    assert not (tmp_path / "x" / "spime.toml").exists()


def test_scan_refuses_missing_files(tmp_path: Path) -> None:
    shutil.copytree(DESIGNS / "box-with-lid", tmp_path / "box")
    (tmp_path / "box" / "lid.stl").unlink()
    with pytest.raises(ClientError, match="lid.stl"):
        scan_design_dir(tmp_path / "box")


def test_key_gen_writes_a_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "cfg" / "key"
    code, out, _ = run(capsys, "key", "gen", "--key", str(key), "--json")
    assert code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(bytes.fromhex(json.loads(out)["public_key"])) == 32
    code, _, err = run(capsys, "key", "gen", "--key", str(key))
    assert code == 2 and "already exists" in err
    os.environ.pop("SPIME_KEY", None)
    code, out, _ = run(capsys, "key", "show", "--key", str(key))
    assert code == 0 and len(out.strip()) == 64


@pytest.mark.parametrize("name", ["../evil.stl", "/etc/passwd", "a/../../x", "sub/\x00x",
                                  "spime.toml"])
def test_get_refuses_to_write_outside_the_folder(tmp_path: Path, name: str) -> None:
    files = [{"path": "ok.stl", "sha256": "0" * 64, "size": 1},
             {"path": name, "sha256": "1" * 64, "size": 1}]
    with pytest.raises(ClientError, match="refusing"):
        plan_targets(tmp_path / "out", files)
    assert not (tmp_path / "out").exists()


def test_get_refuses_a_symlinked_escape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    with pytest.raises(ClientError, match="outside"):
        plan_targets(out, [{"path": "link/x.stl", "sha256": "0" * 64, "size": 1}])


# -- offline bundles, built with the same provenance code the hub uses ----------------

def _revision(folder: Path, parents: list[str], author: str, when: str, message: str,
              key: bytes | None) -> tuple[dict[str, Any], list[Path]]:
    text, manifest, files = scan_design_dir(folder)
    entries = [FileEntry(path=f.path, sha256=f.sha256, size=f.size) for f in files]
    rid = revision_id(parents, manifest.to_dict(), entries, author, when, message)
    rev = {"id": rid, "design": manifest.name, "parent_ids": parents, "manifest_toml": text,
           "files": [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in entries],
           "author": author, "created_at": when, "message": message,
           "signature": sign(key, rid).hex() if key else "",
           "public_key": public_key_of(key).hex() if key else "",
           "kind": "push", "reports": [], "attributions": []}
    return rev, [f.abspath for f in files]


HUB_KEY = generate_private_key()  # stands in for a hub's own key: it signs the key registrations
ADA_KEY = generate_private_key()


def _registration(account: str, key: bytes, hub_key: bytes = HUB_KEY, as_of: str = "2026-02-01T00:00:00Z",
                  revoked_at: str = "") -> dict[str, str]:
    """A registration as the hub vouches for it at ``as_of`` (after both revisions of _bundle)."""
    reg = vouch(hub_key, KeyRegistration(account, public_key_of(key), "2025-12-31T00:00:00Z", revoked_at), as_of)
    return {"account": reg.account, "public_key": reg.public_key.hex(), "registered_at": reg.registered_at,
            "revoked_at": reg.revoked_at, "as_of": reg.as_of, "hub_signature": reg.hub_signature.hex()}


def _bundle(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(DESIGNS / "calibration-cube", work)
    key = ADA_KEY
    r1, paths1 = _revision(work, [], "ada", "2026-01-01T00:00:00Z", "first", key)
    (work / "calibration-cube.scad").write_text("// v2\n" + (work / "calibration-cube.scad").read_text())
    r2, paths2 = _revision(work, [r1["id"]], "ada", "2026-01-02T00:00:00Z", "second", key)
    bundle = tmp_path / "bundle"
    (bundle / "blobs").mkdir(parents=True)
    for rev, paths in ((r1, paths1), (r2, paths2)):
        for f, p in zip(rev["files"], paths):
            if rev is r1 and p.name.endswith(".scad"):
                (bundle / "blobs" / f["sha256"]).write_bytes(
                    (DESIGNS / "calibration-cube" / p.name).read_bytes())
            else:
                shutil.copyfile(p, bundle / "blobs" / f["sha256"])
    design = {"slug": "calibration-cube", "head_revision_id": r2["id"]}
    keys = {"hub_public_key": public_key_of(HUB_KEY).hex(), "registrations": [_registration("ada", key)]}
    doc = {"format": "spimeforge-bundle/2", "design": design, "revisions": [r1, r2], "keys": keys}
    (bundle / "bundle.json").write_text(json.dumps(doc))
    return bundle


def _verify(capsys: pytest.CaptureFixture[str], bundle: Path, *pin: str) -> tuple[int, dict[str, Any]]:
    pin = pin or ("--hub-key", public_key_of(HUB_KEY).hex())
    code, out, _ = run(capsys, "verify", "--bundle", str(bundle), "--json", *pin)
    return code, json.loads(out)


def test_verify_accepts_an_intact_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _verify(capsys, _bundle(tmp_path))
    assert code == 0 and doc["ok"]
    assert doc["revisions"] == 2 and len(doc["signed"]) == 2 and doc["files_checked"] == 4


def test_verify_detects_a_changed_blob_byte(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    blob = next(p for p in (bundle / "blobs").iterdir() if p.stat().st_size > 1000)
    data = bytearray(blob.read_bytes())
    data[500] ^= 0x01
    blob.write_bytes(bytes(data))
    code, doc = _verify(capsys, bundle)
    assert code == 1 and not doc["ok"] and "hashes to" in doc["error"]


def _edit_revisions(bundle: Path, edit: Any) -> None:
    doc = json.loads((bundle / "bundle.json").read_text())
    edit(doc["revisions"])
    (bundle / "bundle.json").write_text(json.dumps(doc))


def test_verify_detects_a_changed_manifest(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)

    def edit(revs: list[dict[str, Any]]) -> None:
        revs[0]["manifest_toml"] = revs[0]["manifest_toml"].replace('"CC0-1.0"', '"CC-BY-4.0"')

    _edit_revisions(bundle, edit)
    code, doc = _verify(capsys, bundle)
    assert code == 1 and "altered" in doc["error"]


def test_verify_detects_a_forged_signature(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    mallory = generate_private_key()

    def edit(revs: list[dict[str, Any]]) -> None:
        revs[1]["signature"] = sign(mallory, revs[1]["id"]).hex()

    _edit_revisions(bundle, edit)
    code, doc = _verify(capsys, bundle)
    assert code == 1 and "signature" in doc["error"]


def test_verify_detects_a_missing_blob(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    next((bundle / "blobs").iterdir()).unlink()
    code, doc = _verify(capsys, bundle)
    assert code == 1 and "missing" in doc["error"]


def test_verify_without_target_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "verify")
    assert code == 2


def test_verify_of_a_non_bundle_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "verify", "--bundle", str(tmp_path))
    assert code == 1 and "not a bundle" in err


EXPORTS = {
    "hub.manifest": ["MANIFEST_NAME", "MAX_MANIFEST_CHARS", "MAX_TOML_DEPTH", "MESH_SUFFIXES", "Manifest", "OpenScad", "Part",
                     "dump_manifest", "manifest_from_dict", "missing_files", "parse_manifest",
                     "safe_relative_path", "toml_depth"],
    "hub.client.cli": ["COMMAND_MODULES", "build_parser", "main"],
    "hub.client.local": ["CHUNK", "HASH_THREADS", "LocalFile", "default_key_path", "hash_file",
                         "iter_chunks", "load_key", "read_base", "read_local_file", "read_manifest", "safe_target",
                         "scan_design_dir", "write_base"],
    "hub.client.chain": ["BUNDLE_FORMAT", "collect_chain", "collect_keys", "read_bundle", "remote_blob_hasher",
                         "verify_revisions", "write_bundle"],
    "hub.client.connection": ["Hub", "connect", "opened", "retry_delay", "translate"],
    "hub.client.embedded": ["EmbeddedHub", "free_port", "hub_command"],
    "hub.client.commands.push": ["register", "run", "upload_missing"],
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_exported_members(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPORTS[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"


@pytest.mark.parametrize("module", [m for m in COMMAND_MODULES if m != "check"])
def test_every_command_module_registers(module: str) -> None:
    import argparse
    import importlib

    mod = importlib.import_module(f"hub.client.commands.{module}")
    parser = argparse.ArgumentParser()
    mod.register(parser.add_subparsers())
