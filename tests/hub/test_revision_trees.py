"""The hub's revision trees stay within their budget: least recently used first, never one in use, across restarts."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from hub.domain import FileEntry, Revision, RevisionKind
from hub.errors import StorageError
from hub.service.revision_trees import RevisionTrees, TreeBudget, evictions


def _blobs(tmp_path: Path) -> Path:
    folder = tmp_path / "blobs"
    folder.mkdir(exist_ok=True)
    return folder


def _revision(tmp_path: Path, rid: str, body: bytes = b"solid x\nendsolid x\n") -> Revision:
    """A revision of two files (one in a subfolder) whose blobs are in tmp_path/blobs."""
    files = []
    for path, data in (("part.stl", body), ("lib/include.scad", rid.encode())):
        sha = hashlib.sha256(data).hexdigest()
        (_blobs(tmp_path) / sha).write_bytes(data)
        files.append(FileEntry(path, sha, len(data)))
    return Revision(rid, "cube", (), "", tuple(files), "alice", "2026-01-01T00:00:00Z", "", RevisionKind.PUSH)


def _trees(tmp_path: Path, max_trees: int = 2, max_bytes: int = 1 << 20) -> RevisionTrees:
    return RevisionTrees(tmp_path / "work", lambda sha: _blobs(tmp_path) / sha, TreeBudget(max_bytes, max_trees))


def _on_disk(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "work" / "by-id").iterdir())


def test_evictions_take_the_least_recently_used_and_skip_held_trees() -> None:
    budget = TreeBudget(max_bytes=100, max_trees=2)
    assert evictions([("a", 10), ("b", 10)], budget, {}) == []
    assert evictions([("a", 10), ("b", 10), ("c", 10)], budget, {}) == ["a"]
    assert evictions([("a", 10), ("b", 10), ("c", 10)], budget, {"a": 1}) == ["b"]
    assert evictions([("a", 60), ("b", 60)], budget, {}) == ["a"]  # bytes
    assert evictions([("a", 60), ("b", 60)], budget, {"a": 2, "b": 1}) == []  # over budget while held


def test_a_budget_is_positive() -> None:
    with pytest.raises(ValueError):
        TreeBudget(0, 1)
    with pytest.raises(ValueError):
        TreeBudget(1, 0)


def test_trees_past_the_count_go_least_recently_used_first_and_come_back_on_demand(tmp_path: Path) -> None:
    trees = _trees(tmp_path, max_trees=2)
    revs = [_revision(tmp_path, f"r{i}") for i in range(3)]
    for rev in (revs[0], revs[1], revs[0], revs[2]):  # r0 used again: r1 is the least recently used
        folder = trees.acquire(rev)
        assert (folder / "part.stl").read_bytes().startswith(b"solid") and (folder / "lib/include.scad").is_file()
        trees.release(rev.id)
    assert _on_disk(tmp_path) == ["r0", "r2"]
    assert (trees.acquire(revs[1]) / "lib/include.scad").read_bytes() == b"r1"  # built again
    trees.release("r1")
    assert _on_disk(tmp_path) == ["r1", "r2"] and trees.builds == 4
    assert trees.status() == {"trees": 2, "bytes": 2 * (19 + 2), "max_bytes": 1 << 20, "max_trees": 2,
                              "held": 0, "builds": 4}


def test_trees_past_the_bytes_go_and_one_larger_than_the_budget_is_used_once(tmp_path: Path) -> None:
    trees = _trees(tmp_path, max_trees=10, max_bytes=100)
    small, big = _revision(tmp_path, "small"), _revision(tmp_path, "big", b"x" * 200)
    trees.acquire(small)
    trees.release("small")
    folder = trees.acquire(big)
    assert (folder / "part.stl").stat().st_size == 200 and _on_disk(tmp_path) == ["big"]  # small made room
    trees.release("big")
    assert _on_disk(tmp_path) == []


def test_a_tree_in_use_is_never_removed(tmp_path: Path) -> None:
    trees = _trees(tmp_path, max_trees=1)
    first, second = _revision(tmp_path, "r0"), _revision(tmp_path, "r1")
    held = trees.acquire(first)
    held_again = trees.acquire(first)  # a second quote of the same revision
    trees.acquire(second)
    assert held == held_again and _on_disk(tmp_path) == ["r0", "r1"]  # over budget while both are held
    trees.release("r0")
    assert (held / "part.stl").is_file()  # still held by the second quote
    trees.release("r0")
    assert _on_disk(tmp_path) == ["r1"]
    trees.release("r1")
    assert _on_disk(tmp_path) == ["r1"]


def test_a_restart_finds_the_trees_in_order_of_use_and_drops_half_built_ones(tmp_path: Path) -> None:
    trees = _trees(tmp_path, max_trees=5)
    for i in range(4):
        trees.acquire(_revision(tmp_path, f"r{i}"))
        trees.release(f"r{i}")
        os.utime(tmp_path / "work" / "by-id" / f"r{i}", ns=(10**18 + i, 10**18 + (i * 7) % 4))  # use order r0 r3 r2 r1
    (tmp_path / "work" / "tmp" / "half").mkdir()
    again = _trees(tmp_path, max_trees=2)
    assert _on_disk(tmp_path) == ["r1", "r2"] and not list((tmp_path / "work" / "tmp").iterdir())
    assert again.status()["bytes"] == 2 * (19 + 2)


def test_concurrent_requests_for_one_revision_share_one_tree(tmp_path: Path) -> None:
    trees = _trees(tmp_path, max_trees=1)
    rev = _revision(tmp_path, "r0")
    start, folders = threading.Barrier(8), []

    def use() -> None:
        start.wait()
        folders.append(trees.acquire(rev))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 1 and trees.status()["held"] == 1 and trees.builds == 1
    for _ in folders:
        trees.release("r0")
    assert _on_disk(tmp_path) == ["r0"] and trees.status()["held"] == 0
    assert not list((tmp_path / "work" / "tmp").iterdir())  # the losers' staging trees are gone


def test_a_missing_blob_is_a_storage_error_and_leaves_no_tree(tmp_path: Path) -> None:
    trees = _trees(tmp_path)
    rev = _revision(tmp_path, "r0")
    (_blobs(tmp_path) / rev.files[0].sha256).unlink()
    with pytest.raises(StorageError, match="r0"):
        trees.acquire(rev)
    assert _on_disk(tmp_path) == [] and not list((tmp_path / "work" / "tmp").iterdir())
