"""Which printer may take a job: pure matching rules, no clock, no I/O.

A printer qualifies for a job when its node is online, the operator set it
accepting, the bed is confirmed clear, it is idle, the job's material is loaded
and the part fits its build volume in some orientation (the push-time
printability report's extents; unknown extents fit anything).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Money", "PrinterRecord", "candidates", "fits", "qualifies"]

Vec3 = tuple[float, float, float]
Money = tuple[str, int]  # (ISO 4217 currency, minor units)


@dataclass(frozen=True, slots=True)
class PrinterRecord:
    """A printer as the hub last heard of it from its node."""

    node: str
    printer: str
    model: str
    build_volume_mm: Vec3
    nozzle_mm: float
    materials: tuple[str, ...]
    phase: str  # idle | printing | paused | error | maintenance | offline
    bed_clear: bool
    accepting: bool
    online: bool
    rate_per_hour: Money = ("", 0)
    rate_per_gram: Money = ("", 0)
    slicer_profile: str = ""
    latitude: float | None = None
    longitude: float | None = None
    last_seen: str = ""
    drained: str = ""  # why a hub admin drained its node ("" = not drained): no new job goes to it


def fits(extents_mm: Sequence[float], build_volume_mm: Sequence[float]) -> bool:
    """Whether a box of extents fits the build volume in some axis-aligned orientation."""
    volume = tuple(float(v) for v in build_volume_mm)
    return any(all(e <= v for e, v in zip(p, volume, strict=True))
               for p in itertools.permutations(float(e) for e in extents_mm))


def qualifies(extents_mm: Sequence[float] | None, material: str, printer: PrinterRecord) -> str | None:
    """None when the printer can take the job now, else the reason it cannot."""
    if not printer.online:
        return f"node {printer.node} is offline"
    if printer.drained:
        return f"node {printer.node} is drained by the hub ({printer.drained})"
    if not printer.accepting:
        return f"printer {printer.printer} is not accepting jobs"
    if printer.phase != "idle":
        return f"printer {printer.printer} is {printer.phase}"
    if not printer.bed_clear:
        return f"printer {printer.printer} waits for the operator to confirm a clear bed"
    if material.casefold() not in {m.casefold() for m in printer.materials}:
        return f"printer {printer.printer} has no {material} loaded"
    if extents_mm is not None and not fits(extents_mm, printer.build_volume_mm):
        size = "x".join(f"{e:g}" for e in extents_mm)
        return f"a {size} mm part does not fit printer {printer.printer}"
    return None


def candidates(printers: Iterable[PrinterRecord], extents_mm: Sequence[float] | None, material: str, *,
               busy: frozenset[tuple[str, str]] = frozenset(), exclude_nodes: frozenset[str] = frozenset(),
               node: str | None = None, printer: str | None = None) -> list[PrinterRecord]:
    """Printers that qualify, not busy, not excluded, matching a pinned node/printer; stable order."""
    found = [
        p for p in printers
        if (p.node, p.printer) not in busy and p.node not in exclude_nodes
        and (node is None or p.node == node) and (printer is None or p.printer == printer)
        and qualifies(extents_mm, material, p) is None
    ]
    return sorted(found, key=lambda p: (p.node, p.printer))
