"""Bounds on what OctoPrint's push socket reads: the opening handshake's answer, then frames and messages.

The handshake: websocket-client reads the HTTP answer's status line and headers a byte at a time,
with no limit on their count or length and, by default, no timeout; a redirect opens a new
connection. :func:`open_push_socket` opens the TCP (and, for ``wss://``, TLS) connection itself
and hands it to the library, which then reads through it: until the blank line that ends the
headers, a :class:`HandshakeGauge` counts lines and bytes and a deadline bounds the time, and a
redirect is refused (the new connection would be the library's own, unbounded). The refusal is a
websocket error raised inside the library's read: it ends the connection and the driver's
``connect()`` reports it (:class:`PushHandshakeRefused` names the limit).

Frames and messages:
websocket-client (under octoprint_client's ``SocketClient``) has no option for one: it reads the
length a frame header announces (up to 2**63 bytes), then that many bytes into memory, and joins
continuation frames into one message without bound. A broken or hostile server could make the
agent hold any amount. :func:`cap_frames` swaps an open connection's frame reader and message
joiner for ones that refuse a frame whose header announces more than the cap (before its payload
is read) and a message that would grow past it. The refusal is a websocket error: the library ends
the connection, the driver counts the push socket lost (a running job fails, retryable) and its
next ``connect()`` opens a new one.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websocket

__all__ = [
    "MAX_PUSH_MESSAGE_BYTES",
    "HandshakeGauge",
    "HandshakeLimits",
    "PushHandshakeRefused",
    "PushMessageTooLarge",
    "cap_frames",
    "open_push_socket",
]

#: Largest push frame or message read. OctoPrint's largest, the ``history`` sent on connect
#: (temperature history and terminal log), is a few hundred KiB.
MAX_PUSH_MESSAGE_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class HandshakeLimits:
    """What OctoPrint's answer to the push socket's opening handshake may take. OctoPrint (Tornado)
    answers with a status line and about six headers in some 200 bytes; a reverse proxy adds a few.

    Attributes:
        max_lines: the status line and the header lines.
        max_bytes: all of them, line ends included.
        timeout_s: from the TCP connection to the blank line that ends the headers (TLS included).
    """

    max_lines: int = 100
    max_bytes: int = 32 << 10
    timeout_s: float = 10.0


class PushHandshakeRefused(websocket.WebSocketException):
    """OctoPrint's answer to the push socket's handshake broke a limit or redirected: the server (or
    what stands in front of it) is at fault, and a retry meets the same answer until it is fixed."""


class HandshakeGauge:
    """Counts the handshake answer's bytes as they are read, sans-IO: :meth:`feed` raises once a
    limit is broken; :attr:`done` once the blank line that ends the headers arrived."""

    def __init__(self, limits: HandshakeLimits) -> None:
        self.limits = limits
        self.done = False
        self.refused: PushHandshakeRefused | None = None
        self._lines = 0
        self._bytes = 0
        self._line = bytearray()  # the line read so far (at most max_bytes)

    def feed(self, data: bytes) -> None:
        """Count bytes read from the server.

        Raises:
            PushHandshakeRefused: too many lines or bytes, or a redirect (and every call after one).
        """
        if self.refused is not None:
            raise self.refused
        for byte in data:  # the library reads a byte at a time here: data is short
            if self.done:
                return
            self._take(byte)

    def _take(self, byte: int) -> None:
        self._bytes += 1
        if self._bytes > self.limits.max_bytes:
            self._refuse(f"its headers went past {self.limits.max_bytes} bytes")
        if byte != 0x0A:
            self._line.append(byte)
            return
        line, self._line = bytes(self._line).strip(), bytearray()
        if not line:
            self.done = True
            return
        self._lines += 1
        if self._lines > self.limits.max_lines:
            self._refuse(f"it sent more than {self.limits.max_lines} header lines")
        if self._lines == 1 and line.split(b" ", 2)[1:2] in ([b"301"], [b"302"], [b"303"], [b"307"], [b"308"]):
            self._refuse(f"it redirected ({line[:80].decode('latin-1')}); set the printer's url to where "
                         "OctoPrint really is")

    def _refuse(self, why: str) -> None:
        self.refused = PushHandshakeRefused(f"OctoPrint's answer to the push socket's handshake was refused: {why}")
        raise self.refused


class _Gauged:
    """A socket whose reads go through a gauge and a deadline until the handshake's headers ended."""

    gauge: HandshakeGauge | None = None
    deadline = 0.0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        gauge = self.gauge
        if gauge is None or gauge.done:
            return super().recv(bufsize, flags)  # type: ignore[misc,no-any-return]
        if gauge.refused is not None:
            raise gauge.refused
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self.settimeout(remaining)  # type: ignore[attr-defined]
            data: bytes = super().recv(bufsize, flags)  # type: ignore[misc]
        except TimeoutError as exc:
            gauge.refused = PushHandshakeRefused(
                "OctoPrint's answer to the push socket's handshake was refused: it did not end within "
                f"{gauge.limits.timeout_s:g} s")
            raise gauge.refused from exc
        gauge.feed(data)
        if gauge.done:
            self.settimeout(None)  # frames: the driver's silence check bounds them
        return data


