"""Print orientation: the 24 axis-aligned orientations, a minimum-volume box, a tilted fit,
and the overhang area in the chosen orientation."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.budget import Budget, OutOfTime, timed_out
from slicer_bridge.findings import Finding, Printer, Severity, Tolerances
from slicer_bridge.geometry import Mesh
from slicer_bridge.printability_checks import Context

__all__ = ["check_fit", "check_overhang"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def _rot(axis: int, degrees: float) -> FloatArray:
    c, s = round(math.cos(math.radians(degrees))), round(math.sin(math.radians(degrees)))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


# Each turns one side of the part onto the bed: (name, rotation, side in part coordinates).
# With an optional quarter turn about Z these give every distinct bounding box of the 24
# axis-aligned orientations (the other 12 differ by a half turn about Z: same box, same base).
_ORIENTATIONS: tuple[tuple[str, FloatArray, FloatArray], ...] = tuple(
    (name, matrix, matrix.T @ np.array([0.0, 0.0, -1.0]))
    for name, matrix in (
        ("as_is", np.eye(3)), ("rotate_x_90", _rot(0, 90)), ("rotate_x_270", _rot(0, 270)),
        ("rotate_y_90", _rot(1, 90)), ("rotate_y_270", _rot(1, 270)),
        ("rotate_x_180", _rot(0, 180)),
    ))


def _axis_of(direction: FloatArray) -> tuple[int, float]:
    axis = int(np.argmax(np.abs(direction)))
    return axis, float(np.sign(direction[axis]))


def _on_plate(mesh: Mesh, up: FloatArray, tol: Tolerances) -> NDArray[np.bool_]:
    """Faces lying within the flat-base height of the lowest point when `up` is up."""
    axis, sign = _axis_of(up)
    height = mesh.vertices[:, axis] * sign
    near = height <= height.min() + tol.flat_base_height_mm
    faces = mesh.faces
    on_plate: NDArray[np.bool_] = near[faces[:, 0]]
    # Few faces reach the plate: test the other two corners of those only.
    first = np.flatnonzero(on_plate)
    on_plate[first] = near[faces[first, 1]] & near[faces[first, 2]]
    return on_plate


def _contact_area(mesh: Mesh, down: FloatArray, on_plate: NDArray[np.bool_],
                  tol: Tolerances) -> float:
    """Area of the faces lying flat on the bed when axis direction `down` (3,) faces it.

    `on_plate` (m,) marks the faces at the plate in that orientation (`_on_plate`).
    """
    axis, sign = _axis_of(down)
    flat = mesh.normals[:, axis] * sign >= math.cos(math.radians(tol.flat_base_angle_deg))
    return float(mesh.areas[flat & on_plate].sum())


def check_fit(ctx: Context, budget: Budget) -> tuple[list[Finding], str, Context]:
    """Try the 24 axis-aligned orientations, then a minimum-volume box, then a tilt.

    The best orientation fits, has the most flat base (within 5%), the least
    overhang, then the lowest height.
    """
    bed = np.array(ctx.printer.build_volume_mm)
    plates = [_on_plate(ctx.mesh, -down, ctx.tol) for _, _, down in _ORIENTATIONS]
    contacts = [_contact_area(ctx.mesh, down, plate, ctx.tol)
                for (_, _, down), plate in zip(_ORIENTATIONS, plates, strict=True)]
    overhangs = [_overhang_area(ctx.mesh, -down, plate, ctx.printer)
                 for (_, _, down), plate in zip(_ORIENTATIONS, plates, strict=True)]
    del plates
    quantum = max(max(contacts) * 0.05, 1e-12)
    candidates = []
    for rank, (name, matrix, _) in enumerate(_ORIENTATIONS):
        contact = contacts[rank]
        for turn in (False, True):
            full = _rot(2, 90) @ matrix if turn else matrix
            size = np.abs(full) @ ctx.extents
            fits = bool((size <= bed + 1e-6).all())
            key = (not fits, -math.floor(contact / quantum), overhangs[rank], size[2], rank, turn)
            candidates.append((key, name + ("+rotate_z_90" if turn else ""), full, size, contact))
    _, name, matrix, size, contact = min(candidates, key=lambda c: c[0])
    oriented = replace(ctx, orientation=matrix)
    details = {"orientation": name, "contact_area_mm2": round(contact, 3),
               "oriented_extents_mm": [round(float(x), 3) for x in size]}
    findings = [_contact_finding(contact, size, details)]
    if (size <= bed + 1e-6).all():
        findings.append(Finding("fits_build_volume", Severity.INFO,
                                f"fits the {_dims(bed)} mm build volume ({name})", details))
        return findings, name, oriented
    try:
        findings.append(_rotated_fit(ctx, bed, budget))
    except OutOfTime:
        findings.append(Finding(
            "too_big", Severity.ERROR,
            f"the part ({_dims(ctx.extents)} mm) fits the {_dims(bed)} mm build volume in no "
            f"axis-aligned orientation, and the rotated orientations could not be tried "
            f"within the {ctx.tol.check_seconds:g} s time limit", {"rotated_checked": False}))
        findings.append(timed_out("build_volume", ctx.tol))
    return findings, name, oriented


def _dims(values: Any) -> str:
    return " x ".join(f"{float(x):.4g}" for x in values)


def _contact_finding(contact: float, size: FloatArray, details: dict[str, Any]) -> Finding:
    if contact <= 0.0:
        return Finding("no_flat_base", Severity.WARNING,
                       "no flat face rests on the bed in any axis-aligned orientation: it "
                       "needs supports or a brim, or a flat cut", details)
    footprint = float(min(size[0], size[1]))
    if size[2] > 8 * max(footprint, 1e-9) and size[2] > 30:
        return Finding("tall_and_narrow", Severity.WARNING,
                       f"the part stands {size[2]:.4g} mm tall on a {footprint:.4g} mm base: "
                       "it may tip over; add a brim or print it lying down", details)
    return Finding("flat_base", Severity.INFO,
                   f"{contact:.4g} mm² of flat base rests on the bed", details)


def _rotated_fit(ctx: Context, bed: FloatArray, budget: Budget) -> Finding:
    """Try the minimum-volume box turned onto the bed axes, then either box tilted."""
    rotation, box = _min_volume_box(ctx.mesh.vertices)
    boxes = [("axis-aligned box", ctx.extents, np.eye(3)), ("minimum-volume box", box, rotation)]
    budget.check()
    for label, extents, turn in boxes:
        if (np.sort(extents) <= np.sort(bed) + 1e-6).all():
            return Finding("fits_rotated", Severity.WARNING,
                           f"fits only when turned so its {label} ({_dims(extents)} mm) is "
                           "axis-aligned on the bed; orient it in the slicer",
                           {"box": label, "box_extents_mm": [float(x) for x in extents],
                            "rotation": np.round(turn, 6).tolist()})
        tilt = _tilted_fit(extents, bed)
        if tilt:
            axis, degrees = tilt
            return Finding("fits_tilted", Severity.WARNING,
                           f"fits only when its {label} ({_dims(extents)} mm) is tilted "
                           f"{degrees:.1f}° about the bed's {axis} axis; it will need supports",
                           {"box": label, "tilt_axis": axis, "tilt_deg": degrees})
    return Finding("too_big", Severity.ERROR,
                   f"the part ({_dims(ctx.extents)} mm) fits the {_dims(bed)} mm build volume "
                   "in no orientation: scale it down or split it into pieces",
                   {"extents_mm": [float(x) for x in ctx.extents]})


def _min_volume_box(points: FloatArray, sample: int = 5_000) -> tuple[FloatArray, FloatArray]:
    """Rotation (3, 3) onto a (near) minimum-volume box around (n, 3) points, and its extents.

    trimesh finds the box of the convex hull (scipy qhull) of an even sample of
    the points; the extents are then measured over all points, so the box
    always contains the part (it may be slightly larger than the optimum).
    """
    from trimesh.bounds import oriented_bounds

    picked = points[np.linspace(0, len(points) - 1, min(len(points), sample)).astype(np.int64)]
    transform, _ = oriented_bounds(picked)  # type: ignore[no-untyped-call]
    rotation = np.asarray(transform, dtype=np.float64)[:3, :3]
    rotated = points @ rotation.T
    return rotation, np.array([float(np.ptp(rotated[:, k])) for k in range(3)])


def _tilted_fit(extents: FloatArray, bed: FloatArray) -> tuple[str, float] | None:
    """Find a box-dimension-to-bed-axis assignment and angle at which the box fits.

    One box side lies along a bed axis; the other two are turned by theta in the
    plane of the remaining two bed axes.
    """
    theta = np.radians(np.arange(0.0, 90.25, 0.25))
    c, s = np.cos(theta), np.sin(theta)
    for axis in range(3):
        width, height = np.delete(bed, axis)
        for k in range(3):
            if extents[k] > bed[axis] + 1e-6:
                continue
            p, q = np.delete(extents, k)
            ok = (p * c + q * s <= width + 1e-6) & (p * s + q * c <= height + 1e-6)
            if ok.any():
                return "XYZ"[axis], float(np.degrees(theta[np.flatnonzero(ok)[0]]))
    return None


def _overhang_area(mesh: Mesh, up: FloatArray, on_plate: NDArray[np.bool_],
                   printer: Printer) -> float:
    """Area of downward faces steeper than the overhang limit when axis direction `up` is up.

    `on_plate` (m,) marks the faces resting on the plate in that orientation.
    """
    axis, sign = _axis_of(up)
    steep = -mesh.normals[:, axis] * sign > math.sin(math.radians(printer.max_overhang_deg))
    return float(mesh.areas[steep & ~on_plate].sum())


def check_overhang(ctx: Context, budget: Budget) -> list[Finding]:
    """Downward faces steeper than the printer's overhang angle, in the best orientation."""
    up = ctx.orientation[2]
    area = _overhang_area(ctx.mesh, up, _on_plate(ctx.mesh, up, ctx.tol), ctx.printer)
    if area == 0.0:
        return []
    severe = area >= ctx.tol.overhang_min_area_mm2
    return [Finding(
        "needs_supports" if severe else "small_overhangs",
        Severity.WARNING if severe else Severity.INFO,
        f"{area:.4g} mm² of the surface overhangs more than "
        f"{ctx.printer.max_overhang_deg:g}° from vertical in the best orientation"
        + ("; it needs supports" if severe else ""),
        {"overhang_area_mm2": round(area, 3), "max_overhang_deg": ctx.printer.max_overhang_deg})]
