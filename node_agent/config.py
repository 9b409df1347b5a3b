"""The node config: one TOML file, read entirely, validated, frozen.

Example (every key shown; ``[printers.firmware]`` is optional)::

    [node]
    name = "fablab-berlin"
    hub = "127.0.0.1:7443"
    location = "Berlin"
    latitude = 52.52              # optional, WGS84 degrees (both or neither)
    longitude = 13.405
    state_dir = "/var/lib/spimeforge/node"   # journal, credential, control socket
    # tls_ca = "/etc/spimeforge/hub-ca.crt"  # the hub's CA when it serves TLS
    # tls_cert = "/etc/spimeforge/tls/node.crt"  # with tls_key: the node's client certificate (mTLS hubs)
    # tls_key = "/etc/spimeforge/tls/node.key"
    # credential_file = "..."     # default: <state_dir>/credential (written by enroll)
    # token = "..."               # or the node credential inline
    heartbeat_s = 15
    reconnect_max_s = 60          # cap of the full-jitter reconnect backoff (base 1 s)

    [[printers]]
    name = "mk3"
    driver = "serial"            # or "octoprint"
    port = "/dev/ttyACM0"        # serial only
    baud = 115200                # serial only
    # url = "http://127.0.0.1:5000"   # octoprint only
    # api_key = "..."                 # octoprint only
    # push_silence_s = 60             # octoprint only: a push socket silent this long is dead (30-600)
    model = "Prusa MK3S"
    build_volume_mm = [250, 210, 210]
    nozzle_mm = 0.4
    materials = ["PLA", "PETG"]
    max_hotend_c = 280
    max_bed_c = 110
    slicer_profile = "prusa_mk3s"
    move_margin_mm = 5           # optional: how far moves may leave the volume (purge lines)
    rate_per_hour = 2.50         # optional: machine time, in `currency` (orders)
    rate_per_gram = 0.05         # optional: material, in `currency`
    currency = "EUR"             # ISO 4217; required with a rate

Relative paths (state_dir, tls_ca, tls_cert, tls_key, credential_file) are relative to the config
file's folder.

    [printers.firmware]          # optional overrides of what the engine detects
    rx_buffer_bytes = 128
    command_buffer = 4
    end_gcode = ["M104 S0", "M140 S0", "M107", "G91", "G1 Z10", "G90", "M84"]

    [printers.busy]              # optional: how long one command may stay unacknowledged (seconds)
    command_s = 600              # any other command (10-86400); a move waits for the planner
    homing_s = 1800              # G28, G29, G30, G32-G35, G80, M48 (60-86400)
    heating_s = 3600             # M109, M190, M191, M303 (60-86400)
    operator_s = 43200           # M0, M1, M600, M226, a paused OctoPrint job (60-604800)

Unknown keys are errors (a typo must not silently drop a safety limit).
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from node_agent.busy import BusyLimits

__all__ = [
    "BUSY_RANGES",
    "DEFAULT_END_GCODE",
    "PUSH_SILENCE_S",
    "ConfigError",
    "FileRefused",
    "FirmwareConfig",
    "NodeConfig",
    "NodeInfo",
    "PrinterConfig",
    "Rate",
    "SafetyConfig",
    "load_config",
    "parse_config",
    "read_regular",
]

DEFAULT_END_GCODE = ("M104 S0", "M140 S0", "M107", "G91", "G1 Z10 F600", "G90", "M84")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_HUB = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}\Z", re.ASCII)
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?\Z", re.ASCII)
# Controls (Cc) and bidi controls: the hub refuses them in what customers read (hub.limits.check_plain_text).
_NOT_SHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CURRENCY = re.compile(r"^[A-Z]{3}\Z")
DEFAULT_STATE_DIR = "/var/lib/spimeforge/node"
_MAX_CONFIG_BYTES = 1 << 20
"""The largest node config read: a real one is a few KiB, even with dozens of printers."""
# OctoPrint's SockJS server sends a heartbeat frame every 25 s (sockjs-tornado's default, which
# OctoPrint keeps): a silence bound must leave room for one late heartbeat.
PUSH_SILENCE_S = (30.0, 60.0, 600.0)
"""``push_silence_s``: (minimum, default, maximum) seconds."""
BUSY_RANGES = {"command_s": (10.0, 86400.0), "homing_s": (60.0, 86400.0), "heating_s": (60.0, 86400.0),
               "operator_s": (60.0, 604800.0)}
"""``[printers.busy]``: (minimum, maximum) seconds of each ceiling (node_agent.busy.BusyLimits)."""


class ConfigError(Exception):
    """The node config is unusable; the message names the file, the key and the fix."""


@dataclass(frozen=True, slots=True)
class FirmwareConfig:
    """Overrides for the serial engine (None = detect)."""

    rx_buffer_bytes: int | None = None
    command_buffer: int | None = None
    end_gcode: tuple[str, ...] = DEFAULT_END_GCODE


@dataclass(frozen=True, slots=True)
class Rate:
    """A price in minor units (cents) of an ISO 4217 currency."""

    currency: str
    minor_units: int


@dataclass(frozen=True, slots=True)
class SafetyConfig:
    """Per-printer caps of the G-code safety filter beyond temperatures and volume (defaults: Marlin's)."""

    firmware: str = "marlin"
    tools: int = 1
    max_feedrate_mm_s: float = 1000.0
    max_accel_mm_s2: float = 30000.0
    max_factor_pct: float = 200.0
    max_dwell_s: float = 1800.0
    forbidden_gcode: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PrinterConfig:
    """One printer of the node, with its safety limits."""

    name: str
    driver: str
    model: str
    build_volume_mm: tuple[float, float, float]
    nozzle_mm: float
    materials: tuple[str, ...]
    max_hotend_c: float
    max_bed_c: float
    slicer_profile: str
    port: str | None = None
    baud: int | None = None
    url: str | None = None
    api_key: str | None = None
    push_silence_s: float = PUSH_SILENCE_S[1]
    move_margin_mm: float = 5.0
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    busy: BusyLimits = field(default_factory=BusyLimits)
    rate_per_hour: Rate | None = None
    rate_per_gram: Rate | None = None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """The node itself: who it is, where it is, how it reaches the hub."""

    name: str
    hub: str
    location: str = ""
    latitude: float | None = None
    longitude: float | None = None
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    credential_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    heartbeat_s: float = 15.0
    reconnect_max_s: float = 60.0

    @property
    def credential_path(self) -> Path:
        """Where the node credential is read from (and ``enroll`` writes it)."""
        return self.credential_file or self.state_dir / "credential"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node: NodeInfo
    printers: tuple[PrinterConfig, ...]
    source: str = "<config>"

    def printer(self, name: str) -> PrinterConfig:
        """Return the printer called ``name``.

        Raises:
            ConfigError: no such printer (the message lists the known ones).
        """
        for printer in self.printers:
            if printer.name == name:
                return printer
        known = ", ".join(p.name for p in self.printers) or "none"
        raise ConfigError(f"{self.source}: no printer named {name!r} (configured: {known})")


class _Reader:
    """Reads one table, remembering which keys were used, for precise errors."""

    def __init__(self, table: Any, where: str, source: str) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: {where} must be a table")
        self.table, self.where, self.source = table, where, source
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.where}.{key}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *,
            lo: float | None = None, hi: float | None = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        value: Any = self.table[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise self.fail(key, f"must be a {names}, got {value!r}")
        if lo is not None and hi is not None and not lo <= cast(float, value) <= hi:
            raise self.fail(key, f"must be between {lo:g} and {hi:g}, got {value!r}")
        return value

    def strings(self, key: str, default: Any = ..., *, limit: int = 0) -> tuple[str, ...]:
        """A list of non-empty strings; with ``limit``, each is shown text (see ``text``)."""
        value = self.get(key, list, default)
        if not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(key, "must be a list of non-empty strings")
        for item in value if limit else ():
            self._shown(key, item, limit)
        return tuple(value)

    def text(self, key: str, limit: int, default: Any = ...) -> str:
        """Text the hub shows to customers: at most ``limit`` characters, no control or bidi character
        (the hub refuses a Hello with them, so the agent could never connect)."""
        return self._shown(key, self.get(key, str, default), limit)

    def _shown(self, key: str, value: str, limit: int) -> str:
        if len(value) > limit:
            raise self.fail(key, f"must be at most {limit} characters, got {len(value)}")
        bad = _NOT_SHOWN.search(value)
        if bad is not None:
            raise self.fail(key, f"holds the control or bidi character U+{ord(bad[0]):04X}; use plain text")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.fail(unknown[0], f"unknown key (known: {', '.join(sorted(self.used))})")


def load_config(path: str | Path) -> NodeConfig:
    """Read and validate a node config file.

    Raises:
        ConfigError: the file is missing, not a regular file, over :data:`_MAX_CONFIG_BYTES`,
            not TOML, or breaks the schema.
    """
    source = str(path)
    try:
        data = tomllib.loads(_read_text(path, source))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file; pass --config or set SPIME_NODE_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{source}: not valid TOML for a node config: arrays or tables "
                          "nested too deeply") from None
    return parse_config(data, source)


