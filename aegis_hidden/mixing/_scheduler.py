"""Cell schedulers: when each link's cells are sealed and written.

:class:`PoissonScheduler` gives every link its own schedule of slots (Loopix's
"payload + drop cover" stream, hop by hop): the gaps between slots are drawn
from Exp(λ) (or are a constant ``1/λ`` with a random phase), a slot takes the
next queued real cell, and a slot with nothing queued sends a cover cell. The
schedule does not depend on what is queued, so the times of a link's writes
tell an observer nothing about when real data was sent; what real traffic
costs is queueing delay, never an earlier write.

All links share ONE timer: slots wait in a heap and a single ``DelayedCall``
is armed for the earliest, so 100 idle links cost 100 heap
operations per mean gap, not 100 timers.

:class:`ImmediateScheduler` writes as soon as cells are queued (the ``off``
profile; also the positive control of the tests: its departures fail the
Kolmogorov-Smirnov test that Poisson departures pass).
"""

from __future__ import annotations

import heapq
import itertools
import math
import struct
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from heapq import heappop, heappush, heapreplace
from random import Random, SystemRandom

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import ICellLink, ICellScheduler, ITraceSink
from ._throttle import Throttle

# Slots due within EPSILON of "now" are taken now: a DelayedCall armed for
# ``due - now`` seconds may fire a rounding error early.
from ._timer import EPSILON as _EPSILON
from ._timer import rearm

