"""The shipped operator files stay true to the code that reads them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import pytest

from node_agent.config import load_config
from slicer_bridge.profiles import load_profile
from tests.fixtures.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent


def test_example_node_config_loads_and_names_shipped_profiles() -> None:
    config = load_config(ROOT / "ops" / "node.example.toml")

    assert {p.driver for p in config.printers} == {"serial", "octoprint"}
    assert (config.node.latitude, config.node.longitude) == (52.52, 13.405)
    assert str(config.node.state_dir) == "/var/lib/spimeforge/node" and config.node.heartbeat_s == 15
    assert str(config.node.tls_ca) == "/etc/spimeforge/tls/ca.crt"  # its hub is remote: never in clear text
    mk3 = config.printer("mk3")
    assert config.printer("ender").push_silence_s == 60.0
    assert mk3.rate_per_hour is not None and mk3.rate_per_hour.minor_units == 250
    assert mk3.rate_per_gram is not None and mk3.rate_per_gram.currency == "EUR"
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


# -- deployment files (issue 9): units, install and setup scripts ---------------------------------

UNITS = ROOT / "ops" / "systemd"
SCRIPTS = sorted((ROOT / "ops").rglob("*.sh"))


def _unit(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def _runs(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
                          env={**os.environ, **env})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script: Path) -> None:
    done = _runs(["bash", "-n", str(script)])
    assert done.returncode == 0, done.stderr


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    for unit in sorted(UNITS.glob("*.service")):
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/spimeforge/.venv", str(venv)))
    done = _runs(["systemd-analyze", "verify", "--man=no", *map(str, sorted(tmp_path.iterdir()))])
    assert done.returncode == 0, done.stderr + done.stdout


@pytest.mark.parametrize("unit", ["spime-hub.service", "spime-node.service"])
def test_units_are_sandboxed_below_exposure_3(unit: str) -> None:
    done = _runs(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNITS / unit)])
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr
    assert float(match.group(1)) < 3.0, done.stdout


def test_units_notify_readiness_and_serve_tls() -> None:
    hub, node = _unit("spime-hub.service"), _unit("spime-node.service")
    assert hub["Type"] == ["notify"] and node["Type"] == ["notify"]
    assert hub["User"] == node["User"] == ["spime"]
    start = hub["ExecStart"][0]
    assert "--tls-cert /etc/spimeforge/tls/hub.crt" in start and "--tls-key /etc/spimeforge/tls/hub.key" in start
    assert "--metrics-listen 127.0.0.1:" in start
    assert node["SupplementaryGroups"] == ["dialout"]
    assert {"char-ttyACM rw", "char-ttyUSB rw"} <= set(node["DeviceAllow"])
    assert "/etc/spimeforge/node.toml" in node["ExecStart"][0]


def test_hub_env_example_names_real_serve_options() -> None:
    help_text = _runs([sys.executable, "-m", "hub", "serve", "--help"]).stdout
    text = (ROOT / "ops" / "hub.env.example").read_text()
    flags = set(re.findall(r"(--[a-z][a-z-]+)", text))
    assert {"--database", "--tls-client-ca"} <= flags
    assert all(flag in help_text for flag in flags), flags - {f for f in flags if f in help_text}


def test_install_service_lays_out_units_config_and_completions(tmp_path: Path) -> None:
    done = _runs(["bash", str(ROOT / "ops" / "install-service.sh"), "all"], DESTDIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    for path in ("etc/systemd/system/spime-hub.service", "etc/systemd/system/spime-node.service",
                 "etc/spimeforge/hub.env", "etc/spimeforge/node.toml", "var/lib/spimeforge/node",
                 "etc/spimeforge/tls", "usr/share/bash-completion/completions/spime-hub",
                 "usr/share/zsh/vendor-completions/_spime-node"):
        assert (tmp_path / path).exists(), path
    unit = (tmp_path / "etc/systemd/system/spime-hub.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent}/spime-hub serve" in unit
    (tmp_path / "etc/spimeforge/hub.env").write_text('SPIME_HUB_OPTS="--grace 3"\n')
    again = _runs(["bash", str(ROOT / "ops" / "install-service.sh"), "hub"], DESTDIR=str(tmp_path), COMPLETIONS="no")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "etc/spimeforge/hub.env").read_text() == 'SPIME_HUB_OPTS="--grace 3"\n'
    assert _runs(["bash", str(ROOT / "ops" / "install-service.sh"), "everything"]).returncode == 2


def test_postgres_setup_creates_role_and_database_and_prints_a_url(postgres_server: PostgresServer) -> None:
    role, database = f"r_{uuid.uuid4().hex[:8]}", f"d_{uuid.uuid4().hex[:8]}"
    env = {"PGHOST": postgres_server.host, "PGPORT": str(postgres_server.port), "PGUSER": postgres_server.user,
           "SPIME_DB_PASSWORD": "s3cret/with:odd@chars"}
    script = str(ROOT / "ops" / "postgres-setup.sh")
    first = _runs(["bash", script, role, database], **env)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    assert url == f"postgresql://{role}:s3cret%2Fwith%3Aodd%40chars@{postgres_server.host}:{postgres_server.port}/{database}"
    again = _runs(["bash", script, role, database], **env)
    assert again.returncode == 0 and again.stdout.strip() == url, again.stderr
    migrated = _runs([sys.executable, "-m", "hub", "migrate", "--database", url], PYTHONPATH=f"{ROOT}:{ROOT / 'proto'}")
    assert migrated.returncode == 0, migrated.stderr
    assert _runs(["bash", script, "Bad;Name"], **env).returncode == 2
