"""The agent's only door to the hub: gRPC channel, enrollment, the Session stream, artifacts.

Protos stop here: :class:`SessionStream` sends and receives the dataclasses of
``node_agent.messages``, and every grpc error becomes a :class:`HubError` that says
whether trying again makes sense. The channel pings the hub (keepalive 30 s,
timeout 10 s, also without calls) so a dead TCP path is noticed even while the
agent has nothing to say; reconnects follow :class:`ReconnectPolicy` (full-jitter
exponential backoff, a short first wait after a healthy session, and the hub's RetryInfo
hint when it sheds load with RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from spimeforge.v1 import common_pb2, nodes_pb2, nodes_pb2_grpc

from node_agent import messages as m
from node_agent.backoff import backoff_delay
from node_agent.config import FileRefused, read_regular
from node_agent.jobs import EventKind, JobState

__all__ = [
    "KEEPALIVE_OPTIONS",
    "ArtifactError",
    "ClientCertificate",
    "HubConnection",
    "HubError",
    "HubRefused",
    "HubUnavailable",
    "ReconnectPolicy",
    "SessionStream",
    "backoff_delay",
    "enroll",
]

KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # The channel's own reconnect backoff (default up to 120 s) must not outlast ours.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
)
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL,
                        grpc.StatusCode.UNKNOWN})
log = logging.getLogger("spime-node")
_CHUNK_ATTEMPTS = 5
_MAX_PEM_BYTES = 1 << 20  # a CA bundle or a certificate chain is a few KiB
FETCH_STALL_S = 60.0
"""An artifact fetch that receives nothing for this long is cancelled and resumed where it stopped:
a stream the hub stopped feeding (overloaded, or a bug) would otherwise hold the job forever, since
keepalive only notices a dead connection, not a silent stream on a live one."""


class HubError(Exception):
    """The hub could not be reached or refused; ``retryable`` says whether to try again."""

    retryable = False

    def __init__(self, message: str, code: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s  # the hub's RetryInfo: come back after this long


class HubUnavailable(HubError):
    """No answer (network, hub down, stream broken); reconnect with backoff."""

    retryable = True


class HubRefused(HubError):
    """The hub said no (bad credential, permission, invalid request); retrying will not help."""


class ArtifactError(HubError):
    """A downloaded artifact does not match its SHA-256 (the partial file is discarded)."""

    retryable = True


class ReconnectPolicy:
    """When the agent tries the Session again (one policy object per agent; spime-node and the
    benchmark's simulated agents use this same class).

    * After a session that was healthy (the hub answered Hello with Welcome), the first retry
      waits uniform(0, ``after_healthy_s``): a hub restart or a dropped link costs little.
    * Otherwise full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt)).
    * When the hub says when to come back (RetryInfo, e.g. RESOURCE_EXHAUSTED while it admits a
      reconnect storm at the rate it can serve), the wait is that hint plus up to the hint again
      of jitter (capped), so the refused agents spread out instead of returning together.
    """

    def __init__(self, rng: random.Random, cap_s: float = 60.0, base_s: float = 1.0,
                 after_healthy_s: float = 0.5) -> None:
        self.rng, self.cap_s, self.base_s, self.after_healthy_s = rng, cap_s, base_s, after_healthy_s
        self.attempt = 0
        self._healthy = False

    def healthy(self) -> None:
        """A session was established (Welcome received): the next failure starts afresh."""
        self.attempt, self._healthy = 0, True

    def delay(self, error: BaseException | None = None) -> float:
        """Seconds to wait before the next attempt, after ``error`` (None: the stream just ended)."""
        hint = getattr(error, "retry_after_s", None)
        if isinstance(hint, (int, float)) and hint > 0:
            wait = min(self.cap_s, hint + self.rng.uniform(0.0, hint))
        elif self._healthy and self.attempt == 0:
            wait = self.rng.uniform(0.0, min(self.cap_s, self.after_healthy_s))
        else:
            wait = backoff_delay(self.attempt, self.rng, self.base_s, self.cap_s)
        self.attempt += 1
        self._healthy = False
        return wait


def retry_hint(exc: grpc.RpcError) -> float | None:
    """The RetryInfo delay the hub put in a refusal's ``grpc-status-details-bin`` trailer, or None."""
    trailers = exc.trailing_metadata() if isinstance(exc, grpc.aio.AioRpcError) else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # noqa: BLE001 - a malformed trailer is no hint
            return None
        for detail in status.details:
            info = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def _translate(exc: grpc.RpcError, what: str) -> HubError:
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
    detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
    message = f"{what}: {code.name}: {detail}"
    cls = HubUnavailable if code in _RETRYABLE else HubRefused
    return cls(message, code.name, retry_hint(exc) if code in _RETRYABLE else None)


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """The node's own certificate and key, for hubs that require mutual TLS (`--tls-client-ca`)."""

    cert: Path
    key: Path


