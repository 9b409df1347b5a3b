"""Export a design's record: W3C PROV-JSON of its lineage and fabrications, and an Open Know-How manifest.

Pure: takes domain values, returns bytes. PROV-JSON follows the W3C member
submission (https://www.w3.org/Submission/2013/SUBM-prov-json-20130424/) and
PROV-DM: entities = revisions and fabricated objects (incarnations), agents =
people, the licensor and the nodes that fabricate, activities = pushes, merges
(at the proposal's acceptance time), forks and fabrications. A new revision of
the same design ``wasDerivedFrom`` its parent with ``prov:type = prov:Revision``;
a remix carries ``prov:type = spime:Remix``. Roles use ``prov:role`` (PROV-DM).
Each fabrication is an activity associated with its node that used the revision
and generated the incarnation.

The OKH manifest follows OKH-LOSH (okhv "OKH-LOSHv1.0"; required okhv, name,
repo as a web URL, version, license, licensor, function), with outer dimensions
as an OpenSCAD primitive, the OpenSCAD source, and every parent of a remix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tomli_w

from hub.domain import Design, Fabrication, Proposal, ProposalState, Revision, RevisionKind
from hub.manifest import MESH_SUFFIXES, Manifest, parse_manifest

__all__ = ["OKH_MEDIA_TYPE", "PROV_MEDIA_TYPE", "Lineage", "okh_manifest", "prov_json"]

PROV_MEDIA_TYPE = "application/json"  # PROV-JSON has no registered type of its own
OKH_MEDIA_TYPE = "application/toml"
OKH_VERSION = "OKH-LOSHv1.0"
REPO_BASE = "https://spimeforge.org/designs/"
NAMESPACES = {
    "prov": "http://www.w3.org/ns/prov#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "spime": "https://spimeforge.org/ns/v1#",
    "rev": "urn:spimeforge:revision:",
    "person": "urn:spimeforge:account:",
    "act": "urn:spimeforge:activity:",
    "licensor": "urn:spimeforge:licensor:",
    "node": "urn:spimeforge:node:",
    "fab": "urn:spimeforge:fabrication:",
    "inc": "urn:spimeforge:incarnation:",
}
_SOURCE_SUFFIXES = (".scad", ".step", ".stp", ".fcstd", ".f3d", ".blend")


@dataclass(frozen=True, slots=True)
class Lineage:
    """A design's revisions and their ancestors (any design), proposal decisions and fabrications."""

    design: str
    revisions: Sequence[Revision]
    proposals: Sequence[Proposal] = ()
    fabrications: Sequence[Fabrication] = ()


def _qn(name: str) -> dict[str, str]:
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def _local(text: str) -> str:
    """A PROV local name for a name that may hold spaces and punctuation, one per name (injective).

    Letters, digits, '-' and '.' stay; a space becomes '_' (so "Test Licensor" reads Test_Licensor);
    every other character, '_' and '%' among them, becomes the %XX escapes of its UTF-8 bytes
    (PROV-N's PN_LOCAL takes them): ``Test"Licensor`` and "Test_Licensor" get ids of their own.
    """
    return "".join("_" if c == " " else c if c.isalnum() or c in "-." else
                   "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass")) for c in text)


def _entity(rev: Revision, manifest: Manifest) -> dict[str, object]:
    return {
        "prov:type": _qn("spime:DesignRevision"),
        "prov:label": f"{rev.design}@{rev.id[:12]}",
        "spime:design": rev.design,
        "spime:title": manifest.title,
        "spime:license": manifest.license,
        "spime:version": manifest.version,
        "spime:files": len(rev.files),
        "spime:signed": bool(rev.signature),
    }


def _activity_kind(rev: Revision, proposal: Proposal | None) -> str:
    if rev.kind is RevisionKind.FORK:
        return "spime:Fork"
    return "spime:Merge" if proposal is not None else "spime:Push"


def prov_json(lineage: Lineage) -> bytes:
    """PROV-JSON of a lineage and its fabrications, as UTF-8 bytes with sorted keys."""
    doc: dict[str, dict[str, object]] = {k: {} for k in (
        "entity", "agent", "activity", "wasGeneratedBy", "wasAssociatedWith", "wasAttributedTo", "used",
        "wasDerivedFrom",
    )}
    merged = {p.revision.id: p for p in lineage.proposals if p.state is ProposalState.ACCEPTED}
    known = {rev.id for rev in lineage.revisions}
    for rev in lineage.revisions:
        _add_revision(doc, rev, merged.get(rev.id), known)
    for fab in lineage.fabrications:
        _add_fabrication(doc, fab)
    document: dict[str, object] = {"prefix": dict(NAMESPACES)}
    document.update({k: v for k, v in doc.items() if v})
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")


