"""``.spime/hashes.json`` and ``.spime/base`` are caches: corrupt, hostile or not a regular
file, they are ignored, never trusted, and never block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.client.local import read_base, write_base
from hub.client.statcache import CACHE_PATH, StatCache, stat_key

ROOT = Path(__file__).resolve().parents[3]


def _folder(tmp_path: Path) -> tuple[Path, list[int]]:
    folder = tmp_path / "design"
    (folder / ".spime").mkdir(parents=True)
    (folder / "box.stl").write_bytes(b"solid box\nendsolid box\n")
    return folder, list(stat_key((folder / "box.stl").stat()))


@pytest.mark.parametrize("hash_value", ["../../../../etc/passwd", ["x"], 7, None, "A" * 64,
                                        "a" * 63, "a" * 64 + "\n", "g" * 64])
def test_a_cached_hash_that_is_not_64_lowercase_hex_is_dropped(tmp_path: Path, hash_value: Any) -> None:
    folder, key = _folder(tmp_path)
    (folder / CACHE_PATH).write_text(json.dumps(
        {"version": 1, "files": {"box.stl": [key, hash_value], "ok.stl": [key, "a" * 64]}}))
    cache = StatCache(folder)
    assert cache.lookup("box.stl", (folder / "box.stl").stat()) is None
    assert cache.lookup("ok.stl", (folder / "box.stl").stat()) == "a" * 64


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, '{"version": 1, "files": '
                                  + '{"a": ' * 50000 + "1" + "}" * 50001, "\xff", "[]",
                                  '{"version": 1, "files": {"box.stl": [[1, 2, 3, true], "' + "a" * 64 + '"]}}',
                                  '{"version": 1, "files": {"box.stl": [[1, 2, 3], "' + "a" * 64 + '"]}}',
                                  '{"version": 1, "files": {"box.stl": "x"}}'])
def test_a_corrupt_hash_cache_is_ignored(tmp_path: Path, text: str) -> None:
    folder, _ = _folder(tmp_path)
    (folder / CACHE_PATH).write_bytes(text.encode("utf-8", "surrogateescape"))
    assert StatCache(folder).lookup("box.stl", (folder / "box.stl").stat()) is None


@pytest.mark.parametrize("base", [
    "[" * 100000 + "]" * 100000,
    json.dumps({"design": "cache-box", "revision": "../../x"}),
    json.dumps({"design": "cache-box", "revision": {"a": 1}}),
    json.dumps({"design": "cache-box", "revision": "\x1b[2J"}),
    json.dumps({"design": "cache-box", "revision": "A" * 64}),
    json.dumps({"design": "../x", "revision": "a" * 64}),
    json.dumps({"design": ["cache-box"], "revision": "a" * 64}),
])
def test_a_corrupt_base_is_ignored(tmp_path: Path, base: str) -> None:
    folder, _ = _folder(tmp_path)
    (folder / ".spime" / "base").write_text(base)
    assert read_base(folder) == {}


def test_a_well_formed_base_round_trips(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    write_base(folder, "cache-box", "a" * 64)
    assert read_base(folder) == {"design": "cache-box", "revision": "a" * 64}


def test_fifos_and_folders_in_place_of_the_state_files_never_block(tmp_path: Path) -> None:
    folder, _ = _folder(tmp_path)
    os.mkfifo(folder / CACHE_PATH)
    os.mkfifo(folder / ".spime" / "base")
    code = ("import sys; from pathlib import Path; from hub.client.statcache import StatCache; "
            "from hub.client.local import read_base, write_base; f = Path(sys.argv[1]); "
            "StatCache(f); assert read_base(f) == {}; write_base(f, 'cache-box', 'a' * 64); "
            "assert read_base(f)['design'] == 'cache-box'")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, timeout=60,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    (folder / CACHE_PATH).unlink()
    (folder / CACHE_PATH).mkdir()
    assert StatCache(folder).lookup("box.stl", (folder / "box.stl").stat()) is None
