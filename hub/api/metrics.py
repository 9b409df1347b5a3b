"""Prometheus metrics of the hub, served on their own listen address.

* ``spime_hub_rpcs_total{method, code}`` and ``spime_hub_rpc_duration_seconds{method}``: counted
  by :class:`MetricsInterceptor`, a grpc.aio server interceptor placed outside the
  auth/error interceptor so refused calls are counted with the status the client saw.
* ``spime_hub_connected_nodes`` and ``spime_hub_jobs{state}``: callback gauges read at
  scrape time from a :data:`FleetProvider` registered with
  :meth:`HubMetrics.set_fleet_provider` (none registered: the families are empty).
* ``spime_hub_order_latency_seconds{outcome}``: observed by the order service through
  :meth:`HubMetrics.observe_order_latency` (placed order → delivered/failed/cancelled).

Each :class:`HubMetrics` owns its own ``CollectorRegistry``: several hubs may run in
one process (the tests do), and the process-wide default registry would mix them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hub.config import parse_listen
from hub.errors import InvalidArgument
from hub.jobs import Job
from hub.service import Hub
from hub.service.common import parse_time

__all__ = ["FleetSnapshot", "HubMetrics", "MetricsInterceptor", "MetricsServer", "feed_from", "start_metrics_server"]

# RPCs range from sub-millisecond lookups to multi-minute uploads of large meshes.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# An order lives from minutes (a small print nearby) to days (queued, shipped).
ORDER_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 259200.0, 604800.0)


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """What the callback gauges show: node agents with an open session, jobs per state."""

    connected_nodes: int
    jobs_by_state: Mapping[str, int] = field(default_factory=dict)


FleetProvider = Callable[[], FleetSnapshot]
"""Called on the metrics server's thread at each scrape: must be cheap and thread-safe
(read an in-memory session table or run one short read transaction)."""


class _FleetCollector(Collector):
    def __init__(self) -> None:
        self.provider: FleetProvider | None = None

    def collect(self) -> Iterator[Metric]:
        nodes = GaugeMetricFamily("spime_hub_connected_nodes", "Node agents with an open session to this hub.")
        jobs = GaugeMetricFamily("spime_hub_jobs", "Jobs by state.", labels=["state"])
        if self.provider is not None:
            snapshot = self.provider()
            nodes.add_metric([], snapshot.connected_nodes)
            for state, count in sorted(snapshot.jobs_by_state.items()):
                jobs.add_metric([state], count)
        yield nodes
        yield jobs


class HubMetrics:
    """Every metric of one hub, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rpcs = Counter("spime_hub_rpcs", "RPCs served, by method and final status.",
                            ["method", "code"], registry=self.registry)
        self.rpc_seconds = Histogram("spime_hub_rpc_duration_seconds", "RPC latency, by method.",
                                     ["method"], buckets=RPC_BUCKETS, registry=self.registry)
        self.order_seconds = Histogram("spime_hub_order_latency_seconds",
                                       "Time from a placed order to its end, by outcome.",
                                       ["outcome"], buckets=ORDER_BUCKETS, registry=self.registry)
        self._fleet = _FleetCollector()
        self.registry.register(self._fleet)

    def set_fleet_provider(self, provider: FleetProvider | None) -> None:
        """Register (or, with None, remove) the source of the node and job gauges."""
        self._fleet.provider = provider

    def observe_rpc(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished RPC."""
        self.rpcs.labels(method, code.name).inc()
        self.rpc_seconds.labels(method).observe(seconds)

    def observe_order_latency(self, outcome: str, seconds: float) -> None:
        """Record how long an order took to reach ``outcome`` (e.g. delivered, failed, cancelled)."""
        self.order_seconds.labels(outcome).observe(max(seconds, 0.0))


class MetricsInterceptor(aio.ServerInterceptor):
    """Times every RPC and counts it by method and the status code the client received."""

    def __init__(self, metrics: HubMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        return _wrap(handler, details.method, self._metrics)


def _status(context: aio.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


def _wrap(handler: Any, method: str, metrics: HubMetrics) -> Any:
    codec = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, method, metrics), *codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, method, metrics), *codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, method, metrics), *codec)
    return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, method, metrics), *codec)


def _unary(behavior: Callable[..., Awaitable[Any]], method: str,
           metrics: HubMetrics) -> Callable[..., Awaitable[Any]]:
    async def wrapper(request: Any, context: aio.ServicerContext) -> Any:
        started, failed = time.perf_counter(), True
        try:
            response = await behavior(request, context)
            failed = False
            return response
        finally:
            metrics.observe_rpc(method, _status(context, failed), time.perf_counter() - started)

    return wrapper


def _streaming(behavior: Callable[..., AsyncIterator[Any]], method: str,
               metrics: HubMetrics) -> Callable[..., AsyncIterator[Any]]:
    async def wrapper(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        started, failed = time.perf_counter(), True
        try:
            async for item in behavior(request, context):
                yield item
            failed = False
        finally:
            # A client that hangs up mid-stream leaves no code: it is counted as CANCELLED.
            code = _status(context, failed)
            if failed and code == grpc.StatusCode.UNKNOWN and context.cancelled():
                code = grpc.StatusCode.CANCELLED
            metrics.observe_rpc(method, code, time.perf_counter() - started)

    return wrapper


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


_FINAL_JOB_STATES = frozenset({"done", "failed", "cancelled"})


def feed_from(metrics: HubMetrics, hub: Hub, job_counts: Callable[[], Mapping[str, int]]) -> None:
    """Feed the gauges from a running hub: connected nodes and jobs by state at each scrape, and
    how long each ordered object took from its job's creation to done, failed or cancelled."""
    metrics.set_fleet_provider(lambda: FleetSnapshot(len(hub.nodes.online()), job_counts()))

    def on_job(job: Job) -> None:
        if job.order_id and job.state.value in _FINAL_JOB_STATES:
            started = parse_time(job.created_at, "created_at")
            metrics.observe_order_latency(job.state.value, (hub.jobs.clock() - started).total_seconds())

    hub.jobs.add_listener(on_job)


def start_metrics_server(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` as Prometheus text on http://ADDRESS/metrics (port 0 = any free one).

    Raises:
        InvalidArgument: the address is not HOST:PORT or cannot be bound.
    """
    try:
        host, port = parse_listen(address)
    except InvalidArgument as exc:
        raise InvalidArgument(f"--metrics-{exc.message.removeprefix('--')}") from exc
    try:
        httpd, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise InvalidArgument(f"cannot serve metrics on {address}: {exc.strerror or exc}") from exc
    return MetricsServer(httpd, thread)
