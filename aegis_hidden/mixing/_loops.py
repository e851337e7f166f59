"""Loop cover: messages a node sends itself through a peer, to catch silent drops.

At rate λ_L (node-wide) the node sends a loop message along a path (through a
peer that returns it). A loop that is not back within ``timeout`` counts
against its path: the blocking and (n-1) attacks Loopix's loops expose (a peer
or path that drops traffic while staying connected) show up as lost loops,
and the round trips of the loops that do come back measure the path.

:class:`LoopMonitor` is the sans-I/O core: it makes loop ids, is told when a
loop comes back, and reports the loops whose deadline passed (to listeners
for reputation, metrics and events). :class:`LoopCover` drives it on an
injected clock with one timer: it picks a path, hands the id to ``send``,
and expires overdue loops. The loop message itself travels on a channel of
the node core; neither class knows its format.

A path is an opaque string chosen by the caller (a per-run link id, never a
peer name in anything recorded).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from twisted.internet.interfaces import IDelayedCall, IReactorTime

LOOP_ID_BYTES = 16

#: Upper bounds (seconds) of the loop round-trip histogram buckets; the last bucket is +Inf.
LOOP_RTT_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class LostLoop:
    loop_id: bytes
    path: str
    sent_at: float


@dataclass
class PathStats:
    sent: int = 0
    returned: int = 0
    lost: int = 0
    late: int = 0  # came back after being counted lost
    rtts: list[float] | None = None

    def quantile(self, q: float) -> float | None:
        if not self.rtts:
            return None
        ordered = sorted(self.rtts)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rtt_mean(self) -> float | None:
        return sum(self.rtts) / len(self.rtts) if self.rtts else None


@dataclass
class _Pending:
    path: str
    sent_at: float
    deadline: float


class LoopMonitor:
    """Loop ids out, returns in, lost loops reported per path."""

    #: round trips kept per path for the quantiles (oldest dropped first)
    RTT_WINDOW = 1000

    def __init__(self, clock: IReactorTime, random: Random, *, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self._clock = clock
        self._random = random
        self.timeout = float(timeout)
        self._pending: dict[bytes, _Pending] = {}
        self._deadlines: list[tuple[float, bytes]] = []
        self._lost_ids: dict[bytes, str] = {}  # recently lost, so a late return is told apart
        self._paths: dict[str, PathStats] = {}
        self._lost_listeners: list[Callable[[LostLoop], None]] = []
        self._return_listeners: list[Callable[[str, float], None]] = []
        self.unknown = 0  # returns of ids this node never sent (or long forgotten)
        #: loops back in time per round-trip bucket (LOOP_RTT_BUCKETS, then +Inf), not cumulative
        self.rtt_counts = [0] * (len(LOOP_RTT_BUCKETS) + 1)
        self.rtt_sum = 0.0  # seconds, over every loop back in time
        self.cancelled = 0  # outstanding when their path went away (not counted lost)

    def add_lost_listener(self, callback: Callable[[LostLoop], None]) -> None:
        """``callback(lost)`` for every loop that missed its deadline."""
        self._lost_listeners.append(callback)

    def add_return_listener(self, callback: Callable[[str, float], None]) -> None:
        """``callback(path, rtt)`` for every loop back in time."""
        self._return_listeners.append(callback)

    def create(self, path: str) -> bytes:
        """A fresh loop id for a loop about to go out along ``path``."""
        while True:
            loop_id = self._random.getrandbits(8 * LOOP_ID_BYTES).to_bytes(LOOP_ID_BYTES, "big")
            if loop_id not in self._pending and loop_id not in self._lost_ids:
                break
        now = self._clock.seconds()
        deadline = now + self.timeout
        self._pending[loop_id] = _Pending(path, now, deadline)
        heapq.heappush(self._deadlines, (deadline, loop_id))
        self._stats(path).sent += 1
        return loop_id

    def returned(self, loop_id: bytes, path: str | None = None) -> float | None:
        """A loop came back: its round trip in seconds, or None (late or unknown).

        With ``path``: the loop counts only if it went out along that path (a
        loop id handed back by anyone else is unknown, and stays outstanding).
        """
        pending = self._pending.get(loop_id)
        if pending is not None and path is not None and pending.path != path:
            self.unknown += 1
            return None
        pending = self._pending.pop(loop_id, None)
        if pending is None:
            path = self._lost_ids.pop(loop_id, None)
            if path is None:
                self.unknown += 1
            else:
                self._stats(path).late += 1
            return None
        now = self._clock.seconds()
        if now > pending.deadline:
            # Overdue but not yet expired by a timer tick: it is lost all the same.
            self._pending[loop_id] = pending
            self.expire()
            return self.returned(loop_id, path)
        rtt = now - pending.sent_at
        self.rtt_counts[bisect.bisect_left(LOOP_RTT_BUCKETS, rtt)] += 1
        self.rtt_sum += rtt
        stats = self._stats(pending.path)
        stats.returned += 1
        assert stats.rtts is not None
        stats.rtts.append(rtt)
        if len(stats.rtts) > self.RTT_WINDOW:
            del stats.rtts[0]
        for cb in list(self._return_listeners):
            cb(pending.path, rtt)
        return rtt

    def expire(self) -> list[LostLoop]:
        """Report every loop whose deadline has passed; returns them."""
        now = self._clock.seconds()
        lost: list[LostLoop] = []
        while self._deadlines and self._deadlines[0][0] < now:
            _, loop_id = heapq.heappop(self._deadlines)
            pending = self._pending.pop(loop_id, None)
            if pending is None:
                continue  # came back in time
            self._stats(pending.path).lost += 1
            self._lost_ids[loop_id] = pending.path
            lost.append(LostLoop(loop_id, pending.path, pending.sent_at))
        while len(self._lost_ids) > 10 * self.RTT_WINDOW:
            del self._lost_ids[next(iter(self._lost_ids))]
        for item in lost:
            for cb in list(self._lost_listeners):
                cb(item)
        return lost

    def cancel_path(self, path: str) -> int:
        """Forget the loops outstanding along ``path`` without counting them lost
        (its session closed: nothing went through it to drop). Returns how many."""
        gone = [i for i, p in self._pending.items() if p.path == path]
        for loop_id in gone:
            del self._pending[loop_id]
        self.cancelled += len(gone)
        return len(gone)

    def next_deadline(self) -> float | None:
        """When the earliest outstanding loop expires (None: nothing outstanding)."""
        while self._deadlines and self._deadlines[0][1] not in self._pending:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def path_stats(self, path: str) -> PathStats:
        return self._stats(path)

    def paths(self) -> dict[str, PathStats]:
        return dict(self._paths)

    def totals(self) -> PathStats:
        out = PathStats(rtts=[])
        for s in self._paths.values():
            out.sent += s.sent
            out.returned += s.returned
            out.lost += s.lost
            out.late += s.late
            assert out.rtts is not None and s.rtts is not None
            out.rtts.extend(s.rtts)
        return out

    def _stats(self, path: str) -> PathStats:
        stats = self._paths.get(path)
        if stats is None:
            stats = self._paths[path] = PathStats(rtts=[])
        return stats


class LoopCover:
    """Sends loops at Exp(``rate``) gaps through ``choose_path()`` and expires them, one timer.

    ``send(path, loop_id)`` puts the loop message on its way (the node core's
    loop channel); ``choose_path()`` returns a path to test or None when there
    is no peer to loop through (the slot passes).
    """

    def __init__(self, clock: IReactorTime, random: Random, monitor: LoopMonitor, rate: float,
                 choose_path: Callable[[], str | None],
                 send: Callable[[str, bytes], None]) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate (λ_L) must be >= 0 loops per second, not {rate!r}")
        self._clock = clock
        self._random = random
        self.monitor = monitor
        self.rate = float(rate)
        self._choose = choose_path
        self._send = send
        self._next_send: float | None = None
        self._call: IDelayedCall | None = None

    @property
    def running(self) -> bool:
        return self._next_send is not None

    def start(self) -> None:
        if self.rate > 0 and self._next_send is None:
            self._next_send = self._clock.seconds() + self._random.expovariate(self.rate)
        self._arm()

    def stop(self) -> None:
        self._next_send = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _arm(self) -> None:
        times = [t for t in (self._next_send, self.monitor.next_deadline()) if t is not None]
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if times and self._next_send is not None:
            # Expiry strictly after the deadline: a loop due back exactly at it is in time.
            when = min(times)
            nudge = 1e-6 if when != self._next_send else 0.0
            self._call = self._clock.callLater(max(0.0, when - self._clock.seconds()) + nudge,
                                               self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        self.monitor.expire()
        if self._next_send is not None and self._next_send <= now + 1e-9:
            path = self._choose()
            if path is not None:
                self._send(path, self.monitor.create(path))
            self._next_send += self._random.expovariate(self.rate)
            if self._next_send <= now:
                self._next_send = now + self._random.expovariate(self.rate)
        self._arm()
