"""`spime-hub`: the hub server's composition root and command line.

    spime-hub serve [--data DIR] [--listen HOST:PORT] [--database URL]
                    [--tls-cert F --tls-key F [--tls-client-ca F]] [--metrics-listen HOST:PORT]
                    [--max-blob-mb N] [--grace S] [--blobs s3://BUCKET/PREFIX [--s3-endpoint URL]]
    spime-hub user add NAME --role designer|operator|customer|admin|node [--data DIR] [--database URL] [--json]
    spime-hub migrate [--data DIR] [--database URL]
    spime-hub node add NAME [--json]                  (hub/node_commands.py: node and job admin)
    spime-hub job add|list|requeue|fail|cancel ...
    spime-hub backup|restore ... / completion bash|zsh / --version   (hub/ops_commands.py)

Exit status: 0 success, 1 refused/failed (message on stderr), 2 usage error.
Logs are one JSON object per line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import logging.handlers
import math
import queue
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub import licenses, node_commands, ops_commands, sd_notify
from hub.api.metrics import HubMetrics, feed_from, start_metrics_server
from hub.api.server import HubServer, TlsFiles, admission_of, tls_credentials
from hub.config import MB, HubConfig, default_data_dir, is_loopback, parse_listen
from hub.errors import FailedPrecondition, HubError, local_file_problem
from hub.jobs import DEFAULT_TIMERS, TimerPolicy
from hub.keys import fingerprint
from hub.provenance import public_key_of
from hub.runtime import tune_gc, tune_malloc, tune_switching
from hub.service import (
    AccountService,
    BlobService,
    DesignService,
    ForkService,
    Hub,
    JobService,
    NodeService,
    RecordService,
)
from hub.service.accounts import parse_role
from hub.service.common import Clock, system_clock
from hub.service.grants import GrantService
from hub.service.orders import OrderService
from hub.service.quoting import SliceEstimator
from hub.service.replicas import ReplicaPolicy
from hub.store import Store, open_store
from hub.store.grants import GrantStore
from hub.store.hub_key import HUB_KEY_NAME, load_or_create_hub_key, read_hub_key
from hub.store.orders import OrderStore
from hub.workers import CheckLimits, CheckPool

__all__ = ["compose", "main", "serve"]

log = logging.getLogger("hub")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


LOG_QUEUE_RECORDS = 10_000
"""Log records waiting for the writer thread; past this they are dropped (and the drop is logged)."""


class _HandOff(logging.handlers.QueueHandler):
    """Hands each record as it is to the writer thread, which formats and writes it.

    The stock QueueHandler formats the message in the logging thread; here the JSON,
    any traceback and the write all happen on the writer thread, never on the event
    loop. A full queue (the writer cannot keep up) drops the record, never blocks.
    """

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if record.args:  # merged now: the arguments may change before the writer gets to them
            record.msg, record.args = record.getMessage(), None
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                self.queue.put_nowait(_dropped_record(self.dropped))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def _dropped_record(count: int) -> logging.LogRecord:
    return logging.LogRecord("hub.log", logging.WARNING, __file__, 0,
                             "%d log records dropped: the log writer could not keep up", (count,), None)


def setup_logging(level: int = logging.INFO) -> Callable[[], None]:
    """JSON lines on stderr, written by a thread of their own; returns the function that flushes and stops it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    records: queue.Queue[logging.LogRecord] = queue.Queue(LOG_QUEUE_RECORDS)
    writer = logging.handlers.QueueListener(records, handler)
    root = logging.getLogger()
    root.handlers[:] = [_HandOff(records)]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # S3 blobs: no per-call chatter
    writer.start()

    def stop() -> None:
        writer.stop()  # writes what is queued
        root.handlers[:] = [handler]  # whatever this process logs afterwards is written at once

    return stop


@dataclass
class Composed:
    hub: Hub
    config: HubConfig
    store: Store
    checks: CheckPool | None = None

    def close(self) -> None:
        if self.checks is not None:
            self.checks.close()
        self.store.close()


