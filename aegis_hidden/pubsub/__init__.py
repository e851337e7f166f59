"""Topic pub/sub over anonymous sessions: the sans-I/O core (no reactor, no sockets).

- :class:`PubSubCore`: one node's topic meshes (gossipsub v1.1 semantics: mesh
  degree D within D_lo..D_hi kept at every heartbeat, IHAVE/IWANT gossip,
  IDONTWANT, seen and message caches, PRUNE with backoff and peer exchange,
  flood publishing), anonymous topics (ephemeral keys, stem then fluff, mixing
  delays), delivery acknowledgements and catch-up; :class:`GossipParams`;
  the events it emits (:class:`Received`, :class:`DeliveryState`,
  :class:`PeersOffered`).
- scores without IP addresses (:class:`PeerScore`, :class:`ScoreParams`,
  :class:`TopicScoreParams`, :class:`Thresholds`, :class:`IdentityCost`),
- who signs (:class:`Signer`, :class:`Verifier`, the Ed25519 ones used by tests
  and the simulation, :class:`EphemeralKeys`),
- the RPCs and their codec (``wire/pubsub.proto``: :func:`encode`,
  :func:`decode`, :class:`PubSubMessageError`, :func:`message_id`).

docs/pubsub.md describes the protocol, its parameters, and how the node runs
this core (``node/_pubsub.py``).
"""

from ._cache import Cached, MessageCache, SeenCache, TimedMap
from ._core import (
    DeliveryState,
    Event,
    GossipParams,
    PeersOffered,
    PubSubCore,
    PubSubError,
    Received,
    Send,
)
from ._messages import (
    ID_BYTES,
    MAX_DATA,
    MAX_RPC,
    MAX_TOPIC,
    NONCE_BYTES,
    Ack,
    CatchUp,
    CatchUpAnswer,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerInfo,
    Prune,
    PubSubMessageError,
    Rpc,
    Subscription,
    decode,
    encode,
    encode_message,
    message_id,
)
from ._score import IdentityCost, PeerScore, ScoreParams, Thresholds, TopicScoreParams
from ._signing import (
    Ed25519Signer,
    Ed25519Verifier,
    EphemeralKeys,
    Signer,
    Verifier,
    ack_body,
    signed_body,
    verify_ed25519,
    weak_ed25519_key,
)

__all__ = [
    "ID_BYTES",
    "MAX_DATA",
    "MAX_RPC",
    "MAX_TOPIC",
    "NONCE_BYTES",
    "Ack",
    "Cached",
    "CatchUp",
    "CatchUpAnswer",
    "DeliveryState",
    "Ed25519Signer",
    "Ed25519Verifier",
    "EphemeralKeys",
    "Event",
    "GossipParams",
    "Graft",
    "IDontWant",
    "IHave",
    "IWant",
    "IdentityCost",
    "Message",
    "MessageCache",
    "PeerInfo",
    "PeerScore",
    "PeersOffered",
    "Prune",
    "PubSubCore",
    "PubSubError",
    "PubSubMessageError",
    "Received",
    "Rpc",
    "ScoreParams",
    "SeenCache",
    "Send",
    "Signer",
    "Subscription",
    "Thresholds",
    "TimedMap",
    "TopicScoreParams",
    "Verifier",
    "ack_body",
    "decode",
    "encode",
    "encode_message",
    "message_id",
    "signed_body",
    "verify_ed25519",
    "weak_ed25519_key",
]
