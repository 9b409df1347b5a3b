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


def test_serve_without_tls_beyond_this_machine_is_warned_about(tmp_path: Path) -> None:
    """Tokens and node credentials would cross the network in clear text. (The database is not there,
    so serve stops right after its start-up checks.)"""
    nowhere = "postgresql://nobody@127.0.0.1:1/spime"
    for listen, warned in (("0.0.0.0:0", True), ("[::]:0", True), ("127.0.0.1:0", False), ("localhost:0", False)):
        done = _hub_cli("serve", "--data", str(tmp_path), "--listen", listen, "--database", nowhere)
        assert done.returncode == 1, done.stderr
        assert (f"serving {listen} without TLS" in done.stderr) is warned, done.stderr


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


def test_serve_names_a_tls_file_that_is_not_pem(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    (tmp_path / "notcert.pem").write_text("hello\n", encoding="utf-8")
    done = _hub_cli("serve", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                    "--tls-cert", str(tmp_path / "notcert.pem"), "--tls-key", str(tls.key))
    assert done.returncode == 1, done.stderr
    assert f"--tls-cert {tmp_path / 'notcert.pem'}: not a PEM certificate" in done.stderr
    assert "Failed to bind" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()  # named before a data directory or database is made


def _other_key(path: Path, password: bytes | None = None) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


@pytest.mark.parametrize(("case", "words"), [
    ("cert is text", "--tls-cert {cert}: not a PEM certificate: it holds no -----BEGIN CERTIFICATE"),
    ("cert is a key", "--tls-cert {cert}: not a PEM certificate"),
    ("cert is damaged", "--tls-cert {cert}: not a PEM certificate: its PEM block does not parse"),
    ("key is text", "--tls-key {key}: not a PEM private key: it holds no"),
    ("key is the cert", "--tls-key {key}: not a PEM private key"),
    ("key of another cert", "--tls-key {key} is not the key of the certificate in --tls-cert {cert}"),
    ("key is encrypted", "--tls-key {key}: the key is encrypted"),
    ("key is a fifo", "--tls-key {key}: not a regular file"),
    ("key is missing", "--tls-key {key}: cannot read: No such file"),
    ("client ca is text", "--tls-client-ca {ca}: not a PEM certificate"),
])
def test_tls_files_are_checked_before_binding(tmp_path: Path, case: str, words: str) -> None:
    import os

    from hub.api.server import TlsFiles, tls_credentials
    from hub.errors import InvalidArgument

    good = self_signed(tmp_path)
    cert, key, ca = good.cert, good.key, tmp_path / "ca.pem"
    ca.write_bytes(cert.read_bytes())
    broken = tmp_path / "broken.pem"
    if case == "cert is text":
        cert = broken
        cert.write_text("hello\n", encoding="utf-8")
    elif case == "cert is a key":
        cert = good.key
    elif case == "cert is damaged":
        cert = broken
        cert.write_bytes(good.cert.read_bytes().replace(b"\n", b"\n!", 2))
    elif case == "key is text":
        key = broken
        key.write_text("hello\n", encoding="utf-8")
    elif case == "key is the cert":
        key = good.cert
    elif case == "key of another cert":
        key = _other_key(broken)
    elif case == "key is encrypted":
        key = _other_key(broken, b"secret")
    elif case == "key is a fifo":
        key = broken
        os.mkfifo(key)
    elif case == "key is missing":
        key = tmp_path / "nowhere.pem"
    else:
        ca.write_text("hello\n", encoding="utf-8")
    with pytest.raises(InvalidArgument) as caught:
        tls_credentials(TlsFiles(cert, key, ca))
    assert words.format(cert=cert, key=key, ca=ca) in str(caught.value)


def _in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """spime-hub's main() in this process (its logging set-up undone afterwards)."""
    import logging

    from hub.__main__ import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main(list(argv))
    finally:
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr()
    return code, out.out, out.err


READ_ONLY = [("key", "show"), ("node", "list"), ("job", "list"), ("user", "token", "alice"),
             ("user", "revoke", "alice"), ("node", "drain", "lab-1", "--reason", "x"), ("node", "resume", "lab-1"),
             ("job", "requeue", "J"), ("job", "fail", "J"), ("job", "cancel", "J"),
             ("job", "add", "cube", "--material", "PLA")]


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_a_mistyped_data_directory_makes_no_hub(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                argv: tuple[str, ...]) -> None:
    typo = tmp_path / "typo"
    code, out, err = _in_process(capsys, *argv, "--data", str(typo))
    assert code == 1 and out == "", err
    assert f"{typo} holds no hub" in err and "check --data" in err
    assert not typo.exists()  # neither hub.sqlite3 nor a new hub key to pin


@pytest.mark.parametrize("argv", [a for a in READ_ONLY if a[0] != "key"], ids=" ".join)
def test_an_empty_postgresql_database_gets_no_hub_schema(postgres_server: object, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         argv: tuple[str, ...]) -> None:
    import sqlalchemy as sa

    from tests.fixtures.postgres import create_database

    url = create_database(postgres_server)  # type: ignore[arg-type]
    code, out, err = _in_process(capsys, *argv, "--data", str(tmp_path / "d"), "--database", url)
    assert code == 1 and out == "" and "holds no Spimeforge schema" in err and "check --database" in err, err
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_read_only_commands_answer_from_an_existing_hub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "hub")
    assert _in_process(capsys, "migrate", "--data", data)[0] == 0
    code, out, err = _in_process(capsys, "key", "show", "--data", data)
    assert code == 0 and len(bytes.fromhex(out.strip())) == 32, err
    assert _in_process(capsys, "node", "list", "--data", data, "--json")[1].strip() == "[]"
    assert _in_process(capsys, "job", "list", "--data", data)[1].strip() == "no jobs"


def test_key_show_refuses_a_fifo_in_the_keys_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import threading

    from hub.store.hub_key import HUB_KEY_NAME

    data = tmp_path / "hub"
    data.mkdir()
    key = data / HUB_KEY_NAME
    os.mkfifo(key, 0o600)

    def feed() -> None:  # what the old reader waited for (and then took as the hub's key)
        try:
            key.write_text("ab" * 32 + "\n", encoding="ascii")
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        code, out, err = _in_process(capsys, "key", "show", "--data", str(data))
    finally:
        fd = os.open(key, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer's open return
        writer.join()
        os.close(fd)
    assert code == 1 and out == "" and f"the hub key {key} is not a regular file" in err
