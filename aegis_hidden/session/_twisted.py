"""The thin Twisted layer around :class:`~aegis_hidden.session.Session`.

:class:`SessionProtocol` only feeds bytes to the sans-I/O session and writes
what it returns; :class:`PeerLink` is the :class:`IPeerLink` the layers above
use; :class:`SessionFactory` dials peers through an
:class:`ITransportProvider` and makes the :class:`ServerFactory` for incoming
streams. The clock is always injected.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..addresses import split_optional_port
from ..identity import IdentityRecord, NodeIdentity, RecordCache
from ..interfaces import (
    ICellLink,
    ICellScheduler,
    IEventSink,
    IIdentityService,
    IPeerLink,
    ISessionFactory,
    ITraceSink,
    ITransportProvider,
)
from ._errors import CloseReason, HandshakeError, PinRefused, SessionError
from ._ratelimit import TokenBucket
from ._scheduler import ImmediateScheduler
from ._session import (
    Closed,
    Established,
    IdentityKeys,
    MessageReceived,
    ReplayCache,
    Session,
    SessionParams,
)

__all__ = [
    "HandshakeRefusal",
    "NoTransport",
    "PeerLink",
    "RevokedPeer",
    "ServerFactory",
    "SessionFactory",
    "SessionProtocol",
    "TokenBucket",
    "is_pin_refusal",
]

#: ``mldsa_pin(onion)``: the ML-DSA-65 public key pinned for that onion, or None.
MldsaPin = Callable[[str], bytes | None]


def is_pin_refusal(err: BaseException) -> bool:
    """True when a handshake failed because the peer's ML-DSA-65 key is not the one
    pinned for it and no rotation signed by the pinned key vouches for the new one."""
    return isinstance(err, PinRefused)


@dataclass(frozen=True)
class HandshakeRefusal:
    """A handshake that failed, as :meth:`SessionFactory.on_handshake_refused` reports it."""

    peer: str | None  # the onion dialled, or the one whose record an incoming peer sent
    reason: CloseReason
    detail: str
    incoming: bool
    pin_mismatch: bool  # the peer's ML-DSA-65 key is not the pinned one (is_pin_refusal)


class NoTransport(SessionError):
    """No configured transport provider handles that address."""

    def __init__(self, address: str) -> None:
        super().__init__(CloseReason.CONNECTION_LOST,
                         f"no transport handles {address!r} (is Tor or I2P enabled?)")


class RevokedPeer(SessionError):
    """The record cache holds a revocation for that onion: no session with it, ever."""

    def __init__(self, onion: str) -> None:
        super().__init__(getattr(CloseReason, "REVOKED", CloseReason.WRONG_IDENTITY),
                         f"{onion} has revoked its identity")
        self.onion = onion


@implementer(IPeerLink)
class PeerLink:
    """An authenticated session with one peer."""

    log = Logger()

    def __init__(self, protocol: SessionProtocol, peer: str, record: IdentityRecord,
                 transport_name: str) -> None:
        self._protocol = protocol
        self.peer = peer
        self.record = record
        self.transport_name = transport_name
        self.initiator = protocol.session.initiator
        self._receiver: Callable[[bytes], None] | None = None
        self._queued: list[bytes] = []
        self._closed: Deferred[str] = Deferred()
        self.close_reason: SessionError | None = None

    def __repr__(self) -> str:
        return f"PeerLink({self.peer}, {self.transport_name})"

    @property
    def is_closed(self) -> bool:
        return self.close_reason is not None

    def queued(self) -> int:
        """Cells of this session not sent yet (waiting for the cell scheduler): the
        messaging layer's measure of its own backpressure."""
        return self._protocol.queued()

    def send_message(self, data: bytes) -> None:
        if self.close_reason is not None:
            raise SessionError(self.close_reason.reason,
                               f"session with {self.peer} is closed ({self.close_reason.detail})")
        if self._protocol.close_pending is not None:
            raise SessionError(CloseReason.NORMAL,
                               f"session with {self.peer} is closing "
                               f"({self._protocol.close_pending})")
        self._protocol.send_message(data)

    def send_bulk(self, data: bytes) -> None:
        """Queue one message in the bulk class (stream data): it leaves only when no
        other message waits, so control traffic and small messages are not stuck
        behind it (:meth:`Session.send_message`). Traced as real, outside the kinds'
        runs (it may leave before messages queued earlier)."""
        if self.close_reason is not None or self._protocol.close_pending is not None:
            self.send_message(b"")  # raises the closed / closing error
        self._protocol.session.send_message(data, bulk=True)
        self._protocol.pump()

    def set_receiver(self, callback: Callable[[bytes], None]) -> None:
        self._receiver = callback
        queued, self._queued = self._queued, []
        for data in queued:
            self._deliver(data)

    def close(self, reason: str) -> None:
        self._protocol.close_link(reason)

    def when_closed(self) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        if self.close_reason is not None:
            d.callback(str(self.close_reason))
        else:
            self._closed.addBoth(_chain(d))
        return d

    # -- from the protocol ----------------------------------------------------
    def _deliver(self, data: bytes) -> None:
        if self._receiver is None:
            self._queued.append(data)
            return
        try:
            self._receiver(data)
        except Exception:  # noqa: BLE001 - a receiver's bug must not kill the session
            self.log.failure("message receiver for {peer} failed", peer=self.peer)

    def _on_closed(self, err: SessionError) -> None:
        if self.close_reason is None:
            self.close_reason = err
            self._closed.callback(str(err))


