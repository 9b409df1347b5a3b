"""A scripted OctoPrint on 127.0.0.1 for what a real one never does: wrong-typed pushes, silence.

The real server (tests/fixtures/octoprint_server.py) is the reference for everything it can show;
this stand-in serves the REST calls the driver makes and a SockJS websocket push socket whose
messages the test writes (``push``), so a broken or hostile server can be played: a temperature
as a string, a socket that stays open and says nothing, an answer that trickles or never ends.
``routes`` replaces the answer to ``(METHOD, path prefix)`` with a handler that writes its own;
``heartbeat_s`` sends SockJS heartbeats (``h``) until ``freeze()``; ``tls`` (certificate and key
files) serves https:// and wss://; ``handshake`` answers the push socket's opening request itself
(with the raw connection: a hostile status line and headers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["IDLE", "PRINTING", "ScriptedOctoPrint", "raw_frame"]

IDLE: dict[str, Any] = {"state": {"text": "Operational", "flags": {"operational": True, "ready": True}},
                        "temps": [], "progress": {}}
PRINTING: dict[str, Any] = {"state": {"text": "Printing", "flags": {"operational": True, "printing": True}},
                            "temps": [], "progress": {"filepos": 10, "completion": 1.0}}
Handler = Callable[[BaseHTTPRequestHandler], None]


def _frame(text: str) -> bytes:
    return raw_frame(text.encode())


def raw_frame(data: bytes, opcode: int = 0x1, fin: bool = True, length: int | None = None) -> bytes:
    """One unmasked server frame; ``length`` announces another size than ``data`` has (a lie)."""
    first, size = (0x80 if fin else 0) | opcode, len(data) if length is None else length
    if size < 126:
        return struct.pack("!BB", first, size) + data
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + data
    return struct.pack("!BBQ", first, 127, size) + data


class ScriptedOctoPrint:
    """REST + push socket; ``push(kind, msg)`` sends ``a[{kind: msg}]`` on every open socket."""

    def __init__(self, routes: dict[tuple[str, str], Handler] | None = None,
                 first_current: dict[str, Any] | None = None, heartbeat_s: float | None = None,
                 tls: tuple[Path, Path] | None = None,
                 handshake: Callable[[socket.socket], None] | None = None) -> None:
        self.routes = dict(routes or {})
        self.handshake = handshake
        self.frozen = threading.Event()
        self.first_current = IDLE if first_current is None else first_current
        self.sockets: list[socket.socket] = []
        self.requests: list[tuple[str, str]] = []
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                owner.requests.append((self.command, self.path))
                if "/sockjs/" in self.path and self.headers.get("Upgrade", "").lower() == "websocket":
                    if owner.handshake is not None:
                        self.close_connection = True
                        return owner.handshake(self.connection)
                    return owner._websocket(self)
                for (method, prefix), handler in owner.routes.items():
                    if method == self.command and self.path.startswith(prefix):
                        return handler(self)
                owner._default(self)

            do_GET = do_POST = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        if heartbeat_s is not None:
            threading.Thread(target=self._heartbeats, args=(heartbeat_s,), daemon=True).start()

    def _heartbeats(self, every_s: float) -> None:
        while not self.frozen.wait(every_s):
            self.push_raw("h")

    def freeze(self) -> None:
        """From now on the server says nothing more (its sockets stay open)."""
        self.frozen.set()

    @staticmethod
    def answer(h: BaseHTTPRequestHandler, status: int, body: bytes = b"") -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _default(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)  # the tests' uploads are small
        path = h.path
        if path.startswith("/api/version"):
            return self.answer(h, 200, b'{"api": "0.1", "server": "1.11.0"}')
        if path.startswith("/api/login"):
            return self.answer(h, 200, b'{"name": "_api", "session": "s"}')
        if h.command == "POST" and path.rstrip("/") == "/api/files/local":
            return self.answer(h, 201, b'{"files": {"local": {"path": "job.gcode"}}}')
        self.answer(h, 204)

    def _websocket(self, h: BaseHTTPRequestHandler) -> None:
        key = h.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        h.send_response(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
        h.end_headers()
        h.wfile.flush()
        sock = h.connection
        self.sockets.append(sock)
        sock.sendall(_frame("o"))
        sock.sendall(_frame("a" + json.dumps([{"connected": {"version": "1.11.0"}}])))
        sock.sendall(_frame("a" + json.dumps([{"current": self.first_current}])))
        try:  # read (and ignore) what the client sends until it goes away
            while sock.recv(65536):
                pass
        except OSError:
            pass
        h.close_connection = True

    def push(self, kind: str, msg: Any) -> None:
        self.push_raw("a" + json.dumps([{kind: msg}]))

    def push_raw(self, text: str) -> None:
        self.push_bytes(_frame(text))

    def push_bytes(self, data: bytes) -> None:
        """Bytes as they are on every open push socket (frames built with ``raw_frame``)."""
        for sock in list(self.sockets):
            try:
                sock.sendall(data)
            except OSError:
                pass

    def stop(self) -> None:
        self.frozen.set()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.httpd.shutdown()
        self.httpd.server_close()
