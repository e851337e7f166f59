"""Signed identity and revocation records.

A record binds a node's subkeys (X-Wing, ML-DSA-65) and a commitment to its I2P
destination to its master Ed25519 key, i.e. to its onion address. Anyone who
knows only the onion address can check a record: the address *is* the key.
docs/identity.md specifies the format normatively; in short (integers
big-endian)::

    magic    "AEGISREC"                       8
    version  u8 = 1                           1
    kind     u8 (1 identity, 2 revocation)    1
    ed25519  master public key                32
    sequence u64                              8
    created  u64 unix seconds                 8
    expires  u64 unix seconds (0 in a revocation: permanent)   8
    fields   u16 length + bytes, in order:
             X-Wing public (1216; empty in a revocation),
             ML-DSA-65 public (1952, mandatory),
             I2P commitment (empty or 32),
             revocation reason (UTF-8, revocation only),
             ML-DSA rotation proof (empty or 1952 + 8 + 3309)
    Ed25519 signature over DOMAIN | all of the above           64
    u16 length + ML-DSA-65 signature (3309, pure, empty context) over the same

Both signatures cover the same body; each covers both public keys, so neither
key can be swapped without forging the other signature.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Callable, Iterable
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

from ..addresses import OnionAddressError, onion_address_from_public_key, public_key_from_onion_address

MAGIC = b"AEGISREC"
RECORD_VERSION = 1
DOMAIN = b"aegis-hidden identity record v1\x00"
ROTATION_DOMAIN = b"aegis-hidden mldsa rotation\x00"
_HEADER = struct.Struct(">8sBB32sQQQ")
XWING_PUBLIC_SIZE = 1216
MLDSA65_PUBLIC_SIZE = 1952
MLDSA65_SIGNATURE_SIZE = 3309
I2P_COMMITMENT_SIZE = 32
ROTATION_PROOF_SIZE = MLDSA65_PUBLIC_SIZE + 8 + MLDSA65_SIGNATURE_SIZE
MAX_REASON = 512
MAX_RECORD_LIFETIME = 30 * 24 * 3600
MAX_CLOCK_SKEW = 600
_FIELDS = 5


class RecordKind(enum.IntEnum):
    IDENTITY = 1
    REVOCATION = 2


class RecordError(ValueError):
    """A record that cannot be accepted; the message says which check failed."""


class RevokedIdentity(RecordError):
    """The onion address has been revoked: no record of it is accepted any more."""


class RecordRollback(RecordError):
    """A record with a lower sequence than one already seen (an old record replayed)."""


class PinMismatch(RecordError):
    """The record's ML-DSA key is not the pinned one, and no valid rotation proof links them."""


def rotation_message(ed25519_public: bytes, new_mldsa_public: bytes, sequence: int) -> bytes:
    """What the previous ML-DSA key signs when the node rotates to ``new_mldsa_public``."""
    return ROTATION_DOMAIN + ed25519_public + new_mldsa_public + struct.pack(">Q", sequence)


def make_rotation_proof(
    previous: MLDSA65PrivateKey, ed25519_public: bytes, new_mldsa_public: bytes, sequence: int
) -> bytes:
    """previous public ‖ u64 sequence ‖ ML-DSA-65 signature by ``previous`` (see docs)."""
    prev_pub = previous.public_key().public_bytes_raw()
    sig = previous.sign(rotation_message(ed25519_public, new_mldsa_public, sequence))
    return prev_pub + struct.pack(">Q", sequence) + sig


def _split_proof(proof: bytes) -> tuple[bytes, int, bytes]:
    prev = proof[:MLDSA65_PUBLIC_SIZE]
    (seq,) = struct.unpack_from(">Q", proof, MLDSA65_PUBLIC_SIZE)
    return prev, seq, proof[MLDSA65_PUBLIC_SIZE + 8 :]


