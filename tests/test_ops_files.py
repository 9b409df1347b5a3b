"""The shipped operator files stay true to the code that reads them."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from node_agent.config import load_config
from slicer_bridge.profiles import load_profile

ROOT = Path(__file__).resolve().parent.parent


def test_example_node_config_loads_and_names_shipped_profiles() -> None:
    config = load_config(ROOT / "ops" / "node.example.toml")

    assert {p.driver for p in config.printers} == {"serial", "octoprint"}
    for printer in config.printers:
        assert printer.slicer_profile is not None
        profile = load_profile(printer.slicer_profile)
        assert profile.nozzle_mm == printer.nozzle_mm


def test_systemd_units_run_commands_that_exist() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    units = sorted((ROOT / "ops" / "systemd").glob("*.service"))
    assert units
    for unit in units:
        exec_start = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
        program, subcommand, *_ = shlex.split(exec_start.removeprefix("ExecStart="))
        module = scripts[Path(program).name].split(":")[0].removesuffix(".cli").removesuffix(".__main__")
        result = subprocess.run([sys.executable, "-m", module, subcommand, "--help"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
        assert result.returncode == 0, f"{unit.name}: {program} {subcommand}: {result.stderr}"
