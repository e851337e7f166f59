"""The handshake machine (docs/protocol.md §2): handshake messages in, keys,
the peer's verified record and the version out.

Pure and sans-I/O. It sees whole handshake messages (the session reassembles
them from cells) and answers with a list of actions for the session to carry
out in order: send a message in clear cells, install a pair of keys, send a
message in sealed cells, and finally the session is established. Cells,
sealing and the record layer are not its business.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey
from google.protobuf.message import DecodeError

from ..addresses import is_canonical_address
from ..crypto import AEADS, hkdf_expand, hkdf_extract, xwing
from ..identity import (
    I2PBinding,
    IdentityRecord,
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
from ..wire import handshake_pb2
from ._aead import Direction
from ._errors import CloseReason, HandshakeError, PinRefused
from ._params import SessionParams

if TYPE_CHECKING:
    from ..identity import NodeIdentity

__all__ = [
    "MAX_HANDSHAKE_MESSAGE",
    "Action",
    "Done",
    "Handshake",
    "IdentityKeys",
    "InstallKeys",
    "ReplayCache",
    "SendClear",
    "SendSealed",
    "State",
    "dialed_hint",
    "is_canonical_address",
]

MESSAGE_LAYOUT = 1
MAX_HANDSHAKE_MESSAGE = 64 * 1024
NONCE_SIZE = 32
PROLOGUE = b"aegis-hidden handshake\x00"
_DIALED_LABEL = b"aegis-hidden dialed\x00"
_U32 = struct.Struct(">I")


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
class SendClear:
    """Send ``data`` in clear handshake cells (the two hellos)."""

    data: bytes


@dataclass(frozen=True)
class InstallKeys:
    """Seal with ``tx`` and open with ``rx`` from now on (handshake, then traffic keys)."""

    tx: Direction
    rx: Direction


@dataclass(frozen=True)
class SendSealed:
    """Send ``data`` in sealed HANDSHAKE cells, under the keys installed last."""

    data: bytes


@dataclass(frozen=True)
class Done:
    """The handshake is over: ``peer`` is proven (see :attr:`Handshake.peer_record`)."""

    peer: str


Action = SendClear | InstallKeys | SendSealed | Done


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



class Handshake:
    """One side of one handshake (§2).

    ``start()`` (initiator) and ``receive(message)`` return the actions the
    session must carry out, in order. Failures raise :class:`HandshakeError`
    with the reason to close with; nothing falls back to anything weaker.
    """

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
        self._n = params.cell_size
        self._aead_id = AEADS[params.encryption]
        self._transcript = _Transcript(self._n)
        self._eph_secret: bytes | None = None
        self._hs_secret = b""
        #: The address this side proves: the responder's matched dialed address.
        self.local_address = identity.onion
        self._offered: tuple[int, ...] = ()
        self._expected_finished = b""
        self._out: list[Action] = []

    def start(self) -> list[Action]:
        """Initiator: ClientHello (§2.2). The responder just waits for it."""
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
        self._out.append(SendClear(data))
        self.state = State.WAIT_SERVER_HELLO
        return self._take()

    def receive(self, data: bytes) -> list[Action]:
        """One whole handshake message from the peer; raises :class:`HandshakeError`."""
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
        try:
            handler(data)
        except BaseException:
            self._out.clear()
            raise
        return self._take()

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

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
                self.local_address = address
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
        self._out.append(SendClear(sh))
        self._transcript.add(sh)
        self._key_schedule(ss)
        self._out.append(SendSealed(self._make_auth(responder=True)))
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
        self._out.append(InstallKeys(*((i_hs, r_hs) if self.initiator else (r_hs, i_hs))))

    def _make_auth(self, *, responder: bool) -> bytes:
        assert self.version is not None
        v = self.version
        who = "responder" if responder else "initiator"
        record = self.identity.record.to_bytes()
        address = self.local_address.encode("ascii")
        th = self._transcript.digest(record, address)
        to_sign = _label(v, f"{who} signature") + b"\x00" + th
        # Hybrid authentication: both signatures, always, by both roles (§2.3).
        ed_sig = self._keys.master.sign(to_sign)
        mldsa_sig = self._keys.mldsa.sign(to_sign)
        mac_key = hkdf_expand(self._hs_secret, _label(v, f"{who} finished"))
        mac = hmac.new(mac_key, self._transcript.digest(record, address, ed_sig, mldsa_sig),
                       hashlib.sha256).digest()
        binding = b""
        if responder and self.local_address.endswith(".b32.i2p"):
            # Only when dialed at the .b32.i2p: proves that address (and links it to
            # the onion for whoever knows the b32; never sent to an onion dialer).
            assert self.identity.i2p_binding is not None
            binding = self.identity.i2p_binding.to_bytes()
        auth = handshake_pb2.Auth(version=v, record=record, address=self.local_address,
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
            raise PinRefused(CloseReason.WRONG_IDENTITY,
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
        self._out.append(InstallKeys(*((i2r, r2i) if self.initiator else (r2i, i2r))))
        confirm = hkdf_expand(master, _label(v, "confirm"))
        self._hs_secret = b""
        return hmac.new(confirm, th, hashlib.sha256).digest()

    def _on_server_auth(self, data: bytes) -> None:
        record = self._check_auth(data, responder=True)
        self.peer_record = record
        self._out.append(SendSealed(self._make_auth(responder=False)))
        self._expected_finished = self._traffic_keys()
        self.state = State.WAIT_FINISHED

    def _on_client_auth(self, data: bytes) -> None:
        record = self._check_auth(data, responder=False)
        self.peer_record = record
        assert self.version is not None
        mac = self._traffic_keys()
        self._out.append(SendSealed(
            handshake_pb2.Finished(version=self.version, mac=mac).SerializeToString(deterministic=True)))
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
        self._out.append(Done(peer))
