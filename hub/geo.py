"""Places on the globe: coordinate validation, "LAT,LON" parsing and great-circle distance. Pure.

Distances use the haversine formula on a sphere of the IUGG mean Earth radius
(6371.0088 km); the error against the WGS 84 ellipsoid stays under 0.5 %, far
below what "how far is the makerspace" needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hub.errors import InvalidArgument

__all__ = ["EARTH_RADIUS_KM", "MAX_NEAR_CHARS", "Point", "distance_km", "parse_near", "point"]

EARTH_RADIUS_KM = 6371.0088
MAX_NEAR_CHARS = 64


@dataclass(frozen=True, slots=True)
class Point:
    """A WGS 84 position in decimal degrees (latitude -90..90, longitude -180..180)."""

    latitude: float
    longitude: float


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
    """Parse "LAT,LON" in decimal degrees, e.g. "52.52,13.405".

    Raises:
        InvalidArgument: not two comma-separated numbers, or off the globe.
    """
    if len(text) > MAX_NEAR_CHARS:
        raise InvalidArgument(f"near: at most {MAX_NEAR_CHARS} characters, like 52.52,13.405")
    parts = text.split(",")
    if len(parts) != 2:
        raise InvalidArgument(f"near {text!r:.70}: give LAT,LON in decimal degrees, like 52.52,13.405")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError as exc:
        raise InvalidArgument(f"near {text!r:.70}: LAT and LON must be numbers, like 52.52,13.405") from exc
    return point(lat, lon, "near")


def distance_km(a: Point, b: Point) -> float:
    """Great-circle distance between two points in kilometres (haversine)."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat, dlon = lat2 - lat1, math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
