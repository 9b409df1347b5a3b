"""The blob-store contract (hub.store.blob_backend.BlobBackend): one suite, every backend.

``BlobStoreContract`` holds the cases (``__test__ = False``); ``TestLocalBlobStore`` runs
them on the blob directory and ``TestS3BlobStore`` on an S3 bucket of moto's real S3
server, started on 127.0.0.1 by this module (a missing moto fails the import, it does not
skip). Each runs on SQLite and on PostgreSQL (the ``blobs`` table).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from moto.server import ThreadedMotoServer

from hub.config import HubConfig
from hub.errors import IntegrityError, InvalidArgument, NotFound, ResourceExhausted, StorageError
from hub.store import Store, open_store
from hub.store.s3blobs import PART_BYTES, S3BlobStore, parse_s3_url
from tests.fixtures.postgres import create_database

NOW = "2026-01-01T00:00:00Z"
MIB = 1 << 20
LIMIT = 16 * MIB
SMALL = b"solid cube\n" * 300
BIG = bytes(range(256)) * ((PART_BYTES + 12345) // 256)  # two multipart parts


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MotoS3:
    """moto's S3 server on a free port of 127.0.0.1, and a client of it."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client: Any = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                        aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        name = f"spime-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def stop(self) -> None:
        self.client.close()
        self._server.stop()


def set_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for moto, and no ~/.aws files of whoever runs the tests."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    server = MotoS3()
    try:
        yield server
    finally:
        server.stop()


# One database per backend and class (migrating a new one per test would dominate the run
# time); each test has its own blob directory or bucket, and asserts only its own rows.
@pytest.fixture(scope="class", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'shared.sqlite3'}"
    return create_database(request.getfixturevalue("postgres_server"))


