"""The mixing layer as the running node holds it: one scheduler for every session,
cell counters, the optional trace file, and what status and /metrics show.

:class:`MixingLayer` is built once by the entry point (``tap.py``) from the
config, handed to the ``SessionFactory`` (``scheduler=``, ``trace=``) and to the
node core (status and metrics), and stopped with the node (its
:class:`MixingService` in the tree cancels the scheduler's timer and closes the
trace file).

Loop cover (λ_L) runs once the node core attaches the loop message
(:meth:`MixingLayer.attach_loops`); the forwarding mix pool (μ, timed batches)
delays whatever the node core hands to :meth:`MixingLayer.forward`. A node's
own messages never go through the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import IO, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ..interfaces import ICellScheduler, ITraceSink
from ._loops import LoopCover, LoopMonitor
from ._metrics import metrics_snapshot
from ._pool import MixPool
from ._profiles import (
    MixingProfile,
    mix_pool_from_config,
    profile_from_config,
    scheduler_from_config,
)
from ._scheduler import ImmediateScheduler, PoissonScheduler
from ._trace import DIRECTIONS, KINDS, JsonLinesTraceSink


@implementer(ITraceSink)
class CellCounter:
    """Counts cells by direction and kind, and passes each on to ``inner`` (if any).

    Keeps counts only: no times, no link ids. This is how the node knows how
    many cover cells it *received* (the session tells the trace which of the
    cells it opened were cover).
    """

    def __init__(self, inner: ITraceSink | None = None) -> None:
        self.inner = inner
        self.counts: dict[tuple[str, str], int] = {
            (d, k): 0 for d in DIRECTIONS for k in KINDS}

    def record(self, at: float, link: str, direction: str, size: int, kind: str) -> None:
        key = (direction, kind)
        if key not in self.counts:
            raise ValueError(f"trace direction/kind must be one of {sorted(self.counts)}, "
                             f"not {key!r}")
        self.counts[key] += 1
        if self.inner is not None:
            self.inner.record(at, link, direction, size, kind)

    def count(self, direction: str, kind: str) -> int:
        return self.counts[(direction, kind)]


Forward = Callable[[], None]

#: At shutdown, how long the scheduler keeps running for sessions that close
#: with cells queued (they leave at their slots, then the CLOSE); what is
#: still queued after that is lost with the connection.
DRAIN_SECONDS = 5.0


class MixingLayer:
    """The node's one cell scheduler, its counters and its optional trace; its loop
    monitor (λ_L > 0) and its forwarding mix pool (μ > 0 or timed batches)."""

    log = Logger()

    def __init__(self, profile: MixingProfile, scheduler: ICellScheduler,
                 counter: CellCounter, trace_stream: IO[str] | None = None, *,
                 cell_size: int = 996, clock: IReactorTime | None = None,
                 random: Random | None = None,
                 pool: MixPool[Forward] | None = None) -> None:
        self.profile = profile
        self.cell_size = cell_size
        self.scheduler = scheduler
        #: The ITraceSink every session records its cells in (counts, then the file).
        self.trace: CellCounter = counter
        self._trace_stream = trace_stream
        self._clock = clock
        self._random = random
        #: Loop ids, returns and losses (None: the profile sends no loops, λ_L = 0).
        self.loops: LoopMonitor | None = None
        if profile.loop_rate > 0 and clock is not None and random is not None:
            self.loops = LoopMonitor(clock, random, timeout=profile.loop_timeout)
        #: The driver of the loops, once the node core gave it the loop message.
        self.loop_cover: LoopCover | None = None
        #: Where forwarded items wait Exp(μ) (None: they leave at once).
        self.pool = pool
        self._started = False

    @classmethod
    def from_config(cls, config: Any, clock: IReactorTime, random: Random, *,
                    trace_stream: IO[str] | None = None) -> MixingLayer:
        """The layer ``config`` asks for; ``trace_stream``: where the per-cell trace
        goes (``mixing.trace_file``, opened by the caller; None: no trace)."""
        inner = JsonLinesTraceSink(trace_stream, clock, random) if trace_stream else None
        counter = CellCounter(inner)
        # The sessions record every cell in the counter (both directions, with the
        # true size written): the scheduler gets no sink of its own, or every cell
        # sent would be counted twice.
        scheduler = scheduler_from_config(config, clock, random)
        profile = profile_from_config(config)
        m = getattr(config, "mixing", config)
        pool: MixPool[Forward] | None = None
        if profile.mix_rate > 0 or m.batch_interval > 0:
            pool = mix_pool_from_config(config, clock, random, _release)
        return cls(profile, scheduler, counter, trace_stream, cell_size=int(m.cell_size),
                   clock=clock, random=random, pool=pool)

    # -- loops and forwarding (the node core plugs these in) ---------------------
    def attach_loops(self, choose_path: Callable[[], str | None],
                     send: Callable[[str, bytes], None]) -> LoopMonitor | None:
        """Run loop cover with the node's loop message: ``choose_path()`` names a
        path to test (None: nothing to loop through now), ``send(path, loop_id)``
        sends the loop. Returns the monitor (None when λ_L = 0: no loops)."""
        if self.loops is None or self._clock is None or self._random is None:
            return None
        if self.loop_cover is not None:
            self.loop_cover.stop()
        self.loop_cover = LoopCover(self._clock, self._random, self.loops,
                                    self.profile.loop_rate, choose_path, send)
        if self._started:
            self.loop_cover.start()
        return self.loops

    def forward(self, send: Forward) -> None:
        """Something the node relays for others: ``send()`` runs after its Exp(μ)
        delay (and batch), or at once when the layer has no pool."""
        if self.pool is None:
            send()
        else:
            self.pool.add(send)

    def start(self) -> None:
        """Start the loop timer (the scheduler and the pool arm theirs on demand)."""
        self._started = True
        if self.loop_cover is not None:
            self.loop_cover.start()

    @property
    def scheduling(self) -> bool:
        """True when sessions send on a schedule with cover (λ > 0)."""
        return isinstance(self.scheduler, PoissonScheduler)

    def snapshot(self) -> dict[str, Any]:
        """Profile, rates and counters (for /metrics): counts only, no link ids."""
        sched = self.scheduler
        out = metrics_snapshot(self.profile, scheduler=sched if isinstance(
            sched, PoissonScheduler | ImmediateScheduler) else None,
            loops=self.loops if self.loop_cover is not None else None, pool=self.pool)
        c = self.trace
        out.update(cells_sent=c.count("out", "real") + c.count("out", "cover"),
                   cover_cells_sent=c.count("out", "cover"),
                   cells_received=c.count("in", "real") + c.count("in", "cover"),
                   cover_cells_received=c.count("in", "cover"))
        return out

    def status(self) -> dict[str, Any]:
        """The profile and its rates as the node applies them (``/api/network/status``)."""
        p = self.profile
        pool = self.pool
        return {
            "profile": p.name,
            # λ: slots per second on every link, each one cell, cover when idle
            "cover_rate": p.cover_rate if self.scheduling else 0.0,
            "cover_traffic": self.scheduling,
            "constant_rate": p.constant and self.scheduling,
            "burst": p.burst if self.scheduling else None,
            "bytes_per_second_per_link": round(p.bytes_per_second_per_link(self.cell_size), 1)
            if self.scheduling else 0.0,
            # λ_L: loops per second through connected peers (node-wide)
            "loop_cover": self.loop_cover is not None,
            "loop_rate": p.loop_rate if self.loop_cover is not None else 0.0,
            # μ: forwarded items wait Exp(μ) (and, with an interval, timed batches)
            "mix_pool": pool is not None,
            "mix_rate": pool.rate if pool is not None else 0.0,
            "batch_interval": pool.batch_interval if pool is not None else 0.0,
            "batch_size": pool.batch_size if pool is not None and pool.batch_interval else None,
            "trace": self.trace.inner is not None,
        }

    def drained(self, timeout: float) -> Deferred[None]:
        """Fires when the scheduler holds no session any more (or after ``timeout``)."""
        if isinstance(self.scheduler, PoissonScheduler):
            return self.scheduler.drained(timeout)
        return succeed(None)

    def stop(self) -> None:
        """Cancel the scheduler's, the loops' and the pool's timers (forwarded items
        still waiting are dropped: their sessions are closed) and flush and close
        the trace file."""
        self._started = False
        if self.loop_cover is not None:
            self.loop_cover.stop()
        if self.pool is not None:
            self.pool.stop()
        stop = getattr(self.scheduler, "stop", None)
        if callable(stop):
            stop()
        if self._trace_stream is not None:
            self._trace_stream.flush()
            self._trace_stream.close()
            self._trace_stream = None
            self.trace.inner = None


class MixingService(Service):
    """The layer's place in the service tree: stopping the node stops its timer."""

    name = "mixing"

    def __init__(self, layer: MixingLayer) -> None:
        self.layer = layer

    def startService(self) -> None:
        super().startService()
        self.layer.start()

    def stopService(self) -> Deferred[None]:
        """Stops after the node core has closed the sessions (it is before the core in
        the tree): sessions closing with cells queued send them at their slots, then
        their CLOSE, so the timer runs until they are gone, at most DRAIN_SECONDS."""
        super().stopService()
        d = self.layer.drained(DRAIN_SECONDS)
        d.addBoth(lambda _: self.layer.stop())
        return d


def _release(send: Forward) -> None:
    """A forwarded item's delay is over: send it (a failure is the item's alone)."""
    try:
        send()
    except Exception:  # noqa: BLE001 - one bad item must not stop the pool's timer
        MixingLayer.log.failure("a forwarded item could not be sent")

