"""`spime-node print` on something that is not a G-code file answers at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_fifo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "job.gcode"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "node_agent", "print", str(fifo), "--port",
                           "/dev/x", "--baud", "115200"], cwd=ROOT, text=True,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_refused_lines_reach_the_terminal_escaped(tmp_path: Path) -> None:
    job = tmp_path / "esc.gcode"
    job.write_bytes(b"G28\nM117 \x1b]2;owned\x07\x1b[2J hi\n")
    done = subprocess.run([sys.executable, "-m", "node_agent", "print", str(job), "--port",
                           "/dev/x", "--baud", "115200"], cwd=ROOT, text=True,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 1 and "line 2" in done.stderr
    assert "\x1b" not in done.stderr and "\\x1b" in done.stderr
