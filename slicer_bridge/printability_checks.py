"""The topology, face, volume and unit checks: shared arrays in, findings out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.budget import Budget
from slicer_bridge.findings import Finding, Printer, Severity, Tolerances
from slicer_bridge.geometry import Mesh, face_keys

__all__ = ["Context", "check_edges", "check_faces", "check_size", "check_units",
           "check_volume", "make_context"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Context:
    mesh: Mesh
    printer: Printer
    tol: Tolerances
    volumes: FloatArray      # (bodies,) signed volume per body
    extents: FloatArray      # (3,) axis-aligned size
    orientation: FloatArray  # (3, 3) rotation into the best print orientation


def make_context(mesh: Mesh, printer: Printer, tol: Tolerances) -> Context:
    """Add the per-body signed volumes and the extents to the shared arrays."""
    # Relative to the lowest corner: far from the origin the signed tetrahedra cancel badly.
    low = np.array([mesh.vertices[:, k].min() for k in range(3)])
    v0 = mesh.vertices[mesh.faces[:, 0]] - low
    per_face = np.einsum("ij,ij->i", v0, mesh.normals) * mesh.areas / 3.0
    del v0
    volumes = np.bincount(mesh.labels, weights=per_face, minlength=mesh.bodies).astype(np.float64)
    extents = np.array([float(np.ptp(mesh.vertices[:, k])) for k in range(3)], dtype=np.float64)
    return Context(mesh, printer, tol, volumes, extents, np.eye(3))


def check_edges(ctx: Context, budget: Budget) -> list[Finding]:
    """Watertight, manifold and consistently wound: all from the sorted edge table."""
    mesh = ctx.mesh
    first = mesh.edge_first
    count = mesh.edge_count[first]
    open_edges = int((count == 1).sum())
    nonmanifold = int((count > 2).sum())
    pair_start = np.flatnonzero(first & (mesh.edge_count == 2))
    flipped = int((mesh.edge_forward[pair_start] == mesh.edge_forward[pair_start + 1]).sum())
    findings = []
    if open_edges:
        findings.append(Finding(
            "not_watertight", Severity.ERROR,
            f"the surface has holes: {open_edges:,} edges belong to only one face; close "
            "them in the modelling tool (or try --repair for small holes)",
            {"open_edges": open_edges}))
    if nonmanifold:
        findings.append(Finding(
            "non_manifold_edges", Severity.ERROR,
            f"{nonmanifold:,} edges are shared by more than two faces (touching bodies, "
            "internal or duplicate faces); the inside of the part is ambiguous",
            {"non_manifold_edges": nonmanifold}))
    if flipped:
        findings.append(Finding(
            "inconsistent_winding", Severity.ERROR,
            f"neighbouring faces disagree about which side is outside along {flipped:,} "
            "edges (some faces are flipped); --repair can fix the winding",
            {"flipped_edges": flipped}))
    return findings


def check_faces(ctx: Context, budget: Budget) -> list[Finding]:
    """Degenerate (zero-height) and duplicate faces."""
    mesh = ctx.mesh
    longest = mesh.longest
    height = np.divide(2.0 * mesh.areas, longest, out=np.zeros(len(longest)), where=longest > 0)
    size = float(ctx.extents.max())
    slivers = int((height <= ctx.tol.degenerate_relative * size).sum())
    keys = np.sort(face_keys(mesh.faces, len(mesh.vertices)))
    duplicates = int(np.count_nonzero(keys[1:] == keys[:-1]))  # np.unique hashes: slower
    findings = []
    if slivers:
        findings.append(Finding(
            "degenerate_faces", Severity.WARNING,
            f"{slivers:,} faces have (almost) no area; slicers drop them, --repair removes "
            "them", {"count": slivers}))
    if duplicates:
        findings.append(Finding(
            "duplicate_faces", Severity.ERROR,
            f"{duplicates:,} faces repeat another face (same three corners); the part "
            "has overlapping skins, --repair removes the copies", {"count": duplicates}))
    return findings


def check_volume(ctx: Context, budget: Budget) -> list[Finding]:
    """Zero volume, inside-out normals and the number of bodies."""
    total = float(ctx.volumes.sum())
    box = float(np.prod(ctx.extents))
    findings = []
    if abs(total) <= ctx.tol.zero_volume_relative * box or box == 0.0:
        findings.append(Finding(
            "zero_volume", Severity.ERROR,
            f"the mesh encloses no volume ({total:.3g} mm³ in a {box:.3g} mm³ box): it is a "
            "surface or a render model, not a solid; model it with thickness",
            {"volume_mm3": total}))
    elif total < 0 and not (ctx.mesh.edge_count == 1).any():
        findings.append(Finding(
            "inverted_normals", Severity.ERROR,
            "the normals point inwards (negative volume): the mesh is inside out; "
            "--repair flips it", {"volume_mm3": total}))
    if ctx.mesh.bodies > 1:
        negative = int((ctx.volumes < 0).sum()) if total > 0 else 0
        findings.append(Finding(
            "multiple_bodies", Severity.INFO,
            f"the mesh has {ctx.mesh.bodies:,} separate bodies"
            + (f", {negative:,} of them inward-facing (cavities or inverted)" if negative else ""),
            {"bodies": ctx.mesh.bodies, "inward_bodies": negative}))
    return findings


def check_units(ctx: Context, budget: Budget) -> list[Finding]:
    """A part a few millimetres or several metres across is probably in the wrong unit."""
    size = float(ctx.extents.max())
    dims = " x ".join(f"{x:.4g}" for x in ctx.extents)
    if size < 1.0:
        guess, factor = "metres", 1000.0
    elif size < ctx.tol.small_part_mm:
        guess, factor = "inches", 25.4
    elif size > ctx.tol.large_part_mm:
        return [Finding(
            "units_suspect", Severity.WARNING,
            f"the part is {dims} mm, several metres across: probably exported in the wrong "
            "unit (or scaled twice); check the export settings", {"guess": "too_large"})]
    else:
        return []
    return [Finding(
        "units_suspect", Severity.WARNING,
        f"the part is only {dims} mm: probably modelled in {guess}; scale it by "
        f"{factor:g} if so", {"guess": guess, "scale": factor})]


def check_size(ctx: Context, budget: Budget) -> list[Finding]:
    """A part whose smallest extent is thinner than the nozzle cannot be printed at all.

    Nothing of it is as thick as one extruded line (a file stored in metres is 1000x too
    small: sliced, it gives no layers), so it is an error, not a warning.
    """
    nozzle = ctx.printer.nozzle_mm
    thinnest = float(ctx.extents.min())
    if thinnest >= nozzle:
        return []
    dims = " x ".join(f"{x:.4g}" for x in ctx.extents)
    hint = " (stored in metres? scale it by 1000)" if float(ctx.extents.max()) < 1.0 else ""
    return [Finding(
        "too_small_to_print", Severity.ERROR,
        f"the part is {dims} mm: its smallest extent, {thinnest:.4g} mm, is thinner than the "
        f"{nozzle:g} mm nozzle, so nothing of it can be printed{hint}",
        {"extents_mm": [round(float(x), 6) for x in ctx.extents], "nozzle_mm": nozzle})]
