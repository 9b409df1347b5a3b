"""The agent's door to the hub, against the real in-process hub (SQLite and PostgreSQL):
enrollment refusals, resumable SHA-256-verified artifact downloads, a Hello under another
node's name, and the reconnect backoff."""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from spimeforge.v1 import common_pb2, nodes_pb2_grpc

from hub.api.server import TlsFiles
from node_agent import messages as m
from node_agent.hub_client import (
    ArtifactError,
    ClientCertificate,
    HubConnection,
    HubRefused,
    HubUnavailable,
    ReconnectPolicy,
    backoff_delay,
    enroll,
)
from tests.fixtures.postgres import create_database
from tests.hub.harness import InProcessHub, self_signed, start_in_process

ROOT = Path(__file__).resolve().parents[2]
STL = (ROOT / "designs" / "calibration-cube" / "calibration-cube.stl").read_bytes()


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessHub]:
    url = "" if request.param == "sqlite" else create_database(
        request.getfixturevalue("postgres_server"))
    running = start_in_process(tmp_path / "data", url)
    try:
        yield running
    finally:
        running.stop()


def ref(data: bytes) -> m.ArtifactRef:
    return m.ArtifactRef(hashlib.sha256(data).hexdigest(), len(data), "mesh", "cube.stl")


async def _fetches(hub: InProcessHub, tmp_path: Path) -> None:
    hub.push("alice", "cube", {"cube.stl": STL}, create=True)
    conn = HubConnection(hub.address, hub.tokens["admin"])
    try:
        whole = await conn.fetch_artifact(ref(STL), tmp_path / "a" / "cube.stl")
        assert whole.read_bytes() == STL
        resumed = tmp_path / "b" / "cube.stl"
        resumed.parent.mkdir()
        resumed.with_name("cube.stl.part").write_bytes(STL[:1000])  # an interrupted download
        seen: list[int] = []
        await conn.fetch_artifact(ref(STL), resumed, seen.append)
        assert resumed.read_bytes() == STL and seen[-1] == len(STL) and min(seen) > 1000
        bad = tmp_path / "c" / "cube.stl"
        bad.parent.mkdir()
        bad.with_name("cube.stl.part").write_bytes(b"x" * 1000)  # a corrupt partial file
        with pytest.raises(ArtifactError, match="expected"):
            await conn.fetch_artifact(ref(STL), bad)
        assert not bad.exists() and not bad.with_name("cube.stl.part").exists()
        with pytest.raises(HubRefused) as caught:
            await conn.fetch_artifact(ref(b"nothing like it"), tmp_path / "d" / "x.stl")
        assert caught.value.code == "NOT_FOUND" and not caught.value.retryable
    finally:
        await conn.close()


def test_artifacts_download_resume_and_are_verified(hub: InProcessHub, tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_fetches(hub, tmp_path), 120))


async def _identity(hub: InProcessHub) -> None:
    with pytest.raises(HubRefused) as caught:
        await enroll(hub.address, "not-a-token", "test/1")
    assert caught.value.code == "UNAUTHENTICATED"
    _, token, _ = await asyncio.to_thread(hub.composed.hub.nodes._thd_add_node, "lab-1")
    node, credential = await enroll(hub.address, token, "test/1")
    assert node == "lab-1" and credential
    with pytest.raises(HubRefused, match="UNAUTHENTICATED"):
        await enroll(hub.address, token, "test/1")  # one time only
    conn = HubConnection(hub.address, credential)
    try:
        session = await conn.session(m.Hello("lab-2", "test/1", 0, (), ()))
        with pytest.raises(HubRefused) as refused:
            await session.receive()
        assert refused.value.code == "PERMISSION_DENIED"
        with pytest.raises(HubRefused) as denied:  # a node credential is only a node
            await conn.fetch_artifact(ref(STL), Path("/nonexistent/never-written"))
        assert denied.value.code == "PERMISSION_DENIED"
    finally:
        await conn.close()
    dead = HubConnection("127.0.0.1:1", credential)
    try:
        with pytest.raises(HubUnavailable) as unavailable:
            await (await dead.session(m.Hello("lab-1", "test/1", 0, (), ()))).receive()
        assert unavailable.value.retryable
    finally:
        await dead.close()


