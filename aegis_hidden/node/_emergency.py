"""Emergency controls: isolate and resume, a node-wide bandwidth cap, and the
restart of one transport (docs/operations.md, "Emergency procedures").

- **Isolate** closes every live session, refuses new ones both ways (the
  session layer closes incoming streams before any handshake; the pool dials
  nobody and refuses any session that still completes) and keeps every queued
  message in the outbox. The state is written to ``emergency.json`` in the data
  dir, so a node restarted while isolated stays isolated: it must never
  reconnect quietly. **Resume** lifts it and sends the outbox at once.
- **Throttle** caps the bytes per second the cell scheduler hands to all links
  together (:class:`aegis_hidden.mixing.Throttle`); ``None`` lifts it. Also kept
  in ``emergency.json``.
- **Restart a transport** (tor or i2p): the sessions over it are closed, the
  provider restarts (tor: its own tor process, or the control connection in
  connect mode, and the onion is published again; i2p: the SAM sessions), and
  once it is ready again the queued messages are sent at once.

Each action is logged and emitted on the event bus (``node_isolated``,
``node_resumed``, ``node_throttled``, ``transport_restarting``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .. import _json as strict_json
from ..events import EventBus
from ..interfaces import IPeerLink, ITransportProvider
from ..mixing import Throttle, check_bytes_per_second
from ._pool import ConnectionPool

STATE_FILE = "emergency.json"


class EmergencyError(Exception):
    """An emergency action that cannot be done as asked (the message says why)."""


class UnknownTransport(EmergencyError):
    """No transport of that name runs on this node."""


class NotSupported(EmergencyError):
    """This node has no part that could do it (no cell scheduler, no restartable
    transport)."""


class EmergencyControls:
    """The node's emergency switches (``core.emergency``).

    ``retry_all()``: sends every queued message again now (the messenger's).
    """

    log = Logger()

    def __init__(self, pool: ConnectionPool, events: EventBus, clock: IReactorTime,
                 data_dir: str | os.PathLike[str], transports: list[ITransportProvider],
                 retry_all: Callable[[], None]) -> None:
        self._pool = pool
        self._events = events
        self._clock = clock
        self._path = Path(data_dir) / STATE_FILE
        self._transports = transports
        self._retry_all = retry_all
        self.isolated = False
        self.isolated_since: float | None = None
        self.reason = ""
        self._cap: int | None = None
        self.throttle: Throttle | None = None
        self._largest_write = 1
        self._load()
        # The pool's own checks (revoked identity...) stay: these run first.
        refuse_dialing, gate = pool.refuse_dialing, pool.gate

        def refuse(prev: Callable[[], str | None] = refuse_dialing) -> str | None:
            return "the node is isolated" if self.isolated else prev()

        def gated(link: IPeerLink, peer: str, outgoing: bool) -> str | None:
            if self.isolated:
                return "isolated"
            return gate(link, peer, outgoing) if gate is not None else None

        pool.refuse_dialing = refuse
        pool.gate = gated

    # -- state file ---------------------------------------------------------
    def _load(self) -> None:
        try:
            data = strict_json.loads(self._path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            # Fail safe: a state file that cannot be read may have said "isolated".
            self.log.error("cannot read {path} ({error}): starting isolated; "
                           "`aegis-hidden node resume` lifts it", path=str(self._path),
                           error=str(e))
            self.isolated, self.reason = True, "state file unreadable"
            return
        if not isinstance(data, dict):
            data = {}
        self.isolated = data.get("isolated") is True
        if self.isolated:
            since = data.get("since")
            self.isolated_since = float(since) if isinstance(since, int | float) else None
            self.reason = str(data.get("reason") or "")
            self.log.warn("the node starts isolated (since {since}): no sessions until "
                          "`aegis-hidden node resume`", since=self.isolated_since)
        try:
            self._cap = check_bytes_per_second(data.get("throttle_bytes_per_second"))
        except ValueError as e:
            self.log.error("ignoring the stored throttle: {error}", error=str(e))

    def _save(self) -> None:
        data = {"isolated": self.isolated, "since": self.isolated_since,
                "reason": self.reason, "throttle_bytes_per_second": self._cap}
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    # -- wiring -------------------------------------------------------------
    def attach_sessions(self, factory: Any) -> None:
        """Let the session layer close incoming streams before any handshake while
        isolated (a factory without ``refuse_incoming``: the pool still refuses)."""
        if hasattr(factory, "refuse_incoming"):
            factory.refuse_incoming = lambda: self.isolated

    def attach_scheduler(self, scheduler: Any, cell_bytes: int) -> None:
        """The cell scheduler the cap applies to (one with a ``throttle`` attribute)."""
        if not hasattr(scheduler, "throttle"):
            return
        self.throttle = Throttle(self._clock, cell_bytes)
        self._largest_write = int(getattr(scheduler, "burst", 1) or 1)
        scheduler.throttle = self.throttle
        if self._cap is not None:
            self.throttle.set_rate(self._cap, self._largest_write)
            self.log.warn("bandwidth cap in force: {cap} bytes/s (`aegis-hidden node "
                          "throttle 0` lifts it)", cap=self._cap)

    def stop(self) -> None:
        if self.throttle is not None:
            self.throttle.stop()

    # -- actions --------------------------------------------------------------
    def isolate(self, reason: str = "") -> bool:
        """Close every session and refuse new ones; True if it was not isolated."""
        changed = not self.isolated
        if changed:
            self.isolated, self.isolated_since = True, self._clock.seconds()
            self.reason = reason
            self._save()
        closed = 0
        for peer in self._pool.peers():
            self._pool.close(peer, "isolated")
            closed += 1
        self.log.warn("node isolated{why}: {closed} sessions closed, no dialing, no "
                      "accepting; queued messages are kept",
                      why=f" ({reason})" if reason else "", closed=closed)
        self._events.emit("node_isolated", sessions_closed=closed, reason=reason)
        return changed

    def resume(self) -> bool:
        """Lift the isolation and send the outbox now; True if it was isolated."""
        changed = self.isolated
        self.isolated, self.isolated_since, self.reason = False, None, ""
        if changed:
            self._save()
        self.log.warn("node resumed: dialing and accepting again")
        self._events.emit("node_resumed")
        self._retry_all()
        return changed

    def set_throttle(self, bytes_per_second: object) -> int | None:
        """Cap the node's sending at ``bytes_per_second`` (None or 0: no cap);
        ValueError for a bad value, NotSupported with no scheduler to cap."""
        cap = check_bytes_per_second(bytes_per_second)
        if self.throttle is None:
            raise NotSupported("this node has no cell scheduler to throttle")
        self._cap = cap
        self._save()
        self.throttle.set_rate(cap, self._largest_write)
        if cap is None:
            self.log.warn("bandwidth cap lifted")
        else:
            self.log.warn("bandwidth cap set: {cap} bytes/s for all links together", cap=cap)
        self._events.emit("node_throttled", bytes_per_second=cap)
        return cap

    def transport(self, name: str) -> ITransportProvider:
        for provider in self._transports:
            if str(provider.name) == name:
                return provider
        running = ", ".join(sorted(str(p.name) for p in self._transports)) or "none"
        raise UnknownTransport(f"no {name!r} transport runs on this node (running: {running})")

    def restart_transport(self, name: str) -> Deferred[None]:
        """Close the sessions over ``name``, restart it, and once it is ready again
        send the queued messages. Fires when the restart has begun (not when it is
        ready: tor may take a minute)."""
        provider = self.transport(name)
        restart = getattr(provider, "restart", None)
        if not callable(restart):
            if not (callable(getattr(provider, "stopService", None))
                    and callable(getattr(provider, "startService", None))):
                raise NotSupported(f"the {name} transport cannot be restarted here")
            restart = self._cycle(provider)  # i2p: stop (SAM sessions, own i2pd) and start
        closed = 0
        for peer in self._pool.peers():
            link = self._pool.link(peer)
            if link is not None and str(getattr(link, "transport_name", "")) == name:
                self._pool.close(peer, f"{name} restarting")
                closed += 1
        self.log.warn("restarting the {name} transport: {closed} sessions over it closed; "
                      "queued messages are kept", name=name, closed=closed)
        self._events.emit("transport_restarting", transport=name, sessions_closed=closed)
        d: Deferred[None] = maybeDeferred(restart, "restart asked by the operator")

        def began(_: object) -> None:
            provider.when_ready().addCallbacks(self._transport_ready, self._not_ready,
                                               callbackArgs=(name,), errbackArgs=(name,))

        d.addCallback(began)
        return d

    @staticmethod
    def _cycle(provider: Any) -> Callable[[str], Deferred[None]]:
        def restart(why: str) -> Deferred[None]:
            d: Deferred[None] = maybeDeferred(provider.stopService)
            d.addCallback(lambda _: provider.startService())
            return d
        return restart

    def _transport_ready(self, _: object, name: str) -> None:
        self.log.info("the {name} transport is ready again", name=name)
        if not self.isolated:
            self._retry_all()

    def _not_ready(self, failure: Any, name: str) -> None:
        self.log.error("the {name} transport did not come back: {error}", name=name,
                       error=failure.getErrorMessage())

    def status(self) -> dict[str, Any]:
        return {
            "isolated": self.isolated,
            "isolated_since": self.isolated_since,
            "isolation_reason": self.reason or None,
            "throttle": self.throttle.status() if self.throttle is not None else
            {"bytes_per_second": self._cap, "refused_writes": 0, "admitted_bytes": 0},
        }
