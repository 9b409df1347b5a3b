"""The operator's line to the running daemon: a unix socket (0600) speaking JSON lines.

One request a line, one answer a line::

    {"cmd": "status"}
    {"cmd": "bed_clear", "printer": "mk3"}
    {"cmd": "outcome", "job": "J", "outcome": "success", "reason": "", "notes": ""}
    {"cmd": "printer", "printer": "mk3", "mode": "maintenance"}

    {"ok": true, "result": {...}}    or    {"ok": false, "error": "what went wrong and what to do"}

The socket lives in the node's state directory, readable only by the daemon's user;
:func:`request` is the blocking client ``spime-node status`` and friends use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "MAX_REQUEST_BYTES",
    "ControlServer",
    "Controls",
    "NoDaemon",
    "RequestTooLarge",
    "control_path",
    "request",
]

MAX_REQUEST_BYTES = 64 * 1024
SOCKET_NAME = "control.sock"

log = logging.getLogger("spime-node")


class NoDaemon(Exception):
    """No daemon answers on the control socket."""


class RequestTooLarge(ValueError):
    """The request is over the control socket's line limit; nothing was sent (the operator's
    text is too long, so retrying the same request cannot help)."""


class Controls(Protocol):
    """What the daemon offers the operator (``node_agent.worker.Worker``)."""

    async def status(self) -> dict[str, Any]: ...
    async def bed_clear(self, printer: str) -> dict[str, Any]: ...
    async def set_mode(self, printer: str, mode: str) -> dict[str, Any]: ...
    async def outcome(self, job_id: str, outcome: str, reason: str = "", notes: str = ""
                      ) -> dict[str, Any]: ...


def control_path(state_dir: Path) -> Path:
    """Where the daemon of a node with this state directory listens."""
    return state_dir / SOCKET_NAME


def _text(req: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = req.get(key, default)
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string")
    return value


def _dispatch(controls: Controls, req: Mapping[str, Any]) -> Awaitable[dict[str, Any]]:
    table: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "status": controls.status,
        "bed_clear": lambda: controls.bed_clear(_text(req, "printer")),
        "printer": lambda: controls.set_mode(_text(req, "printer"), _text(req, "mode")),
        "outcome": lambda: controls.outcome(_text(req, "job"), _text(req, "outcome"),
                                            _text(req, "reason", ""), _text(req, "notes", "")),
    }
    command = req.get("cmd")
    if not isinstance(command, str) or command not in table:
        raise ValueError(f"unknown command {command!r} (known: {', '.join(table)})")
    return table[command]()


class ControlServer:
    """Serves :class:`Controls` on a unix socket; ``errors`` are the exceptions whose
    message is shown to the operator as the answer."""

    def __init__(self, path: Path, controls: Controls,
                 errors: tuple[type[Exception], ...] = ()) -> None:
        self.path, self.controls, self.errors = path, controls, errors
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen (replacing a stale socket file of a dead daemon).

        Raises:
            OSError: another daemon already listens there, or the path is unusable.
        """
        if self.path.exists():
            if _alive(self.path):
                raise OSError(f"{self.path}: a spime-node daemon already runs for this state_dir")
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                           limit=MAX_REQUEST_BYTES)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        """Stop listening and remove the socket; idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(await self._answer(line)) + "\n").encode())
                await writer.drain()
        except ValueError:  # a line over the limit: the stream cannot find the next line
            with contextlib.suppress(ConnectionError):
                writer.write((json.dumps({"ok": False, "error": (
                    f"bad request: longer than {MAX_REQUEST_BYTES} bytes")}) + "\n").encode())
                await writer.drain()
        except ConnectionError:
            pass  # a client that went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise TypeError("a request is a JSON object")
            return {"ok": True, "result": await _dispatch(self.controls, req)}
        except RecursionError:
            return {"ok": False, "error": "bad request: nested too deep"}
        except (ValueError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        except self.errors as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a handler's bug must not end the daemon's answer loop
            log.exception("control request failed: %.200r", line)
            return {"ok": False, "error": f"the daemon failed on this request "
                                          f"({type(exc).__name__}); see its log"}


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def request(path: Path, payload: Mapping[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon and return its answer.

    Raises:
        RequestTooLarge: the request is over ``MAX_REQUEST_BYTES``; nothing was sent.
        NoDaemon: nothing listens on ``path``.
    """
    line = (json.dumps(dict(payload)) + "\n").encode()
    if len(line) > MAX_REQUEST_BYTES:
        raise RequestTooLarge(f"the request is {len(line)} bytes, over the daemon's limit of "
                              f"{MAX_REQUEST_BYTES} bytes; shorten its text (notes, reason)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoDaemon(str(path)) from exc
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise NoDaemon(f"{path}: the daemon closed the connection")
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
