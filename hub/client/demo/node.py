"""The demo's makerspace: a simulated Marlin on a pty, an optional OctoPrint, and
``spime-node`` (enroll, run, bed-clear, outcome) as subprocesses.

hub and node_agent never import each other: everything here goes through the
``spime-node`` and ``spime-hub`` command lines, like an operator would.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.client.demo.octoprint import OctoPrint
from hub.client.demo.processes import Child, Children, StepFailed, command, wait_for

__all__ = [
    "NODE",
    "OCTO_PRINTER",
    "SERIAL_PRINTER",
    "Node",
    "add_node_command",
    "node_config",
    "start_simulator",
]

NODE = "fablab-demo"
SERIAL_PRINTER = "mk3-serial"
OCTO_PRINTER = "mk3-octoprint"
CLI_TIMEOUT_S = 120.0

_COMMON = """model = "Prusa MK3S"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
materials = ["PLA", "PETG"]
max_hotend_c = 280
max_bed_c = 110
slicer_profile = "prusa_mk3s"
rate_per_hour = 3.0
rate_per_gram = 0.05
currency = "EUR"
"""


def _run(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StepFailed(f"{what}: {exc}") from exc
    if done.returncode != 0:
        raise StepFailed(f"{what} exited {done.returncode}:\n{done.stderr.strip()[-2000:]}")
    return done.stdout


def add_node_command(data: Path) -> list[str]:
    """``spime-hub node add NODE --json`` on the hub's data directory."""
    return [*command("spime-hub"), "node", "add", NODE, "--data", str(data), "--json"]


def start_simulator(children: Children, link: Path) -> Child:
    """``spime-node simulate``: a simulated Marlin on a pty, linked at ``link``.

    Raises:
        StepFailed: the simulator exited or its port did not appear.
    """
    child = children.spawn("marlin-simulator", [*command("spime-node"), "simulate",
                                                "--link", str(link)])
    wait_for("the simulated printer's serial port",
             lambda: link.exists() or (None if child.alive() else _died(child)), 30.0)
    return child


def _died(child: Child) -> bool:
    raise StepFailed(f"{child.name} exited {child.process.returncode}:\n{child.log_tail()}")


def node_config(hub: str, serial_port: Path, octoprint: OctoPrint | None) -> str:
    """The node's TOML: the serial printer, and the OctoPrint one when it is up."""
    text = f"""[node]
name = "{NODE}"
hub = "{hub}"
location = "Demo makerspace"
latitude = 52.52
longitude = 13.40
state_dir = "state"
heartbeat_s = 1

[[printers]]
name = "{SERIAL_PRINTER}"
driver = "serial"
port = "{serial_port}"
baud = 250000
{_COMMON}"""
    if octoprint is not None:
        text += f"""
[[printers]]
name = "{OCTO_PRINTER}"
driver = "octoprint"
url = "{octoprint.url}"
api_key = "{octoprint.api_key}"
port = "VIRTUAL"
baud = 115200
{_COMMON}"""
    return text


@dataclass
class Node:
    """The node agent's directory and its operator commands."""

    root: Path
    agent: Child | None = None

    @property
    def agent_log(self) -> str:
        """Where ``spime-node run`` writes (kept with ``--data``)."""
        return str(self.agent.log) if self.agent else "the agent's log"

    @property
    def config(self) -> Path:
        """The node's config file."""
        return self.root / "node.toml"

    def cli(self, *args: str) -> dict[str, Any]:
        """``spime-node ARGS --config CONFIG --json``, parsed.

        Raises:
            StepFailed: the command failed.
        """
        out = _run([*command("spime-node"), *args, "--config", str(self.config), "--json"],
                   f"`spime-node {' '.join(args)}`")
        return dict(json.loads(out)) if out.strip() else {}

    def enroll(self, token: str) -> None:
        """``spime-node enroll --token TOKEN``.

        Raises:
            StepFailed: the hub refused the token.
        """
        self.cli("enroll", "--token", token)

    def credential(self) -> str:
        """The node's bearer token (what ``enroll`` stored)."""
        return (self.root / "state" / "credential").read_text(encoding="utf-8").strip()

    def run(self, children: Children) -> Child:
        """Start ``spime-node run`` (the agent daemon)."""
        self.agent = children.spawn("spime-node", [*command("spime-node"), "run", "--config",
                                                   str(self.config)], cwd=self.root)
        return self.agent
