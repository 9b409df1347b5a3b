"""Prices and time estimates of a quote, corrected by a node's measured history. Pure.

Price of one quote = material (grams × the node's per-gram rate) + machine time
(hours × its hourly rate) + fees: payment fees (a fixed part and a percentage)
and the value contribution (a percentage of material + machine time) that the
published value equation shares between maker, design lineage and commons fund
(hub/ledger.py: costs are reimbursed first, the contribution is the surplus).
Amounts are integer minor units; every product is computed in `Decimal` and
rounded half-up to the cent once per component.

The slicer's estimate is corrected by what the node actually measured on the
same printer model and material: the ratio of summed actual to summed estimated
time (and filament) over its successful prints. A ratio of sums weights long
prints more than a mean of ratios would, which is what a price should do. The
correction needs a few prints and is clamped, so one odd print cannot double a price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from hub.errors import InvalidArgument

__all__ = [
    "DEFAULT_FEES",
    "MAX_QUANTITY",
    "RANK_RULES",
    "Box",
    "Correction",
    "Estimate",
    "Fees",
    "HistoryPoint",
    "Price",
    "QuoteOption",
    "Rates",
    "bounding_box",
    "correction",
    "currencies",
    "part_weight",
    "per_copy",
    "price",
    "rank",
]

MAX_QUANTITY = 100
MIN_HISTORY = 3
FACTOR_RANGE = (0.5, 2.0)
RANK_RULES = ("cheapest", "fastest", "nearest")
KM_PER_DEGREE = 6371.0088 * math.pi / 180  # along a meridian, on the sphere hub.geo measures on
# The disc filter holds every point within the distance while the box spans at most this many degrees
# of longitude either side: haversine's hav(x) >= (x/2)^2 (1 - x^2/24)^2, at 30 degrees (0.52 rad)
# a factor 0.977 that DISC_MARGIN (1.05, squared 1.10) covers with room to spare.
DISC_MAX_DLON = 30.0
DISC_MARGIN = 1.05


@dataclass(frozen=True, slots=True)
class Box:
    """Latitude/longitude bounds that hold every point within some distance of a centre.

    Attributes:
        lat_min, lat_max: degrees.
        lons: longitude ranges (lo, hi) in degrees, two when the box crosses the antimeridian;
            empty = every longitude (the box reaches a pole).
        disc: (centre latitude, centre longitude, longitude scale, squared radius), or None: every
            point within the distance has (lat - c_lat)² + ((lon - c_lon) · scale)² <= radius², so the
            database also drops the box's corners (about a fifth of it); None when the box is wide
            (over DISC_MAX_DLON degrees of longitude) or crosses the antimeridian.
    """

    lat_min: float
    lat_max: float
    lons: tuple[tuple[float, float], ...]
    disc: tuple[float, float, float, float] | None = None


def bounding_box(latitude: float, longitude: float, km: float) -> Box:
    """A box around (latitude, longitude) holding every point within ``km`` (haversine), with a
    small margin: the database filters by it, the exact distance is checked on what it returns."""
    dlat = km / KM_PER_DEGREE * 1.01 + 1e-6
    lat_min, lat_max = latitude - dlat, latitude + dlat
    if lat_min <= -90.0 or lat_max >= 90.0:
        return Box(max(lat_min, -90.0), min(lat_max, 90.0), ())
    widest = max(abs(lat_min), abs(lat_max))
    dlon = dlat / math.cos(math.radians(widest))
    if dlon >= 180.0:
        return Box(lat_min, lat_max, ())
    lo, hi = longitude - dlon, longitude + dlon
    disc = None
    if dlon <= DISC_MAX_DLON:
        # the cosine of the widest latitude is the box's smallest: scaled by it, a longitude difference
        # counts for less than on the sphere anywhere in the box, so the disc holds the whole circle
        disc = (latitude, longitude, math.cos(math.radians(widest)), (km / KM_PER_DEGREE * DISC_MARGIN) ** 2)
    if lo < -180.0:
        return Box(lat_min, lat_max, ((lo + 360.0, 180.0), (-180.0, hi)))
    if hi > 180.0:
        return Box(lat_min, lat_max, ((lo, 180.0), (-180.0, hi - 360.0)))
    return Box(lat_min, lat_max, ((lo, hi),), disc)


@dataclass(frozen=True, slots=True)
class Rates:
    """A printer's published rates in minor units of one currency."""

    currency: str
    per_hour_minor: int
    per_gram_minor: int


