"""Printability: invariants over real broken meshes and one tiny mesh per failure mode.

The real meshes (tests/data/meshes/SOURCES.md) come with what trimesh, admesh and
PrusaSlicer said about them; where the tools disagree these tests follow the
geometry (e.g. a zero-volume render model is not printable).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from slicer_bridge.mesh_io import LoadedMesh, write_binary_stl
from slicer_bridge.printability import (
    Finding,
    PrintabilityReport,
    Severity,
    Tolerances,
    check_file,
    check_mesh,
    check_path,
    merge_vertices,
)
from slicer_bridge.profiles import load_profile

DATA = Path(__file__).resolve().parent.parent / "data" / "meshes" / "trimesh"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """Decompress a real mesh under its original name and return its path."""
    root = tmp_path_factory.mktemp("real")

    def get(name: str) -> Path:
        target = root / name
        if not target.exists():
            target.write_bytes(gzip.decompress((DATA / f"{name}.gz").read_bytes()))
        return target

    return get


@pytest.fixture(scope="module")
def report_of(real):
    cache: dict[str, PrintabilityReport] = {}

    def get(name: str) -> PrintabilityReport:
        if name not in cache:
            cache[name] = check_file(real(name))
        return cache[name]

    return get


def _finding(report: PrintabilityReport, code: str) -> Finding:
    matches = [f for f in report.findings if f.code == code]
    assert matches, f"no {code!r} in {[f.code for f in report.findings]}"
    return matches[0]


# --- real meshes -------------------------------------------------------------------------

def test_clean_calibration_cube_is_printable(report_of) -> None:
    report = report_of("20mm-xyz-cube.stl")
    assert report.ok, report.findings
    assert (report.faces, report.bodies) == (260, 1)
    assert report.extents_mm == pytest.approx((20, 20, 20), abs=1e-3)
    assert report.volume_mm3 == pytest.approx(8000, rel=0.05)
    assert "fits_build_volume" in report.codes()
    assert "units_suspect" not in report.codes()


def test_counter_is_too_big_for_the_default_bed_and_its_bodies_overlap(report_of) -> None:
    report = report_of("counter.unitsmm.STL")
    assert not report.ok
    assert "too_big" in report.codes(Severity.ERROR)
    assert report.bodies == 6
    assert "overlapping_bodies" in report.codes(Severity.WARNING)
    assert report.extents_mm == pytest.approx((304.8, 304.4, 25.84), abs=0.1)


def test_plate_fits_no_axis_aligned_orientation_but_fits_tilted(report_of) -> None:
    report = report_of("plate_holes.STL")
    assert "fits_build_volume" not in report.codes()
    tilted = _finding(report, "fits_tilted")
    assert tilted.severity is Severity.WARNING
    assert 0 < tilted.details["tilt_deg"] < 90
    assert report.ok


def test_part_in_metres_is_flagged(report_of) -> None:
    report = report_of("ADIS16480.STL")
    units = _finding(report, "units_suspect")
    assert units.details["guess"] == "metres"
    assert units.details["scale"] == 1000


def test_tray_stored_y_up_is_turned_flat_and_still_too_big(report_of) -> None:
    report = report_of("1002_tray_bottom.STL")
    assert report.best_orientation.split("+")[0] in {"rotate_x_90", "rotate_x_270"}
    assert "too_big" in report.codes(Severity.ERROR)
    contact = _finding(report, "flat_base").details["contact_area_mm2"]
    assert contact > 0.5 * 355.6 * 355.6 * 0.5


def test_zero_volume_render_model_is_not_printable_though_a_slicer_says_manifold(
        report_of) -> None:
    report = report_of("chair_model.obj")
    assert not report.ok
    assert "zero_volume" in report.codes(Severity.ERROR)
    assert "duplicate_faces" in report.codes(Severity.ERROR)


def test_triangle_soup(report_of) -> None:
    report = report_of("soup.stl")
    assert not report.ok
    assert report.bodies == 100
    assert _finding(report, "not_watertight").details["open_edges"] == 300


def test_multibody_with_inconsistent_winding(report_of) -> None:
    report = report_of("multibody.stl")
    assert report.bodies == 2
    assert "inconsistent_winding" in report.codes(Severity.ERROR)


def test_two_cubes_sharing_an_edge_are_non_manifold(report_of) -> None:
    report = report_of("shared.STL")
    assert _finding(report, "non_manifold_edges").details["non_manifold_edges"] == 1


def test_teapot_is_open_so_its_crossing_parts_have_no_inside(report_of) -> None:
    report = report_of("teapot.stl")
    assert _finding(report, "not_watertight").details["open_edges"] == 64
    assert _finding(report, "overlap_partly_checked").details["open_bodies"] >= 1


def test_capsule_seams_merge_and_pole_triangles_are_degenerate(report_of) -> None:
    report = report_of("capsule.obj")
    assert "not_watertight" not in report.codes()
    assert _finding(report, "degenerate_faces").details["count"] == 200
    assert report.bodies == 1


@pytest.mark.parametrize("name", ["quadknot.obj", "featuretype.ply", "featuretype.STL",
                                  "idler_riser.STL"])
def test_seamed_or_noisy_files_are_watertight_after_one_merge(report_of, name: str) -> None:
    report = report_of(name)
    assert not report.codes(Severity.ERROR), report.findings
    assert report.bodies == 1


def test_featuretype_stl_and_ply_agree(report_of) -> None:
    stl, ply = report_of("featuretype.STL"), report_of("featuretype.ply")
    assert stl.faces == ply.faces
    assert stl.volume_mm3 == pytest.approx(ply.volume_mm3, rel=1e-4)
    assert _finding(stl, "units_suspect").details["guess"] == "inches"


def test_tube_with_thin_wall_stands_tall(report_of) -> None:
    report = report_of("round.stl")
    assert "thin_walls" in report.codes(Severity.WARNING)
    assert "tall_and_narrow" in report.codes(Severity.WARNING)


def test_building_sized_block(report_of) -> None:
    report = report_of("large_block.STL")
    assert "too_big" in report.codes(Severity.ERROR)
    assert _finding(report, "units_suspect").details["guess"] == "too_large"


def test_empty_file_is_an_error_finding(report_of) -> None:
    report = report_of("empty.stl")
    assert not report.ok
    assert report.codes() == {"empty"}
    assert report.faces == 0


@pytest.mark.parametrize("name,open_edges,non_manifold", [
    ("not_convex.obj", 0, 12), ("wallhole.obj", 0, 1), ("suzanne.ply", 42, 0),
])
def test_edge_defects(report_of, name: str, open_edges: int, non_manifold: int) -> None:
    report = report_of(name)
    assert not report.ok
    if open_edges:
        assert _finding(report, "not_watertight").details["open_edges"] == open_edges
    if non_manifold:
        assert _finding(report, "non_manifold_edges").details["non_manifold_edges"] == (
            non_manifold)


def test_box_in_inches_with_interpenetrating_bodies(report_of) -> None:
    report = report_of("box.STL")
    assert report.bodies == 10
    assert "overlapping_bodies" in report.codes()
    assert _finding(report, "units_suspect").details["guess"] == "inches"


def test_rabbit_is_closed_once_seams_merge_but_its_bodies_cross(report_of) -> None:
    # The README's "open" is the as-loaded (UV-split) verdict; merged by position the
    # surface closes (trimesh agrees after merge_vertices(merge_tex=True)).
    report = report_of("rabbit.obj")
    assert "not_watertight" not in report.codes()
    assert report.bodies == 9
    assert "overlapping_bodies" in report.codes(Severity.WARNING)


def test_printer_profile_sets_the_build_volume(real) -> None:
    mini = load_profile("prusa_mini")
    report = check_file(real("20mm-xyz-cube.stl"), mini)
    assert report.ok and report.printer == mini.name
    assert report.build_volume_mm == mini.build_volume_mm
    assert "too_big" in check_file(real("plate_holes.STL"), mini).codes()


def test_report_json_shape(report_of) -> None:
    for name in ("20mm-xyz-cube.stl", "chair_model.obj", "empty.stl"):
        report = report_of(name)
        doc = json.loads(json.dumps(report.to_dict()))
        assert doc["ok"] is report.ok
        assert doc["ok"] == (not any(f["severity"] == "error" for f in doc["findings"]))
        assert isinstance(doc["faces"], int) and isinstance(doc["bodies"], int)
        assert len(doc["extents_mm"]) == 3
        for finding in doc["findings"]:
            assert {"code", "severity", "message"} <= finding.keys()
            assert finding["severity"] in {"error", "warning", "info"}


def test_errors_come_first(report_of) -> None:
    severities = [f.severity for f in report_of("chair_model.obj").findings]
    ranks = [[Severity.ERROR, Severity.WARNING, Severity.INFO].index(s) for s in severities]
    assert ranks == sorted(ranks)


# --- tiny synthetic meshes, one per failure mode ----------------------------------------------

def box(size=(20.0, 20.0, 20.0), at=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """An outward-wound box: (8, 3) vertices and (12, 3) faces."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    vertices = corners * np.array(size) + np.array(at)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return vertices, faces


