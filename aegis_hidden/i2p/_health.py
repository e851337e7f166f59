"""Silent outgoing streams, per destination, and when to re-create the SAM session.

i2pd keeps the LeaseSets it fetched per local destination (per SAM session) and
uses a cached one until its leases expire (up to 10 minutes). When a peer's
router restarts, its destination comes back with new tunnels and a new
LeaseSet, but a node that cached the old one keeps sending to dead leases:
``STREAM CONNECT`` still answers ``RESULT=OK`` (the router does not wait for
the peer) and the stream stays *silent*, no byte ever comes back.

:class:`StreamHealth` watches every outgoing stream. A stream counts as
*failed* when ``STREAM CONNECT`` fails with ``TIMEOUT`` (the router's, or no
reply at all within ``connect_timeout`` seconds) or the SAM socket is lost,
and as *silent* when it connected but carried no byte from the peer within
``silent_after`` seconds (or closed before any byte came). A stream that
carries a byte resets its destination's count. After ``threshold`` consecutive
silent/failed streams to one destination within ``window`` seconds, the
provider is asked to re-create its SAM session: the new session (same stored
key, so the same destination) starts with an empty LeaseSet cache and the
router fetches the peer's fresh LeaseSet.

``CANT_REACH_PEER`` is counted (``unreachable_streams``) but is no strike: i2pd
answers it only when it holds no LeaseSet and its lookup at the floodfills
found none, which a new session would repeat (a fresh peer whose LeaseSet is
not published yet, or a peer that is offline); a stale cache shows as silent
streams instead.

It cannot flap: at most one re-creation per ``min_interval`` seconds, and a
destination that caused one causes none again for ``dest_cooldown`` seconds
unless a stream to it carried data in between (a peer that is really offline
costs one re-creation, not one every few minutes). Everything runs on the
injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._destination import Destination
from ._errors import DestinationError


@dataclass(frozen=True)
class HealthPolicy:
    """When silent/failed streams re-create the SAM session (see the module docstring)."""

    silent_after: float = 30.0
    threshold: int = 2
    window: float = 600.0
    min_interval: float = 300.0
    dest_cooldown: float = 1800.0
    connect_timeout: float = 60.0  # no STREAM STATUS within it: a failed stream (0: none)

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        for name in ("silent_after", "window", "min_interval", "dest_cooldown",
                     "connect_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


def destination_key(destination: str) -> str:
    """One name per destination: the ``.b32.i2p`` of a base64 destination, lower case."""
    name = destination.strip().lower()
    if name.endswith(".i2p"):
        return name
    try:
        return Destination.from_base64(destination.strip()).b32
    except DestinationError:
        return name


@dataclass
class _Record:
    strikes: list[float] = field(default_factory=list)  # times of consecutive bad streams
    caused_at: float | None = None  # when it last caused a re-creation


RecreateRequest = Callable[[str, int], bool]


class StreamWatch:
    """One outgoing stream: reports data / silence / loss once to :class:`StreamHealth`."""

    def __init__(self, health: StreamHealth, destination: str) -> None:
        self._health = health
        self.destination = destination
        self.settled = False
        self._timer: IDelayedCall | None = None
        if health.policy.silent_after > 0:
            self._timer = health.clock.callLater(health.policy.silent_after, self._silent,
                                                 "no byte from the peer in "
                                                 f"{health.policy.silent_after:g}s")

    def _settle(self) -> bool:
        if self.settled:
            return False
        self.settled = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return True

    def stream_data(self) -> None:
        """A byte came from the peer: the destination is reachable."""
        if self._settle():
            self._health.succeeded(self.destination)

    def stream_lost(self) -> None:
        """The stream closed; silent if no byte ever came."""
        self._silent("closed before any byte from the peer")

    def _silent(self, why: str) -> None:
        if self._settle():
            self._health.silent(self.destination, why)


class StreamHealth:
    """Counts silent/failed streams per destination (see the module docstring).

    ``on_recreate(destination, strikes)`` is called when the session should be
    re-created; it returns False when it cannot act on it (no live session),
    in which case nothing is recorded.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, on_recreate: RecreateRequest,
                 policy: HealthPolicy | None = None) -> None:
        self.clock = clock
        self.policy = policy if policy is not None else HealthPolicy()
        self._on_recreate = on_recreate
        self._records: dict[str, _Record] = {}
        self._last_recreate: float | None = None
        self.silent_streams = 0
        self.failed_streams = 0
        self.unreachable_streams = 0
        self.recreations = 0

    def watch(self, destination: str) -> StreamWatch:
        """Watch a stream that ``STREAM CONNECT`` just opened."""
        return StreamWatch(self, destination_key(destination))

    def succeeded(self, destination: str) -> None:
        record = self._records.pop(destination_key(destination), None)
        if record is not None and record.strikes:
            self.log.info("I2P: {dest} answers again", dest=destination_key(destination))

    def silent(self, destination: str, why: str = "") -> None:
        self.silent_streams += 1
        self._strike(destination_key(destination), f"silent stream ({why})" if why
                     else "silent stream")

    def failed(self, destination: str, why: str = "") -> None:
        self.failed_streams += 1
        self._strike(destination_key(destination), f"stream failed ({why})" if why
                     else "stream failed")

    def unreachable(self, destination: str, why: str = "") -> None:
        """``CANT_REACH_PEER``: counted, no strike (a new session would not find it either)."""
        self.unreachable_streams += 1
        self.log.debug("I2P: {dest} unreachable ({why})", dest=destination_key(destination),
                       why=why)

    def strikes(self, destination: str) -> int:
        record = self._records.get(destination_key(destination))
        return len(record.strikes) if record is not None else 0

    def _strike(self, dest: str, why: str) -> None:
        now = self.clock.seconds()
        p = self.policy
        record = self._records.setdefault(dest, _Record())
        record.strikes = [t for t in record.strikes if now - t <= p.window]
        record.strikes.append(now)
        self.log.info("I2P: {why} to {dest} ({n} in a row)", why=why, dest=dest,
                      n=len(record.strikes))
        if len(record.strikes) < p.threshold:
            return
        if record.caused_at is not None and now - record.caused_at < p.dest_cooldown:
            return
        if self._last_recreate is not None and now - self._last_recreate < p.min_interval:
            return
        self.recreations += 1
        if not self._on_recreate(dest, len(record.strikes)):
            self.recreations -= 1
            return
        self._last_recreate = now
        # a new session has an empty LeaseSet cache: every count starts again
        for other in self._records.values():
            other.strikes = []
        record.caused_at = now
