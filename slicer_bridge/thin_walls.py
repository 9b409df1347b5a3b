"""Walls thinner than the nozzle can print: ray casting (embree, optional) or sampling."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from slicer_bridge.budget import Budget
from slicer_bridge.findings import Finding, Severity, Tolerances
from slicer_bridge.geometry import Mesh
from slicer_bridge.printability_checks import Context

__all__ = ["check_thin_walls"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _surface_samples(mesh: Mesh, count: int, seed: int = 0) -> tuple[FloatArray, FloatArray]:
    """Area-weighted random points on the surface: (count, 3) points and their normals."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(mesh.areas)
    picks = np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right")
    picks = np.minimum(picks, len(mesh.faces) - 1)
    u, v = rng.random((2, count))
    outside = u + v > 1
    u[outside], v[outside] = 1 - u[outside], 1 - v[outside]
    corners = mesh.faces[picks]
    a = mesh.vertices[corners[:, 0]]
    points = a + u[:, None] * (mesh.vertices[corners[:, 1]] - a) + v[:, None] * (
        mesh.vertices[corners[:, 2]] - a)
    return points, mesh.normals[picks]


def check_thin_walls(ctx: Context, budget: Budget) -> list[Finding]:
    """Walls thinner than the nozzle can print, by ray casting or surface sampling."""
    wall = ctx.tol.min_wall_mm if ctx.tol.min_wall_mm is not None else ctx.printer.nozzle_mm
    total_area = float(ctx.mesh.areas.sum())
    if total_area <= 0.0:
        return []
    fraction, method, spacing = _thin_fraction(ctx.mesh, wall, ctx.tol, budget)
    area = fraction * total_area
    details = {"thin_area_mm2": round(area, 3), "min_wall_mm": wall, "method": method,
               "sample_spacing_mm": round(spacing, 4)}
    note = ""
    if method == "sampled" and spacing > wall:
        note = (f" (sampled every {spacing:.2g} mm, coarser than the wall limit: thin "
                "features smaller than that may be missed)")
    if area == 0.0:
        return [Finding("thin_walls_checked", Severity.INFO,
                        f"no walls thinner than {wall:g} mm found{note}", details)]
    severe = area >= ctx.tol.thin_wall_min_area_mm2
    return [Finding(
        "thin_walls", Severity.WARNING if severe else Severity.INFO,
        f"about {area:.3g} mm² of the part is thinner than {wall:g} mm, the narrowest "
        f"line this nozzle prints; those walls may be missing from the print{note}", details)]


def _thin_fraction(mesh: Mesh, wall: float, tol: Tolerances,
                   budget: Budget) -> tuple[float, str, float]:
    """Choose ray casting (embree, optional) or sampling; return (fraction, method, spacing)."""
    method = tol.thin_wall_method
    if method == "rays" or (method == "auto" and len(mesh.faces) <= tol.ray_max_faces):
        try:
            return _thin_fraction_rays(mesh, wall, tol, budget)
        except ImportError:  # embreex is optional: fall back to sampling
            pass
    fraction, spacing = _thin_fraction_sampled(mesh, wall, tol, budget)
    return fraction, "sampled", spacing


def _thin_fraction_rays(mesh: Mesh, wall: float, tol: Tolerances,
                        budget: Budget) -> tuple[float, str, float]:
    """Cast a ray inwards from sampled surface points; a thin wall is hit within `wall`.

    Only an exit through an opposite-facing surface counts, so internal faces do
    not. Raises ImportError when embreex (embree) is not installed.
    """
    from trimesh import Trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    points, normals = _surface_samples(mesh, tol.thin_wall_rays)
    offset = wall * 1e-3
    origins = points - normals * offset
    intersector = RayMeshIntersector(Trimesh(mesh.vertices, mesh.faces, process=False))
    budget.check()
    thin = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), 10_000):
        part = slice(start, start + 10_000)
        hits, ray, tri = intersector.intersects_location(
            origins[part], -normals[part], multiple_hits=False)
        depth = np.linalg.norm(hits - origins[part][ray], axis=1) + offset
        facing = np.einsum("ij,ij->i", mesh.normals[tri], normals[part][ray]) < -0.5
        thin[start + ray[(depth < wall) & facing]] = True
        budget.check()
    spacing = math.sqrt(float(mesh.areas.sum()) / len(points))
    return float(thin.mean()), "rays", spacing


def _thin_fraction_sampled(mesh: Mesh, wall: float, tol: Tolerances,
                           budget: Budget) -> tuple[float, float]:
    """Fraction of sampled surface points whose opposite surface is closer than `wall`.

    From a surface point p with outward normal n, the probe p - n * wall / 2 lies
    mid-wall when the wall is thinner than `wall`; a sample of an opposite-facing
    surface within wall / 2 of the probe then proves the wall thin. Samples of p's
    own side are at least wall / 2 away, so they never count.
    """
    area = float(mesh.areas.sum())
    spacing = max(wall / 3.0, math.sqrt(area / tol.thin_wall_samples))
    count = int(min(tol.thin_wall_samples, max(1000, area / spacing**2)))
    points, normals = _surface_samples(mesh, count)
    budget.check()
    # Exact neighbours whatever the tree shape; an unbalanced tree builds twice as fast.
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)
    budget.check()
    probes = points - normals * (wall / 2.0)
    queries = min(count, 50_000)
    thin = np.zeros(queries, dtype=bool)
    for start in range(0, queries, 10_000):
        stop = min(start + 10_000, queries)
        dist, index = tree.query(probes[start:stop], k=4, distance_upper_bound=wall / 2.0)
        found = np.isfinite(dist)
        index = np.where(found, index, 0)
        facing = np.einsum("ikj,ij->ik", normals[index], normals[start:stop]) < -0.5
        thin[start:stop] = (found & facing).any(axis=1)
        budget.check()
    return float(thin.mean()), spacing