#: Upper bounds (seconds) of the queue-delay histogram buckets; the last bucket is +Inf.
QUEUE_DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: Exp(λ) gaps drawn per refill: one call into the random source (one getrandbits,
#: i.e. one read of the system's CSPRNG, for SystemRandom) instead of one per slot.
GAP_BATCH = 256
_WORDS = struct.Struct(f"<{GAP_BATCH}Q")
_TWO_M53 = 2.0 ** -53


@dataclass
class SchedulerStats:
    """Counters since the scheduler was made (for /metrics and the benchmarks)."""

    slots: int = 0
    real_cells: int = 0
    cover_cells: int = 0
    burst_slots: int = 0  # slots that took more than one real cell
    late_slots: int = 0  # slots re-anchored because the reactor ran late
    #: cells per queue-delay bucket (QUEUE_DELAY_BUCKETS, then +Inf), not cumulative
    queue_delay_counts: list[int] = field(
        default_factory=lambda: [0] * (len(QUEUE_DELAY_BUCKETS) + 1))
    queue_delay_sum: float = 0.0  # seconds, over every real cell sent

    def observe_delay(self, delay: float, cells: int = 1) -> None:
        self.queue_delay_counts[bisect_left(QUEUE_DELAY_BUCKETS, delay)] += cells
        self.queue_delay_sum += delay * cells


class _Entry:
    """A registered link, and when its queued cells were first seen (for the delay histogram)."""

    __slots__ = ("known", "link", "live", "seen")

    def __init__(self, link: ICellLink) -> None:
        self.link = link
        self.live = True
        self.known = 0  # queued cells already accounted for in ``seen``
        self.seen: deque[list[float]] = deque()  # [time first seen, cells], oldest first

    def discover(self, queued: int, now: float) -> None:
        if queued > self.known:
            self.seen.append([now, float(queued - self.known)])
        else:
            # Fewer than accounted for, without a slot (the session dropped its
            # queue): forget the oldest.
            gone = self.known - queued
            while gone and self.seen:
                head = self.seen[0]
                take = min(gone, int(head[1]))
                gone -= take
                head[1] -= take
                if head[1] <= 0:
                    self.seen.popleft()
        self.known = queued

    def sent(self, cells: int, now: float, stats: SchedulerStats) -> None:
        self.known -= cells
        seen = self.seen
        if seen and seen[0][1] > cells:  # the common case: all from the oldest arrival
            head = seen[0]
            head[1] -= cells
            stats.observe_delay(now - head[0], cells)
            return
        while cells and seen:
            head = seen[0]
            take = min(cells, int(head[1]))
            stats.observe_delay(now - head[0], take)
            cells -= take
            head[1] -= take
            if head[1] <= 0:
                seen.popleft()


# A heap item: (due time, tie-breaking sequence number, entry). Plain tuples:
# this heap is the scheduler's hot path.
_Slot = tuple[float, int, _Entry]


@implementer(ICellScheduler)
class PoissonScheduler:
    """One cell per slot per link, slots at Exp(``rate``) gaps, cover when idle.

    ``burst`` bounds how many queued real cells one slot may take (1: strictly
    one cell per slot). A burst above 1 sends a backlog faster, at a cost the
    write times do not show but the write *sizes* do: a slot that carries k
    cells tells whoever can count cells between the node and its guard (its
    ISP, the guard) that at least k real cells were waiting. That leak is
    documented per profile in docs/mixing.md.

    ``resolution`` (seconds, 0: exact) makes the timer a wheel of that tick:
    a slot is taken at the first tick at or after its due time (never before),
    so the slots of many links that fall in one tick share one wakeup of the
    reactor, which is most of the idle cost. The write times are then the
    schedule rounded up to the tick, a distortion of at most ``rate *
    resolution`` in the distribution of the gaps (0.01 at balanced), below
    what Tor's own cell scheduler (KIST, a 10 ms tick) lets an observer see.

    ``constant=True`` draws no random gaps: every link sends one slot each
    ``1/rate`` seconds, with a random phase per link (the ``paranoid``
    profile). The timing then carries no information at all, at the price of
    the bandwidth of the peak rate.
    """

    log = Logger()
    #: The node's bandwidth cap (None: none); set by the node's emergency controls.
    throttle: Throttle | None = None
    #: Links leave only at slots: a session closing with cells queued lets them go at
    #: its slots and sends its CLOSE in the next one (SessionProtocol.close_link).
    paced = True

    def __init__(self, clock: IReactorTime, random: Random, rate: float, *, burst: int = 1,
                 constant: bool = False, trace: ITraceSink | None = None,
                 cell_size: int = 996, resolution: float = 0.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0 cells per second, not {rate!r}")
        if not 0 <= resolution <= 1:
            raise ValueError(f"resolution must be from 0 to 1 second, not {resolution!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 cell per slot, not {burst!r}")
        self._clock = clock
        self._random = random
        self.rate = float(rate)
        self.burst = burst
        self.constant = constant
        self.resolution = float(resolution)
        self._trace = trace
        self._cell_size = cell_size
        self._entries: dict[int, _Entry] = {}
        self._gaps: list[float] = []  # drawn ahead, next one last
        self._heap: list[_Slot] = []
        self._seq = itertools.count()
        self._call: IDelayedCall | None = None
        self._drained: list[Deferred[None]] = []
        self.stats = SchedulerStats()
        # The timer's callable, bound once: the timer is re-armed at every wakeup.
        self._wake = self._fire

    # -- ICellScheduler ---------------------------------------------------
    def register(self, link: ICellLink) -> None:
        if id(link) in self._entries:
            return
        entry = _Entry(link)
        self._entries[id(link)] = entry
        now = self._clock.seconds()
        first = now + (self._random.random() / self.rate if self.constant else self._gap())
        self._push(entry, first)
        self._arm()

    def unregister(self, link: ICellLink) -> None:
        entry = self._entries.pop(id(link), None)
        if entry is not None:
            entry.live = False  # its slot is dropped lazily when it reaches the top
            self._arm()
        if not self._entries and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)

    def notify(self, link: ICellLink) -> None:
        """Queued cells wait for the link's next slot; only note when they came."""
        entry = self._entries.get(id(link))
        if entry is not None:
            entry.discover(link.queued(), self._clock.seconds())

    # -- public -----------------------------------------------------------
    @property
    def links(self) -> int:
        return len(self._entries)

    def drained(self, timeout: float) -> Deferred[None]:
        """Fires once no link is registered (every session closed: a closing one
        sends its queued cells at its slots, then its CLOSE), or after ``timeout``
        seconds on the clock, whichever comes first. The node waits on this at
        shutdown before :meth:`stop`."""
        d: Deferred[None] = Deferred()
        if not self._entries:
            d.callback(None)
            return d
        self._drained.append(d)
        timer = self._clock.callLater(timeout, lambda: None if d.called else d.callback(None))

        def cancel(result: None) -> None:
            if timer.active():
                timer.cancel()
            if d in self._drained:
                self._drained.remove(d)
            return result

        d.addBoth(cancel)
        return d

    def stop(self) -> None:
        """Forget every link and cancel the timer (service shutdown)."""
        for entry in self._entries.values():
            entry.live = False
        self._entries.clear()
        self._heap.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    # -- internals --------------------------------------------------------
    def _gap(self) -> float:
        if self.constant:
            return 1.0 / self.rate
        gaps = self._gaps
        if not gaps:
            gaps = self._draw_gaps()
        return gaps.pop()

    def _draw_gaps(self) -> list[float]:
        """The next GAP_BATCH Exp(λ) gaps, as ``random.expovariate`` computes them.

        From a seeded Random: the same uniforms in the same order as one
        ``expovariate`` per slot, so a seed gives the same schedule. From
        SystemRandom: one ``getrandbits`` for the whole batch, cut into 53-bit
        uniforms (the resolution of ``random()``), instead of one read of the
        system's CSPRNG per slot.
        """
        rate, log, n = self.rate, math.log, GAP_BATCH
        rng = self._random
        if isinstance(rng, SystemRandom):
            words = _WORDS.unpack(rng.getrandbits(64 * n).to_bytes(8 * n, "little"))
            gaps = [-log(1.0 - (w >> 11) * _TWO_M53) / rate for w in words]
        else:
            uniform = rng.random
            gaps = [-log(1.0 - uniform()) / rate for _ in range(n)]
        gaps.reverse()
        self._gaps = gaps
        return gaps

    def _push(self, entry: _Entry, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), entry))

    def _arm(self) -> None:
        heap = self._heap
        while heap and not heap[0][2].live:
            heapq.heappop(heap)
        due = heap[0][0] if heap else math.inf
        if heap and self.resolution:
            due = math.ceil(due / self.resolution - _EPSILON) * self.resolution
        self._call = rearm(self._clock, self._call, due, self._wake)

    def _fire(self) -> None:
        # The hot path: every slot of every link passes here, so the loop keeps
        # what it uses in locals and takes every slot due now in one wakeup.
        self._call = None
        clock = self._clock
        now = clock.seconds()
        heap = self._heap
        horizon = now + _EPSILON
        if self.throttle is not None or self._trace is not None:
            self._fire_each(now, horizon)
        elif heap:
            # Without a bandwidth cap or a trace, a slot is handled inline (the
            # common case); its counts are added to the stats once per wakeup.
            late = now - self.resolution - _EPSILON
            constant, gaps, burst = self.constant, self._gaps, self.burst
            slots = real = cover = bursts = 0
            delay_sum = 0.0
            while heap:
                # The slot stays at the top of the heap until its link's next slot
                # replaces it (one sift instead of a pop and a push), with the same
                # tie-break number: a link has one slot in the heap at a time.
                due, tie, entry = heap[0]
                if due > horizon:
                    break
                if not entry.live:
                    heappop(heap)
                    continue
                link = entry.link
                if link.closed:
                    entry.live = False
                    self._entries.pop(id(link), None)
                    heappop(heap)
                    continue
                slots += 1
                queued = link.queued()
                if queued != entry.known:
                    entry.discover(queued, now)  # queued without a notify (e.g. a REKEY)
                if queued:
                    sent = link.emit(queued if queued < burst else burst)
                    if sent:
                        real += sent
                        if sent > 1:
                            bursts += 1
                        seen = entry.seen
                        head = seen[0] if seen else None
                        # The common case: all from the oldest arrival.
                        if head is not None and (left := head[1] - sent) >= 0:
                            if left:
                                head[1] = left
                            else:
                                seen.popleft()
                            entry.known -= sent
                            delay = now - head[0]
                            self.stats.queue_delay_counts[
                                bisect_left(QUEUE_DELAY_BUCKETS, delay)] += sent
                            delay_sum += delay * sent
                        else:
                            entry.sent(sent, now, self.stats)
                    # A slot the record layer spent on a control cell (a REKEY) sends
                    # no cover after it: a slot is never two writes.
                else:
                    link.emit(0, 1)
                    cover += 1
                if constant:
                    nxt = due + 1.0 / self.rate
                else:
                    if not gaps:
                        gaps = self._draw_gaps()
                    nxt = due + gaps.pop()
                if nxt < late:
                    nxt = self._late(now)
                    gaps = self._gaps
                    # Links re-anchored in one wakeup may tie (constant gaps): the
                    # order they were re-anchored in breaks the tie.
                    tie = next(self._seq)
                if heap and heap[0][2] is entry:
                    heapreplace(heap, (nxt, tie, entry))
                else:  # the link re-armed or the heap changed during its emit
                    heappush(heap, (nxt, next(self._seq), entry))
                    self._drop(entry, due)
            if slots:
                stats = self.stats
                stats.slots += slots
                if real:
                    stats.real_cells += real
                    stats.queue_delay_sum += delay_sum
                    if bursts:
                        stats.burst_slots += bursts
                if cover:
                    stats.cover_cells += cover
        while heap and not heap[0][2].live:
            heappop(heap)
        if self._call is None and heap:  # nothing re-armed the timer meanwhile
            due = heap[0][0]
            if self.resolution:
                due = math.ceil(due / self.resolution - _EPSILON) * self.resolution
            delay = due - clock.seconds()
            self._call = clock.callLater(delay if delay > 0.0 else 0.0, self._wake)
        else:
            self._arm()

    def _late(self, now: float) -> float:
        """The reactor ran late past a link's next slot: missed slots are skipped
        rather than sent in a clump (a clump would show the stall); queued cells
        wait for the next slot, one gap from now."""
        self.stats.late_slots += 1
        return now + self._gap()

    def _fire_each(self, now: float, horizon: float) -> None:
        """The slots due now when a bandwidth cap or a trace is on: each through
        :meth:`_slot`, same schedule."""
        heap = self._heap
        late = now - self.resolution - _EPSILON
        stats = self.stats
        while heap and heap[0][0] <= horizon:
            due, _, entry = heap[0]
            if not entry.live:
                heappop(heap)
                continue
            link = entry.link
            if link.closed:
                entry.live = False
                self._entries.pop(id(link), None)
                heappop(heap)
                continue
            self._slot(entry, link, now, stats)
            nxt = due + self._gap()
            if nxt < late:
                nxt = self._late(now)
            if heap and heap[0][2] is entry:
                heapreplace(heap, (nxt, next(self._seq), entry))
            else:
                heappush(heap, (nxt, next(self._seq), entry))
                self._drop(entry, due)

    def _drop(self, entry: _Entry, due: float) -> None:
        """Remove the slot (``due``, ``entry``) that was at the top of the heap when
        its link was handled, wherever it is now (the rare case)."""
        heap = self._heap
        for k, item in enumerate(heap):
            if item[2] is entry and item[0] == due:
                heap[k] = heap[-1]
                heap.pop()
                heapq.heapify(heap)
                return

    def _slot(self, entry: _Entry, link: ICellLink, now: float, stats: SchedulerStats) -> None:
        throttle = self.throttle
        if throttle is not None and not throttle.admit(self.burst):
            return  # over the node's bandwidth cap (_throttle.py): this slot sends nothing
        stats.slots += 1
        queued = link.queued()
        if queued != entry.known:
            entry.discover(queued, now)  # queued without a notify (e.g. a REKEY)
        if queued:
            sent = link.emit(queued if queued < self.burst else self.burst)
            if throttle is not None:
                throttle.spent(sent)
            if sent:
                entry.sent(sent, now, stats)
                stats.real_cells += sent
                if sent > 1:
                    stats.burst_slots += 1
                if self._trace is not None:
                    for _ in range(sent):
                        self._trace.record(now, str(link.link_id), "out", self._cell_size,
                                           "real")
            # The slot is used even when nothing queued went: the record layer
            # spent it on a control cell (a REKEY takes a slot); no cover follows,
            # so a slot is never two writes.
            return
        link.emit(0, 1)
        if throttle is not None:
            throttle.spent(1)
        stats.cover_cells += 1
        if self._trace is not None:
            self._trace.record(now, str(link.link_id), "out", self._cell_size, "cover")


