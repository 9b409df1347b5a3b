"""A job on the node, from the offer's artifacts to G-code that is safe to stream.

Fetch the artifacts the job's path needs (node_agent.inputs) -> render OpenSCAD with the
job's parameters when the job has them -> printability check -> slice with the printer's profile (slice cache) ->
G-code header with the job id and the attribution the licence requires -> safety
filter. Each step reports through ``emit`` (a JobEvent kind and its data); a step
that fails raises :class:`StepFailed` saying which step, who found the problem and
why, so the job ends cleanly with a FAILED event. CPU-bound steps run in threads
and external programs in subprocesses, so the agent's heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from node_agent.config import PrinterConfig
from node_agent.inputs import Model, model, read_by
from node_agent.jobfile import GcodeFileError, SafeJob, check_file
from node_agent.jobs import MAX_VALUE_CHARS, EventKind
from node_agent.messages import ArtifactRef, Attribution, Offer
from node_agent.safety import JobRefused, limits_for
from slicer_bridge import (
    CacheError,
    ParameterError,
    ParamKind,
    PrinterProfile,
    ProfileError,
    RenderCache,
    RenderError,
    SliceCache,
    Slicer,
    SlicerBridgeError,
    SliceRequest,
    SlicerError,
    SliceResult,
    ToolNotFound,
    load_profile,
    parse_parameters,
    render_scad,
    slice_cached,
)
from slicer_bridge.base import GcodeMetadata
from slicer_bridge.mesh_io import write_binary_stl
from slicer_bridge.printability import CheckResult, PrintabilityReport
from slicer_bridge.printability import check_path as check_mesh_path

__all__ = ["Emit", "Fetch", "PipelineSettings", "PreparedPrint", "StepFailed", "gcode_header",
           "prepare_job", "safe_job"]

Emit = Callable[[EventKind, Mapping[str, str]], Awaitable[None]]
Fetch = Callable[[ArtifactRef, Path], Awaitable[Path]]
_MAX_SOURCE_BYTES = 2_000_000  # of an OpenSCAD file read for its references; the render refuses larger


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    """Where jobs work and which tools they use."""

    work_dir: Path
    cache: SliceCache
    slicer: Slicer
    render_timeout_s: float = 300.0
    renders: RenderCache | None = None  # one render per distinct (design files, parameters, OpenSCAD)


@dataclass(frozen=True, slots=True)
class PreparedPrint:
    """G-code ready to stream: the file (header included) and what the slicer estimated."""

    gcode_path: Path
    metadata: GcodeMetadata
    lines: int


class StepFailed(Exception):
    """A step of the job failed; the job ends with a FAILED event carrying these fields."""

    def __init__(self, step: str, detected_by: str, reason: str, retryable: bool = False) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.detected_by, self.reason, self.retryable = (step, detected_by, reason,
                                                                    retryable)

    def data(self) -> dict[str, str]:
        """The FAILED event's data."""
        return {"failure_reason": _clip(self.reason), "detected_by": self.detected_by,
                "step": self.step, "retryable": str(self.retryable).lower()}


def _clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def prepare_job(offer: Offer, printer: PrinterConfig, fetch: Fetch, emit: Emit,
                      settings: PipelineSettings) -> PreparedPrint:
    """Run every step before printing.

    Raises:
        StepFailed: a step failed; nothing was sent to the printer.
    """
    job_dir = _job_dir(settings.work_dir, offer.job_id)
    chosen = model(offer)
    if chosen is None:
        raise StepFailed("fetch", "agent", "the job has no mesh and no OpenSCAD source")
    files = await _fetch_inputs(offer, chosen, job_dir / "files", fetch, emit)
    mesh = await _model(offer, chosen, files[chosen.source.path], job_dir, settings)
    profile = _profile(printer)
    checked = await asyncio.to_thread(check_mesh_path, mesh, profile)
    await _report_printability(checked.report, printer, emit)
    sliced = await _slice(await _hub_mesh(checked, job_dir), profile.ini_path, settings)
    await emit(EventKind.SLICED, _sliced_data(sliced.metadata, printer, sliced.cached))
    out = job_dir / "job.gcode"
    lines = await asyncio.to_thread(_write_with_header, sliced.gcode_path, out,
                                    gcode_header(offer, printer))
    await asyncio.to_thread(safe_job, out, printer, offer.job_id)
    return PreparedPrint(out, sliced.metadata, lines)


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:128] or "job"


