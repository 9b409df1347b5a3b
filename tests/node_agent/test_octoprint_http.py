"""The OctoPrint driver's REST calls are bounded: one deadline per exchange, a capped answer.

requests' timeout bounds each read, so an answer trickling one byte at a time never ended; without
streaming, a 200 MiB error page was read whole. The server is tests/node_agent/scripted_octoprint.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from node_agent.drivers.base import ConnectionFailed
from node_agent.drivers.octoprint import OctoPrintDriver
from node_agent.drivers.octoprint_http import MAX_ANSWER_BYTES
from tests.node_agent.scripted_octoprint import ScriptedOctoPrint


def _connect_fails(server: ScriptedOctoPrint, timeout_s: float) -> str:
    async def scenario() -> str:
        driver = OctoPrintDriver("op", server.url, "KEY", timeout_s=timeout_s)
        try:
            with pytest.raises(ConnectionFailed) as failed:
                await driver.connect()
            return str(failed.value)
        finally:
            await driver.close()

    try:
        return asyncio.run(scenario())
    finally:
        server.stop()


def test_an_answer_that_trickles_ends_at_the_deadline() -> None:
    stop = threading.Event()

    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        while not stop.is_set():  # one byte every 0.1 s: a per-read timeout never fires
            try:
                h.wfile.write(b" ")
                h.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)

    try:
        message = _connect_fails(ScriptedOctoPrint({("GET", "/api/version"): trickle}), timeout_s=1)
    finally:
        stop.set()
    assert "no whole answer to GET /api/version within 1 s" in message


def test_a_huge_error_page_is_not_read_whole() -> None:
    written = 0

    def huge(h: BaseHTTPRequestHandler) -> None:
        nonlocal written
        h.send_response(500)
        h.send_header("Content-Length", str(200 << 20))
        h.end_headers()
        chunk = b"x" * (1 << 20)
        try:
            for _ in range(200):
                h.wfile.write(chunk)
                written += len(chunk)
        except OSError:
            pass

    message = _connect_fails(ScriptedOctoPrint({("GET", "/api/version"): huge}), timeout_s=30)
    assert "HTTP 500: xxx" in message
    assert written < 32 << 20, f"the driver read {written >> 20} MiB of a 200 MiB error page"


def test_a_huge_answer_is_refused() -> None:
    def huge(h: BaseHTTPRequestHandler) -> None:
        ScriptedOctoPrint.answer(h, 200, b'{"api": "' + b"x" * (2 * MAX_ANSWER_BYTES) + b'"}')

    message = _connect_fails(ScriptedOctoPrint({("GET", "/api/version"): huge}), timeout_s=30)
    assert f"the answer to GET /api/version is larger than {MAX_ANSWER_BYTES} bytes" in message
