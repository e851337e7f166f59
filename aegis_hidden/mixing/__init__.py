"""The mixing layer: when cells leave, cover, loops, mix delays, profiles, traces.

- :class:`PoissonScheduler`: one cell per Exp(λ) slot per link, cover when
  idle, one timer for all links (an ``ICellScheduler``).
- :class:`ImmediateScheduler`: the ``off`` profile, writes at once.
- :class:`MixPool`: Exp(μ) stop-and-go delays (optionally timed batches) for
  forwarded traffic, one timer.
- :class:`LoopMonitor` / :class:`LoopCover`: loop ids, returns, lost loops
  per path, round-trip statistics; loops sent at λ_L on one timer.
- :data:`PROFILES`, :func:`resolve_profile`, :func:`scheduler_from_config`,
  :func:`mix_pool_from_config`.
- :class:`JsonLinesTraceSink`: per-cell traces with salted link ids.
- :class:`MixingLayer` / :class:`MixingService`: what the running node holds
  (the scheduler every session uses, cell counters, the optional trace file,
  the loop monitor and the forwarding pool).
- :class:`Throttle`: the node-wide bandwidth cap the schedulers consult.
- :func:`metrics_snapshot`: profile, rates and counters (cover cells, queue
  delay histogram, loops, pool) for /metrics and status.

docs/mixing.md says what each profile costs, what it hides and what it does
not.
"""

from ._loops import LOOP_ID_BYTES, LOOP_RTT_BUCKETS, LoopCover, LoopMonitor, LostLoop, PathStats
from ._metrics import metrics_snapshot
from ._node import DRAIN_SECONDS, CellCounter, MixingLayer, MixingService
from ._pool import MixPool, PoolStats
from ._profiles import (
    DEFAULT_PROFILE,
    PROFILES,
    MixingProfile,
    mix_pool_from_config,
    profile_from_config,
    resolve_profile,
    scheduler_from_config,
)
from ._scheduler import (
    QUEUE_DELAY_BUCKETS,
    ImmediateScheduler,
    PoissonScheduler,
    SchedulerStats,
)
from ._throttle import MAX_BYTES_PER_SECOND, MIN_BYTES_PER_SECOND, Throttle, check_bytes_per_second
from ._trace import JsonLinesTraceSink, read_trace

__all__ = [
    "DEFAULT_PROFILE",
    "DRAIN_SECONDS",
    "LOOP_ID_BYTES",
    "LOOP_RTT_BUCKETS",
    "MAX_BYTES_PER_SECOND",
    "MIN_BYTES_PER_SECOND",
    "PROFILES",
    "QUEUE_DELAY_BUCKETS",
    "CellCounter",
    "ImmediateScheduler",
    "JsonLinesTraceSink",
    "LoopCover",
    "LoopMonitor",
    "LostLoop",
    "MixPool",
    "MixingLayer",
    "MixingProfile",
    "MixingService",
    "PathStats",
    "PoissonScheduler",
    "PoolStats",
    "SchedulerStats",
    "Throttle",
    "check_bytes_per_second",
    "metrics_snapshot",
    "mix_pool_from_config",
    "profile_from_config",
    "read_trace",
    "resolve_profile",
    "scheduler_from_config",
]