def _job_dir(work_dir: Path, job_id: str) -> Path:
    # A name of dots alone ("." or "..") would make the job folder the work folder or
    # its parent, the agent's state folder, and the hub's files would land among the
    # agent's own (journal, keys).
    name = _safe_name(job_id)
    job_dir = work_dir / name
    root = work_dir.resolve()
    if not name.strip(".") or job_dir.resolve().parent != root:
        raise StepFailed("fetch", "agent", f"the hub sent an unsafe job id {job_id!r}")
    return job_dir


def _local_path(root: Path, ref: ArtifactRef) -> Path:
    parts = PurePosixPath(ref.path).parts
    if not parts or ref.path.startswith("/") or any(p in ("..", "") for p in parts) \
            or "\x00" in ref.path:
        raise StepFailed("fetch", "agent", f"the hub sent an unsafe artifact path {ref.path!r}")
    return root.joinpath(*parts)


async def _fetch_inputs(offer: Offer, chosen: Model, root: Path, fetch: Fetch, emit: Emit
                        ) -> dict[str, Path]:
    """Fetch what the job's path reads: its mesh, or its OpenSCAD source and what that reads (by path)."""
    files: dict[str, Path] = {}
    scanned: set[str] = set()
    queue = [(chosen.source, chosen.render)]
    while queue:
        ref, code = queue.pop()
        if ref.path not in files:
            files[ref.path] = await _fetch_one(ref, root, fetch)
        if code and ref.path not in scanned:  # OpenSCAD code: what it reads is needed too
            scanned.add(ref.path)
            text = await asyncio.to_thread(_read_source, files[ref.path])
            queue.extend(read_by(ref, text, offer.artifacts))
    total = sum(r.size for r in offer.artifacts if r.path in files)
    await emit(EventKind.DOWNLOADED, {"bytes": str(total), "files": str(len(files))})
    return files


async def _fetch_one(ref: ArtifactRef, root: Path, fetch: Fetch) -> Path:
    dest = _local_path(root, ref)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        return await fetch(ref, dest)
    except Exception as exc:  # the fetcher translated its errors; any of them fails the step
        retryable = bool(getattr(exc, "retryable", False))
        raise StepFailed("fetch", "agent", f"cannot fetch {ref.path}: {exc}", retryable) from exc


