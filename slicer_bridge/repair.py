"""Mesh repair: drop bad faces, fix winding and inside-out bodies, fill small holes."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse import csgraph

from slicer_bridge.budget import Budget
from slicer_bridge.findings import Finding, Severity
from slicer_bridge.geometry import edge_table, face_geometry, face_keys
from slicer_bridge.ray_parity import Column, any_inside, build_column

__all__ = ["repair_mesh"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def repair_mesh(vertices: FloatArray, faces: IntArray) -> tuple[FloatArray, IntArray, list[Finding]]:
    """Remove degenerate and duplicate faces, fix winding and inversion, fill small holes.

    Every change is returned as an INFO finding; nothing is changed silently.
    """
    findings = []
    faces, removed = _drop_bad_faces(vertices, faces)
    if removed:
        findings.append(Finding("repaired_faces_removed", Severity.INFO,
                                f"repair removed {removed:,} degenerate or duplicate faces",
                                {"count": removed}))
    faces, flipped = _orient(vertices, faces)
    if flipped:
        findings.append(Finding("repaired_winding", Severity.INFO,
                                f"repair flipped {flipped:,} faces to face outwards",
                                {"count": flipped}))
    vertices, faces, added = _fill_small_holes(vertices, faces)
    if added:
        findings.append(Finding("repaired_holes", Severity.INFO,
                                f"repair filled small holes with {added:,} faces",
                                {"faces_added": added}))
    return vertices, faces, findings


def _drop_bad_faces(vertices: FloatArray, faces: IntArray) -> tuple[IntArray, int]:
    """Drop faces with repeated corners or no area, and all but one of repeated faces."""
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (
        faces[:, 2] != faces[:, 0])
    keep &= face_geometry(vertices, faces)[1] > 0
    keys = face_keys(faces, len(vertices))
    order = np.argsort(keys, kind="stable")
    repeated = np.zeros(len(faces), dtype=bool)
    repeated[order[1:]] = keys[order[1:]] == keys[order[:-1]]
    keep &= ~repeated
    return faces[keep], int(len(faces) - keep.sum())


def _orient(vertices: FloatArray, faces: IntArray) -> tuple[IntArray, int]:
    """Make the winding consistent across manifold edges, then turn closed bodies outwards.

    A breadth-first tree over the faces (scipy) gives each face its parent; whether
    a face must flip is the XOR of the disagreements along its path to the root,
    computed for all faces at once by pointer jumping.
    """
    m = len(faces)
    order, first, forward, count = edge_table(faces, len(vertices))
    pair = np.flatnonzero(first & (count == 2))
    a, b = order[pair].astype(np.int64) // 3, order[pair + 1].astype(np.int64) // 3
    disagree = (forward[pair] == forward[pair + 1]).astype(np.int8)
    labels, parity = _tree_parity(m, a, b, disagree)
    oriented = faces.copy()
    flip = parity.astype(bool)
    flip ^= _inside_out_bodies(vertices, faces, flip, labels, order, count)
    oriented[flip] = oriented[flip][:, ::-1]
    return oriented, int(flip.sum())


def _tree_parity(m: int, a: IntArray, b: IntArray,
                 disagree: NDArray[np.int8]) -> tuple[IntArray, NDArray[np.int8]]:
    """Piece labels (m,) and flip parity (m,) of faces joined by (a, b) edges."""
    links = sparse.csr_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(m, m))
    pieces, labels = csgraph.connected_components(links, directed=False)
    roots = np.full(pieces, m, dtype=np.int64)
    np.minimum.at(roots, labels, np.arange(m))
    # A virtual node m joins one root per piece, so one search covers every piece.
    src = np.concatenate([a, b, np.full(pieces, m)])
    dst = np.concatenate([b, a, roots])
    weight = np.concatenate([disagree, disagree, np.zeros(pieces, dtype=np.int8)])
    tree = sparse.csr_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(m + 1, m + 1))
    _, parent = csgraph.breadth_first_order(tree, m, directed=True, return_predecessors=True)
    parent = parent.astype(np.int64)
    parent[m] = m
    edge_key = src * (m + 1) + dst
    sorted_keys = np.argsort(edge_key, kind="stable")
    found = np.searchsorted(edge_key[sorted_keys], parent * (m + 1) + np.arange(m + 1))
    found = np.minimum(found, len(edge_key) - 1)
    parity = weight[sorted_keys[found]].astype(np.int8)
    parity[m] = 0
    ancestor = parent
    while (ancestor != m).any():
        parity ^= parity[ancestor]
        ancestor = ancestor[ancestor]
    return labels.astype(np.int64), parity[:m]


def _inside_out_bodies(vertices: FloatArray, faces: IntArray, flip: NDArray[np.bool_],
                       labels: IntArray, order: NDArray[np.int32],
                       count: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """(m,) True for the faces of closed pieces whose volume has the wrong sign.

    A piece nested inside an odd number of other pieces (by bounding box) is a
    cavity and should enclose negative volume; every other piece positive.
    """
    corners = np.where(flip[:, None], faces[:, ::-1], faces)
    low = np.array([vertices[:, k].min() for k in range(3)])
    v0, v1, v2 = (vertices[corners[:, k]] - low for k in range(3))
    volume = np.bincount(labels, weights=np.einsum("ij,ij->i", v0, np.cross(v1, v2)))
    closed = np.ones(len(volume), dtype=bool)
    closed[labels[order[count == 1] // 3]] = False
    solid = np.flatnonzero(closed & (volume != 0))
    depth = np.zeros(len(volume), dtype=np.int64)
    if 1 < len(solid) <= 3000:
        box_low = np.full((len(volume), 3), np.inf)
        box_high = np.full((len(volume), 3), -np.inf)
        for k in range(3):
            lows = np.minimum(np.minimum(v0[:, k], v1[:, k]), v2[:, k])
            highs = np.maximum(np.maximum(v0[:, k], v1[:, k]), v2[:, k])
            np.minimum.at(box_low[:, k], labels, lows)
            np.maximum.at(box_high[:, k], labels, highs)
        lo, hi = box_low[solid], box_high[solid]
        encloses = ((lo[:, None] <= lo[None]) & (hi[:, None] >= hi[None])).all(axis=2)
        encloses &= ((lo[:, None] < lo[None]) | (hi[:, None] > hi[None])).any(axis=2)
        outer, inner = np.nonzero(encloses)
        if len(outer) <= 2000:  # a box inside a box is only a hint: test a vertex
            keep = _contains_a_vertex(vertices, corners, labels, solid[outer], solid[inner])
            outer, inner = outer[keep], inner[keep]
        np.add.at(depth, solid[inner], 1)
    wrong: NDArray[np.bool_] = closed & (volume != 0) & ((volume < 0) == (depth % 2 == 0))
    return wrong[labels]


def _contains_a_vertex(vertices: FloatArray, faces: IntArray, labels: IntArray,
                       outer: IntArray, inner: IntArray) -> NDArray[np.bool_]:
    """For each pair, whether a vertex of piece `inner` lies inside closed piece `outer`."""
    budget = Budget(60.0)
    columns: dict[int, Column] = {}
    first_face = np.full(labels.max() + 1, -1, dtype=np.int64)
    first_face[labels[::-1]] = np.arange(len(labels))[::-1]
    result = np.zeros(len(outer), dtype=bool)
    for n, (o, i) in enumerate(zip(outer.tolist(), inner.tolist(), strict=True)):
        if o not in columns:
            columns[o] = build_column(vertices[faces[labels == o]])
        point = vertices[faces[first_face[i], 0]][None] + [1e-7, 2e-7, 0.0]
        result[n] = any_inside(point, columns[o], budget)
    return result


def _fill_small_holes(vertices: FloatArray, faces: IntArray) -> tuple[FloatArray, IntArray, int]:
    """Close holes bounded by three or four edges (trimesh's fill_holes)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    trimesh.repair.fill_holes(mesh)
    filled = np.asarray(mesh.vertices, dtype=np.float64)
    added = np.asarray(mesh.faces, dtype=np.int64)[len(faces):]
    # A lone triangle's own edges look like a hole: never "fill" it with its mirror.
    keys = np.sort(face_keys(faces, len(filled)))
    new_keys = face_keys(added, len(filled))
    position = np.minimum(np.searchsorted(keys, new_keys), len(keys) - 1)
    added = added[keys[position] != new_keys]
    return filled, np.concatenate([faces, added]), len(added)
