"""Reliable messaging: persistent outbox, acknowledgements, retries, de-duplication.

Sending: ``send()`` writes the message to the outbox table *before* anything
else, then delivers it over a pooled session. The row is deleted only when the
peer's acknowledgement arrives; until then the message is retried with
exponential backoff (``retry_base * 2**n``, capped at ``retry_max``), and at once
whenever a session with the peer comes up. After ``ttl`` seconds unacknowledged
it expires. On restart every row left in the outbox is sent again.

``send()`` answers only once the outbox insert has committed. The database
group-commits (:class:`aegis_hidden.peers.ThreadedSQLite`): the writes of many
messages (inserts, attempt notes, deletes, ``seen`` ids) share one
transaction and one fsync, so durability costs a few milliseconds of latency,
not a transaction per write. A message acknowledged before its attempt note
was written gets no note (its row is already gone). A failed transaction fails
all its writers and keeps nothing: a send that failed was never accepted, and
a message whose delete failed (ack, expiry) stays queued and is tried again.

Receiving: each message id is written to the ``seen`` table (as a keyed hash of
peer and id, with the time rounded to the minute: no contact log) before the message
is handed to the application (the ``message_received`` event) and before the
ack goes out. A message whose id is already there is acknowledged again and
dropped, so a retry after a lost ack, or after either node restarted, is never
delivered twice. Ids are kept for ``dedupe_window`` seconds, which is longer
than the sender's ``ttl``; a message older than the window is acknowledged and
dropped (it may be a copy of one forgotten).

Backpressure: while the live session to a peer still holds more unsent cells
than it can send within ``ack_timeout`` (the cell scheduler sends them at the
mixing profile's rate, or ``max_backlog_cells`` when the rate is not known),
``send()`` refuses with :class:`Backpressure`, which says when to try again;
nothing is stored. An acknowledgement cannot come before the message has left
our own queue, so an ack timeout while that queue still holds cells is not
the peer's fault: the timer starts again, with no reputation charge and no
copy queued behind the first. Only an ack missing while the session is up and
our queue is empty counts as the peer's timeout.

Request/response rides on the same path: a request is a message with ``rq``,
the answer is a message with ``re`` = the request's id, both reliable.

Offline mailboxes: when the DHT runs it sets :attr:`Messenger.mailbox`. A
message still unacknowledged ``mailbox_after`` seconds after it was queued is,
at its next failed attempt, also left in the peer's DHT mailbox (once per
message and run; it stays in the outbox and is still retried). Letters the
node collects from its own mailbox go through :meth:`receive_letter`, the
same path as a message from a session: same id, same de-duplication, so a
message that arrives both ways is delivered once. The ack goes out at once if
a session with the sender is up, else to the sender's next retry.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import os
import sqlite3
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .._backoff import Backoff
from ..addresses import onion_address_from_public_key
from ..events import EventBus
from ..identity import RecordError, parse_record
from ..peers import Behaviour, Database, PeerInfo, PeerStore
from ._envelope import Ack, EnvelopeError, Message, check_body, decode
from ._metrics import Metrics
from ._pool import ConnectionPool, PeerBlocked, PeerRevoked

SEEN_TIME_GRANULARITY = 60.0
"""Seconds: the de-duplication window keeps receive times rounded down to this."""


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"  # in the outbox, not (yet) transmitted
    SENT = "sent"  # transmitted at least once, waiting for the ack
    ACKNOWLEDGED = "acknowledged"  # the peer has it; removed from the outbox
    EXPIRED = "expired"  # not acknowledged within the ttl; removed from the outbox


class MessageTooLarge(ValueError):
    """The encoded message exceeds ``performance.max_message_size``."""


class RequestTimeout(Exception):
    """No response to a request within its timeout."""


class Backpressure(Exception):
    """Our own send queue to the peer is full: try again in ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def backlog(link: Any) -> int:
    """Cells the session ``link`` (as the pool hands it out) has not sent yet
    (0 for a link that cannot tell)."""
    queued = getattr(getattr(link, "raw", link), "queued", None)
    if not callable(queued):
        return 0
    count = queued()
    return count if isinstance(count, int) else 0


