"""Exponential backoff with jitter (the random source is injected for tests)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delay before retry number ``attempt`` (0-based): ``base * factor**attempt``.

    Capped at ``cap``, then spread by +/- ``jitter`` (a fraction) so that many
    dialers do not retry in lock-step: delay * (1 + jitter * (2u - 1)), u in [0, 1).
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.25
    random: Callable[[], float] = field(default=random.random)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs base > 0, factor >= 1, cap >= base, 0 <= jitter < 1")

    def nominal(self, attempt: int) -> float:
        if attempt < 0:
            raise ValueError("attempt numbers start at 0")
        exp = min(attempt, 64)  # keeps factor**attempt finite
        return float(min(self.cap, self.base * self.factor ** exp))

    def delay(self, attempt: int) -> float:
        return self.nominal(attempt) * (1.0 + self.jitter * (2.0 * self.random() - 1.0))

    def schedule(self, attempts: int) -> list[float]:
        return [self.delay(i) for i in range(attempts)]
