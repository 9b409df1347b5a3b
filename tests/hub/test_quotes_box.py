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


def _in_disc(box: Box, lat: float, lon: float) -> bool:
    assert box.disc is not None
    c_lat, c_lon, scale, r2 = box.disc
    return (lat - c_lat) ** 2 + ((lon - c_lon) * scale) ** 2 <= r2


@pytest.mark.parametrize(("lat", "lon", "km"), [
    (52.52, 13.40, 50.0), (49.0, 9.0, 600.0), (0.0, 0.0, 2900.0), (-45.0, 120.0, 900.0), (60.0, -20.0, 800.0),
    (30.0, 100.0, 1500.0),  # 2,900 km at the equator: 29.4 degrees of longitude either side, near the limit
])
def test_every_point_within_the_distance_is_inside_the_disc(lat: float, lon: float, km: float) -> None:
    box = bounding_box(lat, lon, km)
    assert box.disc is not None
    centre = geo.Point(lat, lon)
    for bearing in range(0, 360, 3):
        for fraction in (0.3, 0.9, 0.999):
            d = fraction * km / geo.EARTH_RADIUS_KM
            b, p1, l1 = math.radians(bearing), math.radians(lat), math.radians(lon)
            p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
            l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
            point = geo.Point(math.degrees(p2), math.degrees(l2))
            assert geo.distance_km(centre, point) <= km
            assert _in_disc(box, point.latitude, point.longitude), (bearing, fraction, point)


def test_the_disc_drops_the_corners_of_the_box_and_is_left_out_where_it_would_not_hold() -> None:
    box = bounding_box(49.0, 9.0, 600.0)
    (lo, hi), = box.lons
    assert not _in_disc(box, box.lat_max, hi) and not _in_disc(box, box.lat_min, lo)
    assert bounding_box(0.0, 179.9, 300.0).disc is None  # split at the antimeridian
    assert bounding_box(75.0, 0.0, 1500.0).disc is None  # over 30 degrees of longitude either side
    assert bounding_box(89.5, 0.0, 200.0).disc is None  # reaches a pole
