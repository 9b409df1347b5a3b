"""Printability checks: mesh arrays in, a :class:`PrintabilityReport` out.

The orchestration: load, merge (slicer_bridge.geometry), optionally repair
(slicer_bridge.repair), then run each check of `_CHECKS` on the shared arrays. Each check runs under a time
budget; a check that runs out of time or cannot run says so as a finding, it is
never silently skipped. `check_file` is the entry point the hub and the node agent
call; it never raises for a bad file: a file that cannot be loaded is an error
finding in the report.

Conventions: vertices are (n, 3) float64 in millimetres, faces (m, 3) int64.
The build plate is the XY plane and "up" is +Z.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from slicer_bridge.budget import Budget, OutOfTime, timed, timed_out
from slicer_bridge.findings import Finding, Printer, Severity, Tolerances
from slicer_bridge.geometry import merge_vertices, prepare
from slicer_bridge.mesh_io import LoadedMesh, LoadLimits, MeshError, load_mesh
from slicer_bridge.orientation import check_fit, check_overhang
from slicer_bridge.overlaps import check_overlaps
from slicer_bridge.printability_checks import (
    Context,
    check_edges,
    check_faces,
    check_size,
    check_units,
    check_volume,
    make_context,
)
from slicer_bridge.profiles import PrinterProfile
from slicer_bridge.repair import repair_mesh
from slicer_bridge.thin_walls import check_thin_walls

__all__ = [
    "CheckResult",
    "Finding",
    "PrintabilityReport",
    "Severity",
    "Tolerances",
    "check_file",
    "check_mesh",
    "check_path",
    "merge_vertices",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_BUILD_VOLUME_MM = (250.0, 210.0, 210.0)
DEFAULT_NOZZLE_MM = 0.4
DEFAULT_LIMITS = LoadLimits()
DEFAULT_TOLERANCES = Tolerances()


@dataclass(frozen=True, slots=True)
class PrintabilityReport:
    """Everything the checks found about one mesh.

    Attributes:
        path: The checked file as given.
        printer: The printer profile's name ("default" without one).
        build_volume_mm: The build volume checked against.
        faces: Triangle count after loading (and repair, if asked).
        vertices: Vertex count after merging coincident vertices.
        bodies: Connected pieces (edge-connected faces).
        extents_mm: Axis-aligned size as stored in the file, (x, y, z).
        volume_mm3: Enclosed volume (meaningful only for a closed mesh).
        area_mm2: Surface area.
        best_orientation: e.g. "as_is", "rotate_x_90", "rotate_y_90+rotate_z_90";
            "" when the mesh could not be loaded.
        findings: Every finding, errors first.
        repaired: True when a repair was asked for and changed the mesh.
        timings_s: Seconds per check.
    """

    path: str
    printer: str
    build_volume_mm: tuple[float, float, float]
    faces: int
    vertices: int
    bodies: int
    extents_mm: tuple[float, float, float]
    volume_mm3: float
    area_mm2: float
    best_orientation: str
    findings: tuple[Finding, ...]
    repaired: bool = False
    timings_s: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def ok(self) -> bool:
        """True exactly when no finding is an error."""
        return not any(f.severity is Severity.ERROR for f in self.findings)

    def codes(self, severity: Severity | None = None) -> set[str]:
        """Return the finding codes, optionally only those of one severity."""
        return {f.code for f in self.findings if severity in (None, f.severity)}

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of `spime check --json`."""
        return {
            "ok": self.ok, "path": self.path, "printer": self.printer,
            "build_volume_mm": list(self.build_volume_mm), "faces": self.faces,
            "vertices": self.vertices, "bodies": self.bodies,
            "extents_mm": [round(x, 4) for x in self.extents_mm],
            "volume_mm3": round(self.volume_mm3, 4), "area_mm2": round(self.area_mm2, 4),
            "best_orientation": self.best_orientation, "repaired": self.repaired,
            "findings": [f.to_dict() for f in self.findings],
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }


