"""The sans-I/O session: handshake state machine plus the sealed cell stream.

No sockets, no reactor: feed it bytes with :meth:`Session.receive_data`, take
what it wants to send from :meth:`Session.data_to_send`, and read what
happened from :meth:`Session.events`. Time comes from an injected ``clock``
callable and randomness from an injected ``random`` callable.

docs/protocol.md is the specification; section numbers below refer to it.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey
from google.protobuf.message import DecodeError
from twisted.logger import Logger

# Submodules, not the package: aegis_hidden.identity imports session.xwing, so the
# package may be half-initialised when this module loads.
from ..identity._i2p import I2PBinding, b32_address_of_destination, verify_binding
from ..identity._onion import is_onion_v3
from ..identity._record import (
    IdentityRecord,
    PinMismatch,
    RecordCache,
    RecordError,
    RecordKind,
    RevokedIdentity,
    check_mldsa_change,
    parse_record,
    verify_record,
)
from ..wire import (
    CellError,
    CellType,
    Flags,
    MessageTooLarge,
    Reassembler,
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
from . import xwing
from ._aead import AEADS, Direction, hkdf_expand, hkdf_extract
from ._errors import CloseReason, HandshakeError, SessionError

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

#: Protocol versions this code speaks, most preferred first.
PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
MESSAGE_LAYOUT = 1
MAX_HANDSHAKE_MESSAGE = 64 * 1024
NONCE_SIZE = 32
PROLOGUE = b"aegis-hidden handshake\x00"
_DIALED_LABEL = b"aegis-hidden dialed\x00"
_U32 = struct.Struct(">I")
_INNER_HEADER = struct.Struct(">BBH")
_DATA = int(CellType.DATA)
_MORE = int(Flags.MORE)


class State(enum.Enum):
    START = "start"
    WAIT_CLIENT_HELLO = "wait-client-hello"    # responder
    WAIT_SERVER_HELLO = "wait-server-hello"    # initiator
    WAIT_SERVER_AUTH = "wait-server-auth"      # initiator
    WAIT_CLIENT_AUTH = "wait-client-auth"      # responder
    WAIT_FINISHED = "wait-finished"            # initiator
    ESTABLISHED = "established"
    CLOSED = "closed"


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


class MLDSA65Signer(Protocol):
    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class IdentityKeys:
    """An identity's signing keys, derived once (ML-DSA-65 from its seed costs ~0.35 ms).

    Holds secrets: never log it. A :class:`SessionFactory` makes one and shares
    it between its sessions.
    """

    master: Ed25519PrivateKey
    #: ML-DSA-65 (pure, empty context). Any object with ``sign(data) -> bytes``: a
    #: ``MLDSA65PrivateKey`` in production; tests and the vector generator pass one
    #: that replays recorded signatures, since ML-DSA signing here is randomised.
    mldsa: MLDSA65Signer

    def __repr__(self) -> str:
        return "IdentityKeys(<secret>)"

    @classmethod
    def of(cls, identity: NodeIdentity) -> IdentityKeys:
        return cls(identity.master, identity.mldsa)


@dataclass(frozen=True)
class SessionParams:
    """Everything both sides must agree on, plus local limits."""

    cell_size: int = 996
    encryption: str = "AES-256-GCM"
    max_message_size: int = 1024 * 1024
    compression_threshold: int = 1024
    rekey_cells: int = 1 << 20
    rekey_seconds: float = 600.0
    handshake_timeout: float = 60.0
    versions: tuple[int, ...] = PROTOCOL_VERSIONS

    def __post_init__(self) -> None:
        if self.encryption not in AEADS:
            raise ValueError(f"unknown encryption {self.encryption!r}; one of {sorted(AEADS)}")
        if not 256 <= self.cell_size <= 65535:
            raise ValueError(f"cell_size must be from 256 to 65535, got {self.cell_size}")
        if not self.versions:
            raise ValueError("at least one protocol version is needed")

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> SessionParams:
        """From a :class:`aegis_hidden.config.Config` (mixing, security, performance, network)."""
        values: dict[str, Any] = {
            "cell_size": config.mixing.cell_size,
            "encryption": config.security.encryption,
            "max_message_size": config.performance.max_message_size,
            "compression_threshold": config.performance.compression_threshold,
            "handshake_timeout": config.network.connection_timeout,
        }
        values.update(overrides)
        return cls(**values)


_ONION_FORM = re.compile(r"[a-z2-7]{56}\.onion")
_B32_I2P_FORM = re.compile(r"[a-z2-7]{52}\.b32\.i2p")


def is_canonical_address(address: str) -> bool:
    """True for an address in the one form the protocol accepts (§2.1).

    That is exactly ``<56 base32>.onion`` (a valid v3 address: version and
    checksum) or ``<52 base32>.b32.i2p`` (32 bytes, unused trailing bits zero),
    in lower-case ASCII: no port, no ``www.`` or other label in front, no ``=``
    padding, no upper case and nothing that only *folds* to ASCII (U+212A
    KELVIN SIGN lower-cases to ``k``, U+017F LONG S upper-cases to ``S``).
    """
    if not isinstance(address, str) or not address.isascii():
        return False
    if _ONION_FORM.fullmatch(address):
        return is_onion_v3(address)
    if _B32_I2P_FORM.fullmatch(address):
        label = address[:52].upper()
        try:
            raw = base64.b32decode(label + "====")
        except ValueError:  # pragma: no cover - the pattern admits only base32
            return False
        return base64.b32encode(raw).decode("ascii").rstrip("=") == label
    return False


def dialed_hint(nonce: bytes, address: str) -> bytes:
    """What ClientHello.dialed carries: binds the dialed address without showing it (§2.2).

    ``address`` must be canonical (:func:`is_canonical_address`); it is hashed
    as its exact ASCII bytes.
    """
    if not is_canonical_address(address):
        raise ValueError(f"{address[:100]!r} is not a canonical .onion or .b32.i2p address")
    return hashlib.sha3_256(_DIALED_LABEL + nonce + address.encode("ascii")).digest()


class ReplayCache:
    """ClientHello nonces seen recently, so a replayed first message is refused (§2.7)."""

    def __init__(self, clock: Callable[[], float], window: float = 600.0, limit: int = 100_000) -> None:
        self._clock = clock
        self._window = window
        self._limit = limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def fresh(self, nonce: bytes) -> bool:
        """True (and remembered) the first time ``nonce`` is seen within the window."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at > now - self._window and len(self._seen) < self._limit:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        return True