def combine(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(v) for v, _ in parts[:-1]])
    return (np.concatenate([v for v, _ in parts]),
            np.concatenate([f + o for (_, f), o in zip(parts, offsets)]))


def check(vertices, faces, **kwargs) -> PrintabilityReport:
    return check_mesh(LoadedMesh(np.asarray(vertices, float), np.asarray(faces), "test"),
                      **kwargs).report


def test_box_is_printable_and_lies_as_is() -> None:
    report = check(*box())
    assert report.ok
    assert report.best_orientation == "as_is"
    assert report.volume_mm3 == pytest.approx(8000)
    assert _finding(report, "flat_base").details["contact_area_mm2"] == pytest.approx(400)


def test_box_winding_is_outward() -> None:
    assert check(*box()).volume_mm3 > 0


def test_volume_far_from_the_origin() -> None:
    report = check(*box(at=(1e6, -1e6, 5e5)))
    assert report.volume_mm3 == pytest.approx(8000, rel=1e-6)


def test_missing_face_is_a_hole_and_repair_fills_it() -> None:
    vertices, faces = box()
    report = check(vertices, faces[1:])
    assert _finding(report, "not_watertight").details["open_edges"] == 3
    repaired = check_mesh(LoadedMesh(vertices, faces[1:], "test"), repair=True)
    assert repaired.report.ok, repaired.report.findings
    assert repaired.report.repaired
    assert "repaired_holes" in repaired.report.codes()
    assert len(repaired.faces) == 12


