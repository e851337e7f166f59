"""Stop-and-go mixing for forwarded traffic (Loopix's Poisson mix, per node).

Whatever a node relays for others waits an exponential delay of mean ``1/μ``
before it enters the outgoing links. Exponential delays are memoryless: of
the items in the pool at any moment, each is equally likely to be the next
to leave, whenever it arrived, so an observer who sees items enter and leave
can match an outgoing item to an incoming one no better than by counting what
is in the pool (Loopix, Theorem 1). A node's own messages do not pass through
here; only the link schedule delays them.

Optionally, released items are held for timed batches: with
``batch_interval > 0``, items whose delay has ended leave together at the
next multiple of ``batch_interval`` (counted from the pool's creation), or
at once when ``batch_size`` of them are waiting, in a random order.

One timer for the whole pool; it is only armed while items wait.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._timer import EPSILON as _EPSILON
from ._timer import rearm

T = TypeVar("T")

@dataclass
class PoolStats:
    added: int = 0
    released: int = 0
    batches: int = 0
    delay_total: float = 0.0  # seconds, summed over released items


class MixPool(Generic[T]):
    """Hold each item for Exp(``rate``) seconds, then hand it to ``release``.

    ``rate`` is μ (items leave at rate μ each; mean delay ``1/μ``). ``rate=0``
    means no delay at all: items are released at once (the ``off`` profile).
    """

    def __init__(self, clock: IReactorTime, random: Random, rate: float,
                 release: Callable[[T], None], *, batch_size: int = 1,
                 batch_interval: float = 0.0) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate (μ) must be >= 0 per second, not {rate!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        if batch_interval < 0 or not math.isfinite(batch_interval):
            raise ValueError(f"batch_interval must be >= 0 seconds, not {batch_interval!r}")
        self._clock = clock
        self._random = random
        self.rate = float(rate)
        self._release = release
        self.batch_size = batch_size
        self.batch_interval = float(batch_interval)
        self._origin = clock.seconds()
        self._heap: list[tuple[float, int, float, T]] = []
        self._ready: list[tuple[float, T]] = []
        self._seq = itertools.count()
        self._call: IDelayedCall | None = None
        self._tick: float | None = None  # when the waiting batch leaves
        self.stats = PoolStats()

    def __len__(self) -> int:
        return len(self._heap) + len(self._ready)

    def add(self, item: T) -> float:
        """Take ``item`` into the pool; returns the time its delay ends."""
        now = self._clock.seconds()
        self.stats.added += 1
        if self.rate == 0:
            due = now
            if not self.batch_interval:
                self._out(item, now, now)
                return now
        else:
            due = now + self._random.expovariate(self.rate)
        heapq.heappush(self._heap, (due, next(self._seq), now, item))
        self._arm()
        return due

    def flush(self) -> None:
        """Release everything now, in a random order (shutdown; tests)."""
        now = self._clock.seconds()
        items = [(added, item) for _, _, added, item in self._heap] + self._ready
        self._heap.clear()
        self._ready = []
        self._tick = None
        self._random.shuffle(items)
        for added, item in items:
            self._out(item, added, now)
        self._arm()

    def stop(self) -> None:
        """Drop everything and cancel the timer."""
        self._heap.clear()
        self._ready = []
        self._tick = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    # -- internals --------------------------------------------------------
    def _out(self, item: T, added: float, now: float) -> None:
        self.stats.released += 1
        self.stats.delay_total += now - added
        self._release(item)

    def _next_tick(self, now: float) -> float:
        k = math.floor((now - self._origin) / self.batch_interval + _EPSILON) + 1
        return self._origin + k * self.batch_interval

    def _arm(self) -> None:
        when = self._heap[0][0] if self._heap else math.inf
        if self._tick is not None:
            when = min(when, self._tick)
        self._call = rearm(self._clock, self._call, when, self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        heap = self._heap
        if not self.batch_interval:
            while heap and heap[0][0] <= now + _EPSILON:
                _, _, added, item = heapq.heappop(heap)
                self._out(item, added, now)
        else:
            while heap and heap[0][0] <= now + _EPSILON:
                _, _, added, item = heapq.heappop(heap)
                self._ready.append((added, item))
            on_tick = self._tick is not None and now >= self._tick - _EPSILON
            if self._ready and (on_tick or len(self._ready) >= self.batch_size):
                batch, self._ready, self._tick = self._ready, [], None
                self._random.shuffle(batch)
                self.stats.batches += 1
                for added, item in batch:
                    self._out(item, added, now)
            if self._ready and self._tick is None:
                self._tick = self._next_tick(now)
        self._arm()
