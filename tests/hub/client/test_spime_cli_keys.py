"""``spime-hub key show``: the hub's own key, made once, private (``spime key`` runs in test_spime_cli_hub.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hub.__main__ import main as hub_main
from hub.store.hub_key import HUB_KEY_NAME


def test_hub_key_show_is_stable_and_private(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "hub-data"
    assert hub_main(["migrate", "--data", str(data)]) == 0  # the hub makes its key; key show only reads it
    assert hub_main(["key", "show", "--data", str(data), "--json"]) == 0
    assert hub_main(["key", "show", "--data", str(data), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    first, second = json.loads(out[0]), json.loads(out[1])
    assert first == second and len(bytes.fromhex(first["public_key"])) == 32
    assert stat.S_IMODE((data / HUB_KEY_NAME).stat().st_mode) == 0o600
    (data / HUB_KEY_NAME).chmod(0o644)
    assert hub_main(["key", "show", "--data", str(data)]) == 1
    assert "chmod 600" in capsys.readouterr().err
