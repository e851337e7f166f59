"""Keeps sessions with the bootstrap peers up and reports who was reached.

For every ``network.bootstrap_nodes`` entry the node keeps an authenticated
post-quantum session open through the connection pool (dialing again with
backoff when it drops), measures a ping round trip over it, and records each
peer it reached (outbound or inbound); ``<data dir>/status.json`` holds counts
of them, and the per-peer list only with ``logging.status_peers`` (the demo and
the integration tests turn it on): a disk should not hold the contact graph. A peer counts as *reachable*
only after the session handshake proved it holds its onion address's key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from .._backoff import Backoff
from ..addresses import split_optional_port
from ..identity import atomic_write

if TYPE_CHECKING:
    from ._core import NodeCore

STATUS_FILE = "status.json"


def bootstrap_peer(entry: str) -> str:
    """The peer id (address without port) of a ``network.bootstrap_nodes`` entry."""
    host, port = split_optional_port(entry)
    return (host if port.isdigit() else entry).lower()


class PeeringService(Service):
    """Dials the bootstrap peers through the node core and keeps ``status.json``."""

    log = Logger()
    name = "peering"

    def __init__(
        self,
        core: NodeCore,
        bootstrap_nodes: Sequence[str],
        data_dir: Path,
        clock: IReactorTime,
        *,
        wall: Callable[[], float] = time.time,
        status_interval: float = 2.0,
        redial_delay: float = 5.0,
        max_redial_delay: float = 120.0,
        ping_timeout: float = 120.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.core = core
        self.own = core.local_address
        self.bootstrap = [b for b in dict.fromkeys(bootstrap_peer(e) for e in bootstrap_nodes)
                          if b != self.own]
        self.status_path = Path(data_dir) / STATUS_FILE
        self.clock = clock
        self.wall = wall
        self.peers: dict[str, dict[str, Any]] = {}
        self.redial_delay = redial_delay
        self.max_redial_delay = max_redial_delay
        # jittered (full jitter, never under half the redial delay): fixed redial gaps
        # would be a fingerprint of this node on the transport
        self.backoff = backoff or Backoff(base=redial_delay, cap=max_redial_delay,
                                          mode="full", floor=redial_delay / 2)
        self.ping_timeout = ping_timeout
        self._status_interval = status_interval
        self._loop: LoopingCall | None = None
        self._dialers: list[Deferred[None]] = []
        core.pool.on_connected(self._connected)

    # -- what happened --------------------------------------------------------------------
    def _entry(self, peer: str) -> dict[str, Any]:
        return self.peers.setdefault(peer, {"times_reached": 0, "first_reached": self.wall(),
                                            "reachable": False, "connected": False})

    def _connected(self, peer: str) -> None:
        entry = self._entry(peer)
        entry.update(reachable=True, connected=True, authenticated=True,
                     last_reached=self.wall())
        entry["times_reached"] += 1
        link = self.core.pool.link(peer)
        if link is not None:
            entry["transport"] = str(getattr(link, "transport_name", "?"))
            link.when_closed().addBoth(lambda _: self._disconnected(peer))
        self.log.debug("peer {peer} reachable: authenticated session up", peer=peer)
        self.write_status()

    def _disconnected(self, peer: str) -> None:
        if not self.core.pool.connected(peer):
            self._entry(peer)["connected"] = False
            self.write_status()

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        # the core's transports: the same state /api/network/status shows
        transports: dict[str, Mapping[str, Any]] = {
            str(t.name): t.state() for t in self.core.transports}
        doc: dict[str, Any] = {
            "onion": self.own, "updated": self.wall(), "running": self.running,
            "transports": transports,
            "peers_reachable": sum(1 for p in self.peers.values() if p["reachable"]),
            "peers_connected": sum(1 for p in self.peers.values() if p["connected"]),
            "bootstrap_nodes": len(self.bootstrap)}
        if self.core.mixing is not None:  # the profile and rates, as the API shows them
            doc["mixing"] = self.core.mixing.status()
        # The per-peer list is the contact graph: on disk in the clear only when asked
        # for (logging.status_peers, tests); the API serves it.
        if self.core.config.logging.status_peers:
            doc["peers"] = self.peers
            doc["bootstrap_nodes"] = self.bootstrap
        return doc

    def write_status(self) -> None:
        data = json.dumps(self.status(), indent=2, sort_keys=True).encode() + b"\n"
        try:
            atomic_write(self.status_path, data, mode=0o600)
        except OSError as e:
            self.log.error("cannot write {path}: {error}", path=str(self.status_path),
                           error=str(e))

    # -- lifecycle -------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.write_status)
        self._loop.clock = self.clock
        self._loop.start(self._status_interval, now=True)
        for peer in self.bootstrap:
            self._dialers.append(Deferred.fromCoroutine(self._keep_connected(peer)))

    async def _keep_connected(self, peer: str) -> None:
        try:
            await self.core.when_ready()
            if self.core.store.get(peer) is None:
                await self.core.store.add(peer)
        except CancelledError:
            return
        retry = self.backoff.retrier()
        while self.running:
            try:
                link = await self.core.pool.get(peer)
                started = self.clock.seconds()
                await self.core.messenger.request(peer, {"type": "ping", "data": self.own},
                                                  timeout=self.ping_timeout)
            except CancelledError:
                return
            except Exception as e:  # noqa: BLE001 - every failure is logged and retried
                delay = retry.next()
                self.log.warn("cannot reach bootstrap peer {peer} ({error}); again in "
                              "{delay:.0f}s", peer=peer, error=str(e) or type(e).__name__,
                              delay=delay)
                if not await self._sleep(delay):
                    return
                continue
            retry.reset()
            rtt = self.clock.seconds() - started
            entry = self._entry(peer)
            entry.update(rtt=round(rtt, 4), last_direction="outbound", last_ping=self.wall())
            self.log.debug("peer {peer} answered a ping over the session in {rtt:.2f}s",
                          peer=peer, rtt=rtt)
            self.write_status()
            try:
                await link.when_closed()
            except CancelledError:
                return
            if not await self._sleep(self.redial_delay):
                return

    async def _sleep(self, delay: float) -> bool:
        try:
            await deferLater(self.clock, delay, lambda: None)
        except CancelledError:
            return False
        return bool(self.running)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for dialer in self._dialers:
            dialer.cancel()
        self._dialers = []
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.write_status()
        return succeed(None)
