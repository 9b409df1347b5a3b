"""Closed bodies that intersect or nest inside one another."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.budget import Budget
from slicer_bridge.findings import Finding, Severity, Tolerances
from slicer_bridge.geometry import Mesh, closed_bodies, sorted_order
from slicer_bridge.printability_checks import Context
from slicer_bridge.ray_parity import Column, any_inside, column_of_corners

__all__ = ["check_overlaps"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def check_overlaps(ctx: Context, budget: Budget) -> list[Finding]:
    """Closed bodies that intersect or nest inside each other (the only self-intersection test).

    A sample of each body's vertices is tested against the other body by ray
    parity; open bodies have no inside and are left out (said in the finding).
    """
    mesh = ctx.mesh
    if mesh.bodies == 1:
        return [Finding("self_intersection_not_checked", Severity.INFO,
                        "faces crossing within one body are not checked (no cheap exact "
                        "test); slicers usually cope with small ones")]
    closed = closed_bodies(mesh)
    # Inside/outside is defined only for closed bodies of positive volume.
    bodies = _Bodies(mesh)
    pairs = _overlapping_boxes(bodies, np.flatnonzero((ctx.volumes > 0) & closed))
    findings = []
    if not closed.all():
        findings.append(Finding(
            "overlap_partly_checked", Severity.INFO,
            f"{int((~closed).sum()):,} open bodies have no inside and were left out of the "
            "overlap check", {"open_bodies": int((~closed).sum())}))
    if len(pairs) > ctx.tol.max_body_pairs:
        return findings + [Finding(
            "overlap_not_checked", Severity.INFO,
            f"{len(pairs):,} pairs of bodies have overlapping bounding boxes, more than the "
            f"{ctx.tol.max_body_pairs} checked; overlaps not checked")]
    crossing = []
    for a, b in pairs.tolist():
        small, large = (a, b) if ctx.volumes[a] <= ctx.volumes[b] else (b, a)
        # A small part pushed into a large one is the usual case: test that way first.
        if _reaches_into(bodies, small, large, ctx.tol, budget) or _reaches_into(
                bodies, large, small, ctx.tol, budget):
            crossing.append((a, b))
    if not crossing:
        return findings
    return findings + [Finding(
        "overlapping_bodies", Severity.WARNING,
        f"{len(crossing):,} pairs of bodies intersect or sit inside one another; slicers "
        "merge them, but a boolean union in the modelling tool is cleaner",
        {"pairs": len(crossing)})]


def _body_boxes(mesh: Mesh) -> tuple[FloatArray, FloatArray]:
    """(bodies, 3) lowest and highest corner of each body's vertices."""
    owner = np.full(len(mesh.vertices), -1, dtype=np.int64)
    for k in range(3):
        owner[mesh.faces[:, k]] = mesh.labels
    used = np.flatnonzero(owner >= 0)
    order = used[sorted_order(owner[used].view(np.uint64), max(1, mesh.bodies.bit_length()))]
    starts = np.searchsorted(owner[order], np.arange(mesh.bodies))
    points = mesh.vertices[order]
    return np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts)


class _Bodies:
    """Per-body face indices and ray-parity columns, each computed on first use."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self._faces: dict[int, IntArray] = {}
        self._columns: dict[int, Column] = {}
        self._axes: list[FloatArray] | None = None
        self.low, self.high = _body_boxes(mesh)

    def faces(self, body: int) -> IntArray:
        """(f,) int64 indices of the body's faces, ascending."""
        if body not in self._faces:
            self._faces[body] = np.flatnonzero(self.mesh.labels == body)
        return self._faces[body]

    def column(self, body: int, budget: Budget) -> Column:
        """The body's triangles binned for vertical rays."""
        if body not in self._columns:
            if self._axes is None:
                self._axes = [np.ascontiguousarray(self.mesh.vertices[:, k]) for k in range(3)]
            corners = self.mesh.faces[self.faces(body)]
            self._columns[body] = column_of_corners(*(axis[corners] for axis in self._axes))
            budget.check()
        return self._columns[body]


def _overlapping_boxes(bodies: _Bodies, solid: IntArray) -> IntArray:
    """Pairs (k, 2) of the `solid` bodies whose bounding boxes overlap."""
    low, high = bodies.low, bodies.high
    if len(solid) > 2000:
        return np.zeros((len(solid) * (len(solid) - 1) // 2, 0), dtype=np.int64)
    i, j = np.triu_indices(len(solid), k=1)
    a, b = solid[i], solid[j]
    touch = ((low[a] <= high[b]) & (low[b] <= high[a])).all(axis=1)
    return np.stack([a[touch], b[touch]], axis=1)


def _reaches_into(bodies: _Bodies, a: int, b: int, tol: Tolerances, budget: Budget) -> bool:
    """Whether a sample of body a's vertices has one strictly inside body b."""
    mesh = bodies.mesh
    faces = bodies.faces(a)
    # Thin out evenly first: the bounding-box filter below only needs a fair sample.
    # Corner c of a's flattened (3f,) corner list is corner c % 3 of face c // 3.
    spread = np.linspace(0, 3 * len(faces) - 1, min(3 * len(faces), 64 * tol.overlap_samples))
    corner = spread.astype(np.int64)
    points = mesh.vertices[mesh.faces[faces[corner // 3], corner % 3]]
    # The column's box lies within b's vertex box: no point there, no column needed.
    if not ((points >= bodies.low[b]) & (points <= bodies.high[b])).all(axis=1).any():
        return False
    column = bodies.column(b, budget)
    low = np.array([column.x.min(), column.y.min(), column.z.min()])
    high = np.array([column.x.max(), column.y.max(), column.z.max()])
    points = points[((points >= low) & (points <= high)).all(axis=1)]
    if len(points) == 0:
        return False
    keep = np.linspace(0, len(points) - 1, min(len(points), tol.overlap_samples))
    points = points[keep.astype(np.int64)]
    # A tiny sideways shift keeps the rays off the other body's edges and vertices.
    jitter = np.random.default_rng(1).normal(size=(len(points), 3)) * 1e-7 * (high - low).max()
    jitter[:, 2] = 0.0
    return any_inside(points + jitter, column, budget)
