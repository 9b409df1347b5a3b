"""The value ledger: a published, versioned value equation and the split of one paid order. Pure.

The equation follows the open value accounting note (Sensorica/NRP "straight"
percentages): costs are reimbursed first (debt-like), then the surplus is shared
between the maker, the design lineage and the commons fund. Inside the design
share, a part goes to the fabricated revision's contributors weighted by their
accepted contributions and the rest is passed upstream to the parent designs.

Money is exact: amounts are integer minor units (cents), shares are computed as
`Decimal` and rounded with the largest-remainder method, so the entries of an
order always add up to its price to the cent. Every entry snapshots the equation
version and explains itself. This is the platform's voluntary policy, never a
licence fee (CC BY 4.0 §2(b)(3), OSHW definition §5).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Context, Decimal, Inexact
from typing import TypeVar

from hub.errors import InvalidArgument

__all__ = [
    "COMMONS_FUND",
    "DEFAULT_EQUATION",
    "RESERVED_RECIPIENTS",
    "Beneficiaries",
    "Costs",
    "Share",
    "ValueEquation",
    "distribute",
    "format_money",
    "parse_equation",
    "payouts",
    "portions",
]

COMMONS_FUND = "commons-fund"
PAYMENT_FEES = "payment-fees"
# Recipients of ledger entries that are no account: an account of such a name would have its credits
# merged with theirs (balances and GetLedger are by recipient), so no account may be made with one.
RESERVED_RECIPIENTS = frozenset({COMMONS_FUND, PAYMENT_FEES})
_HUNDRED = Decimal(100)
_SUM_DIGITS = 64
_ZERO_DIGIT_CURRENCIES = frozenset({"JPY", "KRW", "ISK", "CLP", "VND", "XOF", "XAF"})
_K = TypeVar("_K", str, int)
MAX_MINOR = 10**12  # a trillion cents: beyond any print order, and exact in float and JSON


@dataclass(frozen=True, slots=True)
class ValueEquation:
    """How the surplus of a paid order is shared; percentages are of the surplus and of the design share.

    Attributes:
        version: the published version this entry was computed with, e.g. "1".
        maker_percent, design_percent, commons_percent: shares of the surplus (sum 100).
        own_revision_percent, upstream_percent: shares of the design share (sum 100).
    """

    version: str = "1"
    maker_percent: Decimal = Decimal(60)
    design_percent: Decimal = Decimal(25)
    commons_percent: Decimal = Decimal(15)
    own_revision_percent: Decimal = Decimal(70)
    upstream_percent: Decimal = Decimal(30)

    def __post_init__(self) -> None:
        parts = (self.maker_percent, self.design_percent, self.commons_percent,
                 self.own_revision_percent, self.upstream_percent)
        if any(not isinstance(p, Decimal) or not p.is_finite() or p < 0 or p > _HUNDRED for p in parts):
            raise InvalidArgument("value equation: every percentage must be a number from 0 to 100")
        if not _adds_up(self.maker_percent, self.design_percent, self.commons_percent):
            raise InvalidArgument("value equation: maker + design + commons must add up to 100 %")
        if not _adds_up(self.own_revision_percent, self.upstream_percent):
            raise InvalidArgument("value equation: own revision + upstream must add up to 100 % of the design share")
        if not self.version or len(self.version) > 16:
            raise InvalidArgument("value equation: version must be 1 to 16 characters")

    def to_json(self) -> str:
        """The snapshot stored with every ledger entry (sorted keys, percentages as strings)."""
        return json.dumps({
            "version": self.version, "maker": str(self.maker_percent), "design": str(self.design_percent),
            "commons": str(self.commons_percent), "own_revision": str(self.own_revision_percent),
            "upstream": str(self.upstream_percent),
        }, sort_keys=True)


def _adds_up(*parts: Decimal) -> bool:
    """Whether the parts add up to exactly 100. The default context rounds to 28 digits, so
    50.00000000000000000000000000001 + 30 + 20 would come out as 100; a sum that needs more
    than _SUM_DIGITS digits is no exact 100 either."""
    exact = Context(prec=_SUM_DIGITS, traps=[Inexact])
    try:
        return functools.reduce(exact.add, parts, Decimal(0)) == _HUNDRED
    except Inexact:
        return False


DEFAULT_EQUATION = ValueEquation()


def parse_equation(text: str) -> ValueEquation:
    """A ValueEquation from its JSON snapshot.

    Raises:
        InvalidArgument: not a snapshot, or the percentages do not add up.
    """
    try:
        doc = json.loads(text)
        return ValueEquation(
            version=str(doc["version"]), maker_percent=Decimal(doc["maker"]), design_percent=Decimal(doc["design"]),
            commons_percent=Decimal(doc["commons"]), own_revision_percent=Decimal(doc["own_revision"]),
            upstream_percent=Decimal(doc["upstream"]),
        )
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise InvalidArgument(f"value equation is not a valid snapshot: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Costs:
    """Reimbursements paid before any share, in minor units of the order's currency."""

    material_minor: int = 0
    machine_minor: int = 0
    fees_minor: int = 0
    shipping_minor: int = 0

    @property
    def total(self) -> int:
        return self.material_minor + self.machine_minor + self.fees_minor + self.shipping_minor


