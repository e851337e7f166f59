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
from ._endpoints import (
    SAMListeningPort,
    SAMStreamClientEndpoint,
    SAMStreamServerEndpoint,
    check_i2p_target,
)
from ._errors import (
    AlreadyAccepting,
    CantReachPeer,
    ConnectTimeout,
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
from ._launch import I2pdLaunchError, I2pdProcess
from ._probe import SAMProbeError, sam_hello
from ._protocol import I2PAddress, SAMConnectionLost, SAMSocketProtocol, open_sam_socket
from ._provider import I2PKeyFileError, I2PProvider
from ._sam import DatagramReceived, RawReceived
from ._session import SAMSession, create_session, generate_destination

__all__ = [
    "SIGNATURE_TYPE_EDDSA_SHA512_ED25519",
    "AlreadyAccepting",
    "CantReachPeer",
    "ConnectTimeout",
    "DatagramReceived",
    "Destination",
    "DestinationError",
    "DuplicatedDest",
    "DuplicatedId",
    "I2PAddress",
    "I2PError",
    "I2PKeyFileError",
    "I2PProvider",
    "I2pdLaunchError",
    "I2pdProcess",
    "InvalidId",
    "InvalidKey",
    "KeyNotFound",
    "NoVersion",
    "PeerNotFound",
    "PrivateKey",
    "RawReceived",
    "SAMConnectionLost",
    "SAMError",
    "SAMListeningPort",
    "SAMProbeError",
    "SAMProtocolError",
    "SAMResultError",
    "SAMSession",
    "SAMSocketProtocol",
    "SAMStreamClientEndpoint",
    "SAMStreamServerEndpoint",
    "SAMTimeout",
    "UnknownResult",
    "b32_address",
    "b64decode",
    "b64encode",
    "check_i2p_target",
    "create_session",
    "generate_destination",
    "is_b32_address",
    "is_i2p_name",
    "open_sam_socket",
    "sam_hello",
]
