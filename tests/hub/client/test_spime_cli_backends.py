"""The ``spime`` CLI against the shared hub fixtures: SQLite (``hub``) and PostgreSQL (``hub_pg``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hub.client.cli import main

DESIGNS = Path(__file__).resolve().parents[3] / "designs"


@pytest.mark.parametrize("backend", ["hub", "hub_pg"])
def test_round_trip_fork_rules_and_proposal(backend: str, request: pytest.FixtureRequest,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    hub = request.getfixturevalue(backend)

    def spime(user: str, *argv: str) -> tuple[int, dict[str, object] | None, str]:
        capsys.readouterr()
        code = main([*argv, "--json", "--hub", hub.address, "--token", hub.tokens[user]])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else None, err

    for name in ("shelf-bracket", "cable-clip"):
        shutil.copytree(DESIGNS / name, tmp_path / name)
        code, doc, err = spime("alice", "push", str(tmp_path / name), "--new")
        assert code == 0 and doc is not None and doc["blobs_uploaded"] == 2, err
    code, doc, _ = spime("alice", "push", str(tmp_path / "shelf-bracket"))
    assert code == 0 and doc is not None and doc["unchanged"] and doc["bytes_uploaded"] == 0
    code, _, err = spime("bob", "fork", "cable-clip", "--name", "clip-remix")
    assert code == 1 and "FAILED_PRECONDITION" in err and "cable-clip" in err
    scad = tmp_path / "shelf-bracket" / "shelf-bracket.scad"
    scad.write_text(scad.read_text() + "// bob's idea\n")
    code, doc, err = spime("bob", "push", str(tmp_path / "shelf-bracket"), "-m", "idea")
    assert code == 0 and doc is not None and doc["is_proposal"], err
    code, accepted, err = spime("alice", "accept", "shelf-bracket", str(doc["proposal_id"]))
    assert code == 0 and accepted is not None, err
    code, _, err = spime("carol", "get", "shelf-bracket", "-o", str(tmp_path / "got"))
    assert code == 0, err
    assert (tmp_path / "got" / "shelf-bracket.scad").read_bytes() == scad.read_bytes()
    code, verified, err = spime("carol", "verify", "shelf-bracket")
    assert code == 0 and verified is not None and verified["revisions"] == 2, err