def _person(doc: dict[str, dict[str, object]], name: str) -> str:
    agent = f"person:{_local(name)}"
    doc["agent"][agent] = {"prov:type": _qn("prov:Person"), "prov:label": name}
    return agent


def _add_revision(doc: dict[str, dict[str, object]], rev: Revision, proposal: Proposal | None, known: set[str]) -> None:
    entity, activity = f"rev:{rev.id}", f"act:{rev.id}"
    manifest = parse_manifest(rev.manifest_toml)
    doc["entity"][entity] = _entity(rev, manifest)
    author = _person(doc, rev.author)
    # a merged proposal becomes part of the design when a maintainer accepts it, not when it was written
    when = proposal.decided_at if proposal is not None and proposal.decided_at else rev.created_at
    doc["activity"][activity] = {"prov:type": _qn(_activity_kind(rev, proposal)), "prov:startTime": when,
                                 "prov:endTime": when, "prov:label": rev.message[:200]}
    doc["wasGeneratedBy"][f"_:gen-{rev.id}"] = {"prov:entity": entity, "prov:activity": activity, "prov:time": when}
    doc["wasAssociatedWith"][f"_:assoc-{rev.id}"] = {"prov:activity": activity, "prov:agent": author,
                                                     "prov:role": _qn("spime:author")}
    doc["wasAttributedTo"][f"_:attr-{rev.id}"] = {"prov:entity": entity, "prov:agent": author}
    if manifest.licensor:
        licensor = f"licensor:{_local(manifest.licensor)}"
        # The licence is the revision's (on its attribution): one licensor may license revisions differently.
        doc["agent"][licensor] = {"prov:type": _qn("spime:Licensor"), "prov:label": manifest.licensor}
        doc["wasAttributedTo"][f"_:lic-{rev.id}"] = {"prov:entity": entity, "prov:agent": licensor,
                                                    "spime:role": "licensor", "spime:license": manifest.license}
    if proposal is not None and proposal.decided_by:
        reviewer = _person(doc, proposal.decided_by)
        doc["wasAssociatedWith"][f"_:review-{rev.id}"] = {"prov:activity": activity, "prov:agent": reviewer,
                                                          "prov:role": _qn("spime:maintainer")}
    for index, parent in enumerate(rev.parent_ids):
        _add_parent(doc, rev, parent, index, known)


def _add_parent(doc: dict[str, dict[str, object]], rev: Revision, parent: str, index: int, known: set[str]) -> None:
    parent_entity = f"rev:{parent}"
    if parent not in known:
        doc["entity"].setdefault(parent_entity, {"prov:type": _qn("spime:DesignRevision"), "prov:label": parent[:12]})
    doc["used"][f"_:use-{rev.id}-{index}"] = {"prov:activity": f"act:{rev.id}", "prov:entity": parent_entity,
                                              "prov:role": _qn("spime:parent")}
    derivation: dict[str, object] = {
        "prov:generatedEntity": f"rev:{rev.id}", "prov:usedEntity": parent_entity, "prov:activity": f"act:{rev.id}",
    }
    if rev.kind is RevisionKind.FORK:
        derivation["prov:type"] = _qn("spime:Remix")
        derivation["spime:derivation"] = "remix"
    else:
        derivation["prov:type"] = _qn("prov:Revision")
    doc["wasDerivedFrom"][f"_:der-{rev.id}-{index}"] = derivation


