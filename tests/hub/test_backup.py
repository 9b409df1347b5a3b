"""`spime-hub backup` / `restore` round trips on SQLite and PostgreSQL, taken while the hub serves.

Every comparison covers every table of the schema (designs, revisions, files,
proposals, accounts, and the community record's tables as they fill) and every
blob file, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from spimeforge.v1 import designs_pb2

from hub.backup import MANIFEST, backup, restore
from hub.errors import FailedPrecondition, IntegrityError, InvalidArgument
from hub.store import schema
from hub.store.engine import make_engine, sqlite_url
from hub.store.hub_key import HUB_KEY_NAME, read_hub_key
from tests.fixtures.hub_server import ROOT, hub_env
from tests.fixtures.postgres import PostgresServer, create_database
from tests.hub.harness import InProcessHub, manifest_toml, start_in_process

MESH = b"solid cube\n" + b"facet normal 0 0 1\nendfacet\n" * 40 + b"endsolid cube\n"


def _new_url(hub_url: str, request: pytest.FixtureRequest) -> str:
    """A new empty database of the same backend as ``hub_url``."""
    return create_database(request.getfixturevalue("postgres_server")) if hub_url else ""


def _url(api: InProcessHub) -> str:
    return api.composed.config.database_url


def _fill(api: InProcessHub) -> None:
    """Designs with several revisions, binary and text blobs, a fork, a proposal, tags."""
    first = api.push("alice", "bracket", {"bracket.stl": MESH, "README.md": b"# bracket\n"}, create=True)
    api.push("alice", "bracket", {"bracket.stl": MESH + b"\n", "README.md": b"# bracket v2\n"},
             parents=(first.revision_id,), manifest=manifest_toml("bracket", files=("bracket.stl", "README.md"),
                                                                 version="1.1.0"))
    api.push("bob", "hook", {"hook.stl": bytes(range(256)) * 64}, create=True,
             manifest=manifest_toml("hook", files=("hook.stl",), license="CC-BY-SA-4.0", tags=("wall", "hook")))
    api.designs.Fork(designs_pb2.ForkRequest(parents=[designs_pb2.ForkParent(design="bracket")], name="my-bracket",
                                                 license="CC-BY-4.0"),
                     metadata=api.md("bob"), timeout=60)
    head = api.designs.GetDesign(designs_pb2.GetDesignRequest(design="bracket"), metadata=api.md("bob"))
    api.push("bob", "bracket", {"bracket.stl": MESH * 2, "README.md": b"# proposal\n"},
             parents=(head.head_revision_id,))


_CHOICES = re.compile(r"(\w+) IN \('([^']*)'")


def _value(column: sa.Column[Any], choices: dict[str, str]) -> Any:
    kind = column.type
    if column.name in choices:
        return choices[column.name]
    if isinstance(kind, sa.Boolean):
        return True
    if isinstance(kind, sa.Integer):
        return 1
    if isinstance(kind, (sa.Float, sa.Numeric)):
        return 1.5
    if isinstance(kind, sa.LargeBinary):
        return b"\x00\xffraw bytes"
    default = getattr(column.server_default, "arg", None)
    if isinstance(default, str) and default[:1] in "[{":  # JSON documents: keep them parseable
        return default
    if isinstance(kind, sa.Text) and not isinstance(default, str):  # free text or a JSON report
        return "{}"
    if column.name.endswith("_at") or column.name in ("last_seen", "until", "expires"):
        return "2026-12-01T04:00:00Z"
    length = getattr(kind, "length", None) or 40
    return "v-" + column.name[: max(length - 2, 1)]


def _fill_every_table(engine: sa.Engine) -> set[str]:
    """One synthetic row in every table the flows left empty (orders, jobs, fabrications, ratings,
    ledger, ...), so the round trip carries each table and column type; returns the filled tables.
    Autoincrement ids are left to the database, so PostgreSQL's sequences come into play."""
    filled = set()
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar():
                continue
            choices = {m.group(1): m.group(2) for c in table.constraints if isinstance(c, sa.CheckConstraint)
                       for m in [_CHOICES.search(str(c.sqltext))] if m}
            row = {c.name: _value(c, choices) for c in table.columns
                   if not (c.primary_key and c.autoincrement is True)}
            for fk in table.foreign_key_constraints:
                ref = conn.execute(sa.select(*[e.column for e in fk.elements]).limit(1)).first()
                if ref is None:
                    break
                row.update({e.parent.name: v for e, v in zip(fk.elements, ref, strict=True)})
            else:
                try:
                    with conn.begin_nested() if conn.in_transaction() else conn.begin():
                        conn.execute(table.insert().values(row))
                    filled.add(table.name)
                except sa.exc.DBAPIError:
                    continue
        conn.commit()
    return filled


