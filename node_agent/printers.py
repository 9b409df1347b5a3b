"""The node's printers as the agent tracks them: who holds each, what the hub should see,
and whether one can take an offered job (pure: drivers are only asked for their snapshot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from node_agent import messages as m
from node_agent.backoff import Retry
from node_agent.config import PrinterConfig, Rate
from node_agent.drivers.base import PrinterDriver, PrinterPhase, reading
from node_agent.journal import PrinterFlags

__all__ = ["Slot", "busy", "decline", "fits", "snapshot", "status_entry"]

_PHASES = {
    PrinterPhase.IDLE: m.Phase.IDLE,
    PrinterPhase.PRINTING: m.Phase.PRINTING,
    PrinterPhase.CANCELLING: m.Phase.PRINTING,
    PrinterPhase.PAUSED: m.Phase.PAUSED,
    PrinterPhase.ERROR: m.Phase.ERROR,
}


@dataclass(eq=False)
class Slot:
    """One configured printer, its driver, and the job holding it (preparing .. finished)."""

    config: PrinterConfig
    driver: PrinterDriver
    connected: bool = False
    error: str = ""
    job: str | None = None
    retry: Retry = field(default_factory=Retry)  # failed connects since the last success; when the next is due


def fits(part: tuple[float, float, float], volume: tuple[float, float, float]) -> bool:
    """True when a part's extents fit the build volume in some axis-aligned orientation."""
    return all(a <= b for a, b in zip(sorted(part), sorted(volume), strict=True))


def _rate(rate: Rate | None) -> tuple[str, int] | None:
    return None if rate is None else (rate.currency, rate.minor_units)


def snapshot(slot: Slot, flags: PrinterFlags, draining: bool) -> m.PrinterSnapshot:
    """The printer as the hub should see it (Hello, Heartbeat, PrinterChanged)."""
    p, status = slot.config, slot.driver.status()
    phase = _PHASES.get(status.phase, m.Phase.OFFLINE)
    if flags.mode == "maintenance":
        phase = m.Phase.MAINTENANCE
    temps = status.temperatures
    return m.PrinterSnapshot(
        printer_id=p.name, model=p.model, build_volume_mm=p.build_volume_mm,
        nozzle_mm=p.nozzle_mm, materials=p.materials, phase=phase,
        bed_clear=flags.bed_clear, accepting=flags.mode == "online" and not draining,
        slicer_profile=p.slicer_profile, queue_depth=int(slot.job is not None),
        # Drivers check their readings; checked again here, where they become a message.
        hotend_c=reading(temps.hotend_c) or 0.0, bed_c=reading(temps.bed_c) or 0.0,
        rate_per_hour=_rate(p.rate_per_hour), rate_per_gram=_rate(p.rate_per_gram))


def busy(slot: Slot, flags: PrinterFlags) -> str | None:
    """Why the printer cannot start a new job now, or None."""
    name = slot.config.name
    if flags.mode != "online":
        return f"{name} is {flags.mode}"
    if slot.job is not None:
        return f"{name} is taken by job {slot.job}"
    phase = slot.driver.status().phase
    if not slot.connected or phase is not PrinterPhase.IDLE:
        return f"{name} is not idle ({slot.error or phase.value})"
    if not flags.bed_clear:
        return f"{name}: the operator has not confirmed the bed is clear"
    return None


def decline(offer: m.Offer, slot: Slot | None, flags: PrinterFlags, draining: bool
            ) -> tuple[m.DeclineReason, str] | None:
    """Why this node declines ``offer``, or None to accept it."""
    if slot is None:
        return m.DeclineReason.NO_CAPACITY, f"no printer {offer.printer_id!r} on this node"
    if draining:
        return m.DeclineReason.NO_CAPACITY, "the node is shutting down or draining"
    printer = slot.config
    if offer.material.upper() not in {x.upper() for x in printer.materials}:
        return (m.DeclineReason.MATERIAL_UNAVAILABLE,
                f"{printer.name} has {', '.join(printer.materials)}, not {offer.material}")
    if any(v > 0 for v in offer.bbox_mm) and not fits(offer.bbox_mm, printer.build_volume_mm):
        return m.DeclineReason.NOT_PRINTABLE, f"the part does not fit {printer.name}"
    reason = busy(slot, flags)
    return None if reason is None else (m.DeclineReason.NO_CAPACITY, reason)


def status_entry(slot: Slot, flags: PrinterFlags, draining: bool) -> dict[str, Any]:
    """One printer of ``spime-node status``."""
    st = slot.driver.status()
    return {"name": slot.config.name, "model": slot.config.model,
            "phase": snapshot(slot, flags, draining).phase.value, "mode": flags.mode,
            "bed_clear": flags.bed_clear, "connected": slot.connected, "error": slot.error,
            "job": slot.job, "percent": round(st.percent, 1), "layer": st.layer,
            "hotend_c": reading(st.temperatures.hotend_c), "bed_c": reading(st.temperatures.bed_c),
            **_retry_entry(slot.retry)}


def _retry_entry(retry: Retry) -> dict[str, Any]:
    """Failed connects since the last success, the last one's error and when the next is due (UTC, ISO
    8601; null while none failed)."""
    next_at = datetime.fromtimestamp(retry.next_at, UTC).isoformat(timespec="seconds") if retry.failures else None
    return {"failed_connects": retry.failures, "last_connect_error": retry.last_error, "next_connect_at": next_at}
