"""Revision trees on the hub's disk, bounded: a revision's files under their names, for renders and slices.

A revision's blobs have no file names, and OpenSCAD and the slicer open files by name, so a quote
works in a tree ``<root>/by-id/<revision id>/<path>`` of hard links into the blob store (copies when
the work directory is on another file system). Any revision can be quoted by anyone, so the trees
are kept under a budget of bytes and of trees, and the least recently used go first. A tree in use
(held between :meth:`RevisionTrees.acquire` and :meth:`RevisionTrees.release`) is never removed; a
removed tree is built again when next asked for. A tree is built in ``<root>/tmp`` and renamed into
place, so a reader never sees half of one; ``tmp`` is emptied when the trees are opened (after a
restart), and the trees found then count against the budget in the order of their last use.

Sizes are the files' apparent sizes: a hard link costs the blob store nothing until the blob store
(an S3 hub's blob cache) removes its own name for the file, and then the tree alone keeps it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.domain import Revision
from hub.errors import StorageError

__all__ = ["RevisionTrees", "TreeBudget", "evictions"]


@dataclass(frozen=True, slots=True)
class TreeBudget:
    """How much the trees may hold: bytes (the files' apparent sizes) and trees."""

    max_bytes: int
    max_trees: int

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_trees <= 0:
            raise ValueError(f"a tree budget is positive, got {self.max_bytes} bytes and {self.max_trees} trees")


def evictions(trees: Sequence[tuple[str, int]], budget: TreeBudget, held: Mapping[str, int]) -> list[str]:
    """The trees to remove, least recently used first, to bring them within the budget.

    Args:
        trees: (revision id, bytes) of every tree, least recently used first.
        budget: the bound.
        held: how many users hold each tree; a held tree stays (the trees may stay over budget until
            it is released).
    """
    total, count, chosen = sum(size for _, size in trees), len(trees), []
    for key, size in trees:
        if total <= budget.max_bytes and count <= budget.max_trees:
            break
        if held.get(key, 0) > 0:
            continue
        chosen.append(key)
        total, count = total - size, count - 1
    return chosen


class RevisionTrees:
    """The bounded trees of one work directory. Thread-safe: quotes build and release trees from worker threads.

    Args:
        root: the directory of ``by-id`` and ``tmp`` (created if missing).
        blob_path: the local file of a blob, by sha256.
        budget: the bound.

    Raises:
        StorageError: ``root`` cannot be used.
    """

    def __init__(self, root: Path, blob_path: Callable[[str], Path], budget: TreeBudget) -> None:
        self.root, self.blob_path, self.budget = Path(root), blob_path, budget
        self._trees, self._tmp = self.root / "by-id", self.root / "tmp"
        try:
            self._trees.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self._tmp, ignore_errors=True)  # half-built trees of a crash
            self._tmp.mkdir()
            found = sorted((entry.stat().st_mtime_ns, entry.name, _tree_bytes(Path(entry.path)))
                           for entry in os.scandir(self._trees) if entry.is_dir(follow_symlinks=False))
        except OSError as exc:
            raise StorageError(f"cannot use {self.root} for revision trees: {exc}", retryable=True) from exc
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict((key, size) for _, key, size in found)
        self._held: dict[str, int] = {}
        self.builds = 0
        self._evict()

    def acquire(self, revision: Revision) -> Path:
        """The revision's tree, built if missing, held until :meth:`release` (blocking: call in a thread).

        Raises:
            StorageError: the tree could not be built (a blob is missing or the disk refused).
        """
        folder = self._hold(revision.id)
        if folder is not None:
            return folder
        staging = Path(tempfile.mkdtemp(dir=self._tmp))
        try:
            size = _build(revision, self.blob_path, staging)
            return self._adopt(revision.id, staging, size)
        except OSError as exc:
            raise StorageError(f"cannot lay out revision {revision.id[:12]}'s files: {exc}", retryable=True) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def release(self, revision_id: str) -> None:
        """One user is done with the tree; past the budget, trees nobody holds are removed."""
        with self._lock:
            left = self._held.get(revision_id, 0) - 1
            if left > 0:
                self._held[revision_id] = left
            else:
                self._held.pop(revision_id, None)
        self._evict()

    def status(self) -> dict[str, int]:
        """A plain-data snapshot: trees, bytes, the budget, trees held now, trees built since start."""
        with self._lock:
            return {"trees": len(self._index), "bytes": sum(self._index.values()), "max_bytes": self.budget.max_bytes,
                    "max_trees": self.budget.max_trees, "held": len(self._held), "builds": self.builds}

    def _hold(self, key: str) -> Path | None:
        folder = self._trees / key
        with self._lock:
            if key not in self._index:
                return None
            try:
                os.utime(folder)  # its last use, for the order after a restart
            except FileNotFoundError:  # removed from outside: build it again
                del self._index[key]
                return None
            self._index.move_to_end(key)
            self._held[key] = self._held.get(key, 0) + 1
        return folder

    def _adopt(self, key: str, staging: Path, size: int) -> Path:
        folder = self._trees / key
        with self._lock:
            if key not in self._index:  # else a concurrent request built it first: use theirs
                shutil.rmtree(folder, ignore_errors=True)  # a leftover nobody counts (removed from outside)
                os.rename(staging, folder)
                self._index[key] = size
                self.builds += 1
            self._index.move_to_end(key)
            self._held[key] = self._held.get(key, 0) + 1
        self._evict()
        return folder

    def _evict(self) -> None:
        doomed = []
        with self._lock:
            for key in evictions(list(self._index.items()), self.budget, self._held):
                del self._index[key]
                doomed.append(self._retire(key))
        for path in doomed:  # outside the lock: a large tree takes a while to delete
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

    def _retire(self, key: str) -> Path | None:
        """Move a tree out of ``by-id`` at once (a rename), to delete it without holding the lock."""
        try:
            holder = Path(tempfile.mkdtemp(dir=self._tmp))
            os.rename(self._trees / key, holder / key)
            return holder
        except OSError:  # gone already, or the disk refused: delete it here
            shutil.rmtree(self._trees / key, ignore_errors=True)
            return None


def _build(revision: Revision, blob_path: Callable[[str], Path], into: Path) -> int:
    """Lay the revision's files out under ``into``; their total size."""
    for entry in revision.files:
        target = into / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            _place(blob_path(entry.sha256), target)
    return _tree_bytes(into)


def _place(blob: Path, target: Path) -> None:
    """A real file (never a symlink: OpenSCAD rendering refuses links out of the design): a hard link
    into the blob store, or a copy when the work directory is on another file system."""
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)


def _tree_bytes(folder: Path) -> int:
    return sum(os.path.getsize(os.path.join(top, name)) for top, _, names in os.walk(folder) for name in names)
