"""The mesh and the real slice behind a quote: OpenSCAD with the customer's parameters, PrusaSlicer, the cache.

The hub calls slicer_bridge (DESIGN.md: "the hub may call slicer_bridge"). A
revision's blobs have no file names, so each render or slice works in a
tree of the revision's files under their names (hub.service.revision_trees:
bounded, least recently used removed first). Rendered meshes are kept per
(revision, parameters) and slices go through the slice cache keyed by (mesh
hash, profile hash, slicer version), so a repeated quote costs two lookups.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hub.domain import Revision
from hub.errors import FailedPrecondition, InvalidArgument, StorageError
from hub.manifest import MESH_SUFFIXES, Manifest, ParamValue
from hub.quotes import Estimate
from hub.service.revision_trees import RevisionTrees, TreeBudget

if TYPE_CHECKING:
    from slicer_bridge.openscad import Value
    from slicer_bridge.render_cache import RenderCache

__all__ = ["MeshPlan", "PartMesh", "SliceEstimator", "as_published", "check_parameters"]

RENDER_TIMEOUT_S = 120.0
SLICE_CACHE_BYTES = 512 << 20
RENDER_CACHE_BYTES = 512 << 20  # renders with customers' parameters: the least recently used go first
TREE_BUDGET = TreeBudget(max_bytes=4 << 30, max_trees=256)  # revisions' files laid out for quotes (hard links)
DEFAULT_PROFILE = "generic_200"


@dataclass(frozen=True, slots=True)
class PartMesh:
    """One mesh to slice, how many objects of one copy of the design it makes and the manifest parts printed
    from it ("" for a design rendered with the customer's parameters: one object)."""

    path: Path
    extents_mm: tuple[float, float, float] | None
    count: int = 1
    parts: tuple[str, ...] = ("",)


@dataclass(frozen=True, slots=True)
class MeshPlan:
    """What to slice for one copy of the design: each distinct mesh its parts print (a node prints a part's
    first mesh), with its size and count, and whether the copy differs from the published design."""

    meshes: tuple[PartMesh, ...]
    modified: bool
    rendered: bool
    scratch: Path | None = None  # what holds a render's copy until SliceEstimator.release
    tree: str | None = None  # the revision whose tree holds the meshes until SliceEstimator.release

    @property
    def extents_mm(self) -> tuple[tuple[float, float, float] | None, ...]:
        """The size of every mesh: a printer that makes the copy fits each of them."""
        return tuple(m.extents_mm for m in self.meshes)


def _coerce(name: str, value: str) -> object:
    """Customer values arrive as text; give the validator the JSON-like value they spell (text that is
    not JSON is the text itself).

    Raises:
        InvalidArgument: the value nests lists deeper than the JSON reader goes (no parameter nests at all).
    """
    try:
        return json.loads(value)
    except RecursionError as exc:  # json raises it past the interpreter's depth ("[" * 1024)
        raise InvalidArgument(f"parameter {name!r}: the value nests lists too deeply; a parameter is a number, "
                              "true or false, text, or one list of numbers", field=f"spec.parameters[{name}]") from exc
    except ValueError:
        return value


def check_parameters(manifest: Manifest, scad_source: str | None, parameters: Mapping[str, str]) -> dict[str, str]:
    """Validate a customer's parameters against the design's OpenSCAD customizer schema.

    Returns:
        The parameters that differ from the published defaults (empty = an unmodified object).

    Raises:
        InvalidArgument: the design has no parameters, or a value is unknown, of the wrong type or out
            of range (the message names the parameter and what is allowed).
    """
    if not parameters:
        return {}
    if scad_source is None or manifest.openscad is None:
        raise InvalidArgument(f"{manifest.name} has no OpenSCAD parameters: order it without --param")
    from slicer_bridge.base import ParameterError
    from slicer_bridge.openscad import parse_parameters, validate

    try:
        checked = validate(parse_parameters(scad_source), {k: _coerce(k, v) for k, v in parameters.items()})
    except ParameterError as exc:
        raise InvalidArgument(str(exc)) from exc
    return _changed(dict(manifest.openscad.parameters), checked)


def _changed(defaults: Mapping[str, ParamValue], values: Mapping[str, object]) -> dict[str, str]:
    """The values that differ from ``defaults`` (one the defaults do not name differs), as OpenSCAD literals."""
    from slicer_bridge.openscad import format_value

    changed = {}
    for name, value in values.items():
        default = defaults.get(name)
        if default is None or format_value(_as_value(value)) != format_value(_as_value(default)):
            changed[name] = format_value(value)  # type: ignore[arg-type]
    return changed


def as_published(defaults: Mapping[str, ParamValue], parameters: Mapping[str, str]) -> bool:
    """Whether a job's parameters (text, as its order took them, checked then) are all the manifest's
    ``defaults``, so that it makes the published meshes; a value that cannot be read counts as changed."""
    if not parameters:
        return True
    try:
        return not _changed(defaults, {k: _coerce(k, v) for k, v in parameters.items()})
    except InvalidArgument:
        return False


def _as_value(value: object) -> Value:
    if isinstance(value, list):
        return tuple(float(v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, float | bool | str):
        return value
    return str(value)


class SliceEstimator:
    """Render and slice on the hub for quotes; everything it writes lives under one work directory."""

    def __init__(self, blob_path: Callable[[str], Path], work_dir: Path) -> None:
        self.blob_path = blob_path
        self.work_dir = Path(work_dir)
        self._cache: object | None = None
        self._slicer: object | None = None
        self._renders: RenderCache | None = None
        self._trees: RevisionTrees | None = None
        self._opening = threading.Lock()

    async def _acquire_tree(self, revision: Revision) -> Path:
        """The revision's files under their names, held until ``self._trees.release(revision.id)``.

        Raises:
            StorageError: the tree could not be laid out.
        """
        if self._trees is None:
            await asyncio.to_thread(self._open_trees)
        assert self._trees is not None
        return await asyncio.to_thread(self._trees.acquire, revision)

    def _open_trees(self) -> None:
        with self._opening:
            if self._trees is None:
                shutil.rmtree(self.work_dir / "revisions", ignore_errors=True)  # the unbounded layout before it
                self._trees = RevisionTrees(self.work_dir / "trees", self.blob_path, TREE_BUDGET)

    async def plan(self, revision: Revision, manifest: Manifest, changed: Mapping[str, str],
                   reports: Mapping[str, Mapping[str, object]]) -> MeshPlan:
        """The meshes of one copy: each printable part's published mesh, or one OpenSCAD render with
        changed parameters.

        Raises:
            FailedPrecondition: the revision has no mesh to print, or the printability check of one found errors.
            InvalidArgument: OpenSCAD refused the parameters.
        """
        if changed and manifest.openscad is not None:
            return await self._render(revision, manifest.openscad.source, changed)
        meshes = part_meshes(revision, manifest)
        if not meshes:
            raise FailedPrecondition(f"{revision.design} has no printable mesh (STL, 3MF or OBJ) in this revision")
        for name in meshes:
            report = reports.get(name)
            if report is not None and report.get("ok") is False:
                errors = [str(f.get("message", f.get("code"))) for f in report.get("findings", [])  # type: ignore[attr-defined]
                          if f.get("severity") in ("error", "SEVERITY_ERROR")]
                raise FailedPrecondition(f"printability check of {name} found errors: "
                                         f"{'; '.join(errors) or 'see the report'}")
        folder = await self._acquire_tree(revision)
        return MeshPlan(tuple(PartMesh(folder / name, _extents((reports.get(name) or {}).get("extents_mm")),
                                       sum(parts.values()), tuple(parts))
                              for name, parts in meshes.items()), False, False, tree=revision.id)

    async def _render(self, revision: Revision, source: str, changed: Mapping[str, str]) -> MeshPlan:
        """One render of the revision's OpenSCAD source with the changed parameters, through the bounded
        render cache (keyed by the files it reads, the values and the OpenSCAD version; one render for
        quotes asking the same at once); the plan holds a copy of it until :meth:`release`."""
        from slicer_bridge.base import ParameterError, RenderError, ToolNotFound
        from slicer_bridge.cache import CacheError

        if self._renders is None:
            await asyncio.to_thread(self._open_renders)
        assert self._renders is not None
        folder = await self._acquire_tree(revision)
        trees = self._trees
        assert trees is not None
        scratch = Path(tempfile.mkdtemp(prefix="render-", dir=self._mkdir(self.work_dir / "tmp")))
        planned = False
        try:
            values = {k: _coerce(k, v) for k, v in changed.items()}
            out, _ = await self._renders.render(folder / source, values, RENDER_TIMEOUT_S, scratch / "model.stl")
            plan = MeshPlan((PartMesh(out, await asyncio.to_thread(_mesh_extents, out)),), True, True, scratch)
            planned = True
        except ParameterError as exc:
            raise InvalidArgument(str(exc)) from exc
        except (RenderError, ToolNotFound) as exc:
            raise FailedPrecondition(f"the design cannot be rendered with these parameters: {exc}") from exc
        except CacheError as exc:
            raise StorageError(f"the render could not be kept: {exc}", retryable=True) from exc
        finally:
            await asyncio.to_thread(trees.release, revision.id)  # the render cache has its own copy
            if not planned:
                shutil.rmtree(scratch, ignore_errors=True)
        return plan

    def release(self, plan: MeshPlan) -> None:
        """Let go of what the plan holds for its quote: a render's copy (the cache keeps the render), the
        revision's tree (kept within the budget)."""
        if plan.scratch is not None:
            shutil.rmtree(plan.scratch, ignore_errors=True)
        if plan.tree is not None and self._trees is not None:
            self._trees.release(plan.tree)

    def _open_renders(self) -> None:
        from slicer_bridge.render_cache import RenderCache

        with self._opening:
            if self._renders is None:
                shutil.rmtree(self.work_dir / "renders", ignore_errors=True)  # the unbounded layout before it
                self._renders = RenderCache(self._mkdir(self.work_dir / "render-cache"), RENDER_CACHE_BYTES)

    def _open_cache(self, cache: Callable[[Path, int], object], slicer: Callable[[], object]) -> None:
        """Open the slice cache once: two caches over one directory would each miss the other's entries."""
        with self._opening:
            if self._cache is None:
                self._slicer = slicer()
                self._cache = cache(self._mkdir(self.work_dir / "slices"), SLICE_CACHE_BYTES)

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def estimate(self, mesh: PartMesh, profile: str) -> tuple[Estimate, bool, dict[str, str]]:
        """Slice one mesh (one object) with a printer profile: (estimate, came from the cache, settings).

        Raises:
            FailedPrecondition: the profile is unknown or the slicer failed on this mesh.
            StorageError: the slicer is not installed or the cache is unusable.
        """
        from slicer_bridge.base import SliceRequest, SlicerError, ToolNotFound
        from slicer_bridge.cache import CacheError, SliceCache, slice_cached
        from slicer_bridge.profiles import PROFILE_DIR
        from slicer_bridge.prusaslicer import PrusaSlicer

        ini = PROFILE_DIR / f"{profile or DEFAULT_PROFILE}.ini"
        if not ini.is_file():
            raise FailedPrecondition(f"printer profile {profile!r} is unknown to the hub's slicer")
        if self._cache is None:
            await asyncio.to_thread(self._open_cache, SliceCache, PrusaSlicer)
        try:
            result = await slice_cached(self._cache, self._slicer, SliceRequest(mesh.path, ini))  # type: ignore[arg-type]
        except ToolNotFound as exc:
            raise StorageError(f"the hub cannot slice: {exc}") from exc
        except CacheError as exc:
            raise StorageError(f"the hub's slice cache is unusable: {exc}") from exc
        except SlicerError as exc:
            raise FailedPrecondition(f"slicing failed for profile {profile}: {exc}") from exc
        meta = result.metadata
        settings = {"layer_height_mm": f"{meta.layer_height_mm:g}", "profile": profile or DEFAULT_PROFILE,
                    "slicer": f"{meta.slicer_name} {meta.slicer_version}".strip()}
        return Estimate(meta.estimated_seconds, meta.filament_g), result.cached, settings


def part_meshes(revision: Revision, manifest: Manifest) -> dict[str, dict[str, int]]:
    """{mesh path: {part name: objects per copy}}: the mesh each printable part is made from, the first of
    its mesh files in the revision's order (the one a node prints for the part's job), with each part
    printed from it counted as often as the manifest counts the part."""
    order = {f.path: i for i, f in enumerate(revision.files)}
    found: dict[str, dict[str, int]] = {}
    for part in manifest.parts:
        meshes = sorted((f for f in part.files if f.lower().endswith(MESH_SUFFIXES)), key=lambda f: order.get(f, len(order)))
        if meshes:
            parts = found.setdefault(meshes[0], {})
            parts[part.name] = parts.get(part.name, 0) + part.quantity
    return found


def _extents(value: object) -> tuple[float, float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 3:
        return (float(value[0]), float(value[1]), float(value[2]))
    return None


def _mesh_extents(path: Path) -> tuple[float, float, float]:
    from slicer_bridge.mesh_io import load_mesh

    mesh = load_mesh(path)
    size = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    return (float(size[0]), float(size[1]), float(size[2]))
