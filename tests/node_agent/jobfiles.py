"""Turn in-memory G-code lines into the ``SafeJob`` a driver accepts (tests only).

Drivers take only files the safety filter checked (``node_agent.jobfile.check_file``);
tests that stream made-up jobs write them to a temporary file first. The limits are
permissive (no build volume), since these tests are about the link, not the filter.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from node_agent.drivers.base import PrinterDriver, PrintResult
from node_agent.jobfile import SafeJob, check_file
from node_agent.safety import SafetyLimits

LENIENT = SafetyLimits(max_hotend_c=300.0, max_bed_c=120.0)


def safe_job(name: str, lines: Sequence[str], directory: Path, limits: SafetyLimits = LENIENT) -> SafeJob:
    """Write ``lines`` to a file named after the job in ``directory`` (the caller's, which it removes)
    and check it.

    Raises:
        JobRefused: the filter refuses a line.
    """
    path = directory / f"{name}.gcode"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return check_file(str(path), limits, name=name)


async def print_lines(driver: PrinterDriver, name: str, lines: Sequence[str]) -> PrintResult:
    """``driver.print_job`` for lines held in memory (written to a temporary file first).

    Raises:
        JobRefused: the filter refuses a line (nothing is sent).
    """
    with tempfile.TemporaryDirectory(prefix="spime-job-") as folder:
        return await driver.print_job(safe_job(name, lines, Path(folder)))
