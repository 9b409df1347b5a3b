"""``spime check``: exit codes, one JSON document on stdout, repair output."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hub.client.cli import main
from slicer_bridge.mesh_io import load_mesh, write_binary_stl

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "meshes" / "trimesh"


def _cube(path: Path, drop_face: bool = False) -> Path:
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float) * 20
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    write_binary_stl(path, corners, faces[1:] if drop_face else faces)
    return path


def _real(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.decompress((DATA / f"{name}.gz").read_bytes()))
    return path


def _json(capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_printable_mesh_exits_0_with_the_documented_json(tmp_path: Path, capsys) -> None:
    assert main(["check", str(_cube(tmp_path / "cube.stl")), "--json"]) == 0
    doc, err = _json(capsys)
    assert doc["ok"] is True
    assert doc["faces"] == 12 and doc["bodies"] == 1
    assert doc["extents_mm"] == [20.0, 20.0, 20.0]
    assert all({"code", "severity", "message"} <= f.keys() for f in doc["findings"])
    assert "checking" in err


def test_unprintable_mesh_exits_1(tmp_path: Path, capsys) -> None:
    assert main(["check", str(_real(tmp_path, "chair_model.obj")), "--json"]) == 1
    doc, _ = _json(capsys)
    assert doc["ok"] is False
    assert "zero_volume" in {f["code"] for f in doc["findings"] if f["severity"] == "error"}


def test_human_output(tmp_path: Path, capsys) -> None:
    assert main(["check", str(_real(tmp_path, "shared.STL"))]) == 1
    out, _ = capsys.readouterr()
    assert "NOT printable" in out and "non_manifold_edges" in out


def test_unreadable_file_exits_1_with_the_reason(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty.stl"
    path.write_bytes(b"")
    assert main(["check", str(path), "--json"]) == 1
    doc, _ = _json(capsys)
    assert doc["findings"][0]["code"] == "empty"


def test_printer_profile(tmp_path: Path, capsys) -> None:
    plate = str(_real(tmp_path, "plate_holes.STL"))
    assert main(["check", plate, "--printer", "prusa_mini", "--json"]) == 1
    doc, err = _json(capsys)
    assert doc["build_volume_mm"] == [180.0, 180.0, 180.0]
    assert "Prusa" in err or "MINI" in err.upper()


def test_printer_profile_by_ini_path(tmp_path: Path, capsys) -> None:
    ini = ROOT / "slicer_bridge" / "profiles" / "creality_ender3.ini"
    assert main(["check", str(_cube(tmp_path / "cube.stl")), "--printer", str(ini),
                 "--json"]) == 0
    doc, _ = _json(capsys)
    assert doc["build_volume_mm"][:2] == [220.0, 220.0]


@pytest.mark.parametrize("argv", [
    ["check", "/nonexistent/file.stl"],
    ["check", "{cube}", "--printer", "no_such_printer"],
    ["check", "{cube}", "--repair"],
    ["check", "{cube}", "-o", "{out}"],
    ["check"],
])
def test_usage_errors_exit_2(tmp_path: Path, capsys, argv: list[str]) -> None:
    cube = _cube(tmp_path / "cube.stl")
    args = [a.format(cube=cube, out=tmp_path / "o.stl") for a in argv]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err


def test_repair_writes_a_printable_mesh(tmp_path: Path, capsys) -> None:
    out = tmp_path / "fixed.stl"
    assert main(["check", str(_cube(tmp_path / "open.stl", drop_face=True)), "--repair",
                 "-o", str(out), "--json"]) == 0
    doc, _ = _json(capsys)
    assert doc["repaired"] is True
    assert "repaired_holes" in {f["code"] for f in doc["findings"]}
    assert doc["repaired_path"] == str(out)
    assert load_mesh(out).face_count == 12
    assert main(["check", str(out), "--json"]) == 0
    capsys.readouterr()


def test_console_run_prints_exactly_one_json_document(tmp_path: Path) -> None:
    cube = _cube(tmp_path / "cube.stl")
    done = subprocess.run([sys.executable, "-m", "hub.client.cli", "check", str(cube), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    bad = subprocess.run([sys.executable, "-m", "hub.client.cli", "check",
                          str(_real(tmp_path, "soup.stl")), "--json"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["ok"] is False
