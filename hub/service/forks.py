"""Fork and remix: a new design whose first revision has the parent revisions as parents.

Only accepted revisions can be parents, and the licence rules decide first
against the whole lineage (hub.service.lineage); the remix's manifest is built
from its parents (name, licence, derivative_of, merged parts and files) and
the attribution obligations of every parent, and of their own ancestors,
travel with it. Where two parents hold different files at the same path (also
after case folding and Unicode normalisation), a later parent's file moves
under ``<its design>/``; a remix whose paths still collide is refused. A remix
must fit in one revision as a push does: at most hub.limits.MAX_FILES files,
and small enough that its answer (Fork, GetRevision, Log) fits in a message
(hub.limits.PAGE_MAX_BYTES); a larger one is refused before anything is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hub import licenses, limits, provenance
from hub.domain import Account, Attribution, Design, FileEntry, Revision, RevisionKind
from hub.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from hub.manifest import Manifest, dump_manifest, manifest_from_dict, parse_manifest
from hub.paths import check_paths, fold
from hub.service.common import Clock, format_time
from hub.service.designs import check_slug, meta_of
from hub.service.lineage import Lineage, attribution_of
from hub.store.designs import DesignStore

__all__ = ["ForkRequest", "ForkService", "attribution_of"]

MAX_PARENTS = 16


@dataclass(frozen=True, slots=True)
class ForkRequest:
    parents: tuple[tuple[str, str], ...]  # (design, revision id or "" for head)
    name: str
    license: str = ""
    message: str = ""
    title: str = ""


class ForkService:
    """Creates remixes under the licence rules."""

    def __init__(self, designs: DesignStore, clock: Clock) -> None:
        self.designs, self.clock = designs, clock
        self.lineage = Lineage(designs)

    async def fork(self, caller: Account, req: ForkRequest) -> tuple[Design, Revision]:
        """Create the remix design and its first revision.

        Raises:
            InvalidArgument: bad name, a title with nothing visible, no parents, or several parents without a
                licence.
            InvalidLicense: the requested licence does not parse.
            NotFound: a parent design or revision does not exist.
            AlreadyExists: the new name is taken.
            LicenseConflict: a licence rule forbids this remix (names rule and parent).
            FailedPrecondition: a parent is a proposal never accepted, the parents' paths collide, or
                the merged revision is over MAX_FILES files or PAGE_MAX_BYTES (reason REMIX_TOO_LARGE).
        """
        check_slug(req.name, field="name")
        if req.title:  # empty keeps the first parent's title
            limits.check_visible(req.title, "ForkRequest.title")
        if not req.parents or len(req.parents) > MAX_PARENTS:
            raise InvalidArgument(f"a fork needs 1 to {MAX_PARENTS} parents")
        if await asyncio.to_thread(self.designs._thd_exists, req.name):
            raise AlreadyExists(f"design {req.name!r} already exists: choose another --name")
        parents = [await self._parent(d, r) for d, r in req.parents]
        if len({p.id for p in parents}) != len(parents):
            raise InvalidArgument("the same parent revision is listed twice", field="parents")
        target = self._target_license(req, parents)
        attributions = await self.lineage.check(req.name, target, parents, previous=None, may_relicense=True)
        revision = self._first_revision(caller, req, parents, target, attributions)
        meta = meta_of(parse_manifest(revision.manifest_toml))
        now = format_time(self.clock())
        design = await asyncio.to_thread(self.designs._thd_create, req.name, meta, revision, caller.name, now, attributions)
        return design, revision

    async def _parent(self, design: str, revision_id: str) -> Revision:
        revision = await asyncio.to_thread(self.designs._thd_get_revision, check_slug(design), revision_id)
        return await self.lineage.require_accepted(revision)

    @staticmethod
    def _target_license(req: ForkRequest, parents: Sequence[Revision]) -> str:
        if req.license:
            return licenses.parse_expression(req.license)
        if len(parents) > 1:
            raise InvalidArgument("a remix of several parents needs an explicit --license")
        return parse_manifest(parents[0].manifest_toml).license

    def _first_revision(self, caller: Account, req: ForkRequest, parents: Sequence[Revision], target: str,
                        attributions: tuple[Attribution, ...]) -> Revision:
        data, files = _merge(parents)
        data.update(name=req.name, license=target, licensor=caller.name,
                    derivative_of=[f"{p.design}@{p.id}" for p in parents])
        if req.title:
            data["title"] = req.title
        manifest = _merged_manifest(data, parents)
        created_at = format_time(self.clock())
        message = req.message or "remix of " + ", ".join(f"{p.design}@{p.id[:12]}" for p in parents)
        parent_ids = tuple(p.id for p in parents)
        manifest_toml = dump_manifest(manifest)
        _check_size(parents, files, len(manifest_toml.encode("utf-8")), _attributions_bytes(attributions))
        rid = provenance.revision_id(parent_ids, manifest.to_dict(), files, caller.name, created_at, message)
        return Revision(
            id=rid, design=req.name, parent_ids=parent_ids, manifest_toml=manifest_toml, files=files,
            author=caller.name, created_at=created_at, message=message, kind=RevisionKind.FORK,
            attributions=attributions,
        )


def _merge(parents: Sequence[Revision]) -> tuple[dict[str, Any], tuple[FileEntry, ...]]:
    """Merge parents' manifests and files; later parents' clashing paths move under "<design>/".

    Raises:
        FailedPrecondition: paths still collide after the move (the message names both parents).
    """
    first = parse_manifest(parents[0].manifest_toml).to_dict()
    files = {fold(f.path): f for f in parents[0].files}
    owner = {fold(f.path): parents[0].design for f in parents[0].files}
    for parent in parents[1:]:
        extra = parse_manifest(parent.manifest_toml).to_dict()
        renames = {f.path: _free_path(files, f, parent.design) for f in parent.files}
        for entry in parent.files:
            new = renames[entry.path]
            if fold(new) in files and files[fold(new)] != FileEntry(new, entry.sha256, entry.size):
                raise _collision(new, owner[fold(new)], parent.design)
            files[fold(new)] = FileEntry(new, entry.sha256, entry.size)
            owner.setdefault(fold(new), parent.design)
        _merge_manifest(first, extra, renames, parent.design)
    first.setdefault("contributors", [])
    merged = tuple(sorted(files.values(), key=lambda f: f.path))
    try:
        check_paths([f.path for f in merged], "parents")
    except InvalidArgument as exc:
        raise FailedPrecondition(f"the parents' files cannot be merged: {exc.message}", reason="PATH_COLLISION",
                                 field="parents") from exc
    return first, merged


def _attributions_bytes(attributions: Sequence[Attribution]) -> int:
    return sum(len(" ".join([a.design, a.revision_id, a.title, a.license, a.licensor, a.notice, *a.contributors])
                   .encode("utf-8")) + 16 * (6 + len(a.contributors)) for a in attributions)


def _merged_manifest(data: dict[str, Any], parents: Sequence[Revision]) -> Manifest:
    """The remix's manifest from the merged data.

    Raises:
        FailedPrecondition: the merge of valid parents gives no valid manifest (a remix error, not the
            caller's field: it names the parents).
    """
    try:
        return manifest_from_dict(data)
    except InvalidArgument as exc:
        names = ", ".join(f"{p.design}@{p.id[:12]}" for p in parents)
        raise FailedPrecondition(f"remix refused: the manifests of {names} cannot be merged: {exc.message}",
                                 reason="REMIX_MERGE", field="parents") from exc


def _check_size(parents: Sequence[Revision], files: Sequence[FileEntry], manifest_bytes: int,
                attribution_bytes: int) -> None:
    """Refuse a remix larger than a push may be: its files, its spime.toml, or the bytes of its answer.

    Raises:
        FailedPrecondition: over MAX_FILES, MAX_MANIFEST_BYTES or PAGE_MAX_BYTES (names the parents and the limit).
    """
    names = ", ".join(f"{p.design}@{p.id[:12]}" for p in parents)
    if len(files) > limits.MAX_FILES:
        raise FailedPrecondition(
            f"remix refused: merging {names} gives {len(files):,} files, over the {limits.MAX_FILES:,} one "
            "revision may list (limit PushRequest.files); remix fewer parents", reason="REMIX_TOO_LARGE",
            field="parents")
    if manifest_bytes > limits.MAX_MANIFEST_BYTES:
        raise FailedPrecondition(
            f"remix refused: merging {names} gives a spime.toml of {manifest_bytes:,} bytes, over the "
            f"{limits.MAX_MANIFEST_BYTES:,} one revision may carry (limit PushRequest.manifest_toml); "
            "remix fewer parents", reason="REMIX_TOO_LARGE", field="parents")
    # What the revision's answer carries per file: path, hash, size and the field tags, generously.
    size = manifest_bytes + attribution_bytes + sum(len(f.path.encode("utf-8")) + len(f.sha256) + 24 for f in files)
    if size > limits.PAGE_MAX_BYTES:
        raise FailedPrecondition(
            f"remix refused: merging {names} gives a revision of about {size:,} bytes, over the "
            f"{limits.PAGE_MAX_BYTES:,} one answer may carry (limit PAGE_MAX_BYTES); remix fewer parents",
            reason="REMIX_TOO_LARGE", field="parents")


def _collision(path: str, first: str, second: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"remix refused: {first} and {second} both hold a different file at {path!r} (also after moving "
        f"{second}'s under '{second}/'); nothing is silently replaced, so remix them in another order "
        "or push a merged revision yourself", reason="PATH_COLLISION", field="parents")


def _free_path(files: dict[str, FileEntry], entry: FileEntry, design: str) -> str:
    same = files.get(fold(entry.path))
    if same is None or (same.path == entry.path and same.sha256 == entry.sha256):
        return entry.path
    return f"{design}/{entry.path}"


def _merge_manifest(into: dict[str, Any], extra: dict[str, Any], renames: dict[str, str], design: str) -> None:
    names = {part["name"] for part in into["parts"]}
    for part in extra["parts"]:
        name = _free_name(names, part["name"], design)
        into["parts"].append({**part, "name": name, "files": [renames.get(f, f) for f in part["files"]]})
        names.add(name)
    for key in ("contributors", "tags"):
        merged = list(dict.fromkeys([*into.get(key, []), *extra.get(key, [])]))
        if merged:
            into[key] = merged
    images = list(dict.fromkeys([*into.get("images", []), *(renames.get(i, i) for i in extra.get("images", []))]))
    if images:
        into["images"] = images


def _free_name(names: set[str], name: str, design: str) -> str:
    """``name``, else ``name (design)``, else ``name (design) 2``, 3, … whichever is free first."""
    if name not in names:
        return name
    candidate, number = f"{name} ({design})", 1
    while candidate in names:
        number += 1
        candidate = f"{name} ({design}) {number}"
    return candidate
