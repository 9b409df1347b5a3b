"""Licence law at every door: which revisions may be parents, and what a new revision inherits.

Every way a revision enters the commons (create, push, multi-parent push,
proposal, accept, fork and remix) goes through here:

* parents must be *accepted*: pushed, forked, or an accepted proposal — never
  an open or declined proposal's revision (:meth:`Lineage.accepted`);
* the new revision inherits the attributions of its whole lineage: every
  ancestor in another design, transitively (:meth:`Lineage.collect`); they are
  stored on the revision and on the design, so they cannot be dropped;
* one pure licence check (:func:`hub.licenses.check_revision_license`) runs
  against that lineage.

``derivative_of`` entries of a manifest that name a revision on this hub count
as parents for the licence check, so a design cannot escape its upstream by
being created anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from hub import licenses
from hub.domain import Attribution, Revision
from hub.errors import FailedPrecondition, HubError, InvalidArgument, NotFound
from hub.manifest import Manifest, parse_manifest
from hub.store.designs import DesignStore

__all__ = ["Lineage", "attribution_of", "upstream"]

MAX_PARENTS = 16
_HEX = frozenset("0123456789abcdef")


def attribution_of(revision: Revision) -> Attribution:
    """The credit a derivative owes one parent revision."""
    manifest = parse_manifest(revision.manifest_toml)
    duties = [n for i in licenses.license_ids(manifest.license) for n in licenses.obligations(i).notices()]
    notice = f'"{manifest.title}" ({revision.design}@{revision.id[:12]}) by {manifest.licensor}, licensed {manifest.license}'
    if duties:
        notice += ". Obligations: " + "; ".join(duties)
    return Attribution(
        design=revision.design, revision_id=revision.id, title=manifest.title, license=manifest.license,
        licensor=manifest.licensor, contributors=manifest.contributors, notice=notice,
    )


def upstream(attributions: Iterable[Attribution]) -> list[tuple[str, str]]:
    """(``design@revision``, licence) of every attribution, for the licence check."""
    return [(f"{a.design}@{a.revision_id[:12]}", a.license) for a in attributions]


def _merge(found: dict[tuple[str, str], Attribution], items: Iterable[Attribution]) -> None:
    for item in items:
        found.setdefault((item.design, item.revision_id), item)


class Lineage:
    """Reads what the licence law needs from the designs store."""

    def __init__(self, designs: DesignStore) -> None:
        self.designs = designs

    async def require_accepted(self, revision: Revision) -> Revision:
        """Raises: FailedPrecondition: the revision is an open or declined proposal's."""
        if not await asyncio.to_thread(self.designs._thd_is_accepted, revision.id):
            raise FailedPrecondition(
                f"revision {revision.design}@{revision.id[:12]} is a proposal that was never accepted; "
                "only accepted revisions can be parents", reason="PARENT_NOT_ACCEPTED")
        return revision

    async def accepted(self, parent_ids: Sequence[str], field: str = "parent_ids") -> list[Revision]:
        """Load parent revisions by full id; each must exist and be accepted.

        Raises:
            InvalidArgument: too many parents, a malformed or repeated id.
            FailedPrecondition: a parent is not on this hub or not accepted.
        """
        if len(parent_ids) > MAX_PARENTS:
            raise InvalidArgument(f"a revision has at most {MAX_PARENTS} parents, got {len(parent_ids)}",
                                  reason="LIMIT_EXCEEDED", field=field)
        if len(set(parent_ids)) != len(parent_ids):
            raise InvalidArgument("the same parent revision is listed twice", field=field)
        return [await self._accepted_one(pid, f"{field}[{i}]") for i, pid in enumerate(parent_ids)]

    async def _accepted_one(self, parent_id: str, field: str) -> Revision:
        if len(parent_id) != 64 or not set(parent_id) <= _HEX:
            raise InvalidArgument(f"parent revision {parent_id!r:.80} is not a 64-digit lowercase hex id",
                                  field=field)
        revision = await asyncio.to_thread(self.designs._thd_revision_by_id, parent_id)
        if revision is None:
            raise FailedPrecondition(f"parent revision {parent_id} is not on this hub",
                                     reason="PARENT_NOT_FOUND", field=field)
        return await self.require_accepted(revision)

    async def referenced(self, manifest: Manifest, design: str) -> list[Revision]:
        """Revisions on this hub that the manifest's ``derivative_of`` names (other designs only).

        Raises:
            FailedPrecondition: one names a proposal that was never accepted.
        """
        found: list[Revision] = []
        for entry in manifest.derivative_of:
            slug, _, prefix = entry.partition("@")
            if slug == design:
                continue
            try:
                revision = await asyncio.to_thread(self.designs._thd_get_revision, slug, prefix)
            except (NotFound, InvalidArgument):
                continue  # provenance outside this hub: recorded, not enforced
            found.append(await self.require_accepted(revision))
        return found

    async def collect(self, design: str, parents: Sequence[Revision]) -> tuple[Attribution, ...]:
        """The attributions a new revision of ``design`` inherits from these parents, transitively."""
        found: dict[tuple[str, str], Attribution] = {}
        for parent in parents:
            if parent.design != design:
                _merge(found, [attribution_of(parent)])
            _merge(found, parent.attributions)
            _merge(found, await self._design_attributions(parent.design))
        return tuple(a for a in found.values() if a.design != design)

    async def _design_attributions(self, slug: str) -> tuple[Attribution, ...]:
        # Revisions stored before attributions travelled on every revision carry none: the
        # design's own list (its head's lineage, a superset of any older revision's) stands in.
        try:
            return (await asyncio.to_thread(self.designs._thd_get_design, slug)).attributions
        except HubError:
            return ()

    async def check(self, design: str, license: str, parents: Sequence[Revision], *,
                    previous: str | None, may_relicense: bool) -> tuple[Attribution, ...]:
        """Run the licence check of a new revision; return the attributions it inherits.

        Raises:
            InvalidLicense: an expression does not parse.
            LicenseConflict: naming the rule and the ancestor.
        """
        attributions = await self.collect(design, parents)
        licenses.check_revision_license(license, upstream(attributions), previous=previous,
                                        may_relicense=may_relicense)
        return attributions
