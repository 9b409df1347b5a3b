"""The vocabulary of the printability checks: severities, findings, thresholds, the printer.

Pure values only; every other printability module imports these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

__all__ = ["Finding", "Printer", "Severity", "Tolerances"]


class Severity(str, Enum):
    """How bad a finding is: any ERROR makes the mesh not printable."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Every threshold the checks use, in millimetres and degrees.

    Attributes:
        merge_relative: Vertices in one grid cell of this times the largest
            extent are one vertex (absorbs float32 export noise); at least 1e-6.
        degenerate_relative: A face whose longest-edge-relative height is below
            this is degenerate (a sliver or a collapsed triangle).
        zero_volume_relative: |volume| below this fraction of the bounding box
            volume is "no volume" (a surface, not a solid).
        max_overhang_deg: Overhang angle from vertical beyond which a downward
            face needs support; None takes the printer's (45 by default).
        overhang_min_area_mm2: Less unsupported overhang than this is only info.
        min_wall_mm: Thinnest printable wall; None takes the nozzle diameter.
        thin_wall_min_area_mm2: Less thin wall than this is only info.
        flat_base_angle_deg: Faces within this of the bed plane count as contact.
        flat_base_height_mm: ...and within this height of the lowest point.
        small_part_mm: A part whose largest extent is below this is probably in
            inches or metres.
        large_part_mm: A part whose largest extent is above this is probably in
            the wrong unit (or not meant for a desktop printer).
        check_seconds: Time budget of each check.
        thin_wall_method: "auto" (ray casting when embree is installed and the
            mesh has at most ray_max_faces faces, else sampling), "rays" or "sampled".
        thin_wall_samples: Most surface samples of the sampled thin-wall check.
        thin_wall_rays: Rays cast by the ray-casting thin-wall check.
        ray_max_faces: Above this, "auto" samples (embree's copy of a huge mesh
            would cost hundreds of MB).
        overlap_samples: Most points tested per pair of overlapping bodies.
        max_body_pairs: Most pairs of bodies tested for overlap.
    """

    merge_relative: float = 1e-6
    degenerate_relative: float = 1e-6
    zero_volume_relative: float = 1e-4
    max_overhang_deg: float | None = None
    overhang_min_area_mm2: float = 100.0
    min_wall_mm: float | None = None
    thin_wall_min_area_mm2: float = 4.0
    flat_base_angle_deg: float = 1.0
    flat_base_height_mm: float = 0.05
    small_part_mm: float = 8.0
    large_part_mm: float = 2000.0
    check_seconds: float = 10.0
    thin_wall_method: str = "auto"
    thin_wall_samples: int = 200_000
    thin_wall_rays: int = 25_000
    ray_max_faces: int = 250_000
    overlap_samples: int = 64
    max_body_pairs: int = 200

    def __post_init__(self) -> None:
        if self.thin_wall_method not in ("auto", "rays", "sampled"):
            raise ValueError(f"thin_wall_method must be 'auto', 'rays' or 'sampled', "
                             f"not {self.thin_wall_method!r}")


@dataclass(frozen=True, slots=True)
class Printer:
    name: str
    build_volume_mm: tuple[float, float, float]
    nozzle_mm: float
    max_overhang_deg: float


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of one check.

    Attributes:
        code: Stable machine name, e.g. "not_watertight".
        severity: ERROR makes the mesh not printable.
        message: For a person: what is wrong and what to do.
        details: Extra JSON-able values (counts, areas), merged into to_dict().
    """

    code: str
    severity: Severity
    message: str
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        """Return {"code", "severity", "message", **details} for JSON."""
        return {**dict(self.details), "code": self.code, "severity": self.severity.value,
                "message": self.message}