def _chain(d: Deferred[str]) -> Callable[[Any], Any]:
    def fire(result: Any) -> Any:
        d.callback(result)
        return result
    return fire


_link_ids = itertools.count(1)


@implementer(ICellLink)
class SessionProtocol(Protocol):
    """Feeds a :class:`Session`; owns the handshake timer; is the :class:`ICellLink`
    its cell scheduler drives once the session is established.

    Handshake flights and the CLOSE cell are written at once; every other cell
    waits in the session's queue until ``scheduler`` calls :meth:`emit`. With a
    ``trace`` sink, every cell written or received is recorded (time, a salted
    hash of the link id, direction, size, kind).
    """

    log = Logger()

    def __init__(
        self,
        session: Session,
        clock: IReactorTime,
        transport_name: str | None,
        on_established: Callable[[PeerLink], None],
        on_failed: Callable[[SessionError], None],
        *,
        scheduler: ICellScheduler | None = None,
        trace: ITraceSink | None = None,
        trace_salt: bytes = b"",
        trace_kind: Callable[[bytes], str] | None = None,
    ) -> None:
        self.session = session
        self.scheduler: ICellScheduler = scheduler if scheduler is not None else ImmediateScheduler()
        self.link_id = next(_link_ids)
        self._trace = trace
        self._trace_id = hashlib.sha256(
            trace_salt + self.link_id.to_bytes(8, "big")).hexdigest()[:16] if trace else ""
        self._in_bytes = 0
        # With a trace: what kind ("real", "loop") each queued message's cells are,
        # as [cells, kind] runs in queue order (``trace_kind`` names a message's kind).
        self._trace_kind = trace_kind if trace is not None else None
        self._kinds: deque[list[Any]] = deque()
        self._registered = False
        self.clock = clock
        self.transport_name = transport_name
        self._on_established = on_established
        self._on_failed = on_failed
        self.link: PeerLink | None = None
        self._timer: IDelayedCall | None = None
        self._closing = False
        #: A local close waiting for the scheduler's slots (see :meth:`close_link`).
        self.close_pending: str | None = None
        self.on_lost: Callable[[], None] | None = None

    def connectionMade(self) -> None:
        self._timer = self.clock.callLater(self.session.params.handshake_timeout, self._timed_out)
        if self.session.initiator:
            self.session.start()
        self.pump()

    def dataReceived(self, data: bytes) -> None:
        if self._trace is not None:
            cover = self.session.cover_received
            events = len(self.session._events)
            self.session.receive_data(data)
            kind = self._trace_kind
            loops = 0 if kind is None else sum(
                1 for e in self.session._events[events:]
                if isinstance(e, MessageReceived) and kind(e.data) == "loop")
            self._trace_in(len(data), self.session.cover_received - cover, loops)
        else:
            self.session.receive_data(data)
        self.pump()

    def send_message(self, data: bytes) -> None:
        """Queue one message (its kind noted for the trace) and tell the scheduler."""
        kind = self._trace_kind
        if kind is None:
            self.session.send_message(data)
        else:
            before = self.session.queued()
            self.session.send_message(data)
            cells, name = self.session.queued() - before, kind(data)
            kinds = self._kinds
            if kinds and kinds[-1][1] == name:
                kinds[-1][0] += cells
            else:
                kinds.append([cells, name])
        self.pump()

    # -- ICellLink ------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closing or self.session.closed

    def queued(self) -> int:
        return self.session.queued()

    def close_link(self, reason: str) -> None:
        """Close the session with a CLOSE cell (NORMAL, ``reason``), after the queued cells.

        On a paced scheduler (one that sends cover in its slots: ``paced`` true)
        the queued cells leave at the link's slots, at most the scheduler's
        burst per write, and the CLOSE takes the first slot after them in place
        of a cover cell: a close does not write the backlog at once, which
        would tell an observer how many cells were waiting. Nothing more can
        be queued meanwhile. Otherwise (the immediate scheduler, or nothing
        queued) the queued cells and the CLOSE are written at once.
        """
        if self.session.closed or self.close_pending is not None:
            return
        if (self._registered and self.session.established and self.session.queued()
                and getattr(self.scheduler, "paced", False)):
            self.close_pending = reason
            self.scheduler.notify(self)
            return
        self.session.close(CloseReason.NORMAL, reason)
        self.pump()

    def emit(self, count: int, cover: int = 0) -> int:
        """Seal up to ``count`` queued cells and ``cover`` cover cells; one write."""
        # A cell scheduler calls this in every slot of every link: one test for
        # "closed or not established" (a closed session is not established), and
        # the bulk count only when a trace needs it.
        session = self.session
        if self._closing or not session.established:
            return 0
        if self.close_pending is not None and not session.queued() and (count or cover):
            # The backlog has left: this slot carries the CLOSE instead of a cover cell.
            reason, self.close_pending = self.close_pending, None
            session.close(CloseReason.NORMAL, reason)
            self.pump()
            return 0
        trace = self._trace
        bulk = session.bulk_queued() if trace is not None else 0
        out, sent = session.seal_slot(count, cover)
        if out and self.transport is not None:
            self.transport.write(out)
            if trace is not None:
                cells = len(out) // session.params.cell_size
                # Bulk cells (stream data, real) may leave before messages queued
                # earlier, so only the others take their kinds from the runs.
                bulk -= session.bulk_queued()
                self._trace_out(cells - min(cover, cells), min(cover, cells), sent - bulk)
        return sent

    def _trace_out(self, real: int, cover: int, queued: int) -> None:
        """Record a write: ``real`` cells that are not cover, ``queued`` of them taken
        from the queue (their kinds in :attr:`_kinds`; the others control cells)."""
        assert self._trace is not None
        now = self.clock.seconds()
        size = self.session.params.cell_size
        record, link = self._trace.record, self._trace_id
        kinds = self._kinds
        left = real
        while queued > 0 and kinds:
            run = kinds[0]
            take = min(queued, run[0])
            for _ in range(take):
                record(now, link, "out", size, run[1])
            queued -= take
            left -= take
            run[0] -= take
            if run[0] <= 0:
                kinds.popleft()
        for _ in range(left):
            record(now, link, "out", size, "real")
        for _ in range(cover):
            record(now, link, "out", size, "cover")

    def _trace_in(self, received: int, cover: int, loops: int = 0) -> None:
        assert self._trace is not None
        size = self.session.params.cell_size
        cells = (self._in_bytes + received) // size - self._in_bytes // size
        self._in_bytes += received
        now = self.clock.seconds()
        cover = min(cover, cells)
        loops = min(loops, cells - cover)  # a loop (or its return) is one cell
        for k in range(cells):
            kind = "real" if k < cells - cover - loops else "loop" if k < cells - cover else "cover"
            self._trace.record(now, self._trace_id, "in", size, kind)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.session.connection_lost()
        self._closing = True
        self.pump()
        if self.on_lost is not None:
            self.on_lost()
            self.on_lost = None

    def _timed_out(self) -> None:
        self._timer = None
        self.session.timeout()
        self.pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def pump(self) -> None:
        """Write what the session has sealed, act on its events, and tell the
        scheduler about queued cells."""
        out = self.session.sealed_to_send()
        if out and self.transport is not None and not self._closing:
            self.transport.write(out)
            if self._trace is not None:
                # handshake flights, or a close's queued cells and its CLOSE
                cells = len(out) // self.session.params.cell_size
                self._trace_out(cells, 0, cells)
        for event in self.session.events():
            if isinstance(event, MessageReceived):
                if self.link is not None:
                    self.link._deliver(event.data)
            elif isinstance(event, Established):
                self._cancel_timer()
                name = self.transport_name or (
                    "i2p" if self.session.local_address.endswith(".i2p") else "tor")
                self.link = PeerLink(self, event.peer, event.record, name)
                self._registered = True
                self.scheduler.register(self)
                self._on_established(self.link)
            elif isinstance(event, Closed):
                self._cancel_timer()
                if self._registered:
                    self._registered = False
                    self.scheduler.unregister(self)
                err = self.session.close_reason or SessionError(event.reason, event.detail)
                if self.link is not None:
                    self.link._on_closed(err)
                else:
                    self._on_failed(err)
        if self.session.want_transport_close and not self._closing:
            self._closing = True
            if self.transport is not None:
                self.transport.loseConnection()
        elif self._registered and self.session.queued():
            self.scheduler.notify(self)


