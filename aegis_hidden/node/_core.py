"""The node core: peer store, connection pool and reliable messaging, as one service.

Build it in ``makeService`` and attach the session layer when it exists::

    core = NodeCore(config, identity, data_dir, events, reactor)
    core.attach_session_factory(session_factory)   # any ISessionFactory
    core.setServiceParent(node_service)

Without a session factory the core still runs: peers can be managed and
messages are queued in the outbox until a session layer is attached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..addresses import strip_port
from ..config import Config
from ..events import EventBus
from ..identity import NodeIdentity, RecordCache
from ..interfaces import ISessionFactory, ITransportProvider
from ..peers import DB_FILE_NAME, Database, PeerInfo, PeerStore, ThreadedSQLite
from ._channels import Channel, ChannelRouter, PubSubChannel, RpcChannel
from ._control import ControlError, ControlKind
from ._emergency import EmergencyControls
from ._identity_service import IdentityService
from ._loops import PeerLoops
from ._messaging import DeliveryState, Messenger
from ._metrics import Metrics
from ._pool import ConnectionPool
from ._records import RecordKeeper

_PENDING = object()


class NodeCore(Service):
    """Peers, sessions and messages of one node (its ``name`` is ``"core"``)."""

    log = Logger()
    name = "core"

    def __init__(
        self,
        config: Config,
        identity: NodeIdentity | IdentityService | None,
        data_dir: str,
        events: EventBus,
        reactor: Any,
        *,
        db: Database | None = None,
        local_address: str | None = None,
        idle_timeout: float = 300.0,
        messenger_options: Mapping[str, Any] | None = None,
        on_identity: Callable[[NodeIdentity], None] | None = None,
        record_check_interval: float = 10.0,
        on_fatal: Callable[[Failure], None] | None = None,
        db_key: bytes | None = None,
    ) -> None:
        self.config = config
        self._on_fatal = on_fatal
        service = identity if isinstance(identity, IdentityService) else None
        if isinstance(identity, IdentityService):
            identity = identity.identity
        self.identity = identity  # the last record the keeper pushed (see _refreshed)
        self.data_dir = data_dir
        self.events = events
        self.reactor = reactor
        self.local_address = local_address or (identity.onion if identity else "")
        self._own_db = db is None
        self.db: Database = db if db is not None else ThreadedSQLite(
            reactor, os.path.join(data_dir, DB_FILE_NAME), key=db_key)  # SQLCipher key
        self.metrics = Metrics()
        self.store = PeerStore(self.db, reactor.seconds)
        self.pool = ConnectionPool(
            self.store, events, self.metrics, reactor, self._on_message,
            max_connections=config.network.max_connections, idle_timeout=idle_timeout,
            keep_idle=config.performance.connection_pool_size,
            dial_timeout=config.network.connection_timeout)
        # Every message a session carries is a frame; the router hands each to its
        # channel (messaging, rpc, pubsub, control) and ignores unknown channels.
        self.channels = ChannelRouter(self.pool, self.store, events, self.metrics)
        self.messenger = Messenger(
            self.db, self.store, self.pool, events, self.metrics, reactor,
            max_message_size=config.performance.max_message_size,
            **dict(messenger_options or {}))
        # Pins, the shared record cache, record pushes, refresh and revocation
        # (on_identity: told of each record this node re-signs).
        self.records = RecordKeeper(
            self.db, self.store, self.pool, events, self.metrics, reactor, service or identity,
            on_identity=self._refreshed, check_interval=record_check_interval)
        self.channels.register(Channel.MESSAGING, self.messenger.on_message)
        # Loop messages (loop cover) ride the control channel beside the record push.
        self.loops = PeerLoops(self.pool, self.store, events, self.metrics)
        self.channels.register(Channel.CONTROL, self._on_control)
        self.rpc = RpcChannel(self.channels, reactor, self.metrics)
        self.pubsub = PubSubChannel(self.channels, self.metrics)
        self.dht: Any = None  # the DhtService (node._dht) while it runs: resolves peers
        self.topics: Any = None  # the PubSubService (node._pubsub) while it runs
        self.streams: Any = None  # the StreamService (node._streams)
        self._on_identity = on_identity
        self.store.on_change(self._peer_changed)
        self.transports: list[ITransportProvider] = []
        self.session_factory: ISessionFactory | None = None
        self.mixing: Any = None  # the MixingLayer (tap.py), for /status and /metrics
        # isolate/resume, the bandwidth cap, transport restarts (after the record
        # keeper: its dial and accept checks stay in force beneath the isolation's)
        self.emergency = EmergencyControls(self.pool, events, reactor, data_dir,
                                           self.transports, self.messenger.retry_all)
        self._outcome: object = _PENDING
        self._waiters: list[Deferred[None]] = []
        self.metrics.gauge("active_connections", "Live peer sessions.", lambda: len(self.pool))
        self.metrics.gauge("peers", "Peers in the peer store.", lambda: len(self.store))
        self.metrics.gauge("mean_reputation", "Mean reputation of known peers.",
                           self.store.mean_reputation)
        self.metrics.gauge("outbox_messages", "Messages waiting for an acknowledgement.",
                           lambda: self.messenger.outbox_size())
        self.metrics.gauge("blacklisted_peers", "Peers currently blacklisted.",
                           lambda: sum(1 for p in self.store.all()
                                       if p.blocked(reactor.seconds())))
        self.metrics.gauge("record_expires_in_seconds",
                           "Seconds until this node's signed record expires (re-signed at "
                           "half its lifetime; negative: expired).", self._record_expires_in)
        self.metrics.labelled_gauge("sessions", "Live peer sessions by the transport each "
                                    "runs over.", "transport", self._sessions_by_transport)

    # -- wiring -------------------------------------------------------------
    def attach_session_factory(self, factory: ISessionFactory) -> None:
        """Plug in the session layer (real or fake); call before or after start."""
        self.session_factory = factory
        self.pool.attach(factory)
        self.emergency.attach_sessions(factory)
        # Handshakes the session layer refused on the accept side (pin mismatches...):
        # the real SessionFactory reports them; fakes may not.
        report = getattr(factory, "on_handshake_refused", None)
        if callable(report):
            report(self.records.handshake_refused)
        # Counters the session layer keeps (the real SessionFactory has them; fakes not).
        for name, attribute, doc in (
                ("handshakes_rate_limited", "handshakes_rate_limited",
                 "Incoming streams closed unanswered by the handshake rate limit "
                 "(security.handshake_rate), since start."),
                ("revoked_refused_handshakes", "revoked_refused",
                 "Handshakes the session layer refused: the peer's identity is revoked.")):
            if isinstance(getattr(factory, attribute, None), int):
                self.metrics.gauge(name, doc, self._factory_counter(attribute))

    def attach_mixing(self, mixing: Any) -> None:
        """Show the mixing layer's profile and rates in ``status()`` and its counters
        in ``/metrics`` (``mixing``: an :class:`aegis_hidden.mixing.MixingLayer`)."""
        self.mixing = mixing
        self.metrics.mixing = mixing.snapshot
        self.emergency.attach_scheduler(mixing.scheduler, int(mixing.cell_size))
        self.messenger.link_rate = self._link_rate
        # λ_L > 0: loops through connected peers; μ: answers and forwards wait in the pool.
        monitor = mixing.attach_loops(self.loops.choose_path, self.loops.send)
        if monitor is not None:
            self.loops.attach(monitor)
        self.rpc.forwarder = mixing.forward
        self.pubsub.forwarder = mixing.forward

    def _link_rate(self) -> float | None:
        """Cells per second one session sends: the profile's slots times its burst,
        under the node's bandwidth cap shared by the live sessions (None: at once)."""
        rate = None
        if self.mixing is not None and self.mixing.scheduling:
            rate = float(self.mixing.profile.cover_rate) * int(self.mixing.profile.burst)
        throttle = self.emergency.throttle
        if throttle is not None and throttle.rate is not None:
            capped = throttle.rate / throttle.cell_bytes / max(1, len(self.pool))
            rate = capped if rate is None else min(rate, capped)
        return rate

    def attach_dht(self, dht: Any) -> None:
        """Resolve peers known by nothing but their onion through ``dht`` (an IDHT)."""
        self.dht = dht

    def detach_dht(self, dht: Any) -> None:
        if self.dht is dht:
            self.dht = None

    async def resolve(self, peer: str) -> bool:
        """Whether ``peer`` is in the peer store, after a DHT lookup of its identity
        record if it was not (and the DHT runs)."""
        if self.store.get(peer) is not None:
            return True
        if self.dht is None or not peer.endswith(".onion"):
            return False
        await self.dht.resolve(peer)
        return self.store.get(peer) is not None

    def _factory_counter(self, attribute: str) -> Callable[[], float]:
        return lambda: float(getattr(self.session_factory, attribute, 0))

    def add_transport(self, provider: ITransportProvider) -> None:
        """Report this provider's state (bootstrap progress...) in ``/status``, and
        in ``/metrics`` whether it is ready (``aegis_tor_ready``, ``aegis_i2p_ready``)
        and tor's bootstrap percentage (``aegis_tor_bootstrap_percent``)."""
        self.transports.append(provider)
        name = str(provider.name)
        self.metrics.gauge(f"{name}_ready", f"1 when the {name} transport is ready "
                           "(tor: bootstrapped and the onion published; i2p: SAM session up), "
                           "else 0.", lambda: float(bool(_state(provider).get("ready"))))
        if name == "tor":
            self.metrics.gauge("tor_bootstrap_percent", "Tor's bootstrap progress (0-100).",
                               lambda: float((_state(provider).get("bootstrap") or {})
                                             .get("progress") or 0))

    def _sessions_by_transport(self) -> dict[str, float]:
        out = dict.fromkeys(("tor", "i2p"), 0.0)
        for peer in self.pool.peers():
            name = str(getattr(self.pool.link(peer), "transport_name", "unknown"))
            out[name] = out.get(name, 0.0) + 1
        return out

    def _record_expires_in(self) -> float:
        if self.identity is None:
            return float("nan")
        return float(self.identity.record.expires - self.reactor.seconds())

    def _peer_changed(self, peer: PeerInfo, what: str) -> None:
        if what == "blocked":  # by the operator or by reputation: drop live sessions
            self.pool.close(peer.peer_id, "blacklisted")
        elif what == "removed":  # forgetting a peer forgets its pinned ML-DSA key too
            self.records.pins.unpin(peer.peer_id)

    async def remove_peer(self, peer_id: str, *, keep_messages: bool = False) -> PeerInfo:
        """Forget a peer and settle its queued messages.

        By default they expire at once, each with a ``delivery_state`` event
        (``expired``, reason ``"peer removed"``). With ``keep_messages`` they stay in
        the outbox, with no retries, until the peer is added again.
        """
        peer = self.store.require(peer_id)
        if keep_messages:
            self.messenger.keep_messages_on_removal(peer.peer_id)
        try:
            removed = await self.store.remove(peer.peer_id)
        finally:
            self.messenger.cancel_keep(peer.peer_id)
        self.pool.close(removed.peer_id, "removed")
        return removed

    def _refreshed(self, identity: NodeIdentity) -> None:
        self.identity = identity
        if self._on_identity is not None:  # e.g. NodeService.set_identity: sessions use it
            self._on_identity(identity)

    def set_identity(self, identity: NodeIdentity) -> None:
        """This node's record changed (re-signed, I2P bind): connected peers get it."""
        self.identity = identity
        self.records.set_identity(identity)

    @property
    def record_cache(self) -> RecordCache:
        """The one RecordCache every session checks peers' records against."""
        return self.records.cache

    def mldsa_pin(self, onion: str) -> bytes | None:
        """The pinned ML-DSA-65 key of ``onion``, for the sessions' handshake check."""
        return self.records.mldsa_pin(onion)

    def _on_control(self, peer: str, data: bytes) -> None:
        if data and data[0] in (ControlKind.LOOP, ControlKind.LOOP_RETURN):
            try:
                self.loops.on_control(peer, data[0], data[1:])
            except ControlError as e:
                self.channels.violation(peer, f"control: {e}")
            return
        self.records.on_control(peer, data)

    def _on_message(self, peer: str, data: bytes) -> None:
        # Each message is a frame: control frames (record push) never reach the
        # messaging layer nor the application.
        self.channels.receive(peer, data)

    # -- lifecycle ----------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.addCallbacks(self._started, self._start_failed)

    def _started(self, _: None) -> None:
        self._outcome = None
        for waiter in self._waiters:
            waiter.callback(None)
        self._waiters.clear()

    def _start_failed(self, failure: Failure) -> None:
        self.log.failure("node core failed to start", failure)
        self._outcome = failure
        for waiter in self._waiters:
            waiter.errback(failure)
        self._waiters.clear()
        if self._on_fatal is not None:
            self._on_fatal(failure)

    def when_ready(self) -> Deferred[None]:
        """Fires once the store and outbox are loaded and delivery has begun."""
        if not self.running:
            return fail(RuntimeError("the node core has not been started"))
        if self._outcome is _PENDING:
            d: Deferred[None] = Deferred()
            self._waiters.append(d)
            return d
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        return succeed(None)

    async def _start(self) -> None:
        if self._own_db and isinstance(self.db, ThreadedSQLite):
            await self.db.open()
        await self.store.load()
        await self.records.load()
        for address in self.config.network.bootstrap_nodes:
            host = strip_port(address)
            if self.store.get(host) is None:
                await self.store.add(host)
        resend = await self.messenger.load()
        self.pool.start()
        self.messenger.start()
        self.records.start()
        self.log.info("node core ready: {peers} peers, {resend} messages to resend",
                      peers=len(self.store), resend=resend)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.records.stop()
        self.emergency.stop()
        self.messenger.stop()
        closed = self.pool.stop()  # the sessions' last status updates, then the database
        if self._own_db:
            closed.addCallback(lambda _: self.db.close())
        return closed

    # -- what the API uses --------------------------------------------------
    def peer_status(self, peer: PeerInfo) -> str:
        if peer.blocked(self.reactor.seconds()):
            return "blocked"
        if self.pool.connected(peer.peer_id):
            return "connected"
        return "disconnected" if peer.last_seen is not None else "new"

    def peer_json(self, peer: PeerInfo) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": peer.peer_id,
            "address": peer.i2p_destination or peer.peer_id,
            "status": self.peer_status(peer),
            "last_seen": peer.last_seen,
            "reputation": round(peer.reputation, 4),
            "onion": peer.peer_id if peer.peer_id.endswith(".onion") else None,
            "i2p_destination": peer.i2p_destination,
            "revoked": self.records.is_revoked(peer.peer_id),
        }
        if peer.blocked_reason is not None:
            out["blocked"] = {"reason": peer.blocked_reason, "until": peer.blocked_until}
        return out

    def status(self) -> dict[str, Any]:
        transports = {}
        for provider in self.transports:
            try:
                transports[str(provider.name)] = dict(provider.state())
            except Exception as e:  # noqa: BLE001 - one provider's bug must not break /status
                transports[str(provider.name)] = {"error": f"{e.__class__.__name__}: {e}"}
        out: dict[str, Any] = {
            "identity": self._identity_json(),
            "transports": transports,
            "session_layer": self.session_factory is not None,
            "counts": {
                "peers": len(self.store),
                "connected": len(self.pool),
                "blacklisted": sum(1 for p in self.store.all()
                                   if p.blocked(self.reactor.seconds())),
                "outbox": self.messenger.outbox_size(),
            },
            # the live sessions and the transport each one runs over
            "sessions": [{"peer": peer, "transport": str(getattr(
                self.pool.link(peer), "transport_name", "unknown"))}
                for peer in sorted(self.pool.peers())],
            "dht": {"running": self.dht is not None},
            "emergency": self.emergency.status(),  # isolated? bandwidth cap?
        }
        if self.mixing is not None:  # the profile and the rates the node applies
            out["mixing"] = self.mixing.status()
        return out

    def _identity_json(self) -> dict[str, Any]:
        if self.identity is None:
            return {"onion": self.local_address}
        summary = self.identity.summary()
        keep = ("onion", "kind", "sequence", "created", "expires", "i2p_destination")
        out = {k: summary.get(k) for k in keep}
        out["post_quantum_signature"] = bool(summary.get("mldsa65_public"))
        return out

    async def send(self, peer: str, body: dict[str, Any]) -> tuple[str, DeliveryState]:
        await self.resolve(peer)  # a peer not in the store may be found in the DHT
        return await self.messenger.send(peer, body)


def _state(provider: ITransportProvider) -> Mapping[str, Any]:
    """``provider.state()``, or nothing when it fails (its bug must not break /metrics)."""
    try:
        return dict(provider.state())
    except Exception:  # noqa: BLE001 - as in NodeCore.status: shown there as an error
        return {}