def _read_source(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            return fh.read(_MAX_SOURCE_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        raise StepFailed("fetch", "agent", f"cannot read {path.name}: {exc.strerror}", retryable=True) from exc


async def _model(offer: Offer, chosen: Model, source: Path, job_dir: Path, settings: PipelineSettings
                 ) -> Path:
    if not chosen.render:
        return source
    timeout_s, out = settings.render_timeout_s, job_dir / "model.stl"
    try:
        values = await asyncio.to_thread(_typed_parameters, source, offer.parameters)
        if settings.renders is not None:  # the copies of an order render once
            return (await settings.renders.render(source, values, timeout_s, out))[0]
        return await render_scad(source, values, timeout_s, out_path=out)
    except CacheError as exc:
        raise StepFailed("render", "agent", str(exc), retryable=True) from exc
    except ParameterError as exc:
        raise StepFailed("render", "agent", f"parameter {exc}") from exc
    except ToolNotFound as exc:
        raise StepFailed("render", "agent", str(exc), retryable=True) from exc
    except RenderError as exc:
        raise StepFailed("render", "slicer", exc.reason or str(exc)) from exc


def _profile(printer: PrinterConfig) -> PrinterProfile:
    try:
        profile = load_profile(printer.slicer_profile)
    except (ProfileError, OSError) as exc:
        raise StepFailed("slice", "agent", f"printer {printer.name}: slicer profile "
                         f"{printer.slicer_profile!r}: {exc}") from exc
    # The node config describes the machine itself; it wins over the slicer profile's bed.
    return dataclasses.replace(profile, build_volume_mm=printer.build_volume_mm)


async def _hub_mesh(checked: CheckResult, job_dir: Path) -> Path:
    """The checked triangles as a binary STL the node wrote: the slicer never sees the
    designer's file, whose 3MF may carry ``Metadata/*.config`` with PrusaSlicer settings
    (``post_process`` runs a command, ``start_gcode`` is sent to the printer)."""
    out = job_dir / "slice-input.stl"
    try:
        await asyncio.to_thread(write_binary_stl, out, checked.vertices, checked.faces)
    except OSError as exc:
        raise StepFailed("slice", "agent", f"cannot write {out}: {exc.strerror}",
                         retryable=True) from exc
    return out


def _typed_parameters(scad: Path, parameters: Mapping[str, str]) -> dict[str, object]:
    """Parameters travel as text; give OpenSCAD's validator the value each one spells
    (JSON: ``12``, ``true``, ``[1, 2]``), except for string parameters, kept as written."""
    try:
        schema = parse_parameters(scad.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise StepFailed("render", "agent", f"cannot read {scad.name}: {exc.strerror}") from exc
    typed: dict[str, object] = {}
    for name, text in parameters.items():
        param = schema.get(name)
        if param is not None and param.kind is ParamKind.STRING:
            typed[name] = text
            continue
        try:
            typed[name] = json.loads(text)
        except ValueError:
            typed[name] = text
    return typed


def _findings_json(report: PrintabilityReport) -> str:
    findings = [f.to_dict() for f in report.findings]
    while findings:
        text = json.dumps(findings, default=str)
        if len(text) <= MAX_VALUE_CHARS:
            return text
        findings = findings[: len(findings) // 2]
    return "[]"


async def _report_printability(report: PrintabilityReport, printer: PrinterConfig,
                               emit: Emit) -> None:
    data = {"findings": _findings_json(report), "profile": printer.slicer_profile,
            "extents_mm": json.dumps([round(v, 3) for v in report.extents_mm])}
    if report.ok:
        await emit(EventKind.PRINTABILITY_OK, data)
        return
    await emit(EventKind.PRINTABILITY_FAILED, data)
    errors = [f.message for f in report.findings if f.severity.value == "error"]
    raise StepFailed("printability", "printability", "not printable: " + "; ".join(errors))


async def _slice(mesh: Path, profile_ini: Path, settings: PipelineSettings) -> SliceResult:
    try:
        return await slice_cached(settings.cache, settings.slicer, SliceRequest(mesh, profile_ini))
    except ToolNotFound as exc:
        raise StepFailed("slice", "agent", str(exc), retryable=True) from exc
    except SlicerError as exc:
        raise StepFailed("slice", "slicer", exc.reason or str(exc)) from exc
    except (SlicerBridgeError, OSError) as exc:
        raise StepFailed("slice", "agent", str(exc), retryable=True) from exc


def _sliced_data(meta: GcodeMetadata, printer: PrinterConfig, cached: bool) -> dict[str, str]:
    return {"estimated_seconds": f"{meta.estimated_seconds:g}",
            "filament_mm": f"{meta.filament_mm:g}", "filament_g": f"{meta.filament_g:g}",
            "slicer": meta.slicer_name, "slicer_version": meta.slicer_version,
            "profile": printer.slicer_profile, "layer_height_mm": f"{meta.layer_height_mm:g}",
            "cached": str(cached).lower()}


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii").replace("\n", " ").replace("\r", " ")


def _credit(a: Attribution) -> list[str]:
    lines = [f"; attribution: {a.notice}" if a.notice else
             f"; attribution: {a.title} ({a.design}@{a.revision_id[:12]}) by {a.licensor}"]
    lines.append(f";   licence {a.license}; revision {a.revision_id}")
    if a.contributors:
        lines.append(f";   contributors: {', '.join(a.contributors)}")
    return lines


def gcode_header(offer: Offer, printer: PrinterConfig) -> list[str]:
    """The comment lines that open every job's G-code: job id, design and attribution (ASCII)."""
    lines = [f"; spimeforge job {offer.job_id} epoch {offer.lease_epoch}",
             f"; design {offer.design} revision {offer.revision_id}",
             f"; printer {printer.name} ({printer.model}), material {offer.material}"]
    for key, value in sorted(offer.parameters.items()):
        lines.append(f"; parameter {key} = {value}")
    for attribution in offer.attributions:
        lines.extend(_credit(attribution))
    return [_ascii(line) for line in lines]


def _write_with_header(source: Path, out: Path, header: list[str]) -> int:
    count = len(header)
    tmp = out.with_name(out.name + ".tmp")
    with source.open("rb") as src, tmp.open("wb") as dst:
        dst.write(("\n".join(header) + "\n").encode("ascii"))
        for line in src:
            dst.write(line)
            count += 1
    tmp.replace(out)
    return count


def safe_job(gcode: Path, printer: PrinterConfig, job_id: str) -> SafeJob:
    """Run the safety filter over a prepared job's G-code (blocking; streams the file).

    Raises:
        StepFailed: the G-code breaks the printer's limits, or the file is unreadable.
    """
    limits = limits_for(printer)
    try:
        return check_file(str(gcode), limits, name=job_id)
    except JobRefused as exc:
        raise StepFailed("safety", "agent", str(exc)) from exc
    except GcodeFileError as exc:
        raise StepFailed("safety", "agent", f"cannot read {gcode}: {exc}") from exc