class BlobStoreContract:
    __test__ = False

    @pytest.fixture()
    def blob_settings(self) -> dict[str, str]:
        raise NotImplementedError

    @pytest.fixture()
    def opener(self, tmp_path: Path, database_url: str, blob_settings: dict[str, str]) -> Iterator[Any]:
        opened: list[Store] = []

        def open_one(name: str = "data") -> Store:
            store = open_store(tmp_path / name, database_url, LIMIT, **blob_settings)
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            store.close()

    @pytest.fixture()
    def store(self, opener: Any) -> Store:
        store: Store = opener()
        return store

    @staticmethod
    def _put(store: Store, data: bytes, chunk: int = MIB) -> int:
        upload = store.blobs._thd_begin(sha(data), len(data))
        try:
            for offset in range(0, len(data), chunk):
                upload.write(data[offset:offset + chunk])
        except BaseException:
            upload.abort()
            raise
        return store.blobs._thd_commit(upload, NOW)

    @staticmethod
    def _read_all(store: Store, digest: str, offset: int = 0, length: int = MIB) -> bytes:
        parts = []
        while part := store.blobs._thd_read(digest, offset, length):
            parts.append(part)
            offset += len(part)
        return b"".join(parts)

    def _assert_absent(self, store: Store, data: bytes) -> None:
        assert store.blobs._thd_missing([sha(data)]) == [sha(data)]
        with pytest.raises(NotFound):
            store.blobs._thd_size(sha(data))
        assert store.blobs._thd_sha256_of(sha(data)) is None
        assert store.blobs.temp_files() == []

    # -- the happy paths --------------------------------------------------------------

    def test_round_trip_with_ranges_and_missing(self, store: Store) -> None:
        assert store.blobs._thd_missing([sha(SMALL), sha(SMALL)]) == [sha(SMALL)]
        assert self._put(store, SMALL, chunk=1000) == len(SMALL)
        assert store.blobs._thd_missing([sha(BIG), sha(SMALL)]) == [sha(BIG)]
        assert store.blobs._thd_size(sha(SMALL)) == len(SMALL)
        assert store.blobs._thd_read(sha(SMALL), 0, 10) == SMALL[:10]
        assert store.blobs._thd_read(sha(SMALL), 1000, 500) == SMALL[1000:1500]
        assert store.blobs._thd_read(sha(SMALL), len(SMALL) - 3, 10) == SMALL[-3:]
        assert store.blobs._thd_read(sha(SMALL), len(SMALL), 10) == b""
        assert b"".join(store.blobs.iter_chunks(sha(SMALL), 100)) == SMALL[100:]
        assert store.blobs._thd_sha256_of(sha(SMALL)) == sha(SMALL)
        assert store.blobs.path(sha(SMALL)).read_bytes() == SMALL
        assert store.blobs.temp_files() == []

    def test_big_blob_streams_in_and_out(self, store: Store) -> None:
        assert self._put(store, BIG) == len(BIG)
        assert store.blobs._thd_size(sha(BIG)) == len(BIG)
        middle = PART_BYTES - 7
        assert store.blobs._thd_read(sha(BIG), middle, MIB) == BIG[middle:middle + MIB]
        assert store.blobs._thd_sha256_of(sha(BIG)) == sha(BIG)
        assert store.blobs.temp_files() == []

    def test_empty_blob(self, store: Store) -> None:
        assert self._put(store, b"") == 0
        assert store.blobs._thd_size(sha(b"")) == 0
        assert store.blobs._thd_read(sha(b""), 0, MIB) == b""
        assert store.blobs._thd_sha256_of(sha(b"")) == sha(b"")
        assert store.blobs._thd_missing([sha(b"")]) == []

    def test_a_second_hub_on_the_same_storage_serves_the_blob(self, opener: Any) -> None:
        first, second = opener("one"), opener("two")
        self._put(first, BIG)
        assert second.blobs._thd_missing([sha(BIG)]) == []
        assert second.blobs._thd_size(sha(BIG)) == len(BIG)
        assert self._read_all(second, sha(BIG), offset=PART_BYTES - 3) == BIG[PART_BYTES - 3:]
        assert second.blobs.path(sha(BIG)).read_bytes() == BIG
        assert self._read_all(second, sha(BIG)) == BIG

    def test_uploading_a_stored_blob_again_keeps_one_row(self, store: Store) -> None:
        self._put(store, SMALL)
        self._put(store, SMALL)
        with store.designs.engine.connect() as conn:
            count = sa.text("SELECT count(*) FROM blobs WHERE sha256 = :sha")
            assert conn.scalar(count, {"sha": sha(SMALL)}) == 1

    # -- refusals: nothing is stored ----------------------------------------------------

    def test_wrong_hash_stores_nothing(self, store: Store) -> None:
        upload = store.blobs._thd_begin(sha(SMALL), len(SMALL))
        upload.write(SMALL[:-1] + b"X")
        with pytest.raises(IntegrityError, match="hash"):
            store.blobs._thd_commit(upload, NOW)
        self._assert_absent(store, SMALL)

    def test_short_and_long_uploads_store_nothing(self, store: Store) -> None:
        upload = store.blobs._thd_begin(sha(SMALL), len(SMALL))
        upload.write(SMALL[:-1])
        with pytest.raises(IntegrityError, match="declared"):
            store.blobs._thd_commit(upload, NOW)
        upload = store.blobs._thd_begin(sha(SMALL), len(SMALL) - 1)
        with pytest.raises(IntegrityError, match="declared"):
            upload.write(SMALL)
        upload.abort()
        self._assert_absent(store, SMALL)

    def test_size_limit_is_enforced_before_and_while_streaming(self, store: Store) -> None:
        with pytest.raises(ResourceExhausted, match="limit"):
            store.blobs._thd_begin(sha(BIG), LIMIT + 1)
        upload = store.blobs._thd_begin(sha(BIG), LIMIT)
        upload.write(BIG[:MIB])
        upload.count(LIMIT - MIB)  # the rest still fits
        with pytest.raises(ResourceExhausted, match="limit"):
            upload.count(LIMIT - MIB + 1)
        upload.abort()
        assert store.blobs.temp_files() == []

    def test_aborted_upload_leaves_nothing(self, store: Store) -> None:
        upload = store.blobs._thd_begin(sha(BIG), len(BIG))
        upload.write(BIG[:3 * MIB])
        upload.abort()
        upload.abort()
        self._assert_absent(store, BIG)

    def test_bad_and_unknown_hashes(self, store: Store) -> None:
        for bad in ("", "A" * 64, "g" * 64, "0" * 63, "0" * 64 + "\x00", "../" * 20):
            with pytest.raises(InvalidArgument):
                store.blobs._thd_missing([bad])
            with pytest.raises(InvalidArgument):
                store.blobs._thd_begin(bad, 1)
            with pytest.raises(InvalidArgument):
                store.blobs._thd_size(bad)
        unknown = "0" * 64
        with pytest.raises(NotFound):
            store.blobs._thd_read(unknown, 0, 10)
        with pytest.raises(NotFound):
            list(store.blobs.iter_chunks(unknown))
        try:  # the local store names where the file would be; S3 fetches into its cache
            assert not store.blobs.path(unknown).exists()
        except NotFound:
            pass


class TestLocalBlobStore(BlobStoreContract):
    __test__ = True

    @pytest.fixture()
    def blob_settings(self, tmp_path: Path) -> dict[str, str]:
        return {}

    @pytest.fixture()
    def opener(self, tmp_path: Path, database_url: str, blob_settings: dict[str, str]) -> Iterator[Any]:
        # Two local hubs share storage only when they share the data directory.
        opened: list[Store] = []

        def open_one(name: str = "data") -> Store:
            store = open_store(tmp_path / "data", database_url, LIMIT)
            opened.append(store)
            return store

        yield open_one
        for store in opened:
            store.close()