@dataclass(frozen=True)
class IdentityRecord:
    kind: RecordKind
    ed25519_public: bytes
    sequence: int
    created: int
    expires: int
    xwing_public: bytes = b""
    mldsa_public: bytes = b""
    i2p_commitment: bytes = b""
    reason: str = ""
    rotation_proof: bytes = field(default=b"", repr=False)
    signature: bytes = field(default=b"", repr=False)
    mldsa_signature: bytes = field(default=b"", repr=False)

    @property
    def onion(self) -> str:
        return onion_address_from_public_key(self.ed25519_public)

    @property
    def rotated_from(self) -> bytes:
        """The previous ML-DSA-65 public key named by the rotation proof, or b""."""
        return self.rotation_proof[:MLDSA65_PUBLIC_SIZE] if self.rotation_proof else b""

    @property
    def rotation_sequence(self) -> int | None:
        """Sequence of the record that rotated the ML-DSA key (None without a proof)."""
        return _split_proof(self.rotation_proof)[1] if self.rotation_proof else None

    def body(self) -> bytes:
        """The signed part of the record."""
        out = [
            _HEADER.pack(MAGIC, RECORD_VERSION, int(self.kind), self.ed25519_public,
                         self.sequence, self.created, self.expires)
        ]
        for blob in (
            self.xwing_public,
            self.mldsa_public,
            self.i2p_commitment,
            self.reason.encode("utf-8"),
            self.rotation_proof,
        ):
            out.append(struct.pack(">H", len(blob)) + blob)
        return b"".join(out)

    def signed_message(self) -> bytes:
        """What both signatures cover: DOMAIN ‖ body."""
        return DOMAIN + self.body()

    def to_bytes(self) -> bytes:
        return (
            self.body()
            + self.signature
            + struct.pack(">H", len(self.mldsa_signature))
            + self.mldsa_signature
        )

    def to_json(self) -> dict[str, object]:
        """A JSON-friendly view (public data only; the I2P destination is not in it)."""
        return {
            "kind": self.kind.name.lower(),
            "onion": self.onion,
            "ed25519_public": self.ed25519_public.hex(),
            "sequence": self.sequence,
            "created": self.created,
            "expires": self.expires,
            "xwing_public": self.xwing_public.hex(),
            "mldsa65_public": self.mldsa_public.hex(),
            "i2p_commitment": self.i2p_commitment.hex() or None,
            "mldsa65_rotated_from": self.rotated_from.hex() or None,
            "reason": self.reason or None,
        }


def _check_fields(rec: IdentityRecord) -> None:
    if len(rec.ed25519_public) != 32:
        raise RecordError("master public key must be 32 bytes")
    for name, value in (("sequence", rec.sequence), ("created", rec.created),
                        ("expires", rec.expires)):
        if not 0 <= value < 2**64:
            raise RecordError(f"{name} {value} does not fit in 64 bits")
    if len(rec.mldsa_public) != MLDSA65_PUBLIC_SIZE:
        raise RecordError(f"ML-DSA-65 public key is mandatory and must be "
                          f"{MLDSA65_PUBLIC_SIZE} bytes, got {len(rec.mldsa_public)}")
    if rec.kind is RecordKind.IDENTITY:
        if len(rec.xwing_public) != XWING_PUBLIC_SIZE:
            raise RecordError(f"X-Wing public key must be {XWING_PUBLIC_SIZE} bytes, "
                              f"got {len(rec.xwing_public)}")
        if rec.reason:
            raise RecordError("an identity record carries no revocation reason")
        if not rec.created < rec.expires <= rec.created + MAX_RECORD_LIFETIME:
            raise RecordError(
                f"expires must satisfy created < expires <= created + "
                f"{MAX_RECORD_LIFETIME}s (got created={rec.created}, expires={rec.expires})")
    else:
        if rec.xwing_public or rec.i2p_commitment:
            raise RecordError("a revocation record carries no X-Wing key or I2P commitment")
        if rec.expires != 0:
            raise RecordError("a revocation is permanent: its expires must be 0")
    if rec.i2p_commitment and len(rec.i2p_commitment) != I2P_COMMITMENT_SIZE:
        raise RecordError(f"I2P commitment must be empty or {I2P_COMMITMENT_SIZE} bytes")
    if len(rec.reason.encode("utf-8")) > MAX_REASON:
        raise RecordError(f"revocation reason is longer than {MAX_REASON} bytes")
    if rec.rotation_proof:
        if len(rec.rotation_proof) != ROTATION_PROOF_SIZE:
            raise RecordError(f"ML-DSA rotation proof must be empty or {ROTATION_PROOF_SIZE} "
                              f"bytes, got {len(rec.rotation_proof)}")
        prev, seq, _ = _split_proof(rec.rotation_proof)
        if prev == rec.mldsa_public:
            raise RecordError("ML-DSA rotation proof names the record's own key")
        if seq > rec.sequence:
            raise RecordError(f"ML-DSA rotation proof sequence {seq} is above the record's "
                              f"{rec.sequence}")


