"""The bounding box that lets the database pre-filter nodes within --max-km. Pure."""

from __future__ import annotations

import math

import pytest

from hub import geo
from hub.quotes import Box, bounding_box


def _inside(box: Box, lat: float, lon: float) -> bool:
    return box.lat_min <= lat <= box.lat_max and (not box.lons or any(lo <= lon <= hi for lo, hi in box.lons))


@pytest.mark.parametrize(("lat", "lon", "km"), [
    (52.52, 13.40, 50.0), (0.0, 179.9, 300.0), (-33.9, -179.5, 1000.0), (89.5, 0.0, 200.0), (-60.0, 20.0, 2000.0),
    (10.0, 10.0, 20_000.0),
])
def test_every_point_within_the_distance_is_inside_the_box(lat: float, lon: float, km: float) -> None:
    box = bounding_box(lat, lon, km)
    centre = geo.Point(lat, lon)
    for bearing in range(0, 360, 5):
        for fraction in (0.5, 0.99):
            # a point at fraction*km along the bearing (spherical destination formula)
            d = fraction * km / geo.EARTH_RADIUS_KM
            b, p1, l1 = math.radians(bearing), math.radians(lat), math.radians(lon)
            p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
            l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
            point = geo.Point(math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0)
            assert geo.distance_km(centre, point) <= km
            assert _inside(box, point.latitude, point.longitude), (bearing, fraction, point)


def test_a_small_box_stays_small() -> None:
    box = bounding_box(52.52, 13.40, 50.0)
    assert box.lat_max - box.lat_min < 1.0 and len(box.lons) == 1 and box.lons[0][1] - box.lons[0][0] < 1.6
    assert bounding_box(0.0, 179.9, 300.0).lons[0][1] == 180.0  # split at the antimeridian
