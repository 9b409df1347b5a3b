"""Point-in-body tests by vertical-ray parity (slicer_bridge.ray_parity) against a sphere."""

from __future__ import annotations

import numpy as np
import trimesh

from slicer_bridge.budget import Budget
from slicer_bridge.ray_parity import any_inside, build_column


def test_points_inside_and_outside_a_sphere_are_told_apart() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=10.0)
    column = build_column(np.asarray(sphere.vertices)[np.asarray(sphere.faces)])
    rng = np.random.default_rng(7)
    points = rng.uniform(-12.0, 12.0, size=(400, 3))
    radius = np.linalg.norm(points, axis=1)
    clear = (radius < 9.5) | (radius > 10.5)  # the facets sit up to ~0.1 mm inside
    budget = Budget(60.0)
    found = [any_inside(p[None], column, budget) for p in points[clear]]
    assert found == (radius[clear] < 9.5).tolist()


def test_triangles_wider_than_many_cells_are_still_tested() -> None:
    # A closed box of 12 big triangles plus a dense patch that makes the grid cells tiny.
    box = trimesh.creation.box(extents=(20.0, 20.0, 20.0))
    patch = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    patch.apply_translation((30.0, 30.0, 0.0))
    mesh = trimesh.util.concatenate([box, patch])
    column = build_column(np.asarray(mesh.vertices)[np.asarray(mesh.faces)])
    assert len(column.big) > 0
    budget = Budget(60.0)
    assert any_inside(np.array([[1.0, 2.0, 3.0]]), column, budget)
    assert not any_inside(np.array([[15.0, 2.0, 3.0]]), column, budget)
