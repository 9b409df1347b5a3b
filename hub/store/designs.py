"""The designs aggregate: designs, revisions (files, parents, reports), maintainers, proposals.

Every change of a head is a compare-and-set inside one write transaction, so
two pushes racing on the same parent cannot both win: the loser gets StaleHead.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub.domain import (
    Attribution,
    Design,
    FileEntry,
    PrintabilityRecord,
    Proposal,
    ProposalState,
    Revision,
    RevisionKind,
)
from hub.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, StaleHead
from hub.store import schema
from hub.store.driver import Prepared
from hub.store.engine import connect, write

__all__ = ["DesignMeta", "DesignStore", "reports_of"]

d, r, rp, rf = schema.designs, schema.revisions, schema.revision_parents, schema.revision_files
m, p, rep = schema.maintainers, schema.proposals, schema.printability_reports
_IDS_PER_QUERY = 500  # bound parameters per IN list (SQLite allows 32,766, psycopg 65,535)


@dataclass(frozen=True, slots=True)
class DesignMeta:
    """What the designs row shows of its head revision."""

    title: str
    description: str
    license: str
    tags: tuple[str, ...]
    license_ids: tuple[str, ...] = ()
    # The design's inherited attributions from its head's whole lineage; None keeps the stored ones.
    attributions: tuple[Attribution, ...] | None = None


def _design_select() -> sa.Select:  # type: ignore[type-arg]
    """Design rows with what a Design shows besides its tags, maintainers and fork parents:
    its revision count (pushes, forks and accepted proposals) and its first revision."""
    first = sa.select(r.c.id).where(r.c.design == d.c.slug).order_by(r.c.seq).limit(1)
    first_kind = sa.select(r.c.kind).where(r.c.design == d.c.slug).order_by(r.c.seq).limit(1)
    revisions = sa.select(sa.func.count()).select_from(r).where(
        r.c.design == d.c.slug, r.c.kind != RevisionKind.PROPOSAL.value)
    accepted = sa.select(sa.func.count()).select_from(p).where(
        p.c.design == d.c.slug, p.c.state == ProposalState.ACCEPTED.value)
    return sa.select(
        d, first.scalar_subquery().label("first_id"), first_kind.scalar_subquery().label("first_kind"),
        revisions.scalar_subquery().label("revisions"), accepted.scalar_subquery().label("accepted"))


def _grouped(rows: Iterable[sa.Row]) -> dict[str, tuple[str, ...]]:  # type: ignore[type-arg]
    """(key, value) rows, ordered by key, as key -> values in order."""
    out: dict[str, list[str]] = {}
    for key, value in rows:
        out.setdefault(key, []).append(value)
    return {k: tuple(v) for k, v in out.items()}


def _count(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).where(*where)) or 0)


def _attr_json(items: Sequence[Attribution]) -> str:
    return json.dumps([dataclasses.asdict(a) for a in items], sort_keys=True)


def _attr_load(text: str) -> tuple[Attribution, ...]:
    return tuple(Attribution(**{**a, "contributors": tuple(a["contributors"])}) for a in json.loads(text or "[]"))


class DesignStore:
    """One connector for designs and everything that belongs to them."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- reads -------------------------------------------------------------

    def _thd_get_design(self, slug: str) -> Design:
        """Raises: NotFound: no such design."""
        with connect(self.engine) as conn:
            return self._design(conn, slug)

    def _thd_exists(self, slug: str) -> bool:
        with connect(self.engine) as conn:
            return _count(conn, d.c.slug == slug) > 0

    def _thd_get_revision(self, slug: str, revision_id: str = "") -> Revision:
        """A revision by id or unique prefix (>= 8 hex digits); empty = head.

        Raises:
            NotFound: no such design or revision.
            InvalidArgument: the prefix is too short or ambiguous.
        """
        with connect(self.engine) as conn:
            return self._revision(conn, self._resolve(conn, slug, revision_id))

    def _thd_is_accepted(self, revision_id: str) -> bool:
        """Whether a revision is in the commons: pushed, forked, or an accepted proposal."""
        with connect(self.engine) as conn:
            kind = conn.scalar(sa.select(r.c.kind).where(r.c.id == revision_id))
            if kind is None:
                return False
            if kind != RevisionKind.PROPOSAL.value:
                return True
            return _count(conn, p.c.revision_id == revision_id, p.c.state == ProposalState.ACCEPTED.value) > 0

    def _thd_reports(self, revision_id: str) -> tuple[PrintabilityRecord, ...]:
        """A revision's printability reports as stored now (they arrive after the push), by path."""
        with connect(self.engine) as conn:
            return reports_of(conn, revision_id)

    def _thd_revision_by_id(self, revision_id: str) -> Revision | None:
        with connect(self.engine) as conn:
            found = self._revisions(conn, [revision_id])
            return found[0] if found else None

    def _thd_lineage(self, revision_id: str, limit: int) -> list[Revision]:
        """The revision and its ancestors along every parent, across designs (at most ``limit``, the
        nearest first), in a fixed number of queries per 500 revisions: a design of thousands of
        revisions is read in one walk, not one round of queries per revision."""
        lineage = sa.select(r.c.id).where(r.c.id == revision_id).cte("lineage", recursive=True)
        lineage = lineage.union(sa.select(rp.c.parent_id).join(lineage, rp.c.revision_id == lineage.c.id))
        with connect(self.engine) as conn:
            return self._revisions(conn, list(conn.scalars(sa.select(lineage.c.id).limit(limit))))

    def _thd_log(self, slug: str, from_id: str = "", limit: int = 0) -> list[Revision]:
        """Revisions from the head (or from_id) back along first parents within the design.

        Raises:
            NotFound: no such design or revision.
        """
        with connect(self.engine) as conn:
            start = self._resolve(conn, slug, from_id)
            chain = sa.select(r.c.id, sa.literal_column("0").label("depth")).where(r.c.id == start).cte(
                "chain", recursive=True)
            step = sa.select(r.c.id, chain.c.depth + 1).join(rp, rp.c.parent_id == r.c.id).join(
                chain, rp.c.revision_id == chain.c.id).where(rp.c.position == 0, r.c.design == slug)
            chain = chain.union_all(step.where(chain.c.depth < limit - 1) if limit else step)
            ids = conn.scalars(sa.select(chain.c.id).order_by(chain.c.depth))
            return self._revisions(conn, list(ids))

    def _thd_search(self, text: str, license_id: str, tags: Sequence[str], after: str, limit: int) -> list[Design]:
        """A page of designs matching every word, the licence id and every tag, by slug, after the slug
        ``after`` ("" from the first).

        A fixed number of queries for any page size (the page's designs are loaded together).
        """
        query = _design_select().where(d.c.slug > after).order_by(d.c.slug).limit(limit)
        for word in dict.fromkeys(text.lower().split()):  # a word repeated narrows nothing
            query = query.where(d.c.search_text.contains(word, autoescape=True))
        if license_id:
            # Exact on both databases: LIKE ignores ASCII case on SQLite (LicenseRef-FOO would find
            # LicenseRef-Foo) but not on PostgreSQL; replace() compares code points on both.
            query = query.where(sa.func.replace(d.c.license_ids, f" {license_id} ", "") != d.c.license_ids)
        wanted = sorted(set(tags))
        if wanted:
            dt = schema.design_tags
            tagged = (sa.select(dt.c.design).where(dt.c.tag.in_(wanted)).group_by(dt.c.design)
                      .having(sa.func.count(dt.c.tag) == len(wanted)))
            query = query.where(d.c.slug.in_(tagged))
        with connect(self.engine) as conn:
            return self._designs(conn, query)

    def _thd_maintainers(self, slug: str) -> tuple[str, ...]:
        with connect(self.engine) as conn:
            return self._maintainers(conn, slug)

    def _thd_list_proposals(self, slug: str, include_closed: bool, after: tuple[str, str] | None = None,
                            limit: int = 0) -> list[Proposal]:
        """Proposals oldest first, ``limit`` of them (0 = all), after the one made at ``after``
        (created_at, id).

        Raises:
            NotFound: no such design.
        """
        with connect(self.engine) as conn:
            self._require_design(conn, slug)
            query = sa.select(p).where(p.c.design == slug).order_by(p.c.created_at, p.c.id)
            if after is not None:
                query = query.where(sa.or_(p.c.created_at > after[0],
                                           sa.and_(p.c.created_at == after[0], p.c.id > after[1])))
            if limit:
                query = query.limit(limit)
            if not include_closed:
                query = query.where(p.c.state == ProposalState.OPEN.value)
            return [self._proposal(conn, row) for row in conn.execute(query)]

    def _thd_accepted_proposals(self, revisions: Mapping[str, Revision]) -> list[Proposal]:
        """The accepted proposals of these revisions (id -> revision), oldest first: at most one each."""
        ids: list[str] = list(revisions)
        found: list[sa.Row[Any]] = []
        with connect(self.engine) as conn:
            for start in range(0, len(ids), _IDS_PER_QUERY):
                found += conn.execute(sa.select(p).where(p.c.revision_id.in_(ids[start:start + _IDS_PER_QUERY]),
                                                         p.c.state == ProposalState.ACCEPTED.value)).all()
        return [Proposal(
            id=row.id, design=row.design, revision=revisions[row.revision_id], author=row.author,
            state=ProposalState(row.state), base_revision_id=row.base_revision_id, decided_by=row.decided_by,
            reason=row.reason, created_at=row.created_at, decided_at=row.decided_at,
        ) for row in sorted(found, key=lambda row: (row.created_at, row.id))]

    def _thd_get_proposal(self, slug: str, proposal_id: str) -> Proposal:
        with connect(self.engine) as conn:
            return self._proposal(conn, self._proposal_row(conn, slug, proposal_id))

    def _thd_all_revisions(self, slug: str) -> list[Revision]:
        """Every revision stored for a design (pushes, forks and proposals), oldest first."""
        with connect(self.engine) as conn:
            self._require_design(conn, slug)
            ids = conn.scalars(sa.select(r.c.id).where(r.c.design == slug).order_by(r.c.seq))
            return self._revisions(conn, list(ids))

    def _thd_forks_of(self, revision_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(child design, child revision, parent revision) for revisions of other designs citing these."""
        query = (
            sa.select(r.c.design, r.c.id, rp.c.parent_id)
            .join(rp, rp.c.revision_id == r.c.id)
            .where(rp.c.parent_id.in_(list(revision_ids)), r.c.kind == RevisionKind.FORK.value)
        )
        with connect(self.engine) as conn:
            return [(str(a), str(b), str(c)) for a, b, c in conn.execute(query)]

    # -- writes ------------------------------------------------------------

    def _thd_create(self, slug: str, meta: DesignMeta, revision: Revision, creator: str, now: str,
                    attributions: Sequence[Attribution] = ()) -> Design:
        """Create a design whose head is its first revision; the creator is its maintainer.

        Raises:
            AlreadyExists: the slug is taken.
        """
        try:
            return self._create(slug, meta, revision, creator, now, attributions)
        except sa.exc.IntegrityError as exc:  # a concurrent create of the same slug won (PostgreSQL)
            raise AlreadyExists(f"design {slug!r} already exists: push to it, or fork it under a new name") from exc

    def _create(self, slug: str, meta: DesignMeta, revision: Revision, creator: str, now: str,
                attributions: Sequence[Attribution]) -> Design:
        with write(self.engine) as conn:
            if _count(conn, d.c.slug == slug):
                raise AlreadyExists(f"design {slug!r} already exists: push to it, or fork it under a new name")
            conn.execute(sa.insert(d).values(
                slug=slug, title=meta.title, description=meta.description, license=meta.license,
                head_revision_id=None, created_by=creator, created_at=now, updated_at=now,
                attributions=_attr_json(attributions), search_text=_search_text(slug, meta),
                license_ids=_id_list(meta),
            ))
            self._set_tags(conn, slug, meta.tags)
            conn.execute(sa.insert(m).values(design=slug, account=creator, position=0, added_by=creator, added_at=now))
            self._insert_revision(conn, revision, now)
            conn.execute(sa.update(d).where(d.c.slug == slug).values(head_revision_id=revision.id))
            return self._design(conn, slug)

    def _thd_advance(self, slug: str, expected_head: str, revision: Revision, meta: DesignMeta, now: str) -> Design:
        """Store a revision and move the head to it if the head is still ``expected_head``.

        Raises:
            NotFound: no such design.
            StaleHead: the head moved; nothing was stored.
            AlreadyExists: the revision is stored already (an open or declined proposal): it is not pushed twice.
        """
        with write(self.engine) as conn:
            self._cas_head(conn, slug, expected_head)
            self._insert_revision(conn, revision, now)
            self._move_head(conn, slug, revision.id, meta, now)
            return self._design(conn, slug)

    def _thd_propose(self, slug: str, base: str, revision: Revision, proposal_id: str, now: str) -> Proposal:
        """Store a revision as an open proposal against ``base``.

        Raises:
            NotFound: no such design.
            AlreadyExists: the revision is stored already (an open or declined proposal).
            FailedPrecondition: the design's participation rung is below co-create.
        """
        with write(self.engine) as conn:
            self._lock_design(conn, slug)  # two identical proposals meet in _insert_revision, in turn
            rung = conn.scalar(sa.select(schema.participation.c.rung).where(schema.participation.c.design == slug))
            if rung not in (None, "co-create"):
                raise FailedPrecondition(
                    f"design {slug} is open to {rung} only: its maintainers add its revisions, and proposals "
                    f"come once they set its participation to co-create (spime participation {slug} co-create)",
                    reason="NOT_OPEN_TO_PROPOSALS")
            self._insert_revision(conn, revision, now)
            conn.execute(sa.insert(p).values(
                id=proposal_id, design=slug, revision_id=revision.id, base_revision_id=base,
                author=revision.author, state=ProposalState.OPEN.value, created_at=now,
            ))
            return self._proposal(conn, self._proposal_row(conn, slug, proposal_id))

    def _thd_accept(self, slug: str, proposal_id: str, by: str, meta: DesignMeta, now: str) -> tuple[Proposal, Design]:
        """Make an open proposal the head (only if its base is still the head).

        Raises:
            NotFound: no such design or proposal.
            FailedPrecondition: the proposal is closed, or the head moved since it was made.
        """
        with write(self.engine) as conn:
            self._lock_design(conn, slug)  # accepts, declines and pushes of one design decide in turn
            row = self._open_proposal(conn, slug, proposal_id)
            head = conn.scalar(sa.select(d.c.head_revision_id).where(d.c.slug == slug))
            if head != row.base_revision_id:
                raise FailedPrecondition(
                    f"proposal {proposal_id} was made against {row.base_revision_id[:12]} but design {slug} "
                    f"moved to {str(head)[:12]}; the author must pull and propose again"
                )
            self._move_head(conn, slug, row.revision_id, meta, now)
            self._close(conn, proposal_id, ProposalState.ACCEPTED, by, "", now)
            return self._proposal(conn, self._proposal_row(conn, slug, proposal_id)), self._design(conn, slug)

    def _thd_decline(self, slug: str, proposal_id: str, by: str, reason: str, now: str) -> Proposal:
        """Raises: NotFound, FailedPrecondition (already closed)."""
        with write(self.engine) as conn:
            self._lock_design(conn, slug)  # see _thd_accept
            self._open_proposal(conn, slug, proposal_id)
            self._close(conn, proposal_id, ProposalState.DECLINED, by, reason, now)
            return self._proposal(conn, self._proposal_row(conn, slug, proposal_id))

    def _thd_add_maintainer(self, slug: str, account: str, by: str, now: str) -> Design:
        """Add a maintainer (nothing changes when the account is one already).

        Raises:
            NotFound: no such design.
        """
        try:
            with write(self.engine) as conn:
                self._lock_design(conn, slug)  # concurrent adds read the maintainers in turn
                current = self._maintainers(conn, slug)
                if account not in current:
                    conn.execute(sa.insert(m).values(design=slug, account=account, position=len(current),
                                                     added_by=by, added_at=now))
        except sa.exc.IntegrityError as exc:  # only if the lock were bypassed: the other add won
            raise AlreadyExists(f"{account} is already a maintainer of {slug}") from exc
        return self._thd_get_design(slug)

    def _thd_store_reports(self, revision_id: str, reports: Sequence[PrintabilityRecord]) -> None:
        with write(self.engine) as conn:
            for report in reports:
                conn.execute(sa.delete(rep).where(rep.c.revision_id == revision_id, rep.c.path == report.path))
                conn.execute(sa.insert(rep).values(
                    revision_id=revision_id, path=report.path, ok=report.ok, report=json.dumps(dict(report.report)),
                ))

    # -- helpers -----------------------------------------------------------

    def _cas_head(self, conn: sa.Connection, slug: str, expected: str) -> None:
        head = conn.scalar(sa.select(d.c.head_revision_id).where(d.c.slug == slug).with_for_update())
        if head is None and not _count(conn, d.c.slug == slug):
            raise NotFound(f"no design named {slug!r}")
        if head != expected:
            raise StaleHead(f"design {slug} moved to {head}; pull first, then push again")

    def _move_head(self, conn: sa.Connection, slug: str, revision_id: str, meta: DesignMeta, now: str) -> None:
        conn.execute(sa.update(d).where(d.c.slug == slug).values(
            head_revision_id=revision_id, title=meta.title, description=meta.description,
            license=meta.license, updated_at=now, search_text=_search_text(slug, meta),
            license_ids=_id_list(meta),
        ))
        if meta.attributions is not None:
            conn.execute(sa.update(d).where(d.c.slug == slug).values(attributions=_attr_json(meta.attributions)))
        self._set_tags(conn, slug, meta.tags)

    @staticmethod
    def _set_tags(conn: sa.Connection, slug: str, tags: Sequence[str]) -> None:
        conn.execute(sa.delete(schema.design_tags).where(schema.design_tags.c.design == slug))
        for tag in dict.fromkeys(tags):
            conn.execute(sa.insert(schema.design_tags).values(design=slug, tag=tag))

    def _insert_revision(self, conn: sa.Connection, rev: Revision, now: str) -> None:
        """Raises: AlreadyExists: a revision with this id is stored (its proposal, if any, is named)."""
        if _count(conn, r.c.id == rev.id):
            raise self._already_stored(conn, rev)
        seq = (conn.scalar(sa.select(sa.func.max(r.c.seq)).where(r.c.design == rev.design)) or 0) + 1
        conn.execute(sa.insert(r).values(
            id=rev.id, design=rev.design, seq=seq, manifest_toml=rev.manifest_toml, author=rev.author,
            created_at=rev.created_at, message=rev.message, signature=rev.signature, public_key=rev.public_key,
            kind=rev.kind.value, attributions=_attr_json(rev.attributions), stored_at=now,
        ))
        for position, parent in enumerate(rev.parent_ids):
            conn.execute(sa.insert(rp).values(revision_id=rev.id, position=position, parent_id=parent))
        for entry in rev.files:
            conn.execute(sa.insert(rf).values(revision_id=rev.id, path=entry.path, sha256=entry.sha256, size=entry.size))

    @staticmethod
    def _already_stored(conn: sa.Connection, rev: Revision) -> AlreadyExists:
        """The refusal of a revision pushed again: a head never moves to a proposal that was not accepted."""
        row = conn.execute(sa.select(p.c.id, p.c.state).where(p.c.revision_id == rev.id)
                           .order_by(p.c.created_at.desc())).first()
        if row is not None and row.state == ProposalState.OPEN.value:
            return AlreadyExists(
                f"revision {rev.id[:12]} is already open proposal {row.id} of {rev.design}: a maintainer accepts it "
                f"(`spime accept {rev.design} {row.id}`, AcceptProposal) instead of pushing it again",
                reason="REVISION_IS_OPEN_PROPOSAL")
        what = f"proposal {row.id}, {row.state}" if row is not None else "stored"
        return AlreadyExists(
            f"revision {rev.id[:12]} of {rev.design} already exists ({what}); change the message to push it anew",
            reason="REVISION_EXISTS")

    def _close(self, conn: sa.Connection, pid: str, state: ProposalState, by: str, reason: str, now: str) -> None:
        conn.execute(sa.update(p).where(p.c.id == pid).values(state=state.value, decided_by=by, reason=reason, decided_at=now))

    def _open_proposal(self, conn: sa.Connection, slug: str, pid: str) -> sa.Row:  # type: ignore[type-arg]
        row = self._proposal_row(conn, slug, pid)
        if row.state != ProposalState.OPEN.value:
            raise FailedPrecondition(f"proposal {pid} of {slug} is already {row.state}")
        return row

    @staticmethod
    def _proposal_row(conn: sa.Connection, slug: str, pid: str) -> sa.Row:  # type: ignore[type-arg]
        row = conn.execute(sa.select(p).where(p.c.id == pid, p.c.design == slug)).first()
        if row is None:
            raise NotFound(f"design {slug} has no proposal {pid!r}; list them with `spime proposals {slug}`")
        return row

    @staticmethod
    def _lock_design(conn: sa.Connection, slug: str) -> None:
        """Lock a design's row until the transaction ends (PostgreSQL; SQLite's writer is alone already).

        Raises:
            NotFound: no such design.
        """
        if conn.scalar(sa.select(d.c.slug).where(d.c.slug == slug).with_for_update()) is None:
            raise NotFound(f"no design named {slug!r}; create it with `spime push --new` or search with `spime search`")

    @staticmethod
    def _require_design(conn: sa.Connection, slug: str) -> sa.Row:  # type: ignore[type-arg]
        row = conn.execute(sa.select(d).where(d.c.slug == slug)).first()
        if row is None:
            raise NotFound(f"no design named {slug!r}; create it with `spime push --new` or search with `spime search`")
        return row

    def _resolve(self, conn: sa.Connection, slug: str, revision_id: str) -> str:
        row = self._require_design(conn, slug)
        if not revision_id:
            return str(row.head_revision_id)
        if len(revision_id) < 8 or any(c not in "0123456789abcdef" for c in revision_id):
            raise InvalidArgument(f"revision {revision_id!r}: give at least 8 lowercase hex digits")
        ids = list(conn.scalars(sa.select(r.c.id).where(r.c.design == slug, r.c.id.startswith(revision_id)).limit(2)))
        if not ids:
            raise NotFound(f"design {slug} has no revision {revision_id}")
        if len(ids) > 1:
            raise InvalidArgument(f"revision prefix {revision_id} is ambiguous in {slug}: give more digits")
        return str(ids[0])

    def _maintainers(self, conn: sa.Connection, slug: str) -> tuple[str, ...]:
        return tuple(conn.scalars(sa.select(m.c.account).where(m.c.design == slug).order_by(m.c.position)))

    def _design(self, conn: sa.Connection, slug: str) -> Design:
        found = self._designs(conn, _design_select().where(d.c.slug == slug))
        if not found:
            self._require_design(conn, slug)  # raises NotFound
        return found[0]

    @staticmethod
    def _designs(conn: sa.Connection, query: sa.Select) -> list[Design]:  # type: ignore[type-arg]
        """The designs of a _design_select() query, in its order: four queries for any number."""
        rows = list(conn.execute(query))
        if not rows:
            return []
        slugs = [row.slug for row in rows]
        dt = schema.design_tags
        tags = _grouped(conn.execute(sa.select(dt.c.design, dt.c.tag).where(dt.c.design.in_(slugs))
                                     .order_by(dt.c.design, dt.c.tag)))
        maintainers = _grouped(conn.execute(sa.select(m.c.design, m.c.account).where(m.c.design.in_(slugs))
                                            .order_by(m.c.design, m.c.position)))
        forks = [row.first_id for row in rows if row.first_kind == RevisionKind.FORK.value]
        parents = _grouped(conn.execute(sa.select(rp.c.revision_id, rp.c.parent_id).where(rp.c.revision_id.in_(forks))
                                        .order_by(rp.c.revision_id, rp.c.position))) if forks else {}
        return [Design(
            slug=row.slug, title=row.title, description=row.description, license=row.license,
            head_revision_id=row.head_revision_id or "", maintainers=maintainers.get(row.slug, ()),
            tags=tags.get(row.slug, ()), forked_from=parents.get(row.first_id, ()) if row.first_id in forks else (),
            created_at=row.created_at, updated_at=row.updated_at,
            revision_count=int(row.revisions or 0) + int(row.accepted or 0), attributions=_attr_load(row.attributions),
        ) for row in rows]

    def _revision(self, conn: sa.Connection, revision_id: str) -> Revision:
        found = self._revisions(conn, [revision_id])
        if not found:
            raise NotFound(f"no revision {revision_id}")
        return found[0]

    @staticmethod
    def _revisions(conn: sa.Connection, ids: Sequence[str]) -> list[Revision]:
        """The stored ones of these revisions, in the order given: four queries per _IDS_PER_QUERY ids."""
        out: dict[str, Revision] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            some = ids[start:start + _IDS_PER_QUERY]
            parents_of, files_of, reports_in, revisions_of = _OF_ONE if len(some) == 1 else _OF_IDS
            ask = {"ids": some[0] if len(some) == 1 else some}
            parents = _by_revision(parents_of.rows(conn, ask), lambda x: x.parent_id)
            files = _by_revision(files_of.rows(conn, ask), lambda x: FileEntry(x.path, x.sha256, int(x.size)))
            reports = _by_revision(reports_in.rows(conn, ask),
                                   lambda x: PrintabilityRecord(x.path, bool(x.ok), json.loads(x.report)))
            for row in revisions_of.rows(conn, ask):
                out[row.id] = Revision(
                    id=row.id, design=row.design, parent_ids=parents.get(row.id, ()), manifest_toml=row.manifest_toml,
                    files=files.get(row.id, ()), author=row.author, created_at=row.created_at, message=row.message,
                    kind=RevisionKind(row.kind), signature=bytes(row.signature), public_key=bytes(row.public_key),
                    reports=reports.get(row.id, ()), attributions=_attr_load(row.attributions),
                )
        return [out[i] for i in ids if i in out]

    def _proposal(self, conn: sa.Connection, row: sa.Row) -> Proposal:  # type: ignore[type-arg]
        return Proposal(
            id=row.id, design=row.design, revision=self._revision(conn, row.revision_id), author=row.author,
            state=ProposalState(row.state), base_revision_id=row.base_revision_id, decided_by=row.decided_by,
            reason=row.reason, created_at=row.created_at, decided_at=row.decided_at,
        )


_REPORTS = sa.select(rep).where(rep.c.revision_id == sa.bindparam("revision_id")).order_by(rep.c.path)


def _revision_reads(match: Callable[[sa.ColumnElement[str]], sa.ColumnElement[bool]]) -> tuple[Prepared, ...]:
    """A revision's parents, files, reports and row, for the revisions ``match`` takes."""
    return tuple(Prepared(statement) for statement in (
        sa.select(rp.c.revision_id, rp.c.parent_id).where(match(rp.c.revision_id)).order_by(rp.c.revision_id, rp.c.position),
        sa.select(rf).where(match(rf.c.revision_id)).order_by(rf.c.revision_id, rf.c.path),
        sa.select(rep).where(match(rep.c.revision_id)).order_by(rep.c.revision_id, rep.c.path),
        sa.select(r).where(match(r.c.id))))