def _check_pool(config: HubConfig) -> CheckPool:
    """The push-time printability check: slicer_bridge in worker processes with limits."""
    return CheckPool(CheckLimits(cpu_s=config.printability_cpu_s, memory_bytes=config.printability_memory_mb * MB,
                                 timeout_s=config.printability_timeout_s))


def compose(config: HubConfig, clock: Clock = system_clock, printability: Any = "auto",
            timers: TimerPolicy = DEFAULT_TIMERS) -> Composed:
    """config → engine → stores → services. Migrates the schema first.

    Raises:
        HubError: the database or data directory cannot be opened.
    """
    # Blob paths reach worker processes and temporary links: never relative to the current directory.
    config = dataclasses.replace(config, data_dir=config.data_dir.expanduser().absolute())
    store = open_store(config.data_dir, config.database_url, config.max_blob_bytes,
                       blobs=config.blobs, s3_endpoint=config.s3_endpoint, blob_cache_bytes=config.blob_cache_bytes)
    pool = _check_pool(config) if printability == "auto" else printability
    accounts = AccountService(store.accounts, clock, load_or_create_hub_key(config.data_dir))
    jobs = JobService(store.jobs, store.nodes, clock, timers)
    hub = Hub(
        accounts=accounts,
        blobs=BlobService(store.blobs, clock, idle_timeout_s=config.upload_idle_timeout_s),
        designs=DesignService(
            store.designs, store.blobs, clock, future_skew_s=config.future_skew_s, past_skew_s=config.past_skew_s,
            printability=pool.check if pool else None, printability_timeout_s=config.printability_timeout_s,
            signatures=accounts.check_signature,
        ),
        forks=ForkService(store.designs, clock),
        records=RecordService(store.designs, store.records, OrderStore(store.designs.engine)),
        jobs=jobs,
        nodes=NodeService(store.nodes, jobs, store.jobs, store.designs, clock, timers,
                          credentials=accounts._thd_live_accounts),
        orders=_order_service(config, store, jobs, clock),
    )
    return Composed(hub, config, store, pool or None)


def _order_service(config: HubConfig, store: Store, jobs: JobService, clock: Clock) -> OrderService:
    """Orders (issue 8): quotes sliced on the hub under the data directory, jobs through the job service."""
    orders = OrderStore(store.designs.engine)
    grants = GrantService(store.designs, orders, clock, store.accounts, GrantStore(store.designs.engine))
    estimator = SliceEstimator(store.blobs.path, config.data_dir / "quotes")
    return OrderService(store.designs, orders, grants, estimator, clock, jobs=jobs, nodes=store.nodes)


