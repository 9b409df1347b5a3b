"""``spime-node run`` and ``spime-node enroll``: wiring the agent's parts together.

The composition root (``node_agent.__main__``) passes the driver factory; this module
builds the journal, the hub connection, the worker and the control socket, installs
the signal handlers and runs until SIGTERM/SIGINT (a second signal stops waiting
for running prints).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from node_agent import sd_notify
from node_agent.config import FileRefused, NodeConfig, PrinterConfig, read_regular
from node_agent.control import ControlServer, control_path
from node_agent.drivers.base import PrinterDriver
from node_agent.hub_client import ClientCertificate, HubConnection, HubError, enroll
from node_agent.journal import Journal, JournalError
from node_agent.metrics import MetricsAddressError, MetricsServer, NodeMetrics, start_metrics_server
from node_agent.pipeline import PipelineSettings
from node_agent.worker import AGENT_VERSION, ControlError, Worker
from slicer_bridge import SLICERS, CacheError, RenderCache, SliceCache

__all__ = ["DaemonError", "enroll_node", "read_credential", "run_daemon"]

SLICE_CACHE_BYTES = 2 * 1024**3
RENDER_CACHE_BYTES = 512 * 1024**2
MAX_CREDENTIAL_BYTES = 4096  # a credential is about 50 ASCII characters
log = logging.getLogger("spime-node")


class DaemonError(Exception):
    """The daemon cannot start; the message says what to do."""


def read_credential(config: NodeConfig) -> str:
    """The node credential: ``token`` in the config, else the enrolled credential file, which must be
    a small regular file that only its owner may read or write (as ``spime-node enroll`` stores it).

    Raises:
        DaemonError: not enrolled yet, or the file is unreadable, not a regular file, too large, or
            open to its group or others.
    """
    if config.node.token:
        return config.node.token
    path = config.node.credential_path
    try:
        token = read_regular(path, MAX_CREDENTIAL_BYTES).decode("ascii").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DaemonError(f"{path}: no node credential; enroll first: spime-node enroll "
                          f"--config {config.source} --token TOKEN (from `spime-hub node add`)"
                          ) from None
    except FileRefused as exc:
        raise DaemonError(f"{path}: over {MAX_CREDENTIAL_BYTES} bytes: not a node credential; enroll again"
                          if exc.too_large else f"{path}: not a regular file: the node credential is the "
                          "file `spime-node enroll` writes") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DaemonError(f"{path}: cannot read the node credential: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DaemonError(f"{path}: the node credential is open to its group or others: chmod 600 it (and, "
                          "if anyone else may have read it, have the hub admin re-issue it: spime-hub node add "
                          f"{config.node.name} --again)")
    if not token:
        raise DaemonError(f"{path}: the credential file is empty; enroll again")
    return token


def _client_certificate(config: NodeConfig) -> ClientCertificate | None:
    node = config.node
    return None if node.tls_cert is None or node.tls_key is None else ClientCertificate(node.tls_cert, node.tls_key)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def enroll_node(config: NodeConfig, enrollment_token: str) -> tuple[str, Path]:
    """Exchange the enrollment token and store the credential 0600 in the state directory.

    Returns:
        (node name the hub knows, credential path).

    Raises:
        HubError: the hub refused or could not be reached.
        DaemonError: the credential cannot be stored, or the hub enrolled a different node
            name than the config's.
    """
    path = config.node.credential_path
    try:  # before the one-time token is spent
        path.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(path.parent, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        raise DaemonError(f"{path.parent}: cannot write the node credential there; fix "
                          "state_dir (or credential_file) in the config, then enroll")
    node, token = asyncio.run(enroll(config.node.hub, enrollment_token, AGENT_VERSION,
                                     config.node.tls_ca, client=_client_certificate(config)))
    try:
        _write_private(path, token)
    except OSError as exc:
        raise DaemonError(f"{path}: cannot store the node credential ({exc.strerror}); the "
                          "enrollment token is used up: ask the hub admin for a new one") from exc
    if node != config.node.name:
        raise DaemonError(f"the token enrolled node {node!r} but the config names "
                          f"{config.node.name!r}; set [node] name = {node!r} (credential saved "
                          f"in {path})")
    return node, path


def _pipeline(config: NodeConfig) -> PipelineSettings:
    state = config.node.state_dir
    try:
        cache = SliceCache(state / "slice-cache", SLICE_CACHE_BYTES)
        renders = RenderCache(state / "render-cache", RENDER_CACHE_BYTES)
    except CacheError as exc:
        raise DaemonError(str(exc)) from exc
    return PipelineSettings(state / "jobs", cache, SLICERS["prusaslicer"], renders=renders)


def run_daemon(config: NodeConfig, factory: Callable[[PrinterConfig], PrinterDriver],
               err: TextIO = sys.stderr, metrics_listen: str | None = None) -> int:
    """Run the agent until a signal; returns the exit status.

    Raises:
        DaemonError: not enrolled, the state directory is unusable, or the metrics address
            cannot be bound.
    """
    logging.basicConfig(stream=err, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = read_credential(config)
    try:
        journal = Journal.open(config.node.state_dir / "journal.db")
    except JournalError as exc:
        raise DaemonError(str(exc)) from exc
    try:
        return asyncio.run(_serve(config, journal, token, factory, metrics_listen))
    finally:
        journal.close()


def _metrics(worker: Worker, address: str | None) -> MetricsServer | None:
    if address is None:
        return None
    metrics = NodeMetrics(lambda: worker.printer_snapshots, jobs=lambda: worker.job_counts)
    try:
        return start_metrics_server(address, metrics.registry)
    except MetricsAddressError as exc:
        raise DaemonError(str(exc)) from exc


async def _serve(config: NodeConfig, journal: Journal, token: str,
                 factory: Callable[[PrinterConfig], PrinterDriver], metrics_listen: str | None
                 ) -> int:
    drivers = {p.name: factory(p) for p in config.printers}
    hub = HubConnection(config.node.hub, token, config.node.tls_ca, _client_certificate(config))
    worker = Worker(config, journal, hub, drivers, _pipeline(config))
    try:
        metrics = _metrics(worker, metrics_listen)
    except DaemonError:
        await hub.close()
        raise
    try:
        return await _run(config, worker, hub)
    finally:
        if metrics is not None:
            metrics.close()


async def _run(config: NodeConfig, worker: Worker, hub: HubConnection) -> int:
    control = ControlServer(control_path(config.node.state_dir), worker, (ControlError,))
    try:
        await control.start()
    except OSError as exc:
        await hub.close()
        raise DaemonError(str(exc)) from exc
    loop = asyncio.get_running_loop()
    signals = {"count": 0}

    def on_signal() -> None:
        signals["count"] += 1
        sd_notify.stopping()
        worker.shutdown(leave_prints=signals["count"] > 1)

    async def announce() -> None:
        await worker.ready.wait()
        up = sum(1 for p in (await worker.status())["printers"] if p["connected"])
        sd_notify.ready(f"{up}/{len(config.printers)} printers connected")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    log.info("node %s: serving, control socket %s", config.node.name, control.path)
    notifier = asyncio.create_task(announce())
    try:
        await worker.run()
    except HubError as exc:
        log.error("%s; enroll again with `spime-node enroll`", exc)
        return 1
    finally:
        notifier.cancel()
        await control.close()
    log.info("node %s: stopped", config.node.name)
    return 0
