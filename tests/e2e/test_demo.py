"""End to end: the README's main job, ``spime demo``, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_spime_demo_runs_the_whole_story() -> None:
    spime = Path(sys.executable).with_name("spime")
    argv = [str(spime)] if spime.exists() else [sys.executable, "-m", "hub.client.cli"]
    proc = subprocess.run([*argv, "demo", "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    assert {p["design"] for p in doc["pushed"]} >= {"calibration-cube", "shelf-bracket",
                                                     "box-with-lid", "cable-clip"}
    assert doc["proposal"]["state"] == "accepted"
    refused = [r for r in doc["remix"] if not r["ok"]]
    assert any("FAILED_PRECONDITION" in r["detail"] and "cable-clip" in r["detail"]
               for r in refused)
    assert doc["verify"] == {"online": True, "offline": True}
    assert "== Remix under the license rules" in proc.stderr