def test_one_flipped_face_is_inconsistent_winding_and_repair_fixes_it() -> None:
    vertices, faces = box()
    faces = faces.copy()
    faces[0] = faces[0][::-1]
    assert _finding(check(vertices, faces), "inconsistent_winding").details["flipped_edges"] == 3
    repaired = check_mesh(LoadedMesh(vertices, faces, "test"), repair=True).report
    assert repaired.ok and "repaired_winding" in repaired.codes()


def test_inside_out_box_and_repair() -> None:
    vertices, faces = box()
    report = check(vertices, faces[:, ::-1])
    assert "inverted_normals" in report.codes(Severity.ERROR)
    repaired = check(vertices, faces[:, ::-1], repair=True)
    assert repaired.ok and repaired.volume_mm3 > 0
    assert "repaired_winding" in repaired.codes()


def test_repair_does_not_mirror_lone_triangles(report_of, real) -> None:
    repaired = check_file(real("soup.stl"), repair=True)
    assert "repaired_holes" not in repaired.codes()
    assert "duplicate_faces" not in repaired.codes()
    assert not repaired.ok


def test_repair_turns_inverted_bodies_but_keeps_cavities() -> None:
    outer_v, outer_f = box()
    inner_v, inner_f = box((5, 5, 5), at=(5, 5, 5))
    apart_v, apart_f = box(at=(40, 0, 0))
    vertices, faces = combine((outer_v, outer_f[:, ::-1]), (inner_v, inner_f[:, ::-1]),
                              (apart_v, apart_f[:, ::-1]))
    report = check(vertices, faces, repair=True)
    # Everything was inside out: the outer boxes turn outwards, and the inner box,
    # once inside the outer one, reads as a cavity.
    assert report.volume_mm3 == pytest.approx(2 * 8000 - 125)
    assert report.ok, report.findings


