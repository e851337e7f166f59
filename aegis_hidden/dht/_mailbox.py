"""Offline mailboxes: sealed letters held by the k nodes closest to a daily key (pure).

A recipient's mailbox for one UTC day lives at
``SHA-256("aegis-mailbox" || onion || u32 day)``: the key changes every day,
and only someone who knows the onion can compute it. A *letter* is the
sender's message, signed by the sender's Ed25519 master key (its onion), padded
to a fixed bucket and sealed to the recipient's X-Wing key
(:func:`aegis_hidden.crypto.seal`, ``info`` = domain || onion || key): a holder
sees a blob of one of :data:`ENVELOPE_SIZES` and nothing of who wrote it.

Holders (:class:`MailboxStore`) keep letters for a bounded time and a bounded
size per key, and refuse what does not fit with a typed error. Only the
recipient may collect and delete: the request carries its identity record and
both its signatures over the key, the day and the time (:class:`MailboxAuth`),
and a holder checks that the record's onion gives that key. docs/dht.md,
"Mailboxes", is the specification and says what a holder still learns.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

from ..addresses import onion_address_from_public_key
from ..crypto import SEAL_OVERHEAD, SealError, open_sealed, seal
from ..identity import RecordError, RecordKind, parse_record, verify_record

KEY_DOMAIN = b"aegis-mailbox"
SEAL_INFO = b"aegis-hidden mailbox v1\x00"
LETTER_DOMAIN = b"aegis-hidden mailbox letter v1\x00"
AUTH_DOMAIN = b"aegis-hidden mailbox collect v1\x00"
DAY = 86400
#: padded plaintext sizes: every letter is sealed at one of these
BUCKETS = (1024, 4096, 16384)
#: the only sizes an envelope may have
ENVELOPE_SIZES = frozenset(b + SEAL_OVERHEAD for b in BUCKETS)
_LETTER_HEAD = 4 + 32 + 64  # u32 length, sender key, Ed25519 signature
#: the largest message a letter carries
MAX_LETTER = BUCKETS[-1] - _LETTER_HEAD
ENTRY_ID_SIZE = 16
#: a collect's signed time may be this far from the holder's clock
AUTH_WINDOW = 600
MAILBOX_TTL = 7 * DAY
#: bytes of letters one key may hold at one holder
MAILBOX_QUOTA = 256 * 1024
#: bytes of letters one holder keeps in all
MAILBOX_TOTAL = 64 * 1024 * 1024
#: an answer to a collect carries at most this many bytes of letters (the rest: ``more``)
MAX_ANSWER = 20 * 1024
#: ids one collect may delete
MAX_DELETE = 64


class MailboxError(ValueError):
    """A letter or a mailbox request refused; the subclass names the reason."""


class MailTooLarge(MailboxError):
    """A message too large for the largest bucket, or an envelope above it."""


class MailNotPadded(MailboxError):
    """An envelope whose size is not one of the bucket sizes."""


class MailboxFull(MailboxError):
    """This key holds its quota of letters at this holder."""


class MailStoreFull(MailboxError):
    """The holder keeps as many letters as it will in all."""


class BadMailboxAuth(MailboxError):
    """A collect or delete not signed by the mailbox's owner (or for another key)."""


class StaleMailboxAuth(MailboxError):
    """A collect whose signed time is too far from the holder's clock (a replay)."""


class BadLetter(MailboxError):
    """A letter that does not open, is malformed, or whose sender signature fails."""


