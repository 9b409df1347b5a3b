"""Full-jitter exponential backoff: the delays, and the retry state of one thing tried again and again.

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the n-th wait is
uniform(0, min(cap, base * 2**n)), so many agents (or printers) that failed together do not come
back together. Pure: the caller passes its clock's ``now`` and its random generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Retry", "RetryPolicy", "backoff_delay"]


def backoff_delay(attempt: int, rng: random.Random, base_s: float = 1.0, cap_s: float = 60.0
                  ) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt)) seconds."""
    return rng.uniform(0.0, min(cap_s, base_s * 2 ** min(attempt, 32)))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The base and the cap of the waits, in seconds."""

    base_s: float = 10.0
    cap_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"a retry policy needs 0 < base_s <= cap_s, got {self.base_s} and {self.cap_s}")


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempts since the last success: how many failed, when the next one is due (on the caller's
    clock, seconds; 0 = at once) and the last one's error. A success starts afresh: ``Retry()``."""

    failures: int = 0
    next_at: float = 0.0
    last_error: str = ""

    def due(self, now: float) -> bool:
        """Whether the next attempt may be made at ``now``."""
        return now >= self.next_at

    def failed(self, now: float, error: str, policy: RetryPolicy, rng: random.Random) -> Retry:
        """The state after an attempt that failed at ``now`` with ``error``."""
        wait = backoff_delay(self.failures, rng, policy.base_s, policy.cap_s)
        return Retry(self.failures + 1, now + wait, error)