# revisions in full, read by _revisions: any number of ids (an IN list bound at execution), or one (every
# order of a design not cached yet reads one): prebuilt, as building a statement costs more than running
# it on SQLite, and run on the driver (hub/store/driver.py)
_OF_IDS = _revision_reads(lambda c: c.in_(sa.bindparam("ids", expanding=True)))
_OF_ONE = _revision_reads(lambda c: c == sa.bindparam("ids"))


def _by_revision(rows: Iterable[Any], item: Any) -> dict[str, tuple[Any, ...]]:
    """item(row) of each row, grouped by the row's revision_id, in the rows' order."""
    grouped: dict[str, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row.revision_id, []).append(item(row))
    return {k: tuple(v) for k, v in grouped.items()}


def reports_of(conn: sa.Connection, revision_id: str) -> tuple[PrintabilityRecord, ...]:
    """A revision's printability reports, by path, in the caller's transaction (orders read them too)."""
    return tuple(PrintabilityRecord(x.path, bool(x.ok), json.loads(x.report))
                 for x in conn.execute(_REPORTS, {"revision_id": revision_id}))


def _search_text(slug: str, meta: DesignMeta) -> str:
    return " ".join([slug, meta.title, meta.description, *meta.tags]).lower()


def _id_list(meta: DesignMeta) -> str:
    return f" {' '.join(meta.license_ids)} " if meta.license_ids else ""
