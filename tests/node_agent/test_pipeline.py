"""A job's steps on the node with the real tools: OpenSCAD, the printability check,
PrusaSlicer (through the slice cache), the safety filter, and a simulated Marlin on a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from node_agent.config import PrinterConfig
from node_agent.drivers.base import PrintOutcome
from node_agent.drivers.serial import SerialDriver
from node_agent.jobs import EventKind
from node_agent.messages import ArtifactRef, Attribution, Offer
from node_agent.pipeline import PipelineSettings, StepFailed, prepare_job, safe_job
from node_agent.testing import simulated_printer
from slicer_bridge import SLICERS, RenderCache, SliceCache

ROOT = Path(__file__).resolve().parents[2]
CUBE = ROOT / "designs" / "calibration-cube"


def printer(**overrides: object) -> PrinterConfig:
    base = PrinterConfig(name="mk3", driver="serial", model="Prusa MK3S",
                         build_volume_mm=(250.0, 210.0, 210.0), nozzle_mm=0.4, materials=("PLA",),
                         max_hotend_c=280.0, max_bed_c=110.0, slicer_profile="prusa_mk3s",
                         port="/dev/null", baud=250000)
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def ref(path: Path, kind: str) -> ArtifactRef:
    data = path.read_bytes()
    return ArtifactRef(hashlib.sha256(data).hexdigest(), len(data), kind, path.name)


def offer(artifacts: tuple[ArtifactRef, ...], parameters: Mapping[str, str]) -> Offer:
    return Offer(hub_seq=1, offer_id="o1", job_id="job-42", design="calibration-cube",
                 revision_id="rev123", artifacts=artifacts, parameters=parameters,
                 material="PLA", printer_id="mk3", lease_epoch=1,
                 attributions=(Attribution("calibration-cube", "rev123", "Cube", "CC0-1.0",
                                           "Spimeforge developers", ("Ann Ö",),
                                           "Cube by Spimeforge developers, CC0-1.0"),))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[EventKind, dict[str, str]]] = []

    async def __call__(self, kind: EventKind, data: Mapping[str, str]) -> None:
        self.events.append((kind, dict(data)))

    def kinds(self) -> list[EventKind]:
        return [k for k, _ in self.events]


async def local_fetch(source: Path, ref_: ArtifactRef, dest: Path) -> Path:
    shutil.copyfile(source / ref_.path, dest)
    return dest


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> SliceCache:
    return SliceCache(tmp_path_factory.mktemp("slice-cache"), 200 * 1024 * 1024)


async def _test_a_parametric_job_is_rendered_checked_sliced_filtered_and_printed(
        tmp_path: Path, cache: SliceCache) -> None:
    scad = ref(CUBE / "calibration-cube.scad", "scad")
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    emit = Recorder()
    job = offer((scad,), {"size": "12"})
    prepared = await prepare_job(job, printer(), lambda r, d: local_fetch(CUBE, r, d), emit,
                                 settings)

    assert emit.kinds() == [EventKind.DOWNLOADED, EventKind.PRINTABILITY_OK, EventKind.SLICED]
    extents = json.loads(emit.events[1][1]["extents_mm"])
    assert extents[0] == pytest.approx(12.0, abs=0.05)  # the customer's size, not the default
    sliced = emit.events[2][1]
    assert sliced["slicer"] == "PrusaSlicer" and float(sliced["estimated_seconds"]) > 0
    assert float(sliced["filament_mm"]) > 0 and sliced["profile"] == "prusa_mk3s"
    head = prepared.gcode_path.read_text(encoding="ascii").splitlines()[:8]
    assert head[0] == "; spimeforge job job-42 epoch 1"
    assert "; parameter size = 12" in head
    assert any(line.startswith("; attribution: Cube by Spimeforge developers") for line in head)
    assert any("contributors: Ann ?" in line for line in head)  # ASCII only on the wire

    async with simulated_printer() as sim:
        driver = SerialDriver("mk3", sim.port, 250000)
        await driver.connect()
        try:
            result = await driver.print_job(safe_job(prepared.gcode_path, printer(), "job-42"))
        finally:
            await driver.close()
    assert result.outcome is PrintOutcome.COMPLETED and result.resends == 0
    assert any(c.startswith("M104") for c in sim.stats.accepted)


async def _test_a_mesh_job_hits_the_slice_cache_the_second_time(tmp_path: Path,
                                                               cache: SliceCache) -> None:
    stl = ref(CUBE / "calibration-cube.stl", "mesh")
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    for expected in ("false", "true"):
        emit = Recorder()
        await prepare_job(offer((stl,), {}), printer(), lambda r, d: local_fetch(CUBE, r, d),
                          emit, settings)
        assert emit.events[-1][1]["cached"] == expected


async def _test_a_part_too_big_for_the_printer_fails_at_printability_with_findings(
        tmp_path: Path, cache: SliceCache) -> None:
    stl = ref(CUBE / "calibration-cube.stl", "mesh")
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    emit = Recorder()
    small = printer(build_volume_mm=(15.0, 15.0, 15.0))
    with pytest.raises(StepFailed) as caught:
        await prepare_job(offer((stl,), {}), small, lambda r, d: local_fetch(CUBE, r, d), emit,
                          settings)
    assert caught.value.step == "printability" and caught.value.detected_by == "printability"
    assert emit.kinds() == [EventKind.DOWNLOADED, EventKind.PRINTABILITY_FAILED]
    findings = json.loads(emit.events[1][1]["findings"])
    assert any(f["severity"] == "error" for f in findings)
    assert caught.value.data()["retryable"] == "false"


async def _test_bad_parameters_and_hostile_paths_end_the_job_cleanly(tmp_path: Path,
                                                                    cache: SliceCache) -> None:
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    scad = ref(CUBE / "calibration-cube.scad", "scad")
    with pytest.raises(StepFailed, match="render: parameter") as caught:
        await prepare_job(offer((scad,), {"size": "1000"}), printer(),
                          lambda r, d: local_fetch(CUBE, r, d), Recorder(), settings)
    assert caught.value.detected_by == "agent"
    evil = ArtifactRef("00" * 32, 1, "mesh", "../../etc/passwd")
    with pytest.raises(StepFailed, match="unsafe artifact path"):
        await prepare_job(offer((evil,), {}), printer(), lambda r, d: local_fetch(CUBE, r, d),
                          Recorder(), settings)


async def _test_gcode_over_the_printers_limits_is_refused_by_the_safety_step(
        tmp_path: Path, cache: SliceCache) -> None:
    stl = ref(CUBE / "calibration-cube.stl", "mesh")
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    cold = printer(max_hotend_c=150.0)
    with pytest.raises(StepFailed) as caught:
        await prepare_job(offer((stl,), {}), cold, lambda r, d: local_fetch(CUBE, r, d),
                          Recorder(), settings)
    assert caught.value.step == "safety" and "150" in caught.value.reason


def test_a_parametric_job_is_rendered_checked_sliced_filtered_and_printed(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_a_parametric_job_is_rendered_checked_sliced_filtered_and_printed(tmp_path, cache), 240))


def test_a_mesh_job_hits_the_slice_cache_the_second_time(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_a_mesh_job_hits_the_slice_cache_the_second_time(tmp_path, cache), 240))


def test_a_part_too_big_for_the_printer_fails_at_printability_with_findings(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_a_part_too_big_for_the_printer_fails_at_printability_with_findings(tmp_path, cache), 240))


def test_bad_parameters_and_hostile_paths_end_the_job_cleanly(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_bad_parameters_and_hostile_paths_end_the_job_cleanly(tmp_path, cache), 240))


def test_gcode_over_the_printers_limits_is_refused_by_the_safety_step(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_gcode_over_the_printers_limits_is_refused_by_the_safety_step(tmp_path, cache), 240))


BODY = "width = 20; // [10:1:40]\ncube([width, width, 6]);\n"
LID = "include <common.scad>\nwidth = 20; // [10:1:40]\ncube([width, width, lid_mm]);\n"


async def _test_copies_of_a_two_part_parametric_design_render_once_per_part(
        tmp_path: Path, cache: SliceCache) -> None:
    design = tmp_path / "design"
    design.mkdir()
    (design / "body.scad").write_text(BODY)
    (design / "lid.scad").write_text(LID)
    (design / "common.scad").write_text("lid_mm = 2;\n")
    renders = RenderCache(tmp_path / "renders", 1 << 26)
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"], renders=renders)
    parts = {"body": (ref(design / "body.scad", "scad"),),
             "lid": (ref(design / "lid.scad", "scad"), ref(design / "common.scad", "scad-include"))}
    jobs = [dataclasses.replace(offer(parts[part], {"width": "25"}), job_id=f"{part}-{copy}")
            for part in ("body", "lid") for copy in range(3)]  # quantity 3, one job per object

    async def prepare(job: Offer) -> list[float]:
        emit = Recorder()
        await prepare_job(job, printer(), lambda r, d: local_fetch(design, r, d), emit, settings)
        return [float(v) for v in json.loads(emit.events[1][1]["extents_mm"])]

    extents = await asyncio.gather(*(prepare(job) for job in jobs))  # at once, as on a busy node
    assert renders.renders == 2 and renders.hits == 4
    assert [round(e[2], 1) for e in extents] == [6.0] * 3 + [2.0] * 3  # each job got its own part
    assert all(round(e[0], 1) == 25.0 for e in extents)  # with the customer's parameters

    emit = Recorder()  # another width is another render
    await prepare_job(dataclasses.replace(jobs[0], job_id="body-wide", parameters={"width": "30"}),
                      printer(), lambda r, d: local_fetch(design, r, d), emit, settings)
    assert renders.renders == 3


def test_copies_of_a_two_part_parametric_design_render_once_per_part(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_copies_of_a_two_part_parametric_design_render_once_per_part(tmp_path, cache), 240))


async def _test_the_openscad_source_is_rendered_not_a_library_listed_before_it(tmp_path: Path, cache: SliceCache) -> None:
    design = tmp_path / "design"
    design.mkdir()
    (design / "a-lib.scad").write_text("module block(w) { cube([w, w, 2]); }\n")  # renders nothing alone
    (design / "main.scad").write_text("use <a-lib.scad>\nwidth = 20; // [10:1:40]\nblock(width);\n")
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    job = offer((ref(design / "a-lib.scad", "scad-include"), ref(design / "main.scad", "scad")), {"width": "25"})
    emit = Recorder()
    await prepare_job(job, printer(), lambda r, d: local_fetch(design, r, d), emit, settings)
    assert [round(float(e), 1) for e in json.loads(emit.events[1][1]["extents_mm"])] == [25.0, 25.0, 2.0]


def test_the_openscad_source_is_rendered_not_a_library_listed_before_it(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_the_openscad_source_is_rendered_not_a_library_listed_before_it(tmp_path, cache), 240))


def _cube_stl(size: float) -> str:
    """An ASCII STL of a cube of ``size`` mm (the facet normals left to the reader)."""
    v = [(x * size, y * size, z * size) for x, y, z in
         ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1))]
    faces = ((0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4), (1, 2, 6), (1, 6, 5),
             (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7))
    body = "".join("facet normal 0 0 0\nouter loop\n" + "".join(f"vertex {v[i][0]} {v[i][1]} {v[i][2]}\n" for i in f)
                   + "endloop\nendfacet\n" for f in faces)
    return f"solid c\n{body}endsolid c\n"


def _kit(design: Path) -> tuple[ArtifactRef, ...]:
    """A parametric two-part design as the hub offers it: its source, what the source reads (a library in
    a folder that imports a mesh beside it, an included file), a library nothing reads, the parts'
    published meshes and a photo."""
    files = {"lib/shapes.scad": ("module block(w) { cube([w, w, lid_mm]); translate([w + 5, 0, 0]) import(\"peg.stl\"); }\n",
                                 "scad-include"),
             "lib/peg.stl": (_cube_stl(4.0), "mesh"),
             "common.scad": ("lid_mm = 2;\n", "scad-include"),
             "main.scad": ("use <lib/shapes.scad>\ninclude <common.scad>\nwidth = 20; // [10:1:40]\nblock(width);\n", "scad"),
             "unused.scad": ("module spare() { cube(1); }\n", "scad-include"),
             "body.stl": (_cube_stl(20.0), "mesh"), "lid.stl": (_cube_stl(10.0), "mesh"),
             "photo.png": ("not really a png", "file")}
    refs = []
    for name, (text, kind) in sorted(files.items()):
        (design / name).parent.mkdir(parents=True, exist_ok=True)
        (design / name).write_text(text)
        data = text.encode()
        refs.append(ArtifactRef(hashlib.sha256(data).hexdigest(), len(data), kind, name))
    return tuple(refs)


async def _test_a_job_fetches_only_what_its_path_reads(tmp_path: Path, cache: SliceCache) -> None:
    design = tmp_path / "design"
    artifacts = _kit(design)
    settings = PipelineSettings(tmp_path / "jobs", cache, SLICERS["prusaslicer"])
    for job_id, parameters, wanted, extents in (
            ("rendered", {"width": "25"}, {"main.scad", "lib/shapes.scad", "common.scad", "lib/peg.stl"},
             [34.0, 25.0, 4.0]),  # the block and the imported peg beside it
            ("printed", {}, {"body.stl"}, [20.0, 20.0, 20.0])):  # the first part's mesh as published
        fetched: list[str] = []

        async def fetch(r: ArtifactRef, d: Path) -> Path:
            fetched.append(r.path)  # noqa: B023 - awaited within this iteration
            return await local_fetch(design, r, d)

        emit = Recorder()
        job = dataclasses.replace(offer(artifacts, parameters), job_id=job_id)
        prepared = await prepare_job(job, printer(), fetch, emit, settings)
        assert sorted(fetched) == sorted(wanted), job_id
        head = prepared.gcode_path.read_text(encoding="ascii").splitlines()[:6]
        assert [h for h in head if h.startswith("; parameter")] == [f"; parameter {k} = {v}" for k, v in parameters.items()]
        assert emit.events[0][1] == {"files": str(len(wanted)),
                                     "bytes": str(sum(a.size for a in artifacts if a.path in wanted))}
        assert [round(float(e), 1) for e in json.loads(emit.events[1][1]["extents_mm"])] == extents
        assert emit.events[2][1]["profile"] == "prusa_mk3s"


def test_a_job_fetches_only_what_its_path_reads(tmp_path: Path, cache: SliceCache) -> None:
    asyncio.run(asyncio.wait_for(_test_a_job_fetches_only_what_its_path_reads(tmp_path, cache), 240))
