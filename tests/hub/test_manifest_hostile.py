"""hub.manifest refuses hostile TOML with InvalidManifest, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.client.cli import main
from hub.errors import InvalidManifest
from hub.manifest import parse_manifest

MANIFEST = ('name = "big-box"\ntitle = "Big"\nlicense = "CC0-1.0"\nlicensor = "t"\n'
            'version = "1.0.0"\nfunction = "Testing."\n'
            '[[parts]]\nname = "box"\nfiles = ["box.stl"]\nmaterial = "PLA"\nquantity = 1{zeros}\n')


@pytest.mark.parametrize("text", [
    "x = 1" + "0" * 5000,
    "x = -1" + "0" * 5000,
    "x = [1" + "0" * 5000 + "]",
    MANIFEST.format(zeros="0" * 5000),
])
def test_an_integer_past_the_digit_limit_is_an_invalid_manifest(text: str) -> None:
    with pytest.raises(InvalidManifest, match="number that is too long"):
        parse_manifest(text)


def test_spime_push_of_a_huge_number_is_a_usage_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "big-box"
    folder.mkdir()
    (folder / "spime.toml").write_text(MANIFEST.format(zeros="0" * 5000), encoding="utf-8")
    (folder / "box.stl").write_bytes(b"solid\nendsolid\n")
    assert main(["push", str(folder), "--hub", "127.0.0.1:1", "--token", "x",
                 "--no-progress"]) == 2
    assert "too long" in capsys.readouterr().err