class FileRefused(OSError):
    """What was to be read is not a regular file, or (``too_large``) holds more than its reader takes."""

    def __init__(self, path: str | Path, too_large: bool) -> None:
        super().__init__(f"{path} is {'too large' if too_large else 'not a regular file'}")
        self.too_large = too_large


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them. The type is checked before
    the file is opened (opening a serial device can reset the printer on it) and again on the opened
    file (opened without blocking: a FIFO would wait for a writer, /dev/zero never end).

    Raises:
        FileRefused: not a regular file, or more than ``limit`` bytes.
        OSError: it cannot be opened or read (FileNotFoundError: nothing is there).
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise FileRefused(path, too_large=False)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileRefused(path, too_large=False)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(path, too_large=True)
    return data


def _read_text(path: str | Path, source: str) -> str:
    """The file's text, read only from a regular file and at most :data:`_MAX_CONFIG_BYTES`.

    Raises:
        ConfigError: not a regular file, or too large.
        OSError: the file cannot be opened or read.
        UnicodeDecodeError: it is not UTF-8.
    """
    try:
        return read_regular(path, _MAX_CONFIG_BYTES).decode("utf-8")
    except FileRefused as exc:
        raise ConfigError(f"{source}: over {_MAX_CONFIG_BYTES} bytes: not a node config" if exc.too_large
                          else f"{source}: not a regular file (a node config is a TOML file on disk)") from None


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> NodeConfig:
    """Validate an already parsed TOML document.

    Raises:
        ConfigError: a key is missing, unknown, of the wrong type or out of range.
    """
    top = _Reader(data, "<top>", source)
    base = Path(source).parent
    node = _node(_Reader(top.get("node", dict), "node", source), base)
    raw_printers = top.get("printers", list, [])
    top.finish()
    printers = tuple(
        _printer(_Reader(raw, f"printers[{i}]", source)) for i, raw in enumerate(raw_printers)
    )
    names = [p.name for p in printers]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{source}: printer name {name!r} is used twice; names must be unique")
    return NodeConfig(node, printers, source)


