"""Protos in, plain JSON-ready dicts out: the client's one converter.

Dicts (not protos) reach the commands, the ``--json`` output and exported
bundles; :func:`chain_link` turns a revision dict into what
:func:`hub.provenance.verify_chain` checks.
"""

from __future__ import annotations

from typing import Any

from spimeforge.v1 import common_pb2, designs_pb2

from hub.domain import FileEntry
from hub.errors import HubError, IntegrityError
from hub.manifest import parse_manifest
from hub.provenance import ChainLink

__all__ = ["attribution", "chain_link", "design", "file_entries", "proposal", "report", "revision"]

_KINDS = {designs_pb2.REVISION_KIND_PUSH: "push", designs_pb2.REVISION_KIND_FORK: "fork",
          designs_pb2.REVISION_KIND_PROPOSAL: "proposal"}
_STATES = {designs_pb2.PROPOSAL_STATE_OPEN: "open", designs_pb2.PROPOSAL_STATE_ACCEPTED: "accepted",
           designs_pb2.PROPOSAL_STATE_DECLINED: "declined"}


def attribution(msg: common_pb2.Attribution) -> dict[str, Any]:
    """An Attribution as a dict."""
    return {"design": msg.design, "revision_id": msg.revision_id, "title": msg.title,
            "license": msg.license, "licensor": msg.licensor,
            "contributors": list(msg.contributors), "notice": msg.notice}


def report(msg: common_pb2.PrintabilityReport) -> dict[str, Any]:
    """A PrintabilityReport as a dict (findings flattened)."""
    return {"path": msg.path, "ok": msg.ok, "faces": msg.faces, "bodies": msg.bodies,
            "findings": [{"code": f.code, "severity": common_pb2.Severity.Name(f.severity),
                          "message": f.message} for f in msg.findings]}


def design(msg: designs_pb2.Design) -> dict[str, Any]:
    """A Design as a dict."""
    return {"slug": msg.slug, "title": msg.title, "description": msg.description,
            "license": msg.license, "head_revision_id": msg.head_revision_id,
            "maintainers": list(msg.maintainers), "tags": list(msg.tags),
            "forked_from": list(msg.forked_from), "created_at": msg.created_at,
            "updated_at": msg.updated_at, "revision_count": msg.revision_count,
            "attributions": [attribution(a) for a in msg.attributions]}


def revision(msg: designs_pb2.Revision) -> dict[str, Any]:
    """A Revision as a dict (signature and key as hex)."""
    return {"id": msg.id, "design": msg.design, "parent_ids": list(msg.parent_ids),
            "manifest_toml": msg.manifest_toml,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in msg.files],
            "author": msg.author, "created_at": msg.created_at, "message": msg.message,
            "signature": msg.signature.hex(), "public_key": msg.public_key.hex(),
            "kind": _KINDS.get(msg.kind, "unspecified"),
            "reports": [report(r) for r in msg.reports],
            "attributions": [attribution(a) for a in msg.attributions]}


def proposal(msg: designs_pb2.Proposal) -> dict[str, Any]:
    """A Proposal as a dict."""
    return {"id": msg.id, "design": msg.design, "revision": revision(msg.revision),
            "author": msg.author, "state": _STATES.get(msg.state, "unspecified"),
            "decided_by": msg.decided_by, "reason": msg.reason,
            "created_at": msg.created_at, "decided_at": msg.decided_at}


def file_entries(files: list[dict[str, Any]]) -> tuple[FileEntry, ...]:
    """Revision file dicts as provenance FileEntry values."""
    return tuple(FileEntry(path=f["path"], sha256=f["sha256"], size=int(f["size"]))
                 for f in files)


def chain_link(rev: dict[str, Any]) -> ChainLink:
    """A revision dict as a :class:`~hub.provenance.ChainLink` for verification.

    Raises:
        IntegrityError: the stored manifest no longer parses (it was altered).
    """
    try:
        manifest = parse_manifest(rev["manifest_toml"]).to_dict()
    except HubError as exc:
        raise IntegrityError(f"revision {rev['id'][:12]}: manifest is invalid: {exc}") from exc
    return ChainLink(
        id=rev["id"], parents=tuple(rev["parent_ids"]), manifest=manifest,
        files=file_entries(rev["files"]), author=rev["author"],
        created_at=rev["created_at"], message=rev["message"],
        signature=bytes.fromhex(rev.get("signature", "")),
        public_key=bytes.fromhex(rev.get("public_key", "")),
    )
