"""Build, start and gracefully stop the grpc.aio server (health + reflection included)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from grpc import aio, ssl_server_credentials
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from spimeforge.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    designs_pb2,
    designs_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

from hub.api.interceptors import HubInterceptor
from hub.api.servicers import AccountsServicer, DesignsServicer, RecordsServicer
from hub.errors import InvalidArgument
from hub.service import Hub

__all__ = ["MAX_MESSAGE_BYTES", "HubServer", "TlsFiles"]

log = logging.getLogger("hub.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
SERVICE_NAMES = (
    accounts_pb2.DESCRIPTOR.services_by_name["Accounts"].full_name,
    designs_pb2.DESCRIPTOR.services_by_name["Designs"].full_name,
    records_pb2.DESCRIPTOR.services_by_name["Records"].full_name,
)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path


class HubServer:
    """A grpc.aio server around a Hub; start() binds, stop(grace) drains."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.server = aio.server(
            interceptors=[HubInterceptor(hub.accounts.authenticate)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # BDP probing grows each stream's HTTP/2 receive window far beyond what the
                # blob writers keep up with; the transport then buffers tens of MB per upload.
                # Fixed windows keep an upload's buffering bounded (and measured no slower).
                ("grpc.http2.bdp_probe", 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._register()

    def _register(self) -> None:
        accounts_pb2_grpc.add_AccountsServicer_to_server(AccountsServicer(self.hub), self.server)
        designs_pb2_grpc.add_DesignsServicer_to_server(DesignsServicer(self.hub), self.server)
        records_pb2_grpc.add_RecordsServicer_to_server(RecordsServicer(self.hub), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.server)

    async def start(self, listen: str, tls: TlsFiles | None = None) -> int:
        """Bind and start serving; returns the bound port.

        Raises:
            InvalidArgument: the address cannot be bound or the TLS files are unreadable.
        """
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(listen)
            else:
                creds = ssl_server_credentials([(tls.key.read_bytes(), tls.cert.read_bytes())])
                self.port = self.server.add_secure_port(listen, creds)
        except (RuntimeError, OSError) as exc:
            raise InvalidArgument(f"cannot listen on {listen}: {exc}") from exc
        await self.server.start()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("hub listening", extra={"listen": listen, "port": self.port, "tls": tls is not None})
        return self.port

    async def _set_health(self, status: int) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, refuse new calls and let running ones finish within ``grace`` s."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        log.info("hub stopped", extra={"grace_s": grace})

    async def wait(self) -> None:
        await self.server.wait_for_termination()
