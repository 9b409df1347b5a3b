"""`spime-hub`: the hub server's composition root and command line.

    spime-hub serve [--data DIR] [--listen HOST:PORT] [--database URL]
                    [--tls-cert F --tls-key F] [--max-blob-mb N] [--grace S]
    spime-hub user add NAME --role designer|operator|customer|admin|node [--data DIR] [--database URL] [--json]
    spime-hub migrate [--data DIR] [--database URL]

Exit status: 0 success, 1 refused/failed (message on stderr), 2 usage error.
Logs are one JSON object per line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.api.server import HubServer, TlsFiles
from hub.config import MB, HubConfig, default_data_dir
from hub.errors import HubError
from hub.service import AccountService, BlobService, DesignService, ForkService, Hub, RecordService
from hub.service.accounts import parse_role
from hub.service.common import Clock, system_clock
from hub.store import Store, open_store

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


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass
class Composed:
    hub: Hub
    config: HubConfig
    store: Store

    def close(self) -> None:
        self.store.close()


def _printability_check() -> Any:
    """The push-time printability check (slicer_bridge), adapted to (blob path, file name) -> dict."""
    def check(blob_path: str, name: str) -> dict[str, Any]:
        # Imported on first use: numpy/scipy/trimesh cost ~80 MB that a hub without meshes never needs.
        from slicer_bridge.printability import check_file

        # The loader picks the format by extension, and blobs have none: link under the real name.
        with tempfile.TemporaryDirectory(prefix="spime-check-") as tmp:
            link = Path(tmp) / Path(name).name
            os.symlink(blob_path, link)
            return check_file(link).to_dict()

    return check


def compose(config: HubConfig, clock: Clock = system_clock, printability: Any = "auto") -> Composed:
    """config → engine → stores → services. Migrates the schema first.

    Raises:
        HubError: the database or data directory cannot be opened.
    """
    store = open_store(config.data_dir, config.database_url, config.max_blob_bytes)
    check = _printability_check() if printability == "auto" else printability
    hub = Hub(
        accounts=AccountService(store.accounts, clock),
        blobs=BlobService(store.blobs, clock),
        designs=DesignService(
            store.designs, store.blobs, clock, future_skew_s=config.future_skew_s, past_skew_s=config.past_skew_s,
            printability=check, printability_timeout_s=config.printability_timeout_s,
        ),
        forks=ForkService(store.designs, clock),
        records=RecordService(store.designs, store.records),
    )
    return Composed(hub, config, store)


async def serve(config: HubConfig, ready_file: Path | None = None) -> None:
    """Run the hub until SIGTERM/SIGINT, then stop gracefully."""
    composed = compose(config)
    server = HubServer(composed.hub)
    tls = TlsFiles(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
    port = await server.start(config.listen, tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_file is not None:
        host = config.listen.rpartition(":")[0]
        ready_file.write_text(f"{host}:{port}\n", encoding="utf-8")
    await stop.wait()
    log.info("stopping", extra={"grace_s": config.grace_s})
    await server.stop(config.grace_s)
    composed.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spime-hub", description="The Spimeforge hub server.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the hub")
    _store_args(s)
    s.add_argument("--listen", default="127.0.0.1:7443", help="HOST:PORT (default 127.0.0.1:7443; port 0 = any)")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate; with --tls-key enables TLS")
    s.add_argument("--tls-key", type=Path, help="PEM private key")
    s.add_argument("--max-blob-mb", type=int, default=512, help="largest accepted blob in MiB (default 512)")
    s.add_argument("--grace", type=float, default=10.0, help="seconds to finish running calls on stop")
    s.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    user = sub.add_parser("user", help="manage accounts").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="create an account and print its token")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["designer", "operator", "customer", "admin", "node"])
    add.add_argument("--json", action="store_true", help='print {"name", "role", "token"}')
    _store_args(add)
    _store_args(sub.add_parser("migrate", help="bring the database schema up to date"))
    return parser


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=default_data_dir(), help="data directory (default: %(default)s)")
    p.add_argument("--database", default="", help="postgresql://… (default: SQLite in the data directory)")


def _config(args: argparse.Namespace) -> HubConfig:
    extra: dict[str, Any] = {}
    if args.command == "serve":
        extra = {"listen": args.listen, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                 "max_blob_bytes": args.max_blob_mb * MB, "grace_s": args.grace}
    return HubConfig(data_dir=args.data, database_url=args.database, **extra)


def _user_add(args: argparse.Namespace, config: HubConfig) -> None:
    composed = compose(config, printability=None)
    try:
        account, token = composed.hub.accounts._thd_add_user(args.name, parse_role(args.role))
    finally:
        composed.close()
    if args.json:
        print(json.dumps({"name": account.name, "role": account.role.value, "token": token}))
    else:
        print(token)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `spime-hub`; returns the exit status."""
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        config = _config(args)
        if args.command == "serve":
            asyncio.run(serve(config, args.ready_file))
        elif args.command == "user":
            _user_add(args, config)
        else:
            compose(config, printability=None).close()
            print("schema is up to date", file=sys.stderr)
    except HubError as exc:
        print(f"spime-hub: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
