"""The sans-I/O session: the handshake machine, the record layer and the cell framing joined.

No sockets, no reactor: feed it bytes with :meth:`Session.receive_data`, take
what it wants to send from :meth:`Session.data_to_send`, and read what
happened from :meth:`Session.events`. Time comes from an injected ``clock``
callable and randomness from an injected ``random`` callable.

Three parts, each in its own module:

* :mod:`._handshake`: handshake messages in, keys + the peer's record + the
  version out (§2);
* :mod:`._recordlayer`: seals queued cells when they leave, opens cells,
  rekeys (§4);
* :mod:`aegis_hidden.wire`: the cell layouts, fragmentation and reassembly (§3).

After the handshake, :meth:`Session.send_message` only *queues* plaintext
cells. They are sealed when they leave: all at once by :meth:`data_to_send`
(the plain sans-I/O use), or a few at a time by a cell scheduler through
:meth:`seal_queued`, which may add cover cells (see
:class:`~aegis_hidden.interfaces.ICellScheduler`).

docs/protocol.md is the specification; section numbers below refer to it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from twisted.logger import Logger

from ..crypto import xwing
from ..identity import I2PBinding, IdentityRecord, RecordCache, b32_address_of_destination
from ..wire import (
    CellError,
    CellReader,
    CellType,
    Flags,
    MessageTooLarge,
    Reassembler,
    UnexpectedCell,
    clear_body_capacity,
    decode_clear,
    decode_inner,
    encode_clear,
    encode_inner,
    fragment,
    handshake_pb2,
    inner_body_capacity,
    prepare_message,
)
from ._aead import Direction
from ._errors import CloseReason, HandshakeError, SessionError
from ._handshake import (
    MAX_HANDSHAKE_MESSAGE,
    Action,
    Done,
    Handshake,
    IdentityKeys,
    InstallKeys,
    ReplayCache,
    SendClear,
    SendSealed,
    State,
    _parse,
    dialed_hint,
    is_canonical_address,
)
from ._params import PROTOCOL_VERSIONS, SessionParams
from ._recordlayer import RecordLayer

if TYPE_CHECKING:
    from ..identity import NodeIdentity

__all__ = [
    "PROTOCOL_VERSIONS",
    "Closed",
    "Established",
    "IdentityKeys",
    "MessageReceived",
    "ReplayCache",
    "Session",
    "SessionEvent",
    "SessionParams",
    "State",
    "b32_address_of_destination",
    "dialed_hint",
    "is_canonical_address",
]


@dataclass(frozen=True)
class Established:
    peer: str
    record: IdentityRecord
    version: int


@dataclass(slots=True)  # not frozen: created once per message on the hot path
class MessageReceived:
    data: bytes


@dataclass(frozen=True)
class Closed:
    reason: CloseReason
    detail: str
    by_peer: bool


SessionEvent = Established | MessageReceived | Closed


class Session:
    """One side of one session (§2 handshake, §3 cells, §4 record layer).

    ``peer_address`` is the address the initiator dialed (``.onion`` or
    ``.b32.i2p``, no port); the responder passes None. Everything fails
    closed: any error ends the session with a :class:`CloseReason` and never
    falls back to anything weaker.
    """

    log = Logger()
    #: The handshake machine to run (tests substitute one that misbehaves).
    handshake_class: ClassVar[type[Handshake]] = Handshake

    def __init__(
        self,
        identity: NodeIdentity,
        params: SessionParams,
        *,
        initiator: bool,
        clock: Callable[[], float],
        peer_address: str | None = None,
        random: Callable[[int], bytes] = os.urandom,
        replay_cache: ReplayCache | None = None,
        encapsulate: Callable[[bytes], tuple[bytes, bytes]] = xwing.encapsulate,
        keys: IdentityKeys | None = None,
        record_cache: RecordCache | None = None,
        mldsa_pin: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self._hs = self.handshake_class(identity, params, initiator=initiator, clock=clock,
                             peer_address=peer_address, random=random, replay_cache=replay_cache,
                             encapsulate=encapsulate, keys=keys, record_cache=record_cache,
                             mldsa_pin=mldsa_pin)
        self.identity = identity
        self.params = params
        self.initiator = initiator
        self.peer_address = peer_address or None
        self._clock = clock
        self.state = self._hs.state
        self.close_reason: SessionError | None = None
        self.started_at = clock()
        self._n = params.cell_size
        self._room = inner_body_capacity(self._n)
        self._inbuf = b""
        self._events: list[SessionEvent] = []
        self._record = RecordLayer(self._n, params.rekey_cells, params.rekey_seconds, clock)
        self._hs_in = Reassembler(MAX_HANDSHAKE_MESSAGE, room=clear_body_capacity(self._n))
        self._reader = CellReader(self._n, params.max_message_size)
        self._in_clear = True
        self._clear_out: list[bytes] = []  # hello cells: before any key exists
        self.want_transport_close = False

    # -- what the handshake found ---------------------------------------------
    @property
    def version(self) -> int | None:
        return self._hs.version

    @property
    def peer_record(self) -> IdentityRecord | None:
        return self._hs.peer_record

    @property
    def peer_i2p_binding(self) -> I2PBinding | None:
        """The peer's I2P binding, when this initiator dialed its ``.b32.i2p`` (§2.3)."""
        return self._hs.peer_i2p_binding

    @property
    def local_address(self) -> str:
        """The address this side proves: the responder's matched dialed address."""
        return self._hs.local_address

    @property
    def cover_received(self) -> int:
        """COVER and PADDING cells received so far (for the local trace only)."""
        return self._reader.cover_cells

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # The current keys (tests and the fuzz harness seal cells of their own with them).
    @property
    def _tx(self) -> Direction | None:
        return self._record.tx

    @property
    def _rx(self) -> Direction | None:
        return self._record.rx

    # -- public API -------------------------------------------------------
    def start(self) -> None:
        """Initiator: send ClientHello (§2.2). The responder just waits for it."""
        if self.state is State.CLOSED:
            raise RuntimeError("start() is for an initiator that has not started")
        self._apply(self._hs.start())

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer. Never raises: every failure closes the session.

        Anything that goes wrong in here is either a typed failure (§5) or a bug;
        a bug still ends the session with ``PROTOCOL_ERROR`` (and a logged
        traceback) rather than escaping into the transport.
        """
        if self.state is State.CLOSED:
            return
        try:
            self._receive(data)
        except Exception as e:  # noqa: BLE001 - bytes from the wire must never crash the caller
            self._internal_error(e, "receive_data")

    def send_message(self, data: bytes, *, bulk: bool = False) -> None:
        """Queue one application message as DATA cells (§3.3). Raises MessageTooLarge.

        The cells are sealed when they leave (:meth:`data_to_send` or
        :meth:`seal_queued`), not here. A ``bulk`` message (stream data) is
        sealed only when no other message waits, and another message waits at
        most the rest of the bulk message being sealed (wire's ``CellQueue``).
        """
        if self.state is not State.ESTABLISHED:
            self._require_established()
        flags, payload = prepare_message(data, self.params.compression_threshold,
                                         self.params.max_message_size)
        self._record.cells.push(flags, payload, bulk=bulk)

    def bulk_queued(self) -> int:
        """Bulk (stream data) cells among :meth:`queued`."""
        return self._record.cells.bulk_queued

    def queued(self) -> int:
        """Plaintext cells waiting to be sealed."""
        return self._record.cells.queued

    def seal_queued(self, count: int, cover: int = 0) -> bytes:
        """Seal up to ``count`` queued cells, then ``cover`` COVER cells, and return
        everything there is to send (anything sealed earlier comes first).

        A REKEY the record layer needs takes one of the slots (a cover slot
        first), so at most ``count + cover`` cells are sealed. A cover cell is
        sealed exactly like a data cell: the peer's observer cannot tell them
        apart. Only for an established session.
        """
        if self.state is State.ESTABLISHED:
            self._record.seal_queued(count, cover)
        elif count or cover:
            self._require_established()
        return self._take()

    def seal_slot(self, count: int, cover: int = 0) -> tuple[bytes, int]:
        """:meth:`seal_queued`, and how many queued cells it sealed: a cell scheduler's
        slot, which needs both (one call instead of counting :meth:`queued` before
        and after)."""
        sent = 0
        if self.state is State.ESTABLISHED:
            sent = self._record.seal_queued(count, cover)
        elif count or cover:
            self._require_established()
        return self._take(), sent

    def close(self, reason: CloseReason = CloseReason.NORMAL, detail: str = "") -> None:
        """Close, telling the peer ``reason`` in a sealed CLOSE cell when a session exists.

        Cells already queued are sealed and sent first: a message accepted by
        :meth:`send_message` is not dropped by a close.
        """
        if self.state is State.CLOSED:
            return
        self._finish(SessionError(reason, detail or "closed locally"), by_peer=False)

    def timeout(self) -> None:
        """The handshake timer fired (the caller owns the timer; §2.8)."""
        if self.state not in (State.ESTABLISHED, State.CLOSED):
            self._fail(HandshakeError(
                CloseReason.TIMEOUT,
                f"handshake not finished after {self.params.handshake_timeout:g}s "
                f"(state {self.state.value})"))

    def connection_lost(self) -> None:
        """The transport went away. Without a CLOSE cell first, that is truncation."""
        if self.state is State.CLOSED:
            return
        if self.state is State.ESTABLISHED:
            left = f" with {len(self._inbuf)} bytes of a partial cell" if self._inbuf else ""
            err: SessionError = SessionError(
                CloseReason.TRUNCATED, f"the stream ended without a CLOSE cell{left}")
        else:
            err = HandshakeError(
                CloseReason.TRUNCATED,
                f"the stream ended during the handshake (state {self.state.value})")
        self.want_transport_close = True
        self._finish(err, by_peer=True, notify=False)

    def data_to_send(self) -> bytes:
        """Everything to send now: the queued cells are sealed first (no scheduler)."""
        if self._record.cells.queued and self.state is State.ESTABLISHED:
            self._record.seal_queued()
        return self._take()

    def sealed_to_send(self) -> bytes:
        """Only what is already sealed (handshake flights, CLOSE): queued cells stay
        queued for a cell scheduler."""
        return self._take()

    def events(self) -> list[SessionEvent]:
        out = self._events
        self._events = []
        return out

    # -- the handshake's actions ------------------------------------------
    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendClear):
                for flags, piece in fragment(action.data, clear_body_capacity(self._n)):
                    self._clear_out.append(encode_clear(self._n, flags, piece))
            elif isinstance(action, InstallKeys):
                self._record.install(action.tx, action.rx)
                self._in_clear = False
                self._hs_in.room = self._room
            elif isinstance(action, SendSealed):
                for flags, piece in fragment(action.data, self._room):
                    self._record.seal_now(encode_inner(self._n, CellType.HANDSHAKE, flags, piece))
            elif isinstance(action, Done):
                record = self._hs.peer_record
                version = self._hs.version
                assert record is not None and version is not None
                self.state = State.ESTABLISHED
                self._events.append(Established(action.peer, record, version))
        if self.state is not State.CLOSED:
            self.state = self._hs.state

    def _take(self) -> bytes:
        if self._clear_out:
            # The hello cells precede anything sealed (the first sealed flight
            # follows ServerHello in the same call).
            self._clear_out.append(self._record.take())
            out = b"".join(self._clear_out)
            self._clear_out.clear()
            return out
        return self._record.take()

    # -- receiving --------------------------------------------------------
    def _internal_error(self, e: Exception, where: str) -> None:
        # The traceback goes to the log; the peer only learns PROTOCOL_ERROR, and
        # the detail names the exception type, never its (possibly secret) message.
        self.log.failure("unexpected error in Session.{where} (state {state}): closed with "
                         "PROTOCOL_ERROR", where=where, state=self.state.value)
        if self.state is State.CLOSED:
            return
        err = self._error(CloseReason.PROTOCOL_ERROR,
                          f"internal error while handling peer data ({type(e).__name__})")
        try:
            self._fail(err)
        except Exception:  # noqa: BLE001 - not even the CLOSE cell could be sealed
            self.log.failure("could not send CLOSE after an internal error")
            if not self.closed:
                self._finish(err, by_peer=False, notify=False)

    def _receive(self, data: bytes) -> None:
        buf = self._inbuf + data if self._inbuf else bytes(data)
        n = self._n
        pos = 0
        try:
            if self.state is not State.ESTABLISHED:
                self._early_check(buf)
            total = len(buf)
            while total - pos >= n:
                if self.state is State.ESTABLISHED:
                    pos = self._receive_established(buf, pos)
                else:
                    cell = buf[pos:pos + n]
                    pos += n
                    self._on_cell(cell)
                if self.closed:
                    return
            self._inbuf = buf[pos:]
        except SessionError as e:
            self._fail(e)
        except CellError as e:
            if isinstance(e, UnexpectedCell):
                reason = CloseReason.PROTOCOL_ERROR
            elif isinstance(e, MessageTooLarge):
                reason = CloseReason.MESSAGE_TOO_LARGE
            else:
                reason = CloseReason.BAD_CELL
            self._fail(self._error(reason, str(e)))

    def _early_check(self, buf: bytes) -> None:
        # A responder learns the initiator's cell size from the first 4 bytes,
        # so a mismatch fails at once instead of waiting for bytes that never come.
        if self.state is State.WAIT_CLIENT_HELLO and len(buf) >= 4 and self._in_clear:
            magic, size = buf[:2], int.from_bytes(buf[2:4], "big")
            if magic != b"AH":
                raise HandshakeError(CloseReason.BAD_CELL, "not an aegis-hidden handshake (bad magic)")
            if size != self._n:
                raise HandshakeError(CloseReason.CELL_SIZE_MISMATCH,
                                     f"peer uses {size}-byte cells, this node {self._n}-byte cells")

    def _receive_established(self, buf: bytes, pos: int) -> int:
        """Open every whole cell of ``buf`` from ``pos`` and read them; returns where
        it stopped. The record layer holds the keys (and rekeys), wire's reader
        frames: one loop opens and reads each cell."""
        pos, close, err = self._record.open_cells(buf, pos, self._reader, self._events,
                                                  MessageReceived)
        if close is not None:
            self._on_close_cell(close)
        elif err is not None:
            raise err
        return pos

    def _on_cell(self, cell: bytes) -> None:
        if self._in_clear:
            flags, piece = decode_clear(cell, self._n)
            message = self._hs_in.feed(flags, piece)
            if message is not None:
                self._on_handshake(message)
            return
        rx = self._record.rx
        assert rx is not None
        ctype, flags, body = decode_inner(rx.open(cell))
        if ctype is not CellType.HANDSHAKE:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR,
                                 f"{ctype.name} cell during the handshake")
        if flags & Flags.ZSTD:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "compressed handshake message")
        message = self._hs_in.feed(flags, body)
        if message is not None:
            self._on_handshake(message)

    def _on_handshake(self, data: bytes) -> None:
        if self._hs_in.pending:  # pragma: no cover - feed() returned a whole message
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "handshake reassembly out of step")
        self._apply(self._hs.receive(data))

    def _on_close_cell(self, body: bytes) -> None:
        msg = _parse(handshake_pb2.Close, body, "Close")
        if msg.version != self.version:
            raise self._error(CloseReason.PROTOCOL_ERROR,
                              f"Close for version {msg.version}, session is {self.version}")
        try:
            reason = CloseReason(msg.reason)
        except ValueError:
            reason = CloseReason.PROTOCOL_ERROR  # unknown numbers (§5)
        if reason is CloseReason.CONNECTION_LOST:
            reason = CloseReason.PROTOCOL_ERROR  # local only, never sent
        self.want_transport_close = True
        self._finish(SessionError(reason, f"peer closed: {msg.detail[:200]}"),
                     by_peer=True)

    def _require_established(self) -> None:
        if self.state is not State.ESTABLISHED:
            raise SessionError(CloseReason.PROTOCOL_ERROR,
                               f"session is not established (state {self.state.value})")

    # -- ending -----------------------------------------------------------
    def _error(self, reason: CloseReason, detail: str) -> SessionError:
        if self.state is State.ESTABLISHED:
            return SessionError(reason, detail)
        return HandshakeError(reason, detail)

    def _fail(self, err: SessionError) -> None:
        if self.state is not State.ESTABLISHED and not isinstance(err, HandshakeError):
            err = HandshakeError(err.reason, err.detail)
        self._finish(err, by_peer=False)

    def _close_body(self, err: SessionError) -> bytes:
        """A Close message that fits one cell: the detail is cut to 200 characters, and
        further (whole characters) until it fits (§3.3)."""
        detail = err.detail[:200]
        while True:
            body = handshake_pb2.Close(version=self.version or 1, reason=int(err.reason),
                                       detail=detail).SerializeToString(deterministic=True)
            if len(body) <= self._room:
                return body
            detail = detail[:len(detail) // 2]

    def _finish(self, err: SessionError, *, by_peer: bool, notify: bool = True) -> None:
        if notify and not by_peer and self.state is State.ESTABLISHED:
            # Tell the peer why, sealed (§2.8, §3.3), after the cells already
            # queued: nonces are used in send order. Handshake failures send nothing.
            self._record.seal_queued()
            self._record.seal_now(encode_inner(self._n, CellType.CLOSE, 0, self._close_body(err)))
        self.state = State.CLOSED
        self.close_reason = err
        self.want_transport_close = True
        self._record.forget()
        self._inbuf = b""
        self._events.append(Closed(err.reason, err.detail, by_peer))