def test_repair_of_a_large_mesh_is_vectorized() -> None:
    import trimesh

    sphere_mesh = trimesh.creation.icosphere(subdivisions=6, radius=30)  # 82k faces
    faces = np.asarray(sphere_mesh.faces).copy()
    faces[::7] = faces[::7, ::-1]
    result = check_mesh(LoadedMesh(np.asarray(sphere_mesh.vertices) + 30, faces, "test"),
                        repair=True).report
    assert result.ok
    assert _finding(result, "repaired_winding").details["count"] == len(faces[::7])
    assert result.timings_s["repair"] < 10


def test_repair_is_reported_never_silent() -> None:
    clean = check(*box(), repair=True)
    assert not clean.repaired
    assert not {c for c in clean.codes() if c.startswith("repaired")}


def test_duplicate_face() -> None:
    vertices, faces = box()
    report = check(vertices, np.vstack([faces, faces[:1]]))
    assert _finding(report, "duplicate_faces").details["count"] == 1
    assert not report.ok
    assert check(vertices, np.vstack([faces, faces[:1]]), repair=True).ok


def test_collapsed_and_sliver_faces_are_degenerate() -> None:
    vertices, faces = box()
    vertices = np.vstack([vertices, [[10.0, 0.0, 0.0]]])  # on the edge 0-4 of the bottom
    collapsed = check(vertices, np.vstack([faces, [[0, 0, 1]]]))
    assert _finding(collapsed, "degenerate_faces").details["count"] == 1
    sliver = check(vertices, np.vstack([faces, [[0, 8, 4]]]))
    assert "degenerate_faces" in sliver.codes(Severity.WARNING)


def test_separate_bodies_are_counted() -> None:
    report = check(*combine(box(), box(at=(40, 0, 0))))
    assert report.bodies == 2
    assert report.ok
    assert "overlapping_bodies" not in report.codes()


def test_overlapping_and_nested_bodies() -> None:
    overlapping = check(*combine(box(), box(at=(10, 10, 10))))
    assert "overlapping_bodies" in overlapping.codes(Severity.WARNING)
    nested = check(*combine(box(), box((5, 5, 5), at=(5, 5, 5))))
    assert "overlapping_bodies" in nested.codes()


def test_cavity_is_not_an_overlap() -> None:
    outer = box()
    inner_vertices, inner_faces = box((5, 5, 5), at=(5, 5, 5))
    report = check(*combine(outer, (inner_vertices, inner_faces[:, ::-1])))
    assert report.ok, report.findings
    assert report.volume_mm3 == pytest.approx(8000 - 125)
    assert "overlapping_bodies" not in report.codes()


def test_flat_double_sided_sheet_has_zero_volume() -> None:
    vertices = np.array([[0, 0, 0], [20, 0, 0], [20, 20, 0], [0, 20, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]])
    report = check(vertices, faces)
    assert "zero_volume" in report.codes(Severity.ERROR)
    assert not report.ok


@pytest.mark.parametrize("method", ["rays", "sampled"])
def test_thin_plate_is_a_thin_wall_and_thick_plate_is_not(method: str) -> None:
    tolerances = Tolerances(thin_wall_method=method)
    thin = check(*box((40, 40, 0.2)), tolerances=tolerances)
    finding = _finding(thin, "thin_walls")
    assert finding.severity is Severity.WARNING
    assert finding.details["method"] == method
    # Both faces of the plate are thin: 2 x 40 x 40 of 3232 mm².
    assert finding.details["thin_area_mm2"] == pytest.approx(3200, rel=0.1)
    thick = check(*box((40, 40, 2.0)), tolerances=tolerances)
    assert _finding(thick, "thin_walls_checked").details["method"] == method
    assert "thin_walls" not in check(*box((40, 40, 0.3)), tolerances=dataclasses.replace(
        tolerances, min_wall_mm=0.25)).codes()


