"""The control socket answers every request line, and the operator's terminal sees no
control sequence from what the daemon reports."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node_agent.cli import run
from node_agent.control import (
    MAX_REQUEST_BYTES,
    ControlServer,
    NoDaemon,
    RequestTooLarge,
    control_path,
    request,
)
from tests.node_agent.test_cli_hostile import ROOT
from tests.node_agent.test_daemon import write_config

ESC = "\x1b]0;OWNED\x07\x1b[2J\u202e\x9b"


class _Controls:
    async def status(self) -> dict[str, Any]:
        return {"node": "n" + ESC, "hub": "h" + ESC, "online": False, "draining": False,
                "outbox": 0, "printers": [{
                    "name": "p" + ESC, "model": "m", "phase": "idle", "mode": "auto",
                    "bed_clear": True, "job": "", "percent": 0.0, "layer": None,
                    "hotend_c": None, "bed_c": None}],
                "jobs": [{"job": "j" + ESC, "state": "failed", "design": "d" + ESC,
                          "printer": "p", "reason": "r" + ESC}]}

    async def bed_clear(self, printer: str) -> dict[str, Any]:
        raise KeyError(printer)  # a handler bug

    async def set_mode(self, printer: str, mode: str) -> dict[str, Any]:
        return {}

    async def outcome(self, job_id: str, outcome: str, reason: str = "", notes: str = ""
                      ) -> dict[str, Any]:
        return {"job": job_id}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Path]:
    config = write_config(tmp_path, "/dev/null")
    server = ControlServer(control_path(tmp_path / "state"), _Controls(), ())
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield config
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    loop.close()


def _raw(path: Path, line: bytes) -> dict[str, Any]:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer after {data!r}"
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


@pytest.mark.parametrize(("line", "words"), [
    (b"[" * 60000 + b"\n", "too deep"),
    (b"{" * 30000 + b"\n", "bad request"),
    (b"x" * (MAX_REQUEST_BYTES + 10) + b"\n", "longer than"),
    (b'{"cmd": "bed_clear", "printer": "zz"}\n', "KeyError"),
])
def test_every_request_line_gets_an_answer(daemon: Path, line: bytes, words: str) -> None:
    path = daemon.parent / "state" / "control.sock"
    answer = _raw(path, line)
    assert answer["ok"] is False and words in answer["error"]
    assert request(path, {"cmd": "outcome", "job": "J", "outcome": "success"})["ok"] is True


def test_an_oversized_request_is_refused_before_sending(tmp_path: Path) -> None:
    with pytest.raises(RequestTooLarge, match="shorten"):
        request(tmp_path / "none.sock", {"cmd": "outcome", "notes": "n" * MAX_REQUEST_BYTES})
    with pytest.raises(NoDaemon):
        request(tmp_path / "none.sock", {"cmd": "status"})


def test_the_cli_says_the_notes_are_too_long_not_that_no_daemon_runs(daemon: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run(["outcome", "J", "success", "--notes", "n" * 70000, "--config", str(daemon)],
               lambda target: None, stdout=out, stderr=err)  # type: ignore[arg-type,return-value]
    assert code == 2 and "limit" in err.getvalue() and "no spime-node daemon" not in err.getvalue()


def test_status_reaches_the_terminal_escaped(daemon: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run(["status", "--config", str(daemon)], lambda target: None,  # type: ignore[arg-type,return-value]
               stdout=out, stderr=err) == 0
    text = out.getvalue()
    assert "OWNED" in text and "\\x1b" in text
    for char in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert char not in text


@pytest.mark.parametrize("as_json", [False, True])
def test_status_into_a_closed_pipe_exits_quietly(daemon: Path, as_json: bool) -> None:
    read, write = os.pipe()
    os.close(read)  # `spime-node status | head -0`: the reader is gone before the answer comes
    try:
        done = subprocess.run([sys.executable, "-m", "node_agent", "status", "--config", str(daemon),
                               *(["--json"] if as_json else [])], cwd=ROOT, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write)
    assert done.returncode == 1 and done.stderr == ""
