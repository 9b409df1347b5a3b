"""A designer's 3MF never hands PrusaSlicer its own settings: the node slices its own STL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shutil
import zipfile
from pathlib import Path

from node_agent.config import PrinterConfig
from node_agent.messages import ArtifactRef, Offer
from node_agent.pipeline import PipelineSettings, StepFailed, prepare_job
from slicer_bridge import SLICERS, SliceCache
from slicer_bridge.profiles import PROFILE_DIR

_V = [(90, 90, 0), (110, 90, 0), (110, 110, 0), (90, 110, 0),
      (90, 90, 10), (110, 90, 10), (110, 110, 10), (90, 110, 10)]
_T = [(0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4), (1, 2, 6), (1, 6, 5),
      (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7)]
MODEL = (
    '<?xml version="1.0" encoding="UTF-8"?><model unit="millimeter" '
    'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"><resources>'
    '<object id="1" type="model"><mesh><vertices>'
    + "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in _V)
    + "</vertices><triangles>"
    + "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in _T)
    + '</triangles></mesh></object></resources><build><item objectid="1"/></build></model>')
RELS = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Target="/3D/3dmodel.model" '
        'Id="rel0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
        "</Relationships>")


def evil_3mf(path: Path, pwned: Path) -> None:
    config = (f"; post_process = /bin/touch {pwned}\n; start_gcode = M92 X1\\nM500\n"
              "; fill_density = 99%\n")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_rels/.rels", RELS)
        archive.writestr("3D/3dmodel.model", MODEL)
        archive.writestr("Metadata/Slic3r_PE.config", config)


async def _noop(kind: object, data: object) -> None:
    return None


def test_a_3mf_carrying_slicer_settings_is_sliced_without_them(tmp_path: Path) -> None:
    source, pwned = tmp_path / "src", tmp_path / "PWNED"
    source.mkdir()
    evil_3mf(source / "part.3mf", pwned)
    # A profile stating every command key but not fill_density, which the 3MF sets.
    profile = tmp_path / "mine.ini"
    profile.write_text("".join(line for line in (PROFILE_DIR / "prusa_mk3s.ini").read_text(
        encoding="utf-8").splitlines(keepends=True) if not line.startswith("fill_density =")),
        encoding="utf-8")
    data = (source / "part.3mf").read_bytes()
    artifact = ArtifactRef(hashlib.sha256(data).hexdigest(), len(data), "mesh", "part.3mf")
    job = Offer(hub_seq=1, offer_id="o1", job_id="job-3mf", design="d", revision_id="r",
                artifacts=(artifact,), parameters={}, material="PLA", printer_id="mk3",
                lease_epoch=1, attributions=())
    printer = PrinterConfig(name="mk3", driver="serial", model="Prusa MK3S",
                            build_volume_mm=(250.0, 210.0, 210.0), nozzle_mm=0.4,
                            materials=("PLA",), max_hotend_c=280.0, max_bed_c=110.0,
                            slicer_profile=str(profile), port="/dev/null", baud=250000)
    printer = dataclasses.replace(printer)
    settings = PipelineSettings(tmp_path / "jobs", SliceCache(tmp_path / "cache", 1 << 26),
                                SLICERS["prusaslicer"])

    async def fetch(ref: ArtifactRef, dest: Path) -> Path:
        shutil.copyfile(source / ref.path, dest)
        return dest

    prepared = asyncio.run(prepare_job(job, printer, fetch, _noop, settings))
    gcode = prepared.gcode_path.read_text(encoding="utf-8")
    assert "; fill_density = 99%" not in gcode
    assert "M92 X1" not in gcode and not pwned.exists()


def test_a_job_id_of_dots_alone_never_names_the_work_or_state_folder(tmp_path: Path) -> None:
    settings = PipelineSettings(tmp_path / "state" / "jobs",
                                SliceCache(tmp_path / "cache", 1 << 20), SLICERS["prusaslicer"])
    fetched: list[Path] = []

    async def fetch(ref: ArtifactRef, dest: Path) -> Path:
        fetched.append(dest)
        raise OSError("stop here")

    printer = PrinterConfig(name="mk3", driver="serial", model="Prusa MK3S",
                            build_volume_mm=(250.0, 210.0, 210.0), nozzle_mm=0.4,
                            materials=("PLA",), max_hotend_c=280.0, max_bed_c=110.0,
                            slicer_profile="prusa_mk3s", port="/dev/null", baud=250000)
    for job_id in ("..", ".", "...", ""):
        job = Offer(hub_seq=1, offer_id="o1", job_id=job_id, design="d", revision_id="r",
                    artifacts=(ArtifactRef("a" * 64, 1, "mesh", "part.stl"),), parameters={},
                    material="PLA", printer_id="mk3", lease_epoch=1, attributions=())
        try:
            asyncio.run(prepare_job(job, printer, fetch, _noop, settings))
        except StepFailed as exc:
            assert exc.step == "fetch"
    jobs = settings.work_dir.resolve()
    for dest in fetched:  # only the empty id may reach the fetcher, under a job folder
        assert dest.resolve().parent.parent.parent == jobs
    assert not (tmp_path / "state" / "files").exists()
    assert not (settings.work_dir / "files").exists()
