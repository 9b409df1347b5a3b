"""Export a design's record: W3C PROV-JSON of its lineage and an Open Know-How manifest.

Pure: takes domain values, returns bytes. PROV-JSON follows the W3C member
submission (https://www.w3.org/Submission/2013/SUBM-prov-json-20130424/):
entities = revisions, agents = people, activities = pushes, merges (accepted
proposals) and forks; a new revision of the same design ``wasDerivedFrom`` its
parent with ``prov:type = prov:Revision``, a remix without it. The OKH manifest
follows OKH 2.x (required: okhv, name, repo, license, licensor, function).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import tomli_w

from hub.domain import Design, Proposal, ProposalState, Revision, RevisionKind
from hub.manifest import parse_manifest

__all__ = ["OKH_MEDIA_TYPE", "PROV_MEDIA_TYPE", "Lineage", "okh_manifest", "prov_json"]

PROV_MEDIA_TYPE = "application/json"  # PROV-JSON has no registered type of its own
OKH_MEDIA_TYPE = "application/toml"
OKH_VERSION = "2.4"
NAMESPACES = {
    "prov": "http://www.w3.org/ns/prov#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "spime": "https://spimeforge.org/ns/v1#",
    "rev": "urn:spimeforge:revision:",
    "person": "urn:spimeforge:account:",
    "act": "urn:spimeforge:activity:",
}
_SOURCE_SUFFIXES = (".scad", ".step", ".stp", ".fcstd", ".f3d", ".blend")


@dataclass(frozen=True, slots=True)
class Lineage:
    """A design's revisions and their ancestors (any design), plus proposal decisions."""

    design: str
    revisions: Sequence[Revision]
    proposals: Sequence[Proposal] = ()


def _qn(name: str) -> dict[str, str]:
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def _entity(rev: Revision) -> dict[str, object]:
    manifest = parse_manifest(rev.manifest_toml)
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


def _activity_kind(rev: Revision, merged: Mapping[str, Proposal]) -> str:
    if rev.kind is RevisionKind.FORK:
        return "spime:Fork"
    return "spime:Merge" if rev.id in merged else "spime:Push"


def prov_json(lineage: Lineage) -> bytes:
    """PROV-JSON of a lineage, as UTF-8 bytes with sorted keys."""
    doc: dict[str, dict[str, object]] = {k: {} for k in (
        "entity", "agent", "activity", "wasGeneratedBy", "wasAssociatedWith", "wasAttributedTo", "used",
        "wasDerivedFrom",
    )}
    merged = {p.revision.id: p for p in lineage.proposals if p.state is ProposalState.ACCEPTED}
    known = {rev.id for rev in lineage.revisions}
    for rev in lineage.revisions:
        _add_revision(doc, rev, merged.get(rev.id), known)
    document: dict[str, object] = {"prefix": dict(NAMESPACES)}
    document.update({k: v for k, v in doc.items() if v})
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")


def _add_revision(doc: dict[str, dict[str, object]], rev: Revision, proposal: Proposal | None, known: set[str]) -> None:
    entity, activity, author = f"rev:{rev.id}", f"act:{rev.id}", f"person:{rev.author}"
    doc["entity"][entity] = _entity(rev)
    doc["agent"][author] = {"prov:type": _qn("prov:Person"), "prov:label": rev.author}
    kind = _activity_kind(rev, {proposal.revision.id: proposal} if proposal else {})
    doc["activity"][activity] = {"prov:type": _qn(kind), "prov:startTime": rev.created_at, "prov:label": rev.message[:200]}
    doc["wasGeneratedBy"][f"_:gen-{rev.id}"] = {"prov:entity": entity, "prov:activity": activity, "prov:time": rev.created_at}
    doc["wasAssociatedWith"][f"_:assoc-{rev.id}"] = {"prov:activity": activity, "prov:agent": author, "prov:hadRole": _qn("spime:author")}
    doc["wasAttributedTo"][f"_:attr-{rev.id}"] = {"prov:entity": entity, "prov:agent": author}
    if proposal is not None and proposal.decided_by:
        reviewer = f"person:{proposal.decided_by}"
        doc["agent"][reviewer] = {"prov:type": _qn("prov:Person"), "prov:label": proposal.decided_by}
        doc["wasAssociatedWith"][f"_:review-{rev.id}"] = {"prov:activity": activity, "prov:agent": reviewer, "prov:hadRole": _qn("spime:maintainer")}
    for index, parent in enumerate(rev.parent_ids):
        _add_parent(doc, rev, parent, index, known)


def _add_parent(doc: dict[str, dict[str, object]], rev: Revision, parent: str, index: int, known: set[str]) -> None:
    parent_entity = f"rev:{parent}"
    if parent not in known:
        doc["entity"].setdefault(parent_entity, {"prov:type": _qn("spime:DesignRevision"), "prov:label": parent[:12]})
    doc["used"][f"_:use-{rev.id}-{index}"] = {"prov:activity": f"act:{rev.id}", "prov:entity": parent_entity}
    derivation: dict[str, object] = {
        "prov:generatedEntity": f"rev:{rev.id}", "prov:usedEntity": parent_entity, "prov:activity": f"act:{rev.id}",
    }
    if rev.kind is RevisionKind.FORK:
        derivation["spime:derivation"] = "remix"
    else:
        derivation["prov:type"] = _qn("prov:Revision")
    doc["wasDerivedFrom"][f"_:der-{rev.id}-{index}"] = derivation


def okh_manifest(design: Design, revision: Revision, repo: str = "") -> bytes:
    """An OKH 2.x manifest (TOML) of one revision of a design."""
    manifest = parse_manifest(revision.manifest_toml)
    doc: dict[str, object] = {
        "okhv": OKH_VERSION,
        "name": manifest.title,
        "repo": repo or f"urn:spimeforge:design:{design.slug}",
        "version": manifest.version,
        "release": f"{design.slug}@{revision.id}",
        "license": manifest.license,
        "licensor": manifest.licensor,
        "function": manifest.function,
    }
    if manifest.description:
        doc["description"] = manifest.description
    if manifest.derivative_of:
        doc["forkOf"] = f"urn:spimeforge:revision:{manifest.derivative_of[0].split('@', 1)[1]}"
    if manifest.documentation_language:
        doc["documentation-language"] = manifest.documentation_language
    if manifest.images:
        doc["image"] = list(manifest.images)
    doc["part"] = [_okh_part(part.name, part.files, part.material, part.quantity) for part in manifest.parts]
    if manifest.contributors:
        doc["contributors"] = list(manifest.contributors)
    if manifest.tags:
        doc["keywords"] = list(manifest.tags)
    return tomli_w.dumps(doc).encode("utf-8")


def _okh_part(name: str, files: Sequence[str], material: str, quantity: int) -> dict[str, object]:
    source = [f for f in files if f.lower().endswith(_SOURCE_SUFFIXES)]
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
    return part
