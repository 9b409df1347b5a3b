"""The arrays every printability check shares, computed once per mesh.

Vertices are merged once, the directed edges are sorted once by undirected key,
and faces are labelled by connected body; the checks only read these arrays.
Conventions: vertices (n, 3) float64 in millimetres, faces (m, 3) int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse import csgraph

__all__ = ["Mesh", "body_labels", "closed_bodies", "edge_table", "face_geometry", "face_keys",
           "grouped_order", "merge_vertices", "prepare", "sorted_order"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _hash_rows(q: IntArray) -> NDArray[np.uint64]:
    """Hash (n, 3) int64 rows into (n,) uint64 (wrapping multiply-xor)."""
    h = q[:, 0].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= q[:, 1].view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= q[:, 2].view(np.uint64) * np.uint64(0x165667B19E3779F9)
    return h


def face_keys(faces: IntArray, vertex_count: int) -> NDArray[np.uint64]:
    """One uint64 per face, equal exactly for faces with the same three corners.

    Exact (bit-packed) below 2**21 vertices; above, a 64-bit hash whose chance of
    a false match among 10**7 faces is about 1e-5.
    """
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    low = np.minimum(np.minimum(a, b), c)
    high = np.maximum(np.maximum(a, b), c)
    middle = a + b + c - low - high  # np.sort(axis=1) is a Python-speed loop over rows
    if vertex_count <= 1 << 21:
        key = low.astype(np.uint64) << np.uint64(42)
        key |= middle.astype(np.uint64) << np.uint64(21)
        key |= high.astype(np.uint64)
        return key
    return _hash_rows(np.stack([low, middle, high], axis=1))


def grouped_order(keys: NDArray[np.uint64],
                  key_bits: int) -> tuple[IntArray, NDArray[np.bool_]]:
    """Sort (n,) uint64 keys below 2**key_bits; equal keys end up adjacent.

    Returns:
        order (n,) int64, and first (n,) bool marking where each group of equal
        keys starts in that order.
    """
    index_bits = max(1, (len(keys) - 1).bit_length())
    if key_bits <= 64 - index_bits:
        order, ordered = _packed_sort(keys, index_bits)
        return order, _starts(ordered)
    # Too wide to pack (above ~1M vertices or ~4M corners). A hashed packed sort
    # measured slower than argsort here: the extra gathers miss the cache.
    order = np.argsort(keys)
    return order, _starts(keys[order])


def sorted_order(keys: NDArray[np.uint64], key_bits: int) -> IntArray:
    """Stable argsort (n,) int64 of (n,) uint64 keys below 2**key_bits.

    When a key and its index fit one uint64, they are packed together and the
    values sorted, which numpy does several times faster than argsort (SIMD
    sorts); the index in the low bits keeps equal keys in input order.
    """
    index_bits = max(1, (len(keys) - 1).bit_length())
    if key_bits <= 64 - index_bits:
        return _packed_sort(keys, index_bits)[0]
    return np.argsort(keys, kind="stable")


def _packed_sort(keys: NDArray[np.uint64], index_bits: int) -> tuple[IntArray,
                                                                   NDArray[np.uint64]]:
    """Stable argsort (n,) int64 of (n,) keys below 2**(64 - index_bits), and the sorted keys."""
    packed = keys << np.uint64(index_bits)
    packed |= np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    ordered = packed >> np.uint64(index_bits)
    packed &= np.uint64((1 << index_bits) - 1)
    return packed.view(np.int64), ordered


def _starts(ordered: NDArray[Any]) -> NDArray[np.bool_]:
    """(n,) True where a run of equal values in (n,) `ordered` starts."""
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return first


def _group(keys: NDArray[np.uint64],
           key_bits: int) -> tuple[IntArray, IntArray, NDArray[np.bool_]]:
    """Group keys; return (order, group id per element, is-first-of-group in that order)."""
    order, first = grouped_order(keys, key_bits)
    group = np.empty(len(keys), dtype=np.int64)
    running = np.cumsum(first, dtype=np.int64)
    running -= 1
    group[order] = running
    return order, group, first


def merge_vertices(vertices: NDArray[np.floating[Any]], faces: IntArray | None,
                   relative: float) -> tuple[FloatArray, IntArray, int]:
    """Merge vertices that fall in the same grid cell of `relative` x the largest extent.

    The grid has at most ~2**20 cells per axis, so a cell packs exactly into one
    uint64 key and one sort finds the duplicates. A tolerance grid rather than an
    exact bit match even for binary STL: exporters write the same corner with
    float32 noise (seamed and noisy files must still close), and the sort, not
    the key, is the cost.

    Args:
        vertices: (n, 3) float32 or float64.
        faces: (m, 3) int64 into `vertices`, or None for a soup (face i is
            vertices 3i..3i+2).
        relative: Grid step relative to the largest extent; at least 1e-6.

    Returns:
        (k, 3) float64 unique vertices, (m, 3) int64 faces into them, and n - k.

    Raises:
        ValueError: `vertices` is empty (the loader never returns such a mesh).
    """
    # Column by column: a reduction over axis 0 of an (n, 3) array is ~8x slower.
    low = [vertices[:, k].min() for k in range(3)]
    extent = max(float(vertices[:, k].max() - low[k]) for k in range(3))
    step = max(extent * max(relative, 1e-6), np.finfo(np.float64).tiny)
    key = np.zeros(len(vertices), dtype=np.uint64)
    key_bits = 0
    for axis in range(3):
        # Computed in the input's precision: equal inputs always land in equal cells.
        cell = np.rint((vertices[:, axis] - low[axis]) * vertices.dtype.type(1.0 / step))
        bits = int(cell.max()).bit_length()
        key <<= np.uint64(bits)
        key |= cell.astype(np.uint64)
        key_bits += bits
    order, group, first = _group(key, key_bits)
    del key
    unique = vertices[order[first]].astype(np.float64)
    del order, first
    merged_faces = group.reshape(-1, 3) if faces is None else group[faces]
    return unique, merged_faces, len(vertices) - len(unique)


@dataclass(frozen=True, slots=True, eq=False)
class Mesh:
    """Arrays shared by the checks, computed once (sized for millions of faces).

    vertices (n, 3) float64; faces (m, 3) int64; normals (m, 3) float32 unit
    (zero for degenerate faces); areas (m,) float64; longest (m,) float32 longest
    edge. edge_order (3m,) int32 orders the directed edges faces[:, [0,1]], [1,2],
    [2,0] (row-major: edge i belongs to face i // 3) by undirected key, so the
    edges of one key are adjacent (`grouped_order`); edge_first (3m,) bool marks
    group starts and edge_count (3m,) uint8 (saturating) the group size, both in that order; edge_forward (3m,)
    bool tells whether each ordered directed edge runs from its lower vertex
    index. labels (m,) int32 numbers each face's body; bodies is their count.
    """

    vertices: FloatArray
    faces: IntArray
    normals: NDArray[np.float32]
    areas: FloatArray
    longest: NDArray[np.float32]
    edge_order: NDArray[np.int32]
    edge_first: NDArray[np.bool_]
    edge_forward: NDArray[np.bool_]
    edge_count: NDArray[np.uint8]
    labels: NDArray[np.int32]
    bodies: int


def prepare(vertices: FloatArray, faces: IntArray) -> Mesh:
    """Compute the shared arrays of merged (n, 3) float64 vertices and (m, 3) int64 faces.

    Raises:
        IndexError: A face refers to a vertex that does not exist (the loader
            rejects such files first).
    """
    normals, areas, longest = face_geometry(vertices, faces)
    order, first, forward, edge_count = edge_table(faces, len(vertices))
    labels, bodies = body_labels(order, first, len(faces))
    return Mesh(vertices, faces, normals, areas, longest, order, first, forward, edge_count,
                 labels, bodies)


def face_geometry(vertices: FloatArray, faces: IntArray,
                   chunk: int = 1 << 19) -> tuple[NDArray[Any], FloatArray, NDArray[Any]]:
    """Per face: unit normal (m, 3) float32, area (m,) float64, longest edge (m,) float32.

    Works on chunks of faces with one contiguous coordinate array per axis, so the
    temporaries stay small and every gather is a 1-D take.
    """
    m = len(faces)
    normals = np.empty((m, 3), dtype=np.float32)
    areas = np.empty(m)
    longest = np.empty(m, dtype=np.float32)
    axes = np.ascontiguousarray(vertices.T)
    for start in range(0, m, chunk):
        part = slice(start, min(start + chunk, m))
        corners = np.ascontiguousarray(faces[part].T)
        xyz = [axes[k][corners] for k in range(3)]  # each (3, c): corner x per face
        e1 = [c[1] - c[0] for c in xyz]
        e2 = [c[2] - c[0] for c in xyz]
        cross = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2],
                 e1[0] * e2[1] - e1[1] * e2[0])
        length = np.sqrt(cross[0] ** 2 + cross[1] ** 2 + cross[2] ** 2)
        safe = np.where(length > 0, length, 1.0)
        for k in range(3):
            normals[part, k] = np.where(length > 0, cross[k] / safe, 0.0)
        areas[part] = length / 2.0
        longest[part] = np.sqrt(np.maximum(np.maximum(
            sum(e * e for e in e1), sum(e * e for e in e2)),
            sum((a - b) ** 2 for a, b in zip(e1, e2, strict=True))))
    return normals, areas, longest


def edge_table(faces: IntArray, vertex_count: int) -> tuple[NDArray[np.int32],
                                                             NDArray[np.bool_],
                                                             NDArray[np.bool_],
                                                             NDArray[np.uint8]]:
    """Group the 3m directed edges by undirected key; see `Mesh` for the four arrays."""
    start = faces.reshape(-1)
    end = np.roll(faces, -1, axis=1).reshape(-1)
    forward = start < end
    keys = np.minimum(start, end)
    keys *= np.int64(vertex_count)
    keys += np.maximum(start, end)
    del end
    key_bits = max(1, (vertex_count * vertex_count - 1).bit_length())
    grouped, first = grouped_order(keys.view(np.uint64), key_bits)
    del keys
    order = grouped.astype(np.int32)
    del grouped
    starts = np.flatnonzero(first)
    counts = np.minimum(np.diff(np.append(starts, len(first))), 255).astype(np.uint8)
    return order, first, forward[order], np.repeat(counts, counts)


def body_labels(order: NDArray[np.int32], first: NDArray[np.bool_],
            face_count: int) -> tuple[NDArray[np.int32], int]:
    """Label faces by connected piece: faces sharing an edge are one piece."""
    same = np.flatnonzero(~first[1:])
    a = order[same] // 3
    b = order[same + 1] // 3
    del same
    graph = sparse.csr_matrix((np.ones(len(a), dtype=np.int8), (a, b)),
                              shape=(face_count, face_count))
    del a, b
    count, labels = csgraph.connected_components(graph, directed=False)
    return labels.astype(np.int32), int(count)


def closed_bodies(mesh: Mesh) -> NDArray[np.bool_]:
    """(bodies,) True for bodies without open edges."""
    open_faces = mesh.edge_order[mesh.edge_count == 1] // 3
    closed = np.ones(mesh.bodies, dtype=bool)
    closed[mesh.labels[open_faces]] = False
    return closed