@dataclass(frozen=True, slots=True, eq=False)
class CheckResult:
    """A report and the mesh it describes (repaired when repair was asked for).

    Attributes:
        report: The findings.
        vertices: (n, 3) float64, merged.
        faces: (m, 3) int64.
    """

    report: PrintabilityReport
    vertices: FloatArray
    faces: IntArray


# --- entry points ----------------------------------------------------------------------

def check_file(path: str | Path, profile: PrinterProfile | None = None,
               tolerances: Tolerances = DEFAULT_TOLERANCES, repair: bool = False,
               limits: LoadLimits = DEFAULT_LIMITS) -> PrintabilityReport:
    """Load a mesh file and check whether it can be printed.

    Args:
        path: STL (binary/ASCII), OBJ, PLY or 3MF.
        profile: The printer (build volume, nozzle; an optional max_overhang_deg
            attribute is honoured); None = 250 x 210 x 210 mm, 0.4 mm nozzle.
        tolerances: Thresholds and time budgets.
        repair: Repair what can be repaired and report what changed.
        limits: File size and triangle limits.

    Returns:
        The report; a file that cannot be loaded gives a report whose only
        finding is an error naming the problem (ok is False).

    Raises:
        Nothing for a bad, hostile or unreadable file: that is an error finding.
        Each check stops at tolerances.check_seconds and says so in a finding.
    """
    return check_path(path, profile, tolerances, repair, limits).report


def check_path(path: str | Path, profile: PrinterProfile | None = None,
               tolerances: Tolerances = DEFAULT_TOLERANCES, repair: bool = False,
               limits: LoadLimits = DEFAULT_LIMITS) -> CheckResult:
    """Like `check_file`, but also return the (repaired) mesh arrays.

    Raises:
        Nothing for a bad file (see `check_file`).
    """
    printer = _printer(profile, tolerances)
    started = time.perf_counter()
    try:
        loaded = [load_mesh(path, limits)]
    except MeshError as exc:
        return _unloadable(str(path), printer, exc)
    # Hand over the only reference so the raw soup is freed once merged.
    result = _check_loaded(loaded, printer, tolerances, repair, str(path))
    timings = {"load": time.perf_counter() - started - sum(result.report.timings_s.values()),
               **result.report.timings_s}
    return replace(result, report=replace(result.report, timings_s=MappingProxyType(timings)))


def check_mesh(mesh: LoadedMesh, printer_profile: PrinterProfile | None = None,
               tolerances: Tolerances = DEFAULT_TOLERANCES, repair: bool = False,
               path: str = "") -> CheckResult:
    """Check a loaded mesh.

    Args:
        mesh: As loaded by `slicer_bridge.mesh_io.load_mesh`.
        printer_profile: As in `check_file`.
        tolerances: Thresholds and time budgets.
        repair: Repair what can be repaired and report what changed.
        path: Name used in the report.

    Returns:
        The report with the merged (and possibly repaired) mesh.

    Raises:
        Nothing for bad geometry: every problem is a finding.
    """
    return _check_loaded([mesh], _printer(printer_profile, tolerances), tolerances, repair,
                         path)


def _check_loaded(holder: list[LoadedMesh], printer: Printer, tolerances: Tolerances,
                  repair: bool, path: str) -> CheckResult:
    timings: dict[str, float] = {}
    mesh = holder.pop()
    findings: list[Finding] = [Finding("loader_note", Severity.INFO, n) for n in mesh.notes]
    merge = partial(merge_vertices, mesh.vertices, mesh.faces, tolerances.merge_relative)
    del mesh
    vertices, faces, merged = timed(timings, "merge", merge)
    del merge
    if merged:
        findings.append(Finding("merged_vertices", Severity.INFO,
                                f"merged {merged:,} coincident vertices", {"count": merged}))
    repaired = False
    if repair:
        vertices, faces, repair_findings = timed(
            timings, "repair", lambda: repair_mesh(vertices, faces))
        findings.extend(repair_findings)
        repaired = bool(repair_findings)
    report = _analyse(vertices, faces, printer, tolerances, path, findings, timings)
    return CheckResult(replace(report, repaired=repaired), vertices, faces)


