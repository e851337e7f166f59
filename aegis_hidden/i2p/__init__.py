"""I2P transport: an own SAM v3 client (sans-I/O codec + thin Twisted protocol).

Public pieces: the codec (:mod:`._sam`), destinations (:mod:`._destination`),
the typed errors, sessions, stream endpoints and the :class:`I2PProvider`
service. See ``docs/i2p.md``.
"""

from ._destination import (
    SIGNATURE_TYPE_EDDSA_SHA512_ED25519,
    Destination,
    PrivateKey,
    b32_address,
    b64decode,
    b64encode,
    is_b32_address,
    is_i2p_name,
)
from ._errors import (
    AlreadyAccepting,
    CantReachPeer,
    DestinationError,
    DuplicatedDest,
    DuplicatedId,
    I2PError,
    InvalidId,
    InvalidKey,
    KeyNotFound,
    NoVersion,
    PeerNotFound,
    SAMError,
    SAMProtocolError,
    SAMResultError,
    SAMTimeout,
    UnknownResult,
)

__all__ = [
    "SIGNATURE_TYPE_EDDSA_SHA512_ED25519",
    "AlreadyAccepting",
    "CantReachPeer",
    "Destination",
    "DestinationError",
    "DuplicatedDest",
    "DuplicatedId",
    "I2PError",
    "InvalidId",
    "InvalidKey",
    "KeyNotFound",
    "NoVersion",
    "PeerNotFound",
    "PrivateKey",
    "SAMError",
    "SAMProtocolError",
    "SAMResultError",
    "SAMTimeout",
    "UnknownResult",
    "b32_address",
    "b64decode",
    "b64encode",
    "is_b32_address",
    "is_i2p_name",
]
