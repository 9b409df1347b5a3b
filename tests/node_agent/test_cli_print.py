"""``spime-node print`` as operators run it: a real process against a simulated printer."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node_agent.cli import render_progress
from node_agent.drivers.base import PrinterPhase, PrinterStatus, Temperatures
from node_agent.testing import FirmwareOptions, SimulatedPrinterProcess

ROOT = Path(__file__).resolve().parents[2]
MOVES = [f"G1 X{10 + i % 100}.5 Y{10 + (i * 7) % 100}.25 E{i * 0.02:.4f} F1800" for i in range(400)]
END = ["M104 S0", "M140 S0", "M107", "G91", "G1 Z10 F600", "G90", "M84"]


def spime_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node_agent", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False)


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return str(path)


def config_for(tmp_path: Path, port: str) -> str:
    text = f"""
[node]
name = "test-node"
hub = "127.0.0.1:7443"

[[printers]]
name = "sim"
driver = "serial"
port = "{port}"
baud = 115200
model = "Simulated Marlin"
build_volume_mm = [200, 200, 200]
nozzle_mm = 0.4
materials = ["PLA"]
max_hotend_c = 250
max_bed_c = 90
slicer_profile = "generic"

[printers.firmware]
end_gcode = {json.dumps(END)}
"""
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_ad_hoc_port_prints_and_summarises(tmp_path: Path) -> None:
    gcode = write(tmp_path / "cube.gcode", [";LAYER:0", "M104 S200", *MOVES])
    with SimulatedPrinterProcess(FirmwareOptions(baud=115200)) as fw:
        done = spime_node("print", gcode, "--port", fw.port, "--baud", "115200", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["outcome"] == "completed" and summary["lines_sent"] == 401
    assert summary["resends"] == 0 and summary["seconds"] > 0
    assert summary["printer"] == "ad-hoc" and "Marlin" in summary["firmware"]
    assert "lines" in done.stderr and "cube.gcode: completed" in done.stderr
    assert fw.stats is not None and [c for c in fw.stats.accepted if c.startswith("G1 X")] == MOVES


def test_configured_printer_and_refused_job(tmp_path: Path) -> None:
    with SimulatedPrinterProcess(FirmwareOptions()) as fw:
        config = config_for(tmp_path, fw.port)
        ok = write(tmp_path / "ok.gcode", MOVES[:50])
        done = spime_node("print", ok, "--printer", "sim", "--config", config, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["printer"] == "sim"
        hot = write(tmp_path / "hot.gcode", ["G28", "M104 S260", *MOVES[:5], "M500"])
        refused = spime_node("print", hot, "--printer", "sim", "--config", config, "--json")
    assert refused.returncode == 1
    summary = json.loads(refused.stdout)
    assert summary["outcome"] == "refused" and summary["lines_sent"] == 0
    assert [v["line"] for v in summary["violations"]] == [2, 8]
    assert "line 2: M104 S260: hotend 260 °C is above" in refused.stderr
    assert fw.stats is not None and "M104 S260" not in fw.stats.accepted


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "/dev/null"], "--port needs --baud"),
    (["--printer", "nope", "--config", "{config}"], "no printer named 'nope' (configured: sim)"),
    (["--printer", "sim", "--config", "{tmp}/absent.toml"], "no such file; pass --config"),
    (["--printer", "sim", "--config", "{config}", "--baud", "9600"], "--baud goes with --port"),
    # a NaN limit would pass every temperature (each comparison with NaN is false)
    (["--port", "/dev/x", "--baud", "115200", "--max-hotend", "nan"], "maximum hotend temperature must be a positive"),
    (["--port", "/dev/x", "--baud", "115200", "--build-volume", "200", "inf", "200"], "build volume Y must be"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    config = config_for(tmp_path, "/dev/ttyNONE")
    gcode = write(tmp_path / "a.gcode", MOVES[:3])
    args = [a.format(config=config, tmp=tmp_path) for a in args]
    done = spime_node("print", gcode, *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stdout == ""


def test_missing_file_and_flags_exit_2(tmp_path: Path) -> None:
    done = spime_node("print", str(tmp_path / "none.gcode"), "--port", "/dev/x", "--baud", "115200")
    assert done.returncode == 2 and "none.gcode: no such file" in done.stderr
    binary = tmp_path / "b.gcode"
    binary.write_bytes(b"G1 X1\n\xff\xfe")
    done = spime_node("print", str(binary), "--port", "/dev/x", "--baud", "115200")
    assert done.returncode == 1 and "line 2" in done.stderr and "non-ASCII" in done.stderr
    done = spime_node("print", str(binary))
    assert done.returncode == 2 and "one of the arguments --printer --port is required" in done.stderr


def test_unreachable_printer_exits_1(tmp_path: Path) -> None:
    gcode = write(tmp_path / "a.gcode", MOVES[:3])
    done = spime_node("print", gcode, "--port", "/dev/ttyNOPE", "--baud", "115200", "--json")
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["outcome"] == "unreachable" and summary["retryable"] is True
    assert "cannot open /dev/ttyNOPE" in done.stderr


def test_ctrl_c_cancels_safely_with_the_end_sequence(tmp_path: Path) -> None:
    gcode = write(tmp_path / "long.gcode", MOVES * 10)
    with SimulatedPrinterProcess(FirmwareOptions(baud=115200)) as fw:
        config = config_for(tmp_path, fw.port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "node_agent", "print", gcode, "--printer", "sim",
             "--config", config, "--json"],
            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while not re.search(r" [1-9]\d*/4000 lines", proc.stderr.readline()):  # printing
            assert time.monotonic() < deadline and proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    summary = json.loads(out)
    assert summary["outcome"] == "cancelled" and 0 < summary["lines_sent"] < 4000
    assert "cancelling" in err
    assert fw.stats is not None and fw.stats.accepted[-len(END):] == END


def test_dry_run_uses_the_simulated_printer(tmp_path: Path) -> None:
    gcode = write(tmp_path / "a.gcode", MOVES[:30])
    done = spime_node("print", gcode, "--port", "unused", "--baud", "115200", "--simulate",
                      "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "completed"


def test_the_readme_dry_run_needs_no_baud(tmp_path: Path) -> None:
    gcode = write(tmp_path / "part.gcode", MOVES[:30])
    done = spime_node("print", gcode, "--port", "sim", "--simulate", "--json")  # as README.md shows it
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "completed"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "spime-node print part.gcode --port sim --simulate --json" in readme


def test_a_real_port_still_needs_a_baud(tmp_path: Path) -> None:
    gcode = write(tmp_path / "part.gcode", MOVES[:30])
    done = spime_node("print", gcode, "--port", "/dev/ttyACM9")
    assert done.returncode == 2 and "--port needs --baud" in done.stderr


def test_progress_line_shows_bar_layer_temperatures_and_resends() -> None:
    status = PrinterStatus(
        phase=PrinterPhase.PRINTING, temperatures=Temperatures(209.6, 210, 59.9, 60),
        lines_total=200, lines_sent=100, percent=50.0, layer=3, resends=2,
    )
    line = render_progress(status, width=10)
    assert line == ("[#####.....]  50.0%  100/200 lines  layer 3  T 210/210°C  B 60/60°C"
                    "  resends 2")


def test_simulate_subcommand_serves_a_printer_until_terminated(tmp_path: Path) -> None:
    link = tmp_path / "ttyDEMO"
    proc = subprocess.Popen([sys.executable, "-m", "node_agent", "simulate", "--link", str(link),
                             "--baud", "250000"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not link.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        gcode = write(tmp_path / "a.gcode", MOVES[:20])
        done = spime_node("print", gcode, "--port", str(link), "--baud", "250000", "--json")
        assert done.returncode == 0 and json.loads(done.stdout)["lines_sent"] == 20
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert proc.returncode == 0 and not link.exists()


def test_composition_root_builds_each_driver_kind_from_the_config(tmp_path: Path) -> None:
    from node_agent.__main__ import build_driver
    from node_agent.busy import BusyLimits
    from node_agent.cli import PrintTarget
    from node_agent.config import load_config
    from node_agent.drivers.octoprint import OctoPrintDriver
    from node_agent.drivers.serial import SerialDriver

    text = Path(config_for(tmp_path, "/dev/ttyACM0")).read_text() + """
