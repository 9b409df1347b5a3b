"""Places on the globe: coordinate validation, "LAT,LON" parsing and great-circle distance. Pure.

Distances use the haversine formula on a sphere of the IUGG mean Earth radius
(6371.0088 km); the error against the WGS 84 ellipsoid stays under 0.5 %, far
below what "how far is the makerspace" needs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal

from hub.errors import InvalidArgument

__all__ = ["EARTH_RADIUS_KM", "MAX_NEAR_CHARS", "Point", "distance_km", "parse_near", "point"]

EARTH_RADIUS_KM = 6371.0088
MAX_NEAR_CHARS = 64
# Plain ASCII decimals only: float() also takes "5_2", " 52 ", "١٢", fullwidth digits, "1e1" and "inf".
_DEGREES = re.compile(r"-?[0-9]{1,3}(?:\.[0-9]{1,20})?")


@dataclass(frozen=True, slots=True)
class Point:
    """A WGS 84 position in decimal degrees (latitude -90..90, longitude -180..180)."""

    latitude: float
    longitude: float

    @property
    def text(self) -> str:
        """The normalised "LAT,LON" (shortest round-trip decimals, no negative zero, never an exponent:
        parse_near reads it back), e.g. "52.52,13.405" or "0.00001,-0.00005"."""
        return f"{_plain(self.latitude)},{_plain(self.longitude)}"


def _plain(degrees: float) -> str:
    # repr is the shortest text that reads back as the same float, but writes 1e-05 below 1e-4
    return format(Decimal(repr(degrees + 0.0)), "f")


def point(latitude: float, longitude: float, what: str = "location") -> Point:
    """A checked Point.

    Raises:
        InvalidArgument: a coordinate is not a finite number or lies off the globe.
    """
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        raise InvalidArgument(f"{what}: coordinates must be finite numbers, got {latitude}, {longitude}")
    if not -90.0 <= latitude <= 90.0:
        raise InvalidArgument(f"{what}: latitude {latitude} is off the globe (allowed -90 to 90)")
    if not -180.0 <= longitude <= 180.0:
        raise InvalidArgument(f"{what}: longitude {longitude} is off the globe (allowed -180 to 180)")
    return Point(float(latitude), float(longitude))


def parse_near(text: str) -> Point:
    """Parse "LAT,LON" in decimal degrees, e.g. "52.52,13.405": plain ASCII decimals, an optional minus,
    no spaces, no exponent (``Point.text`` is the normalised form to keep).

    Raises:
        InvalidArgument: not two comma-separated decimal numbers, or off the globe.
    """
    if len(text) > MAX_NEAR_CHARS:
        raise InvalidArgument(f"near: at most {MAX_NEAR_CHARS} characters, like 52.52,13.405", field="near")
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidArgument(f"near {text!r:.70}: give LAT,LON in decimal degrees, like 52.52,13.405", field="near")
    if not all(_DEGREES.fullmatch(part) for part in parts):
        raise InvalidArgument(f"near {text!r:.70}: LAT and LON must be plain decimal numbers (digits 0-9, an "
                              "optional - and .), like 52.52,13.405", field="near")
    return point(float(parts[0]), float(parts[1]), "near")


def distance_km(a: Point, b: Point) -> float:
    """Great-circle distance between two points in kilometres (haversine)."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat, dlon = lat2 - lat1, math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