@pytest.mark.parametrize("method", ["rays", "sampled"])
def test_tube_wall_found_by_both_methods(real, method: str) -> None:
    report = check_file(real("round.stl"), tolerances=Tolerances(thin_wall_method=method))
    finding = _finding(report, "thin_walls")
    assert finding.details["method"] == method
    assert finding.details["thin_area_mm2"] > 0.8 * report.area_mm2


def test_auto_casts_rays_on_small_meshes_and_samples_huge_ones() -> None:
    small = check(*box((40, 40, 2.0)))
    assert _finding(small, "thin_walls_checked").details["method"] == "rays"
    sampled = check(*box((40, 40, 2.0)), tolerances=Tolerances(ray_max_faces=10))
    assert _finding(sampled, "thin_walls_checked").details["method"] == "sampled"


def test_unknown_thin_wall_method_is_refused() -> None:
    with pytest.raises(ValueError, match="thin_wall_method"):
        Tolerances(thin_wall_method="magic")


def sphere(radius: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    return np.asarray(mesh.vertices) + radius, np.asarray(mesh.faces)


def t_prism() -> tuple[np.ndarray, np.ndarray]:
    """A T-shaped profile (stem 10 wide, 20 high; bar 40 x 5) extruded 40 mm along Y."""
    profile = np.array([[15, 0], [25, 0], [25, 20], [40, 20], [40, 25], [0, 25], [0, 20],
                        [15, 20]], float)
    cap = np.array([[0, 1, 2], [0, 2, 7], [5, 6, 7], [5, 7, 2], [5, 2, 3], [5, 3, 4]])
    n = len(profile)
    front = np.c_[profile[:, 0], np.zeros(n), profile[:, 1]]
    back = front + [0, 40, 0]
    ring = np.arange(n)
    sides = np.concatenate([np.c_[ring, (ring + 1) % n, n + (ring + 1) % n],
                            np.c_[ring, n + (ring + 1) % n, n + ring]])
    faces = np.concatenate([cap, cap[:, ::-1] + n, sides[:, ::-1]])
    vertices = np.vstack([front, back])
    v0, v1, v2 = (vertices[faces[:, k]] for k in range(3))
    if np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() < 0:
        faces = faces[:, ::-1]
    return vertices, faces


def test_a_sphere_overhangs_in_every_orientation() -> None:
    report = check(*sphere())
    finding = _finding(report, "needs_supports")
    assert finding.details["overhang_area_mm2"] == pytest.approx(
        2 * math.pi * 400 * (1 - math.cos(math.radians(45))), rel=0.1)
    assert "no_flat_base" in report.codes(Severity.WARNING)
    steep = check(*sphere(), tolerances=Tolerances(max_overhang_deg=89.0))
    assert "needs_supports" not in steep.codes()


def test_t_shape_is_turned_onto_its_bar_so_nothing_overhangs() -> None:
    report = check(*t_prism())
    assert report.ok, report.findings
    assert report.volume_mm3 == pytest.approx((10 * 20 + 40 * 5) * 40)
    assert report.best_orientation.split("+")[0] == "rotate_x_180"
    assert not {"needs_supports", "small_overhangs"} & report.codes()
    assert _finding(report, "flat_base").details["contact_area_mm2"] == pytest.approx(1600)


@pytest.mark.parametrize("size,guess", [((2, 3, 1), "inches"), ((0.05, 0.02, 0.01), "metres"),
                                        ((3000, 100, 100), "too_large")])
def test_unit_guesses(size, guess) -> None:
    assert _finding(check(*box(size)), "units_suspect").details["guess"] == guess


def test_long_part_fits_only_after_a_turn_about_z() -> None:
    report = check(*box((20, 240, 10)))
    assert report.ok
    assert report.best_orientation.endswith("rotate_z_90")


def test_plate_rotated_in_the_file_fits_by_its_minimum_volume_box() -> None:
    vertices, faces = box((240, 200, 5))
    turn = math.radians(45)
    rotation = np.array([[math.cos(turn), -math.sin(turn), 0],
                         [math.sin(turn), math.cos(turn), 0], [0, 0, 1]])
    report = check(vertices @ rotation.T, faces)
    finding = _finding(report, "fits_rotated")
    assert finding.details["box"] == "minimum-volume box"
    assert report.ok
    turned = (vertices @ rotation.T) @ np.array(finding.details["rotation"]).T
    assert sorted(np.ptp(turned, axis=0)) == pytest.approx([5, 200, 240], abs=0.01)


def test_too_big_in_every_orientation() -> None:
    report = check(*box((400, 400, 400)))
    assert "too_big" in report.codes(Severity.ERROR)


def test_all_faces_collapsed_is_an_error_not_a_crash() -> None:
    vertices = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], float)
    report = check(vertices, np.array([[0, 0, 1], [1, 2, 2]]))
    assert not report.ok and "no_faces" in report.codes(Severity.ERROR)
    collinear = check(vertices, np.array([[0, 1, 2]]))
    assert not collinear.ok


