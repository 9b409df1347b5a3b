"""Printability checks: mesh arrays in, a :class:`PrintabilityReport` out.

The vertices are merged once, the edge table is sorted once, and every check reads
those shared arrays (no per-face Python loops). Each check runs under a time
budget; a check that runs out of time or cannot run says so as a finding, it is
never silently skipped. `check_file` is the entry point the hub and the node agent
call; it never raises for a bad file: a file that cannot be loaded is an error
finding in the report.

Conventions: vertices are (n, 3) float64 in millimetres, faces (m, 3) int64.
The build plate is the XY plane and "up" is +Z.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from slicer_bridge.mesh_io import LoadedMesh, LoadLimits, MeshError, load_mesh
from slicer_bridge.profiles import PrinterProfile

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


class Severity(str, Enum):
    """How bad a finding is: any ERROR makes the mesh not printable."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Every threshold the checks use, in millimetres and degrees.

    Attributes:
        merge_relative: Vertices in one grid cell of this times the largest
            extent are one vertex (absorbs float32 export noise); at least 1e-6.
        degenerate_relative: A face whose longest-edge-relative height is below
            this is degenerate (a sliver or a collapsed triangle).
        zero_volume_relative: |volume| below this fraction of the bounding box
            volume is "no volume" (a surface, not a solid).
        max_overhang_deg: Overhang angle from vertical beyond which a downward
            face needs support; None takes the printer's (45 by default).
        overhang_min_area_mm2: Less unsupported overhang than this is only info.
        min_wall_mm: Thinnest printable wall; None takes the nozzle diameter.
        thin_wall_min_area_mm2: Less thin wall than this is only info.
        flat_base_angle_deg: Faces within this of the bed plane count as contact.
        flat_base_height_mm: ...and within this height of the lowest point.
        small_part_mm: A part whose largest extent is below this is probably in
            inches or metres.
        large_part_mm: A part whose largest extent is above this is probably in
            the wrong unit (or not meant for a desktop printer).
        check_seconds: Time budget of each check.
        thin_wall_method: "auto" (ray casting when embree is installed and the
            mesh has at most ray_max_faces faces, else sampling), "rays" or "sampled".
        thin_wall_samples: Most surface samples of the sampled thin-wall check.
        thin_wall_rays: Rays cast by the ray-casting thin-wall check.
        ray_max_faces: Above this, "auto" samples (embree's copy of a huge mesh
            would cost hundreds of MB).
        overlap_samples: Most points tested per pair of overlapping bodies.
        max_body_pairs: Most pairs of bodies tested for overlap.
    """

    merge_relative: float = 1e-6
    degenerate_relative: float = 1e-6
    zero_volume_relative: float = 1e-4
    max_overhang_deg: float | None = None
    overhang_min_area_mm2: float = 100.0
    min_wall_mm: float | None = None
    thin_wall_min_area_mm2: float = 4.0
    flat_base_angle_deg: float = 1.0
    flat_base_height_mm: float = 0.05
    small_part_mm: float = 8.0
    large_part_mm: float = 2000.0
    check_seconds: float = 10.0
    thin_wall_method: str = "auto"
    thin_wall_samples: int = 200_000
    thin_wall_rays: int = 25_000
    ray_max_faces: int = 250_000
    overlap_samples: int = 64
    max_body_pairs: int = 200

    def __post_init__(self) -> None:
        if self.thin_wall_method not in ("auto", "rays", "sampled"):
            raise ValueError(f"thin_wall_method must be 'auto', 'rays' or 'sampled', "
                             f"not {self.thin_wall_method!r}")


@dataclass(frozen=True, slots=True)
class _Printer:
    name: str
    build_volume_mm: tuple[float, float, float]
    nozzle_mm: float
    max_overhang_deg: float


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of one check.

    Attributes:
        code: Stable machine name, e.g. "not_watertight".
        severity: ERROR makes the mesh not printable.
        message: For a person: what is wrong and what to do.
        details: Extra JSON-able values (counts, areas), merged into to_dict().
    """

    code: str
    severity: Severity
    message: str
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        """Return {"code", "severity", "message", **details} for JSON."""
        return {**dict(self.details), "code": self.code, "severity": self.severity.value,
                "message": self.message}


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
               tolerances: Tolerances = Tolerances(), repair: bool = False,
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
               tolerances: Tolerances = Tolerances(), repair: bool = False,
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
               tolerances: Tolerances = Tolerances(), repair: bool = False,
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