async def serve(config: HubConfig, ready_file: Path | None = None) -> None:
    """Run the hub until SIGTERM/SIGINT, then stop gracefully."""
    tls = TlsFiles(config.tls_cert, config.tls_key, config.tls_client_ca) if config.tls_cert and config.tls_key else None
    if tls is not None:
        tls_credentials(tls)  # a bad TLS file is named before a data directory or database is made
    elif not is_loopback(parse_listen(config.listen)[0]):
        log.warning("serving %s without TLS: every client's token and every node's credential cross the "
                    "network in clear text; give --tls-cert and --tls-key (ops/tls/make-dev-ca.sh makes them)",
                    config.listen)
    tune_malloc()  # upload buffers reused from the heap, not mapped and faulted in afresh (hub/runtime.py)
    composed = compose(config)
    # The SPDX parser builds its tables on first use (~0.3 s of pure Python): not in the first push.
    threading.Thread(target=licenses.parse_expression, args=("CC-BY-4.0",), name="warm-up", daemon=True).start()
    metrics = HubMetrics() if config.metrics_listen else None
    if metrics is not None:
        feed_from(metrics, composed.hub, composed.store.jobs._thd_state_counts)
    server = HubServer(composed.hub, metrics, ReplicaPolicy(config.replica_ttl_s / 6, config.replica_ttl_s),
                       admission=admission_of(config))
    exporter = start_metrics_server(config.metrics_listen, metrics.registry) if metrics else None
    port = await server.start(config.listen, tls)
    tune_gc()  # what start-up made is never collected again; fewer full collections (hub/runtime.py)
    tune_switching()  # a thread waiting for the GIL waits 1 ms at most, not 5 (hub/runtime.py)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file is not None:
        host = config.listen.rpartition(":")[0]
        ready_file.write_text(f"{host}:{port}\n", encoding="utf-8")
    sd_notify.ready(f"serving on port {port}")
    await stop.wait()
    log.info("stopping", extra={"grace_s": config.grace_s})
    sd_notify.stopping()
    await server.stop(config.grace_s)
    if exporter is not None:
        exporter.close()
    composed.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spime-hub", description="The Spimeforge hub server.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the hub")
    _store_args(s)
    s.add_argument("--listen", default="127.0.0.1:7443", help="HOST:PORT (default 127.0.0.1:7443; port 0 = any)")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate; with --tls-key enables TLS")
    s.add_argument("--tls-key", type=Path, help="PEM private key")
    s.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="PEM CA: require every client to present a certificate it signed (mTLS)")
    s.add_argument("--metrics-listen", default="", metavar="HOST:PORT",
                   help="serve Prometheus metrics on http://HOST:PORT/metrics (default: off)")
    s.add_argument("--max-blob-mb", type=int, default=512, help="largest accepted blob in MiB (default 512)")
    s.add_argument("--grace", type=float, default=10.0, help="seconds to finish running calls on stop")
    s.add_argument("--replica-ttl", type=float, default=30.0, metavar="SECONDS",
                   help="replicas on one PostgreSQL: release a dead replica's agents after this (3-3600, default 30)")
    s.add_argument("--rate-limit", action="append", default=[], metavar="CLASS=PER_S/BURST",
                   help="per-account rate of a class of calls (search, blobs, order, export, grant; per address: enroll, and "
                        "auth, the failed authentications), e.g. search=20/100; repeatable (defaults in hub/limits.py)")
    s.add_argument("--admission-wait", type=float, default=2.0, metavar="SECONDS",
                   help="how long a call over its account's rate or concurrency limit waits before it is refused "
                        "(0-60, default 2)")
    s.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    s.add_argument("--blobs", default="", metavar="s3://BUCKET/PREFIX",
                   help="keep blobs in an S3-compatible bucket (credentials and region from AWS_ACCESS_KEY_ID, "
                        "AWS_SECRET_ACCESS_KEY, AWS_REGION; default: files under --data/blobs)")
    s.add_argument("--s3-endpoint", default="", metavar="URL",
                   help="URL of the S3-compatible server, e.g. http://minio.lan:9000 (default: AWS)")
    s.add_argument("--blob-cache-gb", type=float, default=10.0, metavar="GIB",
                   help="with --blobs: size cap of the local blob cache in GiB (least recently used go first; "
                        "default 10)")
    user = sub.add_parser("user", help="manage accounts").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="create an account and print its token")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["designer", "operator", "customer", "admin", "node"])
    add.add_argument("--json", action="store_true", help='print {"name", "role", "token"}')
    _store_args(add)
    token = user.add_parser("token", help="give an account another token and print it (its other tokens keep working)")
    revoke = user.add_parser("revoke", help="revoke every token of an account (a running hub stops accepting "
                                            "them within a minute, its token cache's lifetime, and ends the "
                                            "streams they opened, a node's session or an order watch, within 30 s)")
    for p in (token, revoke):
        p.add_argument("name")
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
        _store_args(p)
    _store_args(sub.add_parser("migrate", help="bring the database schema up to date"))
    key = sub.add_parser("key", help="the hub's own Ed25519 key").add_subparsers(dest="key_command", required=True)
    show = key.add_parser("show", help="print the hub's public key (verifiers pin it: spime verify --hub-key)")
    show.add_argument("--data", type=_data_path, default=default_data_dir(), help="data directory (default: %(default)s)")
    show.add_argument("--json", action="store_true", help='print {"public_key", "fingerprint", "path"}')
    ops_commands.register(sub, _store_args)
    node_commands.register(sub, _store_args)
    ops_commands.finish_parser(parser)
    return parser


