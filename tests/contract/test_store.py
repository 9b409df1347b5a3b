"""The store contract: one suite, run on SQLite (WAL) and on the real PostgreSQL every run.

``StoreContract`` holds the cases (``__test__ = False``, Dagster's TestRunStorage
style); ``TestSqliteStore`` and ``TestPostgresStore`` name the backends.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.domain import (
    Attribution,
    FileEntry,
    PrintabilityRecord,
    ProposalState,
    Revision,
    RevisionKind,
    Role,
)
from hub.errors import (
    AlreadyExists,
    FailedPrecondition,
    IntegrityError,
    NotFound,
    ResourceExhausted,
    StaleHead,
)
from hub.provenance import sha256_hex
from hub.store import Store, open_store
from tests.fixtures.postgres import PostgresServer, create_database
from tests.hub.fake_agent import wait_for

NOW = "2026-01-01T00:00:00Z"
DATA = b"mesh bytes " * 100
SHA = sha256_hex(DATA)
META_TAGS = ("cube", "test")


def _rev(rid: str, design: str = "cube", parents: tuple[str, ...] = (), kind: RevisionKind = RevisionKind.PUSH,
         author: str = "alice") -> Revision:
    return Revision(
        id=rid * 64 if len(rid) == 1 else rid, design=design, parent_ids=parents, manifest_toml="name = 'x'",
        files=(FileEntry("cube.stl", SHA, len(DATA)),), author=author, created_at=NOW, message="m", kind=kind,
        attributions=(Attribution("up", "f" * 64, "Up", "CC-BY-4.0", "Lic", ("c",), "credit"),),
    )


def _meta(title: str = "Cube"):  # type: ignore[no-untyped-def]
    from hub.store.designs import DesignMeta

    return DesignMeta(title, "a cube", "CC-BY-4.0", META_TAGS, ("CC-BY-4.0",))


class StoreContract:
    __test__ = False

    @pytest.fixture()
    def database_url(self, tmp_path: Path) -> str:
        raise NotImplementedError

    @pytest.fixture()
    def store(self, tmp_path: Path, database_url: str) -> Iterator[Store]:
        store = open_store(tmp_path / "data", database_url, max_blob_bytes=4096)
        store.accounts._thd_add("alice", Role.DESIGNER, "tok-alice", NOW)
        store.accounts._thd_add("bob", Role.DESIGNER, "tok-bob", NOW)
        try:
            yield store
        finally:
            store.close()

    def _blob(self, store: Store) -> None:
        upload = store.blobs._thd_begin(SHA, len(DATA))
        upload.write(DATA)
        store.blobs._thd_commit(upload, NOW)

    def _design(self, store: Store) -> Revision:
        self._blob(store)
        first = _rev("a")
        store.designs._thd_create("cube", _meta(), first, "alice", NOW)
        return first

    def test_migrations_match_the_schema(self, store: Store) -> None:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        from hub.store.schema import metadata

        with store.accounts.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], "schema.py and the Alembic migrations differ: add a migration"

    # -- accounts ---------------------------------------------------------------------

    def test_tokens_are_stored_hashed(self, store: Store) -> None:
        assert store.accounts._thd_by_token("tok-alice").name == "alice"
        assert store.accounts._thd_by_token("nope") is None
        with store.accounts.engine.connect() as conn:
            stored = list(conn.execute(sa.text("SELECT token_sha256 FROM tokens")).scalars())
        assert "tok-alice" not in stored and len(stored) == 2
        with pytest.raises(AlreadyExists):
            store.accounts._thd_add("alice", Role.ADMIN, "other", NOW)

    # -- blobs ------------------------------------------------------------------------

    def test_blob_round_trip_and_missing(self, store: Store) -> None:
        assert store.blobs._thd_missing([SHA, SHA]) == [SHA]
        self._blob(store)
        assert store.blobs._thd_missing([SHA]) == []
        assert store.blobs._thd_read(SHA, 0, 10_000) == DATA and store.blobs._thd_size(SHA) == len(DATA)
        assert store.blobs._thd_sha256_of(SHA) == SHA

    def test_blob_mismatch_and_limit_leave_nothing(self, store: Store) -> None:
        upload = store.blobs._thd_begin(SHA, len(DATA))
        upload.write(DATA[:-1] + b"!")
        with pytest.raises(IntegrityError):
            store.blobs._thd_commit(upload, NOW)
        with pytest.raises(ResourceExhausted):
            store.blobs._thd_begin(SHA, 5000)
        upload = store.blobs._thd_begin(SHA, 4000)
        with pytest.raises(ResourceExhausted):
            upload.write(b"x" * 4097)
        upload.abort()
        assert store.blobs.temp_files() == [] and store.blobs._thd_missing([SHA]) == [SHA]
        with pytest.raises(NotFound):
            store.blobs._thd_size(SHA)

    def test_stale_upload_files_are_removed_at_start(self, store: Store, tmp_path: Path) -> None:
        import os

        from hub.store.blobs import BlobStore

        stale, fresh = store.blobs.tmp_dir / "up-stale", store.blobs.tmp_dir / "up-fresh"
        stale.write_bytes(b"half")
        fresh.write_bytes(b"live")
        os.utime(stale, (0, 0))
        BlobStore(store.blobs.root, store.blobs.engine, 4096)
        assert store.blobs.temp_files() == [fresh]

    # -- designs ----------------------------------------------------------------------

    def test_create_get_and_log(self, store: Store) -> None:
        first = self._design(store)
        design = store.designs._thd_get_design("cube")
        assert (design.head_revision_id, design.maintainers, design.tags) == (first.id, ("alice",), META_TAGS)
        second = _rev("b", parents=(first.id,))
        store.designs._thd_advance("cube", first.id, second, _meta("Cube 2"), NOW)
        assert [r.id for r in store.designs._thd_log("cube")] == [second.id, first.id]
        assert store.designs._thd_get_revision("cube", "bbbbbbbb") == second
        assert store.designs._thd_get_design("cube").title == "Cube 2"
        with pytest.raises(AlreadyExists):
            store.designs._thd_create("cube", _meta(), _rev("c"), "alice", NOW)
        with pytest.raises(NotFound):
            store.designs._thd_get_design("missing")

    def test_head_moves_only_from_the_expected_head(self, store: Store) -> None:
        first = self._design(store)
        store.designs._thd_advance("cube", first.id, _rev("b", parents=(first.id,)), _meta(), NOW)
        with pytest.raises(StaleHead, match="pull first"):
            store.designs._thd_advance("cube", first.id, _rev("c", parents=(first.id,)), _meta(), NOW)
        assert store.designs._thd_revision_by_id("c" * 64) is None

    def test_racing_pushes_have_exactly_one_winner(self, store: Store) -> None:
        first = self._design(store)
        outcomes: list[str] = []

        def push(letter: str) -> None:
            try:
                store.designs._thd_advance("cube", first.id, _rev(letter, parents=(first.id,)), _meta(), NOW)
                outcomes.append("won")
            except StaleHead:
                outcomes.append("stale")

        threads = [threading.Thread(target=push, args=(letter,)) for letter in "bcdef"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(outcomes) == ["stale"] * 4 + ["won"]
        assert store.designs._thd_get_design("cube").revision_count == 2

    def test_proposals(self, store: Store) -> None:
        first = self._design(store)
        proposal = store.designs._thd_propose("cube", first.id, _rev("b", parents=(first.id,), kind=RevisionKind.PROPOSAL, author="bob"), "p-1", NOW)
        assert proposal.state is ProposalState.OPEN and proposal.author == "bob"
        assert [p.id for p in store.designs._thd_list_proposals("cube", False)] == ["p-1"]
        accepted, design = store.designs._thd_accept("cube", "p-1", "alice", _meta(), NOW)
        assert accepted.state is ProposalState.ACCEPTED and design.head_revision_id == "b" * 64
        with pytest.raises(FailedPrecondition, match="already accepted"):
            store.designs._thd_decline("cube", "p-1", "alice", "late", NOW)
        store.designs._thd_propose("cube", first.id, _rev("c", parents=(first.id,), kind=RevisionKind.PROPOSAL, author="bob"), "p-2", NOW)
        with pytest.raises(FailedPrecondition, match="moved"):
            store.designs._thd_accept("cube", "p-2", "alice", _meta(), NOW)
        assert store.designs._thd_list_proposals("cube", False)[0].id == "p-2"
        assert len(store.designs._thd_list_proposals("cube", True)) == 2

    def test_maintainers_search_and_reports(self, store: Store) -> None:
        first = self._design(store)
        store.designs._thd_add_maintainer("cube", "bob", "alice", NOW)
        store.designs._thd_add_maintainer("cube", "bob", "alice", NOW)
        assert store.designs._thd_maintainers("cube") == ("alice", "bob")
        assert [d.slug for d in store.designs._thd_search("CUBE", "CC-BY-4.0", ["test"], "", 10)] == ["cube"]
        assert store.designs._thd_search("", "CC-BY", [], "", 10) == []
        assert store.designs._thd_search("cube", "MIT", [], "", 10) == []
        assert store.designs._thd_search("100%_", "", [], "", 10) == []
        report = PrintabilityRecord("cube.stl", True, {"ok": True, "faces": 12})
        store.designs._thd_store_reports(first.id, [report])
        assert store.designs._thd_get_revision("cube").reports == (report,)

    def test_forks_and_attributions(self, store: Store) -> None:
        first = self._design(store)
        fork = _rev("d", design="cube-fork", parents=(first.id,), kind=RevisionKind.FORK)
        design = store.designs._thd_create("cube-fork", _meta(), fork, "bob", NOW, fork.attributions)
        assert design.forked_from == (first.id,) and design.attributions == fork.attributions
        assert store.designs._thd_forks_of([first.id]) == [("cube-fork", fork.id, first.id)]
        assert store.designs._thd_get_revision("cube-fork").attributions == fork.attributions


class TestSqliteStore(StoreContract):
    __test__ = True

    @pytest.fixture()
    def database_url(self, tmp_path: Path) -> str:
        return ""

    def test_sqlite_runs_in_wal_mode(self, store: Store) -> None:
        with store.accounts.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0  # no commit checkpoints

    def test_sqlite_writes_reach_the_database_file_while_the_hub_runs(self, store: Store) -> None:
        """Commits leave the WAL to a background checkpoint: committed rows reach the database file
        itself (read here ignoring the WAL) without any connection closing."""
        for i in range(200):
            store.accounts._thd_add(f"maker-{i:03d}", Role.DESIGNER, f"tok-maker-{i:03d}", NOW)
        database = store.accounts.engine.url.database
        assert database

        def in_file() -> int:
            file_only = sqlite3.connect(f"file:{database}?mode=ro&immutable=1", uri=True)
            try:
                return int(file_only.execute("SELECT count(*) FROM accounts WHERE name LIKE 'maker-%'").fetchone()[0])
            except sqlite3.DatabaseError:  # the file may still lack the table: wait for the checkpoint
                return 0
            finally:
                file_only.close()

        wait_for(lambda: in_file() == 200, timeout=60)  # a bounded wait for the checkpoint thread, not a speed check


class TestPostgresStore(StoreContract):
    __test__ = True

    @pytest.fixture()
    def database_url(self, postgres_server: PostgresServer) -> str:
        return create_database(postgres_server)