def _contents(engine: sa.Engine, data_dir: Path) -> dict[str, Any]:
    """Every row of every table (sorted) and every blob file's bytes."""
    found: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            found[table.name] = sorted(tuple(str(v) for v in row) for row in conn.execute(sa.select(table)))
    root = data_dir / "blobs"
    found["blob_files"] = {str(p.relative_to(root)): p.read_bytes()
                           for p in sorted(root.rglob("*")) if p.is_file() and p.parent.name != "tmp"}
    return found


def _restored(data_dir: Path, url: str) -> dict[str, Any]:
    engine = make_engine(url or sqlite_url(data_dir))
    try:
        return _contents(engine, data_dir)
    finally:
        engine.dispose()


def test_round_trip_while_serving_restores_every_row_and_blob(
        any_api: InProcessHub, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _fill(any_api)
    filled = _fill_every_table(any_api.engine)
    assert {"orders", "jobs", "fabrications", "ratings", "ledger_entries"} <= filled, filled
    before = _contents(any_api.engine, any_api.data_dir)
    assert before["revisions"] and before["proposals"] and len(before["blob_files"]) >= 5

    summary = backup(any_api.data_dir, _url(any_api), tmp_path / "hub.tar")
    assert summary.blobs == len(before["blob_files"])
    assert summary.rows["revisions"] == len(before["revisions"])
    target_url = _new_url(_url(any_api), request)
    restored = restore(tmp_path / "hub.tar", tmp_path / "restored", target_url)

    assert restored.rows == summary.rows
    assert _restored(tmp_path / "restored", target_url) == before
    engine = make_engine(target_url or sqlite_url(tmp_path / "restored"))
    try:  # ids the database hands out go on after the restored ones
        with engine.begin() as conn:
            row = conn.execute(sa.select(schema.ratings).limit(1)).mappings().one()
            new_id = conn.execute(schema.ratings.insert().values(
                {**{k: v for k, v in row.items() if k != "id"}, "role": "again"}).returning(schema.ratings.c.id)).scalar()
        assert new_id == row["id"] + 1
    finally:
        engine.dispose()

    assert (tmp_path / "hub.tar").stat().st_mode & 0o777 == 0o600  # it holds the hub's key
    hub_key = read_hub_key(any_api.data_dir)
    assert hub_key is not None and read_hub_key(tmp_path / "restored") == hub_key  # the same identity
    again = start_in_process(tmp_path / "restored", target_url, users={})
    try:
        again.tokens = dict(any_api.tokens)  # the accounts (token hashes) came back too
        log = again.designs.Log(designs_pb2.LogRequest(design="bracket"), metadata=again.md("carol"))
        old = any_api.designs.Log(designs_pb2.LogRequest(design="bracket"), metadata=any_api.md("carol"))
        assert log == old
    finally:
        again.stop()


def test_backup_during_pushes_is_one_consistent_snapshot(
        any_api: InProcessHub, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _fill(any_api)
    stop = threading.Event()
    pushed: list[str] = []

    def pushing() -> None:
        for n in range(200):
            if stop.is_set():
                return
            data = b"solid p\n" + str(n).encode() * 1000 + b"\nendsolid p\n"
            pushed.append(any_api.push("alice", f"busy-{n}", {"p.stl": data}, create=True).revision_id)

    writer = threading.Thread(target=pushing)
    writer.start()
    try:
        for _ in range(3):  # a few backups while the writer keeps going
            summary = backup(any_api.data_dir, _url(any_api), tmp_path / "hub.tar")
    finally:
        stop.set()
        writer.join()
    target_url = _new_url(_url(any_api), request)
    restore(tmp_path / "hub.tar", tmp_path / "restored", target_url)
    after = _contents(any_api.engine, any_api.data_dir)
    restored = _restored(tmp_path / "restored", target_url)
    for table, rows in restored.items():
        # hub_replicas: the running hub renews its lease row every few seconds, so the row backed up
        # may differ from today's by its times; blob_files are checked below
        if table not in ("blob_files", "hub_replicas"):
            assert set(rows) <= set(after[table]), table
    assert len(restored["revisions"]) == summary.rows["revisions"]
    # every file of every restored revision has its blob, intact
    for _rev, _path, sha, size in (r for r in restored["revision_files"]):
        blob = restored["blob_files"][f"{sha[:2]}/{sha[2:]}"]
        assert (hashlib.sha256(blob).hexdigest(), len(blob)) == (sha, int(size))


def test_sqlite_backup_restores_into_postgresql(
        api: InProcessHub, tmp_path: Path, postgres_server: PostgresServer) -> None:
    _fill(api)
    before = _contents(api.engine, api.data_dir)
    backup(api.data_dir, "", tmp_path / "hub.tar")
    url = create_database(postgres_server)
    restore(tmp_path / "hub.tar", tmp_path / "pg", url)
    after = _restored(tmp_path / "pg", url)
    # Booleans print as True/False on both; everything else is text or numbers.
    assert after == before


def test_restore_refuses_a_database_that_is_not_empty(any_api: InProcessHub, tmp_path: Path) -> None:
    _fill(any_api)
    backup(any_api.data_dir, _url(any_api), tmp_path / "hub.tar")
    snapshot = any_api.snapshot()
    with pytest.raises(FailedPrecondition, match="needs an empty database"):
        restore(tmp_path / "hub.tar", any_api.data_dir, _url(any_api))
    assert any_api.snapshot() == snapshot


def test_restore_refuses_a_data_directory_with_another_hub_key(
        any_api: InProcessHub, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _fill(any_api)
    backup(any_api.data_dir, _url(any_api), tmp_path / "hub.tar")
    other = tmp_path / "other"
    other.mkdir()
    (other / HUB_KEY_NAME).write_text("ab" * 32 + "\n")
    (other / HUB_KEY_NAME).chmod(0o600)
    target_url = _new_url(_url(any_api), request)
    with pytest.raises(FailedPrecondition, match="holds another hub key"):
        restore(tmp_path / "hub.tar", other, target_url)
    assert read_hub_key(other) == bytes.fromhex("ab" * 32)
    assert not (other / "blobs").exists()  # refused before anything was written
    engine = make_engine(target_url or sqlite_url(other))
    try:
        assert not sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _rewrite(archive: Path, out: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            data = change.get(member.name, src.extractfile(member).read())  # type: ignore[union-attr]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))


def test_restore_refuses_damaged_and_foreign_archives(
        any_api: InProcessHub, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _fill(any_api)
    backup(any_api.data_dir, _url(any_api), tmp_path / "hub.tar")
    with tarfile.open(tmp_path / "hub.tar") as tar:
        blob = next(m.name for m in tar.getmembers() if m.name.startswith("blobs/"))
    _rewrite(tmp_path / "hub.tar", tmp_path / "damaged.tar", {blob: b"not the bytes"})
    with pytest.raises(IntegrityError, match="does not match its SHA-256"):
        restore(tmp_path / "damaged.tar", tmp_path / "r1", _new_url(_url(any_api), request))

    with tarfile.open(tmp_path / "hub.tar") as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
    manifest["format"] = 99
    _rewrite(tmp_path / "hub.tar", tmp_path / "future.tar", {MANIFEST: json.dumps(manifest).encode()})
    with pytest.raises(InvalidArgument, match="backup format 99"):
        restore(tmp_path / "future.tar", tmp_path / "r2", _new_url(_url(any_api), request))

    (tmp_path / "junk.tar").write_bytes(b"\0" * 10)
    with pytest.raises(InvalidArgument, match="cannot read the backup"):
        restore(tmp_path / "junk.tar", tmp_path / "r3", _new_url(_url(any_api), request))


def test_backup_and_restore_commands(any_api: InProcessHub, tmp_path: Path) -> None:
    api = any_api
    _fill(api)

    def hub(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub", *argv], cwd=ROOT, env=hub_env(),
                              capture_output=True, text=True, timeout=120, check=False)

    database = ("--database", _url(api)) if _url(api) else ()
    done = hub("backup", "--data", str(api.data_dir), *database, str(tmp_path / "hub.tar"), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"]["revisions"] == 5
    assert summary["blobs"] == len(_contents(api.engine, api.data_dir)["blob_files"])
    assert "wrote" in done.stderr and str(tmp_path / "hub.tar") in done.stderr
    refused = hub("restore", str(tmp_path / "hub.tar"), "--data", str(api.data_dir), *database)
    assert refused.returncode == 1
    assert "needs an empty database" in refused.stderr and "Traceback" not in refused.stderr


def test_backup_refuses_a_place_without_a_hub(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with pytest.raises(FailedPrecondition, match="holds no hub database"):
        backup(tmp_path, "", tmp_path / "x.tar")
    assert not (tmp_path / "hub.sqlite3").exists()
    empty = create_database(request.getfixturevalue("postgres_server"))
    with pytest.raises(FailedPrecondition, match="holds no Spimeforge schema"):
        backup(tmp_path, empty, tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists() and not (tmp_path / "x.tar.partial").exists()


def test_backup_never_replaces_what_is_not_a_regular_file(any_api: InProcessHub, tmp_path: Path) -> None:
    """`spime-hub backup /dev/null` as root once swapped the device for a tar file: a pipe stands in here."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for target in (pipe, tmp_path):
        with pytest.raises(InvalidArgument, match="not a regular file"):
            backup(any_api.data_dir, _url(any_api), target)
    assert stat.S_ISFIFO(pipe.stat().st_mode) and not (tmp_path / "pipe.partial").exists()
