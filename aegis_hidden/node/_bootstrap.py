"""A minimal peer "hello": two nodes show they reach each other over onion services.

The node listens on ``network.listen_address`` (the target of its identity onion
service) and dials every ``network.bootstrap_nodes`` entry through its transport
provider. On each connection both sides send one HELLO line (their onion address
and a fresh nonce) and answer the other's with an ACK echoing that nonce; once a
side has the peer's HELLO and the ACK of its own nonce, data went both ways and
the peer is logged as ``peer {onion} reachable`` and recorded in
``<data dir>/status.json``. Outbound links that drop are dialed again with backoff.

The exchange itself is the pure :class:`HelloExchange`; the session layer will
replace it (the peer's claimed onion is not authenticated here).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, UNIXServerEndpoint
from twisted.internet.interfaces import IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ..identity import atomic_write, is_onion_v3
from ..interfaces import IEventSink, ITransportProvider

VERSION = "1"
STATUS_FILE = "status.json"


class HelloError(ValueError):
    """A hello line that is malformed, out of order, or from the wrong peer."""


@dataclass(frozen=True)
class PeerReached:
    """The exchange completed: ``onion`` answered our nonce and sent its own."""

    onion: str
    rtt: float


@dataclass
class HelloExchange:
    """Sans-I/O hello: ``start()`` -> our line, ``receive(line)`` -> (reply, result)."""

    own_onion: str
    now: Callable[[], float]
    expected_peer: str | None = None
    nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    peer: str | None = None
    acked: bool = False
    started: float = 0.0

    def start(self) -> bytes:
        self.started = self.now()
        return f"AEGIS-HELLO {VERSION} {self.own_onion} {self.nonce}".encode()

    def receive(self, line: bytes) -> tuple[bytes | None, PeerReached | None]:
        try:
            words = line.decode("ascii").split()
        except UnicodeDecodeError:
            raise HelloError("hello line is not ASCII") from None
        reply: bytes | None = None
        if len(words) == 4 and words[0] == "AEGIS-HELLO":
            version, onion, nonce = words[1:]
            if version != VERSION:
                raise HelloError(f"unsupported hello version {version!r}")
            if not is_onion_v3(onion):
                raise HelloError("hello does not carry a v3 onion address")
            if len(nonce) != 32 or any(c not in "0123456789abcdef" for c in nonce):
                raise HelloError("hello nonce must be 32 lower-case hex digits")
            if self.peer is not None:
                raise HelloError("second HELLO on one connection")
            if self.expected_peer is not None and onion.lower() != self.expected_peer:
                raise HelloError(f"dialed {self.expected_peer} but {onion} answered")
            self.peer = onion.lower()
            reply = f"AEGIS-ACK {nonce} {self.own_onion}".encode()
        elif len(words) == 3 and words[0] == "AEGIS-ACK":
            if words[1] != self.nonce:
                raise HelloError("ACK does not echo our nonce")
            if self.acked:
                raise HelloError("second ACK on one connection")
            self.acked = True
        else:
            raise HelloError(f"unexpected line {line[:40]!r}")
        if self.peer is not None and self.acked:  # each half happens once: fires once
            return reply, PeerReached(self.peer, self.now() - self.started)
        return reply, None


class _HelloProtocol(LineOnlyReceiver):
    MAX_LENGTH = 512
    delimiter = b"\n"

    def __init__(self, service: HelloService, direction: str, expected: str | None) -> None:
        self._service = service
        self._direction = direction
        self._exchange = HelloExchange(service.own_onion, service.wall, expected)
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.sendLine(self._exchange.start())

    def lineReceived(self, line: bytes) -> None:
        try:
            reply, reached = self._exchange.receive(line.rstrip(b"\r"))
        except HelloError as e:
            self._service.log.warn("hello from a {direction} peer failed: {error}",
                                   direction=self._direction, error=str(e))
            assert self.transport is not None
            self.transport.loseConnection()
            return
        if reply is not None:
            self.sendLine(reply)
        if reached is not None:
            self._service.reached(reached, self._direction)

    def lineLengthExceeded(self, line: bytes) -> None:
        assert self.transport is not None
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self._exchange.peer is not None:
            self._service.disconnected(self._exchange.peer, self._direction)
        if not self.closed.called:
            self.closed.callback(None)


def server_endpoint(reactor: Any, address: str) -> IStreamServerEndpoint:
    """``127.0.0.1:PORT`` or ``unix:/path`` (the config only allows loopback)."""
    if address.startswith("unix:"):
        return UNIXServerEndpoint(reactor, address[5:])
    host, _, port = address.rpartition(":")
    return TCP4ServerEndpoint(reactor, int(port), interface=host.strip("[]"))


def split_peer(entry: str, default_port: int) -> tuple[str, int]:
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit():
        return host.lower(), int(port)
    return entry.lower(), default_port


class HelloService(Service):
    """Listens for peers, dials the bootstrap peers, keeps ``status.json`` current."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        own_onion: str,
        listen_address: str,
        bootstrap_nodes: Sequence[str],
        transports: Sequence[ITransportProvider],
        data_dir: Path,
        events: IEventSink,
        *,
        default_port: int = 7701,
        clock: IReactorTime | None = None,
        wall: Callable[[], float] = time.time,
        status_interval: float = 2.0,
        redial_delay: float = 5.0,
    ) -> None:
        self.setName("hello")
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self.own_onion = own_onion
        self.listen_address = listen_address
        self.bootstrap = [split_peer(b, default_port) for b in bootstrap_nodes]
        self.transports = list(transports)
        self.status_path = Path(data_dir) / STATUS_FILE
        self.events = events
        self.wall = wall
        self.peers: dict[str, dict[str, Any]] = {}
        self._status_interval = status_interval
        self._redial_delay = redial_delay
        self._port: IListeningPort | None = None
        self._dialers: list[Deferred[None]] = []
        self._loop: LoopingCall | None = None
        self._open: list[_HelloProtocol] = []

    # -- events from connections ------------------------------------------------------
    def reached(self, peer: PeerReached, direction: str) -> None:
        entry = self.peers.setdefault(peer.onion, {"times_reached": 0,
                                                   "first_reached": self.wall()})
        entry.update(reachable=True, connected=True, last_direction=direction,
                     last_reached=self.wall(), rtt=round(peer.rtt, 4))
        entry["times_reached"] += 1
        self.log.info("peer {onion} reachable ({direction}, hello round trip {rtt:.2f}s)",
                      onion=peer.onion, direction=direction, rtt=peer.rtt)
        self.events.emit("peer_reachable", peer=peer.onion, direction=direction,
                         rtt=peer.rtt)
        self.write_status()

    def disconnected(self, onion: str, direction: str) -> None:
        entry = self.peers.get(onion)
        if entry is not None:
            entry["connected"] = False
            self.write_status()

    # -- status ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        transports: dict[str, Mapping[str, Any]] = {}
        for t in self.transports:
            transports[str(t.name)] = t.state()
        return {"onion": self.own_onion, "updated": self.wall(), "running": self.running,
                "transports": transports, "peers": self.peers}

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
        self._loop.clock = self._clock
        self._loop.start(self._status_interval, now=True)
        Deferred.fromCoroutine(self._listen()).addErrback(self._listen_failed)
        for onion, port in self.bootstrap:
            if onion == self.own_onion:
                continue
            self._dialers.append(Deferred.fromCoroutine(self._keep_dialing(onion, port)))

    async def _listen(self) -> None:
        factory = Factory.forProtocol(lambda: _HelloProtocol(self, "inbound", None))
        factory.noisy = False
        self._port = await server_endpoint(self._reactor, self.listen_address).listen(factory)
        self.log.info("listening for peers on {address}", address=self.listen_address)

    def _listen_failed(self, failure: Failure) -> None:
        self.log.critical("cannot listen on network.listen_address {address}: {error}",
                          address=self.listen_address, error=failure.getErrorMessage())

    def _transport_for(self, onion: str) -> ITransportProvider | None:
        for t in self.transports:
            if t.handles(onion):
                return t
        return None

    async def _keep_dialing(self, onion: str, port: int) -> None:
        transport = self._transport_for(onion)
        if transport is None:
            self.log.warn("no transport handles bootstrap node {onion}", onion=onion)
            return
        failures = 0
        while self.running:
            try:
                proto = await transport.client_endpoint(onion, port).connect(
                    Factory.forProtocol(lambda: _HelloProtocol(self, "outbound", onion)))
            except CancelledError:
                return
            except Exception as e:  # noqa: BLE001 - any dial failure is logged and retried
                failures += 1
                delay = min(60.0, self._redial_delay * failures)
                self.log.warn("cannot reach bootstrap node {onion} ({error}); again in "
                              "{delay:.0f}s", onion=onion, error=str(e) or type(e).__name__,
                              delay=delay)
                try:
                    await deferLater(self._clock, delay, lambda: None)
                except CancelledError:
                    return
                continue
            failures = 0
            assert isinstance(proto, _HelloProtocol)
            self._open.append(proto)
            try:
                await proto.closed
            except CancelledError:
                return
            finally:
                if proto in self._open:
                    self._open.remove(proto)
            self.log.info("link to {onion} closed; dialing again in {delay:.0f}s",
                          onion=onion, delay=self._redial_delay)
            try:
                await deferLater(self._clock, self._redial_delay, lambda: None)
            except CancelledError:
                return

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for dialer in self._dialers:
            dialer.cancel()
        self._dialers = []
        for proto in list(self._open):
            if proto.transport is not None:
                proto.transport.loseConnection()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.write_status()
        port, self._port = self._port, None
        if port is not None:
            result = port.stopListening()
            if isinstance(result, Deferred):
                return result
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d
