"""Operations of a serving hub: mTLS with the shipped CA scripts, Prometheus metrics, systemd readiness.

Every hub here is real (grpc.aio on 127.0.0.1 port 0, real certificates from
ops/tls/*.sh, a real HTTP scrape, a real AF_UNIX datagram socket standing in for
systemd's notify socket) and runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from spimeforge.v1 import accounts_pb2, accounts_pb2_grpc, designs_pb2

from hub import sd_notify
from hub.__main__ import compose
from hub.api.metrics import FleetSnapshot, HubMetrics, start_metrics_server
from hub.api.server import HubServer, TlsFiles
from hub.config import HubConfig
from tests.fixtures.hub_server import ROOT, add_users, hub_env
from tests.fixtures.postgres import create_database
from tests.hub.harness import USERS, InProcessHub

DEADLINE_S = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else create_database(request.getfixturevalue("postgres_server"))


def _start(data_dir: Path, database_url: str, *, tls: TlsFiles | None = None,
           metrics: HubMetrics | None = None) -> InProcessHub:
    composed = compose(HubConfig(data_dir=data_dir, database_url=database_url), printability=None)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hub-loop", daemon=True)
    thread.start()

    async def start() -> tuple[HubServer, int]:
        server = HubServer(composed.hub, metrics)
        return server, await server.start("127.0.0.1:0", tls)

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=DEADLINE_S)
    hub = InProcessHub(composed, server, loop, thread, f"127.0.0.1:{port}")
    for name, role in USERS.items():
        hub.add_user(name, role)
    return hub


def _certificates(directory: Path) -> Path:
    subprocess.run(["bash", str(ROOT / "ops/tls/make-dev-ca.sh"), str(directory), "localhost"],
                   check=True, capture_output=True, timeout=DEADLINE_S)
    subprocess.run(["bash", str(ROOT / "ops/tls/make-node-cert.sh"), str(directory), "node-1"],
                   check=True, capture_output=True, timeout=DEADLINE_S)
    return directory


def _health(address: str, creds: grpc.ChannelCredentials) -> int:
    with grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status)


def test_mtls_refuses_clients_without_a_certificate_of_the_ca(tmp_path: Path, database_url: str) -> None:
    tls_dir = _certificates(tmp_path / "tls")
    other = _certificates(tmp_path / "other")
    ca = (tls_dir / "ca.crt").read_bytes()
    hub = _start(tmp_path / "data", database_url,
                 tls=TlsFiles(tls_dir / "hub.crt", tls_dir / "hub.key", tls_dir / "ca.crt"))
    try:
        for creds in (grpc.ssl_channel_credentials(root_certificates=ca),
                      grpc.ssl_channel_credentials(ca, (other / "node-1.key").read_bytes(),
                                                   (other / "node-1.crt").read_bytes())):
            with pytest.raises(grpc.RpcError) as info:
                _health(hub.address, creds)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE

        node = grpc.ssl_channel_credentials(ca, (tls_dir / "node-1.key").read_bytes(),
                                            (tls_dir / "node-1.crt").read_bytes())
        assert _health(hub.address, node) == health_pb2.HealthCheckResponse.SERVING
        with grpc.secure_channel(hub.address, node, options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            who = accounts_pb2_grpc.AccountsStub(ch).WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=hub.md("olga"),
                                                           timeout=10)
        assert who.name == "olga"
        _spime_whoami_with_client_certificate(hub, tls_dir)
    finally:
        hub.stop()


def _spime_whoami_with_client_certificate(hub: InProcessHub, tls_dir: Path) -> None:
    """The `spime` CLI presents SPIME_CLIENT_CERT/KEY; without them the hub is unreachable."""
    env = {**hub_env(), "SPIME_HUB": hub.address, "SPIME_TOKEN": hub.tokens["alice"],
           "SPIME_CA": str(tls_dir / "ca.crt")}
    argv = [sys.executable, "-m", "hub.client.cli", "whoami", "--json"]
    refused = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S, check=False)
    assert refused.returncode == 1 and "UNAVAILABLE" in refused.stderr
    env |= {"SPIME_CLIENT_CERT": str(tls_dir / "node-1.crt"), "SPIME_CLIENT_KEY": str(tls_dir / "node-1.key")}
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S, check=False)
    assert done.returncode == 0, done.stderr
    assert '"alice"' in done.stdout


def test_client_ca_without_server_certificate_is_a_usage_error(tmp_path: Path) -> None:
    tls_dir = _certificates(tmp_path / "tls")
    from hub.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--tls-client-ca needs --tls-cert"):
        HubConfig(data_dir=tmp_path, tls_client_ca=tls_dir / "ca.crt")


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == x for k, x in labels.items()))


def test_metrics_count_rpcs_by_method_and_status(tmp_path: Path, database_url: str) -> None:
    metrics = HubMetrics()
    hub = _start(tmp_path / "data", database_url, metrics=metrics)
    exporter = start_metrics_server("127.0.0.1:0", metrics.registry)
    hub.channel = grpc.insecure_channel(hub.address)
    try:
        for _ in range(3):
            hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=hub.md("alice"), timeout=10)
        with pytest.raises(grpc.RpcError):
            hub.designs.GetDesign(designs_pb2.GetDesignRequest(design="nothing-here"), metadata=hub.md("carol"))
        with pytest.raises(grpc.RpcError):
            hub.accounts.WhoAmI(accounts_pb2.WhoAmIRequest(), metadata=(("authorization", "Bearer nope"),))
        hub.push("alice", "metric-cube", {"cube.stl": b"solid cube\nendsolid cube\n"}, create=True)

        samples = _scrape(exporter.port)
        who = "/spimeforge.v1.Accounts/WhoAmI"
        get = "/spimeforge.v1.Designs/GetDesign"
        assert _value(samples, "spime_hub_rpcs_total", method=who, code="OK") == 3
        assert _value(samples, "spime_hub_rpcs_total", method=who, code="UNAUTHENTICATED") == 1
        assert _value(samples, "spime_hub_rpcs_total", method=get, code="NOT_FOUND") == 1
        upload = "/spimeforge.v1.Designs/UploadBlob"
        assert _value(samples, "spime_hub_rpcs_total", method=upload, code="OK") == 1
        assert _value(samples, "spime_hub_rpc_duration_seconds_count", method=who) == 4
        assert _value(samples, "spime_hub_rpc_duration_seconds_bucket", method=who, le="+Inf") == 4
        assert _value(samples, "spime_hub_rpc_duration_seconds_sum", method=who) > 0
        assert "spime_hub_connected_nodes" not in samples  # no provider registered yet

        metrics.set_fleet_provider(lambda: FleetSnapshot(2, {"queued": 3, "printing": 1}))
        metrics.observe_order_latency("delivered", 5400.0)
        samples = _scrape(exporter.port)
        assert _value(samples, "spime_hub_connected_nodes") == 2
        assert _value(samples, "spime_hub_jobs", state="queued") == 3
        assert _value(samples, "spime_hub_order_latency_seconds_count", outcome="delivered") == 1
    finally:
        exporter.close()
        hub.stop()


def test_metrics_listen_must_be_host_port(tmp_path: Path) -> None:
    from hub.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="--metrics-listen"):
        HubConfig(data_dir=tmp_path, metrics_listen="9464")
    with pytest.raises(InvalidArgument, match="--metrics-listen"):
        start_metrics_server("nonsense", HubMetrics().registry)
    first = start_metrics_server("127.0.0.1:0", HubMetrics().registry)
    try:
        with pytest.raises(InvalidArgument, match="cannot serve metrics on"):
            start_metrics_server(f"127.0.0.1:{first.port}", HubMetrics().registry)
    finally:
        first.close()


@pytest.fixture()
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """An abstract-namespace datagram socket, as systemd passes it in $NOTIFY_SOCKET."""
    name = f"spime-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(DEADLINE_S)
        yield sock, "@" + name


def test_sd_notify_without_systemd_does_nothing() -> None:
    assert sd_notify.ready("x", environ={}) is False
    assert sd_notify.notify("READY=1", environ={"NOTIFY_SOCKET": "@spime-nobody-listens"}) is False


def test_sd_notify_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert sd_notify.stopping(environ={"NOTIFY_SOCKET": str(path)})
        assert sock.recv(4096) == b"STOPPING=1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_as_the_unit_runs_it_notifies_systemd_and_serves_mtls_and_metrics(
        tmp_path: Path, database_url: str, notify_socket: tuple[socket.socket, str]) -> None:
    """`spime-hub serve` with the unit's options (TLS, client CA, metrics) under $NOTIFY_SOCKET."""
    sock, address = notify_socket
    tls = _certificates(tmp_path / "tls")
    data = tmp_path / "hub"
    data.mkdir()
    token = add_users(data, database_url, {"alice": "designer"})["alice"]
    metrics_port = _free_port()
    argv = [sys.executable, "-m", "hub", "serve", "--data", str(data), "--listen", "127.0.0.1:0",
            "--metrics-listen", f"127.0.0.1:{metrics_port}", "--grace", "2",
            "--tls-cert", str(tls / "hub.crt"), "--tls-key", str(tls / "hub.key"), "--tls-client-ca", str(tls / "ca.crt")]
    if database_url:
        argv += ["--database", database_url]
    env = {**hub_env(), "NOTIFY_SOCKET": address}
    log = (tmp_path / "hub.log").open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        message = sock.recv(4096).decode()
        assert "READY=1" in message.splitlines()
        assert f"MAINPID={process.pid}" in message.splitlines()
        port = int(message.rpartition("serving on port ")[2])
        with pytest.raises(grpc.RpcError) as info:
            _health(f"127.0.0.1:{port}", grpc.ssl_channel_credentials((tls / "ca.crt").read_bytes()))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        node = grpc.ssl_channel_credentials((tls / "ca.crt").read_bytes(), (tls / "node-1.key").read_bytes(),
                                            (tls / "node-1.crt").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", node) as channel:
            who = accounts_pb2_grpc.AccountsStub(channel).WhoAmI(
                accounts_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        assert who.name == "alice"
        assert _value(_scrape(metrics_port), "spime_hub_rpcs_total",
                      method="/spimeforge.v1.Accounts/WhoAmI", code="OK") == 1
        process.send_signal(signal.SIGTERM)
        assert sock.recv(4096) == b"STOPPING=1"
        assert process.wait(timeout=DEADLINE_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=DEADLINE_S)
        log.close()


def test_fleet_gauges_follow_real_nodes_and_jobs(tmp_path: Path, database_url: str) -> None:
    from hub.api.metrics import feed_from
    from hub.jobs import JobSpec
    from tests.hub.fake_agent import FakeAgent, printer, start_clocked

    hub = start_clocked(tmp_path / "data", database_url)
    metrics = HubMetrics()
    feed_from(metrics, hub.composed.hub, hub.composed.store.jobs._thd_state_counts)
    exporter = start_metrics_server("127.0.0.1:0", metrics.registry)
    try:
        stl = (ROOT / "designs" / "calibration-cube" / "calibration-cube.stl").read_bytes()
        rev = hub.push("alice", "metric-cube", {"cube.stl": stl}, create=True).revision_id
        assert _value(_scrape(exporter.port), "spime_hub_connected_nodes") == 0
        agent = FakeAgent.enrolled(hub, "lab-metrics", [printer("mk3")])
        agent.connect()
        hub.composed.hub.jobs._thd_create_job(JobSpec("metric-cube", rev, "PLA"), "admin")
        agent.expect("offer")
        samples = _scrape(exporter.port)
        assert _value(samples, "spime_hub_connected_nodes") == 1
        assert _value(samples, "spime_hub_jobs", state="offered") == 1
        agent.close()
    finally:
        exporter.close()
        hub.stop()
