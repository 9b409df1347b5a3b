"""``spime get`` against a hub that sends too much, or a revision whose names could meet
the client's own partial files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hub.client.common import ClientError
from hub.client.download import download_blob, write_revision


class _Chunk:
    def __init__(self, data: bytes) -> None:
        self.data = data


class _Designs:
    def __init__(self, blobs: dict[str, bytes], endless: bool) -> None:
        self.blobs, self.endless, self.sent = blobs, endless, 0

    def DownloadBlob(self, request: Any, metadata: Any = None, timeout: Any = None) -> Iterator[_Chunk]:
        if self.endless:
            while True:
                self.sent += 1 << 20
                yield _Chunk(b"\0" * (1 << 20))
        data = self.blobs[request.sha256][request.offset:]
        for i in range(0, len(data), 7):
            yield _Chunk(data[i:i + 7])


class _Hub:
    def __init__(self, blobs: dict[str, bytes], endless: bool = False) -> None:
        self.designs, self.metadata = _Designs(blobs, endless), ()

    @contextmanager
    def errors(self) -> Iterator[None]:
        yield


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _revision(files: list[tuple[str, bytes]]) -> dict[str, Any]:
    return {"manifest_toml": "name = 'x'\n",
            "files": [{"path": p, "sha256": _sha(b), "size": len(b)} for p, b in files]}


@pytest.mark.parametrize("files", [
    [("x.part", b"B" * 100), ("x", b"small")],
    [("x.part", b"B"), ("x", b"small file")],
    [("x", b"small file"), ("x.part", b"B")],
])
def test_a_file_named_like_a_partial_download_is_written_intact(
        tmp_path: Path, files: list[tuple[str, bytes]]) -> None:
    out = tmp_path / "out"
    write_revision(_Hub({_sha(b): b for _, b in files}), _revision(files), out)  # type: ignore[arg-type]
    for name, data in files:
        assert (out / name).read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == sorted([".spime", "spime.toml", "x", "x.part"])
    assert not any((out / ".spime").iterdir())


def test_a_hub_sending_more_than_the_size_is_stopped_at_once(tmp_path: Path) -> None:
    hub = _Hub({}, endless=True)
    out = tmp_path / "out"
    with pytest.raises(ClientError, match="more than its 4 bytes"):
        write_revision(hub, _revision([("big.stl", b"tiny")]), out)  # type: ignore[arg-type]
    assert hub.designs.sent <= 1 << 20
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["spime.toml"]


def test_a_short_blob_is_refused(tmp_path: Path) -> None:
    data = b"the whole blob"
    hub = _Hub({_sha(data): data[:5]})
    with pytest.raises(ClientError, match="corrupted"):
        download_blob(hub, _sha(data), len(data), tmp_path / "f")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
