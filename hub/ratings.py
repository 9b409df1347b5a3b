"""Ratings from every stakeholder and reputations a handful of votes cannot swing. Pure.

Who rates what after a job: the customer rates the object and the node; the
maker (the node's account) rates the design's printability and documentation;
the designer (a maintainer of the design) may rate the maker. One rating per
person per job per role; a second replaces the first (the store enforces it).

Reputation is a Bayesian average: the mean of the votes pulled towards a prior
mean by a prior weight of "virtual votes", so one 5-star vote on a new node
moves it from 3.0 to 3.33, not to 5.0. It is always shown with its count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub.errors import InvalidArgument

__all__ = [
    "CRITERIA",
    "MAX_COMMENT_CHARS",
    "PRIOR_MEAN",
    "PRIOR_WEIGHT",
    "ROLES",
    "Reputation",
    "Vote",
    "check_rating",
    "reputation",
    "reputation_of_totals",
]

CRITERIA = ("quality", "printability", "sustainability", "fairness")
ROLES = ("customer", "maker", "designer")
MAX_COMMENT_CHARS = 2000
PRIOR_MEAN = 3.0
PRIOR_WEIGHT = 5.0


@dataclass(frozen=True, slots=True)
class Vote:
    """One stored rating, as far as aggregation needs it."""

    stars: int
    criteria: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Reputation:
    """A Bayesian average with the plain mean and how many votes it rests on.

    Attributes:
        score: the Bayesian average (1..5), PRIOR_MEAN when nobody voted.
        mean: the plain mean of the stars (0.0 without votes).
        count: how many votes.
        criteria: criterion → (Bayesian average, count) over the votes that gave it.
    """

    score: float
    mean: float
    count: int
    criteria: Mapping[str, tuple[float, int]]

    def describe(self) -> str:
        """E.g. "4.2/5 from 37 ratings"."""
        if self.count == 0:
            return "no ratings yet"
        return f"{self.score:.1f}/5 from {self.count} rating{'s' if self.count != 1 else ''}"


def _bayes(total: float, count: int, prior_mean: float, prior_weight: float) -> float:
    return (prior_weight * prior_mean + total) / (prior_weight + count)


def reputation(votes: Iterable[Vote], prior_mean: float = PRIOR_MEAN, prior_weight: float = PRIOR_WEIGHT) -> Reputation:
    """Aggregate votes into a Reputation (stars and each criterion separately)."""
    stars: list[int] = []
    per: dict[str, list[int]] = {}
    for vote in votes:
        stars.append(vote.stars)
        for name, value in vote.criteria.items():
            per.setdefault(name, []).append(value)
    totals = [(name, sum(v), len(v)) for name, v in per.items()]
    return reputation_of_totals(len(stars), sum(stars), totals, prior_mean, prior_weight)


def reputation_of_totals(count: int, stars: int, criteria: Iterable[tuple[str, int, int]],
                         prior_mean: float = PRIOR_MEAN, prior_weight: float = PRIOR_WEIGHT) -> Reputation:
    """The Reputation of votes already summed (e.g. by the database): how many, their stars' sum, and
    (criterion, sum, count) per criterion."""
    per = {name: (round(_bayes(total, n, prior_mean, prior_weight), 3), n) for name, total, n in sorted(criteria)}
    mean = stars / count if count else 0.0
    return Reputation(round(_bayes(stars, count, prior_mean, prior_weight), 3), round(mean, 3), count, per)


def check_rating(stars: int, criteria: Mapping[str, int], comment: str) -> None:
    """Check one rating before it reaches the store.

    Raises:
        InvalidArgument: stars or a criterion outside 1..5, an unknown criterion, a comment too long
            or containing NUL.
    """
    if not 1 <= stars <= 5:
        raise InvalidArgument(f"stars must be 1 to 5, got {stars}")
    for name, value in criteria.items():
        if name not in CRITERIA:
            raise InvalidArgument(f"unknown rating criterion {name!r:.40}: use {', '.join(CRITERIA)}")
        if not 1 <= value <= 5:
            raise InvalidArgument(f"criterion {name} must be 1 to 5, got {value}")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidArgument(f"comment: at most {MAX_COMMENT_CHARS} characters")
    if "\x00" in comment:
        raise InvalidArgument("comment must not contain NUL characters")
