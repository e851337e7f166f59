"""Node ids, XOR distance and contacts (pure).

A node id is SHA-256 of the node's Ed25519 master public key, the key its onion
address encodes and its session handshake proves: an id cannot be claimed
without the identity behind it. A contact is that key and, only when its owner
publishes it, an I2P ``.b32.i2p`` name for failover; never a machine address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..addresses import (
    OnionAddressError,
    is_b32_i2p,
    onion_address_from_public_key,
    public_key_from_onion_address,
)

ID_BYTES = 32
ID_BITS = ID_BYTES * 8


def node_id(ed25519_public: bytes) -> bytes:
    """The DHT id of the node whose master key is ``ed25519_public``."""
    if len(ed25519_public) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(ed25519_public).digest()


def node_id_of_onion(onion: str) -> bytes:
    """The DHT id of ``onion`` (raises :class:`OnionAddressError` on a bad address)."""
    return node_id(public_key_from_onion_address(onion))


def distance(a: bytes, b: bytes) -> int:
    """Kademlia's XOR metric between two ids, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(own: bytes, other: bytes) -> int:
    """Index of the k-bucket ``other`` falls in: bit length of the distance, minus one.

    0 holds the one id differing only in the last bit, 255 the half of the
    space differing in the first bit. The own id has no bucket (-1).
    """
    return distance(own, other).bit_length() - 1


@dataclass(frozen=True)
class Contact:
    """A DHT contact: an identity (its onion key), an optional I2P name, its puzzle nonce."""

    ed25519_public: bytes
    i2p: str = ""
    #: solves the id's puzzle (``_puzzle``); not part of a contact's identity
    nonce: int = field(default=0, compare=False, repr=False)
    id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.ed25519_public) != 32:
            raise ValueError("a contact's key is 32 bytes")
        if self.i2p and not is_b32_i2p(self.i2p):
            raise ValueError("a contact's I2P name must be a .b32.i2p address")
        object.__setattr__(self, "id", node_id(self.ed25519_public))

    @property
    def onion(self) -> str:
        return onion_address_from_public_key(self.ed25519_public)

    @classmethod
    def of_onion(cls, onion: str, i2p: str = "") -> Contact:
        try:
            return cls(public_key_from_onion_address(onion), i2p)
        except OnionAddressError as e:
            raise ValueError(str(e)) from None