def _printer(profile: PrinterProfile | None, tolerances: Tolerances) -> Printer:
    overhang = tolerances.max_overhang_deg
    if profile is None:
        return Printer("default", DEFAULT_BUILD_VOLUME_MM, DEFAULT_NOZZLE_MM,
                        45.0 if overhang is None else overhang)
    volume = tuple(float(x) for x in profile.build_volume_mm)
    if overhang is None:
        overhang = float(getattr(profile, "max_overhang_deg", 45.0) or 45.0)
    return Printer(str(profile.name), (volume[0], volume[1], volume[2]),
                    float(profile.nozzle_mm), overhang)


def _unloadable(path: str, printer: Printer, exc: MeshError) -> CheckResult:
    code = {"EmptyMesh": "empty", "MeshTooLarge": "too_large",
            "UnsupportedFormat": "unsupported_format", "ArchiveRefused": "archive_refused",
            "InvalidGeometry": "invalid_geometry"}.get(type(exc).__name__, "unreadable")
    finding = Finding(code, Severity.ERROR, str(exc), {"error": type(exc).__name__})
    report = PrintabilityReport(path, printer.name, printer.build_volume_mm, 0, 0, 0,
                                (0.0, 0.0, 0.0), 0.0, 0.0, "", (finding,))
    return CheckResult(report, np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))


def _analyse(vertices: FloatArray, faces: IntArray, printer: Printer, tol: Tolerances,
             path: str, findings: list[Finding], timings: dict[str, float]) -> PrintabilityReport:
    collapsed = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (
        faces[:, 2] == faces[:, 0])
    if collapsed.any():
        findings.append(_collapsed_finding(int(collapsed.sum())))
        faces = faces[~collapsed]
    if len(faces) == 0:
        findings.append(Finding("no_faces", Severity.ERROR,
                                "every face is collapsed to a line or point: nothing to print"))
        return _report(path, printer, None, findings, timings, "")
    ctx = timed(timings, "prepare", lambda: make_context(prepare(vertices, faces), printer, tol))
    best = ""
    for name, check in _CHECKS:
        result = _run_check(name, check, ctx, timings)
        if isinstance(result, tuple):
            produced, best, ctx = result
        else:
            produced = result
        findings.extend(produced)
    return _report(path, printer, ctx, findings, timings, best)


def _run_check(name: str, check: Callable[[Context, Budget], Any], ctx: Context,
               timings: dict[str, float]) -> Any:
    budget = Budget(ctx.tol.check_seconds)
    try:
        return timed(timings, name, lambda: check(ctx, budget))
    except OutOfTime:
        return [timed_out(name, ctx.tol)]


def _report(path: str, printer: Printer, ctx: Context | None, findings: list[Finding],
            timings: dict[str, float], best: str) -> PrintabilityReport:
    rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    ordered = tuple(sorted(findings, key=lambda f: rank[f.severity]))
    if ctx is None:
        return PrintabilityReport(path, printer.name, printer.build_volume_mm, 0, 0, 0,
                                  (0.0, 0.0, 0.0), 0.0, 0.0, best, ordered,
                                  timings_s=MappingProxyType(dict(timings)))
    mesh = ctx.mesh
    ext = tuple(float(x) for x in ctx.extents)
    return PrintabilityReport(
        path, printer.name, printer.build_volume_mm, len(mesh.faces), len(mesh.vertices),
        mesh.bodies, (ext[0], ext[1], ext[2]), float(ctx.volumes.sum()),
        float(mesh.areas.sum()), best, ordered, timings_s=MappingProxyType(dict(timings)))


def _collapsed_finding(count: int) -> Finding:
    return Finding("degenerate_faces", Severity.WARNING,
                   f"{count:,} faces have two corners at the same point (zero area); they "
                   "were ignored, and --repair removes them", {"count": count})


_CHECKS: tuple[tuple[str, Callable[[Context, Budget], Any]], ...] = (
    ("edges", check_edges),
    ("faces", check_faces),
    ("volume", check_volume),
    ("units", check_units),
    ("size", check_size),
    ("build_volume", check_fit),
    ("overhang", check_overhang),
    ("thin_walls", check_thin_walls),
    ("overlaps", check_overlaps),
)
