"""Point-in-closed-body tests by the parity of vertical rays, on triangles binned by XY."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.budget import Budget

__all__ = ["Column", "any_inside", "build_column"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class Column:
    """A closed body's triangles binned by XY, for vertical-ray parity tests.

    x, y, z are (t, 3) corner coordinates of the triangles that are not vertical
    (det != 0); the small ones are sorted by grid cell (keys), the few wider than
    a cell (big) are tested for every ray.
    """

    x: FloatArray
    y: FloatArray
    z: FloatArray
    det: FloatArray
    origin: FloatArray
    cell: float
    keys: IntArray
    small: IntArray
    big: IntArray


_GRID_ROW = np.int64(1 << 31)


def build_column(triangles: FloatArray) -> Column:
    """Bin (t, 3, 3) triangles by the XY cell of their centre."""
    x, y, z = (np.ascontiguousarray(triangles[:, :, k]) for k in range(3))
    det = (y[:, 1] - y[:, 2]) * (x[:, 0] - x[:, 2]) + (x[:, 2] - x[:, 1]) * (y[:, 0] - y[:, 2])
    usable = det != 0
    x, y, z, det = x[usable], y[usable], z[usable], det[usable]
    low = np.stack([_corner_min(x), _corner_min(y)], axis=1)
    high = np.stack([_corner_max(x), _corner_max(y)], axis=1)
    extent = np.maximum(high[:, 0] - low[:, 0], high[:, 1] - low[:, 1])
    # CAD meshes have long slivers: the widest 1% are tested for every ray instead.
    cell = max(float(np.percentile(extent, 99)) if len(extent) else 1.0, 1e-9)
    origin = low.min(axis=0) if len(low) else np.zeros(2)
    cells = np.floor(((low + high) / 2 - origin) / cell).astype(np.int64)
    key = cells[:, 0] * _GRID_ROW + cells[:, 1]
    small = np.flatnonzero(extent <= cell)
    small = small[np.argsort(key[small])]
    return Column(x, y, z, det, origin, cell, key[small], small,
                   np.flatnonzero(extent > cell))


def _corner_min(values: FloatArray) -> FloatArray:
    """Row minimum of (t, 3): pairwise, as a reduction over a short axis is slow."""
    return np.minimum(np.minimum(values[:, 0], values[:, 1]), values[:, 2])


def _corner_max(values: FloatArray) -> FloatArray:
    """Row maximum of (t, 3)."""
    return np.maximum(np.maximum(values[:, 0], values[:, 1]), values[:, 2])


def _candidates(column: Column, point: FloatArray) -> IntArray:
    """Triangles whose XY box may contain `point`: its cell and the 8 around it."""
    i, j = np.floor((point[:2] - column.origin) / column.cell).astype(np.int64)
    near = np.array([(i + di) * _GRID_ROW + j + dj for di in (-1, 0, 1) for dj in (-1, 0, 1)])
    first = np.searchsorted(column.keys, near, side="left")
    last = np.searchsorted(column.keys, near, side="right")
    return np.concatenate([column.small[f:l] for f, l in zip(first, last, strict=True)]
                          + [column.big])


def any_inside(points: FloatArray, column: Column, budget: Budget) -> bool:
    """Whether any of (p, 3) points lies inside the closed body (parity of +Z rays).

    Points are tested 16 at a time, stopping at the first batch with one inside.
    """
    for start in range(0, len(points), 16):
        batch = points[start:start + 16]
        found = [_candidates(column, point) for point in batch]
        t = np.concatenate(found)
        owner = np.repeat(np.arange(len(batch)), [len(f) for f in found])
        x, y, z, det = column.x[t], column.y[t], column.z[t], column.det[t]
        px, py, pz = batch[owner, 0], batch[owner, 1], batch[owner, 2]
        l0 = ((y[:, 1] - y[:, 2]) * (px - x[:, 2]) + (x[:, 2] - x[:, 1]) * (py - y[:, 2])) / det
        l1 = ((y[:, 2] - y[:, 0]) * (px - x[:, 2]) + (x[:, 0] - x[:, 2]) * (py - y[:, 2])) / det
        l2 = 1.0 - l0 - l1
        height = l0 * z[:, 0] + l1 * z[:, 1] + l2 * z[:, 2]
        hits = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (height > pz)
        if (np.bincount(owner[hits], minlength=len(batch)) % 2 == 1).any():
            return True
        budget.check()
    return False