@dataclass(frozen=True, slots=True)
class Beneficiaries:
    """Who may receive a share of one order.

    Attributes:
        maker: the fabricating node's account.
        contributors: the fabricated revision's contributors → accepted contributions (weights > 0).
        upstream: each parent design → its contributors' weights (the share passed upstream).
    """

    maker: str
    contributors: Mapping[str, int] = field(default_factory=dict)
    upstream: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Share:
    """One ledger entry of an order: who, which share, how much, and why."""

    recipient: str
    share: str  # reimbursement, fees, maker, design, upstream, commons
    minor_units: int
    explanation: str


@dataclass(frozen=True, slots=True)
class _Line:
    recipient: str
    share: str
    exact: Decimal
    explanation: str


def format_money(minor: int | Decimal, currency: str) -> str:
    """"12.34 EUR" (two decimals except for zero-decimal currencies such as JPY)."""
    digits = 0 if currency in _ZERO_DIGIT_CURRENCIES else 2
    value = Decimal(minor).scaleb(-digits)
    return f"{value:.{digits}f} {currency}"


def distribute(price_minor: int, currency: str, costs: Costs, who: Beneficiaries,
               equation: ValueEquation = DEFAULT_EQUATION) -> tuple[Share, ...]:
    """Split a paid order's price into ledger entries that add up to the price exactly.

    Args:
        price_minor: the price the customer paid, in minor units (>= 0).
        currency: ISO 4217 code of the price and the costs.
        costs: reimbursed first, in this order: material, machine time, fees, shipping;
            when the price does not cover them, they are paid in that order as far as it goes.
        who: the maker, the revision's contributors and the parent designs' contributors.
        equation: the value equation in force (snapshotted by the caller with `to_json`).

    Returns:
        Entries with a positive amount, costs first; sum(minor_units) == price_minor.

    Raises:
        InvalidArgument: a negative or absurd price or cost, or a weight that is not positive.
    """
    _check_amounts(price_minor, costs)
    _check_weights(who)
    paid, remaining = _reimburse(price_minor, currency, costs, who.maker)
    surplus = Decimal(remaining)
    why = f"of the surplus {format_money(remaining, currency)} (price {format_money(price_minor, currency)} " \
          f"minus costs {format_money(price_minor - remaining, currency)}), value equation v{equation.version}"
    lines = [
        _Line(who.maker, "maker", surplus * equation.maker_percent / _HUNDRED,
              f"maker {equation.maker_percent} % {why}"),
        _Line(COMMONS_FUND, "commons", surplus * equation.commons_percent / _HUNDRED,
              f"commons fund {equation.commons_percent} % {why}"),
    ]
    design = surplus * equation.design_percent / _HUNDRED
    lines += _design_lines(design, who, equation, why)
    return tuple(paid) + _round(lines, remaining)


def portions(amount: int, counts: Mapping[_K, int], of: int) -> dict[_K, int]:
    """Each key's share of ``amount`` for its ``counts`` out of ``of`` (whole minor units, by largest
    remainder): together ``amount * sum(counts) // of``, so all of ``amount`` when the counts make ``of``."""
    of = max(of, sum(counts.values()), 1)
    total = amount * sum(counts.values()) // of
    exact = {key: Decimal(amount) * n / of for key, n in counts.items()}
    out = {key: int(x.to_integral_value(rounding=ROUND_FLOOR)) for key, x in exact.items()}
    for key in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:total - sum(out.values())]:
        out[key] += 1
    return out


