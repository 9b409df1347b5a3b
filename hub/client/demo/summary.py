"""The ``spime demo --json`` summary, built from what the hub answered (pure).

Inputs are the JSON documents of the hub's RPCs as the ``spime`` commands print
them (``search``, ``orders``, ``record``, ``ledger``) and the refusals the hub
gave; nothing here repeats what the demo meant to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Refusal", "amount", "build", "ledger_rows", "order_rows", "parse_refusal"]

_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3}
_REFUSED_PREFIX = "spime: hub refused: "


@dataclass(frozen=True)
class Refusal:
    """A request the hub refused: what was asked, of which design, and its answer."""

    action: str
    design: str
    status: str
    message: str


def parse_refusal(action: str, design: str, stderr: str) -> Refusal:
    """Read ``spime: hub refused: STATUS: message`` from a command's stderr."""
    line = next((ln for ln in stderr.splitlines() if ln.startswith(_REFUSED_PREFIX)),
                stderr.strip().splitlines()[0] if stderr.strip() else "")
    status, _, message = line.removeprefix(_REFUSED_PREFIX).partition(": ")
    return Refusal(action, design, status, message)


def amount(money: Mapping[str, Any]) -> float:
    """A Money document as a number in its currency (cents → euros)."""
    digits = _MINOR_DIGITS.get(str(money.get("currency", "")), 2)
    return float(int(money.get("minor_units", 0)) / 10 ** digits)


def _state(order: Mapping[str, Any]) -> str:
    return str(order.get("state", "")).removeprefix("ORDER_STATE_").lower()


def order_rows(orders: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``orders`` part: one row per order."""
    return [{"id": o["id"], "design": o["spec"]["design"], "revision": o["spec"]["revision_id"],
             "params": dict(o["spec"].get("parameters", {})), "price": amount(o["price"]),
             "currency": o["price"].get("currency", ""), "state": _state(o)} for o in orders]


def _fabrication(f: Mapping[str, Any]) -> dict[str, Any]:
    return {"incarnation": f.get("incarnation_id", ""), "order": f.get("order_id", ""),
            "design": f.get("design", ""), "node": f.get("node", ""),
            "printer": f.get("printer", ""), "material": f.get("material", ""),
            "outcome": f.get("outcome", ""),
            "estimated_seconds": int(f.get("estimated_seconds", 0)),
            "actual_seconds": int(f.get("actual_seconds", 0)),
            "filament_mm": float(f.get("actual_filament_mm", 0.0)),
            "resends": int(f.get("resends", 0))}


def ledger_rows(entries: Iterable[Mapping[str, Any]], order_ids: set[str]) -> list[dict[str, Any]]:
    """The ``ledger`` part: the entries of the demo's orders."""
    return [{"order": e["order_id"], "party": e["recipient"], "role": e["share"],
             "amount": amount(e["amount"])} for e in entries if e.get("order_id") in order_ids]


def _ratings(design: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"design": design, "rater": r.get("rater", ""), "role": r.get("role", ""),
             "stars": int(r.get("stars", 0)), "criteria": dict(r.get("criteria", {})),
             "comment": r.get("comment", "")} for r in record.get("ratings", [])]


def build(designs: Sequence[str], refused: Sequence[Refusal], orders: Sequence[Mapping[str, Any]],
          records: Mapping[str, Mapping[str, Any]], ledgers: Mapping[str, Mapping[str, Any]],
          skipped: Sequence[str] = ()) -> dict[str, Any]:
    """The whole summary document.

    Args:
        designs: design names as the hub lists them.
        refused: the refusals the hub answered.
        orders: the customer's orders (``spime orders --all --json``).
        records: design name → ``spime record --json``.
        ledgers: design name → ``spime ledger --json``.
        skipped: printers the demo could not start, with why.
    """
    ids = {str(o["id"]) for o in orders}
    fabrications = [_fabrication({**f, "design": d}) for d, rec in records.items()
                    for f in rec.get("fabrications", []) if f.get("order_id") in ids]
    return {
        "designs": sorted(designs),
        "refused": [{"action": r.action, "design": r.design, "status": r.status,
                     "message": r.message} for r in refused],
        "orders": order_rows(orders),
        "fabrications": fabrications,
        "ratings": [row for d, rec in records.items() for row in _ratings(d, rec)],
        "ledger": [row for doc in ledgers.values() for row in ledger_rows(doc.get("entries", []), ids)],
        "skipped": list(skipped),
    }
