"""The node core: the service that owns the identity and wires the layers together."""

from ._core import NodeCore
from ._envelope import EnvelopeError
from ._identity_service import IdentityService
from ._messaging import DeliveryState, MessageTooLarge, Messenger, RequestTimeout
from ._metrics import Metrics
from ._pool import (
    ConnectionPool,
    DialFailed,
    NoSessionFactory,
    PeerBlocked,
    PeerRevoked,
    classify_failure,
)
from ._service import NodeService

__all__ = [
    "ConnectionPool",
    "DeliveryState",
    "DialFailed",
    "EnvelopeError",
    "IdentityService",
    "MessageTooLarge",
    "Messenger",
    "Metrics",
    "NoSessionFactory",
    "NodeCore",
    "NodeService",
    "PeerBlocked",
    "PeerRevoked",
    "RequestTimeout",
    "classify_failure",
]
