"""Point-in-closed-body tests by the parity of vertical rays, on triangles binned by XY."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.budget import Budget
from slicer_bridge.geometry import sorted_order

__all__ = ["Column", "any_inside", "build_column", "column_of_corners"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class Column:
    """A closed body's triangles binned by XY, for vertical-ray parity tests.

    x, y, z are (t, 3) float64 corner coordinates of the triangles that are not
    vertical (det (t,) != 0). Each triangle is listed once in every grid cell
    its XY bounding box touches: keys (k,) int64 are the sorted cell keys and
    small (k,) int64 the triangle of each entry; the few triangles spanning more
    than _MAX_CELLS cells (big) are tested for every ray instead.
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
_MAX_CELLS = 64
_CELL_PERCENTILE = 75


def build_column(triangles: FloatArray) -> Column:
    """Bin (t, 3, 3) triangles into every XY grid cell their bounding box touches."""
    x, y, z = (np.ascontiguousarray(triangles[:, :, k]) for k in range(3))
    return column_of_corners(x, y, z)


def column_of_corners(x: FloatArray, y: FloatArray, z: FloatArray) -> Column:
    """Like `build_column`, from (t, 3) corner x, y and z coordinates."""
    det = (y[:, 1] - y[:, 2]) * (x[:, 0] - x[:, 2]) + (x[:, 2] - x[:, 1]) * (y[:, 0] - y[:, 2])
    usable = det != 0
    x, y, z, det = x[usable], y[usable], z[usable], det[usable]
    low = np.stack([_corner_min(x), _corner_min(y)], axis=1)
    high = np.stack([_corner_max(x), _corner_max(y)], axis=1)
    extent = np.maximum(high[:, 0] - low[:, 0], high[:, 1] - low[:, 1])
    # About the typical triangle: few per cell, few cells per triangle; CAD slivers
    # wider than _MAX_CELLS cells are tested for every ray instead.
    cell = max(float(np.percentile(extent, _CELL_PERCENTILE)) if len(extent) else 1.0, 1e-9)
    origin = low.min(axis=0) if len(low) else np.zeros(2)
    first = np.floor((low - origin) / cell).astype(np.int64)
    span = np.floor((high - origin) / cell).astype(np.int64) - first + 1
    count = span[:, 0] * span[:, 1]
    fits = count <= _MAX_CELLS
    keys, small = _cell_entries(np.flatnonzero(fits), first, span, count)
    return Column(x, y, z, det, origin, cell, keys, small, np.flatnonzero(~fits))


def _cell_entries(tris: IntArray, first: IntArray, span: IntArray,
                  count: IntArray) -> tuple[IntArray, IntArray]:
    """(k,) sorted cell keys and (k,) triangles: one entry per touched cell of each of `tris`."""
    per = count[tris]
    owner = np.repeat(tris, per)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)
    width = span[owner, 1]
    key = (first[owner, 0] + rank // width) * _GRID_ROW + first[owner, 1] + rank % width
    bits = int(key.max()).bit_length() if len(key) else 1
    order = sorted_order(key.view(np.uint64), bits)
    return key[order], owner[order]


def _corner_min(values: FloatArray) -> FloatArray:
    """Row minimum of (t, 3): pairwise, as a reduction over a short axis is slow."""
    return np.minimum(np.minimum(values[:, 0], values[:, 1]), values[:, 2])


def _corner_max(values: FloatArray) -> FloatArray:
    """Row maximum of (t, 3)."""
    return np.maximum(np.maximum(values[:, 0], values[:, 1]), values[:, 2])


def _candidates(column: Column, point: FloatArray) -> IntArray:
    """Triangles whose XY box may contain `point`: those listed in its cell, and the big ones."""
    i, j = np.floor((point[:2] - column.origin) / column.cell).astype(np.int64)
    key = i * _GRID_ROW + j
    first = np.searchsorted(column.keys, key, side="left")
    last = np.searchsorted(column.keys, key, side="right")
    return np.concatenate([column.small[first:last], column.big])


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
