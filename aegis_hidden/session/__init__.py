"""Hybrid post-quantum sessions between nodes (X-Wing handshake, AEAD cells).

Pure code: no Twisted reactor here (X-Wing, the AEADs and HKDF are in
:mod:`aegis_hidden.crypto`). The Twisted protocol, the
:class:`~aegis_hidden.interfaces.IPeerLink` and the
:class:`~aegis_hidden.interfaces.ISessionFactory` live in
:mod:`aegis_hidden.session.twisted`. docs/protocol.md is the specification.
"""

from ._errors import CloseReason, HandshakeError, PinRefused, SessionError
from ._session import (
    PROTOCOL_VERSIONS,
    Closed,
    Established,
    IdentityKeys,
    MessageReceived,
    ReplayCache,
    Session,
    SessionEvent,
    SessionParams,
    State,
    b32_address_of_destination,
    dialed_hint,
    is_canonical_address,
)

__all__ = [
    "PROTOCOL_VERSIONS",
    "CloseReason",
    "Closed",
    "Established",
    "HandshakeError",
    "IdentityKeys",
    "MessageReceived",
    "PinRefused",
    "ReplayCache",
    "Session",
    "SessionError",
    "SessionEvent",
    "SessionParams",
    "State",
    "b32_address_of_destination",
    "dialed_hint",
    "is_canonical_address",
]
