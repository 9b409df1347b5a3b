"""Prometheus metrics of a node agent, read at scrape time from plain-data snapshots.

The agent registers two providers and serves the registry on its own address:

    metrics = NodeMetrics(lambda: {name: status for name, status in last_status.items()},
                          jobs=lambda: journal_counts)
    server = start_metrics_server("127.0.0.1:9465", metrics.registry)   # `spime-node run --metrics-listen`
    ...
    server.close()

Families (labels in braces):

* ``spime_node_printer_state{printer, state}``: 1 for the printer's current phase, 0 for the others.
* ``spime_node_job_progress_ratio{printer, job}``: 0..1 of the job a printer is running.
* ``spime_node_job_lines_sent{printer, job}``: G-code lines acknowledged so far.
* ``spime_node_serial_resends_total{printer}``: resend requests of the printer's current connection.
* ``spime_node_temperature_celsius{printer, heater, kind}``: hotend/bed, actual/target.
* ``spime_node_jobs{state}``: jobs in the local journal by state (when a provider is given).

Providers run on the metrics server's thread: they must only read snapshots the
agent loop stored (PrinterStatus is frozen), never call into a driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node_agent.drivers.base import PrinterPhase, PrinterStatus

__all__ = ["MetricsAddressError", "MetricsServer", "NodeMetrics", "start_metrics_server"]

PrinterSnapshots = Callable[[], Mapping[str, PrinterStatus]]
JobCounts = Callable[[], Mapping[str, int]]


class MetricsAddressError(ValueError):
    """The metrics listen address is malformed or cannot be bound (an operator's config error)."""


class NodeMetrics(Collector):
    """The agent's metrics on their own registry (several agents may share a process in tests)."""

    def __init__(self, printers: PrinterSnapshots, jobs: JobCounts | None = None) -> None:
        self._printers = printers
        self._jobs = jobs
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        statuses = dict(self._printers())
        yield _states(statuses)
        yield from _jobs_of(statuses)
        resends = CounterMetricFamily("spime_node_serial_resends",
                                      "Resend requests from the printer on its current connection.",
                                      labels=["printer"])
        for name, status in sorted(statuses.items()):
            resends.add_metric([name], status.resends)
        yield resends
        yield _temperatures(statuses)
        if self._jobs is not None:
            jobs = GaugeMetricFamily("spime_node_jobs", "Jobs in the local journal, by state.", labels=["state"])
            for state, count in sorted(self._jobs().items()):
                jobs.add_metric([state], count)
            yield jobs


def _states(statuses: Mapping[str, PrinterStatus]) -> GaugeMetricFamily:
    family = GaugeMetricFamily("spime_node_printer_state", "1 for the printer's current phase.",
                               labels=["printer", "state"])
    for name, status in sorted(statuses.items()):
        for phase in PrinterPhase:
            family.add_metric([name, phase.value], 1.0 if status.phase is phase else 0.0)
    return family


def _jobs_of(statuses: Mapping[str, PrinterStatus]) -> Iterator[GaugeMetricFamily]:
    progress = GaugeMetricFamily("spime_node_job_progress_ratio", "Progress of the running job, 0 to 1.",
                                 labels=["printer", "job"])
    lines = GaugeMetricFamily("spime_node_job_lines_sent", "G-code lines of the running job sent so far.",
                              labels=["printer", "job"])
    for name, status in sorted(statuses.items()):
        if status.job_name is not None:
            progress.add_metric([name, status.job_name], min(max(status.percent / 100.0, 0.0), 1.0))
            lines.add_metric([name, status.job_name], status.lines_sent)
    yield progress
    yield lines


def _temperatures(statuses: Mapping[str, PrinterStatus]) -> GaugeMetricFamily:
    family = GaugeMetricFamily("spime_node_temperature_celsius", "Heater temperatures as last reported.",
                               labels=["printer", "heater", "kind"])
    for name, status in sorted(statuses.items()):
        t = status.temperatures
        readings = (("hotend", "actual", t.hotend_c), ("hotend", "target", t.hotend_target_c),
                    ("bed", "actual", t.bed_c), ("bed", "target", t.bed_target_c))
        for heater, kind, value in readings:
            if value is not None:
                family.add_metric([name, heater, kind], value)
    return family


class MetricsServer:
    """The HTTP server behind ``/metrics`` on its own thread; ``close()`` stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd, self._thread = httpd, thread
        self.port: int = int(httpd.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise MetricsAddressError(f"--metrics-listen {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9465")
    return host.strip("[]"), int(port)


def start_metrics_server(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` as Prometheus text on http://ADDRESS/metrics (port 0 = any free one).

    Raises:
        MetricsAddressError: the address is not HOST:PORT or cannot be bound.
    """
    host, port = _split(address)
    try:
        httpd, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise MetricsAddressError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from exc
    return MetricsServer(httpd, thread)