def test_enrollment_and_identity_refusals_are_clear(hub: InProcessHub) -> None:
    asyncio.run(asyncio.wait_for(_identity(hub), 120))


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (500, 60.0)]:
        delays = [backoff_delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2


def test_reconnect_policy_waits_little_after_a_healthy_session_and_honours_the_hubs_hint() -> None:
    policy = ReconnectPolicy(random.Random(7), cap_s=60.0)
    first = [policy.delay(HubUnavailable("x")) for _ in range(4)]  # never connected: 1, 2, 4, 8 s ceilings
    assert all(0.0 <= d <= 2.0 ** i for i, d in enumerate(first))
    policy.healthy()  # Welcome received: the next failure starts afresh with the short wait
    assert policy.attempt == 0
    after_healthy = []
    for _ in range(200):
        policy.healthy()
        after_healthy.append(policy.delay(HubUnavailable("stream broke")))
    assert all(0.0 <= d <= 0.5 for d in after_healthy) and max(after_healthy) > 0.4
    assert 0.0 <= policy.delay(None) <= 2.0  # the second failure in a row: base 1 s, attempt 1
    told = HubUnavailable("busy", "RESOURCE_EXHAUSTED", retry_after_s=3.0)
    hinted = [policy.delay(told) for _ in range(200)]
    assert all(3.0 <= d <= 6.0 for d in hinted)  # the hint, plus up to the hint again of jitter
    assert ReconnectPolicy(random.Random(1), cap_s=5.0).delay(HubUnavailable("x", retry_after_s=30.0)) == 5.0


async def _over_tls(hub: InProcessHub, ca: Path) -> None:
    _, token, _ = await asyncio.to_thread(hub.composed.hub.nodes._thd_add_node, "lab-tls")
    with pytest.raises(HubUnavailable):  # without the CA the hub's certificate is not trusted
        await enroll(hub.address, token, "test/1", timeout_s=10)
    node, credential = await enroll(hub.address, token, "test/1", ca=ca)
    conn = HubConnection(hub.address, credential, ca)
    try:
        session = await conn.session(m.Hello(node, "test/1", 0, (), ()))
        welcome = await session.receive()
        assert isinstance(welcome, m.Welcome) and welcome.session_epoch >= 1
        await session.close()
    finally:
        await conn.close()
    with pytest.raises(HubRefused, match="cannot read the hub's CA file"):
        HubConnection(hub.address, credential, ca.with_name("missing.pem"))


def test_the_node_trusts_the_hub_through_its_ca_file(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    running = start_in_process(tmp_path / "data", tls=tls)
    try:
        asyncio.run(asyncio.wait_for(_over_tls(running, tls.cert), 120))
    finally:
        running.stop()


def _dev_ca(directory: Path) -> Path:
    """ops/tls: a CA, the hub's certificate for 127.0.0.1, and a client certificate for node lab-mtls."""
    for script, arg in (("make-dev-ca.sh", "localhost"), ("make-node-cert.sh", "lab-mtls")):
        subprocess.run(["bash", str(ROOT / "ops" / "tls" / script), str(directory), arg],
                       check=True, capture_output=True, timeout=60)
    return directory


async def _over_mtls(hub: InProcessHub, tls: Path) -> None:
    _, token, _ = await asyncio.to_thread(hub.composed.hub.nodes._thd_add_node, "lab-mtls")
    ca, client = tls / "ca.crt", ClientCertificate(tls / "lab-mtls.crt", tls / "lab-mtls.key")
    with pytest.raises(HubUnavailable):  # the hub requires a client certificate of its CA
        await enroll(hub.address, token, "test/1", ca=ca, timeout_s=10)
    node, credential = await enroll(hub.address, token, "test/1", ca=ca, client=client)
    conn = HubConnection(hub.address, credential, ca, client)
    try:
        session = await conn.session(m.Hello(node, "test/1", 0, (), ()))
        assert isinstance(await session.receive(), m.Welcome)
        await session.close()
    finally:
        await conn.close()
    with pytest.raises(HubRefused, match="cannot read the node's key"):
        HubConnection(hub.address, credential, ca, ClientCertificate(client.cert, tls / "missing.key"))


def test_the_node_presents_its_client_certificate_to_an_mtls_hub(tmp_path: Path) -> None:
    tls = _dev_ca(tmp_path / "tls")
    running = start_in_process(tmp_path / "data", tls=TlsFiles(tls / "hub.crt", tls / "hub.key", tls / "ca.crt"))
    try:
        asyncio.run(asyncio.wait_for(_over_mtls(running, tls), 120))
    finally:
        running.stop()


class _StallingHub(nodes_pb2_grpc.NodesServicer):
    """Serves FetchArtifact from ``data``: the first call sends 1,000 bytes and then nothing more."""

    def __init__(self, data: bytes) -> None:
        self.data: bytes = data
        self.offsets: list[int] = []

    async def FetchArtifact(self, request: Any, context: Any) -> AsyncIterator[common_pb2.BlobChunk]:
        self.offsets.append(int(request.offset))
        sha, start = hashlib.sha256(self.data).hexdigest(), int(request.offset)
        end = 1000 if len(self.offsets) == 1 else len(self.data)
        yield common_pb2.BlobChunk(sha256=sha, total_size=len(self.data), offset=start, data=self.data[start:end])
        if len(self.offsets) == 1:
            await asyncio.Event().wait()  # stalls: the stream stays open, the connection alive


async def _stalled_fetch(tmp_path: Path) -> None:
    server = grpc.aio.server()
    hub = _StallingHub(STL)
    nodes_pb2_grpc.add_NodesServicer_to_server(hub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conn = HubConnection(f"127.0.0.1:{port}", "token", fetch_stall_s=1.0)
    try:
        seen: list[int] = []
        got = await conn.fetch_artifact(ref(STL), tmp_path / "cube.stl", seen.append)
        assert got.read_bytes() == STL and seen[0] == 1000 and seen[-1] == len(STL)
        assert hub.offsets[0] == 0 and set(hub.offsets[1:]) == {1000}  # every retry resumed after the stall
    finally:
        await conn.close()
        await server.stop(0)


def test_a_stalled_artifact_fetch_is_resumed_where_it_stopped(tmp_path: Path) -> None:
    """A fetch stream the hub stops feeding (the connection alive, so keepalive sees nothing) is
    cancelled after fetch_stall_s and resumed from the bytes already written."""
    asyncio.run(asyncio.wait_for(_stalled_fetch(tmp_path), 60))


class _EndlessHub(nodes_pb2_grpc.NodesServicer):
    """Serves FetchArtifact with no end: 1 MiB chunks for ever."""

    def __init__(self) -> None:
        self.sent = 0

    async def FetchArtifact(self, request: Any, context: Any) -> AsyncIterator[common_pb2.BlobChunk]:
        while True:
            self.sent += 1 << 20
            yield common_pb2.BlobChunk(data=b"\0" * (1 << 20))


async def _endless_fetch(tmp_path: Path) -> None:
    server = grpc.aio.server()
    hub = _EndlessHub()
    nodes_pb2_grpc.add_NodesServicer_to_server(hub, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conn = HubConnection(f"127.0.0.1:{port}", "token", fetch_stall_s=5.0)
    dest = tmp_path / "cube.stl"
    try:
        with pytest.raises(ArtifactError, match="more than"):
            await conn.fetch_artifact(ref(STL), dest)
        assert not dest.exists() and not dest.with_name("cube.stl.part").exists()
    finally:
        await conn.close()
        await server.stop(0)
    assert hub.sent < 64 << 20  # stopped at once, not when the disk filled


def test_a_fetch_longer_than_the_artifact_stops_at_once(tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_endless_fetch(tmp_path), 60))


def _ec_key(path: Path, password: bytes | None = None) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return path


@pytest.mark.parametrize(("case", "words"), [
    ("ca is text", "the hub's CA file (tls_ca) {ca} is not a PEM certificate: it holds no -----BEGIN"),
    ("ca is a key", "the hub's CA file (tls_ca) {ca} is not a PEM certificate"),
    ("ca is a fifo", "the hub's CA file (tls_ca) {ca} is not a regular file"),
    ("cert is text", "the node's certificate (tls_cert) {cert} is not a PEM certificate"),
    ("key is text", "the node's key (tls_key) {key} is not a PEM private key: it holds no"),
    ("key of another cert", "the node's key (tls_key) {key} is not the key of its certificate (tls_cert) {cert}"),
    ("key is encrypted", "the node's key (tls_key) {key} is encrypted"),
])
def test_tls_files_that_are_not_pem_are_named_before_dialling(tmp_path: Path, case: str, words: str) -> None:
    import os

    good = self_signed(tmp_path)
    ca, cert, key = tmp_path / "ca.pem", good.cert, good.key
    ca.write_bytes(good.cert.read_bytes())
    broken = tmp_path / "broken.pem"
    if case == "ca is text":
        ca.write_text("not a certificate\n", encoding="utf-8")
    elif case == "ca is a key":
        ca.write_bytes(good.key.read_bytes())
    elif case == "ca is a fifo":
        ca = broken
        os.mkfifo(ca)
    elif case == "cert is text":
        cert = broken
        cert.write_text("hello\n", encoding="utf-8")
    elif case == "key is text":
        key = broken
        key.write_text("hello\n", encoding="utf-8")
    elif case == "key of another cert":
        key = _ec_key(broken)
    else:
        key = _ec_key(broken, b"secret")
    with pytest.raises(HubRefused) as caught:  # 127.0.0.1:9 is never dialled
        asyncio.run(enroll("127.0.0.1:9", "spf_x", "test/1", ca=ca, client=ClientCertificate(cert, key),
                           timeout_s=10))
    assert words.format(ca=ca, cert=cert, key=key) in str(caught.value)


def test_a_credential_bound_for_a_remote_hub_in_clear_text_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without tls_ca the bearer credential goes out in clear text: fine on this machine, loudly
    warned about for any other (as the shipped config's hub.example.org was, with tls_ca commented out)."""
    ca = self_signed(tmp_path).cert

    async def build(target: str, ca: Path | None) -> None:
        await HubConnection(target, "spf_x", ca).close()  # nothing is dialled

    warned: dict[tuple[str, bool], bool] = {}
    for target in ("hub.example.org:7443", "10.0.0.5:7443", "[2001:db8::1]:7443", "localhost.example.org:7443",
                   "127.0.0.1:7443", "127.8.9.10:1", "localhost:7443", "[::1]:7443"):
        for with_ca in (False, True):
            caplog.clear()
            with caplog.at_level("WARNING", logger="spime-node"):
                asyncio.run(build(target, ca if with_ca else None))
            warned[target, with_ca] = any("clear text" in r.getMessage() and target in r.getMessage()
                                          for r in caplog.records)
    assert [t for (t, with_ca), w in warned.items() if w] == [
        "hub.example.org:7443", "10.0.0.5:7443", "[2001:db8::1]:7443", "localhost.example.org:7443"]
