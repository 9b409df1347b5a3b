"""The node config: the documented example loads; every bad input names key and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from node_agent.busy import BusyLimits
from node_agent.config import (
    DEFAULT_END_GCODE,
    ConfigError,
    NodeConfig,
    Rate,
    load_config,
    parse_config,
)

EXAMPLE = """\
[node]
name = "fablab-berlin"
hub = "127.0.0.1:7443"
location = "Berlin"
latitude = 52.52
longitude = 13.405
state_dir = "state"
heartbeat_s = 5

[[printers]]
name = "mk3"
driver = "serial"
port = "/dev/ttyACM0"
baud = 115200
model = "Prusa MK3S"
build_volume_mm = [250, 210, 210]
nozzle_mm = 0.4
materials = ["PLA", "PETG"]
max_hotend_c = 280
max_bed_c = 110
slicer_profile = "prusa_mk3s"
rate_per_hour = 2.5
rate_per_gram = 0.04
currency = "EUR"

[printers.firmware]
rx_buffer_bytes = 128
command_buffer = 4
end_gcode = ["M104 S0", "M140 S0", "M107", "G91", "G1 Z10", "G90", "M84"]

[[printers]]
name = "ender-octo"
driver = "octoprint"
url = "http://127.0.0.1:5000"
api_key = "abc123"
push_silence_s = 45
model = "Ender 3"
build_volume_mm = [220, 220, 250]
nozzle_mm = 0.4
materials = ["PLA"]
max_hotend_c = 260
max_bed_c = 100
slicer_profile = "ender3"

