"""The slicer bridge's vocabulary: requests, results, metadata and errors.

Pure: standard library only. Each slicer is a module implementing `Slicer`,
listed in `slicer_bridge.registry.SLICERS`; callers never name a slicer module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = [
    "GcodeMetadata",
    "ParameterError",
    "ProfileError",
    "RenderError",
    "SliceRequest",
    "SliceResult",
    "Slicer",
    "SlicerBridgeError",
    "SlicerError",
    "ToolError",
    "ToolNotFound",
]

_MAX_STREAM_CHARS = 4000


class SlicerBridgeError(Exception):
    """Root of every error the slicer bridge raises on purpose."""

    retryable: bool = False


class ToolNotFound(SlicerBridgeError):
    """An external program (prusa-slicer, openscad) is not installed.

    The node's installation is at fault; retrying on this node will not help.
    """

    def __init__(self, program: str) -> None:
        self.program = program
        super().__init__(
            f"{program!r} was not found on PATH; install the system packages with "
            f"`bash ops/install.sh` (it installs prusa-slicer, openscad and admesh)"
        )


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) <= _MAX_STREAM_CHARS:
        return text or "<empty>"
    half = _MAX_STREAM_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - _MAX_STREAM_CHARS} chars cut ...]\n{text[-half:]}"


def _meaningful(text: str) -> list[str]:
    # PrusaSlicer logs a "[trace] Initializing StaticPrintConfigs" line whatever the loglevel.
    return [ln.strip() for ln in text.splitlines() if ln.strip() and "[trace]" not in ln]


class ToolError(SlicerBridgeError):
    """An external program failed, timed out or produced no output.

    Attributes:
        argv: The full command line that was run.
        returncode: The exit code, negative for a signal, None when it was killed at
            the time limit.
        stdout: What the program wrote to stdout (decoded, replacement characters for
            undecodable bytes).
        stderr: What the program wrote to stderr.
        timed_out: True when the bridge killed it at the time limit.
        reason: A one-line summary of what went wrong.
    """

    def __init__(
        self,
        argv: tuple[str, ...] | list[str],
        returncode: int | None,
        stdout: str,
        stderr: str,
        *,
        timed_out: bool = False,
        reason: str = "",
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.reason = reason or self._default_reason()
        # SIGKILL/SIGTERM come from outside (OOM killer, shutdown) and may not recur; a
        # clean non-zero exit, a crash (SIGABRT, SIGSEGV) or a time limit on the same
        # input will.
        self.retryable = returncode in (-9, -15)
        super().__init__(self._render())

    def _default_reason(self) -> str:
        program = Path(self.argv[0]).name if self.argv else "the program"
        if self.timed_out:
            return f"{program} was killed at the time limit"
        said = _meaningful(self.stderr) or _meaningful(self.stdout)
        last = f": {said[-1]}" if said else ""
        return f"{program} exited with code {self.returncode}{last}"

    def _render(self) -> str:
        return (
            f"{self.reason}\n"
            f"command: {' '.join(self.argv)}\n"
            f"return code: {self.returncode}\n"
            f"stdout:\n{_clip(self.stdout)}\n"
            f"stderr:\n{_clip(self.stderr)}"
        )


class SlicerError(ToolError):
    """The slicer rejected the mesh or the profile, or failed to produce G-code."""


class RenderError(ToolError):
    """OpenSCAD failed to render a design; `reason` carries OpenSCAD's own message."""


class ParameterError(SlicerBridgeError, ValueError):
    """A customer's parameter value is not allowed by the design's schema.

    The customer is at fault; the message names the parameter and what is allowed.
    """

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"parameter {parameter!r}: {message}")


class ProfileError(SlicerBridgeError):
    """A printer profile is unknown, unreadable or incomplete (the node's config is at fault)."""


@dataclass(frozen=True, slots=True)
class GcodeMetadata:
    """What a slicer says about the G-code it wrote.

    Attributes:
        estimated_seconds: Estimated print time in normal mode, in seconds.
        filament_mm: Filament length over all extruders, in millimetres.
        filament_g: Filament mass in grams (0.0 when the profile has no density).
        filament_cm3: Filament volume in cubic centimetres.
        layer_count: Number of printed layers.
        layer_height_mm: The profile's layer height.
        first_layer_height_mm: The first layer's height.
        slicer_name: For example "PrusaSlicer".
        slicer_version: For example "2.5.0".
        max_z_mm: Height of the top layer (0.0 when the G-code marks no layers).
    """

    estimated_seconds: float
    filament_mm: float
    filament_g: float
    filament_cm3: float
    layer_count: int
    layer_height_mm: float
    first_layer_height_mm: float
    slicer_name: str
    slicer_version: str
    max_z_mm: float = 0.0


@dataclass(frozen=True, slots=True)
class SliceRequest:
    """One slicing job: a mesh, a printer profile and print-setting overrides.

    Attributes:
        mesh_path: An STL, OBJ or 3MF file.
        profile_path: The slicer's printer/print/filament config (.ini).
        overrides: Slicer settings that override the profile, e.g. {"fill_density": "20%"}.
    """

    mesh_path: Path
    profile_path: Path
    overrides: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mesh_path", Path(self.mesh_path))
        object.__setattr__(self, "profile_path", Path(self.profile_path))
        frozen = MappingProxyType({str(k): str(v) for k, v in sorted(self.overrides.items())})
        object.__setattr__(self, "overrides", frozen)

    def __hash__(self) -> int:
        return hash((self.mesh_path, self.profile_path, tuple(self.overrides.items())))


@dataclass(frozen=True, slots=True)
class SliceResult:
    """The G-code a slicer wrote and what it says about it.

    Attributes:
        gcode_path: Where the G-code is. A cached result lives in the cache directory
            and may be evicted later: copy it if it must outlive the next slice.
        metadata: Parsed from the G-code.
        cached: True when the result came from the slice cache.
    """

    gcode_path: Path
    metadata: GcodeMetadata
    cached: bool = False


@runtime_checkable
class Slicer(Protocol):
    """A slicer behind the bridge; implementations live one per module."""

    name: str

    async def version(self) -> str:
        """The installed slicer's version string (cached after the first call).

        Raises:
            ToolNotFound: The slicer is not installed.
            SlicerError: It could not report its version.
        """
        ...

    async def slice(self, request: SliceRequest, out_dir: Path | None = None) -> SliceResult:
        """Slice `request` into a G-code file in `out_dir` (a fresh temporary one if None).

        Raises:
            ToolNotFound: The slicer is not installed.
            SlicerError: The slicer rejected the mesh or profile, or timed out.
        """
        ...
