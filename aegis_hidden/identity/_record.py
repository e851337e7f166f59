"""Signed identity and revocation records.

A record binds a node's subkeys (X-Wing, optionally ML-DSA-65) and its I2P
destination to its master Ed25519 key, i.e. to its onion address. Anyone who
knows only the onion address can check a record: the address *is* the key.

Wire form (all integers big-endian)::

    magic    "AEGISREC"                       8
    version  u8 = 1                           1
    kind     u8 (1 identity, 2 revocation)    1
    ed25519  master public key                32
    sequence u64                              8
    created  u64 unix seconds                 8
    expires  u64 unix seconds (0: never)      8
    fields   u16 length + bytes, in order: x-wing public, ML-DSA-65 public,
             I2P destination (ASCII), revocation reason (UTF-8)
    ed25519 signature over DOMAIN | all of the above         64
    ML-DSA-65 signature (u16 length + bytes; empty if no ML-DSA key)

Both signatures cover the same body; the Ed25519 signature also covers the
ML-DSA public key, so neither key can be swapped without the other.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.mldsa import (
    MLDSA65PrivateKey,
    MLDSA65PublicKey,
)

from ._onion import OnionAddressError, onion_address_from_public_key, public_key_from_onion_address

MAGIC = b"AEGISREC"
RECORD_VERSION = 1
DOMAIN = b"aegis-hidden identity record v1\x00"
_HEADER = struct.Struct(">8sBB32sQQQ")
XWING_PUBLIC_SIZE = 1216
MLDSA65_PUBLIC_SIZE = 1952
MLDSA65_SIGNATURE_SIZE = 3309
MAX_I2P_DESTINATION = 1024
MAX_REASON = 512


class RecordKind(enum.IntEnum):
    IDENTITY = 1
    REVOCATION = 2


class RecordError(ValueError):
    """A record that cannot be accepted; the message says which check failed."""


@dataclass(frozen=True)
class IdentityRecord:
    kind: RecordKind
    ed25519_public: bytes
    sequence: int
    created: int
    expires: int
    xwing_public: bytes = b""
    mldsa_public: bytes = b""
    i2p_destination: str = ""
    reason: str = ""
    signature: bytes = field(default=b"", repr=False)
    mldsa_signature: bytes = field(default=b"", repr=False)

    @property
    def onion(self) -> str:
        return onion_address_from_public_key(self.ed25519_public)

    def body(self) -> bytes:
        """The signed part of the record."""
        out = [
            _HEADER.pack(MAGIC, RECORD_VERSION, int(self.kind), self.ed25519_public,
                         self.sequence, self.created, self.expires)
        ]
        for blob in (
            self.xwing_public,
            self.mldsa_public,
            self.i2p_destination.encode("ascii"),
            self.reason.encode("utf-8"),
        ):
            out.append(struct.pack(">H", len(blob)) + blob)
        return b"".join(out)

    def to_bytes(self) -> bytes:
        return (
            self.body()
            + self.signature
            + struct.pack(">H", len(self.mldsa_signature))
            + self.mldsa_signature
        )

    def to_json(self) -> dict[str, object]:
        """A JSON-friendly view (public data only)."""
        return {
            "kind": self.kind.name.lower(),
            "onion": self.onion,
            "ed25519_public": self.ed25519_public.hex(),
            "sequence": self.sequence,
            "created": self.created,
            "expires": self.expires,
            "xwing_public": self.xwing_public.hex(),
            "mldsa65_public": self.mldsa_public.hex() or None,
            "i2p_destination": self.i2p_destination or None,
            "reason": self.reason or None,
        }


def _check_fields(rec: IdentityRecord) -> None:
    if len(rec.ed25519_public) != 32:
        raise RecordError("master public key must be 32 bytes")
    for name, value in (("sequence", rec.sequence), ("created", rec.created),
                        ("expires", rec.expires)):
        if not 0 <= value < 2**64:
            raise RecordError(f"{name} {value} does not fit in 64 bits")
    if rec.kind is RecordKind.IDENTITY:
        if len(rec.xwing_public) != XWING_PUBLIC_SIZE:
            raise RecordError(f"X-Wing public key must be {XWING_PUBLIC_SIZE} bytes, "
                              f"got {len(rec.xwing_public)}")
        if rec.reason:
            raise RecordError("an identity record carries no revocation reason")
    else:
        if rec.xwing_public or rec.mldsa_public or rec.i2p_destination:
            raise RecordError("a revocation record carries no subkeys")
    if rec.mldsa_public and len(rec.mldsa_public) != MLDSA65_PUBLIC_SIZE:
        raise RecordError(f"ML-DSA-65 public key must be {MLDSA65_PUBLIC_SIZE} bytes")
    if len(rec.i2p_destination) > MAX_I2P_DESTINATION:
        raise RecordError("I2P destination is too long")
    if len(rec.reason.encode("utf-8")) > MAX_REASON:
        raise RecordError(f"revocation reason is longer than {MAX_REASON} bytes")


def sign_record(
    rec: IdentityRecord,
    master: Ed25519PrivateKey,
    mldsa: MLDSA65PrivateKey | None = None,
) -> IdentityRecord:
    """``rec`` with its signatures; ``mldsa`` is required when it lists an ML-DSA key."""
    _check_fields(rec)
    if master.public_key().public_bytes_raw() != rec.ed25519_public:
        raise RecordError("the signing key is not the record's master key")
    body = rec.body()
    sig = master.sign(DOMAIN + body)
    mldsa_sig = b""
    if rec.mldsa_public:
        if mldsa is None or mldsa.public_key().public_bytes_raw() != rec.mldsa_public:
            raise RecordError("the ML-DSA signing key does not match the record")
        mldsa_sig = mldsa.sign(DOMAIN + body)
    return IdentityRecord(**{**rec.__dict__, "signature": sig, "mldsa_signature": mldsa_sig})


def parse_record(data: bytes) -> IdentityRecord:
    """Decode a record (signatures are *not* checked: use :func:`verify_record`)."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise RecordError(f"record is truncated ({len(data)} bytes)")
    magic, version, kind, pub, seq, created, expires = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise RecordError("not an aegis-hidden record (bad magic)")
    if version != RECORD_VERSION:
        raise RecordError(f"record version {version} is not supported")
    try:
        rkind = RecordKind(kind)
    except ValueError:
        raise RecordError(f"unknown record kind {kind}") from None
    pos = _HEADER.size
    blobs: list[bytes] = []
    for _ in range(4):
        if pos + 2 > len(data):
            raise RecordError("record is truncated inside its fields")
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        if pos + n > len(data):
            raise RecordError("record is truncated inside its fields")
        blobs.append(data[pos : pos + n])
        pos += n
    if pos + 64 + 2 > len(data):
        raise RecordError("record is truncated inside its signature")
    sig = data[pos : pos + 64]
    pos += 64
    (n,) = struct.unpack_from(">H", data, pos)
    pos += 2
    mldsa_sig = data[pos : pos + n]
    if len(mldsa_sig) != n:
        raise RecordError("record is truncated inside its ML-DSA signature")
    if pos + n != len(data):
        raise RecordError(f"{len(data) - pos - n} unexpected bytes after the record")
    try:
        i2p = blobs[2].decode("ascii")
        reason = blobs[3].decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("record text field is not valid text") from None
    rec = IdentityRecord(
        kind=rkind, ed25519_public=pub, sequence=seq, created=created, expires=expires,
        xwing_public=blobs[0], mldsa_public=blobs[1], i2p_destination=i2p, reason=reason,
        signature=sig, mldsa_signature=mldsa_sig,
    )
    _check_fields(rec)
    return rec