def sign_record(
    rec: IdentityRecord,
    master: Ed25519PrivateKey,
    mldsa: MLDSA65PrivateKey,
) -> IdentityRecord:
    """``rec`` with both signatures (Ed25519 and ML-DSA-65 are both mandatory)."""
    _check_fields(rec)
    if master.public_key().public_bytes_raw() != rec.ed25519_public:
        raise RecordError("the signing key is not the record's master key")
    if mldsa is None or mldsa.public_key().public_bytes_raw() != rec.mldsa_public:
        raise RecordError("the ML-DSA signing key does not match the record")
    message = rec.signed_message()
    return IdentityRecord(**{**rec.__dict__, "signature": master.sign(message),
                             "mldsa_signature": mldsa.sign(message)})


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
    for _ in range(_FIELDS):
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
    if n != MLDSA65_SIGNATURE_SIZE:
        raise RecordError(f"ML-DSA-65 signature is mandatory and must be "
                          f"{MLDSA65_SIGNATURE_SIZE} bytes, got {n}")
    try:
        reason = blobs[3].decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("revocation reason is not valid UTF-8") from None
    rec = IdentityRecord(
        kind=rkind, ed25519_public=pub, sequence=seq, created=created, expires=expires,
        xwing_public=blobs[0], mldsa_public=blobs[1], i2p_commitment=blobs[2], reason=reason,
        rotation_proof=blobs[4], signature=sig, mldsa_signature=mldsa_sig,
    )
    _check_fields(rec)
    if rec.to_bytes() != data:  # e.g. a reason whose UTF-8 is not canonical
        raise RecordError("record is not in canonical form")
    return rec


def _verify_rotation_proof(rec: IdentityRecord) -> None:
    prev, seq, sig = _split_proof(rec.rotation_proof)
    try:
        MLDSA65PublicKey.from_public_bytes(prev).verify(
            sig, rotation_message(rec.ed25519_public, rec.mldsa_public, seq))
    except (InvalidSignature, ValueError):
        raise RecordError("ML-DSA rotation proof does not verify") from None


def verify_signatures(rec: IdentityRecord, onion: str) -> IdentityRecord:
    """Check ``rec`` is signed by ``onion``'s master key and its ML-DSA key (no time checks)."""
    try:
        expected = public_key_from_onion_address(onion)
    except OnionAddressError as e:
        raise RecordError(f"cannot check against {onion!r}: {e}") from None
    if rec.ed25519_public != expected:
        raise RecordError(f"record is signed by another key than {onion}'s")
    _check_fields(rec)
    message = rec.signed_message()
    try:
        Ed25519PublicKey.from_public_bytes(rec.ed25519_public).verify(rec.signature, message)
    except InvalidSignature:
        raise RecordError("Ed25519 signature does not verify") from None
    if len(rec.mldsa_signature) != MLDSA65_SIGNATURE_SIZE:
        raise RecordError("ML-DSA-65 signature is missing or has the wrong length")
    try:
        MLDSA65PublicKey.from_public_bytes(rec.mldsa_public).verify(rec.mldsa_signature,
                                                                   message)
    except (InvalidSignature, ValueError):
        raise RecordError("ML-DSA-65 signature does not verify") from None
    if rec.rotation_proof:
        _verify_rotation_proof(rec)
    return rec


def verify_record(
    data: bytes | IdentityRecord,
    onion: str,
    now: float,
    min_sequence: int | None = None,
) -> IdentityRecord:
    """Parse and check a record against the onion address it claims to belong to.

    Rejects (with :class:`RecordError` naming the check): malformed bytes, a
    record without an ML-DSA-65 key and signature, a key other than the onion
    address's, a bad Ed25519 or ML-DSA signature or rotation proof, an expired
    identity record, a record created in the future (more than 10 minutes of
    clock skew), and a sequence lower than ``min_sequence``
    (:class:`RecordRollback`: replay of an old record).
    """
    rec = data if isinstance(data, IdentityRecord) else parse_record(data)
    verify_signatures(rec, onion)
    if rec.created > now + MAX_CLOCK_SKEW:
        raise RecordError(f"record was created {rec.created - now:.0f}s in the future")
    if rec.kind is RecordKind.IDENTITY and rec.expires <= now:
        raise RecordError(f"record expired {now - rec.expires:.0f}s ago")
    if min_sequence is not None and rec.sequence < min_sequence:
        raise RecordRollback(
            f"record sequence {rec.sequence} is lower than {min_sequence} already seen "
            "(an old record replayed?)"
        )
    return rec


