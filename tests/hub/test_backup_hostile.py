"""``spime-hub restore`` of a malformed or hostile archive: a clear InvalidArgument naming the
member (and line), never a traceback, and nothing read through a link."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.backup import MANIFEST, backup, restore
from hub.errors import InvalidArgument
from tests.fixtures.postgres import create_database
from tests.hub.harness import start_in_process

ACCOUNTS = "database/001-accounts.jsonl"


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, bytes]]]:
    root = tmp_path_factory.mktemp("good")
    hub = start_in_process(root / "data")
    try:
        hub.push("alice", "bracket", {"bracket.stl": b"solid x\nendsolid x\n"}, create=True)
        backup(hub.data_dir, hub.composed.config.database_url, root / "hub.tar")
    finally:
        hub.stop()
    with tarfile.open(root / "hub.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    yield root / "hub.tar", members


def _build(path: Path, members: dict[str, bytes], replace: dict[str, bytes] | None = None,
           drop: tuple[str, ...] = (), extra: tuple[tarfile.TarInfo, ...] = ()) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as out:
        for name, data in members.items():
            if name in drop:
                continue
            data = (replace or {}).get(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        for info in extra:
            out.addfile(info)
    return path


def _manifest(members: dict[str, bytes], **change: Any) -> bytes:
    return json.dumps({**json.loads(members[MANIFEST]), **change}).encode()


def _refused(path: Path, tmp_path: Path, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        restore(path, tmp_path / "restored", "")


@pytest.mark.parametrize(("label", "content", "words"), [
    ("not json", b"{not json", "not JSON"),
    ("bad utf8", b"\xff\xfe", "not JSON"),
    ("deep", b"[" * 100000 + b"]" * 100000, "not JSON"),
    ("a list", b"[1, 2]", "not a JSON object"),
])
def test_a_manifest_that_is_not_a_json_object(good: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                              label: str, content: bytes, words: str) -> None:
    _refused(_build(tmp_path / "b.tar", good[1], {MANIFEST: content}), tmp_path, words)


@pytest.mark.parametrize(("change", "words"), [
    ({"blobs": None}, "no blob list"),
    ({"blobs": [["a"]]}, "blob entry 1"),
    ({"blobs": [["a" * 64, "x"]]}, "blob entry 1"),
    ({"blobs": [["a" * 64, -1]]}, "blob entry 1"),
    ({"blobs": [["a" * 64, True]]}, "blob entry 1"),
    ({"blobs": [["../../../etc/passwd", 1]]}, "not a SHA-256"),
    ({"schema_revision": ["0011"]}, "schema_revision"),
    ({"schema_revision": "../x"}, "schema_revision"),
])
def test_a_manifest_of_the_wrong_shape(good: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                       change: dict[str, Any], words: str) -> None:
    _refused(_build(tmp_path / "b.tar", good[1], {MANIFEST: _manifest(good[1], **change)}),
             tmp_path, words)


def test_a_manifest_without_keys(good: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    _refused(_build(tmp_path / "b.tar", good[1], {MANIFEST: b'{"format": 1}'}), tmp_path,
             "schema_revision")


@pytest.mark.parametrize(("content", "words"), [
    (b"[1, 2]\n", "line 1 .*JSON object"),
    (b'{"name": {"$base64": "!!!"}}\n', "line 1 .*base64"),
    (b'{"name": {"$base64": 7}}\n', "line 1 .*base64"),
    (b'{"name": {"$decimal": "abc"}}\n', "line 1 .*decimal"),
    (b'{"name": {"$decimal": []}}\n', "line 1 .*decimal"),
    (b"\xff\xfe\n", "line 1 .*utf-8"),
    (b"[" * 100000 + b"]" * 100000 + b"\n", "line 1 .*too deep"),
    (b"{not json\n", "line 1 "),
    (b'{"name": 9223372036854775808}\n', "line 1 .*'name' holds an integer beyond 64 bits"),
    (b'{"name": -9223372036854775809}\n', "line 1 .*beyond 64 bits"),
    (b'{"name": "\\ud800x"}\n', "line 1 .*'name' holds a lone surrogate"),
    (b'{"name": [1]}\n', "line 1 .*JSON array"),
])
def test_a_table_row_that_is_not_one(good: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                     content: bytes, words: str) -> None:
    rows = good[1][ACCOUNTS] + content  # the good rows first: the line number counts
    line = good[1][ACCOUNTS].count(b"\n") + 1
    _refused(_build(tmp_path / "b.tar", good[1], {ACCOUNTS: rows}), tmp_path,
             f"{ACCOUNTS} " + words.replace("line 1", f"line {line}"))


def _link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE])
def test_members_that_are_not_regular_files(good: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                            kind: bytes) -> None:
    blob = next(n for n in good[1] if n.startswith("blobs/"))
    for name in (blob, MANIFEST):
        target = "/etc/passwd" if kind == tarfile.SYMTYPE else "nonexistent"
        path = _build(tmp_path / "b.tar", good[1], drop=(name,), extra=(_link(name, kind, target),))
        _refused(path, tmp_path, f"{name} in the backup is not a regular file")


def _tampered(members: dict[str, bytes], table: str, column: str, value: Any) -> tuple[str, dict[str, bytes]]:
    """The archive with ``column`` of the first row of ``table`` set to ``value`` (JSON as written)."""
    name = next(n for n in members if n.startswith("database/") and n.endswith(f"-{table}.jsonl"))
    first, _, rest = members[name].partition(b"\n")
    row = {**json.loads(first), column: value}
    return name, {name: json.dumps(row).encode() + b"\n" + rest}  # ensure_ascii: a lone surrogate as \\udXXX


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize(("table", "column", "value", "words"), [
    ("blobs", "size", 1 << 64, "an integer beyond 64 bits"),
    ("revision_files", "size", -(1 << 70), "an integer beyond 64 bits"),
    ("accounts", "name", "alice\ud800", "a lone surrogate"),
    ("designs", "slug", "\udfff", "a lone surrogate"),
])
def test_a_value_no_database_takes_is_a_damaged_archive(good: tuple[Path, dict[str, bytes]], tmp_path: Path,
                                                         request: pytest.FixtureRequest, backend: str,
                                                         table: str, column: str, value: Any, words: str) -> None:
    url = "" if backend == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    name, change = _tampered(good[1], table, column, value)
    with pytest.raises(InvalidArgument, match=f"{name} line 1 of the backup is not a valid row: '{column}' holds {words}"):
        restore(_build(tmp_path / "b.tar", good[1], change), tmp_path / "restored", url)
    # nothing half-restored: the good archive goes into the same data directory and database
    summary = restore(good[0], tmp_path / "restored", url)
    assert summary.rows == json.loads(good[1][MANIFEST])["rows"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("value", [1 << 64, "x\ud800"], ids=["wide", "surrogate"])
def test_the_import_itself_refuses_what_no_column_holds(tmp_path: Path, request: pytest.FixtureRequest,
                                                        backend: str, value: Any) -> None:
    from hub.store.dump import _thd_import, _thd_migrate_to, _thd_revision
    from hub.store.engine import make_engine, sqlite_url

    url = sqlite_url(tmp_path) if backend == "sqlite" else create_database(request.getfixturevalue("postgres_server"))
    engine = make_engine(url)
    try:
        _thd_migrate_to(engine, "head")
        row = {"sha256": "a" * 64, "size": value} if isinstance(value, int) else {"name": value}
        table = "blobs" if isinstance(value, int) else "accounts"
        with pytest.raises(InvalidArgument, match=f"the backup's {table} rows hold a value the database "
                                                  "cannot store .*: the archive is damaged"):
            _thd_import(engine, _thd_revision(engine), [(table, [row])])
    finally:
        engine.dispose()
