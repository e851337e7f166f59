"""The connection pool: at most ``network.max_connections`` live sessions.

It reuses a live session to a peer, shares one dial between concurrent callers,
fails over from a peer's onion address to its I2P destination, closes sessions
idle for longer than ``idle_timeout``, and evicts the least recently used
session when full. Of the sessions unused for ``idle_grace`` seconds, at most
``keep_idle`` (``performance.connection_pool_size``) are kept. Blacklisted
peers are refused at dial and at accept, and so are revoked identities
(``is_revoked``). A link is adopted as peer P's only if its verified record is
P's (failover to an I2P address must not bind another identity to P), and only
if the ``gate`` (the node's pin and record checks) lets it in. Every link's
messages go to one ``on_message(peer, data)`` callback (the channel router).
The pool hands out each session as a :class:`~._channels.ChannelLink`, whose
``send_message`` sends on the messaging channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..events import EventBus
from ..identity import RecordError
from ..interfaces import IPeerLink, ISessionFactory
from ..peers import (
    ORIGIN_PEER,
    Behaviour,
    PeerAddressError,
    PeerStore,
    UnknownPeer,
    check_peer_address,
)
from ..session import CloseReason, SessionError
from ._channels import ChannelLink
from ._metrics import Metrics


class PeerBlocked(Exception):
    """The peer is blacklisted."""


class PeerRevoked(PeerBlocked):
    """The peer's identity was revoked (a signed revocation is stored): never again."""


class NoSessionFactory(ConnectionError):
    """No session layer is attached yet (the node runs without transports)."""


class DialFailed(ConnectionError):
    """Every address of the peer failed; the message lists each reason."""


# How each way a session handshake can fail reflects on the peer (docs/reputation.md).
# Transport trouble (connection lost, truncated) says nothing about the peer.
_SESSION_REASONS: dict[CloseReason, Behaviour] = {
    CloseReason.AUTH_FAILED: Behaviour.INVALID_SIGNATURE,
    CloseReason.WRONG_IDENTITY: Behaviour.INVALID_SIGNATURE,
    CloseReason.PROTOCOL_ERROR: Behaviour.PROTOCOL_VIOLATION,
    CloseReason.BAD_CELL: Behaviour.PROTOCOL_VIOLATION,
    CloseReason.TAMPERED: Behaviour.PROTOCOL_VIOLATION,
    CloseReason.REPLAY: Behaviour.PROTOCOL_VIOLATION,
    CloseReason.MESSAGE_TOO_LARGE: Behaviour.PROTOCOL_VIOLATION,
    CloseReason.ADDRESS_MISMATCH: Behaviour.HANDSHAKE_FAILED,
    CloseReason.VERSION_MISMATCH: Behaviour.HANDSHAKE_FAILED,
    CloseReason.CELL_SIZE_MISMATCH: Behaviour.HANDSHAKE_FAILED,
    CloseReason.TIMEOUT: Behaviour.TIMEOUT,
}


def classify_failure(error: BaseException) -> Behaviour | None:
    """Which reputation behaviour a dial failure shows (None: says nothing of the peer).

    The session layer can tag its exceptions with a ``reputation_behaviour``
    attribute (a :class:`Behaviour` value such as ``"invalid_signature"``).
    """
    tagged = getattr(error, "reputation_behaviour", None)
    if isinstance(tagged, str):
        try:
            return Behaviour(tagged)
        except ValueError:
            return None
    if isinstance(error, SessionError):
        return _SESSION_REASONS.get(error.reason)
    if isinstance(error, RecordError):
        return Behaviour.INVALID_SIGNATURE
    if isinstance(error, TimeoutError | asyncio.TimeoutError | CancelledError):
        return Behaviour.TIMEOUT
    return None


def link_onion(link: IPeerLink) -> str | None:
    """The onion address of the link's verified record (None: no record to tell)."""
    onion = getattr(getattr(link, "record", None), "onion", None)
    return onion.lower() if isinstance(onion, str) else None


def link_is_peer(link: IPeerLink, peer: str) -> bool:
    """Whether ``link`` is a session with ``peer`` itself, not just with one of its addresses.

    A peer known by its onion address is that onion's key: the record the
    handshake verified must be that onion's, whichever address was dialled (a
    failover ``.b32.i2p`` proves only that its own record binds it). A peer
    known only by its ``.b32.i2p`` address is whoever proved that address.
    """
    if peer.endswith(".onion"):
        return link_onion(link) == peer
    return str(link.peer).lower() == peer


# gate(link, peer, outgoing) -> None to let the link in, or why it is refused
Gate = Callable[[IPeerLink, str, bool], "str | None"]


