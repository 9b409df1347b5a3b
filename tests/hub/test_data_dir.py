"""A relative ``--data`` directory is made absolute at startup (issue 10 §5).

Blob paths reach the push-time checks (worker processes, temporary links): a
path relative to the hub's current directory broke every one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.__main__ import _parser, compose
from hub.config import HubConfig


def test_a_relative_data_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _parser().parse_args(["serve", "--data", "rel"]).data == tmp_path / "rel"
    composed = compose(HubConfig(data_dir=Path("rel2")), printability=None)
    try:
        assert composed.config.data_dir == tmp_path / "rel2"
        monkeypatch.chdir("/")
        blob = composed.store.blobs.path("0" * 64)
        assert blob.is_absolute() and blob.is_relative_to(tmp_path / "rel2")
    finally:
        composed.close()
