"""The identity side of a running node: pins, the shared record cache, record pushes.

* **ML-DSA pinning**. The first verified session with a peer
  pins its ML-DSA-65 public key (:class:`~aegis_hidden.peers.PinStore`). A record
  with another key is accepted only when its rotation proof is signed by the
  pinned key (:func:`~aegis_hidden.identity.check_mldsa_change`), and then
  re-pinned; otherwise the session or record is refused, a ``network_error``
  event is emitted and ``mldsa_pin_mismatches`` counts it. :meth:`mldsa_pin` is
  the lookup the session layer calls during the handshake.
* **One record cache**: the :class:`~aegis_hidden.identity.RecordCache`
  every session checks peers' records against, persisted in the ``records``
  table (highest record per onion; revocations for ever) and loaded at start.
  The pool refuses revoked onions at dial and accept (:meth:`is_revoked`).
* **Record push**: right after a session is established, each
  side sends a control message (:mod:`._control`) with its current record.
  Only peers the operator added, or that this node dialled, also get the
  :class:`~aegis_hidden.identity.I2PBinding` that opens the record's I2P
  commitment: that is the only way a peer learns this node's I2P address
  (:func:`~aegis_hidden.identity.verify_binding` gives the ``.b32.i2p``).
  Re-signed records and revocations travel the same way.
* **Refresh**: the :class:`~aegis_hidden.node.IdentityService` re-signs the
  record on its clock; the keeper subscribes to it and pushes every new record
  (refresh, I2P binding) to every connected peer.
* **Revocation**: when ``revocation.bin`` appears in the identity
  directory (``aegis-hidden identity revoke`` on the running node's data dir) or
  :meth:`revoke` is called, the revocation goes to every peer with a session,
  and to everyone who opens one while the node still runs; the node dials no
  one any more.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..events import EventBus
from ..identity import (
    I2PBinding,
    IdentityRecord,
    NodeIdentity,
    PinMismatch,
    RecordCache,
    RecordError,
    RecordKind,
    RevokedIdentity,
    check_mldsa_change,
    parse_record,
    verify_binding,
    verify_record,
)
from ..identity._node import REVOCATION_FILE
from ..interfaces import IPeerLink
from ..peers import ORIGIN_PEER, Behaviour, Database, PeerStore, PinStore, RecordTable
from ..session import SessionError
from ..session._twisted import HandshakeRefusal, is_pin_refusal
from ._channels import Channel, send_frame
from ._control import ControlError, ControlKind, RecordPush, decode_control, parse_record_push
from ._identity_service import IdentityService
from ._metrics import Metrics
from ._pool import ConnectionPool, link_onion


class RecordKeeper:
    """Pins, the record cache and record pushes of one node (owned by the NodeCore)."""

    log = Logger()

    def __init__(
        self,
        db: Database,
        store: PeerStore,
        pool: ConnectionPool,
        events: EventBus,
        metrics: Metrics,
        clock: IReactorTime,
        identity: NodeIdentity | IdentityService | None,
        *,
        on_identity: Callable[[NodeIdentity], None] | None = None,
        check_interval: float = 10.0,
    ) -> None:
        self._store = store
        self._pool = pool
        self._events = events
        self._metrics = metrics
        self._clock = clock
        # The identity service owns the record (and re-signs it); the keeper keeps the
        # last record it pushed, told of each new one by its subscription.
        self._owns_service = isinstance(identity, NodeIdentity)
        if isinstance(identity, NodeIdentity):
            identity = IdentityService(identity, clock, check_interval=check_interval)
        self.identity_service = identity
        self.identity = identity.identity if identity is not None else None
        if identity is not None:
            identity.subscribe(self._identity_changed)
        self._on_identity = on_identity
        self.cache = RecordCache()
        self.pins = PinStore(db, clock.seconds)
        self._table = RecordTable(db, clock.seconds)
        self.cache.add_listener(self._persist)
        self.revocation: IdentityRecord | None = None
        self._dialled: set[str] = set()  # peers this node dialled: they may learn its I2P address
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        self.check_interval = check_interval
        pool.is_revoked = self.is_revoked
        pool.gate = self.gate
        pool.refuse_dialing = self.refuse_dialing
        pool.on_dial_failed = self.dial_failed

    # -- lifecycle ----------------------------------------------------------
    async def load(self) -> None:
        """Read the pins and the stored records (revocations stay in force for ever)."""
        await self.pins.load()
        for data in await self._table.load():
            try:
                self.cache.load([parse_record(data)])
            except RecordError as e:
                self.log.warn("ignoring a stored record that does not verify: {error}",
                              error=str(e))

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(self.check_interval, now=True)
        if self._owns_service and self.identity_service is not None:
            self.identity_service.startService()

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if (self._owns_service and self.identity_service is not None
                and self.identity_service.running):
            self.identity_service.stopService()

    def _persist(self, record: IdentityRecord) -> None:
        self._table.save(record.onion, int(record.kind), record.sequence, record.to_bytes())

    # -- what the pool and the sessions ask -----------------------------------
    def mldsa_pin(self, onion: str) -> bytes | None:
        """The pinned ML-DSA-65 key of ``onion`` (the sessions' ``mldsa_pin``)."""
        return self.pins.get(onion)

    def is_revoked(self, peer: str) -> bool:
        return self.cache.is_revoked(peer)

    def refuse_dialing(self) -> str | None:
        if self.revocation is not None:
            return "this node's identity is revoked"
        return None

    def gate(self, link: IPeerLink, peer: str, outgoing: bool) -> str | None:
        """Checks on a new session before the pool adopts it; then push our record.

        Returns why the session is refused, or None. A revoked node answers every
        session with its revocation, then refuses it.
        """
        if self.revocation is not None:
            self._send(link, RecordPush(self.revocation.to_bytes()))
            return "identity revoked"
        record = getattr(link, "record", None)
        if isinstance(record, IdentityRecord):  # fake links carry no signed record
            onion = record.onion
            refused = self._check_pin(onion, record)
            if refused is not None:
                return refused
            try:
                self.cache.accept(record, onion, self._clock.seconds())
            except RevokedIdentity:
                self._metrics.inc("revoked_refused")
                return "revoked identity"
            except RecordError as e:
                self._metrics.inc("records_refused")
                self.log.info("session with {peer} refused: {error}", peer=peer, error=str(e))
                return "record refused"
            self._repin(onion, record)
        if outgoing:
            self._dialled.add(peer)
        self._push_own(link, peer)
        return None

    def dial_failed(self, peer: str, error: BaseException) -> None:
        """Report a dial whose handshake was refused because of the pinned ML-DSA key."""
        if is_pin_refusal(error):
            detail = error.detail if isinstance(error, SessionError) else str(error)
            self._pin_refused(peer, detail)

    def handshake_refused(self, refusal: HandshakeRefusal) -> None:
        """The session factory's report of a failed handshake (``on_handshake_refused``).

        Incoming ones only: a dial's failure reaches :meth:`dial_failed` through the
        pool, with the peer it was for.
        """
        if refusal.incoming and refusal.pin_mismatch:
            self._pin_refused(refusal.peer or "unknown", refusal.detail)

    def _pin_refused(self, onion: str, detail: str) -> None:
        self._metrics.inc("mldsa_pin_mismatches")
        self.log.warn("refused {onion}: {error}", onion=onion, error=detail)
        self._events.emit("network_error", peer=onion, error="ML-DSA key mismatch",
                          detail=detail)

    # -- pins ---------------------------------------------------------------
    def _check_pin(self, onion: str, record: IdentityRecord) -> str | None:
        pinned = self.pins.get(onion)
        if pinned is None or pinned == record.mldsa_public:
            return None
        try:
            check_mldsa_change(pinned, record)
        except PinMismatch as e:
            self._pin_refused(onion, str(e))
            return "ML-DSA key mismatch"
        return None

    def _repin(self, onion: str, record: IdentityRecord) -> None:
        """Pin on first contact, or re-pin after a rotation :meth:`_check_pin` accepted."""
        pinned = self.pins.get(onion)
        if pinned == record.mldsa_public:
            return
        if pinned is not None:
            self.log.info("{onion} rotated its ML-DSA-65 key (signed by the pinned one): "
                          "re-pinned", onion=onion)
        self.pins.pin(onion, record.mldsa_public)

    # -- pushing ------------------------------------------------------------
    def _binding_for(self, peer: str) -> bytes:
        """The I2P binding, only for peers the operator added or this node dialled."""
        binding = self.identity.i2p_binding if self.identity is not None else None
        if binding is None:
            return b""
        info = self._store.get(peer)
        if peer in self._dialled or (info is not None and info.operator_added):
            return binding.to_bytes()
        return b""

    def _push_own(self, link: IPeerLink, peer: str) -> None:
        if self.identity is None:
            return
        self._send(link, RecordPush(self.identity.record.to_bytes(), self._binding_for(peer)))

    def _send(self, link: IPeerLink, push: RecordPush) -> None:
        try:
            send_frame(link, Channel.CONTROL, push.encode())
        except Exception as e:  # noqa: BLE001 - a dead link: nothing to push to
            self.log.info("record push to {peer} not sent: {error}", peer=str(link.peer),
                          error=str(e))
            return
        self._metrics.inc("records_pushed")

    def push_all(self) -> int:
        """Send the current record (or revocation) to every connected peer."""
        count = 0
        for peer in self._pool.peers():
            link = self._pool.link(peer)
            if link is None:
                continue
            if self.revocation is not None:
                self._send(link, RecordPush(self.revocation.to_bytes()))
            else:
                self._push_own(link, peer)
            count += 1
        return count

    def set_identity(self, identity: NodeIdentity) -> None:
        """A new record for this node (refresh, I2P bind...): push it to connected peers."""
        old = self.identity
        self.identity = identity
        if old is not None and old.record == identity.record and (
                old.i2p_binding == identity.i2p_binding):
            return
        if self.revocation is None:
            self.push_all()

    def _identity_changed(self, identity: NodeIdentity) -> None:
        """The identity service's news: a re-signed or newly bound record."""
        if self.identity_service is not None and self.identity_service.last_reason == "refresh":
            self._metrics.inc("records_refreshed")
        self.set_identity(identity)
        if self._on_identity is not None:
            self._on_identity(identity)

    # -- the timer: revocation -------------------------------------------------
    def _tick(self) -> None:
        if self.identity is None or self.revocation is not None:
            return
        self._check_revocation_file(self.identity)

    def _check_revocation_file(self, identity: NodeIdentity) -> bool:
        """Adopt ``revocation.bin`` once ``identity revoke`` wrote it; True if revoked."""
        path = Path(identity.directory) / REVOCATION_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as e:
            self.log.error("cannot read {path}: {error}", path=str(path), error=str(e))
            return False
        try:
            record = verify_record(data, identity.onion, self._clock.seconds())
            self.revoke(record)
        except RecordError as e:
            self.log.error("{path} is not a valid revocation of this node: {error}",
                           path=str(path), error=str(e))
            return False
        return True

    def revoke(self, revocation: IdentityRecord) -> int:
        """Adopt this node's signed revocation: send it to every peer with a session.

        From then on every session opened to this node gets the revocation and is
        closed, and the node dials no one. Returns how many peers were sent it.
        """
        if self.identity is None or revocation.onion != self.identity.onion:
            raise RecordError("not a revocation of this node's identity")
        if revocation.kind is not RecordKind.REVOCATION:
            raise RecordError("not a revocation record")
        if self.revocation is not None:
            return 0
        self.revocation = revocation
        self.stop()
        count = self.push_all()
        self.log.warn("this node's identity is revoked; revocation sent to {count} peers",
                      count=count)
        self._events.emit("network_error", peer=self.identity.onion, error="identity revoked",
                          detail=f"revocation sent to {count} connected peers")
        for peer in self._pool.peers():
            self._pool.close(peer, "identity revoked")
        return count

    # -- records learnt elsewhere (the DHT) -------------------------------------
    def learn(self, onion: str, data: bytes, source: str = "dht") -> IdentityRecord | None:
        """A record of ``onion`` that came other than through its own session.

        Checked as a pushed record is (signatures against the onion, pin,
        rollback), then cached; a revocation is kept for good and closes every
        session with ``onion``. An older record than the one cached is no
        refusal (the DHT may lag behind a session): the cached one is returned.
        None if the record is refused (counted, ``network_error`` event).
        """
        now = self._clock.seconds()
        try:
            record = verify_record(data, onion, now)
        except RecordError as e:
            self._refuse_push(onion, f"{source}: {e}")
            return None
        current = self.cache.get(onion)
        if current is not None and record.sequence <= current.sequence \
                and record.kind is RecordKind.IDENTITY:
            return current
        if self._check_pin(onion, record) is not None:
            return None
        try:
            record = self.cache.accept(record, onion, now)
        except RevokedIdentity:
            return None
        except RecordError as e:
            self._refuse_push(onion, f"{source}: {e}")
            return None
        self._repin(onion, record)
        self._metrics.inc("records_received")
        if record.kind is RecordKind.REVOCATION:
            self.log.warn("{onion} revoked its identity ({reason}), learnt from the {source}",
                          onion=onion, reason=record.reason, source=source)
            self._events.emit("network_error", peer=onion, error="peer revoked",
                              detail=record.reason[:200])
            self._pool.close(onion, "peer revoked")
        return record

    # -- receiving ------------------------------------------------------------
    def on_control(self, peer: str, data: bytes) -> None:
        """A control-channel frame's payload from ``peer``; unknown kinds are ignored
        and counted."""
        try:
            kind, payload = decode_control(data)
            if kind != ControlKind.RECORD_PUSH:
                self._metrics.inc("control_unknown")
                self.log.debug("ignored a control message of unknown kind {kind} from {peer}",
                               kind=kind, peer=peer)
                return
            push = parse_record_push(payload)
        except ControlError as e:
            self._metrics.inc("protocol_errors")
            self._events.emit("network_error", peer=peer, error="protocol violation",
                              detail=str(e))
            Deferred.fromCoroutine(self._store.observe(peer, Behaviour.PROTOCOL_VIOLATION))
            return
        Deferred.fromCoroutine(self._receive_push(peer, push)).addErrback(
            lambda f: self.log.failure("record push from {peer} failed", f, peer=peer))

    def _refuse_push(self, peer: str, why: str) -> None:
        self._metrics.inc("records_refused")
        self.log.info("record push from {peer} refused: {why}", peer=peer, why=why)
        self._events.emit("network_error", peer=peer, error="record refused", detail=why)

    async def _receive_push(self, peer: str, push: RecordPush) -> None:
        link = self._pool.link(peer)
        onion = (link_onion(link) if link is not None else None) or (
            peer if peer.endswith(".onion") else None)
        if onion is None:
            self._refuse_push(peer, "no verified onion for this session")
            return
        now = self._clock.seconds()
        try:
            record = verify_record(push.record, onion, now)
        except RecordError as e:  # signed by someone else, expired, malformed...
            self._refuse_push(peer, str(e))
            return
        current = self.cache.get(onion)
        if current is not None and record.sequence < current.sequence:
            self._refuse_push(peer, f"record sequence {record.sequence} is lower than "
                                    f"{current.sequence} already seen (rollback)")
            return
        if self._check_pin(onion, record) is not None:
            self._pool.close(peer, "ML-DSA key mismatch")
            return
        try:
            record = self.cache.accept(record, onion, now)
        except RevokedIdentity:
            self._pool.close(peer, "revoked identity")
            return
        except RecordError as e:  # a rollback, or two records with one sequence
            self._refuse_push(peer, str(e))
            return
        self._repin(onion, record)
        self._metrics.inc("records_received")
        if record.kind is RecordKind.REVOCATION:
            self.log.warn("{onion} revoked its identity ({reason}): refused from now on",
                          onion=onion, reason=record.reason)
            self._events.emit("network_error", peer=onion, error="peer revoked",
                              detail=record.reason[:200])
            self._pool.close(onion, "peer revoked")
            if peer != onion:
                self._pool.close(peer, "peer revoked")
            return
        i2p_address: str | None = None
        if push.binding:
            try:
                i2p_address = verify_binding(record, I2PBinding.parse(push.binding))
            except RecordError as e:
                self._refuse_push(peer, f"I2P binding: {e}")
        if self._store.get(onion) is not None or peer == onion:
            await self._store.add(onion, i2p_destination=i2p_address,
                                  record=record.to_bytes(), origin=ORIGIN_PEER)
