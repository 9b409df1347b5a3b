"""`spime-hub backup` and `spime-hub restore`: the database and its blobs in one tar file.

Archive layout (uncompressed tar; blobs are mostly meshes that compress little):

* ``database/NNN-TABLE.jsonl``: one JSON object per row, tables in dependency order;
  bytes as ``{"$base64": …}``, decimals as ``{"$decimal": "…"}``.
* ``blobs/ab/cdef…``: every stored blob, at the same path as in the data directory.
* ``hub/hub_ed25519.key``: the hub's own signing key when the data directory has one (the key
  verifiers pin; a restore without it would give the hub a new identity). The archive is
  therefore as secret as the data directory: it is written mode 0600.
* ``spimeforge-backup.json``: format, schema revision, backend, rows per table and
  the blob list (sha256, size), written last.

Consistency while the hub runs: the rows come from one database snapshot
(:mod:`hub.store.dump`). Blobs are immutable and content-addressed, and a row
names a blob only after the file is in place, so every blob of the snapshot can
be copied afterwards; each is hashed while copied and must match its name.
"""

from __future__ import annotations

import base64
import contextlib
import decimal
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hub.errors import FailedPrecondition, IntegrityError, InvalidArgument, NotFound
from hub.localfiles import not_replaceable
from hub.store.blob_backend import open_blob_store_for_copy
from hub.store.blobs import check_sha256
from hub.store.dump import Export, Row, _thd_export, _thd_import, _thd_migrate_to, _thd_revision
from hub.store.engine import make_engine, sqlite_url
from hub.store.hub_key import HUB_KEY_NAME, install_hub_key, read_hub_key

__all__ = ["FORMAT", "MANIFEST", "BackupSummary", "backup", "require_hub", "restore"]

