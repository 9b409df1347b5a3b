"""The OctoPrint driver: a thin adapter over ``octoprint_client`` and a real server.

REST calls (connect the printer, upload, select and start, pause/resume/cancel,
send commands) run in a worker thread; everything the driver learns about the
printer (state, progress, temperatures, job end) arrives on OctoPrint's push
socket (SockJS ``/sockjs/websocket``, ``current`` and ``event`` messages), so the
driver never polls. ``requests``/``websocket`` exceptions are translated into the
``DriverError`` vocabulary at this boundary and never escape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import octoprint_client
import requests

from node_agent.busy import BusyLimits
from node_agent.drivers import octoprint_http
from node_agent.drivers.base import (
    AuthenticationFailed,
    ConnectionFailed,
    DriverError,
    JobRejected,
    PrinterNotReady,
    PrinterPhase,
    PrinterStatus,
    PrintOutcome,
    PrintResult,
)
from node_agent.drivers.multipart import MultipartBody
from node_agent.drivers.octoprint_push import (
    EVENT_PHASES,
    error_text,
    mapping,
    phase_from_state,
    progress,
    temperatures,
    text,
)
from node_agent.drivers.octoprint_socket import HandshakeLimits, cap_frames, open_push_socket
from node_agent.jobfile import GcodeFileError, SafeJob, VerifiedReader

__all__ = ["DEFAULT_END_SEQUENCE", "OctoPrintDriver"]

log = logging.getLogger(__name__)

#: Run after a cancel: heaters off, fan off, lift Z 10 mm (relative), motors off
#: (the node config's ``end_gcode`` default).
DEFAULT_END_SEQUENCE: tuple[str, ...] = (
    "M104 S0", "M140 S0", "M107", "G91", "G1 Z10", "G90", "M84",
)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_SOCKET_JOIN_S = 5.0
_UPLOAD_MIN_BYTES_PER_S = 50_000
_BUSY_PHASES = (PrinterPhase.PRINTING, PrinterPhase.PAUSED, PrinterPhase.CANCELLING)

class _JobIndex:
    """Turns OctoPrint's ``filepos`` into commands done and the layer (bounded tables)."""

    def __init__(self, job: SafeJob) -> None:
        self._job = job
        self.size = job.size

    def lines_done(self, filepos: int) -> int:
        return self._job.commands_before(filepos)

    def layer_at(self, filepos: int) -> int | None:
        return self._job.layer_at(max(0, self.lines_done(filepos) - 1))

    def command_at(self, filepos: int) -> str:
        """The command OctoPrint read last when it reports ``filepos`` (what the printer works on)."""
        return self._job.command_before(filepos)


@dataclass(slots=True)
class _Job:
    name: str
    path: str
    index: _JobIndex
    resends_before: int
    started: float
    done: asyncio.Future[PrintResult]
    filepos: int = 0
    moved_at: float = 0.0  # time.monotonic() when OctoPrint's file position last moved


class _Client(octoprint_client.Client):  # type: ignore[misc]
    """octoprint_client's client, but every exchange is bounded (``octoprint_http``): one deadline,
    a capped answer, and a redirect is answered, never followed (requests would send the X-Api-Key
    header along to any host the redirect names; it strips only Authorization)."""

    def request(self, method: str, path: str, data: Any = None, files: Any = None, encoding: Any = None,
                params: Any = None, timeout: float | None = None) -> requests.Response:
        request = self.prepare_request(method, path, params=params)
        if data or files:
            if encoding == "json":
                request.prepare_body(None, None, json=data)
            else:
                request.prepare_body(data, files=files)
        return octoprint_http.send(request, 30 if timeout is None else timeout)