class _GaugedTCP(_Gauged, socket.socket):
    pass


class _GaugedTLS(_Gauged, ssl.SSLSocket):  # type: ignore[misc]  # recv(buflen, flags): same call
    pass


def open_push_socket(url: str, limits: HandshakeLimits | None = None) -> socket.socket:
    """Connect to a ``ws://`` or ``wss://`` URL's host, for ``WebSocketApp(socket=...)``.

    TLS verifies the server as websocket-client does (the system's CAs, or the file or directory
    in ``WEBSOCKET_CLIENT_CA_BUNDLE``).

    Raises:
        OSError: the host is unreachable or refused (``ssl.SSLError`` for TLS).
    """
    limits = limits or HandshakeLimits()
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    deadline = time.monotonic() + limits.timeout_s
    raw = socket.create_connection((parts.hostname or "", parts.port or (443 if secure else 80)), limits.timeout_s)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock: _Gauged
        if secure:
            context = _tls_context()
            context.sslsocket_class = _GaugedTLS
            sock = context.wrap_socket(raw, server_hostname=parts.hostname)  # type: ignore[assignment]
        else:
            sock = _GaugedTCP(raw.family, raw.type, raw.proto, fileno=raw.detach())
    except BaseException:
        raw.close()
        raise
    sock.gauge, sock.deadline = HandshakeGauge(limits), deadline
    return sock  # type: ignore[return-value]


def _tls_context() -> ssl.SSLContext:
    bundle = os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE") or ""
    if os.path.isfile(bundle):
        return ssl.create_default_context(cafile=bundle)
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context()


class PushMessageTooLarge(websocket.WebSocketPayloadException):
    """The server announced or sent a frame or message larger than the cap."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"OctoPrint sent a push frame or message of {size} bytes; "
                         f"at most {limit} are read")


class _Cap:
    """The limit, and the refusal once one happened: the stream is out of step after it (a
    payload left unread), so every later read fails too, and the library's close handshake,
    which reads on until a close frame, ends at once instead of reading the payload."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.refused: PushMessageTooLarge | None = None

    def check(self, size: int) -> None:
        if self.refused is None and size > self.limit:
            self.refused = PushMessageTooLarge(size, self.limit)
        if self.refused is not None:
            raise self.refused


class _CappedFrames(websocket.frame_buffer):
    def __init__(self, recv: Any, skip_utf8_validation: bool, cap: _Cap) -> None:
        super().__init__(recv, skip_utf8_validation)
        self.cap = cap

    def recv_frame(self) -> Any:
        self.cap.check(0)
        return super().recv_frame()

    def recv_length(self) -> None:
        super().recv_length()
        self.cap.check(self.length or 0)


class _CappedMessages(websocket.continuous_frame):
    def __init__(self, fire_cont_frame: bool, skip_utf8_validation: bool, cap: _Cap) -> None:
        super().__init__(fire_cont_frame, skip_utf8_validation)
        self.cap = cap

    def add(self, frame: Any) -> None:
        joined = len(self.cont_data[1]) if self.cont_data else 0
        try:
            self.cap.check(joined + len(frame.data))
        finally:
            if self.cap.refused is not None:
                self.cont_data = None
        super().add(frame)


def cap_frames(connection: Any, limit: int = MAX_PUSH_MESSAGE_BYTES) -> None:
    """Cap an open ``websocket.WebSocket`` before its first frame is read (``on_open``).

    Raises:
        AttributeError: the connection is not websocket-client's ``WebSocket`` as known here.
    """
    frames, messages, cap = connection.frame_buffer, connection.cont_frame, _Cap(limit)
    connection.frame_buffer = _CappedFrames(frames.recv, frames.skip_utf8_validation, cap)
    connection.cont_frame = _CappedMessages(messages.fire_cont_frame, messages.skip_utf8_validation, cap)