[printers.busy]
heating_s = 5400
operator_s = 600
"""


def _load(tmp_path: Path, text: str) -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def _data() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(EXAMPLE)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    config = _load(tmp_path, EXAMPLE)
    assert config.node.name == "fablab-berlin" and config.node.hub == "127.0.0.1:7443"
    mk3 = config.printer("mk3")
    assert (mk3.driver, mk3.port, mk3.baud) == ("serial", "/dev/ttyACM0", 115200)
    assert mk3.build_volume_mm == (250.0, 210.0, 210.0) and mk3.materials == ("PLA", "PETG")
    assert mk3.firmware.rx_buffer_bytes == 128 and mk3.firmware.command_buffer == 4
    assert mk3.firmware.end_gcode[-1] == "M84"
    octo = config.printer("ender-octo")
    assert (octo.url, octo.api_key, octo.port) == ("http://127.0.0.1:5000", "abc123", None)
    assert octo.push_silence_s == 45.0 and mk3.push_silence_s == 60.0
    assert octo.firmware.end_gcode == DEFAULT_END_GCODE and octo.firmware.rx_buffer_bytes is None
    assert octo.busy == BusyLimits(heating_s=5400.0, operator_s=600.0) and mk3.busy == BusyLimits()
    with pytest.raises(AttributeError):
        mk3.name = "other"  # type: ignore[misc]  # frozen
    assert (mk3.rate_per_hour, mk3.rate_per_gram) == (Rate("EUR", 250), Rate("EUR", 4))
    assert octo.rate_per_hour is None
    node = config.node
    assert (node.latitude, node.longitude, node.heartbeat_s) == (52.52, 13.405, 5.0)
    assert node.state_dir == tmp_path / "state"  # relative to the config file
    assert node.credential_path == tmp_path / "state" / "credential" and node.token is None


def _mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = _data()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "message"), [
    (("node", "nmae"), "x", "node.nmae: unknown key"),
    (("node", "hub"), "localhost", "node.hub: must be host:port"),
    (("node", "name"), KeyError, "node.name: is required"),
    (("printers", 0, "max_hotend_c"), 900, "printers[0].max_hotend_c: must be between 1 and 500"),
    (("printers", 0, "max_bed_c"), "hot", "printers[0].max_bed_c: must be a int or float"),
    (("printers", 0, "baud"), 12.5, "printers[0].baud: must be a int"),
    (("printers", 0, "baud"), KeyError, "printers[0].baud: is required"),
    (("printers", 0, "driver"), "klipper", "must be 'serial' or 'octoprint'"),
    (("printers", 0, "url"), "http://x:1", "printers[0].url: only applies to driver = 'octoprint'"),
    (("printers", 0, "build_volume_mm"), [250, 210], "build_volume_mm: must be [x, y, z]"),
    (("printers", 0, "nozzle_mm"), 0.0, "nozzle_mm: must be between 0.1 and 2"),
    (("printers", 0, "materials"), ["PLA", ""], "materials: must be a list of non-empty strings"),
    (("printers", 0, "name"), "has space", "printers[0].name: must be 1-64 letters"),
    (("printers", 0, "firmware", "command_buffer"), 0, "firmware.command_buffer: must be between"),
    (("printers", 0, "firmware", "end_gcode"), ["G1 Z10*3"], "is not a single ASCII G-code"),
    (("printers", 0, "firmware", "end_gcode"), ["G1 Z10\rM104 S300"], "is not a single ASCII G-code"),
    (("printers", 0, "firmware", "end_gcode"), ["M84\x00"], "is not a single ASCII G-code"),
    (("printers", 0, "firmware", "rx_bufer_bytes"), 64, "firmware.rx_bufer_bytes: unknown key"),
    (("printers", 1, "api_key"), KeyError, "printers[1].api_key: is required"),
    (("printers", 1, "url"), "ftp://x", "printers[1].url: must look like http://host:port"),
    (("printers", 1, "push_silence_s"), 25, "printers[1].push_silence_s: must be between 30 and 600"),
    (("printers", 1, "push_silence_s"), 3600, "printers[1].push_silence_s: must be between 30 and 600"),
    (("printers", 1, "push_silence_s"), "60", "printers[1].push_silence_s: must be a int or float"),
    (("printers", 0, "push_silence_s"), 60, "printers[0].push_silence_s: only applies to driver = 'octoprint'"),
    (("printers", 1, "name"), "mk3", "printer name 'mk3' is used twice"),
    (("printers", 1, "busy", "heating_s"), 30, "printers[1].busy.heating_s: must be between 60 and 86400"),
    (("printers", 1, "busy", "operator_s"), 10**6, "printers[1].busy.operator_s: must be between 60 and 604800"),
    (("printers", 1, "busy", "operator_s"), "12h", "printers[1].busy.operator_s: must be a int or float"),
    (("printers", 1, "busy", "cooling_s"), 60, "printers[1].busy.cooling_s: unknown key"),
    (("printers", 0, "busy"), {"command_s": 5}, "printers[0].busy.command_s: must be between 10 and 86400"),
    (("printers", 0, "busy"), 600, "printers[0].busy: must be a dict"),
    (("extra",), {"a": 1}, "<top>.extra: unknown key"),
    (("node", "latitude"), 91, "node.latitude: must be between -90 and 90"),
    (("node", "longitude"), -181.5, "node.longitude: must be between -180 and 180"),
    (("node", "longitude"), KeyError, "node.longitude: latitude and longitude go together"),
    (("node", "heartbeat_s"), 0, "node.heartbeat_s: must be between 1 and 300"),
    (("node", "location"), "x" * 129, "node.location: must be at most 128 characters"),
    (("node", "token"), "bad\ntoken", "node.token: must be the node credential"),
    (("node", "hub"), "127.0.0.1:\u0668\u0660", "node.hub: must be host:port"),  # int() reads Arabic-Indic 80
    (("node", "credential_file"), " ", "node.credential_file: must be a file system path"),
    (("printers", 0, "currency"), "euro", "printers[0].currency: must be an ISO 4217 code"),
    (("printers", 0, "currency"), KeyError, "printers[0].currency: is required with rate_per_hour"),
    (("printers", 0, "rate_per_hour"), -1, "printers[0].rate_per_hour: must be between 0"),
])
def test_bad_config_is_refused_naming_the_key(path: tuple[Any, ...], value: Any,
                                               message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_mutate(path, value), "node.toml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("node.toml: ")


def test_a_written_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(tomli_w.dumps(_data()).encode())
    assert load_config(path) == parse_config(_data(), str(path))


def test_missing_file_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; pass --config"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(tmp_path, "[node\nname = 1")


def test_unknown_printer_lists_the_known_ones(tmp_path: Path) -> None:
    config = _load(tmp_path, EXAMPLE)
    with pytest.raises(ConfigError, match=r"no printer named 'mk4' \(configured: mk3, ender-octo\)"):
        config.printer("mk4")


def test_token_and_credential_file_exclude_each_other() -> None:
    data = _data()
    data["node"].update(token="abc", credential_file="cred")
    with pytest.raises(ConfigError, match="node.token: give token or credential_file, not both"):
        parse_config(data, "node.toml")


def test_client_certificate_needs_its_key_and_the_hub_ca() -> None:
    data = _data()
    data["node"].update(tls_cert="node.crt")
    with pytest.raises(ConfigError, match="node.tls_key: tls_cert and tls_key go together"):
        parse_config(data, "/etc/spimeforge/node.toml")
    data["node"].update(tls_key="node.key")
    with pytest.raises(ConfigError, match="node.tls_cert: a client certificate needs TLS: set tls_ca"):
        parse_config(data, "/etc/spimeforge/node.toml")
    data["node"].update(tls_ca="ca.crt")
    node = parse_config(data, "/etc/spimeforge/node.toml").node
    assert (node.tls_ca, node.tls_cert, node.tls_key) == (
        Path("/etc/spimeforge/ca.crt"), Path("/etc/spimeforge/node.crt"), Path("/etc/spimeforge/node.key"))


def test_safety_caps_reach_the_filter_and_bad_ones_are_refused() -> None:
    from node_agent.safety import JobRefused, enforce, limits_for

    data = _data()
    data["printers"][0]["safety"] = {"forbidden_gcode": ["G29"], "max_feedrate_mm_s": 200, "tools": 2}
    printer = parse_config(data, "node.toml").printers[0]
    limits = limits_for(printer)
    assert (limits.forbidden, limits.max_feedrate_mm_s, limits.tools) == (("G29",), 200.0, 2)
    with pytest.raises(JobRefused, match="line 2"):
        enforce(["G28", "G29"], limits)
    data["printers"][0]["safety"] = {"forbidden_gcode": ["rm -rf"]}
    with pytest.raises(ConfigError, match=r"printers\[0\].safety.forbidden_gcode: 'rm -rf' is not a G-code word"):
        parse_config(data, "node.toml")
    data["printers"][0]["safety"] = {"max_feedrate": 1}
    with pytest.raises(ConfigError, match=r"printers\[0\].safety.max_feedrate: unknown key"):
        parse_config(data, "node.toml")