def check_mldsa_change(pinned_public: bytes, record: IdentityRecord) -> None:
    """Accept ``record``'s ML-DSA key given the key pinned for its onion, or raise.

    Returns when the key is the pinned one, or when the record's rotation proof
    names ``pinned_public`` as the previous key and its signature (by that key)
    verifies; raises :class:`PinMismatch` otherwise. The record's own signatures
    are not checked here (see :func:`verify_record`).
    """
    if hmac.compare_digest(record.mldsa_public, pinned_public):
        return
    if not record.rotation_proof or len(record.rotation_proof) != ROTATION_PROOF_SIZE:
        raise PinMismatch(f"{record.onion} changed its ML-DSA-65 key without a rotation "
                          "proof from the pinned key")
    if not hmac.compare_digest(record.rotated_from, pinned_public):
        raise PinMismatch(f"{record.onion}'s ML-DSA-65 rotation proof is from another key "
                          "than the pinned one")
    try:
        _verify_rotation_proof(record)
    except RecordError:
        raise PinMismatch(f"{record.onion}'s ML-DSA-65 rotation proof does not verify"
                          ) from None


def _canonical(onion: str) -> str:
    try:
        return onion_address_from_public_key(public_key_from_onion_address(onion))
    except OnionAddressError as e:
        raise RecordError(f"not a v3 onion address {onion!r}: {e}") from None


class RecordCache:
    """The highest-sequence record seen per onion, and revocations (pure, in memory).

    An older record never replaces a newer one (:class:`RecordRollback`), every
    record of a revoked identity is refused (:class:`RevokedIdentity`), and two
    different records with the same sequence are refused. Listeners are called
    with every record newly stored (so the node can persist them); :meth:`load`
    restores them without calling listeners.
    """

    def __init__(self) -> None:
        self._latest: dict[str, IdentityRecord] = {}
        self._revoked: dict[str, IdentityRecord] = {}
        self._listeners: list[Callable[[IdentityRecord], None]] = []

    def add_listener(self, callback: Callable[[IdentityRecord], None]) -> None:
        self._listeners.append(callback)

    def accept(self, data: bytes | IdentityRecord, onion: str, now: float) -> IdentityRecord:
        """Verify ``data`` against ``onion`` and the records already seen; store it if new."""
        onion = _canonical(onion)
        revocation = self._revoked.get(onion)
        if revocation is not None:
            raise RevokedIdentity(f"{onion} has been revoked: {revocation.reason!r}")
        current = self._latest.get(onion)
        rec = verify_record(data, onion, now, None if current is None else current.sequence)
        if current is not None and rec.sequence == current.sequence:
            if rec == current:
                return current
            raise RecordError(f"two different records with sequence {rec.sequence}")
        self._store(onion, rec)
        for callback in list(self._listeners):
            callback(rec)
        return rec

    def _store(self, onion: str, rec: IdentityRecord) -> None:
        if rec.kind is RecordKind.REVOCATION:
            self._revoked[onion] = rec
            self._latest.pop(onion, None)
        else:
            self._latest[onion] = rec

    def load(self, records: Iterable[IdentityRecord]) -> None:
        """Restore records from storage: signatures are checked, times are not.

        A revocation stays in force for good; for identity records the highest
        sequence wins. Listeners are not called.
        """
        for rec in records:
            onion = rec.onion
            verify_signatures(rec, onion)
            if onion in self._revoked:
                continue
            current = self._latest.get(onion)
            if (rec.kind is RecordKind.IDENTITY and current is not None
                    and rec.sequence <= current.sequence):
                continue
            self._store(onion, rec)

    def get(self, onion: str) -> IdentityRecord | None:
        return self._latest.get(_canonical_or_same(onion))

    def is_revoked(self, onion: str) -> bool:
        return _canonical_or_same(onion) in self._revoked

    def revocation(self, onion: str) -> IdentityRecord | None:
        return self._revoked.get(_canonical_or_same(onion))

    def revocations(self) -> list[IdentityRecord]:
        return list(self._revoked.values())


def _canonical_or_same(onion: str) -> str:
    try:
        return _canonical(onion)
    except RecordError:
        return onion
