"""An in-process grpc.aio hub for API tests, and helpers to push designs through real stubs.

The server runs on its own event loop in a background thread, on 127.0.0.1
port 0; tests talk to it with ordinary (blocking) generated stubs and can read
its store directly to assert that refused calls changed nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from spimeforge.v1 import (
    accounts_pb2_grpc,
    common_pb2,
    designs_pb2,
    designs_pb2_grpc,
    records_pb2_grpc,
)

from hub.__main__ import Composed, compose
from hub.api.server import HubServer, TlsFiles, admission_of
from hub.config import HubConfig
from hub.domain import Role
from hub.store import schema

USERS = {"admin": "admin", "alice": "designer", "bob": "designer", "carol": "customer", "olga": "operator"}
CHUNK = 256 * 1024


def now_z(offset_s: int = 0) -> str:
    moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest_toml(name: str, *, license: str = "CC-BY-4.0", files: tuple[str, ...] = ("cube.stl",),
                  title: str = "", tags: tuple[str, ...] = ("test",), version: str = "1.0.0",
                  extra: str = "") -> str:
    file_list = ", ".join(f'"{f}"' for f in files)
    tag_list = ", ".join(f'"{t}"' for t in tags)
    return (
        f'name = "{name}"\ntitle = "{title or name.title()}"\ndescription = "A test design {name}"\n'
        f'license = "{license}"\nlicensor = "Test Licensor"\nversion = "{version}"\n'
        f'function = "testing the hub"\ntags = [{tag_list}]\n{extra}\n'
        f'[[parts]]\nname = "body"\nfiles = [{file_list}]\nmaterial = "PLA"\nquantity = 1\n'
    )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class InProcessHub:
    """A running in-process hub and blocking stubs to it."""

    composed: Composed
    server: HubServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    address: str
    tokens: dict[str, str] = field(default_factory=dict)
    channel: grpc.Channel | None = None

    @property
    def engine(self) -> sa.Engine:
        return self.composed.store.designs.engine

    @property
    def data_dir(self) -> Path:
        return self.composed.config.data_dir

    def md(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[name]}"),)

    def add_user(self, name: str, role: str) -> str:
        self.tokens[name] = self.composed.hub.accounts._thd_add_user(name, Role(role))[1]
        return self.tokens[name]

    @property
    def designs(self) -> designs_pb2_grpc.DesignsStub:
        return designs_pb2_grpc.DesignsStub(self.channel)

    @property
    def accounts(self) -> accounts_pb2_grpc.AccountsStub:
        return accounts_pb2_grpc.AccountsStub(self.channel)

    @property
    def records(self) -> records_pb2_grpc.RecordsStub:
        return records_pb2_grpc.RecordsStub(self.channel)

    # -- assertions helpers ------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every row of every table but the hub's own lease, and the blob files: equal before/after a
        refused call. On PostgreSQL the running hub renews its replica lease (hub_replicas) every
        ReplicaPolicy.beat_s whatever the calls: snapshots on either side of a renewal differed."""
        rows: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for table in schema.metadata.sorted_tables:
                if table is not schema.hub_replicas:
                    rows[table.name] = sorted(map(repr, conn.execute(sa.select(table)).all()))
        blob_root = self.data_dir / "blobs"
        rows["blob_files"] = sorted(str(p.relative_to(blob_root)) for p in blob_root.rglob("*") if p.is_file())
        return rows

    def temp_files(self) -> list[Path]:
        return self.composed.store.blobs.temp_files()

    # -- client helpers ----------------------------------------------------------

    def upload(self, user: str, data: bytes, *, declared: str | None = None, declared_size: int | None = None,
               chunk: int = CHUNK) -> designs_pb2.UploadBlobResponse:
        def chunks() -> Iterator[common_pb2.BlobChunk]:
            total = len(data) if declared_size is None else declared_size
            first = common_pb2.BlobChunk(sha256=declared or sha(data), total_size=total, offset=0, data=data[:chunk])
            yield first
            for offset in range(chunk, len(data), chunk):
                yield common_pb2.BlobChunk(offset=offset, data=data[offset:offset + chunk])

        answer: designs_pb2.UploadBlobResponse = self.designs.UploadBlob(chunks(), metadata=self.md(user), timeout=60)
        return answer

    def push(self, user: str, design: str, files: Mapping[str, bytes], *, manifest: str | None = None,
             parents: tuple[str, ...] = (), create: bool = False, message: str = "push",
             created_at: str | None = None, upload: bool = True, entries: list[common_pb2.FileEntry] | None = None,
             signature: bytes = b"", public_key: bytes = b"") -> designs_pb2.PushResponse:
        if upload:
            missing = set(self.designs.MissingBlobs(
                designs_pb2.MissingBlobsRequest(sha256=[sha(b) for b in files.values()]), metadata=self.md(user)).sha256)
            for data in files.values():
                if sha(data) in missing:
                    self.upload(user, data)
                    missing.discard(sha(data))
        request = self.push_request(design, files, manifest=manifest, parents=parents, create=create,
                                    message=message, created_at=created_at, entries=entries,
                                    signature=signature, public_key=public_key)
        pushed: designs_pb2.PushResponse = self.designs.Push(request, metadata=self.md(user), timeout=60)
        return pushed

    @staticmethod
    def push_request(design: str, files: Mapping[str, bytes], *, manifest: str | None = None,
                     parents: tuple[str, ...] = (), create: bool = False, message: str = "push",
                     created_at: str | None = None, entries: list[common_pb2.FileEntry] | None = None,
                     signature: bytes = b"", public_key: bytes = b"") -> designs_pb2.PushRequest:
        if entries is None:
            entries = [common_pb2.FileEntry(path=p, sha256=sha(b), size=len(b)) for p, b in files.items()]
        return designs_pb2.PushRequest(
            design=design, parent_ids=list(parents), create=create, message=message,
            manifest_toml=manifest if manifest is not None else manifest_toml(design, files=tuple(files)),
            created_at=created_at or now_z(), files=entries, signature=signature, public_key=public_key,
        )

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(1.0), self.loop).result(timeout=30)
        # The store work calls started (asyncio.to_thread) ends before the store closes: a thread still
        # holding a database connection when the engine is disposed leaks it, and a later test trips
        # over its ResourceWarning when it is collected.
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
        self.composed.close()