def _check_loaded(holder: list[LoadedMesh], printer: _Printer, tolerances: Tolerances,
                  repair: bool, path: str) -> CheckResult:
    timings: dict[str, float] = {}
    mesh = holder.pop()
    findings: list[Finding] = [Finding("loader_note", Severity.INFO, n) for n in mesh.notes]
    merge = partial(merge_vertices, mesh.vertices, mesh.faces, tolerances.merge_relative)
    del mesh
    vertices, faces, merged = _timed(timings, "merge", merge)
    del merge
    if merged:
        findings.append(Finding("merged_vertices", Severity.INFO,
                                f"merged {merged:,} coincident vertices", {"count": merged}))
    repaired = False
    if repair:
        vertices, faces, repair_findings = _timed(
            timings, "repair", lambda: _repair(vertices, faces))
        findings.extend(repair_findings)
        repaired = bool(repair_findings)
    report = _analyse(vertices, faces, printer, tolerances, path, findings, timings)
    return CheckResult(replace(report, repaired=repaired), vertices, faces)


def _printer(profile: PrinterProfile | None, tolerances: Tolerances) -> _Printer:
    overhang = tolerances.max_overhang_deg
    if profile is None:
        return _Printer("default", DEFAULT_BUILD_VOLUME_MM, DEFAULT_NOZZLE_MM,
                        45.0 if overhang is None else overhang)
    volume = tuple(float(x) for x in profile.build_volume_mm)
    if overhang is None:
        overhang = float(getattr(profile, "max_overhang_deg", 45.0) or 45.0)
    return _Printer(str(profile.name), (volume[0], volume[1], volume[2]),
                    float(profile.nozzle_mm), overhang)


def _unloadable(path: str, printer: _Printer, exc: MeshError) -> CheckResult:
    code = {"EmptyMesh": "empty", "MeshTooLarge": "too_large",
            "UnsupportedFormat": "unsupported_format", "ArchiveRefused": "archive_refused",
            "InvalidGeometry": "invalid_geometry"}.get(type(exc).__name__, "unreadable")
    finding = Finding(code, Severity.ERROR, str(exc), {"error": type(exc).__name__})
    report = PrintabilityReport(path, printer.name, printer.build_volume_mm, 0, 0, 0,
                                (0.0, 0.0, 0.0), 0.0, 0.0, "", (finding,))
    return CheckResult(report, np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))


# --- time budget -----------------------------------------------------------------------

class _OutOfTime(Exception):
    pass


class _Budget:
    """A deadline that long-running loops poll between chunks."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.perf_counter() + seconds

    def check(self) -> None:
        if time.perf_counter() > self.deadline:
            raise _OutOfTime


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started


# --- shared arrays -----------------------------------------------------------------------

def _hash_rows(q: IntArray) -> NDArray[np.uint64]:
    """Hash (n, 3) int64 rows into (n,) uint64 (wrapping multiply-xor)."""
    h = q[:, 0].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= q[:, 1].view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= q[:, 2].view(np.uint64) * np.uint64(0x165667B19E3779F9)
    return h


def _face_keys(faces: IntArray, vertex_count: int) -> NDArray[np.uint64]:
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


def _group(keys: NDArray[Any]) -> tuple[IntArray, IntArray, NDArray[np.bool_]]:
    """Sort keys; return (order, group id per element, is-first-of-group in sorted order)."""
    order = np.argsort(keys)
    ordered = keys[order]
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    del ordered
    group = np.empty(len(keys), dtype=np.int64)
    running = np.cumsum(first)
    running -= 1
    group[order] = running
    return order, group, first


def merge_vertices(vertices: NDArray[np.floating[Any]], faces: IntArray | None,
                   relative: float) -> tuple[FloatArray, IntArray, int]:
    """Merge vertices that fall in the same grid cell of `relative` x the largest extent.

    The grid has at most 2**21 cells per axis, so a cell packs exactly into one
    uint64 key and one sort finds the duplicates.

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
    for axis in range(3):
        # Computed in the input's precision: equal inputs always land in equal cells.
        cell = np.rint((vertices[:, axis] - low[axis]) * vertices.dtype.type(1.0 / step))
        key |= cell.astype(np.uint64) << np.uint64(42 - 21 * axis)
    order, group, first = _group(key)
    del key
    unique = vertices[order[first]].astype(np.float64)
    del order, first
    merged_faces = group.reshape(-1, 3) if faces is None else group[faces]
    return unique, merged_faces, len(vertices) - len(unique)


