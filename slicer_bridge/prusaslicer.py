"""PrusaSlicer behind the `Slicer` interface: a pure argv builder and output parser, and
`PrusaSlicer`, the implementation that runs the command line (headless; the CLI export
needs no display).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slicer_bridge.base import (
    GcodeMetadata,
    ParameterError,
    SliceRequest,
    SlicerError,
    SliceResult,
)
from slicer_bridge.gcode_meta import GcodeMetadataError, gcode_setting, parse_gcode_metadata
from slicer_bridge.run import Completed, run

__all__ = [
    "CUSTOMER_SETTINGS",
    "CustomerSetting",
    "PrusaSlicer",
    "build_slice_argv",
    "override_args",
    "parse_version",
]

_KEY = re.compile(r"[a-z][a-z0-9_]*")
_VERSION = re.compile(r"PrusaSlicer-(\d+\.\d+\.\d+\S*)")
_GCODE_NAME = "output.gcode"
_Z_TOLERANCE_MM = 1e-3


@dataclass(frozen=True, slots=True)
class CustomerSetting:
    """A slicer setting an order may choose, within the operator's bounds.

    Attributes:
        kind: "number" (mm or count), "int", "percent" (``20%``), "bool" (0/1) or "choice".
        low: Smallest number allowed.
        high: Largest number allowed.
        choices: The allowed words of a "choice".
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()

    def check(self, key: str, value: str) -> str | None:
        """Why ``value`` is not allowed, or None."""
        if self.kind == "choice":
            return None if value in self.choices else f"one of {', '.join(self.choices)}"
        if self.kind == "bool":
            return None if value in ("0", "1") else "0 or 1"
        text = value[:-1] if self.kind == "percent" and value.endswith("%") else value
        # [0-9], not \d: "١٢" (Arabic-Indic digits) is a \d that float() reads as 12.
        pattern = r"[0-9]{1,3}" if self.kind == "int" else r"[0-9]{1,3}(?:\.[0-9]{1,4})?"
        unit = "%" if self.kind == "percent" else ""
        expected = f"a number from {self.low:g}{unit} to {self.high:g}{unit}"
        if not re.fullmatch(pattern, text) or not self.low <= float(text) <= self.high:
            return expected
        return None


#: What an order may set; everything else comes from the operator's printer profile
#: (``post_process`` runs a command, ``*_gcode`` goes to the printer, output names
#: and paths touch the node's disk).
CUSTOMER_SETTINGS: dict[str, CustomerSetting] = {
    "layer_height": CustomerSetting("number", 0.05, 0.35),
    "first_layer_height": CustomerSetting("number", 0.1, 0.35),
    "fill_density": CustomerSetting("percent", 0, 100),
    "fill_pattern": CustomerSetting("choice", choices=(
        "rectilinear", "grid", "triangles", "stars", "cubic", "line", "concentric",
        "honeycomb", "3dhoneycomb", "gyroid", "adaptivecubic", "supportcubic", "lightning")),
    "perimeters": CustomerSetting("int", 1, 10),
    "top_solid_layers": CustomerSetting("int", 0, 30),
    "bottom_solid_layers": CustomerSetting("int", 0, 30),
    "support_material": CustomerSetting("bool"),
    "brim_width": CustomerSetting("number", 0, 20),
}


def _operator_only(key: str) -> str:
    if key == "post_process":
        return "it runs a program on the node"
    if key.endswith("_gcode") or key in ("gcode_flavor", "gcode_substitutions"):
        return "it is G-code sent to the printer"
    if key in ("output_filename_format", "output", "load", "datadir"):
        return "it names files on the node"
    return "it is the operator's choice"


