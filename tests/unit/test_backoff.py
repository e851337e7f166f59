"""The one retry policy (aegis_hidden._backoff): every mode stays in its bounds,
draws from the injected random, and a seeded random gives the same schedule."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden._backoff import JITTER_MODES, Backoff, JitterMode
from aegis_hidden.tor import Backoff as TorBackoff


def test_tor_uses_the_shared_backoff() -> None:
    assert TorBackoff is Backoff


@given(mode=st.sampled_from(JITTER_MODES), seed=st.integers(0, 2**32),
       base=st.floats(0.1, 10), factor=st.floats(1, 4), cap_over=st.floats(0, 500),
       attempts=st.integers(1, 40))
def test_schedule_within_bounds(mode: JitterMode, seed: int, base: float, factor: float,
                                cap_over: float, attempts: int) -> None:
    cap = base + cap_over
    b = Backoff(base=base, factor=factor, cap=cap, mode=mode, floor=base / 2,
                random=random.Random(seed).random)
    retrier = b.retrier()
    for n in range(attempts):
        previous = retrier.previous
        delay = retrier.next()
        low, high = b.bounds(n, previous)
        assert low - 1e-9 <= delay <= high + 1e-9
        assert delay >= 0
        if mode == "proportional":
            assert delay <= cap * (1 + b.jitter) + 1e-9
        else:
            assert delay <= cap + 1e-9
        if mode == "full":
            assert delay >= min(base / 2, b.nominal(n)) - 1e-9
        if mode == "decorrelated":
            assert delay >= base - 1e-9


def test_full_jitter_bounds_grow_then_cap() -> None:
    b = Backoff(base=2.0, factor=2.0, cap=10.0, mode="full", floor=1.0)
    assert [b.bounds(n) for n in range(5)] == [
        (1.0, 2.0), (1.0, 4.0), (1.0, 8.0), (1.0, 10.0), (1.0, 10.0)]


def test_decorrelated_bounds_follow_the_previous_delay() -> None:
    b = Backoff(base=1.0, factor=3.0, cap=20.0, mode="decorrelated")
    assert b.bounds(0) == (1.0, 3.0)
    assert b.bounds(7, previous=5.0) == (1.0, 15.0)
    assert b.bounds(7, previous=50.0) == (1.0, 20.0)


@pytest.mark.parametrize("mode", JITTER_MODES)
def test_seeded_schedules_repeat_and_are_not_fixed(mode: JitterMode) -> None:
    def schedule(seed: int) -> list[float]:
        return Backoff(base=1.0, cap=1000.0, mode=mode,
                       random=random.Random(seed).random).schedule(12)

    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)
    nominal = [min(1000.0, 2.0 ** n) for n in range(12)]
    assert schedule(7) != nominal  # no mode retries on the exact exponential steps


def test_extremes_of_the_random_source() -> None:
    low = Backoff(base=2.0, cap=100.0, mode="full", floor=0.5, random=lambda: 0.0)
    high = Backoff(base=2.0, cap=100.0, mode="full", floor=0.5, random=lambda: 0.999999)
    assert low.schedule(3) == [0.5, 0.5, 0.5]
    assert high.schedule(3) == pytest.approx([2.0, 4.0, 8.0], rel=1e-5)


def test_retrier_reset_starts_over() -> None:
    r = Backoff(base=1.0, jitter=0.0).retrier()
    assert [r.next(), r.next(), r.next()] == [1.0, 2.0, 4.0]
    r.reset()
    assert r.next() == 1.0


def test_default_random_is_not_the_module_random() -> None:
    random.seed(1)
    a = Backoff(base=1.0, cap=1e6).schedule(10)
    random.seed(1)
    b = Backoff(base=1.0, cap=1e6).schedule(10)
    assert a != b  # drawn from the system's CSPRNG, not the seeded global


@pytest.mark.parametrize("kwargs", [{"mode": "exact"}, {"floor": -1.0}, {"base": 0}])
def test_bad_settings_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_i2p_provider_retries_on_a_jittered_schedule(tmp_path: Path) -> None:
    """The I2P provider's SAM reconnects take their delays from the injected Backoff:
    every gap within the full-jitter bounds, and not the old fixed 2, 4, 8, ... steps."""
    import time

    from twisted.internet.task import Clock

    from aegis_hidden.config import load_config
    from aegis_hidden.events import EventBus
    from aegis_hidden.i2p._provider import I2PProvider
    from aegis_hidden.identity import create, load
    from aegis_hidden.testing import FakeSAMBridge, result_of

    clock = Clock()
    clock.advance(time.time())
    create(tmp_path / "identity", clock.seconds())
    ident = load(tmp_path / "identity", clock.seconds())
    bridge = FakeSAMBridge()
    events = EventBus()
    lost: list[float] = []
    events.subscribe(lambda e: lost.append(e["retry_in"]) if e["type"] == "i2p_session_lost"
                     else None)
    backoff = Backoff(base=2.0, cap=60.0, mode="full", floor=1.0,
                      random=random.Random(5).random)
    cfg = load_config(None, {"i2p.enabled": True, "i2p.tunnel_length": 1})
    provider = I2PProvider(object(), cfg, ident, tmp_path, events, clock=clock,
                           sam=bridge.endpoint(), backoff=backoff)
    provider.startService()
    result_of(provider.when_ready())
    bridge.stop()
    for _ in range(400):
        clock.advance(1)
    assert len(lost) >= 6
    for n, delay in enumerate(lost):
        assert 1.0 <= delay <= min(60.0, 2.0 * 2 ** n)
    assert lost[:4] != [2.0, 4.0, 8.0, 16.0]
    result_of(provider.stopService())
