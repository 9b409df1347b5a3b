"""Nothing a hub, a bundle or a file name holds reaches the terminal as a control sequence."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from spimeforge.v1 import common_pb2, designs_pb2, designs_pb2_grpc

from hub.client.cli import main
from hub.client.terminal import shown

ESC = "\x1b]0;OWNED\x07\x1b[2J\x1b[31mRED\u202egnp.exe\x9b1m\r"
RAW = ("\x1b", "\x07", "\u202e", "\x9b", "\r")


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85", "\x9b", "\t", "\r", "\u200e",
                                  "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"])
def test_shown_escapes_every_control(char: str) -> None:
    assert char not in shown(f"a{char}b") and shown(f"a{char}b").startswith("a\\")


def test_shown_keeps_text_and_newlines() -> None:
    assert shown("caf\u00e9 \u2014 ok\nline two") == "caf\u00e9 \u2014 ok\nline two"


class _Hostile(designs_pb2_grpc.DesignsServicer):
    def GetDesign(self, req: Any, ctx: Any) -> Any:
        return designs_pb2.Design(slug="d" + ESC, title="T" + ESC, license="MIT",
                                  maintainers=["m" + ESC], tags=["t" + ESC])

    def GetRevision(self, req: Any, ctx: Any) -> Any:
        if req.design == "err":
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no such design " + ESC)
        return designs_pb2.Revision(id="a" * 64, design="d", message="msg" + ESC,
                                    author="au" + ESC, files=[common_pb2.FileEntry(
                                        path="p" + ESC, sha256="b" * 64, size=1)])

    def Log(self, req: Any, ctx: Any) -> Any:
        return designs_pb2.LogResponse(revisions=[designs_pb2.Revision(
            id="a" * 64, message="m" + ESC, author="x" + ESC)])

    def Search(self, req: Any, ctx: Any) -> Any:
        return designs_pb2.SearchResponse(designs=[designs_pb2.Design(slug="s", title="T" + ESC)])


@pytest.fixture
def hostile_hub() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    designs_pb2_grpc.add_DesignsServicer_to_server(_Hostile(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.mark.parametrize("argv", [["show", "x"], ["log", "x"], ["search", "q"], ["get", "err"],
                                  ["get", "x"]])
def test_hub_text_is_escaped_on_stdout_and_stderr(
        hostile_hub: str, argv: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["-o", str(tmp_path / "out")] if argv[0] == "get" else []
    main([*argv, *extra, "--hub", hostile_hub, "--token", "t"])
    out, err = capsys.readouterr()
    assert "OWNED" in out + err  # the text is shown, escaped
    for char in RAW:
        assert char not in out and char not in err


def test_local_file_names_are_escaped_by_spime_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e\x1b[31m\u202e.stl"
    path.write_bytes(b"solid x\nendsolid\n")
    main(["check", str(path)])
    out, err = capsys.readouterr()
    assert "\\x1b[31m" in out + err
    assert "\x1b" not in out + err and "\u202e" not in out + err