def payouts(amount: int, parts: Sequence[str], weights: Mapping[str, int]) -> list[int]:
    """The payout of each object of an order, the object of ``parts[i]`` being made of that manifest part:
    ``amount`` shared by the parts' ``weights`` (of one object each) with the largest remainder, so the
    payouts add up to ``amount`` exactly; ties in the remainder go to the earlier objects.

    Objects weigh the same when a part has no weight or none weighs anything (a quote stored before the
    weights were kept, a printer with no rates).
    """
    if not parts:
        return []
    weighed = [weights.get(part, 0) for part in parts]
    if not all(part in weights for part in parts) or sum(weighed) <= 0:
        weighed = [1] * len(parts)
    shares = portions(amount, dict(enumerate(weighed)), sum(weighed))
    return [shares[i] for i in range(len(parts))]


def _check_amounts(price_minor: int, costs: Costs) -> None:
    for name, value in (("price", price_minor), ("material cost", costs.material_minor),
                        ("machine cost", costs.machine_minor), ("fees", costs.fees_minor),
                        ("shipping", costs.shipping_minor)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINOR:
            raise InvalidArgument(f"ledger: {name} must be a whole number of minor units from 0 to {MAX_MINOR}")


def _check_weights(who: Beneficiaries) -> None:
    weights = [*who.contributors.values(), *(w for c in who.upstream.values() for w in c.values())]
    if any(isinstance(w, bool) or not isinstance(w, int) or w <= 0 for w in weights):
        raise InvalidArgument("ledger: contribution weights must be positive whole numbers")


def _reimburse(price: int, currency: str, costs: Costs, maker: str) -> tuple[list[Share], int]:
    left, out = price, []
    for recipient, share, amount, what in (
        (maker, "reimbursement", costs.material_minor, "material"),
        (maker, "reimbursement", costs.machine_minor, "machine time"),
        (PAYMENT_FEES, "fees", costs.fees_minor, "payment fees"),
        (maker, "reimbursement", costs.shipping_minor, "shipping"),
    ):
        paid = min(amount, left)
        left -= paid
        if paid:
            short = "" if paid == amount else f" (price covers only {format_money(paid, currency)} of it)"
            out.append(Share(recipient, share, paid, f"{what} cost {format_money(amount, currency)} "
                                                     f"reimbursed first{short}"))
    return out, left


def _design_lines(design: Decimal, who: Beneficiaries, eq: ValueEquation, why: str) -> list[_Line]:
    own = design * eq.own_revision_percent / _HUNDRED
    upstream = design - own
    head = f"design lineage {eq.design_percent} % {why}"
    if not who.upstream:
        own, upstream = design, Decimal(0)
        head += "; no parent design, so the upstream part stays with this revision"
    lines = _weighted(own, who.contributors, "design",
                      f"{head}: {eq.own_revision_percent} % to this revision's contributors by accepted contributions")
    parents = sorted(who.upstream)
    for parent in parents:
        part = upstream / len(parents)
        lines += _weighted(part, who.upstream[parent], "upstream",
                           f"{head}: {eq.upstream_percent} % passed upstream, 1/{len(parents)} to parent {parent}")
    return lines


def _weighted(amount: Decimal, weights: Mapping[str, int], share: str, why: str) -> list[_Line]:
    if amount == 0:
        return []
    total = sum(weights.values())
    if total == 0:
        return [_Line(COMMONS_FUND, "commons", amount, f"{why}; nobody to credit, so it goes to the commons fund")]
    return [
        _Line(name, share, amount * weight / total, f"{why} ({weight} of {total})")
        for name, weight in sorted(weights.items())
    ]


def _round(lines: Sequence[_Line], total: int) -> tuple[Share, ...]:
    """Largest remainder: floor every share, then give the leftover cents to the largest fractions."""
    merged: dict[tuple[str, str], _Line] = {}
    for line in lines:
        key = (line.recipient, line.share)
        old = merged.get(key)
        merged[key] = line if old is None else _Line(line.recipient, line.share, old.exact + line.exact,
                                                     f"{old.explanation}; {line.explanation}")
    items = list(merged.values())
    floors = [int(x.exact.to_integral_value(rounding=ROUND_FLOOR)) for x in items]
    leftover = total - sum(floors)
    order = sorted(range(len(items)), key=lambda i: (-(items[i].exact - floors[i]), i))
    for i in order[:leftover]:
        floors[i] += 1
    return tuple(Share(x.recipient, x.share, amount, x.explanation) for x, amount in zip(items, floors, strict=True)
                 if amount > 0)
