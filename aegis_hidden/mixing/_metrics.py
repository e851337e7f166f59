"""One flat snapshot of the mixing layer's counters, for /metrics and ``aegis-hidden status``.

Counts only: no link ids, no peer names, no times of single cells.
"""

from __future__ import annotations

from typing import Any

from ._loops import LOOP_RTT_BUCKETS, LoopMonitor
from ._pool import MixPool
from ._profiles import MixingProfile
from ._scheduler import QUEUE_DELAY_BUCKETS, ImmediateScheduler, PoissonScheduler


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[float, int]]:
    running = 0
    out: list[tuple[float, int]] = []
    for bound, n in zip((*bounds, float("inf")), counts, strict=True):
        running += n
        out.append((bound, running))
    return out


def metrics_snapshot(profile: MixingProfile, *,
                     scheduler: PoissonScheduler | ImmediateScheduler | None = None,
                     loops: LoopMonitor | None = None,
                     pool: MixPool[Any] | None = None) -> dict[str, Any]:
    """The current profile and rates, and whatever counters the given parts keep.

    ``queue_delay_buckets`` is cumulative, Prometheus style: a list of
    ``(upper bound in seconds, cells sent after waiting at most that long)``
    ending with ``(inf, all cells)``; ``loop_rtt_buckets`` likewise for the
    round trips of loops back in time.
    """
    out: dict[str, Any] = {
        "profile": profile.name,
        "cover_rate": profile.cover_rate,
        "loop_rate": profile.loop_rate,
        "mix_rate": profile.mix_rate,
        "burst": profile.burst,
        "constant_rate": profile.constant,
    }
    if scheduler is not None:
        st = scheduler.stats
        out.update(slots=st.slots, real_cells_sent=st.real_cells, cover_cells_sent=st.cover_cells,
                   burst_slots=st.burst_slots, late_slots=st.late_slots,
                   links=getattr(scheduler, "links", 0))
        buckets = _cumulative(QUEUE_DELAY_BUCKETS, st.queue_delay_counts)
        out.update(queue_delay_buckets=buckets, queue_delay_count=buckets[-1][1],
                   queue_delay_sum=st.queue_delay_sum)
    if loops is not None:
        t = loops.totals()
        out.update(loops_sent=t.sent, loops_returned=t.returned, loops_lost=t.lost,
                   loops_late=t.late, loops_outstanding=loops.outstanding,
                   loop_rtt_mean=t.rtt_mean, loop_rtt_p50=t.quantile(0.5),
                   loop_rtt_p90=t.quantile(0.9), loops_cancelled=loops.cancelled,
                   loop_rtt_buckets=_cumulative(LOOP_RTT_BUCKETS, loops.rtt_counts),
                   loop_rtt_sum=loops.rtt_sum)
    if pool is not None:
        ps = pool.stats
        out.update(pool_waiting=len(pool), pool_added=ps.added, pool_released=ps.released,
                   pool_batches=ps.batches,
                   pool_delay_mean=ps.delay_total / ps.released if ps.released else None)
    return out