[[printers]]
name = "octo"
driver = "octoprint"
url = "http://127.0.0.1:5000"
api_key = "k"
push_silence_s = 90
model = "Ender 3"
build_volume_mm = [220, 220, 250]
nozzle_mm = 0.4
materials = ["PLA"]
max_hotend_c = 260
max_bed_c = 100
slicer_profile = "ender3"

[printers.busy]
operator_s = 600
"""
    text = text.replace('[[printers]]\nname = "octo"', '[printers.busy]\nheating_s = 5400\n\n[[printers]]\nname = "octo"')
    (tmp_path / "both.toml").write_text(text)
    config = load_config(tmp_path / "both.toml")
    serial_driver = build_driver(PrintTarget("sim", printer=config.printer("sim")))
    assert isinstance(serial_driver, SerialDriver)
    assert serial_driver.settings.end_gcode == tuple(END) and serial_driver.baud == 115200
    assert serial_driver.busy_limits == BusyLimits(heating_s=5400.0)  # the config's ceilings
    octo = build_driver(PrintTarget("octo", printer=config.printer("octo")))
    assert isinstance(octo, OctoPrintDriver) and octo.name == "octo"
    assert octo._push_silence_s == 90.0  # the config's bound, not the driver's default
    assert octo._busy_limits == BusyLimits(operator_s=600.0)
    adhoc = build_driver(PrintTarget("ad-hoc", port="/dev/ttyUSB0", baud=250000))
    assert isinstance(adhoc, SerialDriver) and adhoc.port == "/dev/ttyUSB0"


def test_trace_records_a_transcript_that_replays(tmp_path: Path) -> None:
    from tests.node_agent.transcripts import replay

    gcode = write(tmp_path / "a.gcode", [";LAYER:0", *MOVES[:120]])
    trace = tmp_path / "conversation.txt"
    options = FirmwareOptions(baud=115200, corrupt_rate=0.05, seed=4)
    with SimulatedPrinterProcess(options) as fw:
        done = spime_node("print", gcode, "--port", fw.port, "--baud", "115200", "--json",
                          "--trace", str(trace))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["resends"] > 0
    result = replay(trace.read_text(encoding="utf-8"))
    assert result.written == result.expected_written and len(result.written) > 120
    assert result.events == result.expected_events