RequestHandler = Callable[[str, dict[str, Any]], "Awaitable[dict[str, Any]] | dict[str, Any]"]
#: leaves (peer, encoded message, message id) in the peer's mailbox; how many holders took it
MailboxDepositor = Callable[[str, bytes, str], "Deferred[int]"]


@dataclass
class _Pending:
    message: Message
    peer: str
    data: bytes
    attempts: int = 0
    failures: int = 0
    state: DeliveryState = DeliveryState.QUEUED
    first_sent: float | None = None
    call: IDelayedCall | None = None
    in_flight: bool = False
    acked: bool = False  # the ack arrived; its outbox delete is under way
    parked: bool = False  # its peer is not in the store: no retries until it is added
    deposited: bool = False  # left in the peer's mailbox (or being left) in this run

    def cancel_timer(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class Messenger:
    log = Logger()

    def __init__(
        self,
        db: Database,
        store: PeerStore,
        pool: ConnectionPool,
        events: EventBus,
        metrics: Metrics,
        clock: IReactorTime,
        *,
        max_message_size: int,
        ack_timeout: float = 30.0,
        retry_base: float = 2.0,
        retry_max: float = 300.0,
        ttl: float = 86400.0,
        dedupe_window: float = 2 * 86400.0,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        max_backlog_cells: int = 256,
    ) -> None:
        if dedupe_window <= ttl:
            raise ValueError("dedupe_window must be longer than ttl, or retries could be "
                             "delivered twice")
        self._db = db
        self._store = store
        self._pool = pool
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self.max_message_size = max_message_size
        self.ack_timeout = ack_timeout
        self.retry_base = retry_base
        self.retry_max = retry_max
        # jittered (full jitter, never under half of retry_base): fixed retry gaps
        # would be a fingerprint
        self.backoff = Backoff(base=retry_base, cap=retry_max, mode="full",
                               floor=retry_base / 2)
        self.ttl = ttl
        self.dedupe_window = dedupe_window
        self._new_id = new_id
        self._pending: dict[str, _Pending] = {}
        self._states: OrderedDict[str, DeliveryState] = OrderedDict()
        # de-duplication window: keyed hash of (peer, id) -> received, to the minute
        self._seen: dict[bytes, float] = {}
        self._seen_key = os.urandom(32)  # replaced by the database's key in load()
        self._receiving: set[bytes] = set()
        self._requests: dict[str, Deferred[dict[str, Any]]] = {}
        self._handlers: dict[str, RequestHandler] = {"ping": self._pong}
        self._pruner = LoopingCall(self._prune)
        self._pruner.clock = clock
        self._keep_on_removal: set[str] = set()
        self.max_backlog_cells = max_backlog_cells
        #: Cells per second one link sends (the mixing profile's, under the node's
        #: bandwidth cap), None when not known: the node core sets it.
        self.link_rate: Callable[[], float | None] = lambda: None
        #: set by the DHT service: leaves a message in a peer's mailbox (None: no DHT)
        self.mailbox: MailboxDepositor | None = None
        #: seconds a message waits unacknowledged before it is also left in the
        #: peer's mailbox (0: never)
        self.mailbox_after = 0.0
        pool.on_connected(self._peer_connected)
        store.on_change(self._peer_changed)

    # -- lifecycle ----------------------------------------------------------
    async def load(self) -> int:
        """Read the outbox and the de-duplication window; returns messages to resend."""
        horizon = self._clock.seconds() - self.dedupe_window

        def read(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            conn.execute("DELETE FROM seen WHERE received < ?", (horizon,))
            seen = conn.execute("SELECT digest, received FROM seen").fetchall()
            (key,) = conn.execute(
                "SELECT value FROM node_secrets WHERE name = 'seen_key'").fetchone()
            rows = conn.execute("SELECT msg_id, peer_id, body, attempts, created FROM outbox "
                                "ORDER BY created").fetchall()
            return [key, *seen], rows

        (self._seen_key, *seen), rows = await self._db.run(read)
        self._seen = {bytes(d): t for d, t in seen}
        for msg_id, peer, body, attempts, created in rows:
            decoded = decode(body.encode(), max(self.max_message_size, len(body)) + 1)
            assert isinstance(decoded, Message)
            # the envelope carries the hour only; the ttl counts from the exact time
            decoded = dataclasses.replace(decoded, created=float(created))
            pending = _Pending(decoded, peer, body.encode(), attempts=attempts)
            if attempts:
                pending.state = DeliveryState.SENT
            self._pending[msg_id] = pending
            self._set_state(msg_id, pending.state, emit=False)
        return len(rows)

    def start(self) -> None:
        """Begin delivering what the outbox holds; prune the window hourly."""
        for msg_id in list(self._pending):
            self._attempt(msg_id)
        if not self._pruner.running:
            self._pruner.start(3600.0, now=False)

    def stop(self) -> None:
        if self._pruner.running:
            self._pruner.stop()
        for pending in self._pending.values():
            pending.cancel_timer()
        for d in list(self._requests.values()):
            d.cancel()

    # -- queries ------------------------------------------------------------
    def state(self, msg_id: str) -> DeliveryState | None:
        return self._states.get(msg_id)

    def outbox_size(self) -> int:
        return len(self._pending)

    def pending_for(self, peer: str) -> list[str]:
        return [m for m, p in self._pending.items() if p.peer == peer]

    def set_request_handler(self, message_type: str, handler: RequestHandler) -> None:
        self._handlers[message_type] = handler

    # -- sending ------------------------------------------------------------
    async def send(self, peer: str, body: dict[str, Any], *, request: bool = False,
                   reply_to: str | None = None, msg_id: str | None = None
                   ) -> tuple[str, DeliveryState]:
        """Queue ``body`` for ``peer`` durably; returns its id and current state."""
        check_body(body)
        info = self._store.require(peer)
        if self._pool.is_revoked(info.peer_id):
            raise PeerRevoked(f"{info.peer_id} has revoked its identity")
        if self._store.is_blocked(info.peer_id):
            raise PeerBlocked(f"{info.peer_id} is blacklisted")
        message = Message(msg_id or self._new_id(), self._clock.seconds(), body, request,
                          reply_to)
        data = message.encode()
        if len(data) > self.max_message_size:
            raise MessageTooLarge(f"message is {len(data)} bytes encoded, the limit "
                                  f"(performance.max_message_size) is {self.max_message_size}")
        if reply_to is None:  # an answer to a peer's request is never refused
            self._check_backlog(info.peer_id)
        text = data.decode()
        row = (message.msg_id, info.peer_id, text, message.created, message.created)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO outbox (msg_id, peer_id, body, created, next_attempt) "
                         "VALUES (?, ?, ?, ?, ?)", row)

        await self._db.run(insert)
        self._pending[message.msg_id] = _Pending(message, info.peer_id, data)
        self._set_state(message.msg_id, DeliveryState.QUEUED)
        self._attempt(message.msg_id)
        state = self._states[message.msg_id]
        return message.msg_id, state

    def _check_backlog(self, peer: str) -> None:
        """Raise :class:`Backpressure` while the session to ``peer`` holds more
        unsent cells than it sends within ``ack_timeout``."""
        link = self._pool.link(peer)
        waiting = backlog(link) if link is not None else 0
        if not waiting:
            return
        rate = self.link_rate()
        limit = self.max_backlog_cells if not rate else max(16, int(rate * self.ack_timeout))
        if waiting <= limit:
            return
        retry = 1 if not rate else math.ceil((waiting - limit / 2) / rate)
        retry = min(300, max(1, retry))
        self._metrics.inc("sends_refused_backpressure")
        raise Backpressure(f"the send queue to {peer} is full ({waiting} cells not yet sent, "
                           f"limit {limit}): try again in {retry}s", retry)

    async def request(self, peer: str, body: dict[str, Any], timeout: float = 60.0
                      ) -> dict[str, Any]:
        """Send a request and wait for the response body (or :class:`RequestTimeout`)."""
        msg_id = self._new_id()
        waiter: Deferred[dict[str, Any]] = Deferred()
        self._requests[msg_id] = waiter
        timer = self._clock.callLater(timeout, self._request_timed_out, msg_id, timeout)
        try:
            await self.send(peer, body, request=True, msg_id=msg_id)
            return await waiter
        finally:
            self._requests.pop(msg_id, None)
            if timer.active():
                timer.cancel()

    def _request_timed_out(self, msg_id: str, timeout: float) -> None:
        waiter = self._requests.pop(msg_id, None)
        if waiter is not None:
            waiter.errback(RequestTimeout(f"no response to request {msg_id} in {timeout:g}s"))

    def _set_state(self, msg_id: str, state: DeliveryState, emit: bool = True,
                   **fields: Any) -> None:
        if self._states.get(msg_id) is state:
            return
        self._states[msg_id] = state
        self._states.move_to_end(msg_id)
        while len(self._states) > 100_000:
            self._states.popitem(last=False)
        if emit:
            pending = self._pending.get(msg_id)
            peer = pending.peer if pending else fields.pop("peer", None)
            self._events.emit("delivery_state", id=msg_id, peer=peer, state=state.value,
                              **fields)

    def _attempt(self, msg_id: str) -> None:
        Deferred.fromCoroutine(self._deliver(msg_id)).addErrback(
            lambda f: self.log.failure("delivering {msg_id} failed", f, msg_id=msg_id))

    async def _deliver(self, msg_id: str) -> None:
        pending = self._pending.get(msg_id)
        if pending is None or pending.in_flight or pending.acked:
            return
        pending.cancel_timer()
        if self._store.get(pending.peer) is None:
            # Kept when its peer was removed (or the peer is gone since a restart):
            # wait, with no timer, until the peer is added again; never spin.
            if not pending.parked:
                pending.parked = True
                self.log.debug("message {msg_id} kept for {peer}, not in the peer store: "
                              "no retries until it is added again", msg_id=msg_id,
                              peer=pending.peer)
            return
        if self._clock.seconds() - pending.message.created > self.ttl:
            await self._expire(pending)
            return
        pending.in_flight = True
        try:
            link = await self._pool.get(pending.peer)
        except Exception as e:  # noqa: BLE001 - any dial failure means: retry later
            pending.in_flight = False
            self._retry_later(pending, f"{e.__class__.__name__}: {e}")
            return
        pending.in_flight = False
        if msg_id not in self._pending or pending.acked:  # acknowledged meanwhile
            return
        pending.attempts += 1
        if pending.first_sent is None:
            pending.first_sent = self._clock.seconds()
        pending.call = self._clock.callLater(self.ack_timeout, self._ack_timed_out, msg_id)
        self._set_state(msg_id, DeliveryState.SENT, attempts=pending.attempts)
        try:
            link.send_message(pending.data)
        except Exception as e:  # noqa: BLE001 - a dead link: close it and retry
            pending.cancel_timer()
            link.close("send failed")
            self._retry_later(pending, f"{e.__class__.__name__}: {e}")
            return
        self._metrics.inc("messages_sent")
        self._metrics.inc("bytes_out", len(pending.data))
        if pending.acked or self._pending.get(msg_id) is not pending:
            return  # settled while it was sent (a fast ack): its row is gone, nothing to note
        attempts, next_at = pending.attempts, self._clock.seconds() + self.ack_timeout

        def note(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE outbox SET attempts = ?, next_attempt = ? WHERE msg_id = ?",
                         (attempts, next_at, msg_id))

        await self._db.run(note)

    def _retry_later(self, pending: _Pending, reason: str) -> None:
        if self._pending.get(pending.message.msg_id) is not pending:
            return  # settled meanwhile (acknowledged, expired, its peer removed)
        delay = self.backoff.delay(pending.failures)
        pending.failures += 1
        pending.cancel_timer()
        pending.call = self._clock.callLater(delay, self._attempt, pending.message.msg_id)
        self.log.debug("message {msg_id} to {peer}: retry in {delay:g}s ({reason})",
                      msg_id=pending.message.msg_id, peer=pending.peer, delay=delay,
                      reason=reason)
        self._maybe_deposit(pending)

    def _maybe_deposit(self, pending: _Pending) -> None:
        """Leave ``pending`` in its peer's mailbox too, once it waited ``mailbox_after``."""
        deposit = self.mailbox
        if deposit is None or self.mailbox_after <= 0 or pending.deposited:
            return
        if self._clock.seconds() - pending.message.created < self.mailbox_after:
            return
        pending.deposited = True
        msg_id = pending.message.msg_id

        def done(holders: int) -> None:
            if not holders:
                pending.deposited = False  # nobody took it: try at the next failure
                return
            self._metrics.inc("mailbox_deposited")
            self._events.emit("mailbox_deposited", peer=pending.peer, id=msg_id,
                              holders=holders)

        def failed(f: Any) -> None:
            # kept as tried: a message that cannot be left (too large for a letter, no
            # identity record of the peer) is not tried again at every retry
            self.log.info("message {msg_id} not left in {peer}'s mailbox: {error}",
                          msg_id=msg_id, peer=pending.peer, error=f.getErrorMessage())

        deposit(pending.peer, pending.data, msg_id).addCallbacks(done, failed)

    def _ack_timed_out(self, msg_id: str) -> None:
        pending = self._pending.get(msg_id)
        if pending is None:
            return
        pending.call = None
        link = self._pool.link(pending.peer)
        if link is not None and backlog(link):
            # Our own queue still holds cells (the message may not have left): no
            # fault of the peer's, and a copy would only queue behind the first.
            pending.call = self._clock.callLater(self.ack_timeout, self._ack_timed_out, msg_id)
            return
        if link is not None:  # the session is up and our queue empty: the peer is silent
            Deferred.fromCoroutine(self._store.observe(pending.peer, Behaviour.TIMEOUT))
        self._retry_later(pending, f"no ack within {self.ack_timeout:g}s")

    def retry_all(self) -> None:
        """Try every queued message now, its backoff reset (the node resumed after
        an isolation, a transport is back); a copy the peer already has is
        acknowledged again and not delivered twice."""
        for msg_id, pending in list(self._pending.items()):
            if not pending.in_flight and not pending.parked and (
                    pending.state is DeliveryState.QUEUED or pending.call is not None):
                pending.failures = 0
                self._attempt(msg_id)

    def _peer_connected(self, peer: str) -> None:
        for msg_id, pending in list(self._pending.items()):
            if pending.peer == peer and not pending.in_flight and (
                    pending.state is DeliveryState.QUEUED or pending.call is not None):
                pending.failures = 0
                self._attempt(msg_id)

    # -- peers removed and added -------------------------------------------
    def keep_messages_on_removal(self, peer: str) -> None:
        """The next removal of ``peer`` keeps its queued messages (the operator asked)."""
        self._keep_on_removal.add(peer)

    def cancel_keep(self, peer: str) -> None:
        self._keep_on_removal.discard(peer)

    def _peer_changed(self, peer: PeerInfo, what: str) -> None:
        if what == "removed":
            if peer.peer_id in self._keep_on_removal:
                self._keep_on_removal.discard(peer.peer_id)
                for pending in self._pending.values():
                    if pending.peer == peer.peer_id:
                        pending.cancel_timer()
                        pending.parked = True
            else:
                Deferred.fromCoroutine(self._settle_removed(peer.peer_id)).addErrback(
                    lambda f: self.log.failure("settling messages to {peer} failed", f,
                                               peer=peer.peer_id))
        elif what in ("added", "updated", "blocked", "unblocked"):  # back in the store
            for msg_id, pending in list(self._pending.items()):
                if pending.peer == peer.peer_id and pending.parked:
                    pending.parked = False
                    pending.failures = 0
                    self._attempt(msg_id)

    async def _settle_removed(self, peer: str) -> None:
        """The peer was removed: its queued messages expire, each with its event."""
        settled = [p for p in self._pending.values() if p.peer == peer and not p.acked]
        if not settled:
            return
        for pending in settled:
            pending.cancel_timer()
        ids = [p.message.msg_id for p in settled]

        def delete(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM outbox WHERE msg_id = ?", [(i,) for i in ids])

        await self._db.run(delete)
        for pending in settled:
            msg_id = pending.message.msg_id
            if self._pending.get(msg_id) is not pending:
                continue  # acknowledged meanwhile
            self._pending.pop(msg_id)
            self._set_state(msg_id, DeliveryState.EXPIRED, peer=peer, reason="peer removed")
        self.log.debug("{count} queued messages to {peer} expired: peer removed",
                      count=len(settled), peer=peer)

    async def _expire(self, pending: _Pending) -> None:
        msg_id = pending.message.msg_id
        try:
            await self._db.run(
                lambda c: c.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,)))
        except Exception as e:  # noqa: BLE001 - still in the outbox: expire it on the next try
            self._retry_later(pending, f"removing the expired message failed: {e}")
            return
        self._pending.pop(msg_id, None)
        self._set_state(msg_id, DeliveryState.EXPIRED, peer=pending.peer)
        self._events.emit("network_error", peer=pending.peer, error="message expired",
                          id=msg_id)

    # -- receiving ----------------------------------------------------------
    def on_message(self, peer: str, data: bytes) -> None:
        """Everything that arrives on a session (the pool calls this)."""
        try:
            envelope = decode(data, self.max_message_size + 1024)
        except EnvelopeError as e:
            self._metrics.inc("protocol_errors")
            self._events.emit("network_error", peer=peer, error="protocol violation",
                              detail=str(e))
            Deferred.fromCoroutine(self._store.observe(peer, Behaviour.PROTOCOL_VIOLATION))
            return
        if isinstance(envelope, Ack):
            Deferred.fromCoroutine(self._acked(peer, envelope.msg_id)).addErrback(
                lambda f: self.log.failure("ack handling failed", f))
        else:
            Deferred.fromCoroutine(self._receive(peer, envelope)).addErrback(
                lambda f: self.log.failure("receiving from {peer} failed", f, peer=peer))

    async def receive_letter(self, sender: str, data: bytes) -> bool:
        """A message ``sender`` left in our mailbox (its signature already checked):
        delivered as if it came over a session; False if it is no message."""
        try:
            envelope = decode(data, self.max_message_size + 1024)
        except EnvelopeError as e:
            self.log.info("a letter from {peer} holds no message: {error}", peer=sender,
                          error=str(e))
            return False
        if not isinstance(envelope, Message):
            return False
        await self._receive(self._peer_of_onion(sender), envelope)
        return True

    def _peer_of_onion(self, onion: str) -> str:
        """The peer id messages from ``onion`` arrive under (a peer known only by its
        ``.b32.i2p`` name whose record is that onion's is named by that name), so the
        de-duplication sees one sender whichever way a message came."""
        if self._store.get(onion) is not None:
            return onion
        for info in self._store.all():
            if info.record:
                try:
                    key = parse_record(info.record).ed25519_public
                except RecordError:
                    continue
                if onion_address_from_public_key(key) == onion:
                    return info.peer_id
        return onion

    async def _acked(self, peer: str, msg_id: str) -> None:
        pending = self._pending.get(msg_id)
        if pending is None or pending.peer != peer or pending.acked:
            return  # a duplicate ack, or an ack for someone else's id: ignore
        pending.acked = True
        pending.cancel_timer()
        try:
            await self._db.run(
                lambda c: c.execute("DELETE FROM outbox WHERE msg_id = ?", (msg_id,)))
        except Exception as e:  # noqa: BLE001 - the row is still there: lose nothing
            # The delete's transaction failed (a failed group commit fails all its
            # callers): the message stays queued and is sent again; the peer
            # acknowledges the copy without delivering it twice, and the delete
            # is tried again then.
            pending.acked = False
            self._retry_later(pending, f"removing it from the outbox failed: {e}")
            return
        self._pending.pop(msg_id, None)
        self._metrics.inc("messages_acked")
        if pending.first_sent is not None:
            self._metrics.latency.observe(self._clock.seconds() - pending.first_sent)
        self._set_state(msg_id, DeliveryState.ACKNOWLEDGED, peer=peer,
                        attempts=pending.attempts)
        await self._store.observe(peer, Behaviour.MESSAGE_ACKED)

    def _send_ack(self, peer: str, msg_id: str) -> None:
        link = self._pool.link(peer)
        if link is None:
            return  # the sender retries; we ack the copy
        try:
            link.send_message(Ack(msg_id).encode())
        except Exception as e:  # noqa: BLE001 - the sender retries; we ack the copy
            self.log.debug("ack to {peer} not sent: {error}", peer=peer, error=str(e))

    def _seen_digest(self, peer: str, msg_id: str) -> bytes:
        """What the window keeps of (peer, id): a hash under a key of this database."""
        return hashlib.blake2b(f"{peer}\x00{msg_id}".encode(), key=self._seen_key,
                               digest_size=16).digest()

    async def _receive(self, peer: str, message: Message) -> None:
        key = self._seen_digest(peer, message.msg_id)
        if key in self._seen:
            self._metrics.inc("messages_duplicate")
            self._send_ack(peer, message.msg_id)
            return
        if key in self._receiving:
            return  # being written; the ack follows the write
        now = self._clock.seconds()
        # message.created is the sender's hour (rounded down): it errs towards "older"
        if now - message.created > self.dedupe_window:
            self.log.warn("dropping message {msg_id} from {peer}: older than the "
                          "de-duplication window", msg_id=message.msg_id, peer=peer)
            self._send_ack(peer, message.msg_id)
            return
        self._receiving.add(key)
        coarse = now - now % SEEN_TIME_GRANULARITY
        try:
            await self._db.run(lambda c: c.execute(
                "INSERT OR IGNORE INTO seen (digest, received) VALUES (?, ?)", (key, coarse)))
            self._seen[key] = coarse
        finally:
            self._receiving.discard(key)
        self._metrics.inc("messages_received")
        fields: dict[str, Any] = {"peer": peer, "id": message.msg_id,
                                  "message": message.body}
        if message.request:
            fields["request"] = True
        if message.reply_to is not None:
            fields["reply_to"] = message.reply_to
        self._events.emit("message_received", **fields)
        self._send_ack(peer, message.msg_id)
        if message.reply_to is not None:
            waiter = self._requests.pop(message.reply_to, None)
            if waiter is not None:
                waiter.callback(message.body)
        if message.request:
            await self._answer(peer, message)

    async def _answer(self, peer: str, message: Message) -> None:
        kind = str(message.body["type"])
        handler = self._handlers.get(kind)
        if handler is None:
            response: dict[str, Any] = {"type": "error",
                                        "data": f"no handler for request type {kind!r}"}
        else:
            result = handler(peer, message.body)
            response = await result if isinstance(result, Awaitable) else result
        await self.send(peer, response, reply_to=message.msg_id)

    @staticmethod
    def _pong(peer: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"type": "pong", "data": body.get("data")}

    def _prune(self) -> None:
        horizon = self._clock.seconds() - self.dedupe_window
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        self._db.run(lambda c: c.execute("DELETE FROM seen WHERE received < ?", (horizon,))
                     ).addErrback(lambda f: self.log.failure("pruning seen ids failed", f))


def body_size(body: dict[str, Any]) -> int:
    return len(json.dumps(body, separators=(",", ":")).encode())
