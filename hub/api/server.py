"""Build, start and gracefully stop the grpc.aio server (health + reflection included)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from grpc import aio, ssl_server_credentials
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from spimeforge.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    designs_pb2,
    designs_pb2_grpc,
    nodes_pb2,
    nodes_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

from hub.api.interceptors import HubInterceptor
from hub.api.live_calls import RECHECK_S
from hub.api.metrics import HubMetrics, MetricsInterceptor
from hub.api.nodes import NodesServicer
from hub.api.orders import OrdersServicer, RecordsWithLedgerServicer
from hub.api.servicers import AccountsServicer, DesignsServicer
from hub.config import HubConfig
from hub.errors import InvalidArgument
from hub.limits import parse_rates
from hub.localfiles import FileTooLarge, NotRegularFile, read_regular
from hub.service import Hub
from hub.service.replicas import DEFAULT_POLICY, ReplicaPolicy, ReplicaService
from hub.workers import Admission, OwnLoop

__all__ = ["MAX_MESSAGE_BYTES", "GenericHandlersOnly", "HubServer", "TlsFiles", "admission_of", "tls_credentials"]

log = logging.getLogger("hub.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_MAX_PEM_BYTES = 1 << 20  # a certificate chain or a CA bundle is a few KiB; a bundle of every public CA ~250 KiB
SERVICE_NAMES = (
    accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name,
    designs_pb2.DESCRIPTOR.services_by_name["Designs"].full_name,
    records_pb2.DESCRIPTOR.services_by_name["Records"].full_name,
    nodes_pb2.DESCRIPTOR.services_by_name["Nodes"].full_name,
    orders_pb2.DESCRIPTOR.services_by_name["Orders"].full_name,
)


def admission_of(config: HubConfig) -> Admission:
    """The per-account rate and concurrency limits a hub config asks for."""
    return Admission(parse_rates(config.rate_limits), max_wait_s=config.admission_wait_s)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of the server's certificate and key; with ``client_ca``, clients must present
    a certificate signed by that CA (mTLS: nodes authenticate with ``make-node-cert.sh`` certs)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class GenericHandlersOnly:
    """The grpc.aio server as the generated ``add_*_to_server`` functions see it: every method is
    served through its service's generic handler, none is registered on its own. grpc.aio waits for
    the next call of each registered method with a future of its own and takes every call with an
    asyncio.wait over all of them: with the hub's ~40 methods, some 40 µs of the event loop per call
    (a bare server taking 8,000 streams used 15 % more CPU with 40 registered methods than with
    none), paid 10,000 times when every agent reconnects at once. One generic future serves them all.
    """

    def __init__(self, server: aio.Server) -> None:
        self.server = server
        self.services: list[str] = []  # the services added, by full name

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        """Not registered: the generated function added the same handlers as a generic handler first."""
        self.services.append(service)


class HubServer:
    """A grpc.aio server around a Hub; start() binds, stop(grace) drains."""

    def __init__(self, hub: Hub, metrics: HubMetrics | None = None, replicas: ReplicaPolicy = DEFAULT_POLICY,
                 admission: Admission | None = None) -> None:
        self.hub = hub
        # Per-account rate and concurrency limits (hub.limits), checked right after the token.
        self.admission = admission if admission is not None else Admission()
        # Token checks run on their own loop and threads: a flood of pushes, searches or
        # uploads filling the main loop's thread pool cannot delay other callers' auth.
        self._auth = OwnLoop("hub-auth")
        # The metrics interceptor goes first (outermost) so refused auth is counted too.
        outer = [MetricsInterceptor(metrics)] if metrics is not None else []
        self.interceptor = HubInterceptor(hub.accounts.cached_first(self._auth.wrap(hub.accounts.authenticate)),
                                          self.admission)
        self.server = aio.server(
            interceptors=[*outer, self.interceptor],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # BDP probing grows each stream's HTTP/2 receive window far beyond what the
                # blob writers keep up with; the transport then buffers tens of MB per upload.
                # Fixed windows keep an upload's buffering bounded (and measured no slower).
                ("grpc.http2.bdp_probe", 0),
                # Agents ping every 30 s without calls in flight (agent_protocol.md 2c): the default
                # 5 min minimum would answer GOAWAY too_many_pings. Our own pings find dead agents.
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                # Calls that arrived but the Python server has not picked up yet: beyond the default
                # 1,000 (hard 3,000) gRPC drops them at random, and the agent sees only a bare INTERNAL.
                # A reconnect storm of 10,000 agents must queue here; the Nodes service itself then
                # admits sessions at its own pace (RESOURCE_EXHAUSTED with a retry hint, see Admission).
                ("grpc.server.max_pending_requests", 20_000),
                ("grpc.server.max_pending_requests_hard_limit", 40_000),
            ],
        )
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._stop_sweeper = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._rechecker: asyncio.Task[None] | None = None
        # This process as one of several hub replicas on one database (lease, wake-ups, takeover).
        self.replicas = ReplicaService(hub.nodes, replicas)
        self._replica_loop: asyncio.Task[None] | None = None
        self._register()

    def _register(self) -> None:
        server = self.served = GenericHandlersOnly(self.server)
        accounts_pb2_grpc.add_AccountsServicer_to_server(AccountsServicer(self.hub), server)
        designs_pb2_grpc.add_DesignsServicer_to_server(DesignsServicer(self.hub), server)
        records_pb2_grpc.add_RecordsServicer_to_server(RecordsWithLedgerServicer(self.hub), server)
        orders_pb2_grpc.add_OrdersServicer_to_server(OrdersServicer(self.hub), server)
        nodes_pb2_grpc.add_NodesServicer_to_server(NodesServicer(self.hub), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.aio.ReflectionServicer(names), server)

    async def start(self, listen: str, tls: TlsFiles | None = None) -> int:
        """Bind and start serving; returns the bound port.

        Raises:
            InvalidArgument: the address cannot be bound or the TLS files are unreadable.
        """
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(listen)
            else:
                creds = tls_credentials(tls)
                self.port = self.server.add_secure_port(listen, creds)
        except (RuntimeError, OSError) as exc:
            raise InvalidArgument(f"cannot listen on {listen}: {exc}") from exc
        await self.replicas.start()
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        # Offer expiry, leases, lost contact, and jobs queued by `spime-hub job add` in another process.
        self._sweeper = asyncio.create_task(self.hub.nodes.run_sweeper(self._stop_sweeper))
        self._replica_loop = asyncio.create_task(self.replicas.run(self._stop_sweeper))
        self._rechecker = asyncio.create_task(self._recheck_streams_until(self._stop_sweeper))
        log.info("hub listening", extra={"listen": listen, "port": self.port, "tls": tls is not None,
                                         "replica": self.replicas.replica})
        return self.port

    async def recheck_streams(self) -> int:
        """End the open streams whose token was revoked since they opened (UNAUTHENTICATED); returns
        how many. The tokens are read from the database, so a revocation by another process counts."""
        live_calls = self.interceptor.live_calls
        digests = live_calls.digests()
        live = await asyncio.to_thread(self.hub.accounts._thd_live_accounts, digests) if digests else {}
        ended = live_calls.end_revoked(digests, live)
        if ended:
            log.warning("tokens revoked: ended their open streams", extra={"streams": ended})
        return ended

    async def _recheck_streams_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), RECHECK_S)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            try:
                await self.recheck_streams()
            except Exception:
                log.exception("rechecking the tokens of open streams failed; trying again later")

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls and let running ones finish within ``grace`` s."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._stop_sweeper.set()
        if self._sweeper is not None:
            await self._sweeper
        if self._replica_loop is not None:
            await self._replica_loop
        if self._rechecker is not None:
            await self._rechecker
        await self.server.stop(grace)
        await self.hub.nodes.drain()
        await self.replicas.stop()
        self._auth.close()
        self.interceptor.flush_refusal_log()
        log.info("hub stopped", extra={"grace_s": grace})

    async def wait(self) -> None:
        await self.server.wait_for_termination()


def tls_credentials(tls: TlsFiles) -> object:
    """Server credentials; with a client CA, a client without a certificate it signed fails the handshake.

    Raises:
        InvalidArgument: naming the file: unreadable, not PEM, or a key that is not the certificate's.
    """
    cert, key = _pem(tls.cert, "--tls-cert"), _pem(tls.key, "--tls-key")
    _check_pair(tls, _certificates(cert, tls.cert, "--tls-cert"), key)
    pair = [(key, cert)]
    if tls.client_ca is None:
        return ssl_server_credentials(pair)
    client_ca = _pem(tls.client_ca, "--tls-client-ca")
    _certificates(client_ca, tls.client_ca, "--tls-client-ca")
    return ssl_server_credentials(pair, root_certificates=client_ca, require_client_auth=True)


def _pem(path: Path, flag: str) -> bytes:
    """The bytes of a regular file of at most :data:`_MAX_PEM_BYTES` (a FIFO would block the start).

    Raises:
        InvalidArgument: the file cannot be read, is not a regular file, or is too large.
    """
    try:
        return read_regular(path, _MAX_PEM_BYTES)
    except NotRegularFile:
        raise InvalidArgument(f"{flag} {path}: not a regular file (a PEM file is expected)") from None
    except FileTooLarge:
        raise InvalidArgument(f"{flag} {path}: over {_MAX_PEM_BYTES} bytes: not a PEM file") from None
    except OSError as exc:
        raise InvalidArgument(f"{flag} {path}: cannot read: {exc.strerror or exc}") from exc


def _certificates(data: bytes, path: Path, flag: str) -> list[x509.Certificate]:
    """The PEM certificates in ``data``.

    Raises:
        InvalidArgument: there is none (no ``-----BEGIN CERTIFICATE-----`` block that parses).
    """
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidArgument(f"{flag} {path}: not a PEM certificate: "
                              f"{_pem_problem(data, b'-----BEGIN CERTIFICATE-----', '-----BEGIN CERTIFICATE----- block')}") from exc


def _check_pair(tls: TlsFiles, chain: list[x509.Certificate], key: bytes) -> None:
    """The key is a PEM private key, unencrypted, and the first certificate's.

    Raises:
        InvalidArgument: naming ``--tls-key`` and what is wrong with it.
    """
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError as exc:  # encrypted: gRPC has no way to ask for the passphrase
        raise InvalidArgument(f"--tls-key {tls.key}: the key is encrypted; give an unencrypted PEM key") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidArgument(f"--tls-key {tls.key}: not a PEM private key: "
                              f"{_pem_problem(key, b'PRIVATE KEY-----', '-----BEGIN PRIVATE KEY----- block')}") from exc
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise InvalidArgument(f"--tls-key {tls.key} is not the key of the certificate in --tls-cert {tls.cert}")


def _pem_problem(data: bytes, marker: bytes, wanted: str) -> str:
    if marker not in data:
        return f"it holds no {wanted}"
    return "its PEM block does not parse (damaged, truncated or of another kind)"
