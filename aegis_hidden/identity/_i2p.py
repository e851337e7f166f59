"""The I2P binding: a salted commitment in the record, the destination kept apart.

The identity record carries only ``SHA-256(DOMAIN ‖ salt ‖ destination)``, so
whoever holds the record (anyone who knows the onion address) learns nothing
about the node's I2P destination. The node reveals the :class:`I2PBinding`
(salt and destination) only inside an established session, to peers it chose;
the receiver checks it against the record with :func:`verify_binding`, which
gives the ``.b32.i2p`` address it may then use for failover.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from ..addresses import b32_i2p_address
from ._record import I2P_COMMITMENT_SIZE, IdentityRecord, RecordError

BINDING_DOMAIN = b"aegis-hidden i2p binding\x00"
SALT_SIZE = 32
MAX_I2P_DESTINATION = 1024
MIN_I2P_DESTINATION = 516  # 387 bytes (256 + 128 + 3-byte null certificate) in base64
_I2P_BASE64 = re.compile(r"[A-Za-z0-9~-]+={0,2}")


def _destination_bytes(destination_b64: str) -> bytes:
    if (not isinstance(destination_b64, str)
            or not MIN_I2P_DESTINATION <= len(destination_b64) <= MAX_I2P_DESTINATION
            or not _I2P_BASE64.fullmatch(destination_b64)):
        raise RecordError("not an I2P destination (I2P base64, 516 to 1024 characters)")
    stripped = destination_b64.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-~", validate=True)
    except (binascii.Error, ValueError):
        raise RecordError("I2P destination is not valid base64") from None


def b32_address_of_destination(destination_b64: str) -> str:
    """The ``.b32.i2p`` name of an I2P destination in I2P's base64 alphabet (``-~``).

    base32 (lowercase, no padding) of SHA-256 of the raw destination bytes;
    :class:`RecordError` when ``destination_b64`` is not a destination.
    """
    return b32_i2p_address(_destination_bytes(destination_b64))


def binding_commitment(salt: bytes, destination: str) -> bytes:
    """SHA-256(``b"aegis-hidden i2p binding\\x00"`` ‖ salt ‖ ASCII destination)."""
    return hashlib.sha256(BINDING_DOMAIN + salt + destination.encode("ascii")).digest()


@dataclass(frozen=True)
class I2PBinding:
    """An I2P destination (I2P base64) and the salt of its commitment in the record."""

    destination: str
    salt: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_SIZE:
            raise RecordError(f"I2P binding salt must be {SALT_SIZE} bytes")
        _destination_bytes(self.destination)

    def __repr__(self) -> str:  # the destination is linkable metadata: never log it
        return "I2PBinding(...)"

    def commitment(self) -> bytes:
        return binding_commitment(self.salt, self.destination)

    @property
    def b32(self) -> str:
        """The ``<52>.b32.i2p`` address of the destination."""
        return b32_address_of_destination(self.destination)

    def to_bytes(self) -> bytes:
        """salt (32) ‖ ASCII destination."""
        return self.salt + self.destination.encode("ascii")

    @classmethod
    def parse(cls, data: bytes) -> I2PBinding:
        data = bytes(data)
        if len(data) < SALT_SIZE + MIN_I2P_DESTINATION:
            raise RecordError(f"I2P binding is too short ({len(data)} bytes)")
        try:
            destination = data[SALT_SIZE:].decode("ascii")
        except UnicodeDecodeError:
            raise RecordError("I2P binding destination is not ASCII") from None
        return cls(destination, data[:SALT_SIZE])


def verify_binding(record: IdentityRecord, binding: I2PBinding) -> str:
    """The ``.b32.i2p`` address ``binding`` proves for ``record``'s onion, or RecordError.

    The caller must have verified ``record`` itself (:func:`verify_record`).
    """
    if len(record.i2p_commitment) != I2P_COMMITMENT_SIZE:
        raise RecordError(f"{record.onion}'s record commits to no I2P destination")
    if not hmac.compare_digest(binding.commitment(), record.i2p_commitment):
        raise RecordError(f"the I2P binding does not match {record.onion}'s record")
    return binding.b32