class _DialFactory(Factory):
    """Builds the one initiator protocol of one ``connect()``."""

    def __init__(self, build: Callable[[], SessionProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._build()


class ServerFactory(Factory):
    """Incoming streams of one transport (its provider serves this factory on its own
    listener): one responder each, whose link names ``transport_name``."""

    def __init__(self, sessions: SessionFactory, transport_name: str | None = None) -> None:
        self._sessions = sessions
        self.transport_name = transport_name

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """A responder, or None (Twisted then closes the stream at once) at
        ``network.max_connections`` or over the handshake rate limit."""
        return self._sessions._responder_protocol(self.transport_name)


@implementer(ISessionFactory)
class SessionFactory:
    """Dials authenticated sessions through transport providers and accepts them.

    ``SessionFactory(identity, providers, config, clock)``; each provider serves
    :meth:`server_factory` (made for it) on its own listener for incoming sessions.
    """

    log = Logger()

    def __init__(
        self,
        identity: NodeIdentity | IIdentityService,
        providers: Sequence[ITransportProvider],
        config: Any,
        clock: IReactorTime,
        *,
        params: SessionParams | None = None,
        events: IEventSink | None = None,
        random: Callable[[int], bytes] = os.urandom,
        record_cache: RecordCache | None = None,
        mldsa_pin: MldsaPin | None = None,
        handshake_limit: TokenBucket | None = None,
        scheduler: ICellScheduler | None = None,
        trace: ITraceSink | None = None,
        trace_kind: Callable[[bytes], str] | None = None,
    ) -> None:
        # The node's identity service (read at every session: no stale copy), or a
        # bare identity (tests, tools).
        self._source: NodeIdentity | IIdentityService = identity
        self._keyed: NodeIdentity | None = None
        self._keys_of: IdentityKeys | None = None
        #: Decides when every session's cells are sealed and written; by default at
        #: once, ``performance.message_batch_size`` cells per write.
        self.scheduler: ICellScheduler = scheduler if scheduler is not None else \
            ImmediateScheduler(int(config.performance.message_batch_size))
        #: Where cell traces go (None: nowhere); link ids are salted per factory.
        self.trace = trace
        #: What kind a message is in the trace ("real", or "loop" for loop cover; None:
        #: every message is "real"): the node's loop frames are one cell each.
        self.trace_kind = trace_kind
        self._trace_salt = os.urandom(16)
        self.providers = list(providers)
        self.config = config
        self.clock = clock
        self.params = params if params is not None else SessionParams.from_config(config)
        self.events = events
        self._random = random
        self._incoming: list[Callable[[IPeerLink], None]] = []
        self.replay_cache = ReplayCache(clock.seconds, window=600.0)
        self.incoming_streams = 0  # open incoming streams, handshaking or established
        self.default_port: int = int(config.tor.onion_virtual_port)
        #: Shared by every Session this factory builds (both roles): highest record
        #: sequence per onion and revocations (None: no rollback/revocation checks).
        self.record_cache = record_cache
        #: Pinned ML-DSA key lookup handed to every Session (None: no pinning).
        self.mldsa_pin = mldsa_pin
        #: Incoming handshakes per second (``security.handshake_rate`` / ``_burst``).
        self.handshake_limit = handshake_limit if handshake_limit is not None else TokenBucket(
            config.security.handshake_rate, config.security.handshake_burst, clock.seconds)
        #: Incoming streams closed unanswered by the handshake rate limit (a counter
        #: for the node's metrics).
        self.handshakes_rate_limited = 0
        #: True: close every incoming stream unanswered (the node is isolated).
        self.refuse_incoming: Callable[[], bool] = lambda: False
        self._limited_logged_at: float | None = None
        #: Sessions (either role) refused because the peer's onion is revoked.
        self.revoked_refused = 0
        #: Failed handshakes (either role) by CloseReason, and those among them
        #: refused because the peer's ML-DSA-65 key is not the pinned one.
        self.handshake_refusals: Counter[CloseReason] = Counter()
        self.pin_refusals = 0
        self._refusal_listeners: list[Callable[[HandshakeRefusal], None]] = []

    def on_handshake_refused(self, callback: Callable[[HandshakeRefusal], None]) -> None:
        """Call ``callback(refusal)`` for every handshake that fails, in or out."""
        self._refusal_listeners.append(callback)

    def _refused(self, peer: str | None, err: SessionError, *, incoming: bool) -> None:
        self.handshake_refusals[err.reason] += 1
        pin = is_pin_refusal(err)
        if pin:
            self.pin_refusals += 1
        refusal = HandshakeRefusal(peer, err.reason, err.detail, incoming, pin)
        for callback in list(self._refusal_listeners):
            try:
                callback(refusal)
            except Exception:  # noqa: BLE001 - one listener's bug must not hide the others
                self.log.failure("on_handshake_refused callback failed")

    @property
    def identity(self) -> NodeIdentity:
        """The identity new sessions present: the identity service's current one
        when the factory holds the service; setting one replaces what it holds."""
        source = self._source
        return source if isinstance(source, NodeIdentity) else cast(NodeIdentity,
                                                                    source.identity)

    @identity.setter
    def identity(self, identity: NodeIdentity) -> None:
        self._source = identity

    @property
    def _keys(self) -> IdentityKeys:
        # The signing keys go with the record: a rotated ML-DSA key must sign from now on.
        identity = self.identity
        if self._keys_of is None or self._keyed is not identity:
            self._keyed, self._keys_of = identity, IdentityKeys.of(identity)
        return self._keys_of

    # -- ISessionFactory --------------------------------------------------
    def connect(self, address: str) -> Deferred[IPeerLink]:
        host, port = self._split(address)
        if self._revoked(host):
            self.revoked_refused += 1
            self.log.info("not dialing {peer}: its identity is revoked", peer=host)
            return fail(RevokedPeer(host))
        provider = next((p for p in self.providers if p.handles(host)), None)
        if provider is None:
            return fail(NoTransport(host))
        try:
            endpoint = provider.client_endpoint(host, port)
        except Exception as e:  # noqa: BLE001 - PrivacyError & co go to the caller's errback
            return fail(e)
        result: Deferred[IPeerLink] = Deferred()
        transport_name = str(provider.name)
        built: list[SessionProtocol] = []
        limit = self.params.handshake_timeout

        def settle() -> None:
            if deadline.active():
                deadline.cancel()

        def established(link: PeerLink) -> None:
            settle()
            if self._refuse_revoked(link):
                if not result.called:
                    result.errback(Failure(RevokedPeer(link.peer)))
                return
            if result.called:
                # The caller already gave up (timeout): nobody would read this session,
                # and the peer would answer into it. Close it rather than orphan it.
                link.close("dial abandoned")
                return
            self._announce(link, "outgoing")
            result.callback(link)

        def failed(err: SessionError) -> None:
            settle()
            self._count_revoked(err)
            self._refused(host, err, incoming=False)
            self.log.info("session to {peer} failed: {reason}", peer=host, reason=str(err))
            if not result.called:
                result.errback(Failure(err))

        def build() -> SessionProtocol:
            session = Session(self.identity, self.params, initiator=True,
                              clock=self.clock.seconds, peer_address=host, random=self._random,
                              keys=self._keys, **self._session_extras())
            proto = SessionProtocol(session, self.clock, transport_name, established, failed,
                                    **self._protocol_extras())
            built.append(proto)
            return proto

        def too_slow() -> None:
            # network.connection_timeout covers the dial (circuit, stream) and the handshake.
            err = HandshakeError(CloseReason.TIMEOUT,
                                 f"no session with {host} within {limit:g}s")
            if not result.called:
                result.errback(Failure(err))
            if built and built[0].transport is not None:
                built[0].session.timeout()
                built[0].pump()
            else:
                dialing.cancel()

        deadline = self.clock.callLater(limit, too_slow)
        dialing = endpoint.connect(_DialFactory(build))

        def dial_failed(f: Failure) -> None:
            settle()
            if not result.called:
                result.errback(f)

        dialing.addErrback(dial_failed)
        return result

    def on_incoming(self, callback: Callable[[IPeerLink], None]) -> None:
        self._incoming.append(callback)

    # -- incoming ---------------------------------------------------------
    def server_factory(self, transport_name: str | None = None) -> ServerFactory:
        """The factory a transport provider serves incoming streams with
        (``provider.serve(sessions.server_factory(provider.name))``): every session
        accepted through it names that transport. The session layer opens no socket."""
        return ServerFactory(self, transport_name)

    def _responder_protocol(self, transport_name: str | None = None) -> SessionProtocol | None:
        """A responder for a new stream, or None to close it at once.

        Every check comes before anything is built: a refused stream costs no
        Session, no key material and no signature.
        """
        if self.refuse_incoming():
            return None  # isolated: the peer learns nothing beyond a closed stream
        limit = int(self.config.network.max_connections)
        if self.incoming_streams >= limit:
            self.log.warn("refusing an incoming stream: {count} open (network.max_connections)",
                          count=self.incoming_streams)
            return None
        if not self.handshake_limit.take():
            self.handshakes_rate_limited += 1
            if self._limited_logged_at is None \
                    or self.clock.seconds() - self._limited_logged_at >= 60.0:
                self._limited_logged_at = self.clock.seconds()
                self.log.warn(
                    "handshake rate limit: closing incoming streams over {rate:g}/s "
                    "(burst {burst}); {count} closed so far (security.handshake_rate)",
                    rate=self.handshake_limit.rate, burst=self.handshake_limit.burst,
                    count=self.handshakes_rate_limited)
            return None
        claimed: list[str] = []  # the onion whose record the peer sent (pin lookups)
        session = Session(self.identity, self.params, initiator=False, clock=self.clock.seconds,
                          random=self._random, replay_cache=self.replay_cache, keys=self._keys,
                          **self._session_extras(claimed))

        def established(link: PeerLink) -> None:
            if self._refuse_revoked(link):
                return
            self._announce(link, "incoming")
            for callback in list(self._incoming):
                try:
                    callback(link)
                except Exception:  # noqa: BLE001 - one listener's bug must not drop the session
                    self.log.failure("on_incoming callback failed for {peer}", peer=link.peer)

        def failed(err: SessionError) -> None:
            self._count_revoked(err)
            self._refused(claimed[-1] if claimed else None, err, incoming=True)
            self.log.info("incoming handshake failed: {reason}", reason=str(err))

        proto = SessionProtocol(session, self.clock, transport_name, established, failed,
                                **self._protocol_extras())
        self.incoming_streams += 1

        def gone() -> None:
            self.incoming_streams -= 1

        proto.on_lost = gone
        return proto

    # -- helpers ----------------------------------------------------------
    def _protocol_extras(self) -> dict[str, Any]:
        """The shared cell scheduler and trace sink, for every SessionProtocol built."""
        return {"scheduler": self.scheduler, "trace": self.trace, "trace_salt": self._trace_salt,
                "trace_kind": self.trace_kind}

    def _session_extras(self, claimed: list[str] | None = None) -> dict[str, Any]:
        """The shared record cache and ML-DSA pin lookup, for every Session built.

        ``claimed`` collects the onions the session looks a pin up for: for an
        incoming session, who the peer said it is (to name it when refused).
        """
        extras: dict[str, Any] = {}
        if self.record_cache is not None:
            extras["record_cache"] = self.record_cache
        pin = self.mldsa_pin
        if pin is not None:
            if claimed is not None:
                def lookup(onion: str, pin: MldsaPin = pin) -> bytes | None:
                    claimed.append(onion)
                    return pin(onion)

                lookup.__wrapped__ = pin  # type: ignore[attr-defined]
                extras["mldsa_pin"] = lookup
            else:
                extras["mldsa_pin"] = pin
        return extras

    def _revoked(self, onion: str) -> bool:
        return self.record_cache is not None and self.record_cache.is_revoked(onion)

    def _count_revoked(self, err: SessionError) -> None:
        """A handshake the Session refused because the record cache holds a revocation."""
        revoked = getattr(CloseReason, "REVOKED", None)
        if revoked is not None and err.reason == revoked:
            self.revoked_refused += 1

    def _refuse_revoked(self, link: PeerLink) -> bool:
        """Close a just-established session with a revoked onion (the Session's own
        record-cache check normally refuses it during the handshake already)."""
        if not self._revoked(link.peer):
            return False
        self.revoked_refused += 1
        self.log.warn("closing the session with {peer}: its identity is revoked", peer=link.peer)
        link.close("identity revoked")
        return True

    def _announce(self, link: PeerLink, direction: str) -> None:
        self.log.info("session with {peer} established ({direction}, {transport})",
                      peer=link.peer, direction=direction, transport=link.transport_name)
        if self.events is not None:
            self.events.emit("peer_connected", peer=link.peer, direction=direction,
                             transport=link.transport_name)
            events = self.events

            def gone(reason: str) -> str:
                events.emit("peer_disconnected", peer=link.peer, reason=reason)
                return reason

            link.when_closed().addCallback(gone)

    def _split(self, address: str) -> tuple[str, int]:
        host, port = split_optional_port(address)
        if port.isdigit():
            return host.lower(), int(port)
        return address.lower(), self.default_port