def _node(r: _Reader, base: Path) -> NodeInfo:
    name = _name(r, "name")
    hub = r.get("hub", str)
    if not _HUB.match(hub):
        raise r.fail("hub", f"must be host:port, got {hub!r}")
    location = r.text("location", 128, "")
    latitude = r.get("latitude", (int, float), None, lo=-90, hi=90)
    longitude = r.get("longitude", (int, float), None, lo=-180, hi=180)
    if (latitude is None) != (longitude is None):
        raise r.fail("latitude" if latitude is None else "longitude",
                     "latitude and longitude go together; give both or neither")
    token = r.get("token", str, None)
    if token is not None and not (0 < len(token) <= 256 and token.isprintable()):
        raise r.fail("token", "must be the node credential printed by `spime-node enroll`")
    credential = _path(r, "credential_file", base)
    if token is not None and credential is not None:
        raise r.fail("token", "give token or credential_file, not both")
    tls_ca, tls_cert, tls_key = (_path(r, key, base) for key in ("tls_ca", "tls_cert", "tls_key"))
    if (tls_cert is None) != (tls_key is None):
        raise r.fail("tls_cert" if tls_cert is None else "tls_key",
                     "tls_cert and tls_key go together; give both or neither")
    if tls_cert is not None and tls_ca is None:
        raise r.fail("tls_cert", "a client certificate needs TLS: set tls_ca to the hub's CA file too")
    info = NodeInfo(
        name, hub, location,
        latitude=None if latitude is None else float(latitude),
        longitude=None if longitude is None else float(longitude),
        state_dir=_path(r, "state_dir", base) or Path(DEFAULT_STATE_DIR),
        tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, credential_file=credential, token=token,
        heartbeat_s=float(r.get("heartbeat_s", (int, float), 15.0, lo=1, hi=300)),
        reconnect_max_s=float(r.get("reconnect_max_s", (int, float), 60.0, lo=1, hi=600)),
    )
    r.finish()
    return info