FORMAT = 1
MANIFEST = "spimeforge-backup.json"
HUB_KEY_MEMBER = f"hub/{HUB_KEY_NAME}"
_COPY_CHUNK = 1 << 20
# Ceilings for what restore reads into memory: the manifest lists every blob (~80 bytes each),
# and one row holds at most a few large text fields (a manifest, a message).
_MAX_MANIFEST_BYTES = 256 << 20
_MAX_ROW_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """What an archive holds (after a backup) or what was restored from one."""

    path: Path
    revision: str
    rows: dict[str, int]
    blobs: int
    blob_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"path": str(self.path), "schema_revision": self.revision, "rows": self.rows,
                "blobs": self.blobs, "blob_bytes": self.blob_bytes}


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, memoryview)):
        return {"$base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    return value


def _decode(value: Any) -> Any:
    """A row value as written by :func:`_encode`.

    Raises:
        ValueError: a ``$base64`` or ``$decimal`` value that is not one.
    """
    if isinstance(value, dict) and len(value) == 1:
        if "$base64" in value:
            if not isinstance(value["$base64"], str):
                raise ValueError("a $base64 value is not a string")
            return base64.b64decode(value["$base64"], validate=True)
        if "$decimal" in value:
            if not isinstance(value["$decimal"], str):
                raise ValueError("a $decimal value is not a string")
            try:
                return decimal.Decimal(value["$decimal"])
            except decimal.InvalidOperation as exc:
                raise ValueError(f"{value['$decimal']!r:.40} is not a decimal") from exc
    return value


def _blob_name(sha256: str) -> str:
    return f"blobs/{sha256[:2]}/{sha256[2:]}"


def backup(data_dir: Path, database_url: str, out: Path, *, blobs: str = "", s3_endpoint: str = "") -> BackupSummary:
    """Write the hub's database and blobs to the tar file ``out`` (atomically: all or nothing).

    With ``blobs`` = ``s3://BUCKET/PREFIX`` the blobs come from that bucket (fetched, verified,
    into the data directory's blob cache first).

    Raises:
        FailedPrecondition: there is no hub database at ``data_dir``/``database_url``.
        InvalidArgument: the output cannot be written.
        IntegrityError: a blob file is missing or does not match its hash.
        StorageError: the database or the blob bucket could not be read.
    """
    require_hub(data_dir, database_url)
    if problem := not_replaceable(out):
        raise InvalidArgument(f"cannot write the backup there: {problem}")
    engine = make_engine(database_url or sqlite_url(data_dir))
    partial = out.with_name(out.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        partial.touch(mode=0o600)  # it holds the hub's key: readable by its owner only
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar, \
                tempfile.TemporaryDirectory(prefix="spime-backup-") as tmp:
            export = _thd_export(engine, _TableWriter(tar, Path(tmp)))
            root = _blob_root(data_dir, database_url, blobs, s3_endpoint, export.blobs)
            size = sum(_add_blob(tar, root, sha, n) for sha, n in export.blobs)
            hub_key = read_hub_key(data_dir)
            if hub_key is not None:
                _add_bytes(tar, HUB_KEY_MEMBER, hub_key.hex().encode() + b"\n")
            _add_bytes(tar, MANIFEST, json.dumps({**_manifest(export), "hub_key": hub_key is not None},
                                                 indent=1).encode())
        os.replace(partial, out)
    except OSError as exc:
        raise InvalidArgument(f"cannot write the backup {out}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
        engine.dispose()
    return BackupSummary(out, export.revision, dict(export.rows), len(export.blobs), size)


def require_hub(data_dir: Path, database_url: str) -> None:
    """Check that a hub exists there, for commands that only read or change what a hub holds
    (a mistyped ``--data`` must not answer from, or leave behind, a new empty hub).

    Raises:
        FailedPrecondition: no hub.sqlite3 in ``data_dir`` (without ``database_url``), or a
            database without the hub's schema.
        InvalidArgument: the database URL names another backend.
        StorageError: the database could not be reached.
    """
    if not database_url:
        if not (Path(data_dir) / "hub.sqlite3").is_file():
            raise FailedPrecondition(f"{data_dir} holds no hub database (hub.sqlite3): check --data, "
                                     "or give --database")
        return
    engine = make_engine(database_url)
    try:
        revision = _thd_revision(engine)
    finally:
        engine.dispose()
    if not revision:
        raise FailedPrecondition(f"{engine.url.render_as_string(hide_password=True)} holds no Spimeforge schema: "
                                 "check --database (spime-hub migrate makes a new hub there)")


class _TableWriter:
    """The export's sink: each table becomes one numbered JSON-lines member."""

    def __init__(self, tar: tarfile.TarFile, tmp: Path) -> None:
        self._tar, self._tmp, self._n = tar, tmp, 0

    def __call__(self, table: str, rows: Iterator[Row]) -> int:
        self._n += 1
        path, count = self._tmp / f"{self._n:03d}-{table}.jsonl", 0
        with path.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                count += 1
        self._tar.add(path, arcname=f"database/{path.name}", recursive=False, filter=_plain)
        path.unlink()
        return count


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    return info


def _manifest(export: Export) -> dict[str, Any]:
    return {"format": FORMAT, "schema_revision": export.revision, "backend": export.backend,
            "rows": dict(export.rows), "blobs": [[sha, size] for sha, size in export.blobs]}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _plain(tarfile.TarInfo(name))
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class _HashingReader(io.RawIOBase):
    def __init__(self, f: IO[bytes]) -> None:
        self._f, self.hash, self.count = f, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.hash.update(data)
        self.count += len(data)
        return data


def _add_blob(tar: tarfile.TarFile, root: Path, sha256: str, size: int) -> int:
    path = root / sha256[:2] / sha256[2:]
    try:
        with path.open("rb") as f:
            actual = os.fstat(f.fileno()).st_size
            if actual != size:
                raise IntegrityError(f"blob {sha256} is {actual} bytes on disk, {size} in the database")
            info = _plain(tarfile.TarInfo(_blob_name(sha256)))
            info.size = size
            reader = _HashingReader(f)
            tar.addfile(info, reader)
    except FileNotFoundError as exc:
        raise IntegrityError(f"blob {sha256} is in the database but its file {path} is missing") from exc
    if reader.hash.hexdigest() != sha256:
        raise IntegrityError(f"blob file {path} does not match its SHA-256: the blob store is damaged")
    return size


def _blob_root(data_dir: Path, database_url: str, blobs: str, s3_endpoint: str,
               wanted: Iterable[tuple[str, int]]) -> Path:
    """The local directory holding the blobs: the blob store's, or the S3 store's cache, filled."""
    if not blobs:
        return Path(data_dir) / "blobs"
    store = open_blob_store_for_copy(data_dir, database_url, blobs, s3_endpoint)
    for sha256, _ in wanted:
        try:
            store.path(sha256)
        except NotFound as exc:
            raise IntegrityError(f"blob {sha256} is in the database but not in {blobs}") from exc
    return store.root


def restore(archive: Path, data_dir: Path, database_url: str, *, blobs: str = "",
            s3_endpoint: str = "") -> BackupSummary:
    """Restore ``archive`` into an empty database and the data directory's blob store
    (or the bucket ``blobs`` = ``s3://BUCKET/PREFIX``, through the data directory's blob cache).

    Raises:
        InvalidArgument: the archive is unreadable or not a Spimeforge backup.
        IntegrityError: a blob in the archive does not match its hash.
        FailedPrecondition: the target database is not empty.
        StorageError: the database refused the rows, or the blob bucket failed.
    """
    try:
        with tarfile.open(archive, "r:") as tar:
            manifest = _read_manifest(tar)
            hub_key = _archived_hub_key(tar) if manifest.get("hub_key") else None
            present = read_hub_key(data_dir)
            if hub_key is not None and present is not None and present != hub_key:
                install_hub_key(data_dir, hub_key)  # refuses (another key) before anything is written
            listed = manifest["blobs"]
            put = _bucket_writer(data_dir, database_url, blobs, s3_endpoint)
            root = Path(data_dir) / ("blob-cache" if blobs else "blobs")
            size = sum(put(root, sha, _restore_blob(tar, root, sha, n)) for sha, n in listed)
            rows = _load_database(tar, data_dir, database_url, manifest["schema_revision"])
            if hub_key is not None:
                install_hub_key(data_dir, hub_key)
    except (OSError, tarfile.TarError) as exc:
        raise InvalidArgument(f"cannot read the backup {archive}: {exc}") from exc
    return BackupSummary(archive, manifest["schema_revision"], rows, len(listed), size)


def _bucket_writer(data_dir: Path, database_url: str, blobs: str,
                   s3_endpoint: str) -> Callable[[Path, str, int], int]:
    """``put(root, sha256, size) -> size``: sends a restored (verified) blob file to the bucket."""
    if not blobs:
        return lambda _root, _sha256, size: size
    from hub.store.s3blobs import S3BlobStore  # boto3: only for S3 blob stores

    store = open_blob_store_for_copy(data_dir, database_url, blobs, s3_endpoint)
    assert isinstance(store, S3BlobStore)

    def put(root: Path, sha256: str, size: int) -> int:
        if not store._thd_has_object(sha256):
            store._thd_put_file(root / sha256[:2] / sha256[2:], sha256)
        return size

    return put


def _member(tar: tarfile.TarFile, name: str, missing: str) -> IO[bytes]:
    """The regular file ``name`` of the archive (never a link, folder or device).

    Raises:
        InvalidArgument: ``missing`` when there is no such member, or it is not a regular file.
    """
    try:
        info = tar.getmember(name)
    except KeyError as exc:
        raise InvalidArgument(missing) from exc
    source = tar.extractfile(info) if info.isfile() else None
    if source is None:
        raise InvalidArgument(f"{name} in the backup is not a regular file: the archive is damaged")
    return source


def _read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    member = _member(tar, MANIFEST, f"not a Spimeforge backup: {MANIFEST} is missing")
    data = member.read(_MAX_MANIFEST_BYTES + 1)
    if len(data) > _MAX_MANIFEST_BYTES:
        raise InvalidArgument(f"{MANIFEST} in the backup is over {_MAX_MANIFEST_BYTES} bytes: the archive is damaged")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidArgument(f"{MANIFEST} in the backup is not JSON: the archive is damaged") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{MANIFEST} in the backup is not a JSON object: the archive is damaged")
    if doc.get("format") != FORMAT:
        raise InvalidArgument(f"backup format {doc.get('format')!r:.40} is not {FORMAT}: use the matching Spimeforge")
    revision = doc.get("schema_revision")
    if not isinstance(revision, str) or not revision.isascii() or not revision.isalnum() or len(revision) > 64:
        raise InvalidArgument(f"{MANIFEST} in the backup has no valid schema_revision: the archive is damaged")
    return {**doc, "blobs": _blob_list(doc.get("blobs"))}


def _blob_list(blobs: Any) -> list[tuple[str, int]]:
    """The manifest's ``blobs``: [[sha256, size], ...].

    Raises:
        InvalidArgument: naming the first entry that is not a SHA-256 and a size.
    """
    if not isinstance(blobs, list):
        raise InvalidArgument(f"{MANIFEST} in the backup has no blob list: the archive is damaged")
    listed = []
    for number, entry in enumerate(blobs, 1):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and type(entry[1]) is int and entry[1] >= 0):
            raise InvalidArgument(f"{MANIFEST} in the backup: blob entry {number} is not "
                                  "[sha256, size]: the archive is damaged")
        listed.append((check_sha256(entry[0]), entry[1]))
    return listed


def _archived_hub_key(tar: tarfile.TarFile) -> bytes:
    member = _member(tar, HUB_KEY_MEMBER,
                     f"the backup lists a hub key but has no {HUB_KEY_MEMBER}: the archive is damaged")
    try:
        key = bytes.fromhex(member.read(100).decode("ascii").strip())
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{HUB_KEY_MEMBER} in the backup is not a hex key") from exc
    if len(key) != 32:
        raise InvalidArgument(f"{HUB_KEY_MEMBER} in the backup holds {len(key)} bytes, not 32")
    return key


def _restore_blob(tar: tarfile.TarFile, root: Path, sha256: str, size: int) -> int:
    final = root / sha256[:2] / sha256[2:]
    if final.is_file() and final.stat().st_size == size:
        return size
    source = _member(tar, _blob_name(sha256),
                     f"blob {sha256} is listed but not in the backup: the archive is damaged")
    final.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=final.parent, prefix=".restore-", delete=False) as out:
        tmp = Path(out.name)
        for chunk in iter(lambda: source.read(_COPY_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != sha256:
        tmp.unlink()
        raise IntegrityError(f"blob {sha256} in the backup does not match its SHA-256: the archive is damaged")
    os.replace(tmp, final)
    return size


def _load_database(tar: tarfile.TarFile, data_dir: Path, database_url: str, revision: str) -> dict[str, int]:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url or sqlite_url(data_dir))
    try:
        _thd_migrate_to(engine, revision)
        rows = _thd_import(engine, revision, _tables(tar))
        _thd_migrate_to(engine, "head")
    finally:
        engine.dispose()
    return rows


def _tables(tar: tarfile.TarFile) -> Iterator[tuple[str, Iterable[Row]]]:
    members = sorted(m.name for m in tar.getmembers() if m.name.startswith("database/") and m.isfile())
    for name in members:
        table = name.removeprefix("database/").removesuffix(".jsonl").partition("-")[2]
        yield table, _lines(tar, name)


def _lines(tar: tarfile.TarFile, name: str) -> Iterator[Row]:
    f = _member(tar, name, f"{name} is missing from the backup")
    with contextlib.closing(f):
        number = 0
        while line := f.readline(_MAX_ROW_BYTES + 1):
            number += 1
            if len(line) > _MAX_ROW_BYTES:
                raise InvalidArgument(f"{name} line {number} of the backup is over {_MAX_ROW_BYTES} bytes")
            yield _row(line, name, number)


def _row(line: bytes, name: str, number: int) -> Row:
    """One JSON-lines row, decoded.

    Raises:
        InvalidArgument: naming the member and line: not UTF-8, not JSON, nested too deep, not
            an object, or a ``$base64``/``$decimal`` value that is not one.
    """
    where = f"{name} line {number} of the backup"
    try:
        doc = json.loads(line.decode("utf-8"))
        row = {k: _decode(v) for k, v in doc.items()} if isinstance(doc, dict) else None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError, binascii.Error
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise InvalidArgument(f"{where} is not a valid row: {reason}") from exc
    if row is None:
        raise InvalidArgument(f"{where} is not a valid row: a row is a JSON object")
    for column, value in row.items():
        if problem := _unstorable(value):
            raise InvalidArgument(f"{where} is not a valid row: {column!r:.80} holds {problem}")
    return row


_INT64 = range(-(1 << 63), 1 << 63)


def _unstorable(value: Any) -> str | None:
    """Why no database column takes ``value`` (as :func:`_encode` never writes it), or None.

    The drivers would raise OverflowError (SQLite) or UnicodeEncodeError, not a database error.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (float, bytes, decimal.Decimal)):
        return None
    if isinstance(value, int):
        return None if value in _INT64 else "an integer beyond 64 bits"
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (text that is not Unicode)"
        return None
    return f"a JSON {'array' if isinstance(value, list) else 'object'} (a column holds one value)"
