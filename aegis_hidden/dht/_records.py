"""Signed DHT records and the store that holds them (pure; times are passed in).

A record is a value its publisher signed with both identity keys, Ed25519 and
ML-DSA-65, as identity records are. The publisher's own signed identity record
travels with it, so a holder checks the ML-DSA key against the onion key with
nothing else at hand. Its key is SHA-256 over a domain, the publisher's key and
a name: only the publisher can produce a valid record for a key, so nobody
else can overwrite it. A newer sequence replaces an older one; everything has
an expiry. Signed body (integers big-endian)::

    "aegis-hidden dht record v1\\0" | key (32) | u8 len | name | u64 sequence |
    u64 expires | u32 len | value

Refusals are typed (:class:`DhtRecordError` and its subclasses), so the caller
can count each reason.

**Revocations.** A node's identity revocation (kind REVOCATION, signed by both
keys, ``expires`` 0: permanent) travels as a record of its own, made by
:func:`revocation_record`: name ``identity`` (the key of the identity record it
ends), the revocation as its publisher record, an empty value, sequence = the
revocation's, ``expires`` 0, and no signatures of its own (everything that
matters is inside the revocation, which is signed). Anybody who holds the
revocation can therefore store and serve it, not only its author, which is
how it reaches nodes that were offline. :func:`verify` accepts exactly that
shape; at its key a revocation replaces any record (whatever the sequence),
nothing replaces it, and it never expires.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

from ..addresses import onion_address_from_public_key
from ..identity import RecordError, RecordKind, parse_record, verify_record

DOMAIN = b"aegis-hidden dht record v1\x00"
KEY_DOMAIN = b"aegis-hidden dht key\x00"
MAX_NAME = 64
MAX_VALUE = 8192
#: a record may not claim to live longer than this (republish refreshes it)
MAX_LIFETIME = 7 * 24 * 3600
#: how often a holder re-stores what it holds at the nodes now closest to its key
REPUBLISH_INTERVAL = 3600
# offset of the Ed25519 key in an identity record (after magic, version, kind)
_PUBLISHER_AT = 10
# offset of the kind byte in an identity record (after the 8-byte magic and the version)
_KIND_AT = 9
#: the name of the record that carries a node's identity record (or its revocation)
IDENTITY_NAME = b"identity"


class DhtRecordError(ValueError):
    """A DHT record refused; the subclass names the reason."""


class UnsignedRecord(DhtRecordError):
    """A signature or the publisher's identity record is missing."""


class BadRecordSignature(DhtRecordError):
    """A signature or the publisher's identity record does not verify."""


class ExpiredRecord(DhtRecordError):
    """The record has expired, or claims a lifetime longer than allowed."""


class StaleRecord(DhtRecordError):
    """A lower sequence than the one held (a replay), or the same sequence with other content."""


class RecordTooLarge(DhtRecordError):
    """Name or value above the limits."""


class QuotaExceeded(DhtRecordError):
    """The store is full, or this publisher holds its share already."""


def record_key(publisher: bytes, name: bytes) -> bytes:
    """The DHT key of ``publisher``'s record called ``name``."""
    return hashlib.sha256(KEY_DOMAIN + publisher + name).digest()


@dataclass(frozen=True)
class SignedRecord:
    name: bytes
    value: bytes
    sequence: int
    expires: int
    publisher_record: bytes = field(repr=False)
    signature: bytes = field(default=b"", repr=False)
    mldsa_signature: bytes = field(default=b"", repr=False)

    @property
    def publisher(self) -> bytes:
        """The publisher's Ed25519 key as its record claims it (checked by :func:`verify`)."""
        return self.publisher_record[_PUBLISHER_AT:_PUBLISHER_AT + 32]

    @property
    def key(self) -> bytes:
        return record_key(self.publisher, self.name)

    def signed_message(self) -> bytes:
        return (DOMAIN + self.key + struct.pack(">B", len(self.name)) + self.name
                + struct.pack(">QQI", self.sequence, self.expires, len(self.value)) + self.value)

    @property
    def is_revocation(self) -> bool:
        """Whether this is a revocation record (the publisher record's kind says so;
        :func:`verify` checks the rest)."""
        return (len(self.publisher_record) > _KIND_AT
                and self.publisher_record[_KIND_AT] == RecordKind.REVOCATION.value)

    def alive(self, now: float) -> bool:
        """Not expired at ``now`` (a revocation never expires)."""
        return self.is_revocation or self.expires > now

    def same_content(self, other: SignedRecord) -> bool:
        return (self.name, self.value, self.sequence, self.expires) == (
            other.name, other.value, other.sequence, other.expires)


