"""Use cases of the design commons: push, read, search, proposals, maintainers.

The only hub code that combines store calls with the pure rules (manifest,
licences, provenance). Blocking store calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from hub import licenses, provenance
from hub.domain import (
    SLUG_PATTERN,
    Account,
    Attribution,
    Design,
    FileEntry,
    PrintabilityRecord,
    Proposal,
    Revision,
    RevisionKind,
    Role,
)
from hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    HubError,
    IntegrityError,
    InvalidArgument,
    InvalidManifest,
    LicenseConflict,
    NotFound,
    PermissionDenied,
    StaleHead,
)
from hub.limits import MAX_CHECKED_MESHES, MAX_FILES
from hub.manifest import MANIFEST_NAME, MESH_SUFFIXES, Manifest, missing_files, parse_manifest
from hub.paths import check_paths
from hub.service.common import Clock, format_time, parse_time
from hub.service.lineage import Lineage
from hub.store.blobs import BlobStore, check_sha256
from hub.store.designs import DesignMeta, DesignStore

__all__ = ["DesignService", "PushRequest", "PushResult", "check_slug", "meta_of"]

MAINTAINER_ROLES = (Role.DESIGNER, Role.ADMIN)
"""Roles whose accounts may maintain a design (customers, operators and nodes publish nothing)."""

# (blob path, file name within the revision) -> report as plain data with at least "ok"
PrintabilityCheck = Callable[[str, str], Awaitable[Mapping[str, object]]]
# (author, created_at, revision id, public key, signature): raises unless unsigned or signed by a key
# registered to the author at that time (AccountService.check_signature)
SignatureCheck = Callable[[str, str, str, bytes, bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PushRequest:
    design: str
    parent_ids: tuple[str, ...]
    manifest_toml: str
    files: tuple[FileEntry, ...]
    created_at: str
    message: str
    signature: bytes = b""
    public_key: bytes = b""
    create: bool = False


@dataclass(frozen=True, slots=True)
class PushResult:
    revision_id: str
    is_proposal: bool = False
    proposal_id: str = ""
    unchanged: bool = False
    reports: tuple[PrintabilityRecord, ...] = ()


def _not_checked(entry: FileEntry, why: str) -> dict[str, object]:
    return {"path": entry.path, "ok": True, "findings": [
        {"code": "not_checked", "severity": "info", "details": {"size": str(entry.size)},
         "message": f"{why}: not checked at push time; run `spime check` on it"}]}


_PROPOSAL_ID = re.compile(r"p-[0-9a-f]{12}\Z", re.ASCII)
_REVISION_ID = re.compile(r"[0-9a-f]{64}\Z", re.ASCII)


def check_slug(slug: str, what: str = "design", field: str = "design") -> str:
    """Raises: InvalidArgument: not a slug like "calibration-cube"."""
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        raise InvalidArgument(
            f"{what} name {slug!r:.80} is not a slug: 2-63 lowercase letters, digits and '-', "
            "starting with a letter or digit", reason="INVALID_SLUG", field=field,
        )
    return slug


def meta_of(manifest: Manifest) -> DesignMeta:
    """What a design row shows of a manifest."""
    ids = licenses.license_ids(manifest.license)
    return DesignMeta(manifest.title, manifest.description, manifest.license, manifest.tags, ids)


def check_files(files: Sequence[FileEntry]) -> tuple[FileEntry, ...]:
    """Validate the file list of a push.

    Raises:
        InvalidArgument: an unsafe or duplicate path, a malformed hash or size.
    """
    if len(files) > MAX_FILES:
        raise InvalidArgument(f"a revision lists at most {MAX_FILES} files, got {len(files)} (limit PushRequest.files)",
                              reason="FIELD_TOO_LARGE", field="files")
    for index, entry in enumerate(files):
        if entry.path == MANIFEST_NAME:
            raise InvalidArgument(f"{MANIFEST_NAME} travels as manifest_toml, not as a file",
                                  reason="PATH_RESERVED_NAME", field=f"files[{index}].path")
    check_paths([entry.path for entry in files], "files")
    for entry in files:
        check_sha256(entry.sha256)
        if entry.size < 0:
            raise InvalidArgument(f"file {entry.path!r} has a negative size")
    return tuple(files)


class DesignService:
    """Designs, revisions, proposals and maintainers."""

    def __init__(self, designs: DesignStore, blobs: BlobStore, clock: Clock, *,
                 future_skew_s: int = 300, past_skew_s: int = 7 * 86400,
                 printability: PrintabilityCheck | None = None, printability_timeout_s: float = 60.0,
                 printability_max_bytes: int = 32 << 20, signatures: SignatureCheck | None = None) -> None:
        self.designs, self.blobs, self.clock = designs, blobs, clock
        self.future_skew = dt.timedelta(seconds=future_skew_s)
        self.past_skew = dt.timedelta(seconds=past_skew_s)
        self.printability = printability
        self.printability_timeout_s = printability_timeout_s
        self.printability_max_bytes = printability_max_bytes
        self.signatures = signatures
        self.lineage = Lineage(designs)

    def _now(self) -> str:
        return format_time(self.clock())

    # -- push ----------------------------------------------------------------

    async def push(self, caller: Account, req: PushRequest) -> PushResult:
        """Create a revision from uploaded blobs (a head move, a proposal, or nothing).

        Raises:
            InvalidArgument: bad slug, manifest, licence, paths, time, or a forged signature.
            NotFound: the design does not exist (and create is false).
            AlreadyExists: create is true but the design exists.
            FailedPrecondition: blobs are missing, a parent is unknown, or the signing key was not
                live at created_at.
            PermissionDenied: signed with a key not registered to the caller.
            StaleHead: the first parent is not the head.
            LicenseConflict: the licence law refuses it (names the rule and the ancestor): a
                licence an ancestor forbids, a relicensing proposal, a dropped attribution.
        """
        manifest = self._validate(req)
        await self._check_existence(req)
        await self._require_blobs(req.files)
        rid = provenance.revision_id(
            req.parent_ids, manifest.to_dict(), req.files, caller.name, req.created_at, req.message
        )
        if self.signatures is not None:
            await self.signatures(caller.name, req.created_at, rid, req.public_key, req.signature)
        elif req.signature or req.public_key:
            provenance.verify_signature(req.public_key, rid, req.signature)
        if req.create:
            return await self._create(caller, req, manifest, rid)
        return await self._push_existing(caller, req, manifest, rid)

    def _validate(self, req: PushRequest) -> Manifest:
        check_slug(req.design)
        manifest = parse_manifest(req.manifest_toml)
        if manifest.name != req.design:
            raise InvalidManifest(f"manifest name {manifest.name!r} does not match the design {req.design!r}")
        check_files(req.files)
        missing = missing_files(manifest, [f.path for f in req.files])
        if missing:
            raise InvalidManifest(f"{MANIFEST_NAME} names files the push does not contain: {', '.join(missing)}")
        self._check_time(req.created_at)
        if req.create and req.parent_ids:
            raise InvalidArgument("a new design's first revision has no parents; push without parent ids")
        if not req.create and not req.parent_ids:
            raise InvalidArgument("give the parent revision id (the head you pulled), or push with create")
        for index, parent_id in enumerate(req.parent_ids):
            if not _REVISION_ID.match(parent_id):  # else it is no head, and "pull first" would loop for ever
                raise InvalidArgument(f"parent_ids[{index}] {parent_id[:80]!r} is not a revision id: give its 64 "
                                      "lowercase hex digits", field=f"parent_ids[{index}]")
        return manifest

    async def _check_existence(self, req: PushRequest) -> None:
        exists = await asyncio.to_thread(self.designs._thd_exists, req.design)
        if req.create and exists:
            raise AlreadyExists(f"design {req.design!r} already exists: pull it and push without create")
        if not req.create and not exists:
            raise NotFound(f"no design named {req.design!r}: push with create to start it, or check the name")

    def _check_time(self, created_at: str) -> None:
        moment, now = parse_time(created_at), self.clock()
        if moment > now + self.future_skew or moment < now - self.past_skew:
            raise InvalidArgument(
                f"created_at {created_at} is too far from the hub's time {format_time(now)}; check your clock"
            )

    async def _require_blobs(self, files: Sequence[FileEntry]) -> None:
        missing = await asyncio.to_thread(self.blobs._thd_missing, [f.sha256 for f in files])
        if missing:
            names = [f.path for f in files if f.sha256 in set(missing)]
            raise FailedPrecondition(
                f"the hub lacks the blobs of {', '.join(names[:10])}{' …' if len(names) > 10 else ''}: "
                "upload them first (MissingBlobs, then UploadBlob)"
            )
        for entry in files:
            size = await asyncio.to_thread(self.blobs._thd_size, entry.sha256)
            if size != entry.size:
                raise IntegrityError(f"file {entry.path} declares {entry.size} bytes but its blob has {size}")

    def _revision(self, caller: Account, req: PushRequest, rid: str, kind: RevisionKind) -> Revision:
        return Revision(
            id=rid, design=req.design, parent_ids=req.parent_ids, manifest_toml=req.manifest_toml,
            files=tuple(sorted(req.files, key=lambda f: f.path)), author=caller.name, created_at=req.created_at,
            message=req.message, kind=kind, signature=req.signature, public_key=req.public_key,
        )

    async def _create(self, caller: Account, req: PushRequest, manifest: Manifest, rid: str) -> PushResult:
        attributions = await self._licence_law(req.design, manifest, [], None, may_relicense=True)
        revision = replace(self._revision(caller, req, rid, RevisionKind.PUSH), attributions=attributions)
        meta = replace(meta_of(manifest), attributions=attributions)
        await asyncio.to_thread(self.designs._thd_create, req.design, meta, revision, caller.name, self._now(), attributions)
        return PushResult(rid, reports=await self._check_printability(revision))

    async def _licence_law(self, slug: str, manifest: Manifest, parents: Sequence[Revision], head: Revision | None,
                           *, may_relicense: bool) -> tuple[Attribution, ...]:
        """The licence check of a new revision against its whole lineage; its inherited attributions.

        Raises:
            LicenseConflict: a rule forbids it (names the rule and the ancestor), or it drops an
                inherited ``derivative_of`` entry.
            FailedPrecondition: a ``derivative_of`` entry names an unaccepted proposal.
        """
        previous = _previous_licence(slug, manifest, head, may_relicense) if head is not None else None
        referenced = await self.lineage.referenced(manifest, slug)
        return await self.lineage.check(slug, manifest.license, [*parents, *referenced], previous=previous,
                                        may_relicense=may_relicense)

    async def _push_existing(self, caller: Account, req: PushRequest, manifest: Manifest, rid: str) -> PushResult:
        design = await asyncio.to_thread(self.designs._thd_get_design, req.design)
        head = await asyncio.to_thread(self.designs._thd_get_revision, req.design, "")
        if _same_content(head, manifest, req.files):
            return PushResult(head.id, unchanged=True, reports=head.reports)
        parents = await self._check_parents(req, design, head)
        maintainer = caller.name in design.maintainers
        attributions = await self._licence_law(req.design, manifest, parents, head, may_relicense=maintainer)
        if maintainer:
            revision = replace(self._revision(caller, req, rid, RevisionKind.PUSH), attributions=attributions)
            meta = replace(meta_of(manifest), attributions=attributions)
            await asyncio.to_thread(self.designs._thd_advance, req.design, req.parent_ids[0], revision, meta, self._now())
            return PushResult(rid, reports=await self._check_printability(revision))
        revision = replace(self._revision(caller, req, rid, RevisionKind.PROPOSAL), attributions=attributions)
        proposal_id = "p-" + secrets.token_hex(6)
        await asyncio.to_thread(self.designs._thd_propose, req.design, req.parent_ids[0], revision, proposal_id, self._now())
        return PushResult(rid, is_proposal=True, proposal_id=proposal_id, reports=await self._check_printability(revision))

    async def _check_parents(self, req: PushRequest, design: Design, head: Revision) -> list[Revision]:
        """The parents of a push: the head first, then accepted revisions (of any design).

        Raises:
            StaleHead: the first parent is not the head.
            InvalidArgument: a malformed, repeated or excess parent id.
            FailedPrecondition: a parent is not on this hub or was never accepted.
        """
        if req.parent_ids[0] != design.head_revision_id:
            raise StaleHead(f"design {design.slug} moved to {design.head_revision_id}; pull first, then push again")
        if req.parent_ids[0] in req.parent_ids[1:]:
            raise InvalidArgument("the same parent revision is listed twice", field="parent_ids")
        return [head, *await self.lineage.accepted(req.parent_ids[1:])]

    async def _check_printability(self, revision: Revision) -> tuple[PrintabilityRecord, ...]:
        if self.printability is None:
            return ()
        meshes = [f for f in revision.files if f.path.lower().endswith(MESH_SUFFIXES)]
        # Each distinct blob is checked once per revision, and at most MAX_CHECKED_MESHES of them.
        distinct = list(dict.fromkeys(f.sha256 for f in meshes))
        checked = {sha: await self._check_one(next(f for f in meshes if f.sha256 == sha))
                   for sha in distinct[:MAX_CHECKED_MESHES]}
        reports = [self._report_for(entry, checked.get(entry.sha256)) for entry in meshes]
        if reports:
            await asyncio.to_thread(self.designs._thd_store_reports, revision.id, reports)
        return tuple(reports)

    @staticmethod
    def _report_for(entry: FileEntry, report: Mapping[str, object] | None) -> PrintabilityRecord:
        if report is None:
            report = _not_checked(entry, f"the revision has more than {MAX_CHECKED_MESHES} distinct meshes; "
                                         "only the first are checked at push time")
        return PrintabilityRecord(entry.path, bool(report.get("ok", False)), {**report, "path": entry.path})

    async def _check_one(self, entry: FileEntry) -> Mapping[str, object]:
        assert self.printability is not None
        if entry.size > self.printability_max_bytes:
            return _not_checked(entry, f"larger than {self.printability_max_bytes >> 20} MiB")
        try:
            return await self.printability(str(self.blobs.path(entry.sha256)), entry.path)
        except Exception as exc:  # noqa: BLE001 - a checker bug must not fail the push
            return {"path": entry.path, "ok": False, "findings": [
                {"code": "check_failed", "severity": "warning", "message": str(exc)[:500], "details": {}}]}

    # -- reads ---------------------------------------------------------------

    async def get_design(self, slug: str) -> Design:
        """Raises: NotFound."""
        return await asyncio.to_thread(self.designs._thd_get_design, check_slug(slug))

    async def get_revision(self, slug: str, revision_id: str) -> Revision:
        """Raises: NotFound, InvalidArgument."""
        return await asyncio.to_thread(self.designs._thd_get_revision, check_slug(slug), revision_id)

    async def log(self, slug: str, from_id: str, limit: int) -> list[Revision]:
        """Raises: NotFound."""
        return await asyncio.to_thread(self.designs._thd_log, check_slug(slug), from_id, limit)

    async def search(self, text: str, license_id: str, tags: Sequence[str], page_size: int, token: str) -> tuple[list[Design], str]:
        """A page of matching designs and the next page token ("" at the end).

        Raises:
            InvalidArgument: a malformed page token, page size or licence id.
        """
        size = page_size or 50
        if not 1 <= size <= 500:
            raise InvalidArgument("page_size must be 1..500")
        after = _after_slug(token)
        if license_id:
            license_id = licenses.parse_expression(license_id)
            if " " in license_id:
                raise InvalidArgument(f"search by one licence id, not an expression: {license_id!r}")
        found = await asyncio.to_thread(self.designs._thd_search, text, license_id, list(tags), after, size + 1)
        more = len(found) > size
        return found[:size], (found[size - 1].slug if more else "")

    # -- governance ------------------------------------------------------------

    async def _require_maintainer(self, caller: Account, slug: str) -> Design:
        design = await self.get_design(slug)
        if caller.name not in design.maintainers and caller.role.value != "admin":
            raise PermissionDenied(
                f"only maintainers of {slug} ({', '.join(design.maintainers)}) may do this; {caller.name} is not one"
            )
        return design

    async def list_proposals(self, slug: str, include_closed: bool, token: str = "", limit: int = 0) -> list[Proposal]:
        """Proposals after the one the page token names (see proposal_token), at most ``limit`` (0 = all).

        Raises:
            NotFound: no such design.
            InvalidArgument: a page token this hub did not issue.
        """
        return await asyncio.to_thread(
            self.designs._thd_list_proposals, check_slug(slug), include_closed, _after_proposal(token), limit
        )

    async def accept(self, caller: Account, slug: str, proposal_id: str) -> tuple[Proposal, Design]:
        """Make a proposal the head, after the licence law checks it again against the whole lineage.

        Raises:
            NotFound: no such design or proposal.
            PermissionDenied: the caller does not maintain the design.
            FailedPrecondition: closed, stale, a parent not accepted, or LicenseConflict.
        """
        await self._require_maintainer(caller, slug)
        proposal = await asyncio.to_thread(self.designs._thd_get_proposal, slug, proposal_id)
        manifest = parse_manifest(proposal.revision.manifest_toml)
        head = await asyncio.to_thread(self.designs._thd_get_revision, slug, "")
        parents = [head] if proposal.revision.parent_ids[:1] == (head.id,) else []
        parents += await self.lineage.accepted(proposal.revision.parent_ids[len(parents):])
        attributions = await self._licence_law(slug, manifest, parents, head, may_relicense=False)
        meta = replace(meta_of(manifest), attributions=attributions)
        return await asyncio.to_thread(self.designs._thd_accept, slug, proposal_id, caller.name, meta, self._now())

    async def decline(self, caller: Account, slug: str, proposal_id: str, reason: str) -> Proposal:
        """Raises: NotFound, PermissionDenied, FailedPrecondition."""
        await self._require_maintainer(caller, slug)
        return await asyncio.to_thread(self.designs._thd_decline, slug, proposal_id, caller.name, reason, self._now())

    async def add_maintainer(self, caller: Account, slug: str, account: str, account_of: Callable[[str], Account]) -> Design:
        """Make a designer (or admin) account a maintainer; ``account_of`` reads an account (blocking).

        Raises:
            NotFound: no such design or account.
            PermissionDenied: the caller does not maintain the design.
            FailedPrecondition: the account's role may not maintain designs (reason MAINTAINER_ROLE).
        """
        await self._require_maintainer(caller, slug)
        added = await asyncio.to_thread(account_of, account)
        if added.role not in MAINTAINER_ROLES:
            raise FailedPrecondition(
                f"{added.name} cannot maintain designs: only {' or '.join(r.value for r in MAINTAINER_ROLES)} "
                "accounts can", reason="MAINTAINER_ROLE", field="account")  # never another account's role
        return await asyncio.to_thread(self.designs._thd_add_maintainer, slug, account, caller.name, self._now())


def _previous_licence(slug: str, manifest: Manifest, head: Revision, may_relicense: bool) -> str | None:
    """The head's licence, after checking that the new manifest keeps the head's derivative_of.

    Raises:
        LicenseConflict: an inherited derivative_of entry is dropped, or a non-maintainer pushes
            onto a head whose manifest today's rules refuse.
    """
    before = _recorded(head)
    if before is None and not may_relicense:
        raise LicenseConflict(f"the manifest of {slug}@{head.id[:12]} predates the hub's current rules; only a "
                              "maintainer can push a revision that repairs it", reason="LICENSE_CHANGE_NOT_MAINTAINER")
    if before is None:
        return None
    dropped = sorted(set(before.derivative_of) - set(manifest.derivative_of))
    if dropped:
        raise LicenseConflict(
            f"licence rule 'attribution travels': {MANIFEST_NAME} drops derivative_of {', '.join(dropped)} "
            f"that {slug}@{head.id[:12]} credits; keep every entry", reason="LICENSE_ATTRIBUTION_DROPPED",
            field="manifest_toml")
    return before.license


def _recorded(revision: Revision) -> Manifest | None:
    """A stored revision's manifest, or None when today's stricter rules refuse what an older hub took."""
    try:
        return parse_manifest(revision.manifest_toml)
    except HubError:
        return None


def _same_content(head: Revision, manifest: Manifest, files: Sequence[FileEntry]) -> bool:
    if sorted(head.files, key=lambda f: f.path) != sorted(files, key=lambda f: f.path):
        return False
    recorded = _recorded(head)
    return recorded is not None and recorded.to_dict() == manifest.to_dict()


# Page tokens name the last item of the page before (keyset paging): a list that changes between
# pages neither repeats nor skips an item, as an offset did (a design created before the page's
# start moved every later one down; a proposal declined on page one hid one of page two).

def _after_slug(token: str) -> str:
    """The design slug a Search page token names ("" for the first page)."""
    if token and not SLUG_PATTERN.match(token):
        raise InvalidArgument(f"page token {token!r:.20} is not one this hub issued", field="page.page_token")
    return token


def proposal_token(proposal: Proposal) -> str:
    """The page token of a ListProposals page that ends with ``proposal``."""
    return f"{proposal.created_at}/{proposal.id}"


def _after_proposal(token: str) -> tuple[str, str] | None:
    """(created_at, id) of the proposal a page token names, None for the first page."""
    if not token:
        return None
    created, _, proposal_id = token.partition("/")
    try:
        parse_time(created)
    except InvalidArgument:
        proposal_id = ""
    if not _PROPOSAL_ID.match(proposal_id):
        raise InvalidArgument(f"page token {token!r:.40} is not one this hub issued", field="page.page_token")
    return created, proposal_id
