"""Protos ⇄ domain values. The only hub module (with servicers) that sees protos."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from google.protobuf import timestamp_pb2
from spimeforge.v1 import accounts_pb2, common_pb2, designs_pb2, records_pb2

from hub.domain import (
    Account,
    Attribution,
    Design,
    FileEntry,
    PrintabilityRecord,
    Proposal,
    RatingRecord,
    Revision,
)
from hub.keys import KeyRegistration
from hub.service.blobs import Chunk
from hub.service.designs import PushRequest, PushResult
from hub.service.forks import ForkRequest
from hub.service.records import CommunityRecord

__all__: list[str] = []

_ROLES: dict[str, accounts_pb2.Role] = {
    "designer": accounts_pb2.ROLE_DESIGNER, "operator": accounts_pb2.ROLE_OPERATOR,
    "customer": accounts_pb2.ROLE_CUSTOMER, "admin": accounts_pb2.ROLE_ADMIN, "node": accounts_pb2.ROLE_NODE,
}
_KINDS: dict[str, designs_pb2.RevisionKind] = {
    "push": designs_pb2.REVISION_KIND_PUSH, "fork": designs_pb2.REVISION_KIND_FORK,
    "proposal": designs_pb2.REVISION_KIND_PROPOSAL,
}
_STATES: dict[str, designs_pb2.ProposalState] = {
    "open": designs_pb2.PROPOSAL_STATE_OPEN, "accepted": designs_pb2.PROPOSAL_STATE_ACCEPTED,
    "declined": designs_pb2.PROPOSAL_STATE_DECLINED,
}
_SEVERITY: dict[str, common_pb2.Severity] = {
    "info": common_pb2.SEVERITY_INFO, "warning": common_pb2.SEVERITY_WARNING, "error": common_pb2.SEVERITY_ERROR,
}
_FORMATS: dict[int, str] = {records_pb2.EXPORT_FORMAT_PROV_JSON: "prov", records_pb2.EXPORT_FORMAT_OKH: "okh"}


def _account_to_proto(account: Account) -> accounts_pb2.Account:
    return accounts_pb2.Account(name=account.name, role=_ROLES[account.role.value], public_key=account.public_key)


def _key_to_proto(reg: KeyRegistration) -> accounts_pb2.KeyRegistration:
    return accounts_pb2.KeyRegistration(
        account=reg.account, public_key=reg.public_key, fingerprint=reg.fingerprint,
        registered_at=reg.registered_at, revoked_at=reg.revoked_at, hub_signature=reg.hub_signature, as_of=reg.as_of,
    )


def _file_from_proto(entry: common_pb2.FileEntry) -> FileEntry:
    return FileEntry(entry.path, entry.sha256, int(entry.size))


def _file_to_proto(entry: FileEntry) -> common_pb2.FileEntry:
    return common_pb2.FileEntry(path=entry.path, sha256=entry.sha256, size=entry.size)


def _chunk_to_proto(chunk: Chunk) -> common_pb2.BlobChunk:
    return common_pb2.BlobChunk(sha256=chunk.sha256, total_size=chunk.total_size, offset=chunk.offset, data=bytes(chunk.data))


def _push_from_proto(req: designs_pb2.PushRequest) -> PushRequest:
    return PushRequest(
        design=req.design, parent_ids=tuple(req.parent_ids), manifest_toml=req.manifest_toml,
        files=tuple(_file_from_proto(f) for f in req.files), created_at=req.created_at, message=req.message,
        signature=req.signature, public_key=req.public_key, create=req.create,
    )


def _push_to_proto(result: PushResult) -> designs_pb2.PushResponse:
    return designs_pb2.PushResponse(
        revision_id=result.revision_id, is_proposal=result.is_proposal, proposal_id=result.proposal_id,
        unchanged=result.unchanged, reports=[_report_to_proto(r) for r in result.reports],
    )


def _report_to_proto(record: PrintabilityRecord) -> common_pb2.PrintabilityReport:
    data: Mapping[str, object] = record.report
    extents = data.get("extents_mm") or (0.0, 0.0, 0.0)
    if isinstance(extents, Mapping):
        extents = (extents.get("x", 0.0), extents.get("y", 0.0), extents.get("z", 0.0))
    return common_pb2.PrintabilityReport(
        path=record.path, ok=record.ok, faces=int(data.get("faces", 0) or 0),  # type: ignore[call-overload]
        bodies=int(data.get("bodies", 0) or 0),  # type: ignore[call-overload]
        extents_mm=common_pb2.Vector3(x=float(extents[0]), y=float(extents[1]), z=float(extents[2])),  # type: ignore[index]
        volume_mm3=float(data.get("volume_mm3", 0.0) or 0.0),  # type: ignore[arg-type]
        findings=[_finding_to_proto(f) for f in data.get("findings", []) or []],  # type: ignore[attr-defined]
        best_orientation=str(data.get("best_orientation", "") or ""),
        printer_profile=str(data.get("printer_profile", data.get("printer", "")) or ""),
    )


def _finding_to_proto(finding: Mapping[str, object]) -> common_pb2.Finding:
    details = dict(finding.get("details") or {})  # type: ignore[call-overload]
    details.update({k: v for k, v in finding.items() if k not in ("code", "severity", "message", "details")})
    return common_pb2.Finding(
        code=str(finding.get("code", "")), severity=_SEVERITY.get(str(finding.get("severity", "")).lower(), common_pb2.SEVERITY_UNSPECIFIED),
        message=str(finding.get("message", "")),
        details={str(k): str(v) for k, v in details.items()},
    )


def _attribution_to_proto(a: Attribution) -> common_pb2.Attribution:
    return common_pb2.Attribution(
        design=a.design, revision_id=a.revision_id, title=a.title, license=a.license, licensor=a.licensor,
        contributors=list(a.contributors), notice=a.notice,
    )


def _design_to_proto(d: Design) -> designs_pb2.Design:
    return designs_pb2.Design(
        slug=d.slug, title=d.title, description=d.description, license=d.license,
        head_revision_id=d.head_revision_id, maintainers=list(d.maintainers), tags=list(d.tags),
        forked_from=list(d.forked_from), created_at=d.created_at, updated_at=d.updated_at,
        revision_count=d.revision_count, attributions=[_attribution_to_proto(a) for a in d.attributions],
    )


def _revision_to_proto(r: Revision) -> designs_pb2.Revision:
    return designs_pb2.Revision(
        id=r.id, design=r.design, parent_ids=list(r.parent_ids), manifest_toml=r.manifest_toml,
        files=[_file_to_proto(f) for f in r.files], author=r.author, created_at=r.created_at, message=r.message,
        signature=r.signature, public_key=r.public_key, kind=_KINDS[r.kind.value],
        reports=[_report_to_proto(x) for x in r.reports],
        attributions=[_attribution_to_proto(a) for a in r.attributions],
    )


def _proposal_to_proto(p: Proposal) -> designs_pb2.Proposal:
    return designs_pb2.Proposal(
        id=p.id, design=p.design, revision=_revision_to_proto(p.revision), author=p.author,
        state=_STATES[p.state.value], decided_by=p.decided_by, reason=p.reason, created_at=p.created_at,
        decided_at=p.decided_at,
    )


def _fork_from_proto(req: designs_pb2.ForkRequest) -> ForkRequest:
    return ForkRequest(
        parents=tuple((p.design, p.revision_id) for p in req.parents), name=req.name, license=req.license,
        message=req.message, title=req.title,
    )


def _format_from_proto(value: int) -> str:
    return _FORMATS.get(value, f"unknown ({value})")


@functools.lru_cache(maxsize=4096)
def _timestamp(text: str) -> tuple[int, int]:
    """(seconds, nanos) of an RFC 3339 time. Protobuf parses it with strptime (~20 µs, most of a record's
    conversion for its 200 ratings), and a record shows the same times call after call."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp.seconds, stamp.nanos