def _check_limits(name: bytes, value: bytes, sequence: int, expires: int) -> None:
    if len(name) > MAX_NAME:
        raise RecordTooLarge(f"name is {len(name)} bytes, at most {MAX_NAME}")
    if len(value) > MAX_VALUE:
        raise RecordTooLarge(f"value is {len(value)} bytes, at most {MAX_VALUE}")
    if not (0 <= sequence < 2**64 and 0 <= expires < 2**64):
        raise DhtRecordError("sequence and expiry are u64")


def sign(master: Ed25519PrivateKey, mldsa: MLDSA65PrivateKey, publisher_record: bytes,
         name: bytes, value: bytes, sequence: int, expires: int) -> SignedRecord:
    """A record signed by both keys of the identity whose record is ``publisher_record``."""
    _check_limits(name, value, sequence, expires)
    unsigned = SignedRecord(name, value, sequence, expires, bytes(publisher_record))
    if master.public_key().public_bytes_raw() != unsigned.publisher:
        raise DhtRecordError("the signing key is not the publisher record's master key")
    message = unsigned.signed_message()
    return SignedRecord(name, value, sequence, expires, unsigned.publisher_record,
                        master.sign(message), mldsa.sign(message))


def revocation_record(revocation: bytes) -> SignedRecord:
    """The DHT record that carries ``revocation`` (a signed identity revocation) at the
    key of its identity record; :func:`verify` checks it."""
    rec = parse_record(revocation)
    if rec.kind is not RecordKind.REVOCATION:
        raise DhtRecordError("not a revocation")
    return SignedRecord(IDENTITY_NAME, b"", rec.sequence, 0, bytes(revocation))


def _verify_revocation(record: SignedRecord, now: float) -> SignedRecord:
    if (record.name != IDENTITY_NAME or record.value or record.expires != 0
            or record.signature or record.mldsa_signature):
        raise BadRecordSignature("a revocation record is name \"identity\", an empty value, "
                                 "expires 0 and no signatures of its own")
    try:
        rec = parse_record(record.publisher_record)
        verify_record(rec, onion_address_from_public_key(rec.ed25519_public), now)
    except RecordError as e:
        raise BadRecordSignature(f"revocation refused: {e}") from None
    if rec.kind is not RecordKind.REVOCATION or rec.expires != 0:
        raise BadRecordSignature("not a permanent revocation")
    if record.sequence != rec.sequence:
        raise BadRecordSignature("the record's sequence is not the revocation's")
    return record


def verify(record: SignedRecord, now: float) -> SignedRecord:
    """Check ``record`` is whole, signed by its publisher's two keys, and alive at ``now``
    (or is a revocation record, see the module's docstring)."""
    if record.is_revocation:
        return _verify_revocation(record, now)
    if not record.signature or not record.mldsa_signature or not record.publisher_record:
        raise UnsignedRecord("record carries no signature or no publisher record")
    _check_limits(record.name, record.value, record.sequence, record.expires)
    if record.expires <= now:
        raise ExpiredRecord(f"record expired {now - record.expires:.0f}s ago")
    if record.expires > now + MAX_LIFETIME:
        raise ExpiredRecord(f"record claims {record.expires - now:.0f}s of life, at most {MAX_LIFETIME}")
    try:
        ident = parse_record(record.publisher_record)
        if ident.kind is not RecordKind.IDENTITY:
            raise BadRecordSignature("the publisher's record is a revocation")
        verify_record(ident, onion_address_from_public_key(ident.ed25519_public), now)
    except RecordError as e:
        raise BadRecordSignature(f"publisher's identity record refused: {e}") from None
    message = record.signed_message()
    try:
        Ed25519PublicKey.from_public_bytes(ident.ed25519_public).verify(record.signature, message)
    except InvalidSignature:
        raise BadRecordSignature("Ed25519 signature does not verify") from None
    try:
        MLDSA65PublicKey.from_public_bytes(ident.mldsa_public).verify(record.mldsa_signature, message)
    except (InvalidSignature, ValueError):
        raise BadRecordSignature("ML-DSA-65 signature does not verify") from None
    return record


