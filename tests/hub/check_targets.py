"""Checks the hub's worker processes run in tests (``CheckPool(target="tests.hub.check_targets:…")``).

They stand in for a crafted mesh that makes the real check slow or huge, so a
test can drive each limit deterministically. They run in a child process.
"""

from __future__ import annotations

import os
from typing import Any

GATE_ENV = "SPIME_TEST_CHECK_GATE"


def spin(blob_path: str, name: str) -> dict[str, Any]:
    """Burn CPU until the CPU-time limit stops the process."""
    while True:
        pass


def hog(blob_path: str, name: str) -> dict[str, Any]:
    """Allocate far more memory than the address-space limit allows."""
    chunks = [bytearray(64 << 20) for _ in range(1000)]
    return {"path": name, "ok": True, "findings": [], "held": len(chunks)}


def wait_for_gate(blob_path: str, name: str) -> dict[str, Any]:
    """Block until the test opens the FIFO ``$SPIME_TEST_CHECK_GATE/<file name>`` and writes a line."""
    with open(os.path.join(os.environ[GATE_ENV], os.path.basename(name)), encoding="utf-8") as gate:
        gate.readline()
    return {"path": name, "ok": True, "findings": []}


def stall(blob_path: str, name: str) -> dict[str, Any]:
    """Never answer (blocks reading a pipe nobody writes), so only the wall timeout ends it."""
    read_end, _write_end = os.pipe()
    os.read(read_end, 1)
    return {"path": name, "ok": True, "findings": []}


LOG_ENV = "SPIME_TEST_CHECK_LOG"


def count(blob_path: str, name: str) -> dict[str, Any]:
    """Append the checked file's name to $SPIME_TEST_CHECK_LOG and pass."""
    with open(os.environ[LOG_ENV], "a", encoding="utf-8") as log:
        log.write(name + "\n")
    return {"path": name, "ok": True, "findings": []}