def start_in_process(data_dir: Path, database_url: str = "", *, tls: TlsFiles | None = None,
                     max_blob_bytes: int = 512 << 20, printability: Any = None,
                     users: Mapping[str, str] = USERS, settings: Mapping[str, Any] | None = None) -> InProcessHub:
    """Compose a hub, start its server on a background loop, add the standard users.

    ``settings`` are further HubConfig fields (e.g. a small upload_idle_timeout_s).
    """
    config = HubConfig(data_dir=data_dir, database_url=database_url, max_blob_bytes=max_blob_bytes,
                       **dict(settings or {}))
    composed = compose(config, printability=printability)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hub-loop", daemon=True)
    thread.start()

    async def _start() -> tuple[HubServer, int]:
        server = HubServer(composed.hub, admission=admission_of(config))
        return server, await server.start("127.0.0.1:0", tls)

    server, port = asyncio.run_coroutine_threadsafe(_start(), loop).result(timeout=30)
    hub = InProcessHub(composed, server, loop, thread, f"127.0.0.1:{port}")
    for name, role in users.items():
        hub.add_user(name, role)
    if tls is None:
        hub.channel = grpc.insecure_channel(hub.address)
    return hub


def register_key(api: InProcessHub, user: str, private_key: bytes, signed_at: str | None = None) -> Any:
    """Register a key to a user through the API (proof of possession included); the KeyRegistration."""
    from spimeforge.v1 import accounts_pb2

    from hub.keys import prove_possession

    hub_key = api.accounts.GetHubKey(accounts_pb2.GetHubKeyRequest(), metadata=api.md(user)).public_key
    at = signed_at or now_z()
    public, proof = prove_possession(private_key, user, at, hub_key)
    request = accounts_pb2.RegisterKeyRequest(public_key=public, signed_at=at, proof=proof)
    return api.accounts.RegisterKey(request, metadata=api.md(user), timeout=30)


def exported(api: Any, design: str, fmt: int, revision_id: str = "", user: str = "carol") -> tuple[str, bytes]:
    """(media type, document) of Records.Export, its chunks joined: the first names the type and the size,
    none is over the chunk size. ``api``: an InProcessHub or a ClockedHub."""
    from spimeforge.v1 import records_pb2

    from hub.api.servicers import EXPORT_CHUNK_BYTES

    request = records_pb2.ExportRequest(design=design, format=fmt, revision_id=revision_id)
    chunks = list(api.records.Export(request, metadata=api.md(user)))
    document = b"".join(c.document for c in chunks)
    assert chunks[0].total_bytes == len(document) and all(len(c.document) <= EXPORT_CHUNK_BYTES for c in chunks)
    return chunks[0].media_type, document


def self_signed(directory: Path) -> TlsFiles:
    """A self-signed certificate for localhost/127.0.0.1 and its key, written under directory."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return TlsFiles(directory / "cert.pem", directory / "key.pem")