def _path(r: _Reader, key: str, base: Path) -> Path | None:
    value = r.get(key, str, None)
    if value is None:
        return None
    if not value.strip() or "\x00" in value:
        raise r.fail(key, "must be a file system path")
    return base / Path(value).expanduser()


def _rates(r: _Reader) -> tuple[Rate | None, Rate | None]:
    hour = r.get("rate_per_hour", (int, float), None, lo=0, hi=1_000_000)
    gram = r.get("rate_per_gram", (int, float), None, lo=0, hi=1_000_000)
    currency = r.get("currency", str, None)
    if currency is not None and not _CURRENCY.match(currency):
        raise r.fail("currency", f"must be an ISO 4217 code such as 'EUR', got {currency!r}")
    if currency is None and (hour is not None or gram is not None):
        raise r.fail("currency", "is required with rate_per_hour or rate_per_gram")
    return (None if hour is None else Rate(str(currency), round(hour * 100)),
            None if gram is None else Rate(str(currency), round(gram * 100)))


def _name(r: _Reader, key: str) -> str:
    value = r.get(key, str)
    if not _NAME.match(value):
        raise r.fail(key, f"must be 1-64 letters, digits, '.', '_' or '-', got {value!r}")
    return str(value)


def _printer(r: _Reader) -> PrinterConfig:
    name = _name(r, "name")
    driver = r.get("driver", str)
    if driver not in ("serial", "octoprint"):
        raise r.fail("driver", f"must be 'serial' or 'octoprint', got {driver!r}")
    link = _serial_link(r) if driver == "serial" else _octoprint_link(r)
    per_hour, per_gram = _rates(r)
    volume = r.get("build_volume_mm", list)
    if len(volume) != 3 or not all(_number(v) and 10 <= v <= 2000 for v in volume):
        raise r.fail("build_volume_mm", f"must be [x, y, z] in mm, each 10-2000, got {volume!r}")
    printer = PrinterConfig(
        name=name,
        driver=driver,
        model=r.text("model", 64),
        build_volume_mm=(float(volume[0]), float(volume[1]), float(volume[2])),
        nozzle_mm=float(r.get("nozzle_mm", (int, float), lo=0.1, hi=2.0)),
        materials=r.strings("materials", limit=32),
        max_hotend_c=float(r.get("max_hotend_c", (int, float), lo=1, hi=500)),
        max_bed_c=float(r.get("max_bed_c", (int, float), lo=1, hi=200)),
        slicer_profile=r.text("slicer_profile", 64),
        move_margin_mm=float(r.get("move_margin_mm", (int, float), 5.0, lo=0, hi=50)),
        firmware=_firmware(r),
        safety=_safety(r),
        busy=_busy(r),
        rate_per_hour=per_hour,
        rate_per_gram=per_gram,
        **link,
    )
    r.finish()
    return printer


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _serial_link(r: _Reader) -> dict[str, Any]:
    for key in ("url", "api_key", "push_silence_s"):
        if key in r.table:
            raise r.fail(key, "only applies to driver = 'octoprint'")
    port = r.get("port", str)
    if not port.strip():
        raise r.fail("port", "must name a device, e.g. /dev/ttyACM0")
    return {"port": port, "baud": r.get("baud", int, lo=1200, hi=4_000_000)}


