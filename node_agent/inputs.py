"""Which of an offer's artifacts a job needs: the path it takes, and the files of that path (pure).

A job prints a mesh as it is or renders the design's OpenSCAD source with the job's parameters (when it
has parameters, or no mesh). Printing a mesh needs that mesh alone. A render needs its source and
what the source reads, found as the render's sandbox finds them (``slicer_bridge.scad_sandbox``):
every ``include``/``use`` and every file call (``import``, ``surface``, the DXF readers) naming a
plain string, relative to the folder of the file that names it, and again within each file included
or used. The revision's other files (the parts' meshes, images, libraries nothing reads) stay on the
hub. A name that is no artifact is not fetched: the render's own check refuses it, naming it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from node_agent.messages import ArtifactRef, Offer
from slicer_bridge.scad_sandbox import references

__all__ = ["MESH_SUFFIXES", "Model", "model", "read_by"]

MESH_SUFFIXES = (".stl", ".3mf", ".obj", ".ply")
_CODE = frozenset({"include", "use"})  # statements whose file is OpenSCAD code, with references of its own


@dataclass(frozen=True, slots=True)
class Model:
    """What a job makes its mesh from: ``source`` rendered with the job's parameters when ``render``,
    else printed as it is."""

    source: ArtifactRef
    render: bool


def _pick(artifacts: Sequence[ArtifactRef], kind: str, suffixes: Sequence[str]) -> ArtifactRef | None:
    """The artifact of that kind; failing one, the first whose name ends so, except a library .scad
    (kind "scad-include"), which is never rendered in place of the design's OpenSCAD source."""
    for ref in artifacts:
        if ref.kind == kind:
            return ref
    for ref in artifacts:
        if ref.kind != "scad-include" and ref.path.lower().endswith(tuple(suffixes)):
            return ref
    return None


def model(offer: Offer) -> Model | None:
    """The path ``offer`` takes: its OpenSCAD source rendered when it has parameters or no mesh, else
    its mesh (the first, in the hub's order); None when it has neither."""
    scad = _pick(offer.artifacts, "scad", (".scad",))
    mesh = _pick(offer.artifacts, "mesh", MESH_SUFFIXES)
    if scad is not None and (offer.parameters or mesh is None):
        return Model(scad, True)
    return None if mesh is None else Model(mesh, False)


def read_by(ref: ArtifactRef, source: str, artifacts: Sequence[ArtifactRef]) -> list[tuple[ArtifactRef, bool]]:
    """The artifacts the OpenSCAD code ``source`` (the text of ``ref``) reads, each once, and whether
    each is read as code (included or used: what it reads is needed too)."""
    by_path = {a.path: a for a in artifacts}
    folder = posixpath.dirname(ref.path)
    found: dict[str, tuple[ArtifactRef, bool]] = {}
    for _, statement, name in references(source):
        if not name or name.startswith(("/", "~")):
            continue
        target = by_path.get(posixpath.normpath(posixpath.join(folder, name)))
        if target is not None:
            found[target.path] = (target, found.get(target.path, (target, False))[1] or statement in _CODE)
    return list(found.values())
