"""A token bucket on an injected clock, for the responder's handshake rate limit.

One ClientHello costs its sender nothing and the responder a signature (several
milliseconds of CPU with ML-DSA-65). Tor delivers every peer from the same
loopback address, so the node cannot tell attackers apart: the limit is global,
applied when a stream arrives, before any session object exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full.

    :meth:`take` spends one token if there is one. The clock is a callable
    returning seconds (``reactor.seconds`` / ``task.Clock().seconds``); a clock
    that goes backwards refills nothing until it is past the last reading again.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) \
                or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"handshake rate must be a positive number per second, not {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"handshake burst must be an integer of at least 1, not {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
            self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional while refilling)."""
        self._refill()
        return self._tokens

    def take(self) -> bool:
        """Spend one token: True if there was one, False if the caller must refuse."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
