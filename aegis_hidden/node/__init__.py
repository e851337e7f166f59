"""The node core: the service that owns the identity and wires the layers together."""

from ._at_rest import (
    WIPE_CONFIRMATION,
    PeerRedactingObserver,
    WipeReport,
    disable_core_dumps,
    is_duress_passphrase,
    set_duress_passphrase,
    wipe,
)
from ._core import NodeCore
from ._dht import DhtService, identity_key, record_json
from ._emergency import EmergencyControls, EmergencyError, NotSupported, UnknownTransport
from ._envelope import EnvelopeError
from ._identity_service import IdentityService
from ._loops import loop_trace_kind
from ._messaging import Backpressure, DeliveryState, MessageTooLarge, Messenger, RequestTimeout
from ._metrics import Metrics
from ._pool import (
    ConnectionPool,
    DialFailed,
    NoSessionFactory,
    PeerBlocked,
    PeerRevoked,
    classify_failure,
)
from ._pubsub import (
    PubSubService,
    TopicError,
    TopicKeyError,
    TopicMessageTooLarge,
    TopicRateLimited,
    check_topic,
)
from ._service import NodeService
from ._streams import StreamService, StreamWatcher, UnknownStream

__all__ = [
    "WIPE_CONFIRMATION",
    "Backpressure",
    "ConnectionPool",
    "DeliveryState",
    "DhtService",
    "DialFailed",
    "EmergencyControls",
    "EmergencyError",
    "EnvelopeError",
    "IdentityService",
    "MessageTooLarge",
    "Messenger",
    "Metrics",
    "NoSessionFactory",
    "NodeCore",
    "NodeService",
    "NotSupported",
    "PeerBlocked",
    "PeerRedactingObserver",
    "PeerRevoked",
    "PubSubService",
    "RequestTimeout",
    "StreamService",
    "StreamWatcher",
    "TopicError",
    "TopicKeyError",
    "TopicMessageTooLarge",
    "TopicRateLimited",
    "UnknownStream",
    "UnknownTransport",
    "WipeReport",
    "check_topic",
    "classify_failure",
    "disable_core_dumps",
    "identity_key",
    "is_duress_passphrase",
    "loop_trace_kind",
    "record_json",
    "set_duress_passphrase",
    "wipe",
]