def _read(path: Path, what: str) -> bytes:
    """A regular file of at most :data:`_MAX_PEM_BYTES` (a FIFO would block the agent's start).

    Raises:
        HubRefused: naming ``what`` and the path: unreadable, not a regular file, or too large.
    """
    try:
        return read_regular(path, _MAX_PEM_BYTES)
    except FileRefused as exc:
        raise HubRefused(f"{what} {path} is over {_MAX_PEM_BYTES} bytes: not a PEM file" if exc.too_large
                         else f"{what} {path} is not a regular file (a PEM file is expected)") from None
    except OSError as exc:
        raise HubRefused(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _certificates(path: Path, what: str) -> tuple[bytes, list[x509.Certificate]]:
    """The file's bytes and the PEM certificates in it.

    Raises:
        HubRefused: unreadable, or it holds no certificate that parses.
    """
    data = _read(path, what)
    try:
        return data, x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise HubRefused(f"{what} {path} is not a PEM certificate: "
                         f"{_pem_problem(data, b'-----BEGIN CERTIFICATE-----', '-----BEGIN CERTIFICATE-----')}"
                         ) from exc


def _client_pair(client: ClientCertificate) -> tuple[bytes, bytes]:
    """(certificate chain, private key) of the node, checked to belong together.

    Raises:
        HubRefused: naming the file: unreadable, not PEM, encrypted, or a key of another certificate.
    """
    chain, certs = _certificates(client.cert, "the node's certificate (tls_cert)")
    key = _read(client.key, "the node's key (tls_key)")
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError as exc:  # gRPC cannot ask for a passphrase
        raise HubRefused(f"the node's key (tls_key) {client.key} is encrypted: give an unencrypted PEM key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise HubRefused(f"the node's key (tls_key) {client.key} is not a PEM private key: "
                         f"{_pem_problem(key, b'PRIVATE KEY-----', '-----BEGIN PRIVATE KEY-----')}") from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != certs[0].public_key().public_bytes(*spki):
        raise HubRefused(f"the node's key (tls_key) {client.key} is not the key of its certificate "
                         f"(tls_cert) {client.cert}")
    return chain, key


def _pem_problem(data: bytes, marker: bytes, wanted: str) -> str:
    if marker not in data:
        return f"it holds no {wanted} block"
    return "its PEM block does not parse (damaged, truncated or of another kind)"


def _is_loopback(target: str) -> bool:
    """Whether HOST:PORT names this machine (localhost, 127.0.0.0/8, ::1) without asking DNS: a
    name that merely resolves to a loopback address does not count."""
    host = target.rpartition(":")[0].strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _channel(target: str, ca: Path | None, client: ClientCertificate | None = None) -> grpc.aio.Channel:
    options = list(KEEPALIVE_OPTIONS)
    if ca is None:
        if not _is_loopback(target):
            log.warning("the hub %s is not on this machine and tls_ca is not set: the node's credential, its "
                        "jobs and their files cross the network in clear text, readable and usable by anyone on "
                        "the way; set [node] tls_ca to the hub's CA file (the hub serves TLS with --tls-cert "
                        "and --tls-key)", target)
        return grpc.aio.insecure_channel(target, options=options)
    root, _ = _certificates(ca, "the hub's CA file (tls_ca)")
    key = chain = None
    if client is not None:
        chain, key = _client_pair(client)
    credentials = grpc.ssl_channel_credentials(root, private_key=key, certificate_chain=chain)
    return grpc.aio.secure_channel(target, credentials, options=options)


async def enroll(target: str, enrollment_token: str, version: str, ca: Path | None = None,
                 timeout_s: float = 30.0, client: ClientCertificate | None = None) -> tuple[str, str]:
    """Exchange a one-time enrollment token for the node credential.

    Returns:
        (node name, bearer token).

    Raises:
        HubRefused: the token is unknown, used or expired (or the CA file is unreadable).
        HubUnavailable: the hub did not answer.
    """
    channel = _channel(target, ca, client)
    try:
        reply = await nodes_pb2_grpc.NodesStub(channel).Enroll(
            nodes_pb2.EnrollRequest(enrollment_token=enrollment_token, agent_version=version),
            timeout=timeout_s)
    except grpc.RpcError as exc:
        raise _translate(exc, "enroll") from exc
    finally:
        await channel.close()
    return str(reply.node), str(reply.token)


class HubConnection:
    """One channel to the hub with the node's credential."""

    def __init__(self, target: str, token: str, ca: Path | None = None,
                 client: ClientCertificate | None = None, fetch_stall_s: float = FETCH_STALL_S) -> None:
        self.target, self.fetch_stall_s = target, fetch_stall_s
        self._channel = _channel(target, ca, client)
        self._stub = nodes_pb2_grpc.NodesStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def close(self) -> None:
        """Close the channel (and every stream on it); idempotent."""
        await self._channel.close()

    async def session(self, hello: m.Hello) -> SessionStream:
        """Open a Session stream and say Hello.

        Raises:
            HubUnavailable: the stream could not be opened.
        """
        call = self._stub.Session(metadata=self._metadata)
        stream = SessionStream(call)
        await stream.send(hello)
        return stream

    async def fetch_artifact(self, ref: m.ArtifactRef, dest: Path,
                             progress: Callable[[int], None] | None = None) -> Path:
        """Download one artifact to ``dest``, resuming a partial download, verified by SHA-256.

        Raises:
            HubRefused: the hub refused (unknown artifact, permission).
            HubUnavailable: the hub kept failing mid-transfer.
            ArtifactError: the bytes do not hash to ``ref.sha256``.
        """
        if dest.is_file() and await asyncio.to_thread(_sha256, dest) == ref.sha256:
            return dest  # fetched before this restart
        part = dest.with_name(dest.name + ".part")
        if part.exists() and part.stat().st_size > ref.size:
            part.unlink()  # longer than the artifact: not a prefix of it
        for attempt in range(_CHUNK_ATTEMPTS):
            try:
                await self._fetch_into(ref.sha256, ref.size, part, progress)
                break
            except HubUnavailable:
                if attempt == _CHUNK_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(backoff_delay(attempt, random.Random(), 0.2, 5.0))
        digest = await asyncio.to_thread(_sha256, part)
        if digest != ref.sha256:
            part.unlink(missing_ok=True)
            raise ArtifactError(f"artifact {ref.path}: got sha256 {digest}, expected {ref.sha256}")
        part.replace(dest)
        return dest

    async def _fetch_into(self, sha256: str, size: int, part: Path,
                          progress: Callable[[int], None] | None) -> None:
        """Append the rest of the artifact to ``part``.

        Raises:
            ArtifactError: the hub sent more than ``size`` bytes (``part`` is removed).
            HubUnavailable: the stream stalled or broke.
            HubRefused: the hub refused.
        """
        part.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        request = nodes_pb2.DownloadArtifactRequest(sha256=sha256, offset=offset)
        call = self._stub.FetchArtifact(request, metadata=self._metadata)
        try:
            with part.open("ab") as out:
                while (chunk := await self._next_chunk(call, sha256)) is not None:
                    offset += len(chunk.data)
                    if offset > size:  # checked before writing: a hub cannot fill the disk
                        call.cancel()
                        out.close()
                        part.unlink(missing_ok=True)
                        raise ArtifactError(f"artifact {sha256[:12]}: the hub sent more than its "
                                            f"{size} bytes")
                    out.write(chunk.data)
                    if progress is not None:
                        progress(offset)
        except grpc.RpcError as exc:
            raise _translate(exc, f"fetch artifact {sha256[:12]}") from exc

    async def _next_chunk(self, call: Any, sha256: str) -> Any:
        """The next chunk of a fetch, None at its end.

        Raises:
            HubUnavailable: nothing came for ``fetch_stall_s`` (the call is cancelled; retryable).
        """
        try:
            async with asyncio.timeout(self.fetch_stall_s):
                chunk = await call.read()
        except TimeoutError as exc:
            call.cancel()
            raise HubUnavailable(f"fetch artifact {sha256[:12]}: nothing arrived for {self.fetch_stall_s:g} s; "
                                 "resuming where it stopped") from exc
        return None if chunk is grpc.aio.EOF else chunk


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SessionStream:
    """One Session: send dataclasses up, receive dataclasses down."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def send(self, message: m.AgentMessage) -> None:
        """Write one message.

        Raises:
            HubUnavailable: the stream is broken.
            HubRefused: the hub ended the stream with a refusal.
        """
        try:
            await self._call.write(_to_proto(message))
        except grpc.RpcError as exc:
            raise _translate(exc, "session") from exc
        except asyncio.InvalidStateError as exc:
            raise HubUnavailable(f"session: the stream is closed ({exc})") from exc

    async def receive(self) -> m.HubCommand | None:
        """The next hub message, None when the hub closed the stream cleanly.

        Raises:
            HubUnavailable: the stream broke.
            HubRefused: the hub ended the stream with a refusal (e.g. PERMISSION_DENIED).
        """
        while True:
            try:
                msg = await self._call.read()
            except grpc.RpcError as exc:
                raise _translate(exc, "session") from exc
            if msg is grpc.aio.EOF:
                return None
            converted = _from_proto(msg)
            if converted is not None:
                return converted

    async def close(self) -> None:
        """End the stream; idempotent."""
        self._call.cancel()


# ------------------------------------------------------------------------- agent -> hub
_JOB_STATE = {
    JobState.ACCEPTED: nodes_pb2.JOB_LOCAL_STATE_PREPARING,
    JobState.PREPARING: nodes_pb2.JOB_LOCAL_STATE_PREPARING,
    JobState.READY: nodes_pb2.JOB_LOCAL_STATE_READY,
    JobState.PRINTING: nodes_pb2.JOB_LOCAL_STATE_PRINTING,
    JobState.PAUSED: nodes_pb2.JOB_LOCAL_STATE_PAUSED,
    JobState.FINISHED: nodes_pb2.JOB_LOCAL_STATE_FINISHED_AWAITING_BED_CLEAR,
    JobState.DONE: nodes_pb2.JOB_LOCAL_STATE_DONE,
    JobState.FAILED: nodes_pb2.JOB_LOCAL_STATE_FAILED,
    JobState.CANCELLED: nodes_pb2.JOB_LOCAL_STATE_CANCELLED,
    JobState.INTERRUPTED: nodes_pb2.JOB_LOCAL_STATE_INTERRUPTED,
}
_PHASE = {p: getattr(nodes_pb2, f"PRINTER_PHASE_{p.name}") for p in m.Phase}
_DECLINE = {r: getattr(nodes_pb2, f"DECLINE_REASON_{r.name}") for r in m.DeclineReason}
_KIND = {k: getattr(nodes_pb2, f"EVENT_KIND_{k.name}") for k in EventKind}
_DESIRED = {getattr(nodes_pb2, f"DESIRED_{d.name}"): d for d in m.Desired}


def _money(rate: tuple[str, int] | None) -> common_pb2.Money | None:
    return None if rate is None else common_pb2.Money(currency=rate[0], minor_units=rate[1])


def _printer(p: m.PrinterSnapshot) -> nodes_pb2.PrinterState:
    x, y, z = p.build_volume_mm
    return nodes_pb2.PrinterState(
        printer_id=p.printer_id, model=p.model, build_volume_mm=common_pb2.Vector3(x=x, y=y, z=z),
        nozzle_diameter_mm=p.nozzle_mm, materials=list(p.materials), phase=_PHASE[p.phase],
        bed_clear=p.bed_clear, queue_depth=p.queue_depth, hotend_c=p.hotend_c, bed_c=p.bed_c,
        rate_per_hour=_money(p.rate_per_hour), rate_per_gram=_money(p.rate_per_gram),
        slicer_profile=p.slicer_profile, accepting=p.accepting)


def _timestamp(unix_s: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(unix_s * 1e9))
    return stamp


def _hello(h: m.Hello) -> nodes_pb2.AgentMsg:
    jobs = [nodes_pb2.HeldJob(job_id=j.job_id, lease_epoch=j.lease_epoch, state=_JOB_STATE[j.state],
                              last_agent_seq=j.last_agent_seq, printer_id=j.printer_id)
            for j in h.jobs]
    return nodes_pb2.AgentMsg(hello=nodes_pb2.Hello(
        agent_id=h.agent_id, agent_version=h.agent_version,
        last_hub_seq_applied=h.last_hub_seq_applied, printers=[_printer(p) for p in h.printers],
        jobs=jobs, location=h.location, latitude=h.latitude, longitude=h.longitude))


def _event(e: m.JobEvent) -> nodes_pb2.AgentMsg:
    return nodes_pb2.AgentMsg(job_event=nodes_pb2.JobEvent(
        agent_seq=e.agent_seq, job_id=e.job_id, lease_epoch=e.lease_epoch, kind=_KIND[e.kind],
        at=_timestamp(e.at), data=dict(e.data)))


def _to_proto(msg: m.AgentMessage) -> nodes_pb2.AgentMsg:
    if isinstance(msg, m.Hello):
        return _hello(msg)
    if isinstance(msg, m.JobEvent):
        return _event(msg)
    if isinstance(msg, m.Heartbeat):
        progress = [nodes_pb2.JobProgress(job_id=p.job_id, lease_epoch=p.lease_epoch,
                                          percent=p.percent, layer=p.layer) for p in msg.progress]
        return nodes_pb2.AgentMsg(heartbeat=nodes_pb2.Heartbeat(
            printers=[_printer(p) for p in msg.printers], progress=progress))
    if isinstance(msg, m.OfferReply):
        reason = _DECLINE[msg.reason] if msg.reason else nodes_pb2.DECLINE_REASON_UNSPECIFIED
        return nodes_pb2.AgentMsg(offer_reply=nodes_pb2.OfferReply(
            offer_id=msg.offer_id, accept=msg.accept, reason=reason, detail=msg.detail))
    if isinstance(msg, m.StartRequest):
        return nodes_pb2.AgentMsg(start_request=nodes_pb2.StartRequest(
            job_id=msg.job_id, lease_epoch=msg.lease_epoch, printer_id=msg.printer_id))
    if isinstance(msg, m.CommandAck):
        return nodes_pb2.AgentMsg(ack=nodes_pb2.CommandAck(hub_seq=msg.hub_seq))
    return nodes_pb2.AgentMsg(printer_changed=nodes_pb2.PrinterChanged(
        printer=_printer(msg.printer)))


# ------------------------------------------------------------------------- hub -> agent
def _unix(stamp: timestamp_pb2.Timestamp) -> float:
    return float(stamp.seconds) + float(stamp.nanos) / 1e9


def _offer(seq: int, o: Any) -> m.Offer:
    return m.Offer(
        hub_seq=seq, offer_id=o.offer_id, job_id=o.job_id, design=o.design,
        revision_id=o.revision_id,
        artifacts=tuple(m.ArtifactRef(a.sha256, a.size, a.kind, a.path) for a in o.artifacts),
        parameters=dict(o.parameters), material=o.material, printer_id=o.printer_id,
        lease_epoch=o.lease_epoch,
        attributions=tuple(m.Attribution(a.design, a.revision_id, a.title, a.license, a.licensor,
                                         tuple(a.contributors), a.notice)
                           for a in o.attributions),
        bbox_mm=(o.bbox_mm.x, o.bbox_mm.y, o.bbox_mm.z),
        expires_at=_unix(o.offer_expires_at) if o.HasField("offer_expires_at") else 0.0)


def _welcome(seq: int, w: Any) -> m.Welcome:
    desired = tuple(m.DesiredJob(d.job_id, d.lease_epoch, _DESIRED.get(d.desired,
                                                                     m.Desired.UNSPECIFIED))
                    for d in w.desired)
    return m.Welcome(w.session_epoch, w.last_agent_seq_committed, desired,
                     w.heartbeat_interval_s, w.lease_ttl_s, seq)


_FROM: Mapping[str, Callable[[int, Any], m.HubCommand]] = {
    "welcome": _welcome,
    "offer": _offer,
    "assigned": lambda s, a: m.Assigned(s, a.job_id, a.offer_id, a.lease_epoch),
    "start_granted": lambda s, g: m.StartGranted(s, g.job_id, g.lease_epoch),
    "start_denied": lambda s, d: m.StartDenied(s, d.job_id, d.lease_epoch, d.reason),
    "cancel": lambda s, c: m.Cancel(s, c.job_id, c.lease_epoch, c.reason),
    "hold": lambda s, h: m.Hold(s, h.job_id, h.lease_epoch, h.reason),
    "event_ack": lambda s, a: m.EventAck(a.agent_seq, s),
    "drain": lambda s, d: m.Drain(s, d.reason),
    "superseded": lambda s, x: m.Superseded(x.new_session_epoch, s),
    "ping": lambda s, p: m.Ping(p.sent_unix_ms, s),
}


def _from_proto(msg: nodes_pb2.HubMsg) -> m.HubCommand | None:
    which = msg.WhichOneof("kind")
    if which is None:
        return None  # a newer hub's message this agent does not know: ignored
    return _FROM[which](int(msg.hub_seq), getattr(msg, which))