@dataclass(frozen=True, slots=True, eq=False)
class _Mesh:
    """Arrays shared by the checks, computed once (sized for millions of faces).

    vertices (n, 3) float64; faces (m, 3) int64; normals (m, 3) float32 unit
    (zero for degenerate faces); areas (m,) float64; longest (m,) float32 longest
    edge. edge_order (3m,) int32 sorts the directed edges faces[:, [0,1]], [1,2],
    [2,0] (row-major: edge i belongs to face i // 3) by undirected key; edge_first
    marks group starts and edge_count (uint8, saturating) the group size, both in
    that order; edge_forward tells whether each sorted directed edge runs from its
    lower vertex index. labels (m,) int32 numbers each face's body.
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


def _prepare(vertices: FloatArray, faces: IntArray) -> _Mesh:
    normals, areas, longest = _face_geometry(vertices, faces)
    order, first, forward, edge_count = _edge_table(faces, len(vertices))
    labels, bodies = _bodies(order, first, len(faces))
    return _Mesh(vertices, faces, normals, areas, longest, order, first, forward, edge_count,
                 labels, bodies)


def _face_geometry(vertices: FloatArray, faces: IntArray,
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


def _edge_table(faces: IntArray, vertex_count: int) -> tuple[NDArray[np.int32],
                                                             NDArray[np.bool_],
                                                             NDArray[np.bool_],
                                                             NDArray[np.uint8]]:
    """Sort the 3m directed edges by undirected key; see `_Mesh`."""
    start = faces.reshape(-1)
    end = np.roll(faces, -1, axis=1).reshape(-1)
    forward = start < end
    keys = np.minimum(start, end)
    keys *= np.int64(vertex_count)
    keys += np.maximum(start, end)
    del end
    order = np.argsort(keys).astype(np.int32)
    keys = keys[order]
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    del keys
    starts = np.flatnonzero(first)
    counts = np.minimum(np.diff(np.append(starts, len(first))), 255).astype(np.uint8)
    return order, first, forward[order], np.repeat(counts, counts)


def _bodies(order: NDArray[np.int32], first: NDArray[np.bool_],
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


# --- the checks ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Context:
    mesh: _Mesh
    printer: _Printer
    tol: Tolerances
    volumes: FloatArray      # (bodies,) signed volume per body
    extents: FloatArray      # (3,) axis-aligned size
    orientation: FloatArray  # (3, 3) rotation into the best print orientation


def _analyse(vertices: FloatArray, faces: IntArray, printer: _Printer, tol: Tolerances,
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
    mesh = _timed(timings, "prepare", lambda: _prepare(vertices, faces))
    ctx = _context(mesh, printer, tol)
    best = ""
    for name, check in _CHECKS:
        result = _run_check(name, check, ctx, timings)
        if isinstance(result, tuple):
            produced, best, ctx = result
        else:
            produced = result
        findings.extend(produced)
    return _report(path, printer, ctx, findings, timings, best)


def _context(mesh: _Mesh, printer: _Printer, tol: Tolerances) -> _Context:
    # Relative to the lowest corner: far from the origin the signed tetrahedra cancel badly.
    low = np.array([mesh.vertices[:, k].min() for k in range(3)])
    v0 = mesh.vertices[mesh.faces[:, 0]] - low
    per_face = np.einsum("ij,ij->i", v0, mesh.normals) * mesh.areas / 3.0
    del v0
    volumes = np.bincount(mesh.labels, weights=per_face, minlength=mesh.bodies).astype(np.float64)
    extents = np.array([float(np.ptp(mesh.vertices[:, k])) for k in range(3)], dtype=np.float64)
    return _Context(mesh, printer, tol, volumes, extents, np.eye(3))


def _run_check(name: str, check: Callable[[_Context, _Budget], Any], ctx: _Context,
               timings: dict[str, float]) -> Any:
    budget = _Budget(ctx.tol.check_seconds)
    try:
        return _timed(timings, name, lambda: check(ctx, budget))
    except _OutOfTime:
        return [_timed_out(name, ctx.tol)]


def _timed_out(name: str, tol: Tolerances) -> Finding:
    return Finding("check_timed_out", Severity.WARNING,
                   f"the {name.replace('_', ' ')} check ran out of its {tol.check_seconds:g} s "
                   "time limit and was not completed", {"check": name})


def _report(path: str, printer: _Printer, ctx: _Context | None, findings: list[Finding],
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


def _check_edges(ctx: _Context, budget: _Budget) -> list[Finding]:
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


def _check_faces(ctx: _Context, budget: _Budget) -> list[Finding]:
    """Degenerate (zero-height) and duplicate faces."""
    mesh = ctx.mesh
    longest = mesh.longest
    height = np.divide(2.0 * mesh.areas, longest, out=np.zeros(len(longest)), where=longest > 0)
    size = float(ctx.extents.max())
    slivers = int((height <= ctx.tol.degenerate_relative * size).sum())
    keys = np.sort(_face_keys(mesh.faces, len(mesh.vertices)))
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


def _check_volume(ctx: _Context, budget: _Budget) -> list[Finding]:
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


def _check_units(ctx: _Context, budget: _Budget) -> list[Finding]:
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


# --- orientation and build volume --------------------------------------------------------

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


def _on_plate(mesh: _Mesh, up: FloatArray, tol: Tolerances) -> NDArray[np.bool_]:
    """Faces lying within the flat-base height of the lowest point when `up` is up."""
    axis, sign = _axis_of(up)
    height = mesh.vertices[:, axis] * sign
    near = height <= height.min() + tol.flat_base_height_mm
    faces = mesh.faces
    on_plate: NDArray[np.bool_] = near[faces[:, 0]] & near[faces[:, 1]] & near[faces[:, 2]]
    return on_plate


def _contact_area(mesh: _Mesh, down: FloatArray, on_plate: NDArray[np.bool_],
                  tol: Tolerances) -> float:
    """Area of the faces lying flat on the bed when axis direction `down` (3,) faces it.

    `on_plate` (m,) marks the faces at the plate in that orientation (`_on_plate`).
    """
    axis, sign = _axis_of(down)
    flat = mesh.normals[:, axis] * sign >= math.cos(math.radians(tol.flat_base_angle_deg))
    return float(mesh.areas[flat & on_plate].sum())


def _check_fit(ctx: _Context, budget: _Budget) -> tuple[list[Finding], str, _Context]:
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
    except _OutOfTime:
        findings.append(Finding(
            "too_big", Severity.ERROR,
            f"the part ({_dims(ctx.extents)} mm) fits the {_dims(bed)} mm build volume in no "
            f"axis-aligned orientation, and the rotated orientations could not be tried "
            f"within the {ctx.tol.check_seconds:g} s time limit", {"rotated_checked": False}))
        findings.append(_timed_out("build_volume", ctx.tol))
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


def _rotated_fit(ctx: _Context, bed: FloatArray, budget: _Budget) -> Finding:
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


def _overhang_area(mesh: _Mesh, up: FloatArray, on_plate: NDArray[np.bool_],
                   printer: _Printer) -> float:
    """Area of downward faces steeper than the overhang limit when axis direction `up` is up.

    `on_plate` (m,) marks the faces resting on the plate in that orientation.
    """
    axis, sign = _axis_of(up)
    steep = -mesh.normals[:, axis] * sign > math.sin(math.radians(printer.max_overhang_deg))
    return float(mesh.areas[steep & ~on_plate].sum())


def _check_overhang(ctx: _Context, budget: _Budget) -> list[Finding]:
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


# --- thin walls ----------------------------------------------------------------------------

def _surface_samples(mesh: _Mesh, count: int, seed: int = 0) -> tuple[FloatArray, FloatArray]:
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


def _check_thin_walls(ctx: _Context, budget: _Budget) -> list[Finding]:
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


def _thin_fraction(mesh: _Mesh, wall: float, tol: Tolerances,
                   budget: _Budget) -> tuple[float, str, float]:
    """Choose ray casting (embree, optional) or sampling; return (fraction, method, spacing)."""
    method = tol.thin_wall_method
    if method == "rays" or (method == "auto" and len(mesh.faces) <= tol.ray_max_faces):
        try:
            return _thin_fraction_rays(mesh, wall, tol, budget)
        except ImportError:  # embreex is optional: fall back to sampling
            pass
    fraction, spacing = _thin_fraction_sampled(mesh, wall, tol, budget)
    return fraction, "sampled", spacing


def _thin_fraction_rays(mesh: _Mesh, wall: float, tol: Tolerances,
                        budget: _Budget) -> tuple[float, str, float]:
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


def _thin_fraction_sampled(mesh: _Mesh, wall: float, tol: Tolerances,
                           budget: _Budget) -> tuple[float, float]:
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
    tree = cKDTree(points)
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


# --- overlapping bodies ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True, eq=False)
class _Column:
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


def _column(triangles: FloatArray) -> _Column:
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
    return _Column(x, y, z, det, origin, cell, key[small], small,
                   np.flatnonzero(extent > cell))


def _corner_min(values: FloatArray) -> FloatArray:
    """Row minimum of (t, 3): pairwise, as a reduction over a short axis is slow."""
    return np.minimum(np.minimum(values[:, 0], values[:, 1]), values[:, 2])


def _corner_max(values: FloatArray) -> FloatArray:
    """Row maximum of (t, 3)."""
    return np.maximum(np.maximum(values[:, 0], values[:, 1]), values[:, 2])


def _candidates(column: _Column, point: FloatArray) -> IntArray:
    """Triangles whose XY box may contain `point`: its cell and the 8 around it."""
    i, j = np.floor((point[:2] - column.origin) / column.cell).astype(np.int64)
    near = np.array([(i + di) * _GRID_ROW + j + dj for di in (-1, 0, 1) for dj in (-1, 0, 1)])
    first = np.searchsorted(column.keys, near, side="left")
    last = np.searchsorted(column.keys, near, side="right")
    return np.concatenate([column.small[f:l] for f, l in zip(first, last, strict=True)]
                          + [column.big])


def _any_inside(points: FloatArray, column: _Column, budget: _Budget) -> bool:
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


def _check_overlaps(ctx: _Context, budget: _Budget) -> list[Finding]:
    """Closed bodies that intersect or nest inside each other (the only self-intersection test).

    A sample of each body's vertices is tested against the other body by ray
    parity; open bodies have no inside and are left out (said in the finding).
    """
    mesh = ctx.mesh
    if mesh.bodies == 1:
        return [Finding("self_intersection_not_checked", Severity.INFO,
                        "faces crossing within one body are not checked (no cheap exact "
                        "test); slicers usually cope with small ones")]
    closed = _closed_bodies(mesh)
    # Inside/outside is defined only for closed bodies of positive volume.
    pairs = _overlapping_boxes(mesh, np.flatnonzero((ctx.volumes > 0) & closed))
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
    columns: dict[int, _Column] = {}
    for a, b in pairs.tolist():
        small, large = (a, b) if ctx.volumes[a] <= ctx.volumes[b] else (b, a)
        # A small part pushed into a large one is the usual case: test that way first.
        if _reaches_into(mesh, small, large, columns, ctx.tol, budget) or _reaches_into(
                mesh, large, small, columns, ctx.tol, budget):
            crossing.append((a, b))
    if not crossing:
        return findings
    return findings + [Finding(
        "overlapping_bodies", Severity.WARNING,
        f"{len(crossing):,} pairs of bodies intersect or sit inside one another; slicers "
        "merge them, but a boolean union in the modelling tool is cleaner",
        {"pairs": len(crossing)})]


def _body_boxes(mesh: _Mesh) -> tuple[FloatArray, FloatArray]:
    """(bodies, 3) lowest and highest corner of each body's vertices."""
    owner = np.full(len(mesh.vertices), -1, dtype=np.int64)
    for k in range(3):
        owner[mesh.faces[:, k]] = mesh.labels
    used = np.flatnonzero(owner >= 0)
    order = used[np.argsort(owner[used], kind="stable")]
    starts = np.searchsorted(owner[order], np.arange(mesh.bodies))
    points = mesh.vertices[order]
    return np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts)