class TestS3BlobStore(BlobStoreContract):
    __test__ = True

    @pytest.fixture()
    def bucket(self, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
        set_aws_env(monkeypatch, tmp_path)
        return moto_s3.new_bucket()

    @pytest.fixture()
    def blob_settings(self, moto_s3: MotoS3, bucket: str) -> dict[str, str]:
        return {"blobs": f"s3://{bucket}/hub/blobs", "s3_endpoint": moto_s3.endpoint}

    def test_objects_are_content_addressed_under_the_prefix(self, store: Store, moto_s3: MotoS3,
                                                            bucket: str) -> None:
        assert isinstance(store.blobs, S3BlobStore)
        self._put(store, SMALL)
        self._put(store, BIG)
        assert moto_s3.keys(bucket) == sorted(f"hub/blobs/{d[:2]}/{d[2:]}" for d in (sha(SMALL), sha(BIG)))
        head = moto_s3.client.head_object(Bucket=bucket, Key=f"hub/blobs/{sha(BIG)[:2]}/{sha(BIG)[2:]}")
        assert head["ETag"].strip('"').endswith("-2"), head["ETag"]  # a multipart upload of 8 MiB parts

    def test_refused_uploads_send_nothing_to_the_bucket(self, store: Store, moto_s3: MotoS3,
                                                        bucket: str) -> None:
        upload = store.blobs._thd_begin(sha(BIG), len(BIG))
        upload.write(BIG[:-1] + b"X")
        with pytest.raises(IntegrityError):
            store.blobs._thd_commit(upload, NOW)
        assert moto_s3.keys(bucket) == []
        assert moto_s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    def test_an_object_that_went_missing_is_reported_missing(self, opener: Any, moto_s3: MotoS3,
                                                             bucket: str) -> None:
        first = opener("one")
        self._put(first, SMALL)
        moto_s3.client.delete_object(Bucket=bucket, Key=f"hub/blobs/{sha(SMALL)[:2]}/{sha(SMALL)[2:]}")
        second = opener("two")
        assert second.blobs._thd_missing([sha(SMALL)]) == [sha(SMALL)]
        with pytest.raises(NotFound):
            second.blobs._thd_size(sha(SMALL))


# -- S3 faults: about the object store, not the database (SQLite only) ---------------------


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'faults.sqlite3'}"


def test_a_missing_bucket_is_a_clear_error(tmp_path: Path, sqlite_url: str, moto_s3: MotoS3,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    set_aws_env(monkeypatch, tmp_path)
    with pytest.raises(StorageError, match="does not exist") as info:
        open_store(tmp_path / "x", sqlite_url, LIMIT, blobs="s3://no-such-bucket-here/p",
                   s3_endpoint=moto_s3.endpoint)
    assert not info.value.retryable


def test_an_unreachable_store_is_a_retryable_error(tmp_path: Path, sqlite_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    set_aws_env(monkeypatch, tmp_path)
    closing = MotoS3()
    bucket = closing.new_bucket()
    settings = {"blobs": f"s3://{bucket}/p", "s3_endpoint": closing.endpoint}
    store = open_store(tmp_path / "data", sqlite_url, LIMIT, **settings)
    replica = open_store(tmp_path / "replica", sqlite_url, LIMIT, **settings)  # nothing in its cache
    try:
        BlobStoreContract._put(store, SMALL)
        closing.stop()
        with pytest.raises(StorageError) as info:
            replica.blobs._thd_missing([sha(SMALL)])
        assert info.value.retryable and "try again" in str(info.value)
        with pytest.raises(StorageError):
            replica.blobs._thd_read(sha(SMALL), 0, 10)
        with pytest.raises(StorageError):
            store.blobs._thd_sha256_of(sha(SMALL))
    finally:
        store.close()
        replica.close()


@pytest.mark.parametrize("url", ["s3://", "s3://UPPER/x", "s3://ab", "s3://bucket/a/../b", "s3://bucket/a b",
                                 "s3://bucket/" + "p" * 201, "file:///tmp/x"])
def test_bad_s3_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_s3_url(url)


def test_s3_url_prefix_and_key() -> None:
    location = parse_s3_url("s3://spime-blobs/hub/a/", "http://127.0.0.1:9000")
    assert location.key("ab" + "c" * 62) == "hub/a/ab/" + "c" * 62
    assert parse_s3_url("s3://spime-blobs").key("ab" + "c" * 62) == "ab/" + "c" * 62
    with pytest.raises(InvalidArgument, match="s3-endpoint"):
        parse_s3_url("s3://spime-blobs", "ftp://x")


def test_hub_config_checks_the_blob_flags(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="--blobs"):
        HubConfig(data_dir=tmp_path, blobs="/srv/blobs")
    with pytest.raises(InvalidArgument, match="--s3-endpoint"):
        HubConfig(data_dir=tmp_path, s3_endpoint="http://127.0.0.1:9000")
    assert HubConfig(data_dir=tmp_path, blobs="s3://b-1/p", s3_endpoint="http://127.0.0.1:9000").blobs == "s3://b-1/p"