def verify_record(
    data: bytes | IdentityRecord,
    onion: str,
    now: float,
    min_sequence: int | None = None,
) -> IdentityRecord:
    """Parse and check a record against the onion address it claims to belong to.

    Rejects (with :class:`RecordError` naming the check): malformed bytes, a key
    other than the onion address's, a bad Ed25519 or ML-DSA signature, an expired
    identity record, a record created in the future (more than 10 minutes of
    clock skew), and a sequence lower than ``min_sequence`` (replay of an old
    record).
    """
    rec = data if isinstance(data, IdentityRecord) else parse_record(data)
    try:
        expected = public_key_from_onion_address(onion)
    except OnionAddressError as e:
        raise RecordError(f"cannot check against {onion!r}: {e}") from None
    if rec.ed25519_public != expected:
        raise RecordError(f"record is signed by another key than {onion}'s")
    body = DOMAIN + rec.body()
    try:
        Ed25519PublicKey.from_public_bytes(rec.ed25519_public).verify(rec.signature, body)
    except InvalidSignature:
        raise RecordError("Ed25519 signature does not verify") from None
    if rec.mldsa_public:
        if len(rec.mldsa_signature) != MLDSA65_SIGNATURE_SIZE:
            raise RecordError("ML-DSA-65 signature is missing or has the wrong length")
        try:
            MLDSA65PublicKey.from_public_bytes(rec.mldsa_public).verify(
                rec.mldsa_signature, body
            )
        except InvalidSignature:
            raise RecordError("ML-DSA-65 signature does not verify") from None
    elif rec.mldsa_signature:
        raise RecordError("ML-DSA-65 signature present without an ML-DSA key")
    if rec.created > now + 600:
        raise RecordError(f"record was created {rec.created - now:.0f}s in the future")
    if rec.kind is RecordKind.IDENTITY and rec.expires and rec.expires <= now:
        raise RecordError(f"record expired {now - rec.expires:.0f}s ago")
    if min_sequence is not None and rec.sequence < min_sequence:
        raise RecordError(
            f"record sequence {rec.sequence} is lower than {min_sequence} already seen "
            "(an old record replayed?)"
        )
    return rec


class RecordCache:
    """Remembers the highest sequence seen per onion, and revocations.

    Feeds :func:`verify_record` with ``min_sequence`` so an older record never
    replaces a newer one, and refuses every record of a revoked identity.
    """

    def __init__(self) -> None:
        self._latest: dict[str, IdentityRecord] = {}
        self._revoked: dict[str, IdentityRecord] = {}

    def accept(self, data: bytes | IdentityRecord, onion: str, now: float) -> IdentityRecord:
        onion = onion_address_from_public_key(public_key_from_onion_address(onion))
        if onion in self._revoked:
            raise RecordError(f"{onion} has been revoked: {self._revoked[onion].reason!r}")
        current = self._latest.get(onion)
        rec = verify_record(data, onion, now,
                            None if current is None else current.sequence)
        if current is not None and rec.sequence == current.sequence and rec != current:
            raise RecordError(f"two different records with sequence {rec.sequence}")
        if rec.kind is RecordKind.REVOCATION:
            self._revoked[onion] = rec
            self._latest.pop(onion, None)
        else:
            self._latest[onion] = rec
        return rec

    def get(self, onion: str) -> IdentityRecord | None:
        return self._latest.get(onion)

    def is_revoked(self, onion: str) -> bool:
        return onion in self._revoked