@dataclass(frozen=True, slots=True)
class Fees:
    """Added to material + machine time: payment fees (fixed + percent) and the value contribution (percent)."""

    fixed_minor: int = 0
    percent: Decimal = Decimal(3)
    contribution_percent: Decimal = Decimal(30)


DEFAULT_FEES = Fees()


@dataclass(frozen=True, slots=True)
class Estimate:
    """Time and filament of one object, from a real slice."""

    seconds: float
    filament_g: float


def per_copy(objects: Sequence[tuple[Estimate, int]]) -> Estimate:
    """The estimate of one copy of a design from each distinct object's estimate and how many of it a
    copy makes (a kit of a body and two lids: the body's estimate plus twice the lid's)."""
    return Estimate(sum(e.seconds * n for e, n in objects), sum(e.filament_g * n for e, n in objects))


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One finished print of the node on the same printer model and material."""

    estimated_seconds: float
    actual_seconds: float
    estimated_filament_g: float
    actual_filament_g: float


@dataclass(frozen=True, slots=True)
class Correction:
    """How the node's history corrects the slicer's estimate.

    Attributes:
        time_factor, filament_factor: multiply the estimate by these (1.0 = no correction).
        prints: how many prints the factors rest on.
        note: for a person, e.g. "time +8 %, filament -3 % from 12 prints of this node".
    """

    time_factor: float
    filament_factor: float
    prints: int
    note: str


def _ratio(actual: float, estimated: float) -> float:
    if estimated <= 0 or actual <= 0:
        return 1.0
    return min(max(actual / estimated, FACTOR_RANGE[0]), FACTOR_RANGE[1])


def _pct(factor: float) -> str:
    return f"{(factor - 1) * 100:+.0f} %"


def correction(history: Sequence[HistoryPoint], min_prints: int = MIN_HISTORY) -> Correction:
    """The correction of a node's estimates from its history (successful prints only).

    Fewer than ``min_prints`` usable prints leave the estimate as it is and say so.
    """
    usable = [h for h in history if h.estimated_seconds > 0 and h.actual_seconds > 0]
    if len(usable) < min_prints:
        return Correction(1.0, 1.0, len(usable),
                          f"slicer estimate as is: {len(usable)} measured print(s), {min_prints} needed to correct")
    time = _ratio(sum(h.actual_seconds for h in usable), sum(h.estimated_seconds for h in usable))
    grams = [h for h in usable if h.estimated_filament_g > 0 and h.actual_filament_g > 0]
    filament = _ratio(sum(h.actual_filament_g for h in grams), sum(h.estimated_filament_g for h in grams)) \
        if len(grams) >= min_prints else 1.0
    return Correction(time, filament, len(usable),
                      f"time {_pct(time)}, filament {_pct(filament)} from {len(usable)} measured prints")


@dataclass(frozen=True, slots=True)
class Price:
    """A price and its parts, in minor units of `currency`."""

    currency: str
    material_minor: int
    machine_minor: int
    fees_minor: int  # payment fees
    contribution_minor: int = 0  # shared by the value equation

    @property
    def total_minor(self) -> int:
        return self.material_minor + self.machine_minor + self.fees_minor + self.contribution_minor


def _cents(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price(estimate: Estimate, quantity: int, rates: Rates, fees: Fees = DEFAULT_FEES) -> Price:
    """The price of ``quantity`` copies of one estimate (a copy's: see per_copy) at a node's rates.

    Raises:
        InvalidArgument: quantity outside 1..MAX_QUANTITY, or a negative or non-finite estimate or rate.
    """
    if not 1 <= quantity <= MAX_QUANTITY:
        raise InvalidArgument(f"quantity must be 1 to {MAX_QUANTITY}, got {quantity}")
    if not all(math.isfinite(v) and v >= 0 for v in (estimate.seconds, estimate.filament_g)):
        raise InvalidArgument("estimate must be finite and not negative")
    if rates.per_hour_minor < 0 or rates.per_gram_minor < 0:
        raise InvalidArgument("rates must not be negative")
    grams = Decimal(repr(estimate.filament_g)) * quantity
    hours = Decimal(repr(estimate.seconds)) * quantity / 3600
    material = _cents(grams * rates.per_gram_minor)
    machine = _cents(hours * rates.per_hour_minor)
    charged = _cents(Decimal(material + machine) * fees.percent / 100) + fees.fixed_minor
    contribution = _cents(Decimal(material + machine) * fees.contribution_percent / 100)
    return Price(rates.currency, material, machine, charged, contribution)


def part_weight(estimate: Estimate, rates: Rates) -> int:
    """The weight of one object in its order's payouts: its material and machine time at the printer's
    rates (the costs a maker bears for it), in thousandths of a minor unit so that small parts keep
    their weight.

    Every other part of a price (payment fees, the value contribution) is a percentage of material +
    machine time, so weighting by these costs shares the whole price as it was made up: the node that
    prints a 3-hour body gets the body's share, not a lid's. Estimated print time alone would pay
    nothing for filament and misjudge a big sparse part against a small dense one.
    """
    grams = Decimal(repr(estimate.filament_g))
    hours = Decimal(repr(estimate.seconds)) / 3600
    return _cents((grams * rates.per_gram_minor + hours * rates.per_hour_minor) * 1000)


@dataclass(frozen=True, slots=True)
class QuoteOption:
    """One node's offer for an order.

    Attributes:
        node, printer, printer_model: where it would be made.
        price: the total for the whole quantity.
        estimated_seconds, filament_g: corrected, for the whole quantity.
        distance_km: from the customer's location (None when either side has none).
        reputation, ratings: the node's Bayesian reputation and how many ratings it rests on.
        earliest_start: RFC 3339 UTC.
        correction: how history changed the slicer's estimate.
        part_weights: (manifest part, weight of one object of it: see part_weight) for each part, which
            the objects' payouts are shared out by; empty (a quote stored before the weights were kept):
            every object weighs the same.
    """

    node: str
    printer: str
    printer_model: str
    price: Price
    estimated_seconds: int
    filament_g: float
    distance_km: float | None
    reputation: float
    ratings: int
    earliest_start: str
    correction: Correction
    part_weights: tuple[tuple[str, int], ...] = ()


def _key(rule: str) -> Callable[[QuoteOption], tuple[object, ...]]:
    far = math.inf

    def cost(q: QuoteOption) -> tuple[str, int]:  # amounts compare only within their currency
        return q.price.currency, q.price.total_minor

    if rule == "cheapest":
        return lambda q: (*cost(q), q.estimated_seconds, q.distance_km if q.distance_km is not None else far)
    if rule == "fastest":
        return lambda q: (q.estimated_seconds, *cost(q), q.distance_km if q.distance_km is not None else far)
    if rule == "nearest":
        return lambda q: (q.distance_km if q.distance_km is not None else far, *cost(q), q.estimated_seconds)
    raise InvalidArgument(f"unknown rule {rule!r:.40}: use {', '.join(RANK_RULES)}")


def currencies(options: Sequence[QuoteOption]) -> list[str]:
    """The currencies of the options' prices, sorted."""
    return sorted({q.price.currency for q in options})


def rank(options: Sequence[QuoteOption], rule: str) -> list[QuoteOption]:
    """Options best first by a stated rule (cheapest, fastest or nearest; ties by the others, then name).

    Amounts in different currencies are never compared (the hub knows no exchange rate, and minor
    units differ in worth: a yen, JPY's minor unit, is about 0.6 euro cents): "cheapest" ranks each currency's options by
    price, the currencies one after the other by ISO code; where a tie falls to the price, options in
    different currencies go by ISO code too.

    Raises:
        InvalidArgument: an unknown rule.
    """
    key = _key(rule)
    return sorted(options, key=lambda q: (*key(q), -q.reputation, q.node, q.printer))