#: How long :meth:`ConnectionPool.stop` waits for the sessions it closed (a paced
#: scheduler drains a closing session's queue for at most mixing's DRAIN_SECONDS, 5).
STOP_WAIT = 6.0


def _cancel_then_pass(result: object, timer: IDelayedCall) -> object:
    if timer.active():
        timer.cancel()
    return result


class ConnectionPool:
    log = Logger()

    def __init__(
        self,
        store: PeerStore,
        events: EventBus,
        metrics: Metrics,
        clock: IReactorTime,
        on_message: Callable[[str, bytes], None],
        *,
        max_connections: int,
        idle_timeout: float = 300.0,
        dial_timeout: float = 60.0,
        keep_idle: int | None = None,
        idle_grace: float = 60.0,
    ) -> None:
        self._store = store
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._on_message = on_message
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.dial_timeout = dial_timeout
        self.keep_idle = keep_idle
        self.idle_grace = idle_grace
        self._factory: ISessionFactory | None = None
        self._links: dict[str, ChannelLink] = {}
        self._extra: set[Any] = set()  # second links of a peer (crossed dials), kept for receiving
        self._last_used: dict[str, float] = {}
        self._outgoing: set[str] = set()  # peers whose session in use this node dialed
        self._dialing: dict[str, list[Deferred[IPeerLink]]] = {}
        self._connected_listeners: list[Callable[[str], None]] = []
        self._disconnected_listeners: list[Callable[[str], None]] = []
        self._reaper = LoopingCall(self._reap_idle)
        self._reaper.clock = clock
        self.is_revoked: Callable[[str], bool] = lambda peer: False
        self.gate: Gate | None = None
        self.refuse_dialing: Callable[[], str | None] = lambda: None
        self.on_dial_failed: Callable[[str, BaseException], None] | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._stopping = False
        self._status_writes: set[Deferred[Any]] = set()

    # -- wiring -------------------------------------------------------------
    def attach(self, factory: ISessionFactory) -> None:
        """Use ``factory`` to dial, and accept the sessions it hands us."""
        self._factory = factory
        factory.on_incoming(self._incoming)

    def on_connected(self, callback: Callable[[str], None]) -> None:
        """``callback(peer)`` each time a session with a peer becomes usable."""
        self._connected_listeners.append(callback)

    def on_disconnected(self, callback: Callable[[str], None]) -> None:
        """``callback(peer)`` each time a peer's session (the one in use) closes."""
        self._disconnected_listeners.append(callback)

    def start(self) -> None:
        self._stopping = False
        if not self._reaper.running:
            period = min(self.idle_timeout, self.idle_grace) / 4
            self._reaper.start(max(1.0, period), now=False)

    def stop(self) -> Deferred[None]:
        """Close every session. Fires once they have all closed and their status is
        saved, or after :data:`STOP_WAIT` seconds: on a paced scheduler a session
        closing with cells queued sends them at its slots before its CLOSE, and the
        node must not close its database under the status updates that follow."""
        if self._reaper.running:
            self._reaper.stop()
        self._stopping = True  # a dial that completes from now on is closed, not adopted
        done: Deferred[None] = Deferred()
        self._stop_waiters.append(done)
        for link in [*self._links.values(), *self._extra]:
            link.close("node stopping")
        if not done.called:
            timer = self._clock.callLater(STOP_WAIT, self._stopped, timed_out=True)
            done.addBoth(_cancel_then_pass, timer)
            self._stopped()
        return done

    def _stopped(self, timed_out: bool = False) -> None:
        """Fire the waiters of :meth:`stop` once nothing is open or being saved."""
        if not timed_out and (self._links or self._extra or self._status_writes):
            return
        if timed_out:
            self.log.warn("{n} sessions still open {s:g}s after the node began stopping",
                          n=len(self._links) + len(self._extra), s=STOP_WAIT)
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)

    # -- state --------------------------------------------------------------
    def connected(self, peer: str) -> bool:
        return peer in self._links

    def peers(self) -> list[str]:
        return list(self._links)

    def __len__(self) -> int:
        return len(self._links)

    def link(self, peer: str) -> IPeerLink | None:
        return self._links.get(peer)

    def dialed(self, peer: str) -> bool:
        """Whether this node dialed the session in use with ``peer`` (False: the peer did,
        or there is none). Pub/sub keeps a quota of such peers in its meshes."""
        return peer in self._outgoing

    def touch(self, peer: str) -> None:
        if peer in self._links:
            self._last_used[peer] = self._clock.seconds()

    # -- dialing ------------------------------------------------------------
    def get(self, peer: str) -> Deferred[IPeerLink]:
        """A live session with ``peer``: an existing one, or a new dial."""
        return Deferred.fromCoroutine(self._get(peer))

    async def _get(self, peer: str) -> IPeerLink:
        if self.is_revoked(peer.lower()):
            raise PeerRevoked(f"{peer} has revoked its identity")
        if self._store.is_blocked(peer):
            raise PeerBlocked(f"{peer} is blacklisted")
        why = self.refuse_dialing()
        if why is not None:
            raise DialFailed(f"not dialling {peer}: {why}")
        live = self._links.get(peer)
        if live is not None:
            self.touch(peer)
            return live
        if peer in self._dialing:
            waiter: Deferred[IPeerLink] = Deferred()
            self._dialing[peer].append(waiter)
            return await waiter
        self._dialing[peer] = []
        try:
            link = await self._dial(peer)
        except BaseException as e:
            for waiter in self._dialing.pop(peer, []):
                waiter.errback(e)
            raise
        for waiter in self._dialing.pop(peer, []):
            waiter.callback(link)
        return link

    async def _dial(self, peer: str) -> IPeerLink:
        if self._factory is None:
            raise NoSessionFactory("no session layer attached: the node has no transport yet")
        info = self._store.get(peer)
        if info is None:
            raise UnknownPeer(peer)
        reasons: list[str] = []
        for address in info.addresses():
            d = self._factory.connect(address)
            d.addTimeout(self.dial_timeout, self._clock)
            try:
                link = await d
            except Exception as e:  # noqa: BLE001 - each failure is recorded, then failover
                self._metrics.inc("connection_attempts_failed")
                reasons.append(f"{address}: {e.__class__.__name__}: {e}")
                behaviour = classify_failure(e)
                if behaviour in (Behaviour.HANDSHAKE_FAILED, Behaviour.INVALID_SIGNATURE):
                    self._metrics.inc("session_auth_failures")
                if behaviour is not None:
                    await self._store.observe(peer, behaviour)
                if self.on_dial_failed is not None:
                    self.on_dial_failed(peer, e)
                self.log.info("dial {address} failed: {error}", address=address,
                              error=e.__class__.__name__)
                continue
            refused = self._check_link(link, peer, outgoing=True)
            if refused is not None:
                self._metrics.inc("connection_attempts_failed")
                reasons.append(f"{address}: {refused}")
                link.close(refused)
                continue
            adopted = await self._adopt(link, peer, outgoing=True)
            if adopted is None:
                self._metrics.inc("connection_attempts_failed")
                reasons.append(f"{address}: the session closed as it was set up")
                continue
            self._metrics.inc("connection_attempts_ok")
            return adopted
        self._events.emit("network_error", peer=peer, error="dial failed",
                          detail="; ".join(reasons))
        raise DialFailed(f"could not reach {peer}: " + "; ".join(reasons))

    # -- accepting ----------------------------------------------------------
    def _incoming(self, link: IPeerLink) -> None:
        try:
            peer = check_peer_address(str(link.peer))
        except PeerAddressError as e:
            self._metrics.inc("connections_refused")
            self.log.warn("refused a session whose peer is not an anonymous address: {e}",
                          e=str(e))
            link.close("bad peer address")
            return
        if self._store.is_blocked(peer):
            self._metrics.inc("connections_refused")
            self.log.info("refused a session from blacklisted {peer}", peer=peer)
            link.close("blacklisted")
            return
        refused = self._check_link(link, peer, outgoing=False)
        if refused is not None:
            self._metrics.inc("connections_refused")
            link.close(refused)
            return
        if peer not in self._links and not self._make_room():
            self._metrics.inc("connections_refused")
            link.close("too many connections")
            return
        self._metrics.inc("connections_accepted")
        Deferred.fromCoroutine(self._adopt(link, peer, outgoing=False)).addErrback(
            lambda f: self.log.failure("adopting a session from {peer} failed", f, peer=peer))

    def _check_link(self, link: IPeerLink, peer: str, *, outgoing: bool) -> str | None:
        """Why ``link`` must not become ``peer``'s session (None: it may)."""
        onion = link_onion(link)
        if self.is_revoked(peer) or (onion is not None and self.is_revoked(onion)):
            self._metrics.inc("revoked_refused")
            self.log.info("refused a session with revoked {peer}", peer=peer)
            return "revoked identity"
        if not link_is_peer(link, peer):
            self._metrics.inc("identity_mismatches")
            detail = (f"a session for {peer} authenticated {onion or link.peer} instead "
                      f"(transport {link.transport_name})")
            self.log.warn("refused a session: {detail}", detail=detail)
            self._events.emit("network_error", peer=peer, error="identity mismatch",
                              detail=detail)
            return "identity mismatch"
        if self.gate is not None:
            return self.gate(link, peer, outgoing)
        return None

    def _make_room(self) -> bool:
        if len(self._links) < self.max_connections:
            return True
        if not self._last_used:
            return False
        lru = min(self._last_used, key=lambda p: self._last_used[p])
        self.log.info("pool full: closing least recently used session to {peer}", peer=lru)
        self._links[lru].close("pool full")
        self._forget(lru)
        return True

    async def _adopt(self, link: IPeerLink, peer: str, *, outgoing: bool,
                     ) -> ChannelLink | None:
        """Make ``link`` the session of ``peer`` (or keep it as a second, receiving link).

        None if the link closed before it could be adopted.
        """

        def receive(data: bytes) -> None:
            self._metrics.inc("bytes_in", len(data))
            self.touch(peer)
            self._on_message(peer, data)

        link.set_receiver(receive)
        closed = link.when_closed()
        if closed.called:  # closed while being set up (e.g. the peer sent its revocation)
            return None
        if self._stopping:  # dialled before the node began stopping, done after
            link.close("node stopping")
            return None
        closed.addCallback(self._closed, peer, link)
        adopted = ChannelLink(link)
        if peer in self._links:
            self._extra.add(link)  # crossed dials: both links carry messages; keep the first
            return adopted
        if outgoing:
            self._make_room()
        self._links[peer] = adopted
        if outgoing:
            self._outgoing.add(peer)
        self._last_used[peer] = self._clock.seconds()
        self._metrics.inc("peer_churn")
        record: Any = getattr(link, "record", None)
        to_bytes = getattr(record, "to_bytes", None)
        record_bytes = to_bytes() if callable(to_bytes) else None
        # The peer's I2P address is not in its record (only a commitment to it): it
        # arrives in the peer's record push, checked with verify_binding (_records.py).
        if self._store.get(peer) is None or record_bytes is not None:
            await self._store.add(peer, record=record_bytes, origin=ORIGIN_PEER)
        await self._store.observe(peer, Behaviour.SESSION_OK)
        await self._store.set_status(peer, "connected")
        self._events.emit("peer_connected", peer=peer, transport=str(link.transport_name),
                          direction="outgoing" if outgoing else "incoming")
        for callback in list(self._connected_listeners):
            callback(peer)
        return adopted

    def _closed(self, reason: str, peer: str, link: IPeerLink) -> None:
        try:
            self._session_closed(reason, peer, link)
        finally:
            if self._stop_waiters:
                self._stopped()

    def _session_closed(self, reason: str, peer: str, link: IPeerLink) -> None:
        if link in self._extra:
            self._extra.discard(link)
            return
        current = self._links.get(peer)
        if current is None or current.raw is not link:
            return
        self._forget(peer)
        self._metrics.inc("peer_churn")
        self._events.emit("peer_disconnected", peer=peer, reason=str(reason))
        for callback in list(self._disconnected_listeners):
            callback(peer)
        if self._stopping and not self._stop_waiters:
            return  # the node has stopped: its database may be closed already
        write = Deferred.fromCoroutine(self._store.set_status(peer, "disconnected"))
        write.addErrback(
            lambda f: self.log.failure("status update for {peer} failed", f, peer=peer))
        if not write.called:
            self._status_writes.add(write)
            write.addBoth(self._status_written, write)

    def _status_written(self, result: object, write: Deferred[Any]) -> object:
        self._status_writes.discard(write)
        if self._stop_waiters:
            self._stopped()
        return result

    def _forget(self, peer: str) -> None:
        self._links.pop(peer, None)
        self._last_used.pop(peer, None)
        self._outgoing.discard(peer)

    def close(self, peer: str, reason: str) -> None:
        link = self._links.get(peer)
        if link is not None:
            link.close(reason)
        for extra in [x for x in self._extra if str(x.peer).lower() == peer]:
            extra.close(reason)

    def _reap_idle(self) -> None:
        """Close sessions unused for ``idle_timeout``; beyond ``keep_idle`` sessions
        unused for ``idle_grace``, close the least recently used."""
        now = self._clock.seconds()
        closed: set[str] = set()
        for peer, used in list(self._last_used.items()):
            if now - used >= self.idle_timeout:
                self.log.debug("closing idle session to {peer}", peer=peer)
                closed.add(peer)
        if self.keep_idle is not None:
            idle = sorted((used, peer) for peer, used in self._last_used.items()
                          if now - used >= self.idle_grace and peer not in closed)
            closed.update(peer for _, peer in idle[:max(0, len(idle) - self.keep_idle)])
        for peer in sorted(closed):
            if peer in self._links:
                self._metrics.inc("sessions_closed_idle")
            self.close(peer, "idle")