def utc_day(now: float) -> int:
    """Days since 1970-01-01 UTC at ``now``."""
    return int(now // DAY)


def mailbox_key(onion: str, day: int) -> bytes:
    """The DHT key of ``onion``'s mailbox on UTC day ``day``."""
    return hashlib.sha256(KEY_DOMAIN + onion.lower().encode("ascii")
                          + struct.pack(">I", day)).digest()


def entry_id(envelope: bytes) -> bytes:
    """How a letter is named at its holders (a hash of its sealed bytes)."""
    return hashlib.sha256(envelope).digest()[:ENTRY_ID_SIZE]


def _info(onion: str, key: bytes) -> bytes:
    return SEAL_INFO + onion.lower().encode("ascii") + key


# -- letters ---------------------------------------------------------------------
@dataclass(frozen=True)
class Letter:
    sender: str  # the onion whose key signed it
    data: bytes


def seal_letter(recipient_onion: str, recipient_xwing: bytes, key: bytes,
                sender: Ed25519PrivateKey, data: bytes) -> bytes:
    """``data`` from ``sender`` for ``recipient_onion``, signed, padded, sealed."""
    if len(data) > MAX_LETTER:
        raise MailTooLarge(f"message is {len(data)} bytes, a letter carries at most {MAX_LETTER}")
    signature = sender.sign(LETTER_DOMAIN + recipient_onion.lower().encode("ascii") + data)
    inner = (struct.pack(">I", len(data)) + sender.public_key().public_bytes_raw() + signature
             + data)
    bucket = next(b for b in BUCKETS if b >= len(inner))
    try:
        return seal(recipient_xwing, inner + bytes(bucket - len(inner)),
                    info=_info(recipient_onion, key))
    except SealError as e:
        raise BadLetter(f"cannot seal to the recipient's key: {e}") from None


def open_letter(recipient_onion: str, xwing_secret: bytes, key: bytes, envelope: bytes) -> Letter:
    """The letter in ``envelope``; :class:`BadLetter` if it is not one for us."""
    try:
        inner = open_sealed(xwing_secret, envelope, info=_info(recipient_onion, key))
    except SealError as e:
        raise BadLetter(str(e)) from None
    if len(inner) < _LETTER_HEAD:
        raise BadLetter("letter shorter than its header")
    (length,) = struct.unpack(">I", inner[:4])
    if length > len(inner) - _LETTER_HEAD:
        raise BadLetter("letter length beyond its padding")
    sender_key, signature = inner[4:36], inner[36:100]
    data = inner[_LETTER_HEAD:_LETTER_HEAD + length]
    if any(inner[_LETTER_HEAD + length:]):
        raise BadLetter("letter padding is not zero")
    try:
        Ed25519PublicKey.from_public_bytes(sender_key).verify(
            signature, LETTER_DOMAIN + recipient_onion.lower().encode("ascii") + data)
    except (InvalidSignature, ValueError):
        raise BadLetter("sender signature does not verify") from None
    return Letter(onion_address_from_public_key(sender_key), data)


# -- collect / delete authorisation ------------------------------------------------
@dataclass(frozen=True)
class MailboxAuth:
    """The recipient's proof that it owns ``key``: its identity record and signatures."""

    key: bytes
    day: int
    time: int
    publisher_record: bytes = field(repr=False)
    signature: bytes = field(default=b"", repr=False)
    mldsa_signature: bytes = field(default=b"", repr=False)

    def signed_message(self, delete: tuple[bytes, ...]) -> bytes:
        return (AUTH_DOMAIN + self.key + struct.pack(">IQH", self.day, self.time, len(delete))
                + b"".join(delete))


def sign_auth(master: Ed25519PrivateKey, mldsa: MLDSA65PrivateKey, record: bytes, onion: str,
              day: int, now: float, delete: tuple[bytes, ...] = ()) -> MailboxAuth:
    """Our proof for the mailbox of ``day``, covering the ids in ``delete``."""
    unsigned = MailboxAuth(mailbox_key(onion, day), day, int(now), bytes(record))
    message = unsigned.signed_message(delete)
    return MailboxAuth(unsigned.key, day, unsigned.time, unsigned.publisher_record,
                       master.sign(message), mldsa.sign(message))


def verify_auth(auth: MailboxAuth, delete: tuple[bytes, ...], now: float) -> str:
    """Check ``auth`` at ``now``; the owner's onion. Raises a :class:`MailboxError`."""
    if abs(auth.time - now) > AUTH_WINDOW:
        raise StaleMailboxAuth(f"signed {auth.time - now:+.0f}s from now, at most "
                               f"{AUTH_WINDOW}s either way")
    if not auth.signature or not auth.mldsa_signature:
        raise BadMailboxAuth("request is not signed")
    try:
        ident = parse_record(auth.publisher_record)
        if ident.kind is not RecordKind.IDENTITY:
            raise BadMailboxAuth("the record is a revocation")
        onion = onion_address_from_public_key(ident.ed25519_public)
        verify_record(ident, onion, now)
    except RecordError as e:
        raise BadMailboxAuth(f"identity record refused: {e}") from None
    if mailbox_key(onion, auth.day) != auth.key:
        raise BadMailboxAuth("the key is not this identity's mailbox on that day")
    message = auth.signed_message(delete)
    try:
        Ed25519PublicKey.from_public_bytes(ident.ed25519_public).verify(auth.signature, message)
        MLDSA65PublicKey.from_public_bytes(ident.mldsa_public).verify(auth.mldsa_signature,
                                                                      message)
    except (InvalidSignature, ValueError):
        raise BadMailboxAuth("signature does not verify") from None
    return onion


# -- holding -------------------------------------------------------------------------
@dataclass
class _Entry:
    envelope: bytes
    expires: float


class MailboxStore:
    """Letters this node holds, per mailbox key, with quotas and expiry (pure)."""

    def __init__(self, *, ttl: float = MAILBOX_TTL, quota: int = MAILBOX_QUOTA,
                 total: int = MAILBOX_TOTAL) -> None:
        self.ttl = ttl
        self.quota = quota
        self.total = total
        self._boxes: dict[bytes, dict[bytes, _Entry]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return sum(len(b) for b in self._boxes.values())

    @property
    def size(self) -> int:
        return self._bytes

    def keys(self) -> list[bytes]:
        return list(self._boxes)

    def put(self, key: bytes, envelope: bytes, now: float) -> bool:
        """Hold ``envelope`` under ``key`` until ``now + ttl``; False if already held."""
        if len(envelope) > max(ENVELOPE_SIZES):
            raise MailTooLarge(f"envelope is {len(envelope)} bytes, at most {max(ENVELOPE_SIZES)}")
        if len(envelope) not in ENVELOPE_SIZES:
            raise MailNotPadded(f"envelope is {len(envelope)} bytes, not one of "
                                f"{sorted(ENVELOPE_SIZES)}")
        box = self._boxes.get(key, {})
        ident = entry_id(envelope)
        if ident in box:
            return False
        if sum(len(e.envelope) for e in box.values()) + len(envelope) > self.quota:
            raise MailboxFull(f"this mailbox holds its {self.quota} bytes here")
        if self._bytes + len(envelope) > self.total:
            raise MailStoreFull(f"this node holds {self.total} bytes of mail")
        box[ident] = _Entry(bytes(envelope), now + self.ttl)
        self._boxes[key] = box
        self._bytes += len(envelope)
        return True

    def load(self, key: bytes, envelope: bytes, expires: float) -> None:
        """Restore a letter from disk."""
        self._boxes.setdefault(key, {})[entry_id(envelope)] = _Entry(envelope, expires)
        self._bytes += len(envelope)

    def entries(self) -> list[tuple[bytes, bytes, float]]:
        """(key, envelope, expires) of everything held."""
        return [(k, e.envelope, e.expires) for k, box in self._boxes.items()
                for e in box.values()]

    def collect(self, key: bytes, now: float,
                limit: int = MAX_ANSWER) -> tuple[list[bytes], bool]:
        """Letters under ``key`` (at most ``limit`` bytes) and whether more are held."""
        self.expire(now)
        out: list[bytes] = []
        used = 0
        box = self._boxes.get(key, {})
        for entry in box.values():
            if used + len(entry.envelope) > limit:
                return out, True
            out.append(entry.envelope)
            used += len(entry.envelope)
        return out, False

    def delete(self, key: bytes, ids: tuple[bytes, ...]) -> int:
        """Drop the letters named ``ids`` under ``key``; how many were held."""
        box = self._boxes.get(key)
        if box is None:
            return 0
        gone = 0
        for ident in ids:
            entry = box.pop(ident, None)
            if entry is not None:
                self._bytes -= len(entry.envelope)
                gone += 1
        if not box:
            del self._boxes[key]
        return gone

    def expire(self, now: float) -> int:
        """Drop letters held longer than the ttl; how many."""
        gone = 0
        for key in list(self._boxes):
            box = self._boxes[key]
            for ident in [i for i, e in box.items() if e.expires <= now]:
                self._bytes -= len(box.pop(ident).envelope)
                gone += 1
            if not box:
                del self._boxes[key]
        return gone