def _closed_bodies(mesh: _Mesh) -> NDArray[np.bool_]:
    """(bodies,) True for bodies without open edges."""
    open_faces = mesh.edge_order[mesh.edge_count == 1] // 3
    closed = np.ones(mesh.bodies, dtype=bool)
    closed[mesh.labels[open_faces]] = False
    return closed


def _overlapping_boxes(mesh: _Mesh, solid: IntArray) -> IntArray:
    """Pairs (k, 2) of the `solid` bodies whose bounding boxes overlap."""
    low, high = _body_boxes(mesh)
    if len(solid) > 2000:
        return np.zeros((len(solid) * (len(solid) - 1) // 2, 0), dtype=np.int64)
    i, j = np.triu_indices(len(solid), k=1)
    a, b = solid[i], solid[j]
    touch = ((low[a] <= high[b]) & (low[b] <= high[a])).all(axis=1)
    return np.stack([a[touch], b[touch]], axis=1)


def _reaches_into(mesh: _Mesh, a: int, b: int, columns: dict[int, _Column],
                  tol: Tolerances, budget: _Budget) -> bool:
    """Whether a sample of body a's vertices has one strictly inside body b."""
    corners = mesh.faces[mesh.labels == a].reshape(-1)
    # Thin out evenly first: the bounding-box filter below only needs a fair sample.
    spread = np.linspace(0, len(corners) - 1, min(len(corners), 64 * tol.overlap_samples))
    points = mesh.vertices[corners[spread.astype(np.int64)]]
    if b not in columns:
        columns[b] = _column(mesh.vertices[mesh.faces[mesh.labels == b]])
        budget.check()
    column = columns[b]
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
    return _any_inside(points + jitter, column, budget)


_CHECKS: tuple[tuple[str, Callable[[_Context, _Budget], Any]], ...] = (
    ("edges", _check_edges),
    ("faces", _check_faces),
    ("volume", _check_volume),
    ("units", _check_units),
    ("build_volume", _check_fit),
    ("overhang", _check_overhang),
    ("thin_walls", _check_thin_walls),
    ("overlaps", _check_overlaps),
)


# --- repair ------------------------------------------------------------------------------------

def _repair(vertices: FloatArray, faces: IntArray) -> tuple[FloatArray, IntArray, list[Finding]]:
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
    keep &= _face_geometry(vertices, faces)[1] > 0
    keys = _face_keys(faces, len(vertices))
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
    order, first, forward, count = _edge_table(faces, len(vertices))
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
    budget = _Budget(60.0)
    columns: dict[int, _Column] = {}
    first_face = np.full(labels.max() + 1, -1, dtype=np.int64)
    first_face[labels[::-1]] = np.arange(len(labels))[::-1]
    result = np.zeros(len(outer), dtype=bool)
    for n, (o, i) in enumerate(zip(outer.tolist(), inner.tolist(), strict=True)):
        if o not in columns:
            columns[o] = _column(vertices[faces[labels == o]])
        point = vertices[faces[first_face[i], 0]][None] + [1e-7, 2e-7, 0.0]
        result[n] = _any_inside(point, columns[o], budget)
    return result


def _fill_small_holes(vertices: FloatArray, faces: IntArray) -> tuple[FloatArray, IntArray, int]:
    """Close holes bounded by three or four edges (trimesh's fill_holes)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    trimesh.repair.fill_holes(mesh)
    filled = np.asarray(mesh.vertices, dtype=np.float64)
    added = np.asarray(mesh.faces, dtype=np.int64)[len(faces):]
    # A lone triangle's own edges look like a hole: never "fill" it with its mirror.
    keys = np.sort(_face_keys(faces, len(filled)))
    new_keys = _face_keys(added, len(filled))
    position = np.minimum(np.searchsorted(keys, new_keys), len(keys) - 1)
    added = added[keys[position] != new_keys]
    return filled, np.concatenate([faces, added]), len(added)