class _Transcript:
    """A running SHA-256 over length-prefixed handshake items (§2.4)."""

    def __init__(self, cell_size: int) -> None:
        self._h = hashlib.sha256(PROLOGUE + struct.pack(">H", cell_size))

    def add(self, item: bytes) -> None:
        self._h.update(_U32.pack(len(item)) + item)

    def digest(self, *extra: bytes) -> bytes:
        h = self._h.copy()
        for item in extra:
            h.update(_U32.pack(len(item)) + item)
        return h.digest()


def _label(version: int, what: str) -> bytes:
    return f"aegis-hidden/{version} {what}".encode("ascii")


def _parse(cls: type[Any], data: bytes, what: str) -> Any:
    msg = cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise HandshakeError(CloseReason.PROTOCOL_ERROR, f"{what} does not parse: {e}") from None
    return msg


class Session:
    """One side of one session (§2 handshake, §3 cells, §4 record layer).

    ``peer_address`` is the address the initiator dialed (``.onion`` or
    ``.b32.i2p``, no port); the responder passes None. Everything fails
    closed: any error ends the session with a :class:`CloseReason` and never
    falls back to anything weaker.
    """

    log = Logger()

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
        if initiator and not peer_address:
            raise ValueError("an initiator needs the peer_address it dialed")
        if peer_address is not None and not is_canonical_address(peer_address):
            raise ValueError(f"peer_address {peer_address[:100]!r} is not a canonical .onion or "
                             ".b32.i2p address (lower-case ASCII, no port, no prefix)")
        self.identity = identity
        self._keys = keys if keys is not None else IdentityKeys.of(identity)
        self.params = params
        self.initiator = initiator
        self.peer_address = peer_address or None
        self._clock = clock
        self._random = random
        self._replay = replay_cache
        self._encapsulate = encapsulate
        self._record_cache = record_cache
        self._mldsa_pin = mldsa_pin
        #: The peer's I2P binding, when this initiator dialed its ``.b32.i2p`` (§2.3).
        self.peer_i2p_binding: I2PBinding | None = None
        self.state = State.START if initiator else State.WAIT_CLIENT_HELLO
        self.version: int | None = None
        self.peer_record: IdentityRecord | None = None
        self.close_reason: SessionError | None = None
        self.started_at = clock()
        self._n = params.cell_size
        self._aead_id = AEADS[params.encryption]
        self._inbuf = b""
        self._room = inner_body_capacity(self._n)
        self._plain_size = self._n - 16
        self._zeros = bytes(self._room)
        self._rekey_cells = params.rekey_cells
        self._rekey_seconds = params.rekey_seconds
        self._fast_parts: list[bytes] = []  # fragments of an uncompressed message
        self._fast_size = 0
        self._out: list[bytes] = []
        self._events: list[SessionEvent] = []
        self._transcript = _Transcript(self._n)
        self._hs_in = Reassembler(MAX_HANDSHAKE_MESSAGE, room=clear_body_capacity(self._n))
        self._data_in = Reassembler(params.max_message_size, room=self._room)
        self._in_clear = True
        self._tx: Direction | None = None
        self._rx: Direction | None = None
        self._eph_secret: bytes | None = None
        self._hs_secret = b""
        self._my_address = identity.onion
        self._offered: tuple[int, ...] = ()
        self._expected_finished = b""
        self.want_transport_close = False

    # -- public API -------------------------------------------------------
    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def local_address(self) -> str:
        """The address this side proves: the responder's matched dialed address."""
        return self._my_address

    def start(self) -> None:
        """Initiator: send ClientHello (§2.2). The responder just waits for it."""
        if not self.initiator or self.state is not State.START:
            raise RuntimeError("start() is for an initiator that has not started")
        assert self.peer_address is not None
        seed = self._random(32)
        self._eph_secret, eph_public = xwing.generate_keypair_derand(seed)
        nonce = self._random(NONCE_SIZE)
        self._offered = tuple(self.params.versions)
        hello = handshake_pb2.ClientHello(
            version=MESSAGE_LAYOUT, versions=list(self._offered), cell_size=self._n,
            ephemeral_public=eph_public, nonce=nonce,
            dialed=dialed_hint(nonce, self.peer_address), aead=self._aead_id)
        data = hello.SerializeToString(deterministic=True)
        self._transcript.add(data)
        self._send_clear(data)
        self.state = State.WAIT_SERVER_HELLO

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
            reason = (CloseReason.MESSAGE_TOO_LARGE if isinstance(e, MessageTooLarge)
                      else CloseReason.BAD_CELL)
            self._fail(self._error(reason, str(e)))

    def send_message(self, data: bytes) -> None:
        """Seal one application message into DATA cells (§3.3). Raises MessageTooLarge."""
        if self.state is not State.ESTABLISHED:
            self._require_established()
        flags, payload = prepare_message(data, self.params.compression_threshold,
                                         self.params.max_message_size)
        room = self._room
        size = len(payload)
        if size <= room:
            # Fast path: one cell, no generator, no enum arithmetic.
            tx = self._tx
            assert tx is not None
            count = tx.count
            if count >= self._rekey_cells or self._clock() >= tx.since + self._rekey_seconds:
                self._rekey_tx(tx)
                count = tx.count
            tx.count = count + 1
            self._out.append(tx.encrypt((tx.iv ^ count).to_bytes(12, "big"),
                                        _INNER_HEADER.pack(_DATA, flags, size) + payload
                                        + self._zeros[:room - size], None))
            return
        # Several cells: the same, in a loop over views of the payload. The time
        # rekey is checked once per message; the count rekey before every cell.
        tx = self._tx
        assert tx is not None
        if self._clock() >= tx.since + self._rekey_seconds:
            self._rekey_tx(tx)
        out = self._out.append
        view = memoryview(payload)
        full = _INNER_HEADER.pack(_DATA, flags | _MORE, room)
        last = ((size - 1) // room) * room
        limit = self._rekey_cells
        encrypt, iv, count = tx.encrypt, tx.iv, tx.count
        for start in range(0, last, room):
            if count >= limit:
                tx.count = count
                self._rekey_tx(tx)
                encrypt, iv, count = tx.encrypt, tx.iv, tx.count
            out(encrypt((iv ^ count).to_bytes(12, "big"), full + view[start:start + room], None))
            count += 1
        if count >= limit:
            tx.count = count
            self._rekey_tx(tx)
            encrypt, iv, count = tx.encrypt, tx.iv, tx.count
        k = size - last
        out(encrypt((iv ^ count).to_bytes(12, "big"),
                    b"".join((_INNER_HEADER.pack(_DATA, flags, k), view[last:], self._zeros[:room - k])),
                    None))
        tx.count = count + 1

    def send_cover(self, kind: CellType = CellType.COVER) -> None:
        """One COVER (or PADDING) cell: indistinguishable from DATA on the wire."""
        if kind not in (CellType.COVER, CellType.PADDING):
            raise ValueError("send_cover sends COVER or PADDING cells only")
        self._require_established()
        self._send_sealed(kind, 0, b"")

    def close(self, reason: CloseReason = CloseReason.NORMAL, detail: str = "") -> None:
        """Close, telling the peer ``reason`` in a sealed CLOSE cell when a session exists."""
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
        out = b"".join(self._out)
        self._out.clear()
        return out

    def events(self) -> list[SessionEvent]:
        out = self._events
        self._events = []
        return out

    # -- sending ----------------------------------------------------------
    def _send_clear(self, data: bytes) -> None:
        for flags, piece in fragment(data, clear_body_capacity(self._n)):
            self._out.append(encode_clear(self._n, flags, piece))

    def _send_sealed(self, ctype: CellType, flags: int, body: bytes) -> None:
        tx = self._tx
        assert tx is not None
        if self.state is State.ESTABLISHED and ctype is not CellType.CLOSE and (
            tx.count >= self._rekey_cells or self._clock() >= tx.since + self._rekey_seconds
        ):
            self._rekey_tx(tx)
        self._out.append(tx.seal(encode_inner(self._n, ctype, flags, body)))

    def _rekey_tx(self, tx: Direction) -> None:
        """Send REKEY under the current key, then switch to the next one (§4)."""
        self._out.append(tx.seal(encode_inner(self._n, CellType.REKEY, 0, b"")))
        tx.rekey(self._clock())

    def _send_handshake_sealed(self, data: bytes) -> None:
        for flags, piece in fragment(data, inner_body_capacity(self._n)):
            self._send_sealed(CellType.HANDSHAKE, flags, piece)

    def _require_established(self) -> None:
        if self.state is not State.ESTABLISHED:
            raise SessionError(CloseReason.PROTOCOL_ERROR,
                               f"session is not established (state {self.state.value})")

    # -- receiving --------------------------------------------------------
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
        """Open every whole cell of ``buf`` from ``pos``; returns where it stopped.

        The loop keeps the key, counter and callbacks in locals: this is the
        per-cell hot path (benchmarks/session.py). Anything but a one-cell
        uncompressed DATA message goes through :meth:`_on_established_cell`.
        """
        n = self._n
        total = len(buf)
        cap = self._plain_size
        unpack = _INNER_HEADER.unpack_from
        emit = self._events.append
        reassembling = self._data_in.pending
        parts = self._fast_parts
        fast_size = self._fast_size
        limit = self.params.max_message_size
        rx = self._rx
        assert rx is not None
        decrypt, iv, count = rx.decrypt, rx.iv, rx.count
        view = memoryview(buf)  # cells are opened in place, not copied out first
        data_type, more, received = _DATA, _MORE, MessageReceived
        for start in range(pos, total - n + 1, n):
            pos = start + n
            try:
                plain = decrypt((iv ^ count).to_bytes(12, "big"), view[start:pos], None)
            except InvalidTag:
                rx.count = count + 1
                raise SessionError(
                    CloseReason.TAMPERED,
                    f"cell {count} (key generation {rx.generation}) failed authentication: "
                    "tampered, replayed, reordered or dropped") from None
            count += 1
            ctype, flags, length = unpack(plain)
            end = length + 4
            if (ctype == data_type and flags | more == more and end <= cap and not reassembling
                    and (end == cap or plain.count(0, end) == cap - end)):
                # Uncompressed DATA: whole messages and fragments, joined once at the end.
                # Every fragment counts towards the limit, the last one too (§3.3).
                fast_size += length
                if fast_size > limit:
                    raise MessageTooLarge(f"message is over the {limit}-byte limit")
                if flags:
                    if end != cap:
                        raise CellError("empty fragment with MORE set" if not length else
                                        f"non-final fragment of {length} bytes; it must fill its "
                                        f"cell ({cap - 4} bytes)")
                    parts.append(plain[4:end])
                elif parts:
                    parts.append(plain[4:end])
                    emit(received(b"".join(parts)))
                    parts.clear()
                    fast_size = 0
                else:
                    emit(received(plain[4:end]))
                    fast_size = 0
                continue
            self._fast_size = fast_size
            rx.count = count
            if parts and ctype == _DATA:
                raise CellError("compression flag changed in the middle of a message")
            self._on_established_cell(plain)
            if self.state is not State.ESTABLISHED:
                return pos
            rx = self._rx  # a REKEY cell installed the next key
            assert rx is not None
            decrypt, iv, count = rx.decrypt, rx.iv, rx.count
            reassembling = self._data_in.pending
        rx.count = count
        self._fast_size = fast_size
        return pos

    def _on_established_cell(self, plain: bytes) -> None:
        kind, flags, body = decode_inner(plain)
        if kind is not CellType.DATA and flags:
            # Control cells carry no flags (§3.3); a CLOSE never spans cells.
            raise self._error(CloseReason.PROTOCOL_ERROR, f"{kind.name} cell with flags {flags:#x}")
        if kind in (CellType.REKEY, CellType.PADDING, CellType.COVER) and body:
            raise self._error(CloseReason.PROTOCOL_ERROR, f"{kind.name} cell with a body")
        if kind is CellType.DATA:
            msg = self._data_in.feed(flags, body)
            if msg is not None:
                self._events.append(MessageReceived(msg))
        elif kind is CellType.REKEY:
            rx = self._rx
            assert rx is not None
            rx.rekey(self._clock())
        elif kind is CellType.CLOSE:
            self._on_close_cell(body)
        elif kind is CellType.HANDSHAKE:
            raise self._error(CloseReason.PROTOCOL_ERROR, "handshake cell after the handshake")
        # PADDING and COVER: nothing to do.

    def _on_cell(self, cell: bytes) -> None:
        if self._in_clear:
            flags, piece = decode_clear(cell, self._n)
            message = self._hs_in.feed(flags, piece)
            if message is not None:
                self._on_handshake(message)
            return
        rx = self._rx
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

    def _on_handshake(self, data: bytes) -> None:
        if self._hs_in.pending:  # pragma: no cover - feed() returned a whole message
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "handshake reassembly out of step")
        handler = {
            State.WAIT_CLIENT_HELLO: self._on_client_hello,
            State.WAIT_SERVER_HELLO: self._on_server_hello,
            State.WAIT_SERVER_AUTH: self._on_server_auth,
            State.WAIT_CLIENT_AUTH: self._on_client_auth,
            State.WAIT_FINISHED: self._on_finished,
        }.get(self.state)
        if handler is None:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR,
                                 f"handshake message in state {self.state.value}")
        handler(data)

    # -- handshake steps (§2) ----------------------------------------------
    def _own_addresses(self) -> list[str]:
        out = [self.identity.onion]
        binding = self.identity.i2p_binding
        if binding is not None and binding.commitment() == self.identity.record.i2p_commitment:
            out.append(binding.b32)
        return out

    def _on_client_hello(self, data: bytes) -> None:
        hello = _parse(handshake_pb2.ClientHello, data, "ClientHello")
        if hello.version != MESSAGE_LAYOUT:
            raise HandshakeError(CloseReason.VERSION_MISMATCH,
                                 f"ClientHello layout {hello.version} is not supported")
        if hello.cell_size != self._n:
            raise HandshakeError(CloseReason.CELL_SIZE_MISMATCH,
                                 f"peer asks for {hello.cell_size}-byte cells, this node uses {self._n}")
        if len(hello.nonce) != NONCE_SIZE or len(hello.dialed) != 32:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "ClientHello nonce or dialed hint has the "
                                 "wrong length")
        if len(hello.ephemeral_public) != xwing.PUBLIC_KEY_SIZE:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "ClientHello ephemeral key has the wrong length")
        if hello.aead not in AEADS.values():
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, f"unknown AEAD number {hello.aead}")
        common = set(hello.versions) & set(self.params.versions)
        if not common:
            raise HandshakeError(
                CloseReason.VERSION_MISMATCH,
                f"no common protocol version (peer offers {list(hello.versions)}, "
                f"this node speaks {list(self.params.versions)})")
        version = max(common)
        for address in self._own_addresses():
            if hmac.compare_digest(dialed_hint(hello.nonce, address), hello.dialed):
                self._my_address = address
                break
        else:
            raise HandshakeError(CloseReason.ADDRESS_MISMATCH,
                                 "the initiator dialed an address this node does not own")
        if self._replay is not None and not self._replay.fresh(hello.nonce):
            raise HandshakeError(CloseReason.REPLAY, "ClientHello replayed (nonce seen before)")
        try:
            ss, ct = self._encapsulate(hello.ephemeral_public)
        except xwing.XWingError as e:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, f"ephemeral key refused: {e}") from None
        self.version = version
        self._aead_id = hello.aead
        self._transcript.add(data)
        server_hello = handshake_pb2.ServerHello(
            version=version, ciphertext=ct, nonce=self._random(NONCE_SIZE), aead=hello.aead)
        sh = server_hello.SerializeToString(deterministic=True)
        self._send_clear(sh)
        self._transcript.add(sh)
        self._key_schedule(ss)
        self._in_clear = False
        self._hs_in.room = self._room
        self._send_handshake_sealed(self._make_auth(responder=True))
        self.state = State.WAIT_CLIENT_AUTH

    def _on_server_hello(self, data: bytes) -> None:
        sh = _parse(handshake_pb2.ServerHello, data, "ServerHello")
        if sh.version not in self._offered:
            raise HandshakeError(CloseReason.VERSION_MISMATCH,
                                 f"responder chose version {sh.version}, which was not offered")
        if sh.aead != self._aead_id:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "responder changed the AEAD")
        if len(sh.nonce) != NONCE_SIZE or len(sh.ciphertext) != xwing.CIPHERTEXT_SIZE:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, "ServerHello field of the wrong length")
        assert self._eph_secret is not None
        try:
            ss = xwing.decapsulate(sh.ciphertext, self._eph_secret)
        except xwing.XWingError as e:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR, f"X-Wing ciphertext refused: {e}") from None
        self._eph_secret = None
        self.version = sh.version
        self._transcript.add(data)
        self._key_schedule(ss)
        self._in_clear = False
        self._hs_in.room = self._room
        self.state = State.WAIT_SERVER_AUTH

    def _key_schedule(self, ss: bytes) -> None:
        """Handshake secrets from the X-Wing secret and the hello transcript (§2.4)."""
        assert self.version is not None
        v = self.version
        self._hs_secret = hkdf_extract(self._transcript.digest(), ss)
        now = self._clock()
        r_hs = Direction(self._aead_id, hkdf_expand(self._hs_secret, _label(v, "r hs")), _label(v, "r hs"),
                         now)
        i_hs = Direction(self._aead_id, hkdf_expand(self._hs_secret, _label(v, "i hs")), _label(v, "i hs"),
                         now)
        self._tx, self._rx = (i_hs, r_hs) if self.initiator else (r_hs, i_hs)

    def _make_auth(self, *, responder: bool) -> bytes:
        assert self.version is not None
        v = self.version
        who = "responder" if responder else "initiator"
        record = self.identity.record.to_bytes()
        address = self._my_address.encode("ascii")
        th = self._transcript.digest(record, address)
        to_sign = _label(v, f"{who} signature") + b"\x00" + th
        # Hybrid authentication: both signatures, always, by both roles (§2.3).
        ed_sig = self._keys.master.sign(to_sign)
        mldsa_sig = self._keys.mldsa.sign(to_sign)
        mac_key = hkdf_expand(self._hs_secret, _label(v, f"{who} finished"))
        mac = hmac.new(mac_key, self._transcript.digest(record, address, ed_sig, mldsa_sig),
                       hashlib.sha256).digest()
        binding = b""
        if responder and self._my_address.endswith(".b32.i2p"):
            # Only when dialed at the .b32.i2p: proves that address (and links it to
            # the onion for whoever knows the b32; never sent to an onion dialer).
            assert self.identity.i2p_binding is not None
            binding = self.identity.i2p_binding.to_bytes()
        auth = handshake_pb2.Auth(version=v, record=record, address=self._my_address,
                                  ed25519_signature=ed_sig, mldsa_signature=mldsa_sig, mac=mac,
                                  i2p_binding=binding)
        data = auth.SerializeToString(deterministic=True)
        self._transcript.add(data)
        return data

    def _check_auth(self, data: bytes, *, responder: bool) -> IdentityRecord:
        """Verify the peer's Auth (§2.3): record, address, signatures, MAC."""
        assert self.version is not None
        v = self.version
        who = "responder" if responder else "initiator"
        auth = _parse(handshake_pb2.Auth, data, f"{who} Auth")
        if auth.version != v:
            raise HandshakeError(CloseReason.VERSION_MISMATCH,
                                 f"{who} Auth is for version {auth.version}, session is {v}")
        # Addresses are compared as exact canonical ASCII (§2.1): no case folding,
        # so nothing that merely folds to the right address (U+212A, U+017F) passes.
        address = auth.address
        if responder:
            assert self.peer_address is not None
            if address != self.peer_address:
                raise HandshakeError(CloseReason.ADDRESS_MISMATCH,
                                     f"dialed {self.peer_address} but the responder proves "
                                     f"{ascii(address)[:120]}")
        elif not (address.endswith(".onion") and is_canonical_address(address)):
            raise HandshakeError(CloseReason.WRONG_IDENTITY,
                                 "the initiator must prove a canonical v3 onion address, not "
                                 f"{ascii(address)[:120]}")
        dialed_i2p = responder and address.endswith(".b32.i2p")
        if auth.i2p_binding and not dialed_i2p:
            raise HandshakeError(CloseReason.PROTOCOL_ERROR,
                                 f"{who} sent an I2P binding nobody asked for")
        # Dialed at a .b32.i2p, the record is checked against its own onion, and the
        # binding must open its I2P commitment to exactly the dialed address.
        record = self._peer_record(bytes(auth.record), None if dialed_i2p else address, who)
        if dialed_i2p:
            try:
                binding = I2PBinding.parse(auth.i2p_binding)
                proven = verify_binding(record, binding)
            except RecordError as e:
                raise HandshakeError(CloseReason.WRONG_IDENTITY,
                                     f"the responder's I2P binding is refused: {e}") from None
            if proven != address:
                raise HandshakeError(CloseReason.WRONG_IDENTITY,
                                     f"the responder's I2P binding proves {proven}, not the dialed "
                                     f"{address}")
            self.peer_i2p_binding = binding
        rec_bytes = bytes(auth.record)
        addr_bytes = auth.address.encode("ascii")
        th = self._transcript.digest(rec_bytes, addr_bytes)
        to_verify = _label(v, f"{who} signature") + b"\x00" + th
        try:
            Ed25519PublicKey.from_public_bytes(record.ed25519_public).verify(
                auth.ed25519_signature, to_verify)
        except InvalidSignature:
            raise HandshakeError(CloseReason.AUTH_FAILED,
                                 f"{who}'s Ed25519 transcript signature does not verify") from None
        # Hybrid authentication (§2.3): version 1 always needs both signatures.
        try:
            MLDSA65PublicKey.from_public_bytes(record.mldsa_public).verify(
                auth.mldsa_signature, to_verify)
        except InvalidSignature:
            raise HandshakeError(CloseReason.AUTH_FAILED,
                                 f"{who}'s ML-DSA-65 transcript signature does not verify") from None
        mac_key = hkdf_expand(self._hs_secret, _label(v, f"{who} finished"))
        expected = hmac.new(mac_key, self._transcript.digest(
            rec_bytes, addr_bytes, bytes(auth.ed25519_signature), bytes(auth.mldsa_signature)),
            hashlib.sha256).digest()
        if not hmac.compare_digest(expected, auth.mac):
            raise HandshakeError(CloseReason.AUTH_FAILED, f"{who}'s key confirmation MAC is wrong")
        self._transcript.add(data)
        return record

    def _peer_record(self, data: bytes, onion: str | None, who: str) -> IdentityRecord:
        """The peer's record, checked (§2.3 step 2): key, pin, cache, signatures, times.

        ``onion`` is the address the record must belong to (None: its own onion,
        for a responder dialed at its .b32.i2p). The pinned ML-DSA-65 key is
        checked before the record reaches the cache, so a record that fails the
        pin never becomes the cache's latest.
        """
        now = self._clock()
        try:
            parsed = parse_record(data)
            onion = onion if onion is not None else parsed.onion
            if parsed.onion != onion:
                raise RecordError(f"record is signed by another key than {onion}'s")
            if self._mldsa_pin is not None:
                pinned = self._mldsa_pin(onion)
                if pinned:
                    check_mldsa_change(pinned, parsed)
            if self._record_cache is not None:
                record = self._record_cache.accept(data, onion, now)
            else:
                record = verify_record(parsed, onion, now)
        except RevokedIdentity as e:
            raise HandshakeError(CloseReason.REVOKED, f"{who} is revoked: {e}") from None
        except PinMismatch as e:
            raise HandshakeError(CloseReason.WRONG_IDENTITY,
                                 f"{who}'s ML-DSA-65 key is not the pinned one: {e}") from None
        except RecordError as e:
            raise HandshakeError(CloseReason.WRONG_IDENTITY, f"{who} record refused: {e}") from None
        if record.kind is not RecordKind.IDENTITY:
            raise HandshakeError(CloseReason.REVOKED, f"{who} sent a revocation record: "
                                 f"{record.reason[:100]!r}")
        return record

    def _traffic_keys(self) -> bytes:
        assert self.version is not None
        v = self.version
        th = self._transcript.digest()
        master = hkdf_extract(th, self._hs_secret)
        now = self._clock()
        i2r = Direction(self._aead_id, hkdf_expand(master, _label(v, "i2r traffic")),
                        _label(v, "i2r traffic"), now)
        r2i = Direction(self._aead_id, hkdf_expand(master, _label(v, "r2i traffic")),
                        _label(v, "r2i traffic"), now)
        self._tx, self._rx = (i2r, r2i) if self.initiator else (r2i, i2r)
        confirm = hkdf_expand(master, _label(v, "confirm"))
        self._hs_secret = b""
        return hmac.new(confirm, th, hashlib.sha256).digest()

    def _on_server_auth(self, data: bytes) -> None:
        record = self._check_auth(data, responder=True)
        self.peer_record = record
        self._send_handshake_sealed(self._make_auth(responder=False))
        self._expected_finished = self._traffic_keys()
        self.state = State.WAIT_FINISHED

    def _on_client_auth(self, data: bytes) -> None:
        record = self._check_auth(data, responder=False)
        self.peer_record = record
        assert self.version is not None
        mac = self._traffic_keys()
        self._send_handshake_sealed(
            handshake_pb2.Finished(version=self.version, mac=mac).SerializeToString(deterministic=True))
        self._established(record.onion)

    def _on_finished(self, data: bytes) -> None:
        fin = _parse(handshake_pb2.Finished, data, "Finished")
        if fin.version != self.version or not hmac.compare_digest(fin.mac, self._expected_finished):
            raise HandshakeError(CloseReason.AUTH_FAILED, "the responder's Finished MAC is wrong")
        assert self.peer_address is not None
        self._established(self.peer_address)

    def _established(self, peer: str) -> None:
        assert self.peer_record is not None and self.version is not None
        self.state = State.ESTABLISHED
        self._events.append(Established(peer, self.peer_record, self.version))

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
            # Tell the peer why, sealed (§2.8, §3.3). Handshake failures send nothing.
            self._send_sealed(CellType.CLOSE, 0, self._close_body(err))
        self.state = State.CLOSED
        self.close_reason = err
        self.want_transport_close = True
        self._tx = self._rx = None
        self._inbuf = b""
        self._events.append(Closed(err.reason, err.detail, by_peer))

