"""hub.localfiles: only a regular file (or nothing) may be replaced by an atomic write."""

from __future__ import annotations

import os
from pathlib import Path

from hub.localfiles import not_replaceable


def test_nothing_or_a_regular_file_may_be_replaced(tmp_path: Path) -> None:
    assert not_replaceable(tmp_path / "new.tar") is None
    (tmp_path / "old.tar").write_bytes(b"x")
    assert not_replaceable(tmp_path / "old.tar") is None


def test_folders_pipes_and_links_to_them_are_named(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    assert "is a folder" in (not_replaceable(tmp_path) or "")
    assert "is a pipe" in (not_replaceable(tmp_path / "pipe") or "")
    assert "is a pipe" in (not_replaceable(tmp_path / "link") or "")