@implementer(ICellScheduler)
class ImmediateScheduler:
    """Writes queued cells as soon as they are queued, ``batch_size`` cells per write.

    No cover and no schedule: the timing of every write is the timing of the
    application. This is the ``off`` profile (tests and trusted links) and the
    positive control of the KS tests.
    """

    #: The node's bandwidth cap (None: none); set by the node's emergency controls.
    throttle: Throttle | None = None

    def __init__(self, *, batch_size: int = 64, trace: ITraceSink | None = None,
                 clock: IReactorTime | None = None, cell_size: int = 996) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        self.batch_size = batch_size
        self._trace = trace
        self._clock = clock
        self._cell_size = cell_size
        self.stats = SchedulerStats()

    def register(self, link: ICellLink) -> None:
        self.notify(link)

    def unregister(self, link: ICellLink) -> None:
        """Nothing is held per link."""

    def notify(self, link: ICellLink) -> None:
        if link.closed:
            return
        while (queued := link.queued()) > 0:
            count = min(queued, self.batch_size)
            if self.throttle is not None and not (count := self.throttle.grant(count)):
                self.throttle.wait(link, self.notify)  # over the cap: again when budget is back
                break
            sent = link.emit(count)
            if sent <= 0:
                break
            self.stats.slots += 1
            self.stats.real_cells += sent
            if self._trace is not None and self._clock is not None:
                now = self._clock.seconds()
                for _ in range(sent):
                    self._trace.record(now, str(link.link_id), "out", self._cell_size, "real")