def _octoprint_link(r: _Reader) -> dict[str, Any]:
    url = r.get("url", str)
    if not _URL.match(url):
        raise r.fail("url", f"must look like http://host:port, got {url!r}")
    api_key = r.get("api_key", str)
    if not api_key.strip():
        raise r.fail("api_key", "must not be empty (OctoPrint: Settings > Application Keys)")
    # port/baud: which serial port OctoPrint itself should open (default: its AUTO)
    port = r.get("port", str, None)
    baud = r.get("baud", int, None, lo=1200, hi=4_000_000) if "baud" in r.table else None
    low, default, high = PUSH_SILENCE_S
    silence = float(r.get("push_silence_s", (int, float), default, lo=low, hi=high))
    return {"url": url, "api_key": api_key, "port": port, "baud": baud, "push_silence_s": silence}


_GCODE_WORD = re.compile(r"^([GMT])([0-9]{1,5})(?:\.([0-9]))?\Z")


def _canonical_word(match: re.Match[str]) -> str:
    """The word as the safety filter names it: "G029" is G29, "m600" M600 (as Marlin reads them)."""
    letter, digits, sub = match.groups()
    return f"{letter}{int(digits)}" + (f".{int(sub)}" if sub is not None else "")


def _safety(printer: _Reader) -> SafetyConfig:
    raw = printer.get("safety", dict, {})
    r = _Reader(raw, f"{printer.where}.safety", printer.source)
    base = SafetyConfig()
    forbidden = []
    for word in r.strings("forbidden_gcode", []):
        match = _GCODE_WORD.match(word.strip().upper())
        if not match or int(match[2]) > 9999:
            raise r.fail("forbidden_gcode", f"{word!r} is not a G-code word like G29 or M600")
        forbidden.append(_canonical_word(match))
    firmware = r.get("firmware", str, base.firmware)
    if firmware != "marlin":
        raise r.fail("firmware", f"no G-code allow-list for {firmware!r}; known: marlin")
    safety = SafetyConfig(
        firmware=firmware,
        tools=r.get("tools", int, base.tools, lo=1, hi=16),
        max_feedrate_mm_s=float(r.get("max_feedrate_mm_s", (int, float), base.max_feedrate_mm_s, lo=1, hi=5000)),
        max_accel_mm_s2=float(r.get("max_accel_mm_s2", (int, float), base.max_accel_mm_s2, lo=1, hi=200000)),
        max_factor_pct=float(r.get("max_factor_pct", (int, float), base.max_factor_pct, lo=10, hi=999)),
        max_dwell_s=float(r.get("max_dwell_s", (int, float), base.max_dwell_s, lo=1, hi=86400)),
        forbidden_gcode=tuple(forbidden),
    )
    r.finish()
    return safety


def _firmware(printer: _Reader) -> FirmwareConfig:
    raw = printer.get("firmware", dict, {})
    r = _Reader(raw, f"{printer.where}.firmware", printer.source)
    rx = r.get("rx_buffer_bytes", int, None, lo=32, hi=65536) if "rx_buffer_bytes" in raw else None
    cmd = r.get("command_buffer", int, None, lo=1, hi=64) if "command_buffer" in raw else None
    end = r.strings("end_gcode", list(DEFAULT_END_GCODE))
    for command in end:
        # a CR ends a line for the firmware as a LF does; any other control character is no G-code either
        if "*" in command or not command.isascii() or not command.isprintable():
            raise r.fail("end_gcode", f"{command!r} is not a single ASCII G-code command")
    r.used.update({"rx_buffer_bytes", "command_buffer"})
    r.finish()
    return FirmwareConfig(rx, cmd, end)


def _busy(printer: _Reader) -> BusyLimits:
    r = _Reader(printer.get("busy", dict, {}), f"{printer.where}.busy", printer.source)
    base = BusyLimits()
    limits = BusyLimits(**{key: float(r.get(key, (int, float), getattr(base, key), lo=lo, hi=hi))
                           for key, (lo, hi) in BUSY_RANGES.items()})
    r.finish()
    return limits