def _data_path(text: str) -> Path:
    """A ``--data`` argument, made absolute at startup: blob paths handed to the push-time
    checks and the workers must not depend on the current directory."""
    return Path(text).expanduser().absolute()


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=_data_path, default=default_data_dir(), help="data directory (default: %(default)s)")
    p.add_argument("--database", default="", help="postgresql://… (default: SQLite in the data directory)")


def _config(args: argparse.Namespace) -> HubConfig:
    extra: dict[str, Any] = {}
    if args.command == "serve":
        extra = {"listen": args.listen, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                 "max_blob_bytes": args.max_blob_mb * MB, "grace_s": args.grace,
                 "tls_client_ca": args.tls_client_ca, "metrics_listen": args.metrics_listen,
                 "blobs": args.blobs, "s3_endpoint": args.s3_endpoint,
                 "blob_cache_bytes": _gib(args.blob_cache_gb), "replica_ttl_s": args.replica_ttl,
                 "rate_limits": ",".join(args.rate_limit), "admission_wait_s": args.admission_wait}
    return HubConfig(data_dir=args.data, database_url=args.database, **extra)


def _user(args: argparse.Namespace, config: HubConfig) -> None:
    composed = compose(config, printability=None)
    try:
        accounts = composed.hub.accounts
        if args.user_command == "add":
            account, token = accounts._thd_add_user(args.name, parse_role(args.role))
            doc: dict[str, Any] = {"name": account.name, "role": account.role.value, "token": token}
        elif args.user_command == "token":
            token = accounts._thd_new_token(args.name)
            doc = {"name": args.name, "token": token}
        else:
            revoked = accounts._thd_revoke_tokens(args.name)
            doc = {"name": args.name, "revoked": revoked}
    finally:
        composed.close()
    if args.json:
        print(json.dumps(doc))
    elif "token" in doc:
        print(doc["token"])
    else:
        print(f"revoked {revoked} token(s) of {args.name}; a running hub refuses them within a minute "
              "and ends the streams they opened (a node's session, an order watch) within 30 s")


def _gib(value: float) -> int:
    """GiB as bytes; -1 for a value no byte count can be (NaN, infinite), which HubConfig refuses."""
    return int(value * (1 << 30)) if math.isfinite(value) else -1


def _key_show(args: argparse.Namespace) -> None:
    private = read_hub_key(args.data)  # never made here: a mistyped --data must not print a new key to pin
    if private is None:
        raise FailedPrecondition(f"{args.data} holds no hub key ({HUB_KEY_NAME}): check --data (a hub makes "
                                 "its key when it first starts: spime-hub serve or migrate)")
    public = public_key_of(private)
    doc = {"public_key": public.hex(), "fingerprint": fingerprint(public), "path": str(args.data / HUB_KEY_NAME)}
    print(json.dumps(doc) if args.json else doc["public_key"])


def _needs_a_hub(args: argparse.Namespace) -> bool:
    """Whether the command only reads or changes what a hub already holds: these never make a
    new hub where ``--data``/``--database`` point (serve, migrate, user add and node add do)."""
    if args.command == "user":
        return bool(args.user_command != "add")
    if args.command == "node":
        return bool(args.node_command != "add")
    return bool(args.command == "job")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `spime-hub`; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    stop_logging = setup_logging()
    try:
        return _run(args, parser)
    finally:
        stop_logging()


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        if args.command in ops_commands.COMMANDS:
            ops_commands.run(args, parser)
            return 0
        if args.command == "key":
            _key_show(args)
            return 0
        config = _config(args)
        if _needs_a_hub(args):
            from hub.backup import require_hub  # as ops_commands: backup's imports only when needed

            require_hub(config.data_dir, config.database_url)
        if args.command == "serve":
            asyncio.run(serve(config, args.ready_file))
        elif args.command == "user":
            _user(args, config)
        elif args.command in node_commands.COMMANDS:
            node_commands.run(args, lambda: compose(config, printability=None))
        else:
            compose(config, printability=None).close()
            print("schema is up to date", file=sys.stderr)
    except HubError as exc:
        print(f"spime-hub: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a --data directory or backup file the system refuses
        print(f"spime-hub: error: {local_file_problem(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
