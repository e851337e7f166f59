"""The mixing layer as the running node holds it: one scheduler for every session,
cell counters, the optional trace file, and what status and /metrics show.

:class:`MixingLayer` is built once by the entry point (``tap.py``) from the
config, handed to the ``SessionFactory`` (``scheduler=``, ``trace=``) and to the
node core (status and metrics), and stopped with the node (its
:class:`MixingService` in the tree cancels the scheduler's timer and closes the
trace file).

Loop cover (λ_L) and the forwarding mix pool (μ) are not run by the node yet:
the loop message and the forwarding channels that would carry them do not
exist. :meth:`MixingLayer.status` says so, so no one reads the profile's λ_L
and μ as a protection the node gives.
"""

from __future__ import annotations

from random import Random
from typing import IO, Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..interfaces import ICellScheduler, ITraceSink
from ._metrics import metrics_snapshot
from ._profiles import MixingProfile, profile_from_config, scheduler_from_config
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


class MixingLayer:
    """The node's one cell scheduler, its counters and its optional trace."""

    def __init__(self, profile: MixingProfile, scheduler: ICellScheduler,
                 counter: CellCounter, trace_stream: IO[str] | None = None, *,
                 cell_size: int = 996) -> None:
        self.profile = profile
        self.cell_size = cell_size
        self.scheduler = scheduler
        #: The ITraceSink every session records its cells in (counts, then the file).
        self.trace: CellCounter = counter
        self._trace_stream = trace_stream

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
        return cls(profile_from_config(config), scheduler, counter, trace_stream,
                   cell_size=int(getattr(config, "mixing", config).cell_size))

    @property
    def scheduling(self) -> bool:
        """True when sessions send on a schedule with cover (λ > 0)."""
        return isinstance(self.scheduler, PoissonScheduler)

    def snapshot(self) -> dict[str, Any]:
        """Profile, rates and counters (for /metrics): counts only, no link ids."""
        sched = self.scheduler
        out = metrics_snapshot(self.profile, scheduler=sched if isinstance(
            sched, PoissonScheduler | ImmediateScheduler) else None)
        c = self.trace
        out.update(cells_sent=c.count("out", "real") + c.count("out", "cover"),
                   cover_cells_sent=c.count("out", "cover"),
                   cells_received=c.count("in", "real") + c.count("in", "cover"),
                   cover_cells_received=c.count("in", "cover"))
        return out

    def status(self) -> dict[str, Any]:
        """The profile and its rates as the node applies them (``/api/network/status``)."""
        p = self.profile
        return {
            "profile": p.name,
            # λ: slots per second on every link, each one cell, cover when idle
            "cover_rate": p.cover_rate if self.scheduling else 0.0,
            "cover_traffic": self.scheduling,
            "constant_rate": p.constant and self.scheduling,
            "burst": p.burst if self.scheduling else None,
            "bytes_per_second_per_link": round(p.bytes_per_second_per_link(self.cell_size), 1)
            if self.scheduling else 0.0,
            # λ_L and μ of the profile: not applied yet (no loop message, no
            # forwarding channel to delay): reported as such, never as running.
            "loop_cover": False,
            "loop_rate": 0.0,
            "mix_pool": False,
            "mix_rate": 0.0,
            "trace": self.trace.inner is not None,
        }

    def stop(self) -> None:
        """Cancel the scheduler's timer and flush and close the trace file."""
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

    def stopService(self) -> None:
        super().stopService()
        self.layer.stop()


#: Mixing settings the running node does not apply yet, and the value that means "unset".
UNAPPLIED = {"loop_rate": None, "mix_rate": None, "batch_interval": 0.0}


def unapplied_settings(config: Any) -> list[str]:
    """The ``mixing.*`` keys set in ``config`` that the running node would ignore.

    Loop cover (``loop_rate``) and the forwarding mix pool (``mix_rate``,
    ``batch_interval``; ``batch_size`` only matters with an interval) wait for
    the loop message and the forwarding channels. A node refuses to start with
    them set rather than promise a protection it does not give.
    """
    m = getattr(config, "mixing", config)
    return [f"mixing.{key}" for key, unset in UNAPPLIED.items() if getattr(m, key) != unset]
