"""The node-wide bandwidth cap (``aegis-hidden node throttle``): one token bucket
that every cell scheduler consults before a write.

The bucket fills at ``bytes_per_second`` up to ``capacity`` bytes (one second of
the cap, at least one slot's worth) and starts empty, so that over any interval
of T seconds the schedulers hand the links at most ``bytes_per_second * T +
capacity`` bytes, and from the moment the cap is set at most
``bytes_per_second * T``. A write is admitted only when the bucket holds the
bytes of the largest write the scheduler may make then, so it never goes into
debt.

What the cap costs in privacy: a :class:`~._scheduler.PoissonScheduler` slot
that finds the bucket short sends nothing at all, neither a real nor a cover
cell. While the cap binds, a link's writes are no longer its Exp(λ) schedule
but that schedule thinned by the budget, and the thinning follows the node's
total load: an observer of the link can see that the node is throttled and,
roughly, how busy its other links are. It is an emergency measure; docs/
operations.md says so.

Time comes from an injected ``IReactorTime``, which also carries the one timer (to wake writers that
found the bucket short, for the schedulers that write on demand).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Throttle", "check_bytes_per_second"]

#: The smallest cap accepted: below a cell per second nothing useful gets through.
MIN_BYTES_PER_SECOND = 1024
#: The largest (10 GB/s): a cap above any link's real capacity is no cap.
MAX_BYTES_PER_SECOND = 10_000_000_000


def check_bytes_per_second(value: object) -> int | None:
    """``value`` as a cap in bytes per second (None or 0: no cap); ValueError if it
    is not an integer from MIN_BYTES_PER_SECOND to MAX_BYTES_PER_SECOND."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"bytes_per_second must be an integer or null, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"bytes_per_second must be a whole number, not {value!r}")
        value = int(value)
    if value == 0:
        return None
    if not MIN_BYTES_PER_SECOND <= value <= MAX_BYTES_PER_SECOND:
        raise ValueError(f"bytes_per_second must be 0 (no cap) or from "
                         f"{MIN_BYTES_PER_SECOND} to {MAX_BYTES_PER_SECOND}, not {value}")
    return value


class Throttle:
    """A token bucket in bytes, shared by the node's schedulers (None rate: no cap)."""

    def __init__(self, clock: IReactorTime, cell_bytes: int) -> None:
        if cell_bytes < 1:
            raise ValueError(f"cell_bytes must be at least 1, not {cell_bytes!r}")
        self._clock = clock
        self.cell_bytes = cell_bytes
        self.rate: float | None = None
        self.capacity = 0.0
        self._tokens = 0.0
        self._at = 0.0
        #: Writes refused for want of budget, and bytes admitted, since the cap was set.
        self.refused = 0
        self.admitted_bytes = 0
        self._waiting: dict[int, tuple[Callable[[Any], None], Any]] = {}
        self._call: IDelayedCall | None = None

    @property
    def active(self) -> bool:
        return self.rate is not None

    def set_rate(self, bytes_per_second: int | None, largest_write: int = 1) -> None:
        """Set (or with None lift) the cap; the bucket starts empty.

        ``largest_write`` (cells): the most one scheduler write may carry, so the
        bucket can always hold one.
        """
        self.refused = 0
        self.admitted_bytes = 0
        self._tokens = 0.0
        self._at = self._clock.seconds()
        if bytes_per_second is None:
            self.rate = None
            self.capacity = 0.0
            self._wake_all()
            return
        self.rate = float(bytes_per_second)
        self.capacity = max(self.rate, float(largest_write * self.cell_bytes))

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def admit(self, cells: int) -> bool:
        """Whether a write of up to ``cells`` cells fits in the budget now (nothing is
        taken: call :meth:`spent` with what was written)."""
        if self.rate is None:
            return True
        self._refill(self._clock.seconds())
        if self._tokens >= cells * self.cell_bytes:
            return True
        self.refused += 1
        return False

    def grant(self, cells: int) -> int:
        """How many of ``cells`` cells fit in the budget now (0..cells), taken."""
        if self.rate is None:
            return cells
        self._refill(self._clock.seconds())
        n = min(cells, int(self._tokens // self.cell_bytes))
        if n <= 0:
            self.refused += 1
            return 0
        self.spent(n)
        return n

    def spent(self, cells: int) -> None:
        """``cells`` cells were written."""
        if self.rate is None or cells <= 0:
            return
        size = cells * self.cell_bytes
        self._tokens -= size
        self.admitted_bytes += size

    def wait(self, key: Any, wake: Callable[[Any], None]) -> None:
        """Call ``wake(key)`` once a cell's budget is back (one timer for all)."""
        if self.rate is None:
            wake(key)
            return
        self._waiting[id(key)] = (wake, key)
        if self._call is None or not self._call.active():
            missing = max(0.0, self.cell_bytes - self._tokens)
            self._call = self._clock.callLater(missing / self.rate, self._wake_all)

    def _wake_all(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        waiting, self._waiting = self._waiting, {}
        for wake, key in waiting.values():
            wake(key)

    def status(self) -> dict[str, Any]:
        return {"bytes_per_second": int(self.rate) if self.rate is not None else None,
                "refused_writes": self.refused, "admitted_bytes": self.admitted_bytes}

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._waiting.clear()
