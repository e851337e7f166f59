"""v3 onion addresses, exactly as rend-spec-v3 section 6 defines them.

    onion_address = base32(PUBKEY | CHECKSUM | VERSION) + ".onion"
    CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]
    VERSION = 0x03
"""

from __future__ import annotations

import base64
import hashlib

ONION_VERSION = 3
_CHECKSUM_PREFIX = b".onion checksum"
_ADDRESS_CHARS = 56  # 35 bytes of base32, no padding
SUFFIX = ".onion"


class OnionAddressError(ValueError):
    """An onion address that is not a valid v3 address; the message says why."""


def _checksum(public_key: bytes, version: int) -> bytes:
    return hashlib.sha3_256(_CHECKSUM_PREFIX + public_key + bytes([version])).digest()[:2]


def onion_address_from_public_key(public_key: bytes) -> str:
    """The v3 onion address (with ``.onion``) of a 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise OnionAddressError(
            f"an Ed25519 public key is 32 bytes, got {len(public_key)}"
        )
    raw = public_key + _checksum(public_key, ONION_VERSION) + bytes([ONION_VERSION])
    return base64.b32encode(raw).decode("ascii").lower() + SUFFIX


def public_key_from_onion_address(address: str) -> bytes:
    """Parse a v3 onion address back to its Ed25519 public key.

    Accepts the address with or without ``.onion`` and in any letter case; rejects
    a wrong length, characters outside base32, an unknown version and a bad
    checksum, each with its own message.
    """
    if not isinstance(address, str):
        raise OnionAddressError(f"an onion address is a string, got {type(address).__name__}")
    label = address.strip().lower()
    if label.endswith(SUFFIX):
        label = label[: -len(SUFFIX)]
    # A subdomain ("www.<addr>.onion") names the same service.
    label = label.rsplit(".", 1)[-1]
    if len(label) != _ADDRESS_CHARS:
        raise OnionAddressError(
            f"{address!r}: a v3 onion address has {_ADDRESS_CHARS} characters before "
            f"'.onion', this one has {len(label)}"
        )
    try:
        raw = base64.b32decode(label.upper(), casefold=False)
    except ValueError as e:
        raise OnionAddressError(f"{address!r}: not base32 ({e})") from None
    public_key, checksum, version = raw[:32], raw[32:34], raw[34]
    if version != ONION_VERSION:
        raise OnionAddressError(f"{address!r}: version byte is {version}, only 3 is supported")
    if checksum != _checksum(public_key, version):
        raise OnionAddressError(f"{address!r}: checksum does not match (mistyped address?)")
    return public_key


def is_onion_v3(address: str) -> bool:
    """True when ``address`` is a well-formed v3 onion address."""
    try:
        public_key_from_onion_address(address)
    except OnionAddressError:
        return False
    return True
