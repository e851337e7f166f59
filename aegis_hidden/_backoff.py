"""One retry policy: exponential backoff with jitter, the random source injected.

Every retry loop of the node (tor restarts and dials, the I2P provider's SAM
sessions, bootstrap peering, the messaging outbox) takes a :class:`Backoff`, so
no two of them compute delays by hand and none retries on a predictable
schedule: fixed retry gaps are a fingerprint an observer of the transport can
match across restarts and addresses.

A leaf module: it imports nothing of the package and no reactor.

Three jitter modes, after "Exponential Backoff And Jitter" (AWS architecture
blog, 2015):

``proportional``
    ``nominal * (1 + jitter * (2u - 1))``: the nominal delay spread by
    +/- ``jitter`` (a fraction). With ``jitter=0`` the schedule is exact (tests).
``full``
    uniform in ``[min(floor, nominal), nominal]``.
``decorrelated``
    uniform in ``[base, min(cap, previous * factor)]``, where ``previous`` is the
    delay drawn before (``base`` for the first): depends on the last delay, not
    on the attempt number, so use it through :meth:`Backoff.retrier`.

``nominal(attempt) = min(cap, base * factor**attempt)`` (attempt 0-based).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["JITTER_MODES", "Backoff", "JitterMode", "Retrier"]

JitterMode = Literal["proportional", "full", "decorrelated"]
JITTER_MODES: tuple[JitterMode, ...] = ("proportional", "full", "decorrelated")


def _system_random() -> Callable[[], float]:
    return secrets.SystemRandom().random


@dataclass
class Backoff:
    """Delay before retry number ``attempt``; ``random`` returns floats in [0, 1)."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.25
    random: Callable[[], float] = field(default_factory=_system_random)
    mode: JitterMode = "proportional"
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs base > 0, factor >= 1, cap >= base, 0 <= jitter < 1")
        if self.mode not in JITTER_MODES:
            raise ValueError(f"backoff jitter mode must be one of {', '.join(JITTER_MODES)}")
        if self.floor < 0:
            raise ValueError("backoff floor must be >= 0")

    def nominal(self, attempt: int) -> float:
        if attempt < 0:
            raise ValueError("attempt numbers start at 0")
        exp = min(attempt, 64)  # keeps factor**attempt finite
        return float(min(self.cap, self.base * self.factor ** exp))

    def bounds(self, attempt: int, previous: float | None = None) -> tuple[float, float]:
        """The closed interval every :meth:`delay` of these arguments falls in."""
        if self.mode == "decorrelated":
            prev = self.base if previous is None else previous
            return self.base, max(self.base, min(self.cap, prev * self.factor))
        nominal = self.nominal(attempt)
        if self.mode == "full":
            return min(self.floor, nominal), nominal
        return nominal * (1.0 - self.jitter), nominal * (1.0 + self.jitter)

    def delay(self, attempt: int, previous: float | None = None) -> float:
        u = self.random()
        if self.mode == "proportional":
            return self.nominal(attempt) * (1.0 + self.jitter * (2.0 * u - 1.0))
        low, high = self.bounds(attempt, previous)
        return low + u * (high - low)

    def schedule(self, attempts: int) -> list[float]:
        retrier = self.retrier()
        return [retrier.next() for _ in range(attempts)]

    def retrier(self) -> Retrier:
        return Retrier(self)


class Retrier:
    """The state of one retry loop: counts attempts, remembers the last delay."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.attempt = 0
        self.previous: float | None = None

    def next(self) -> float:
        delay = self.backoff.delay(self.attempt, self.previous)
        self.attempt += 1
        self.previous = delay
        return delay

    def reset(self) -> None:
        self.attempt = 0
        self.previous = None
