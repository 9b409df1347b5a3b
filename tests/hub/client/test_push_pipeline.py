"""``spime push`` speed paths: the stat cache of file hashes and uploading while hashing.

The cache is checked through what it changes: a hash taken from the cache is the
one stored in ``.spime/hashes.json`` (tests plant a wrong one to see it used), a
changed file is hashed again, and a touched but identical file is hashed again
and then not uploaded because the hub already has its blob.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from spimeforge.v1 import designs_pb2

from hub.client import local as client_local
from hub.client.commands import push as push_command
from hub.client.common import UsageError
from hub.client.connection import Hub, opened
from hub.client.embedded import EmbeddedHub
from hub.client.local import CHUNK, hash_file, scan_design_dir
from hub.client.statcache import CACHE_PATH, StatCache
from tests.hub.client.test_spime_cli_hub import Spime, _copy, _make_unique, embedded_on

MANIFEST = ('name = "cache-box"\ntitle = "Cache box"\nlicense = "CC0-1.0"\nlicensor = "t"\n'
            'version = "1.0.0"\nfunction = "Testing."\n'
            '[[parts]]\nname = "box"\nfiles = ["box.stl"]\nmaterial = "PLA"\n')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedHub]:
    embedded = embedded_on(request, tmp_path_factory)
    embedded.add_user("alice", "designer")
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def spime(hub: EmbeddedHub, capsys: pytest.CaptureFixture[str]) -> Spime:
    return Spime(hub, capsys)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cache-box"
    folder.mkdir()
    (folder / "spime.toml").write_text(MANIFEST)
    (folder / "box.stl").write_bytes(b"solid box\nendsolid box\n")
    (folder / "notes.md").write_text("first notes\n")
    return folder


def _scan(folder: Path, racy_ns: int = 0) -> dict[str, str]:
    cache = StatCache(folder, racy_ns=racy_ns)
    _, _, files = scan_design_dir(folder, cache=cache)
    cache.save({f.path for f in files})
    return {f.path: f.sha256 for f in files}


def _plant(folder: Path, path: str, sha256: str) -> None:
    doc = json.loads((folder / CACHE_PATH).read_text())
    doc["files"][path][1] = sha256
    (folder / CACHE_PATH).write_text(json.dumps(doc))


def test_an_unchanged_file_takes_its_hash_from_the_cache(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    first = _scan(folder)
    assert first["box.stl"] == hashlib.sha256((folder / "box.stl").read_bytes()).hexdigest()
    _plant(folder, "box.stl", "0" * 64)
    assert _scan(folder)["box.stl"] == "0" * 64


def test_a_changed_file_is_hashed_again_even_with_size_and_mtime_restored(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _scan(folder)
    _plant(folder, "notes.md", "0" * 64)
    path = folder / "notes.md"
    st = path.stat()
    path.write_text("other notes\n")  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert _scan(folder)["notes.md"] == hashlib.sha256(b"other notes\n").hexdigest()


def test_a_touched_file_is_hashed_again(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    real = _scan(folder)["box.stl"]
    _plant(folder, "box.stl", "0" * 64)
    os.utime(folder / "box.stl")
    assert _scan(folder)["box.stl"] == real


def test_freshly_written_files_are_not_remembered(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _scan(folder, racy_ns=3600 * 10**9)  # every file counts as changed "just now"
    assert not (folder / CACHE_PATH).exists()


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / ".spime").mkdir()
    (folder / CACHE_PATH).write_text('{"version": 1, "files": {"box.stl": [[1], 7]}')
    expected = hashlib.sha256((folder / "box.stl").read_bytes()).hexdigest()
    assert _scan(folder)["box.stl"] == expected
    assert json.loads((folder / CACHE_PATH).read_text())["files"]["box.stl"][1] == expected


def test_deleted_files_leave_the_cache(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _scan(folder)
    (folder / "notes.md").unlink()
    _scan(folder)
    assert set(json.loads((folder / CACHE_PATH).read_text())["files"]) == {"box.stl"}


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / ".spime").write_text("a file where the cache directory would go")
    assert set(_scan(folder)) == {"box.stl", "notes.md"}
    assert set(_scan(folder)) == {"box.stl", "notes.md"}


def test_touched_identical_file_is_not_uploaded_again(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "touch-cube")
    _make_unique(folder)
    first = spime.ok("alice", "push", str(folder), "--new")
    assert first["blobs_uploaded"] >= 1
    _scan(folder)  # every file now has a cache entry (the push skipped these fresh copies)
    for path in folder.glob("*"):
        if path.is_file():
            os.utime(path)
    again = spime.ok("alice", "push", str(folder))
    assert again["unchanged"] and again["blobs_uploaded"] == 0 and again["bytes_uploaded"] == 0


def test_a_changed_file_is_uploaded_after_a_cached_push(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "cached-cube")
    _make_unique(folder)
    spime.ok("alice", "push", str(folder), "--new")
    _scan(folder)
    assert "NOTES.md" in json.loads((folder / CACHE_PATH).read_text())["files"]
    notes = folder / "NOTES.md"
    st = notes.stat()
    notes.write_text(notes.read_text().upper())  # same size, mtime restored below
    os.utime(notes, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = spime.ok("alice", "push", str(folder), "-m", "louder notes")
    assert second["blobs_uploaded"] == 1 and second["bytes_uploaded"] == st.st_size
    assert not second["unchanged"]


def test_a_manifest_naming_a_missing_file_uploads_nothing(spime: Spime, tmp_path: Path) -> None:
    folder = _copy(tmp_path, "calibration-cube", "broken-cube")
    _make_unique(folder)
    manifest = folder / "spime.toml"
    manifest.write_text(manifest.read_text().replace('files = ["', 'files = ["ghost.stl", "', 1))
    code, _, err = spime("alice", "push", str(folder), "--new")
    assert code != 0 and "ghost.stl" in err
    with pytest.raises(UsageError):
        scan_design_dir(folder)
    unique = hashlib.sha256((folder / "NOTES.md").read_bytes()).hexdigest()
    args = type("Args", (), {"hub": spime.hub.address, "token": spime.hub.tokens["alice"],
                             "ca": None})()
    with opened(args) as conn:
        missing = conn.call(conn.designs.MissingBlobs,
                            designs_pb2.MissingBlobsRequest(sha256=[unique])).sha256
    assert list(missing) == [unique]


def test_a_blob_over_the_hub_limit_fails_the_push_and_stores_nothing_half(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The refused blob's siblings are in flight when it is refused: the push ends their
    # streams and returns only once the hub has answered each, and the hub answers only once
    # it has removed what it received, so nothing is left the moment the push returns.
    small = EmbeddedHub(data=tmp_path / "small-hub", extra_args=("--max-blob-mb", "1"))
    small.data.mkdir()
    small.add_user("alice", "designer")
    small.start()
    try:
        folder = _folder(tmp_path)
        big = os.urandom(3 << 20)
        (folder / "box.stl").write_bytes(big)
        siblings = {f"part-{i}.md": os.urandom(1_000_000) for i in range(6)}
        for name, data in siblings.items():
            (folder / name).write_bytes(data)
        code, _, err = Spime(small, capsys)("alice", "push", str(folder), "--new")
        assert code != 0, err
        assert "RESOURCE_EXHAUSTED" in err and "upload limit" in err and "box.stl" in err, err
        assert list((small.data / "blobs" / "tmp").iterdir()) == []
        big_sha = hashlib.sha256(big).hexdigest()
        assert not (small.data / "blobs" / big_sha[:2] / big_sha[2:]).exists()
        for data in siblings.values():  # each sibling is stored whole or not at all
            stored = small.data / "blobs" / hashlib.sha256(data).hexdigest()[:2] / hashlib.sha256(data).hexdigest()[2:]
            assert not stored.exists() or stored.read_bytes() == data
    finally:
        small.stop()
    assert list((small.data / "blobs" / "tmp").iterdir()) == []


def test_identical_files_are_uploaded_once_and_empty_files_work(spime: Spime,
                                                               tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    payload = os.urandom(3 << 20)  # several chunks, hashed in parallel with its twin
    (folder / "box.stl").write_bytes(payload)
    (folder / "box-copy.stl").write_bytes(payload)
    (folder / "empty.md").write_bytes(b"")
    (folder / "spime.toml").write_text(MANIFEST.replace("cache-box", "twin-box"))
    pushed = spime.ok("alice", "push", str(folder), "--new")
    assert pushed["files"] == 4 and pushed["blobs_uploaded"] == 3
    assert pushed["bytes_uploaded"] == len(payload) + len("first notes\n")


def test_local_errors_come_before_the_hub_is_asked(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from hub.client.cli import main
    from hub.client.embedded import free_port

    folder = _folder(tmp_path)
    (folder / "link.stl").symlink_to(folder / "box.stl")
    code = main(["push", str(folder), "--new", "--hub", f"127.0.0.1:{free_port()}",
                 "--token", "nobody"])
    err = capsys.readouterr().err
    assert code != 0 and "symlink" in err and "UNAVAILABLE" not in err


def test_an_unknown_design_is_refused_before_any_upload(spime: Spime, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "spime.toml").write_text(MANIFEST.replace("cache-box", "never-created"))
    (folder / "box.stl").write_bytes(os.urandom(1 << 20))
    code, _, err = spime("alice", "push", str(folder))
    assert code != 0 and "NOT_FOUND" in err and "--new" in err
    unique = hashlib.sha256((folder / "box.stl").read_bytes()).hexdigest()
    args = type("Args", (), {"hub": spime.hub.address, "token": spime.hub.tokens["alice"],
                             "ca": None})()
    with opened(args) as conn:
        missing = conn.call(conn.designs.MissingBlobs,
                            designs_pb2.MissingBlobsRequest(sha256=[unique])).sha256
    assert list(missing) == [unique]


def test_the_hub_is_asked_who_pushes_while_the_files_are_hashed(spime: Spime, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # The account (and a parent) used to be asked only once the first file was hashed, delaying its
    # upload by the connection and the round trips; now the hashing waits here until they are done.
    folder = _folder(tmp_path)
    (folder / "spime.toml").write_text(MANIFEST.replace("cache-box", "early-box"))
    for name in ("box.stl", "notes.md"):  # blobs no earlier test stored
        (folder / name).write_bytes(os.urandom(1 << 16))
    answered, hashed_after = threading.Event(), []
    call, hash_file = Hub.call, client_local.hash_file

    def noted_call(self: Hub, method: object, request: object, timeout: float = 60.0) -> object:
        answer = call(self, method, request, timeout)
        if type(request).__name__ == "WhoAmIRequest":
            answered.set()
        return answer

    def waiting_hash(path: Path) -> tuple[str, int]:
        hashed_after.append(answered.wait(30))
        return hash_file(path)

    monkeypatch.setattr(Hub, "call", noted_call)
    monkeypatch.setattr(client_local, "hash_file", waiting_hash)
    pushed = spime.ok("alice", "push", str(folder), "--new")
    assert pushed["blobs_uploaded"] == 2 and hashed_after and all(hashed_after)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_a_file_is_hashed_whole_whatever_its_size(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "part.stl").write_bytes(data)
    assert hash_file(tmp_path / "part.stl") == (hashlib.sha256(data).hexdigest(), size)


def test_files_are_hashed_with_quick_gil_hand_offs_and_no_collections(spime: Spime, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # With CPython's 5 ms switch interval each hashing thread waited up to that long after every chunk
    # while the main thread parsed the manifest, and a full collection held the GIL for tens of ms.
    folder = _folder(tmp_path)
    (folder / "spime.toml").write_text(MANIFEST.replace("cache-box", "busy-box"))
    for name in ("box.stl", "notes.md"):
        (folder / name).write_bytes(os.urandom(1 << 16))
    seen, hash_one = [], client_local.hash_file

    def noting_hash(path: Path) -> tuple[str, int]:
        seen.append((gc.isenabled(), sys.getswitchinterval()))
        return hash_one(path)

    monkeypatch.setattr(client_local, "hash_file", noting_hash)
    interval = sys.getswitchinterval()
    assert spime.ok("alice", "push", str(folder), "--new")["blobs_uploaded"] == 2
    assert seen == [(False, push_command.SWITCH_INTERVAL_S)] * 2
    assert gc.isenabled() and sys.getswitchinterval() == interval


def test_a_failed_push_gives_back_the_collector_and_switch_interval_as_they_were() -> None:
    interval = sys.getswitchinterval()
    gc.disable()
    try:
        with pytest.raises(RuntimeError), push_command._busy_threads():
            raise RuntimeError("refused")
        assert not gc.isenabled() and sys.getswitchinterval() == interval
    finally:
        gc.enable()
    with push_command._busy_threads():
        assert not gc.isenabled()
    assert gc.isenabled()