def _add_fabrication(doc: dict[str, dict[str, object]], fab: Fabrication) -> None:
    key = fab.incarnation_id or fab.job_id
    activity, node, made = f"fab:{_local(key)}", f"node:{_local(fab.node)}", f"inc:{_local(key)}"
    revision = f"rev:{fab.revision_id}"
    doc["entity"].setdefault(revision, {"prov:type": _qn("spime:DesignRevision"), "prov:label": fab.revision_id[:12]})
    doc["agent"][node] = {"prov:type": _qn("prov:Organization"), "prov:label": fab.node,
                          "spime:kind": "fabrication node"}
    doc["activity"][activity] = {
        "prov:type": _qn("spime:Fabrication"), "prov:endTime": fab.finished_at, "spime:printer": fab.printer,
        "spime:printerModel": fab.printer_model, "spime:material": fab.material, "spime:outcome": fab.outcome,
        "spime:estimatedSeconds": fab.estimated_seconds, "spime:actualSeconds": fab.actual_seconds,
        "spime:settings": json.dumps(dict(fab.settings), sort_keys=True),
        "spime:parameters": json.dumps(dict(fab.parameters), sort_keys=True),
    }
    doc["entity"][made] = {"prov:type": _qn("spime:Incarnation"), "prov:label": key, "spime:job": fab.job_id,
                           "spime:outcome": fab.outcome}
    doc["wasAssociatedWith"][f"_:made-{key}"] = {"prov:activity": activity, "prov:agent": node,
                                                 "prov:role": _qn("spime:maker")}
    doc["used"][f"_:design-{key}"] = {"prov:activity": activity, "prov:entity": revision,
                                      "prov:role": _qn("spime:design"), "prov:time": fab.finished_at}
    doc["wasGeneratedBy"][f"_:gen-{key}"] = {"prov:entity": made, "prov:activity": activity,
                                             "prov:time": fab.finished_at}
    doc["wasDerivedFrom"][f"_:inc-{key}"] = {"prov:generatedEntity": made, "prov:usedEntity": revision,
                                             "prov:activity": activity}


def okh_manifest(design: Design, revision: Revision, repo: str = "") -> bytes:
    """An OKH-LOSH manifest (TOML) of one revision of a design."""
    manifest = parse_manifest(revision.manifest_toml)
    base = repo or f"{REPO_BASE}{design.slug}"
    doc: dict[str, object] = {
        "okhv": OKH_VERSION,
        "name": manifest.title,
        "repo": base,
        "version": manifest.version,
        "release": f"{base}/revisions/{revision.id}",
        "license": manifest.license,
        "licensor": manifest.licensor,
        "function": manifest.function,
    }
    if manifest.description:
        doc["description"] = manifest.description
    if manifest.derivative_of:
        doc["forkOf"] = [f"{REPO_BASE}{ref.split('@', 1)[0]}/revisions/{ref.split('@', 1)[1]}"
                         for ref in manifest.derivative_of if "@" in ref]
    if manifest.documentation_language:
        doc["documentation-language"] = manifest.documentation_language
    if manifest.images:
        doc["image"] = manifest.images[0]
    if manifest.openscad is not None:
        doc["source"] = [manifest.openscad.source]
    extents = _extents(revision)
    parts = [_okh_part(p.name, p.files, p.material, p.quantity, manifest, extents) for p in manifest.parts]
    doc["part"] = parts
    sizes = [e for p in manifest.parts for f in p.files if (e := extents.get(f)) is not None]
    if sizes:
        doc["outer-dimensions"] = _dimensions((max(s[0] for s in sizes), max(s[1] for s in sizes),
                                               max(s[2] for s in sizes)))
    if manifest.contributors:
        doc["contributors"] = list(manifest.contributors)
    if manifest.tags:
        doc["keywords"] = list(manifest.tags)
    return tomli_w.dumps(doc).encode("utf-8")


def _extents(revision: Revision) -> dict[str, tuple[float, float, float]]:
    found = {}
    for record in revision.reports:
        value = record.report.get("extents_mm")
        if isinstance(value, list | tuple) and len(value) == 3:
            found[record.path] = (float(value[0]), float(value[1]), float(value[2]))
    return found


def _dimensions(size: tuple[float, float, float]) -> dict[str, str]:
    """OKH-LOSH outer dimensions: an OpenSCAD primitive that encloses the part, in mm."""
    x, y, z = (round(v, 3) for v in size)
    return {"openSCAD": f"cube(size = [{x:g}, {y:g}, {z:g}])", "unit": "mm"}


def _okh_part(name: str, files: Sequence[str], material: str, quantity: int, manifest: Manifest,
              extents: Mapping[str, tuple[float, float, float]]) -> dict[str, object]:
    source = [f for f in files if f.lower().endswith(_SOURCE_SUFFIXES)]
    if manifest.openscad is not None and manifest.openscad.source not in source:
        source.append(manifest.openscad.source)
    export = [f for f in files if f not in source]
    part: dict[str, object] = {"name": name}
    if source:
        part["source"] = source
    if export:
        part["export"] = export
    if material:
        part["material"] = material
    if quantity != 1:
        part["quantity"] = quantity
    size = next((extents[f] for f in files if f in extents and f.lower().endswith(MESH_SUFFIXES)), None)
    if size is not None:
        part["outer-dimensions"] = _dimensions(size)
    return part