def _rating_to_proto(x: RatingRecord) -> common_pb2.Rating:
    rating = common_pb2.Rating(rater=x.rater, role=x.role, stars=x.stars, criteria=dict(x.criteria), comment=x.comment)
    if x.at:
        rating.at.seconds, rating.at.nanos = _timestamp(x.at)
    return rating


def _record_to_proto(rec: CommunityRecord) -> records_pb2.CommunityRecord:
    return records_pb2.CommunityRecord(
        design=rec.design, license=rec.license, revision_count=rec.revision_count,
        contributors=[records_pb2.Contributor(name=c.name, revisions=c.revisions, accepted_proposals=c.accepted_proposals, roles=list(c.roles)) for c in rec.contributors],
        lineage=[records_pb2.LineageEdge(child_design=e.child_design, child_revision_id=e.child_revision_id, parent_design=e.parent_design, parent_revision_id=e.parent_revision_id) for e in rec.lineage],
        fabrications=[records_pb2.Fabrication(
            job_id=f.job_id, order_id=f.order_id, revision_id=f.revision_id, node=f.node, printer=f.printer,
            material=f.material, settings=dict(f.settings), estimated_seconds=f.estimated_seconds,
            actual_seconds=f.actual_seconds, estimated_filament_g=f.estimated_filament_g,
            actual_filament_g=f.actual_filament_g, outcome=f.outcome, failure_reason=f.failure_reason,
            finished_at=f.finished_at, actual_filament_mm=f.actual_filament_mm, resends=f.resends)
            for f in rec.fabrications],
        ratings=[_rating_to_proto(x) for x in rec.ratings],
        ledger=[records_pb2.LedgerEntry(order_id=x.order_id, recipient=x.recipient, share=x.share, amount=common_pb2.Money(currency=x.currency, minor_units=x.minor_units), equation_version=x.equation_version) for x in rec.ledger],
        attributions=[_attribution_to_proto(a) for a in rec.attributions],
    )
