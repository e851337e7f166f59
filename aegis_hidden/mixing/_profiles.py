"""Mixing profiles and the factories that build the mixing layer from the config.

A profile fixes four numbers (docs/mixing.md gives what each costs and hides):

- λ (``cover_rate``): slots per second on every link, each one cell of
  ``mixing.cell_size`` bytes, real or cover. 0: no schedule, cells leave at once.
- λ_L (``loop_rate``): loop messages per second, node-wide.
- μ (``mix_rate``): forwarded items wait Exp(μ), mean ``1/μ`` seconds. 0: no delay.
- ``burst``: most real cells one slot may carry (1: strictly one per slot).

``mixing.cover_rate`` / ``loop_rate`` / ``mix_rate`` / ``burst`` in the config
override the profile's value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any, TypeVar

from twisted.internet.interfaces import IReactorTime

from ..interfaces import ICellScheduler, ITraceSink
from ._pool import MixPool
from ._scheduler import ImmediateScheduler, PoissonScheduler

T = TypeVar("T")


@dataclass(frozen=True)
class MixingProfile:
    name: str
    cover_rate: float  # λ, slots per second per link (0: immediate, no cover)
    loop_rate: float  # λ_L, loops per second per node
    mix_rate: float  # μ, per second (0: forwarded items are not delayed)
    burst: int  # real cells per slot at most
    constant: bool = False  # constant-rate slots (random phase) instead of Poisson
    loop_timeout: float = 60.0  # seconds before a loop counts as lost
    resolution: float = 0.0  # the scheduler's timer tick (seconds; 0: exact)

    @property
    def mean_mix_delay(self) -> float:
        return 1.0 / self.mix_rate if self.mix_rate else 0.0

    def bytes_per_second_per_link(self, cell_size: int = 996) -> float:
        return self.cover_rate * cell_size


PROFILES: dict[str, MixingProfile] = {
    # No cover, no delay: tests and trusted links. Hides nothing about timing.
    "off": MixingProfile("off", cover_rate=0.0, loop_rate=0.0, mix_rate=0.0, burst=64),
    # Phones and metered links: one cell every 2 s on average (~0.5 kB/s per link).
    "low-data": MixingProfile("low-data", cover_rate=0.5, loop_rate=1 / 120, mix_rate=1.0,
                              burst=4, loop_timeout=120.0),
    # The default: Loopix's evaluation point (λ = 2, μ = 1, λ/μ = 2).
    "balanced": MixingProfile("balanced", cover_rate=2.0, loop_rate=1 / 30, mix_rate=1.0,
                              burst=4),
    # Constant rate, high λ, one cell per slot, longer mixing.
    "paranoid": MixingProfile("paranoid", cover_rate=10.0, loop_rate=0.2, mix_rate=0.5,
                              burst=1, constant=True),
}

DEFAULT_PROFILE = "balanced"


def resolve_profile(name: str = DEFAULT_PROFILE, *, cover_rate: float | None = None,
                    loop_rate: float | None = None, mix_rate: float | None = None,
                    burst: int | None = None) -> MixingProfile:
    """The profile ``name`` with the given values overriding its own (None: keep)."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown mixing profile {name!r}; expected one of "
                         + ", ".join(PROFILES)) from None
    changes: dict[str, Any] = {k: v for k, v in (("cover_rate", cover_rate),
                                                 ("loop_rate", loop_rate),
                                                 ("mix_rate", mix_rate),
                                                 ("burst", burst)) if v is not None}
    if not changes:
        return base
    return dataclasses.replace(base, **changes)


def _mixing(config: Any) -> Any:
    """Accept a whole ``Config`` or its ``mixing`` section."""
    return getattr(config, "mixing", config)


def profile_from_config(config: Any) -> MixingProfile:
    m = _mixing(config)
    return resolve_profile(m.profile, cover_rate=m.cover_rate, loop_rate=m.loop_rate,
                           mix_rate=m.mix_rate, burst=m.burst)


def scheduler_from_config(config: Any, clock: IReactorTime, random: Random, *,
                          trace: ITraceSink | None = None) -> ICellScheduler:
    """The cell scheduler the config asks for.

    A profile (or override) with λ = 0 gets the :class:`ImmediateScheduler`
    (``off``: ``performance.message_batch_size`` cells per write); any other
    gets a :class:`PoissonScheduler` at λ. Production code passes
    ``secrets.SystemRandom()``; tests and simulations a seeded Random.
    """
    profile = profile_from_config(config)
    m = _mixing(config)
    if profile.cover_rate <= 0:
        # No schedule: cells per write is performance.message_batch_size (given a
        # whole Config) unless mixing.burst says otherwise.
        performance = getattr(config, "performance", None)
        batch = profile.burst if m.burst is not None or performance is None else \
            int(performance.message_batch_size)
        return ImmediateScheduler(batch_size=batch, trace=trace, clock=clock,
                                  cell_size=m.cell_size)
    return PoissonScheduler(clock, random, profile.cover_rate, burst=profile.burst,
                            constant=profile.constant, trace=trace, cell_size=m.cell_size,
                            resolution=profile.resolution)


def mix_pool_from_config(config: Any, clock: IReactorTime, random: Random,
                         release: Callable[[T], None]) -> MixPool[T]:
    """The node-wide pool that forwarded traffic waits in (μ, batching from the config)."""
    profile = profile_from_config(config)
    m = _mixing(config)
    return MixPool(clock, random, profile.mix_rate, release, batch_size=m.batch_size,
                   batch_interval=m.batch_interval)