class OctoPrintDriver:
    """One printer behind a real OctoPrint server (``PrinterDriver``)."""

    def __init__(
        self,
        name: str,
        url: str,
        api_key: str,
        *,
        port: str = "AUTO",
        baud: int | None = None,
        timeout_s: float = 10.0,
        push_silence_s: float = 60.0,
        busy_limits: BusyLimits | None = None,
        end_sequence: Sequence[str] = DEFAULT_END_SEQUENCE,
    ) -> None:
        """Describe the printer; no I/O happens before ``connect()``.

        ``push_silence_s``: OctoPrint pushes ``current`` every few seconds and a SockJS
        heartbeat every 25 s; a push socket silent for longer is dead (a frozen server or
        network), which fails a running job (retryable) and shows the printer disconnected.
        ``busy_limits``: how long OctoPrint's file position may stay put on one command (a heater
        that never reaches its target, a probe that never triggers: OctoPrint keeps pushing
        ``current`` all the while); past it the job fails (retryable) and OctoPrint is asked to
        cancel it. A paused job may stay put ``operator_s``.

        Raises:
            ValueError: the URL is not ``http(s)://host[:port]`` or a timeout is not positive.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"printer {name!r}: OctoPrint url {url!r} must look like http://host:port"
            )
        if timeout_s <= 0:
            raise ValueError(f"printer {name!r}: timeout_s must be > 0, got {timeout_s}")
        if push_silence_s <= 0:
            raise ValueError(f"printer {name!r}: push_silence_s must be > 0, got {push_silence_s}")
        self.name = name
        self._url = url.rstrip("/")
        self._client = _Client(self._url, api_key)
        self._port, self._baud, self._timeout_s = port, baud, timeout_s
        self._end_sequence = tuple(end_sequence)
        self._status = PrinterStatus(phase=PrinterPhase.DISCONNECTED)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket: Any = None
        self._socket_seen = False
        self._socket_fault: str | None = None  # why the push socket failed, until it is replaced
        self._handshake: Any = None  # the push socket's own connection (octoprint_socket.open_push_socket)
        self._push_silence_s = push_silence_s
        self._busy_limits = busy_limits or BusyLimits()
        self._last_push = 0.0  # time.monotonic() of the last frame on the push socket
        self._closing = False
        self._tick = asyncio.Event()
        self._job: _Job | None = None
        self._stop_reason: str | None = None
        self._state_id = "OFFLINE"  # OctoPrint's own state name, from PrinterStateChanged
        self._resends_total = 0
        self._subscribers: set[asyncio.Queue[PrinterStatus | None]] = set()

    # -- PrinterDriver ---------------------------------------------------------------

    async def connect(self) -> None:
        """Check the server and key, open the push socket and connect the printer.

        Raises:
            ConnectionFailed: OctoPrint is unreachable or the printer does not come up.
            AuthenticationFailed: OctoPrint refused the API key.
            PrinterNotReady: OctoPrint reports the printer in an error state.
        """
        self._loop = asyncio.get_running_loop()
        self._closing = False
        if self._silent():
            await self._drop_socket(self._silence())
        await self._call("get", "/api/version")
        if self._socket is None:
            self._socket = await asyncio.to_thread(self._thd_open_socket)
        await self._wait_for(lambda: self._socket_seen or self._refusal() is not None, "the first push message")
        if (refusal := self._refusal()) is not None and not self._socket_seen:
            await self._drop_socket(f"{refusal} (OctoPrint at {self._url})")
            raise ConnectionFailed(f"printer {self.name!r}: {refusal} (OctoPrint at {self._url})")
        self._raise_if_error()
        connecting = self._status.phase is PrinterPhase.DISCONNECTED
        if connecting:
            await self._request_connection()
        await self._wait_for(
            lambda: self._status.phase not in (PrinterPhase.DISCONNECTED, PrinterPhase.CONNECTING),
            f"the printer to connect on port {self._port!r}",
        )
        self._raise_if_error()
        if connecting:  # OctoPrint pushes the M115 report (FirmwareData) just after "Operational"
            await self._wait_for(lambda: self._status.firmware is not None, "the firmware name",
                                 quiet=True)

    async def close(self) -> None:
        """Close the push socket; the printer stays connected to OctoPrint. Idempotent."""
        self._closing = True
        sock, self._socket = self._socket, None
        if sock is not None:
            await asyncio.to_thread(self._thd_close_socket, sock)
        self._socket_seen = False
        self._fail_job("the driver was closed", retryable=True)
        self._set_status(replace(self._status, phase=PrinterPhase.DISCONNECTED))
        for queue in list(self._subscribers):
            queue.put_nowait(None)

    def status(self) -> PrinterStatus:
        """Return the latest snapshot pushed by OctoPrint (no I/O); disconnected once the push socket fell silent."""
        if self._silent():
            return replace(self._status, phase=PrinterPhase.DISCONNECTED, error=self._silence())
        return self._status

    async def print_job(self, job: SafeJob) -> PrintResult:
        """Upload the checked file (streamed, its SHA-256 verified), start it, wait for its end.

        Raises:
            PrinterNotReady: not connected, in an error state, or another job is running.
            JobRejected: the job holds no G-code command, or the file changed since
                its check (the upload is deleted, nothing is printed).
            ConnectionFailed: OctoPrint became unreachable while starting the job.
        """
        self._require_idle()
        name = job.name
        if not job.commands:
            raise JobRejected(f"job {name!r} holds no G-code command; nothing to print")
        index = _JobIndex(job)
        path = await self._upload(job)
        now = time.monotonic()
        started = _Job(name, path, index, self._resends_total, now, asyncio.get_running_loop().create_future(),
                       moved_at=now)
        return await self._run(started, job.commands)

    async def _run(self, job: _Job, commands: int) -> PrintResult:
        name, path = job.name, job.path
        self._job = job
        self._set_status(replace(self._status, job_name=name, lines_total=commands,
                                 lines_sent=0, bytes_sent=0, resends=0, percent=0.0, layer=None))
        try:
            await self._command(f"/api/files/local/{path}", "select", {"print": True})
        except DriverError:
            self._job = None
            raise
        await self._wait_for(lambda: job.done.done() or self._status.phase is not PrinterPhase.IDLE,
                             "the job to start", quiet=True)
        if not job.done.done() and self._status.phase is PrinterPhase.IDLE:
            self._fail_job("OctoPrint accepted the job but did not start it", retryable=True)
        result = await self._job_end(job)
        await self._wait_for(lambda: self._status.phase not in _BUSY_PHASES,
                             "OctoPrint to finish the job", quiet=True)
        await self._delete_quietly(path)
        return result

    async def _job_end(self, job: _Job) -> PrintResult:
        """Wait for the job's end; a push socket silent for ``push_silence_s`` fails it, and so does
        a file position that stays put longer than its command may take (``busy_limits``)."""
        while not job.done.done():
            if self._silent():
                await self._drop_socket(self._silence())
                break
            stuck, stuck_in_s = self._stuck(job)
            if stuck is not None:
                await self._give_up(stuck)
                break
            remaining = min(self._push_silence_s - (time.monotonic() - self._last_push), stuck_in_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(job.done), max(remaining, 0.05))
        return await job.done

    def _stuck(self, job: _Job) -> tuple[str | None, float]:
        """Why the job is stuck (None: it is not yet), and in how many seconds it would be."""
        still, limits = time.monotonic() - job.moved_at, self._busy_limits
        if still <= limits.command_s:  # no ceiling is shorter: the file is read only past it
            return None, limits.command_s - still
        command = job.index.command_at(job.filepos)
        limit = limits.operator_s if self._status.phase is PrinterPhase.PAUSED else limits.limit_s(command)
        if still <= limit:
            return None, limit - still
        return (f"OctoPrint read no further than {command or 'the start of the file'!r} for {still:.1f} s "
                f"(at most {limit:g} s for it) while the printer stayed connected: the printer is stuck "
                "(a heater that never reaches its target, a probe that never triggers); check it"), 0.0

    async def _give_up(self, reason: str) -> None:
        """Fail the running job as stuck and ask OctoPrint to cancel it (best effort)."""
        log.warning("printer %s: %s", self.name, reason)
        self._fail_job(reason, retryable=True)
        try:
            await self._command("/api/job", "cancel")
        except DriverError as exc:
            log.warning("printer %s: cancelling the stuck job failed: %s", self.name, exc)

    def _silent(self) -> bool:
        return self._socket is not None and time.monotonic() - self._last_push > self._push_silence_s

    def _silence(self) -> str:
        return (f"OctoPrint at {self._url} pushed nothing for {self._push_silence_s:g} s, not even "
                "its heartbeat: the server or the network is down")

    async def _drop_socket(self, reason: str) -> None:
        sock, self._socket, self._socket_seen = self._socket, None, False  # connect() opens a new one
        log.warning("printer %s: %s", self.name, reason)
        self._fail_job(reason, retryable=True)
        self._set_status(replace(self._status, phase=PrinterPhase.DISCONNECTED, error=reason))
        if sock is not None:
            await asyncio.to_thread(self._thd_close_socket, sock)

    async def pause(self) -> None:
        """Pause the running job and wait until OctoPrint reports it paused.

        Raises:
            PrinterNotReady: no job is printing.
        """
        await self._command("/api/job", "pause", {"action": "pause"})
        # "Pausing" lasts until the lines in flight are acknowledged; wait for "Paused"
        await self._wait_for(lambda: self._state_id == "PAUSED" or self._status.phase not in (
            PrinterPhase.PRINTING, PrinterPhase.PAUSED), "pause")

    async def resume(self) -> None:
        """Resume a paused job and wait until OctoPrint prints again.

        Raises:
            PrinterNotReady: no job is paused.
        """
        await self._command("/api/job", "pause", {"action": "resume"})
        await self._wait_for(lambda: self._status.phase is not PrinterPhase.PAUSED, "resume")

    async def cancel(self) -> None:
        """Cancel the job, wait for its end, then run the safe end sequence.

        Raises:
            PrinterNotReady: the printer is not connected.
        """
        job = self._job
        if job is None or job.done.done():
            return
        await self._command("/api/job", "cancel")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(job.done), self._timeout_s)
        await self._wait_for(lambda: self._status.phase not in _BUSY_PHASES, "cancel")
        if self._status.phase is PrinterPhase.IDLE:
            await self._send_commands(self._end_sequence)

    async def emergency_stop(self) -> None:
        """Send M112; OctoPrint sends it ahead of its queue and drops the connection.

        Raises:
            PrinterNotReady: the printer is not connected.
        """
        self._stop_reason = "emergency stop (M112)"  # the Disconnected event may come first
        try:
            await self._send_commands(["M112"])
        except DriverError:
            self._stop_reason = None
            raise
        self._fail_job("emergency stop (M112)", retryable=False)

    async def _send_commands(self, commands: Sequence[str]) -> None:
        """Send the driver's own commands (end sequence, M112) outside a job.

        Private on purpose: jobs reach the printer only as a checked ``SafeJob``.

        Raises:
            PrinterNotReady: the printer is not connected.
        """
        await self._call("post_json", "/api/printer/command", {"commands": list(commands)},
                         expect=(204,))

    async def updates(self) -> AsyncIterator[PrinterStatus]:
        """Yield a snapshot on every change pushed by OctoPrint, until ``close()``."""
        queue: asyncio.Queue[PrinterStatus | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            queue.put_nowait(self._status)
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._subscribers.discard(queue)

    # -- REST (worker thread) --------------------------------------------------------

    async def _call(self, method: str, path: str, *args: Any,
                    expect: tuple[int, ...] = (200,)) -> requests.Response:
        return await asyncio.to_thread(self._thd_call, method, path, args, expect)

    async def _command(self, path: str, command: str,
                       extra: Mapping[str, Any] | None = None) -> None:
        await self._call("post_command", path, command, dict(extra or {}), expect=(200, 204))

    def _thd_call(self, method: str, path: str, args: tuple[Any, ...],
                  expect: tuple[int, ...]) -> requests.Response:
        try:
            resp: requests.Response = getattr(self._client, method)(
                path, *args, timeout=self._timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionFailed(
                f"printer {self.name!r}: OctoPrint at {self._url} is unreachable ({exc}); "
                "check that it runs and that the url in the printer config is right"
            ) from exc
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"printer {self.name!r}: request to OctoPrint at {self._url} failed: {exc}"
            ) from exc
        return self._check(resp, path, expect)

    def _check(self, resp: requests.Response, path: str,
               expect: tuple[int, ...]) -> requests.Response:
        if resp.status_code in expect:
            return resp
        detail = resp.text.strip()[:300]
        if resp.is_redirect:  # never followed: the API key would go along to wherever it points
            raise ConnectionFailed(
                f"printer {self.name!r}: OctoPrint at {self._url} redirected {path} to "
                f"{resp.headers.get('Location', '?')[:200]!r} (HTTP {resp.status_code}); redirects are not "
                "followed, so that the API key goes nowhere else: put the final address into the printer config"
            )
        if resp.status_code in (401, 403):
            raise AuthenticationFailed(
                f"printer {self.name!r}: OctoPrint at {self._url} refused the API key "
                f"(HTTP {resp.status_code}); put a valid key (OctoPrint > Settings > "
                "Application Keys) into the printer config"
            )
        if resp.status_code == 409:
            raise PrinterNotReady(
                f"printer {self.name!r}: OctoPrint refused {path} in state "
                f"{self._status.phase.value!r}: {detail}"
            )
        raise ConnectionFailed(
            f"printer {self.name!r}: OctoPrint answered {path} with HTTP "
            f"{resp.status_code}: {detail}"
        )

    async def _request_connection(self) -> None:
        params: dict[str, Any] = {"port": self._port, "autoconnect": False}
        if self._baud is not None:
            params["baudrate"] = self._baud
        try:
            await self._command("/api/connection", "connect", params)
        except ConnectionFailed as exc:
            raise PrinterNotReady(
                f"printer {self.name!r}: OctoPrint cannot connect port {self._port!r}: {exc}"
            ) from exc

    async def _upload(self, job: SafeJob) -> str:
        file_name = f"{_UNSAFE_NAME.sub('_', job.name)[:60] or 'job'}-{uuid.uuid4().hex[:8]}.gcode"
        try:
            reader = job.open_bytes()
        except GcodeFileError as exc:
            raise JobRejected(f"job {job.name!r}: {exc}") from exc
        try:
            resp = await asyncio.to_thread(self._thd_upload, file_name, reader, job.size)
        finally:
            reader.close()
        try:
            path = str(resp.json()["files"]["local"]["path"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectionFailed(
                f"printer {self.name!r}: unexpected upload answer from OctoPrint: {resp.text[:200]}"
            ) from exc
        if not reader.verified():
            await self._delete_quietly(path)
            raise JobRejected(f"job {job.name!r}: {job.path} changed after the safety check; "
                              "nothing was printed, check it again")
        return path

    def _thd_upload(self, file_name: str, reader: VerifiedReader, size: int) -> requests.Response:
        body = MultipartBody(reader, file_name, size)
        request = self._client.prepare_request("POST", "/api/files/local")
        request.body = body
        request.headers["Content-Type"] = f"multipart/form-data; boundary={body.boundary}"
        request.headers["Content-Length"] = str(body.length)
        path = "/api/files/local"
        try:
            resp = octoprint_http.send(request, _upload_deadline_s(self._timeout_s, body.length))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionFailed(
                f"printer {self.name!r}: OctoPrint at {self._url} is unreachable ({exc}); "
                "check that it runs and that the url in the printer config is right"
            ) from exc
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"printer {self.name!r}: upload to OctoPrint at {self._url} failed: {exc}"
            ) from exc
        return self._check(resp, path, (201,))

    async def _delete_quietly(self, path: str) -> None:
        try:
            await self._call("delete", f"/api/files/local/{path}", expect=(204,))
        except DriverError as exc:
            log.warning("printer %s: could not delete %s from OctoPrint: %s", self.name, path, exc)

    # -- push socket (websocket thread -> event loop) --------------------------------

    def _thd_open_socket(self) -> Any:
        # Built here, not by octoprint_client's create_socket: that one always opens ws://
        # (the session key in clear text, and no connection at all to an https:// OctoPrint),
        # reads the push frames unchecked and logs in without a deadline.
        url = _socket_url(self._url)
        try:  # the handshake's answer is read through it, bounded (see octoprint_socket)
            self._handshake = open_push_socket(url, HandshakeLimits(timeout_s=self._timeout_s / 2))
        except OSError as exc:
            raise ConnectionFailed(f"printer {self.name!r}: cannot open OctoPrint's push socket at {url}: {exc}") from exc
        sock = octoprint_client.SocketClient(
            url, use_ssl=self._url.startswith("https:"), socket=self._handshake,
            on_open=self._thd_on_open,
            on_message=self._thd_on_frame,
            on_error=lambda _ws, err: self._post(self._on_socket_error, err),
            on_close=lambda _ws, *_close: self._post(self._on_socket_error, "closed"),
        )
        _accept_close_arguments(sock)
        self._last_push = time.monotonic()
        self._socket_fault = None
        sock.connect()
        return sock

    def _refusal(self) -> Exception | None:
        """Why the push socket's handshake was refused (set in the socket's thread), if it was."""
        gauge = getattr(self._handshake, "gauge", None)
        return None if gauge is None else gauge.refused

    def _thd_on_open(self, app: Any) -> None:
        """Cap frames and messages before the first is read (see octoprint_socket)."""
        try:
            cap_frames(app.sock)
        except AttributeError as exc:  # a websocket-client unlike the one capped here: no uncapped socket
            log.error("printer %s: cannot cap the push socket's frames (%s); closing it", self.name, exc)
            app.keep_running = False
            app.sock.close()

    def _thd_on_frame(self, ws: Any, frame: object) -> None:
        """One SockJS frame: ``o`` open, ``h`` heartbeat, ``a[...]``/``m...`` messages, ``c`` close."""
        if not isinstance(frame, str) or not frame:
            return
        self._last_push = time.monotonic()
        if frame[0] not in ("a", "m") or len(frame) < 2:
            return
        try:
            data = json.loads(frame[1:])
        except (ValueError, RecursionError) as exc:
            log.warning("printer %s: ignored an unreadable push frame from OctoPrint: %s", self.name,
                        str(exc)[:200])
            return
        for item in [data] if frame[0] == "m" else data if isinstance(data, list) else []:
            for kind, msg in mapping(item).items():
                if kind == "connected":
                    self._thd_login(ws)
                self._post(self._on_push, kind, msg)

    def _thd_login(self, ws: Any) -> None:
        """Passive login: the API key's user and a session key authenticate the push socket."""
        try:
            answer = mapping(self._thd_call("post_json", "/api/login", ({"passive": True},), (200,)).json())
        except (DriverError, ValueError) as exc:
            log.warning("printer %s: OctoPrint refused the push socket's login: %s", self.name, exc)
            return
        user, session = text(answer.get("name")), text(answer.get("session"))
        if user is None or session is None:
            log.warning("printer %s: OctoPrint's login answer has no name and session", self.name)
            return
        ws.send(json.dumps([json.dumps({"auth": f"{user}:{session}"})]))

    @staticmethod
    def _thd_close_socket(sock: Any) -> None:
        # SocketClient.disconnect() sends a close frame and then reads the reply in
        # this thread while the socket's own thread is blocked reading under the
        # same lock, so it can hang until the server next pushes something. Shutting
        # the TCP socket down ends the reader at once; the server just sees EOF.
        app = getattr(sock, "_ws", None)
        raw = getattr(getattr(app, "sock", None), "sock", None)
        if app is None or raw is None:
            sock.disconnect()
        else:
            app.keep_running = False
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
        thread = getattr(sock, "_thread", None)  # SocketClient keeps its runner thread here
        if thread is not None:
            thread.join(_SOCKET_JOIN_S)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(fn, *args)

    def _on_push(self, kind: str, msg: Any) -> None:
        # Every value is type-checked where it is read (octoprint_push); this guard only
        # keeps a mistake there from escaping into the event loop's callback.
        try:
            if kind in ("current", "history") and isinstance(msg, dict):
                self._socket_seen = True
                self._on_current(msg)
                self._wake()
            elif kind == "event" and isinstance(msg, dict):
                self._on_event(text(msg.get("type")) or "", mapping(msg.get("payload")))
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            log.warning("printer %s: ignored a malformed %s message from OctoPrint: %r",
                        self.name, kind, exc)

    def _on_socket_error(self, err: object) -> None:
        self._wake()  # connect() may be waiting on this socket's handshake
        if self._closing or self._socket is None:
            return
        log.warning("printer %s: OctoPrint push socket failed: %s", self.name, err)
        if isinstance(err, Exception):
            self._socket_fault = str(err)[:300]
        # A close arrives as "closed" (see _accept_close_arguments); a TypeError is how it
        # showed up before that wrapper, kept for sockets opened by other code paths.
        thread = getattr(self._socket, "_thread", None)
        if thread is None or not thread.is_alive() or isinstance(err, TypeError) or (
                err == "closed"):
            self._socket, self._socket_seen = None, False  # connect() opens a new one
            reason = f"lost the push socket to OctoPrint at {self._url}"
            if self._socket_fault:
                reason += f": {self._socket_fault}"
            self._fail_job(reason, retryable=True)
            self._set_status(replace(self._status, phase=PrinterPhase.DISCONNECTED, error=reason))

    def _on_current(self, msg: Mapping[str, Any]) -> None:
        state = msg.get("state")
        phase = phase_from_state(state)
        status = replace(
            self._status, phase=phase,
            temperatures=temperatures(msg.get("temps"), self._status.temperatures),
            error=error_text(state) if phase is PrinterPhase.ERROR else None,
        )
        resends = mapping(msg.get("resends")).get("count")
        if isinstance(resends, int) and not isinstance(resends, bool) and resends >= 0:
            self._resends_total = resends
        self._set_status(self._with_progress(status, msg.get("progress")))

    def _with_progress(self, status: PrinterStatus, pushed: object) -> PrinterStatus:
        job, done = self._job, progress(pushed)
        if job is None or done is None or job.done.done():
            return status
        filepos = min(done.filepos, job.index.size)
        if filepos != job.filepos:
            job.filepos, job.moved_at = filepos, time.monotonic()
        return replace(
            status, lines_sent=job.index.lines_done(filepos), bytes_sent=filepos,
            percent=status.percent if done.completion is None else done.completion,
            layer=job.index.layer_at(filepos),
            resends=max(0, self._resends_total - job.resends_before),
        )

    def _on_event(self, kind: str, payload: Mapping[str, Any]) -> None:
        state_id = text(payload.get("state_id"))
        if kind == "PrinterStateChanged":
            self._state_id = str(state_id)
            self._wake()
        if kind == "PrinterStateChanged" and state_id in EVENT_PHASES:
            self._set_status(replace(self._status, phase=EVENT_PHASES[state_id], error=None))
        elif kind == "FirmwareData":
            self._set_status(replace(self._status, firmware=text(payload.get("name"))))
        elif kind == "Error":
            error = text(payload.get("error")) or "printer error"
            self._set_status(replace(self._status, phase=PrinterPhase.ERROR, error=error))
            self._fail_job(error, retryable=False)
        elif kind == "Disconnected":
            self._fail_job("OctoPrint lost the connection to the printer", retryable=True)
        elif kind in ("PrintDone", "PrintCancelled", "PrintFailed"):
            self._end_job(kind, payload)

    def _end_job(self, kind: str, payload: Mapping[str, Any]) -> None:
        job = self._job
        if job is None or job.done.done() or payload.get("path") not in (None, job.path):
            return
        if kind == "PrintDone":
            self._finish(job, PrintOutcome.COMPLETED, job.index.size)
        elif kind == "PrintCancelled" or payload.get("reason") == "cancelled":
            self._finish(job, PrintOutcome.CANCELLED, self._status.bytes_sent,
                         reason="cancelled")
        else:
            self._finish(job, PrintOutcome.FAILED, self._status.bytes_sent,
                         reason=text(payload.get("error")) or "OctoPrint reported the print failed")

    def _finish(self, job: _Job, outcome: PrintOutcome, filepos: int, *,
                reason: str | None = None, retryable: bool = False) -> None:
        lines = job.index.lines_done(filepos)
        resends = max(0, self._resends_total - job.resends_before)
        job.done.set_result(PrintResult(outcome, lines, resends, time.monotonic() - job.started,
                                        reason, retryable))
        self._set_status(replace(self._status, lines_sent=lines, bytes_sent=filepos,
                                 resends=resends,
                                 percent=100.0 if outcome is PrintOutcome.COMPLETED
                                 else self._status.percent))

    def _fail_job(self, reason: str, *, retryable: bool) -> None:
        job = self._job
        if self._stop_reason is not None:
            reason, retryable, self._stop_reason = self._stop_reason, False, None
        if job is not None and not job.done.done():
            self._finish(job, PrintOutcome.FAILED, self._status.bytes_sent,
                         reason=reason, retryable=retryable)

    # -- state and waiting -----------------------------------------------------------

    def _set_status(self, status: PrinterStatus) -> None:
        if status == self._status:
            return
        self._status = status
        self._wake()
        for queue in self._subscribers:
            queue.put_nowait(status)

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _wait_for(self, cond: Callable[[], bool], what: str, *, quiet: bool = False) -> None:
        deadline = time.monotonic() + self._timeout_s
        while not cond():
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._tick.wait(), max(remaining, 0))
            except TimeoutError as exc:
                if quiet:
                    return
                raise ConnectionFailed(
                    f"printer {self.name!r}: OctoPrint did not report {what} within "
                    f"{self._timeout_s} s (state {self._status.phase.value!r})"
                ) from exc

    def _raise_if_error(self) -> None:
        if self._status.phase is PrinterPhase.ERROR:
            raise PrinterNotReady(
                f"printer {self.name!r}: OctoPrint reports the printer in an error state: "
                f"{self._status.error}; fix the printer, then disconnect and reconnect it"
            )

    def _require_idle(self) -> None:
        self._raise_if_error()
        status = self.status()
        if self._socket is None or status.phase is not PrinterPhase.IDLE:
            raise PrinterNotReady(
                f"printer {self.name!r} is {status.phase.value}, not idle ({status.error or 'no error'}); "
                "connect() first and wait for the running job to end"
            )
        if self._job is not None and not self._job.done.done():
            raise PrinterNotReady(f"printer {self.name!r} is already printing {self._job.name!r}")


