"""An OctoPrint address that answers with a redirect: the driver refuses it, naming where it points, and
the API key goes nowhere else (requests re-sends X-Api-Key to any host a redirect names). Two small
HTTP servers on 127.0.0.1 stand in for a spoofed OctoPrint and the host it sends the key to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from node_agent.drivers.base import ConnectionFailed
from node_agent.drivers.octoprint import OctoPrintDriver


class _Server:
    """Answers every request with ``status`` and ``location``, and keeps the API keys it was sent."""

    def __init__(self, status: int = 404, location: str = "") -> None:
        self.keys: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.keys.append(self.headers.get("X-Api-Key", ""))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def thief() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.stop()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_refused_and_the_api_key_stays_home(thief: _Server, status: int) -> None:
    spoofed = _Server(status, f"{thief.url}/api/version")

    async def connect() -> str:
        driver = OctoPrintDriver("op", spoofed.url, "SECRET-KEY", timeout_s=5)
        try:
            with pytest.raises(ConnectionFailed) as refused:
                await asyncio.wait_for(driver.connect(), 30)
            return str(refused.value)
        finally:
            await driver.close()

    try:
        message = asyncio.run(connect())
    finally:
        spoofed.stop()
    assert spoofed.keys and spoofed.keys[0] == "SECRET-KEY"
    assert thief.keys == []
    assert f"redirected /api/version to '{thief.url}/api/version'" in message
    assert "put the final address into the printer config" in message
