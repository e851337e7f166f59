"""The one timer of a mixing component: armed for the earliest due time, never more."""

from __future__ import annotations

import math
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: Times closer than this are the same time (float arithmetic on the clock).
EPSILON = 1e-9


def rearm(clock: IReactorTime, call: IDelayedCall | None, when: float,
          fire: Callable[[], None]) -> IDelayedCall | None:
    """The timer that fires ``fire`` at ``when`` (``math.inf``: no timer at all).

    Reuses ``call`` when it is still pending (moved only if ``when`` changed), so
    a component keeps exactly one DelayedCall however many items it holds.
    """
    if when == math.inf:
        if call is not None and call.active():
            call.cancel()
        return None
    delay = max(0.0, when - clock.seconds())
    if call is not None and call.active():
        if abs(call.getTime() - when) > EPSILON:
            call.reset(delay)
        return call
    return clock.callLater(delay, fire)
