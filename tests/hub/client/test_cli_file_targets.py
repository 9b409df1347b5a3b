"""The ``spime`` CLI's own files: written only as regular files, beside their place and renamed
over it (never through a link, never over a device or pipe, nothing left behind), and read
only from regular files of bounded size (a pipe or device is refused, never read)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hub.client import chain
from hub.client.cli import main
from hub.client.commands import export
from hub.client.common import ClientError, UsageError
from hub.client.download import write_revision
from hub.client.local import read_local_file, scan_design_dir, write_base
from tests.hub.client.test_download_hostile import _Hub, _revision, _sha
from tests.hub.client.test_spime_cli_offline import _bundle


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@contextmanager
def _served(fifo: Path) -> Iterator[None]:
    """Serve one byte and an end of file to whoever opens ``fifo`` for reading: were the check
    gone, a read of the pipe would return instead of blocking the test for ever."""
    def feed() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # returns once some reader has the pipe open
        os.write(fd, b"x")
        os.close(fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield
    finally:
        release = os.open(fifo, os.O_RDWR)  # a reader for the feeder, whether it opened already or not
        feeder.join()
        os.close(release)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".exporting", ".partial")))


# -- 1. writes never go through a link -------------------------------------------------

def test_get_refuses_a_spime_toml_link_leading_out_of_the_folder(tmp_path: Path, victim: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "spime.toml").symlink_to(victim)
    files = [("box.stl", b"solid box")]
    with pytest.raises(ClientError, match="outside"):
        write_revision(_Hub({_sha(b): b for _, b in files}), _revision(files), out)  # type: ignore[arg-type]
    assert victim.read_text() == "precious\n" and not (out / "box.stl").exists()


def test_get_refuses_a_spime_state_folder_leading_out_of_the_folder(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / ".spime").symlink_to(elsewhere)
    files = [("box.stl", b"solid box")]
    with pytest.raises(ClientError, match="outside"):
        write_revision(_Hub({_sha(b): b for _, b in files}), _revision(files), out)  # type: ignore[arg-type]
    with pytest.raises(ClientError, match="outside"):
        write_base(out, "cache-box", "a" * 64)
    assert list(elsewhere.iterdir()) == []


def test_init_force_replaces_a_spime_toml_link_never_writes_through_it(
        tmp_path: Path, victim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "widget"
    folder.mkdir()
    (folder / "spime.toml").symlink_to(tmp_path / "created-elsewhere")  # dangling
    code, err = _run(capsys, "init", str(folder))
    assert code == 2 and "already exists" in err and not (tmp_path / "created-elsewhere").exists()
    (folder / "spime.toml").unlink()
    (folder / "spime.toml").symlink_to(victim)
    assert _run(capsys, "init", str(folder), "--force")[0] == 0
    assert victim.read_text() == "precious\n"
    assert not (folder / "spime.toml").is_symlink() and "name = " in (folder / "spime.toml").read_text()
    assert _leftovers(folder) == []


# -- 2. a target that is not a regular file is refused, and no temporary file stays ---------

def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / kind
    if kind == "pipe":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:  # the tests run as root (README); elsewhere mknod fails the test rather than skip it
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # /dev/full's numbers, in tmp_path only
    return path


@pytest.mark.parametrize("fmt", ["prov", "okh"])
@pytest.mark.parametrize("kind", ["pipe", "folder", "device"])
def test_export_refuses_a_target_that_is_not_a_regular_file(
        tmp_path: Path, fmt: str, kind: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIME_HUB", "127.0.0.1:1")  # refused before any hub is called
    monkeypatch.setenv("SPIME_TOKEN", "t")
    target = _special(tmp_path, kind)
    before = target.lstat()
    code, err = _run(capsys, "export", "cube", "--format", fmt, "-o", str(target))
    assert code == 2 and f"{target} is a {kind}" in err and "Traceback" not in err
    assert (target.lstat().st_ino, target.lstat().st_mode) == (before.st_ino, before.st_mode)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("output", [".", "", "/"])
def test_export_to_a_folder_name_is_a_usage_error_not_a_crash(
        output: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPIME_HUB", "127.0.0.1:1")
    monkeypatch.setenv("SPIME_TOKEN", "t")
    code, err = _run(capsys, "export", "cube", "--format", "prov", "-o", output)
    assert code == 2 and "is a folder" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


class _BrokenExport:
    """A hub whose export stream breaks off after the first chunk."""

    class _Chunk:
        media_type, document = "application/json", b'{"partial": '

    def __init__(self) -> None:
        self.records, self.metadata = self, ()

    def Export(self, request: Any, metadata: Any = None, timeout: Any = None) -> Iterator[Any]:
        yield self._Chunk()
        raise KeyboardInterrupt

    @contextmanager
    def errors(self) -> Iterator[None]:
        yield


def test_an_interrupted_export_leaves_nothing_behind(tmp_path: Path, victim: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        export._write_document(_BrokenExport(), None, victim)  # type: ignore[arg-type]
    assert victim.read_text() == "precious\n" and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


@pytest.mark.parametrize("kind", ["pipe", "folder", "device", "dot"])
def test_key_gen_refuses_a_target_that_is_not_a_regular_file(
        tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = Path(".") if kind == "dot" else _special(tmp_path, kind)
    code, err = _run(capsys, "key", "gen", "--key", str(target), "--force")
    assert code == 2 and "not a" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if p.name != target.name] == []  # no private key left beside
    if kind != "dot":
        assert stat.S_IFMT(target.lstat().st_mode) != stat.S_IFREG


def test_key_gen_over_a_key_leaves_no_temporary_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key"
    assert _run(capsys, "key", "gen", "--key", str(key))[0] == 0
    old = key.read_text()
    assert _run(capsys, "key", "gen", "--key", str(key), "--force")[0] == 0
    assert key.read_text() != old and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


# -- 4. an interrupted bundle export can be run again -------------------------------------

class _FlakyHub:
    """Serves blobs, but interrupts (as Ctrl-C would) the download of the second one."""

    def __init__(self, blobs: dict[str, bytes], interrupt: bool) -> None:
        self.designs, self.metadata = self, ()
        self.blobs, self.interrupt, self.calls = blobs, interrupt, 0

    @contextmanager
    def errors(self) -> Iterator[None]:
        yield

    def DownloadBlob(self, request: Any, metadata: Any = None, timeout: Any = None) -> Iterator[Any]:
        self.calls += 1
        data = self.blobs[request.sha256][request.offset:]
        yield type("Chunk", (), {"data": data[:3]})()
        if self.interrupt and self.calls == 2:
            raise KeyboardInterrupt
        yield type("Chunk", (), {"data": data[3:]})()


def test_an_interrupted_bundle_export_leaves_nothing_and_runs_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = {_sha(b): b for b in (b"first blob", b"second blob", b"third blob")}
    rev = {"id": "a" * 64, "parent_ids": [], "files": [{"path": f"{i}.stl", "sha256": s, "size": len(b)}
                                                         for i, (s, b) in enumerate(blobs.items())]}
    monkeypatch.setattr(chain, "collect_chain", lambda hub, design: ({"slug": design}, [rev]))
    monkeypatch.setattr(chain, "collect_keys", lambda hub, revisions: (b"\1" * 32, []))
    out = tmp_path / "bundle"
    with pytest.raises(KeyboardInterrupt):
        chain.write_bundle(_FlakyHub(blobs, interrupt=True), "cube", out)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    doc = chain.write_bundle(_FlakyHub(blobs, interrupt=False), "cube", out)  # type: ignore[arg-type]
    assert doc["blobs"] == 3 and (out / "bundle.json").is_file()
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (out / "blobs").iterdir()} == {
        s: s for s in blobs}
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_bundle_export_into_an_empty_folder_fills_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain, "collect_chain", lambda hub, design: ({"slug": design}, []))
    monkeypatch.setattr(chain, "collect_keys", lambda hub, revisions: (b"\1" * 32, []))
    out = tmp_path / "bundle"
    out.mkdir()
    chain.write_bundle(_FlakyHub({}, interrupt=False), "cube", out)  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["blobs", "bundle.json"]
    with pytest.raises(ClientError, match="not an empty directory"):
        chain.write_bundle(_FlakyHub({}, interrupt=False), "cube", out)  # type: ignore[arg-type]
    with pytest.raises(ClientError, match="names no folder"):
        chain.write_bundle(_FlakyHub({}, interrupt=False), "cube", Path("."))  # type: ignore[arg-type]


# -- 5. a pipe or device where a file is read is refused, never read ------------------------

def test_push_refuses_a_manifest_that_is_a_pipe(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "spime.toml")
    with _served(tmp_path / "spime.toml"), pytest.raises(UsageError, match="is a pipe, not a regular file"):
        scan_design_dir(tmp_path)


def test_spime_push_of_a_folder_whose_manifest_is_a_pipe_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing writes to the pipe: a read of it (the design's name, before the scan) would wait for ever."""
    os.mkfifo(tmp_path / "spime.toml")
    assert main(["push", str(tmp_path), "--hub", "127.0.0.1:1", "--token", "t"]) == 2
    assert "is a pipe, not a regular file" in capsys.readouterr().err