def _as_text(key: str, value: object) -> str:
    """An override's value as the text PrusaSlicer reads; a JSON number becomes its digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    if isinstance(value, float):
        return repr(value)  # "0.2"; "1e-05" or "nan" then fails the setting's pattern
    raise ParameterError(key, f"{value!r} is not a value; give a number or text")


def override_args(overrides: Mapping[str, str]) -> list[str]:
    """PrusaSlicer command-line options for an order's setting overrides (pure).

    Only ``CUSTOMER_SETTINGS`` may be set, each within its range; the rest of the
    configuration comes from the operator's profile.

    Args:
        overrides: Config keys as written in an .ini (`fill_density`) to values (`20%`).

    Returns:
        Options such as `--fill-density=20%`, sorted by key.

    Raises:
        ParameterError: A key is not a setting an order may choose (the message says
            why), or its value is out of range or malformed (a ValueError too).
    """
    args = []
    for key, raw in sorted(overrides.items(), key=lambda item: str(item[0])):
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ParameterError(str(key), "is not a config key like 'fill_density'")
        value = _as_text(key, raw)
        setting = CUSTOMER_SETTINGS.get(key)
        if setting is None:
            allowed = ", ".join(sorted(CUSTOMER_SETTINGS))
            raise ParameterError(key, f"an order cannot set it ({_operator_only(key)}); it "
                                      f"comes from the printer's profile. Orders may set: {allowed}")
        problem = setting.check(key, value)
        if problem is not None:
            raise ParameterError(key, f"{value[:40]!r} is not allowed; expected {problem}")
        args.append(f"--{key.replace('_', '-')}={value}")
    return args


def build_slice_argv(binary: str, request: SliceRequest, gcode_path: Path) -> list[str]:
    """The PrusaSlicer command line that slices `request` into `gcode_path` (pure).

    Raises:
        ParameterError: An override is not allowed (see `override_args`).
    """
    return [
        binary, "--loglevel", "1",
        "--load", _operand(request.profile_path),
        *override_args(request.overrides),
        "--export-gcode", "--output", _operand(gcode_path),
        _operand(request.mesh_path),
    ]


def _operand(path: Path) -> str:
    # A file named "-x.stl" must not read as an option.
    text = str(path)
    return f"./{text}" if text.startswith("-") else text


def parse_version(help_text: str) -> str:
    """The version in `prusa-slicer --help`'s first line, e.g. "2.5.0+UNKNOWN" (pure).

    Raises:
        ValueError: No "PrusaSlicer-<version>" in the text.
    """
    match = _VERSION.search(help_text)
    if match is None:
        raise ValueError("no 'PrusaSlicer-<version>' in the output")
    return match.group(1)


class PrusaSlicer:
    """The PrusaSlicer command line as a `Slicer`.

    Args:
        binary: Program name or path.
        timeout_s: Time limit for one slice.
    """

    name = "prusaslicer"

    def __init__(self, binary: str = "prusa-slicer", timeout_s: float = 600.0) -> None:
        self.binary = binary
        self.timeout_s = timeout_s
        self._version: str | None = None

    async def version(self) -> str:
        """The installed PrusaSlicer's version, asked once per instance.

        Raises:
            ToolNotFound: PrusaSlicer is not installed.
            SlicerError: It did not state its version.
        """
        # No lock: two first callers at once both ask, harmlessly, and a lock would tie
        # this shared instance to one event loop.
        if self._version is None:
            done = await run([self.binary, "--help"], timeout_s=60.0, check=False)
            try:
                self._version = parse_version(done.stdout + done.stderr)
            except ValueError as exc:
                raise SlicerError(done.argv, done.returncode, done.stdout, done.stderr,
                                  reason=f"cannot read the slicer version: {exc}") from exc
        return self._version

    async def slice(self, request: SliceRequest, out_dir: Path | None = None) -> SliceResult:
        """Slice `request` into `out_dir/output.gcode` (a fresh temporary dir if None).

        Raises:
            ParameterError: An override is not a setting an order may choose, or is
                out of range (nothing is run).
            ToolNotFound: PrusaSlicer is not installed.
            SlicerError: A missing input, a rejected profile or mesh, a time-out, or
                G-code without the statistics the bridge reads, or with no layers or
                extrusion at all.
        """
        for path, what in ((request.mesh_path, "mesh"), (request.profile_path, "profile")):
            if not path.is_file():
                raise SlicerError((), None, "", "", reason=f"the {what} {path} does not exist")
        if out_dir is None:
            out_dir = Path(tempfile.mkdtemp(prefix="spime-slice-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        gcode_path = out_dir / _GCODE_NAME
        try:
            argv = build_slice_argv(self.binary, request, gcode_path)
        except ParameterError:
            raise  # the order's fault, not the slicer's
        except ValueError as exc:
            raise SlicerError((), None, "", "", reason=str(exc)) from exc
        gcode_path.unlink(missing_ok=True)  # never read a previous slice's output
        done = await run(argv, timeout_s=self.timeout_s)
        return SliceResult(gcode_path, await asyncio.to_thread(_read_metadata, done, gcode_path))


def _read_metadata(done: Completed, gcode_path: Path) -> GcodeMetadata:
    try:
        gcode = gcode_path.read_bytes()
        meta = parse_gcode_metadata(gcode)
        height = float(gcode_setting(gcode, "max_print_height") or "inf")
    except (OSError, ValueError, GcodeMetadataError) as exc:
        raise SlicerError(done.argv, done.returncode, done.stdout, done.stderr,
                          reason=f"PrusaSlicer exited 0 but its G-code is unusable: {exc}") from exc
    if meta.layer_count == 0 or meta.filament_mm <= 0:
        gcode_path.unlink(missing_ok=True)
        raise SlicerError(done.argv, done.returncode, done.stdout, done.stderr,
                          reason=f"PrusaSlicer exited 0 but its G-code has {meta.layer_count} "
                          f"layers and {meta.filament_mm:g} mm of filament: nothing would be "
                          "printed (the part is thinner than the nozzle or a layer, or in the "
                          "wrong unit)")
    # PrusaSlicer 2.5's CLI slices an object taller than the printer without a word.
    if meta.max_z_mm > height + _Z_TOLERANCE_MM:
        gcode_path.unlink(missing_ok=True)
        raise SlicerError(done.argv, done.returncode, done.stdout, done.stderr,
                          reason=f"the object is {meta.max_z_mm:g} mm tall but the printer's "
                          f"build height (max_print_height) is {height:g} mm; scale or "
                          f"rotate it, or choose a larger printer")
    return meta
