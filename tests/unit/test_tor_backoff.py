"""The backoff schedule: exponential, capped, jittered within bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.tor import Backoff


def test_schedule_without_jitter_effect() -> None:
    b = Backoff(base=1.0, factor=2.0, cap=30.0, jitter=0.25, random=lambda: 0.5)
    assert b.schedule(7) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_jitter_extremes() -> None:
    low = Backoff(base=2.0, factor=3.0, cap=100.0, jitter=0.5, random=lambda: 0.0)
    high = Backoff(base=2.0, factor=3.0, cap=100.0, jitter=0.5, random=lambda: 0.999999)
    assert low.schedule(3) == [1.0, 3.0, 9.0]
    assert high.schedule(3) == pytest.approx([3.0, 9.0, 27.0], rel=1e-5)


@given(st.integers(0, 200), st.floats(0, 0.99), st.floats(0, 0.999999))
def test_delay_within_bounds(attempt: int, jitter: float, u: float) -> None:
    b = Backoff(base=0.5, factor=2.0, cap=60.0, jitter=jitter, random=lambda: u)
    d = b.delay(attempt)
    nominal = min(60.0, 0.5 * 2.0 ** min(attempt, 64))
    assert nominal * (1 - jitter) - 1e-9 <= d <= nominal * (1 + jitter) + 1e-9


@pytest.mark.parametrize("kwargs", [
    {"base": 0}, {"factor": 0.5}, {"cap": 0.1}, {"jitter": 1.0}, {"jitter": -0.1},
])
def test_invalid(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_negative_attempt() -> None:
    with pytest.raises(ValueError, match="start at 0"):
        Backoff().delay(-1)