def test_get_refuses_a_manifest_that_is_a_pipe(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "spime.toml")
    reader = os.open(tmp_path / "spime.toml", os.O_RDONLY | os.O_NONBLOCK)  # a write there would not block
    try:
        with pytest.raises(ClientError, match="is a pipe, not a regular file"):
            write_revision(_Hub({}), _revision([]), tmp_path)  # type: ignore[arg-type]
    finally:
        os.close(reader)
    assert stat.S_ISFIFO((tmp_path / "spime.toml").lstat().st_mode)


@pytest.mark.parametrize("argv", [
    ["key", "show", "--key", "{fifo}"],
    ["verify", "--bundle", "{bundle}", "--hub-key", "{fifo}"],
    ["check", "{mesh}", "--printer", "{fifo}"],
], ids=["key-show", "verify-hub-key", "check-printer"])
def test_a_pipe_named_as_an_input_file_is_a_usage_error(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "input"
    os.mkfifo(fifo)
    mesh = tmp_path / "box.stl"
    mesh.write_text("solid box\nendsolid box\n")
    names = {"fifo": str(fifo), "bundle": str(tmp_path), "mesh": str(mesh)}
    with _served(fifo):
        code, err = _run(capsys, *(a.format(**names) for a in argv))
    assert code == 2 and f"{fifo} is a pipe, not a regular file" in err


def test_verify_refuses_a_bundle_document_that_is_a_pipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = _bundle(tmp_path)
    (bundle / "bundle.json").unlink()
    os.mkfifo(bundle / "bundle.json")
    with _served(bundle / "bundle.json"):
        code, err = _run(capsys, "verify", "--bundle", str(bundle))
    assert code == 1 and "is a pipe, not a regular file" in err


def test_a_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "key"
    with big.open("wb") as fh:
        fh.truncate(1 << 32)  # sparse: reading it whole would take 4 GiB of memory
    with pytest.raises(UsageError, match="too big: at most 4096 bytes"):
        read_local_file(big, 4096, "the key")
    assert read_local_file(tmp_path / "missing", 10, "the key") is None