def _socket_url(base: str) -> str:
    """OctoPrint's SockJS websocket: ``wss://`` for an https:// server (SockJS 0.3.3 section 37)."""
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return (f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/sockjs/"
            f"{secrets.randbelow(1000):03d}/{uuid.uuid4().hex}/websocket")


def _upload_deadline_s(timeout_s: float, size: int) -> float:
    """The whole upload and its answer: a minute at least, and no slower than 50 kB/s."""
    return max(timeout_s, 60.0) + size / _UPLOAD_MIN_BYTES_PER_S


def _accept_close_arguments(sock: Any) -> None:
    """websocket-client >= 1.0 calls on_close(ws, status, reason); octoprint_client's SocketClient
    (its own ``_ws_on_close`` and the ``on_close`` it wraps) take only (ws), so the call raised
    inside the library and the driver never heard that the push socket closed. The library looks
    both callbacks up on each event, so wrapping them on this instance is enough."""
    own = getattr(sock, "_ws_on_close", None)
    if callable(own):
        sock._ws_on_close = lambda ws, *_close: own(ws)
    kwargs = getattr(sock, "_ws_kwargs", None)
    if isinstance(kwargs, dict) and callable(wrapped := kwargs.get("on_close")):
        kwargs["on_close"] = lambda ws, *_close: wrapped(ws)