def test_single_body_self_intersection_is_said_to_be_unchecked() -> None:
    assert "self_intersection_not_checked" in check(*box()).codes(Severity.INFO)


def test_every_check_is_bounded_by_its_time_limit(real) -> None:
    report = check_file(real("counter.unitsmm.STL"), tolerances=Tolerances(check_seconds=0.0))
    timed_out = [f for f in report.findings if f.code == "check_timed_out"]
    assert {f.details["check"] for f in timed_out} >= {"thin_walls", "overlaps"}
    assert all(f.severity is Severity.WARNING for f in timed_out)
    assert "too_big" in report.codes()


def test_merge_vertices_joins_float_noise_and_keeps_distinct_points() -> None:
    vertices = np.array([[0, 0, 0], [1e-9, 0, 0], [1, 1, 1], [1, 1, 1 + 1e-3]], float)
    unique, faces, merged = merge_vertices(vertices, np.array([[0, 1, 2], [1, 2, 3]]), 1e-6)
    assert merged == 1
    assert len(unique) == 3
    assert faces[0, 0] == faces[0, 1]


def test_tolerances_and_findings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Tolerances().min_wall_mm = 1.0  # type: ignore[misc]
    details = {"count": 1}
    finding = Finding("x", Severity.INFO, "m", details)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.code = "y"  # type: ignore[misc]
    details["count"] = 2
    assert finding.details["count"] == 1
    with pytest.raises(TypeError):
        finding.details["count"] = 3  # type: ignore[index]


def test_check_path_returns_the_repaired_mesh(tmp_path: Path) -> None:
    vertices, faces = box()
    path = tmp_path / "open.stl"
    write_binary_stl(path, vertices, faces[1:])
    result = check_path(path, repair=True)
    assert result.report.ok and result.report.repaired
    out = tmp_path / "fixed.stl"
    write_binary_stl(out, result.vertices, result.faces)
    assert check_file(out).ok


def test_exported_members() -> None:
    import slicer_bridge.printability as module

    assert sorted(module.__all__) == ["CheckResult", "Finding", "PrintabilityReport", "Severity",
                                      "Tolerances", "check_file", "check_mesh", "check_path",
                                      "merge_vertices"]


@pytest.mark.parametrize("size", [(0.02, 0.02, 0.02), (20.0, 20.0, 0.3), (0.05, 0.3, 0.2)])
def test_a_part_thinner_than_the_nozzle_is_an_error_not_a_pass(size) -> None:
    report = check(*box(size))
    assert not report.ok
    finding = _finding(report, "too_small_to_print")
    assert finding.severity is Severity.ERROR
    assert finding.details["nozzle_mm"] == 0.4
    assert finding.details["extents_mm"] == pytest.approx(list(size))
    assert "thinner than the 0.4 mm nozzle" in finding.message


def test_a_cube_stored_in_metres_is_an_error_with_the_scale_hint() -> None:
    report = check(*box((0.02, 0.02, 0.02)))  # a 20 mm calibration cube written in metres
    assert "stored in metres? scale it by 1000" in _finding(report, "too_small_to_print").message
    assert _finding(report, "units_suspect").details["scale"] == 1000


def test_a_part_as_thick_as_the_nozzle_is_not_too_small() -> None:
    assert "too_small_to_print" not in check(*box((20.0, 20.0, 0.4))).codes()
