"""Bounded HTTP for the OctoPrint driver: one deadline per exchange, a capped answer, no redirects.

requests' ``timeout`` bounds each socket read, not the exchange: a server that sends one byte
every few seconds keeps a call (and the worker thread running it, which cannot be cancelled)
busy for hours, and without ``stream=True`` a 200 MiB error page is read whole. Here every
exchange has a deadline: a timer shuts the exchange's sockets down when it passes, so a blocked
read ends at once. The answer is streamed and capped (``MAX_ANSWER_BYTES``; an error page is cut
at ``MAX_ERROR_BYTES``, only its start is shown). Redirects are answered, never followed:
requests would send the X-Api-Key header along to any host a redirect names.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Self

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

__all__ = ["MAX_ANSWER_BYTES", "MAX_ERROR_BYTES", "AnswerTooLarge", "AnswerTooSlow", "send"]

#: Largest answer read from OctoPrint (its JSON answers are a few KiB).
MAX_ANSWER_BYTES = 1 << 20
#: Largest part of an error answer read (only its first 300 characters are shown).
MAX_ERROR_BYTES = 64 << 10
_CHUNK = 16 << 10

_current = threading.local()  # the deadline of the exchange running in this thread


class AnswerTooSlow(requests.Timeout):
    """The exchange did not end within its deadline (however the bytes trickled)."""


class AnswerTooLarge(requests.RequestException):
    """The answer is larger than the driver reads."""


class _Deadline:
    """Shuts down the sockets of one exchange when its time is up."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.deadline = None

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # a read blocked in another thread returns at once


def _watch(sock: socket.socket | None) -> None:
    """Put a connection's new socket under the deadline of the exchange running in this thread."""
    deadline: _Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _Watched(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)


class _WatchedTls(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)


class _Pool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _Watched


class _TlsPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedTls


class _Adapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


def send(request: requests.PreparedRequest, deadline_s: float) -> requests.Response:
    """Send ``request`` and read its answer, all within ``deadline_s``; never follows a redirect.

    Args:
        request: the prepared request (with the API key header).
        deadline_s: the whole exchange (connect, send, answer) must end within this.

    Raises:
        AnswerTooSlow: the deadline passed.
        AnswerTooLarge: a successful (2xx) answer is larger than ``MAX_ANSWER_BYTES``; any
            other answer is cut at ``MAX_ERROR_BYTES`` instead.
        requests.RequestException: the exchange failed (unreachable, reset, ...).
    """
    with requests.Session() as session, _Deadline(deadline_s) as deadline:
        for prefix in ("http://", "https://"):
            session.mount(prefix, _Adapter(max_retries=0))
        try:
            response = session.send(request, timeout=deadline_s, allow_redirects=False, stream=True)
            with response:
                _read_capped(response, response.ok and not response.is_redirect)
        except requests.RequestException as exc:
            if deadline.expired:
                raise AnswerTooSlow(f"no whole answer to {request.method} {request.path_url} "
                                    f"within {deadline_s:g} s") from exc
            raise
    return response


def _read_capped(response: requests.Response, strict: bool) -> None:
    limit = MAX_ANSWER_BYTES if strict else MAX_ERROR_BYTES
    body = bytearray()
    for chunk in response.iter_content(_CHUNK):
        body += chunk
        if len(body) > limit:
            if strict:
                raise AnswerTooLarge(f"the answer to {response.request.method} "
                                     f"{response.request.path_url} is larger than {limit} bytes")
            del body[limit:]
            break
    response._content = bytes(body)  # what response.content would have read, capped
