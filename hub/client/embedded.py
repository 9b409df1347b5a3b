"""Start and stop a local ``spime-hub`` subprocess for the demo and for tests.

The hub runs on a free 127.0.0.1 port with its own data directory; accounts
are created with ``spime-hub user add --json`` before it starts. Readiness is
polled through the standard gRPC health service with a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub.client.common import ClientError

__all__ = ["EmbeddedHub", "free_port", "hub_command"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hub_command() -> list[str]:
    """argv prefix that runs ``spime-hub`` from this installation."""
    beside = Path(sys.executable).with_name("spime-hub")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("spime-hub")
    return [found] if found else [sys.executable, "-m", "hub"]


@dataclass
class EmbeddedHub:
    """A hub subprocess with a temporary data directory.

    Attributes:
        data: the data directory (SQLite + blobs).
        database: a postgresql:// URL to keep the hub's records there instead (default: SQLite in data).
        address: 127.0.0.1:PORT once started.
        tokens: account name → bearer token.
        extra_args: more ``spime-hub serve`` arguments (e.g. TLS or a size limit).
        ca: the CA certificate to trust when the hub serves TLS.
    """

    data: Path
    address: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    extra_args: tuple[str, ...] = ()
    ca: Path | None = None
    database: str = ""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def add_user(self, name: str, role: str) -> str:
        """Create an account and return its token.

        Raises:
            ClientError: ``spime-hub user add`` failed.
        """
        argv = [*hub_command(), "user", "add", name, "--role", role, *self._store_args(), "--json"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise ClientError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr}")
        token = str(json.loads(proc.stdout)["token"])
        self.tokens[name] = token
        return token

    def _store_args(self) -> list[str]:
        return ["--data", str(self.data), *(["--database", self.database] if self.database else [])]

    def start(self, timeout: float = 60.0) -> None:
        """Start ``spime-hub serve`` and wait until its health service says SERVING.

        Raises:
            ClientError: the hub exited or did not become healthy in time.
        """
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.log_path = self.data / "hub.log"
        argv = [*hub_command(), "serve", *self._store_args(), "--listen", self.address, *self.extra_args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self._wait_healthy(time.monotonic() + timeout)

    def _wait_healthy(self, deadline: float) -> None:
        if self.ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
            channel = grpc.secure_channel(self.address, creds)
        else:
            channel = grpc.insecure_channel(self.address)
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise ClientError(f"the hub exited with {self.process.returncode}:\n"
                                      f"{self.log_tail()}")
                try:
                    resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise ClientError(f"the hub did not become healthy at {self.address}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the hub's log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop the hub with SIGTERM (SIGKILL after ``grace`` seconds); return its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        self.process = None
        return proc.returncode
