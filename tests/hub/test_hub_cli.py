"""`spime-hub` as a user runs it: user add, migrate, serve (subprocess), graceful stop, exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from spimeforge.v1 import accounts_pb2, accounts_pb2_grpc

from tests.fixtures.hub_server import ROOT, RunningHub, hub_env, start_hub, stop_hub
from tests.hub.harness import self_signed


def _hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=ROOT, env=hub_env(), capture_output=True,
                          text=True, timeout=120, check=False)


def _whoami(hub: RunningHub, token: str) -> accounts_pb2.Account:
    with grpc.insecure_channel(hub.address) as channel:
        return accounts_pb2_grpc.AccountsStub(channel).WhoAmI(
            accounts_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)


def test_user_add_prints_a_token_and_json(tmp_path: Path) -> None:
    plain = _hub_cli("user", "add", "dana", "--role", "designer", "--data", str(tmp_path))
    assert plain.returncode == 0 and plain.stdout.strip().startswith("spf_")
    as_json = _hub_cli("user", "add", "erik", "--role", "customer", "--data", str(tmp_path), "--json")
    doc = json.loads(as_json.stdout)
    assert doc["name"] == "erik" and doc["role"] == "customer" and doc["token"].startswith("spf_")
    again = _hub_cli("user", "add", "erik", "--role", "customer", "--data", str(tmp_path))
    assert again.returncode == 1 and "already exists" in again.stderr and again.stdout == ""
    usage = _hub_cli("user", "add", "x", "--role", "wizard", "--data", str(tmp_path))
    assert usage.returncode == 2
    bad = _hub_cli("user", "add", "Bad Name", "--role", "admin", "--data", str(tmp_path))
    assert bad.returncode == 1 and "account name" in bad.stderr
    assert _hub_cli("migrate", "--data", str(tmp_path)).returncode == 0


@pytest.fixture(params=["sqlite", "postgresql"])
def either_hub(request: pytest.FixtureRequest) -> RunningHub:
    hub: RunningHub = request.getfixturevalue("hub" if request.param == "sqlite" else "hub_pg")
    return hub


def test_user_token_and_revoke_rotate_an_accounts_tokens(either_hub: RunningHub) -> None:
    hub = either_hub
    store = ("--data", str(hub.data_dir), "--database", hub.database_url)
    first = hub.add_user("zoe", "operator")
    second = json.loads(_hub_cli("user", "token", "zoe", "--json", *store).stdout)
    assert second["name"] == "zoe" and second["token"].startswith("spf_") and second["token"] != first
    revoked = json.loads(_hub_cli("user", "revoke", "zoe", "--json", *store).stdout)
    assert revoked == {"name": "zoe", "revoked": 2}
    for token in (first, second["token"]):
        with pytest.raises(grpc.RpcError) as refused:
            _whoami(hub, token)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    third = _hub_cli("user", "token", "zoe", *store)
    assert third.returncode == 0 and _whoami(hub, third.stdout.strip()).name == "zoe"
    assert _whoami(hub, hub.tokens["alice"]).name == "alice"  # other accounts untouched
    unknown = _hub_cli("user", "revoke", "nobody", *store)
    assert unknown.returncode == 1 and "nobody" in unknown.stderr and unknown.stdout == ""


def test_serve_fixture_answers_and_stops_gracefully(hub: RunningHub) -> None:
    assert _whoami(hub, hub.tokens["alice"]).role == accounts_pb2.ROLE_DESIGNER
    token = hub.add_user("zoe", "operator")
    assert _whoami(hub, token).name == "zoe"
    assert stop_hub(hub) == 0
    lines = [json.loads(line) for line in hub.log().splitlines() if line.startswith("{")]
    messages = [line["msg"] for line in lines]
    assert "hub listening" in messages and "hub stopped" in messages
    assert any(line.get("rpc", "").endswith("WhoAmI") and line.get("account") == "zoe" for line in lines)


def test_serve_on_postgresql(hub_pg: RunningHub) -> None:
    assert hub_pg.database_url.startswith("postgresql+psycopg://")
    assert _whoami(hub_pg, hub_pg.tokens["admin"]).role == accounts_pb2.ROLE_ADMIN


def test_sigint_also_stops_and_health_is_reachable(tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "h", users={"admin": "admin"})
    try:
        with grpc.insecure_channel(hub.address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert hub.process is not None
        hub.process.send_signal(signal.SIGINT)
        assert hub.process.wait(timeout=30) == 0
    finally:
        stop_hub(hub)


def test_serve_refuses_bad_flags(tmp_path: Path) -> None:
    half_tls = _hub_cli("serve", "--data", str(tmp_path), "--listen", "127.0.0.1:0", "--tls-cert", str(tmp_path / "c.pem"))
    assert half_tls.returncode == 1 and "--tls-key" in half_tls.stderr
    bad_listen = _hub_cli("serve", "--data", str(tmp_path), "--listen", "nowhere")
    assert bad_listen.returncode == 1 and "HOST:PORT" in bad_listen.stderr
    bad_db = _hub_cli("serve", "--data", str(tmp_path), "--listen", "127.0.0.1:0", "--database", "mysql://x")
    assert bad_db.returncode == 1 and "postgresql" in bad_db.stderr


def test_serve_with_tls_flags(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    hub = start_hub(tmp_path / "h", extra_args=("--tls-cert", str(tls.cert), "--tls-key", str(tls.key)),
                    users={"alice": "designer"})
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=tls.cert.read_bytes())
        with grpc.secure_channel(hub.address, creds) as channel:
            who = accounts_pb2_grpc.AccountsStub(channel).WhoAmI(
                accounts_pb2.WhoAmIRequest(), metadata=hub.metadata("alice"), timeout=10)
        assert who.name == "alice"
    finally:
        assert stop_hub(hub) == 0


def test_sigterm_lets_a_running_upload_finish(tmp_path: Path) -> None:
    import hashlib
    import threading

    from spimeforge.v1 import common_pb2, designs_pb2_grpc

    hub = start_hub(tmp_path / "h", users={"alice": "designer"})
    data = b"z" * (4 << 20)
    digest = hashlib.sha256(data).hexdigest()
    first_sent, terminated = threading.Event(), threading.Event()

    def chunks():  # type: ignore[no-untyped-def]
        for offset in range(0, len(data), 1 << 20):
            yield common_pb2.BlobChunk(sha256=digest if offset == 0 else "", total_size=len(data) if offset == 0 else 0,
                                       offset=offset, data=data[offset:offset + (1 << 20)])
            first_sent.set()
            assert terminated.wait(timeout=30)

    try:
        with grpc.insecure_channel(hub.address) as channel:
            stub = designs_pb2_grpc.DesignsStub(channel)
            future = stub.UploadBlob.future(chunks(), metadata=hub.metadata("alice"), timeout=60)
            assert first_sent.wait(timeout=30)
            # the call is in flight once the hub has opened its temporary upload file
            deadline = time.monotonic() + 30
            while not list((tmp_path / "h" / "blobs" / "tmp").glob("up-*")):
                assert time.monotonic() < deadline, hub.log()
                time.sleep(0.01)
            assert hub.process is not None
            hub.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while '"msg": "stopping"' not in hub.log():
                assert time.monotonic() < deadline, hub.log()
                time.sleep(0.05)
            terminated.set()
            assert future.result(timeout=30).size == len(data)
        assert hub.process.wait(timeout=30) == 0
        assert (tmp_path / "h" / "blobs" / digest[:2] / digest[2:]).stat().st_size == len(data)
    finally:
        stop_hub(hub)