@dataclass
class _Held:
    record: SignedRecord
    republish_at: float


class RecordStore:
    """The records this node holds, with quotas; pure (``now`` is passed in).

    :meth:`put` verifies and refuses with a typed error; :meth:`expire` and
    :meth:`due_republish` answer "what is due at ``now``" for the driver.
    """

    def __init__(self, *, max_records: int = 10_000, max_per_publisher: int = 64,
                 republish_interval: float = REPUBLISH_INTERVAL) -> None:
        self.max_records = max_records
        self.max_per_publisher = max_per_publisher
        self.republish_interval = republish_interval
        self._held: dict[bytes, _Held] = {}
        self._per_publisher: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: bytes, now: float) -> SignedRecord | None:
        held = self._held.get(key)
        if held is None or not held.record.alive(now):
            return None
        return held.record

    def records(self) -> list[SignedRecord]:
        return [h.record for h in self._held.values()]

    def put(self, record: SignedRecord, now: float, *, verified: bool = False) -> bool:
        """Hold ``record``; True if it is new or newer, False if the same was held.

        Raises a :class:`DhtRecordError` subclass naming why it was refused.
        """
        if not verified:
            verify(record, now)
        key = record.key
        held = self._held.get(key)
        if held is not None:
            old = held.record
            if old.is_revocation:  # permanent: nothing replaces it
                if record.is_revocation and record.same_content(old) \
                        and record.publisher_record == old.publisher_record:
                    return False
                raise StaleRecord("this identity is revoked: its revocation is held")
            if record.is_revocation:  # overrides any record of that identity
                held.record = record
                return True
            if record.sequence < old.sequence:
                raise StaleRecord(f"sequence {record.sequence} is lower than {old.sequence} held")
            if record.sequence == old.sequence:
                if record.same_content(old):
                    return False
                raise StaleRecord(f"sequence {record.sequence} already held with other content")
            held.record = record
            return True
        publisher = record.publisher
        if len(self._held) >= self.max_records:
            raise QuotaExceeded(f"store holds {self.max_records} records")
        if self._per_publisher.get(publisher, 0) >= self.max_per_publisher:
            raise QuotaExceeded(f"publisher holds {self.max_per_publisher} records here already")
        self._held[key] = _Held(record, now + self.republish_interval)
        self._per_publisher[publisher] = self._per_publisher.get(publisher, 0) + 1
        return True

    def load(self, record: SignedRecord, republish_at: float) -> None:
        """Restore a record from disk (checked by the caller with :func:`verify`)."""
        self._held[record.key] = _Held(record, republish_at)
        self._per_publisher[record.publisher] = self._per_publisher.get(record.publisher, 0) + 1

    def republish_at(self, key: bytes) -> float | None:
        held = self._held.get(key)
        return None if held is None else held.republish_at

    def expire(self, now: float) -> list[bytes]:
        """Drop every record expired at ``now``; the keys dropped."""
        gone = [k for k, h in self._held.items() if not h.record.alive(now)]
        for key in gone:
            self._forget(key)
        return gone

    def _forget(self, key: bytes) -> None:
        held = self._held.pop(key)
        publisher = held.record.publisher
        left = self._per_publisher.get(publisher, 1) - 1
        if left:
            self._per_publisher[publisher] = left
        else:
            self._per_publisher.pop(publisher, None)

    def due_republish(self, now: float) -> list[SignedRecord]:
        """Records whose republish time has come at ``now`` (rescheduled one interval on)."""
        due = []
        for held in self._held.values():
            if held.republish_at <= now and held.record.alive(now):
                due.append(held.record)
                held.republish_at = now + self.republish_interval
        return due

    def next_due(self) -> float | None:
        """When :meth:`due_republish` or :meth:`expire` next has something (None: empty)."""
        times = [h.republish_at if h.record.is_revocation
                 else min(h.republish_at, h.record.expires) for h in self._held.values()]
        return min(times) if times else None
