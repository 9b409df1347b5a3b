"""Hub settings: read once, validated with ranges, frozen."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from hub.errors import InvalidArgument
from hub.limits import ADMISSION_WAIT_S, parse_rates

__all__ = ["HubConfig", "default_data_dir", "is_loopback", "parse_listen"]

MB = 1024 * 1024


def default_data_dir() -> Path:
    """The per-user data directory ($XDG_DATA_HOME/spimeforge or ~/.local/share/spimeforge)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "spimeforge"


def parse_listen(text: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT).

    Raises:
        InvalidArgument: not HOST:PORT with a port in 0..65535.
    """
    host, sep, port = text.rpartition(":")
    # str.isdigit() also accepts "²" (int() refuses it) and "٣" (int() reads 3): ASCII only,
    # and short, so int() never meets a 5,000-digit string.
    ascii_digits = port.isascii() and port.isdigit() and len(port) <= 5
    if not sep or not host or not ascii_digits or not 0 <= int(port) <= 65535:
        raise InvalidArgument(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:7443")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether a host (as parse_listen gives it) names this machine: localhost, 127.0.0.0/8, ::1.
    DNS is not asked: a name that merely resolves to a loopback address does not count."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Everything `spime-hub serve` needs, validated at construction.

    Attributes:
        data_dir: SQLite database, blobs, temp files; quotes/ holds bounded work files (README "Work files
            for quotes"; hub.service.quoting: TREE_BUDGET, RENDER_CACHE_BYTES, SLICE_CACHE_BYTES).
        listen: HOST:PORT (port 0 = pick a free one).
        database_url: empty = SQLite in data_dir; else postgresql://…
        tls_cert, tls_key: PEM files; both or neither.
        max_blob_bytes: upload limit per blob.
        grace_s: graceful-stop period.
        future_skew_s, past_skew_s: accepted distance of a push's created_at from now.
        printability_timeout_s: per-mesh limit of the push-time check (wall time; the worker is then killed).
        printability_cpu_s, printability_memory_mb: CPU time and address space of one check's worker process.
        upload_idle_timeout_s: an upload stream that sends no chunk for this long is ended (RESOURCE_EXHAUSTED).
        tls_client_ca: PEM CA bundle; set, every client must present a certificate it signed (mTLS).
        metrics_listen: HOST:PORT of the Prometheus /metrics endpoint; empty = none.
        blobs: empty = blob files under data_dir; ``s3://BUCKET/PREFIX`` = an S3-compatible bucket.
        s3_endpoint: URL of the S3-compatible server (empty = AWS); credentials from AWS_* variables.
        blob_cache_bytes: S3 blobs: size cap of the local cache under data_dir/blob-cache (least
            recently used blobs go first).
        replica_ttl_s: PostgreSQL replicas: a replica's lease; its sessions are released this long after
            it stops renewing it (it renews every sixth of it).
        rate_limits: per-account rates over hub.limits.DEFAULT_RATES, ``CLASS=PER_S/BURST`` items joined
            by commas (``search=20/100,order=2/40``); empty = the defaults.
        admission_wait_s: how long a call over its account's rate or concurrency limit may wait for its
            turn before it is refused (RESOURCE_EXHAUSTED); 0 = refuse at once.
    """

    data_dir: Path
    listen: str = "127.0.0.1:7443"
    database_url: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_blob_bytes: int = 512 * MB
    grace_s: float = 10.0
    future_skew_s: int = 300
    past_skew_s: int = 7 * 86400
    printability_timeout_s: float = 60.0
    printability_cpu_s: int = 60
    printability_memory_mb: int = 2048
    upload_idle_timeout_s: float = 30.0
    tls_client_ca: Path | None = None
    metrics_listen: str = ""
    blobs: str = ""
    s3_endpoint: str = ""
    blob_cache_bytes: int = 10 << 30
    replica_ttl_s: float = 30.0
    rate_limits: str = ""
    admission_wait_s: float = ADMISSION_WAIT_S

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("give both --tls-cert and --tls-key, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key (mTLS is TLS first)")
        if self.metrics_listen:
            try:
                parse_listen(self.metrics_listen)
            except InvalidArgument as exc:
                raise InvalidArgument(f"--metrics-{exc.message.removeprefix('--')}") from exc
        for path in (self.tls_cert, self.tls_key, self.tls_client_ca):
            if path is not None and not Path(path).is_file():
                raise InvalidArgument(f"TLS file {path} does not exist")
        if not 1 <= self.max_blob_bytes <= 1 << 40:
            raise InvalidArgument("--max-blob-mb must be between 1 byte and 1 TiB")
        if not (0 < self.upload_idle_timeout_s <= 3600 and 0 < self.printability_timeout_s <= 3600
                and 1 <= self.printability_cpu_s <= 3600 and 64 <= self.printability_memory_mb <= 1 << 20):
            raise InvalidArgument("upload idle timeout and check limits: 0-3600 s, CPU 1-3600 s, memory >= 64 MiB")
        if not 0 <= self.grace_s <= 3600:
            raise InvalidArgument("grace period must be 0..3600 s")
        if not 3 <= self.replica_ttl_s <= 3600:
            raise InvalidArgument("--replica-ttl must be 3..3600 s")
        if (self.blobs and not self.blobs.startswith("s3://")) or len(self.blobs) > 300:
            raise InvalidArgument("--blobs must be s3://BUCKET/PREFIX (at most 300 characters), or omitted")
        if self.s3_endpoint and not self.blobs:
            raise InvalidArgument("--s3-endpoint needs --blobs s3://BUCKET/PREFIX")
        if not MB <= self.blob_cache_bytes <= 1 << 50:
            raise InvalidArgument("--blob-cache-gb must be between 0.001 and 1,000,000 (GiB)")
        parse_rates(self.rate_limits)
        if not 0 <= self.admission_wait_s <= 60:
            raise InvalidArgument("--admission-wait must be 0..60 s")
        if self.database_url and not self.database_url.startswith(("postgresql", "sqlite")):
            raise InvalidArgument("--database must be postgresql://… or sqlite:///…")
