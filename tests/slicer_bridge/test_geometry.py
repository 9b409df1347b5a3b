"""The shared arrays of slicer_bridge.geometry: exact grouping and the edge table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from slicer_bridge.geometry import edge_table, grouped_order, merge_vertices, sorted_order


def _groups(keys: np.ndarray, order: np.ndarray, first: np.ndarray) -> list[set[int]]:
    ordered = keys[order]
    bounds = np.append(np.flatnonzero(first), len(keys))
    groups = [set(ordered[a:b].tolist()) for a, b in itertools.pairwise(bounds)]
    assert all(len(g) == 1 for g in groups), "a group mixes distinct keys"
    return groups


@pytest.mark.parametrize("bits", [20, 64])
def test_grouped_order_makes_equal_keys_adjacent(bits: int) -> None:
    rng = np.random.default_rng(3)
    pool = rng.integers(0, 2 ** min(bits, 63), 500, dtype=np.uint64)
    keys = pool[rng.integers(0, len(pool), 5000)]
    order, first = grouped_order(keys, bits)
    assert sorted(order.tolist()) == list(range(len(keys)))
    groups = _groups(keys, order, first)
    assert len(groups) == len(np.unique(keys))
    if bits <= 64 - 13:  # packed: ascending and stable
        assert (order == np.argsort(keys, kind="stable")).all()


def test_sorted_order_is_a_stable_argsort_packed_or_not() -> None:
    keys = np.array([5, 3, 5, 1, 3, 5], dtype=np.uint64)
    expected = np.argsort(keys, kind="stable")
    assert (sorted_order(keys, 3) == expected).all()  # packed with the index
    assert (sorted_order(keys, 64) == expected).all()  # too wide to pack


def test_edge_table_counts_each_undirected_edge() -> None:
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]], dtype=np.int64)
    order, first, forward, count = edge_table(faces, 4)
    assert int(first.sum()) == 6 and (count == 2).all()
    pairs = np.flatnonzero(first)
    # A closed, consistently wound tetrahedron: each edge is used once each way.
    assert (forward[pairs] != forward[pairs + 1]).all()
    assert sorted(order.tolist()) == list(range(12))


def test_merge_vertices_merges_float32_noise_within_the_grid() -> None:
    soup = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0],
                     [10, 0, 1e-7], [0, 10, 0], [10, 10, 0]], dtype=np.float32)
    vertices, faces, merged = merge_vertices(soup, None, 1e-6)
    assert merged == 2 and len(vertices) == 4
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    assert faces[0, 1] == faces[1, 0] and faces[0, 2] == faces[1, 1]
