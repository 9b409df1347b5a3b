"""The node agent's Prometheus metrics, scraped over HTTP on 127.0.0.1 from status snapshots."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node_agent.drivers.base import PrinterPhase, PrinterStatus, Temperatures
from node_agent.metrics import MetricsAddressError, NodeMetrics, start_metrics_server


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_printer_states_progress_resends_and_temperatures_are_scraped() -> None:
    statuses = {
        "mk3": PrinterStatus(PrinterPhase.PRINTING, Temperatures(214.5, 215.0, 59.8, 60.0), job_name="job-7",
                             lines_total=1000, lines_sent=250, resends=3, percent=25.0),
        "ender": PrinterStatus(PrinterPhase.IDLE),
    }
    jobs = {"queued": 2, "printing": 1}
    metrics = NodeMetrics(lambda: statuses, jobs=lambda: jobs)
    server = start_metrics_server("127.0.0.1:0", metrics.registry)
    try:
        found = _scrape(server.port)
        assert found[("spime_node_printer_state", (("printer", "mk3"), ("state", "printing")))] == 1
        assert found[("spime_node_printer_state", (("printer", "mk3"), ("state", "idle")))] == 0
        assert found[("spime_node_printer_state", (("printer", "ender"), ("state", "idle")))] == 1
        assert found[("spime_node_job_progress_ratio", (("job", "job-7"), ("printer", "mk3")))] == 0.25
        assert found[("spime_node_job_lines_sent", (("job", "job-7"), ("printer", "mk3")))] == 250
        assert found[("spime_node_serial_resends_total", (("printer", "mk3"),))] == 3
        assert found[("spime_node_temperature_celsius",
                      (("heater", "hotend"), ("kind", "actual"), ("printer", "mk3")))] == 214.5
        assert found[("spime_node_temperature_celsius",
                      (("heater", "bed"), ("kind", "target"), ("printer", "mk3")))] == 60.0
        assert not any(name == "spime_node_temperature_celsius" and ("printer", "ender") in labels
                       for name, labels in found)
        assert found[("spime_node_jobs", (("state", "queued"),))] == 2

        statuses["mk3"] = PrinterStatus(PrinterPhase.ERROR, error="thermal runaway", resends=4)
        found = _scrape(server.port)
        assert found[("spime_node_printer_state", (("printer", "mk3"), ("state", "error")))] == 1
        assert not any(name == "spime_node_job_progress_ratio" for name, _ in found)
    finally:
        server.close()
        server.close()


def test_bad_metrics_address_is_an_operator_error() -> None:
    registry = NodeMetrics(dict).registry
    with pytest.raises(MetricsAddressError, match="expected HOST:PORT"):
        start_metrics_server("9465", registry)
    first = start_metrics_server("127.0.0.1:0", registry)
    try:
        with pytest.raises(MetricsAddressError, match="cannot serve metrics"):
            start_metrics_server(f"127.0.0.1:{first.port}", registry)
    finally:
        first.close()
