"""Topic pub/sub as the running node uses it: one :class:`PubSubService` per node.

It runs :class:`aegis_hidden.pubsub.PubSubCore` on the core's ``pubsub``
channel:

* every live session is a pub/sub peer (named as the pool names it: the
  onion, or the ``.b32.i2p`` name a session came over), added when the pool
  reports it connected (as outbound when this node dialed it) and removed
  when it closes; frames that arrive before the pool reported their session
  (the first is the peer's SUBSCRIBE announcement, sent once) are held and
  handed to the core right after the peer is added (at most ``EARLY_FRAMES``
  per peer, for ``EARLY_GRACE`` seconds);
* the core's heartbeat runs from one ``LoopingCall`` on the reactor clock
  (``pubsub.heartbeat``); it also marks the sessions of mesh peers used, so
  the pool's idle timeout does not close them under a quiet topic;
* messages of normal topics are signed by this node's identity, Ed25519 and
  ML-DSA-65 both (:class:`NodeSigner`; the identity blob is the two public
  keys), and checked by :class:`NodeVerifier`, which also refuses an ML-DSA
  key other than the one pinned for that onion;
* an RPC that carries an anonymous message (published, fluffed or stemmed)
  leaves through :meth:`PubSubChannel.forward`, so it waits the mixing
  layer's Exp(μ) delay; everything else through :meth:`PubSubChannel.send`.
  The core's own ``forward_delay`` is not set, so nothing waits twice;
* a delivered message becomes a ``message_received`` event with its
  ``topic`` (and no ``peer``: the core does not say who relayed it; on a
  normal topic ``author`` is the publisher's onion), a delivery confirmation
  a ``delivery_state`` event;
* **rendezvous through the DHT**: a node that subscribes to a normal topic
  looks up the DHT id :func:`rendezvous_id` of the topic's name and dials the
  ``pubsub.rendezvous`` contacts closest to it (again every
  ``RENDEZVOUS_RETRY`` seconds while its mesh is below ``d_lo``). A node that
  a peer tells of its subscription to a topic, and that is itself among the
  ``pubsub.rendezvous`` nodes closest to that topic's id in its routing
  table, *hosts* the topic: it joins the mesh as a relay (at most
  ``pubsub.max_topics`` hosted topics, apart from its own; nothing delivered
  to its application) while some peer still subscribes. Subscribers that know no one meet there. The DHT
  holds no record for it: its records are keyed by their publisher, so a
  topic's subscribers could not share one key;
* the score's identity term (in place of gossipsub's IP colocation) reads how
  long the peer store has known a peer and the difficulty of its DHT puzzle;
  peers offered on PRUNE (peer exchange, with their signed records) are
  dialled when their record checks out, as many as the mesh lacks to reach D;
* a peer whose score falls below the graylist threshold is reported to the
  peer store's reputation once (``protocol_violation``), and again only
  after it climbed back above it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
import random
import secrets
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from .. import _json as strict_json
from ..addresses import onion_address_from_public_key
from ..config import PubSubConfig
from ..dht import check_puzzle, node_id_of_onion
from ..identity import NodeIdentity, RecordError, verify_record
from ..peers import ORIGIN_PEER, Behaviour
from ..pubsub import (
    INVITE_TYPE,
    MAX_DATA,
    MAX_PLAINTEXT,
    MAX_TOPIC,
    DeliveryState,
    Event,
    GossipParams,
    GroupKeyError,
    IdentityCost,
    Invitation,
    InvitationError,
    Message,
    PeersOffered,
    PrivateMessageError,
    PubSubCore,
    PubSubError,
    PubSubMessageError,
    Received,
    Rpc,
    UnknownKey,
    check_key,
    decode,
    encode,
    is_envelope,
    key_id,
    make_invitation,
    new_key,
    open_message,
    read_invitation,
    seal_message,
    signed_body,
)
from ._identity_service import IdentityService

if TYPE_CHECKING:
    from ._core import NodeCore

#: seconds between rendezvous lookups while a topic's mesh is below d_lo
RENDEZVOUS_RETRY = 60.0
_RENDEZVOUS_DOMAIN = b"aegis-hidden pubsub rendezvous\x00"
_ED25519_SIZE = 32
_ED25519_SIGNATURE = 64


class TopicError(ValueError):
    """A topic name or a call the pub/sub layer refuses (what was wrong, in words)."""


class TopicMessageTooLarge(TopicError):
    """A message larger than a pub/sub message may be."""


class TopicKeyError(TopicError):
    """A group key refused (not 32 bytes of base64)."""


class TopicRateLimited(TopicError):
    """A broadcast over this node's own rate limit; ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: the node_secrets row (encrypted database) that holds subscriptions, group keys,
#: pending invitations and the ids delivered lately
STATE_ROW = "pubsub_state"
STATE_VERSION = 1
#: group keys kept per private topic: the current one and older ones (to read messages
#: sealed before a rotation)
KEPT_KEYS = 4
#: invitations held while not accepted (the oldest goes first)
MAX_INVITATIONS = 32
#: published messages whose delivery confirmations GET /api/network/topics shows, per topic
KEPT_CONFIRMATIONS = 20
#: catch-up rounds after a subscription (or a start), and the seconds between them
CATCH_UP_ROUNDS = 2
CATCH_UP_SPACING = 35.0
#: frames from a session the pool has not reported yet: held at most EARLY_GRACE seconds,
#: at most EARLY_FRAMES per peer and for at most EARLY_PEERS peers
EARLY_GRACE = 30.0
EARLY_FRAMES = 16
EARLY_PEERS = 64


@dataclass
class Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst``."""

    rate: float
    burst: float
    tokens: float
    at: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds until one token is there."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


@dataclass
class Group:
    """A private topic's keys here: the current one first, older ones after it."""

    keys: list[bytes]

    @property
    def current(self) -> bytes:
        return self.keys[0]

    def by_id(self) -> dict[bytes, bytes]:
        return {key_id(k): k for k in self.keys}

    def adopt(self, key: bytes) -> bool:
        """Make ``key`` the current key (older ones kept to read); whether it changed."""
        if self.keys and self.keys[0] == key:
            return False
        self.keys = [key, *[k for k in self.keys if k != key][:KEPT_KEYS - 1]]
        return True


def check_topic(topic: object) -> str:
    """``topic`` if it is a usable topic name, else :class:`TopicError`."""
    if not isinstance(topic, str) or not topic:
        raise TopicError("a topic is a non-empty string")
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC:
        raise TopicError(f"a topic is at most {MAX_TOPIC} bytes of UTF-8")
    if any(ord(ch) < 0x20 or 0xD800 <= ord(ch) <= 0xDFFF for ch in topic):
        raise TopicError("a topic holds no control characters")
    return topic


def rendezvous_id(topic: str) -> bytes:
    """The DHT id a topic's subscribers meet at (anyone computes it from the name)."""
    return hashlib.sha256(_RENDEZVOUS_DOMAIN + topic.encode("utf-8")).digest()


class NodeSigner:
    """Signs pub/sub messages with the node's current identity (both keys)."""

    def __init__(self, identity: IdentityService | NodeIdentity) -> None:
        self._identity = identity

    def current(self) -> NodeIdentity:
        ident = self._identity
        return ident.identity if isinstance(ident, IdentityService) else ident

    @property
    def identity(self) -> bytes:
        ident = self.current()
        return ident.ed25519_public + ident.mldsa_public

    def sign(self, data: bytes) -> bytes:
        ident = self.current()
        return ident.master.sign(data) + ident.mldsa.sign(data)


class NodeVerifier:
    """Checks both signatures; ``pin(onion)`` is the ML-DSA key pinned for a peer, if any."""

    def __init__(self, pin: Any = None) -> None:
        self._pin = pin

    def verify(self, identity: bytes, data: bytes, signature: bytes) -> bool:
        ed, ml = identity[:_ED25519_SIZE], identity[_ED25519_SIZE:]
        if len(ed) != _ED25519_SIZE or not ml or len(signature) <= _ED25519_SIGNATURE:
            return False
        if self._pin is not None:
            pinned = self._pin(onion_address_from_public_key(ed))
            if pinned is not None and pinned != ml:
                return False
        try:
            Ed25519PublicKey.from_public_bytes(ed).verify(signature[:_ED25519_SIGNATURE], data)
            MLDSA65PublicKey.from_public_bytes(ml).verify(signature[_ED25519_SIGNATURE:], data)
        except (InvalidSignature, ValueError):
            return False
        return True


def author_onion(identity: bytes | None) -> str | None:
    """The onion address of a normal topic's publisher (None: anonymous)."""
    if identity is None or len(identity) < _ED25519_SIZE:
        return None
    return onion_address_from_public_key(identity[:_ED25519_SIZE])


def _body(data: bytes) -> Any:
    """A message as the application sees it: the JSON object published, else (sent by
    something else than a node) ``{"type": "binary", "data": base64}``."""
    try:
        value = strict_json.loads(data)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"type": "binary", "data": base64.b64encode(data).decode("ascii")}


def _anonymous(rpc: Rpc) -> bool:
    return bool(rpc.stem) or any(m.anonymous for m in rpc.publish)


class PubSubService(Service):
    """The node's topic pub/sub (its ``name`` is ``"pubsub"``); start it after the core."""

    log = Logger()
    name = "pubsub"

    def __init__(self, core: NodeCore, config: PubSubConfig,
                 identity: IdentityService | NodeIdentity, clock: IReactorTime, *,
                 rng: random.Random | None = None) -> None:
        self._core = core
        self.config = config
        self._clock = clock
        self._identity = identity
        self._rng = rng if rng is not None else secrets.SystemRandom()
        pins = getattr(core.records, "mldsa_pin", None)
        params = GossipParams(d=config.d, d_lo=config.d_lo, d_hi=config.d_hi,
                              heartbeat=config.heartbeat, retain=config.history,
                              seen_ttl=config.history * 1.5)
        self._verifier = NodeVerifier(pins)
        self.pubsub = PubSubCore(
            clock=clock.seconds, rng=self._rng,
            send=self._send, on_event=self._event, signer=NodeSigner(identity),
            verifier=self._verifier, params=params, identity=self.identity_cost,
            peer_record=self._record_of)
        #: per topic: messages delivered here ("in"), published here ("out"), delivered by
        #: catch-up ("caught_up"), sealed to a key not held here ("unreadable"), refused on a
        #: private topic ("refused": plaintext, or an envelope that does not open)
        self.counts: dict[str, Counter[str]] = {}
        self._graylisted: set[str] = set()
        #: topics hosted as a rendezvous point (relayed, not delivered here)
        self.hosted: set[str] = set()
        self._rendezvous_at: dict[str, float] = {}  # topic -> time of the last lookup
        self._loop: LoopingCall | None = None
        #: private topics: their group keys (never logged; at rest in the encrypted database)
        self.groups: dict[str, Group] = {}
        #: invitations received and not accepted yet: topic -> (inviter, invitation, time)
        self.invitations: OrderedDict[str, tuple[str, Invitation, float]] = OrderedDict()
        #: ids delivered here lately, per topic (kept across restarts: catch-up delivers once)
        self._delivered: dict[str, dict[bytes, float]] = {}
        self._catch_up_due: dict[str, tuple[int, float]] = {}  # topic -> (rounds left, at)
        #: per topic, messages published here with confirm_from: id -> {subscriber: state}
        self.confirmations: dict[str, OrderedDict[str, dict[str, str]]] = {}
        self._confirm_topic: dict[bytes, str] = {}
        self._publishing: tuple[str, dict[str, str]] | None = None
        self._loaded = False
        self._dirty = False
        self._unsubscribe_events: Any = None
        self.broadcast = check_topic(config.broadcast_topic) if config.broadcast else None
        self._publishers: dict[bytes, Bucket] = {}
        self._forwarders: dict[str, Bucket] = {}
        #: frames that came before the pool reported their session connected: peer ->
        #: (time of the first, frames); handed in when it does, dropped after EARLY_GRACE
        self._early: dict[str, tuple[float, list[bytes]]] = {}
        core.pubsub.on_message(self._receive)
        core.pool.on_connected(self._connected)
        core.pool.on_disconnected(self._disconnected)
        metrics = core.metrics
        metrics.gauge("pubsub_topics", "Pub/sub topics this node subscribes to.",
                      lambda: len(set(self.pubsub.topics) - self.hosted))
        metrics.gauge("pubsub_topics_hosted", "Pub/sub topics this node relays as a "
                      "rendezvous point for others.", lambda: len(self.hosted))
        metrics.gauge("pubsub_mesh_peers", "Mesh peers summed over all topics (hosted too).",
                      lambda: sum(len(m) for m in self.pubsub.mesh.values()))

    # -- lifecycle ------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._core.topics = self
        self._unsubscribe_events = self._core.events.subscribe(self._on_node_event)
        for peer in self._core.pool.peers():
            self.pubsub.add_peer(peer, outbound=self._core.pool.dialed(peer))
        if self.broadcast is not None:
            self.pubsub.subscribe(self.broadcast)
            self.counts.setdefault(self.broadcast, Counter())
        loop = self._loop = LoopingCall(self.heartbeat)
        loop.clock = self._clock
        loop.start(self.config.heartbeat, now=False)
        Deferred.fromCoroutine(self._load()).addErrback(self._load_failed)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._unsubscribe_events is not None:
            self._unsubscribe_events()
            self._unsubscribe_events = None
        if self._core.topics is self:
            self._core.topics = None
        if self._loaded and self._dirty:
            return self._save().addErrback(self._save_failed)
        return None

    def heartbeat(self) -> None:
        """One heartbeat of the core, then scores into the reputation. Never raises."""
        try:
            self._forget_early()
            self.pubsub.heartbeat()
            for mesh in self.pubsub.mesh.values():  # the pool keeps mesh sessions open
                for peer in mesh:
                    self._core.pool.touch(peer)
            self._report_scores()
            self._host()
            self._meet()
            self._catch_up()
            self._forget_buckets()
            if self._dirty and self._loaded:
                self._save().addErrback(self._save_failed)
        except Exception:  # noqa: BLE001 - logged; the loop must keep running
            self.log.failure("pub/sub heartbeat failed")

    def _forget_early(self) -> None:
        """Drop frames held for a session the pool never reported connected (one closed
        before it was adopted reports no disconnection either)."""
        now = self._clock.seconds()
        for peer, (at, frames) in list(self._early.items()):
            if now - at >= EARLY_GRACE:
                del self._early[peer]
                self.pubsub.stats["from unknown peer"] += len(frames)

    # -- state at rest (the node's encrypted database) ----------------------------
    async def _load(self) -> None:
        await self._core.when_ready()

        def read(conn: Any) -> Any:
            return conn.execute("SELECT value FROM node_secrets WHERE name = ?",
                                (STATE_ROW,)).fetchone()

        row = await self._core.db.run(read)
        if row is not None and self.running:
            self._restore(strict_json.loads(bytes(row[0])))
        self._loaded = True

    def _load_failed(self, failure: Failure) -> None:
        # the message only: the state holds keys, a traceback's locals must not be logged
        self.log.error("pub/sub state not read ({error}); starting without it",
                       error=failure.getErrorMessage())
        self._loaded = True

    def _restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("v") != STATE_VERSION:
            raise ValueError("pub/sub state of an unknown version")
        now = self._clock.seconds()
        horizon = now - self.pubsub.params.seen_ttl
        for topic, ids in sorted(state.get("delivered", {}).items()):
            kept = {bytes.fromhex(h): float(t) for h, t in ids if float(t) > horizon}
            for mid, t in sorted(kept.items(), key=lambda x: x[1]):
                self.pubsub.seen.add(mid, t)
            self._delivered.setdefault(topic, {}).update(kept)
        for topic, entry in sorted(state.get("topics", {}).items()):
            keys = [check_key(k) for k in entry.get("keys", [])][:KEPT_KEYS]
            if keys:
                self.groups.setdefault(topic, Group(keys))
            try:
                self._subscribe_core(check_topic(topic), bool(entry.get("anonymous")))
            except TopicError as e:
                self.log.warn("a saved topic was not subscribed again: {error}", error=str(e))
        for topic, (inviter, anonymous, key, at) in state.get("invitations", {}).items():
            self.invitations[topic] = (inviter, Invitation(topic, bool(anonymous),
                                                           check_key(key)), float(at))

    def _state(self) -> dict[str, Any]:
        def b64(key: bytes) -> str:
            return base64.b64encode(key).decode("ascii")

        own = set(self.pubsub.topics) - self.hosted - {self.broadcast}
        horizon = self._clock.seconds() - self.pubsub.params.seen_ttl
        most = self.pubsub.params.max_per_topic
        for topic, ids in list(self._delivered.items()):  # bounded: by time, then by count
            kept = sorted(((at, mid) for mid, at in ids.items() if at > horizon), reverse=True)
            if kept:
                self._delivered[topic] = {mid: at for at, mid in reversed(kept[:most])}
            else:
                del self._delivered[topic]
        return {
            "v": STATE_VERSION,
            "topics": {t: {"anonymous": self.pubsub.topics[t],
                           "keys": [b64(k) for k in self.groups[t].keys]
                           if t in self.groups else []} for t in sorted(own)},
            "invitations": {t: [inviter, inv.anonymous, b64(inv.key), at]
                            for t, (inviter, inv, at) in self.invitations.items()},
            "delivered": {t: [[mid.hex(), at] for mid, at in ids.items()]
                          for t, ids in self._delivered.items()},
        }

    def _save(self) -> Deferred[None]:
        self._dirty = False
        data = strict_json.dumps(self._state(), separators=(",", ":")).encode()

        def write(conn: Any) -> None:
            conn.execute("INSERT OR REPLACE INTO node_secrets (name, value) VALUES (?, ?)",
                         (STATE_ROW, data))

        d: Deferred[None] = self._core.db.run(write)
        return d

    def _save_failed(self, failure: Failure) -> None:
        self._dirty = True
        self.log.error("pub/sub state not saved: {error}", error=failure.getErrorMessage())

    # -- owner calls ------------------------------------------------------------
    def _own_topics(self) -> set[str]:
        return set(self.pubsub.topics) - self.hosted - {self.broadcast}

    def _subscribe_core(self, topic: str, anonymous: bool) -> None:
        own = self._own_topics()
        if (topic not in own and topic != self.broadcast
                and len(own) >= self.config.max_topics):
            raise TopicError(f"already subscribed to pubsub.max_topics "
                             f"({self.config.max_topics}) topics")
        if topic in self.hosted and anonymous:
            raise TopicError(f"topic {topic!r} is relayed here as a normal topic")
        try:
            self.pubsub.subscribe(topic, anonymous=bool(anonymous))
        except PubSubError as e:
            raise TopicError(str(e)) from None
        if topic in self.hosted:  # hosted as a relay (normal): now ours as well
            self.hosted.discard(topic)
        elif topic not in own:
            self._catch_up_due[topic] = (CATCH_UP_ROUNDS, 0.0)
        self.counts.setdefault(topic, Counter())
        if not anonymous and topic != self.broadcast:
            self._rendezvous(topic)

    def subscribe(self, topic: str, *, anonymous: bool | None = None, private: bool = False,
                  key: str | bytes | None = None) -> dict[str, Any]:
        """Subscribe to ``topic``. ``private`` (or a ``key``): a private topic, with ``key``
        if given, else the key of an invitation received for it, else the key held
        already, else a new key. ``anonymous`` None: the invitation's kind, or normal.
        What it did: ``anonymous``, ``private``, ``key_id`` (hex), ``accepted`` (an
        invitation), ``created`` (a new key)."""
        topic = check_topic(topic)
        chosen: bytes | None = None
        if key is not None:
            try:
                chosen = check_key(key)
            except GroupKeyError as e:
                raise TopicKeyError(str(e)) from None
            private = True
        invitation = self.invitations.get(topic) if private and chosen is None else None
        if invitation is not None:
            if anonymous is not None and anonymous != invitation[1].anonymous:
                raise TopicError(f"the invitation to {topic!r} is for "
                                 f"{'an anonymous' if invitation[1].anonymous else 'a normal'} "
                                 "topic")
            anonymous = invitation[1].anonymous
            chosen = invitation[1].key
        if anonymous is None:
            anonymous = False
        if private and topic == self.broadcast:
            raise TopicError("the broadcast topic cannot be private")
        if anonymous and topic == self.broadcast:
            raise TopicError("the broadcast topic is a normal topic (its publishers are "
                             "rate-limited by their identity)")
        self._subscribe_core(topic, anonymous)
        created = False
        if private:
            group = self.groups.get(topic)
            if chosen is None and group is None:
                chosen = new_key(self._random_bytes)
                created = True
            if chosen is not None:
                if group is None:
                    self.groups[topic] = Group([chosen])
                else:
                    group.adopt(chosen)
            if invitation is not None:
                del self.invitations[topic]
        self._dirty = True
        group = self.groups.get(topic)
        return {"anonymous": anonymous, "private": group is not None,
                "key_id": key_id(group.current).hex() if group is not None else None,
                "accepted": invitation is not None, "created": created}

    def _random_bytes(self, n: int) -> bytes:
        return self._rng.randbytes(n)

    def rotate(self, topic: str) -> str:
        """A new group key for a private topic (older ones kept to read); its id in hex.
        Members get it only when invited again (:meth:`invite`)."""
        group = self.groups.get(check_topic(topic))
        if group is None or topic not in self.pubsub.topics:
            raise TopicError(f"{topic!r} is not a private topic subscribed here")
        group.adopt(new_key(self._random_bytes))
        self._dirty = True
        return key_id(group.current).hex()

    async def invite(self, topic: str, peer: str) -> tuple[str, Any]:
        """Send ``peer`` the topic's current group key, sealed to its X-Wing key, over the
        reliable messaging path; the message's id and delivery state."""
        topic = check_topic(topic)
        group = self.groups.get(topic)
        if group is None or topic not in self.pubsub.topics:
            raise TopicError(f"{topic!r} is not a private topic subscribed here")
        record = self._core.records.cache.get(peer)
        if record is None or not record.xwing_public:
            raise TopicError(f"no identity record of {peer} known yet (connect to it first)")
        body = make_invitation(group.current, topic, self.pubsub.topics[topic],
                               inviter=self._core.local_address, invitee=peer,
                               invitee_xwing=record.xwing_public)
        result: tuple[str, Any] = await self._core.send(peer, body)
        self._core.metrics.inc("pubsub_invitations_sent")
        return result

    def unsubscribe(self, topic: str) -> bool:
        """Whether this node was subscribed to ``topic`` (a private topic's keys go too)."""
        topic = check_topic(topic)
        was = topic in self.pubsub.topics and topic not in self.hosted
        if was:
            self.pubsub.unsubscribe(topic)
            self._rendezvous_at.pop(topic, None)
            self._catch_up_due.pop(topic, None)
            self.groups.pop(topic, None)
            self._delivered.pop(topic, None)
            self.confirmations.pop(topic, None)
            self._dirty = True
        return was

    def identity_of(self, onion: str) -> bytes:
        """The identity blob (Ed25519 + ML-DSA-65 public keys) a subscriber acknowledges
        with, from its record (the pinned ML-DSA key if there is one)."""
        record = self._core.records.cache.get(onion)
        if record is None or not record.mldsa_public:
            raise TopicError(f"no identity record of {onion} known yet (connect to it first)")
        pinned = self._core.records.mldsa_pin(onion)
        return bytes(record.ed25519_public) + (pinned or record.mldsa_public)

    def publish(self, topic: str, message: dict[str, Any],
                confirm_from: Iterable[str] = ()) -> str:
        """Publish ``message`` (a JSON object, as a direct message's body) on ``topic``,
        of the subscription's kind (normal when not subscribed), sealed to the group key
        on a private topic; the id, in hex. ``confirm_from``: onions of subscribers asked
        to confirm delivery (``delivery_state`` events)."""
        topic = check_topic(topic)
        data = strict_json.dumps(message, separators=(",", ":")).encode()
        group = self.groups.get(topic) if topic in self.pubsub.topics else None
        limit = MAX_PLAINTEXT if group is not None else MAX_DATA
        if topic == self.broadcast:
            limit = self.config.broadcast_max_bytes
        if len(data) > limit:
            raise TopicMessageTooLarge(f"the message is {len(data)} bytes as JSON, at most "
                                       f"{limit}" + (" on a private topic" if group else ""))
        subscribers = list(dict.fromkeys(confirm_from))
        ack_from = [self.identity_of(onion) for onion in subscribers]
        if topic == self.broadcast:
            own = NodeSigner(self._identity).identity
            bucket = self._bucket_of(own)
            now = self._clock.seconds()
            if not bucket.take(now):
                raise TopicRateLimited(
                    f"over pubsub.broadcast_rate ({self.config.broadcast_rate:g} a minute, "
                    f"burst {self.config.broadcast_burst})", max(1, math.ceil(bucket.wait(now))))
        if group is not None:
            data = seal_message(group.current, topic, data, random_bytes=self._random_bytes)
        # an acknowledgement may come back before publish() returns (a session that
        # delivers at once): its state is noted where the message is expected
        self._publishing = (topic, dict.fromkeys(subscribers, "pending"))
        try:
            mid = self.pubsub.publish(topic, data, ack_from=ack_from)
        except PubSubError as e:
            raise TopicError(str(e)) from None
        finally:
            publishing, self._publishing = self._publishing, None
        self.counts.setdefault(topic, Counter())["out"] += 1
        self._core.metrics.inc("pubsub_published")
        if subscribers:
            kept = self.confirmations.setdefault(topic, OrderedDict())
            kept[mid.hex()] = publishing[1]
            self._confirm_topic[mid] = topic
            while len(kept) > KEPT_CONFIRMATIONS:
                old, _ = kept.popitem(last=False)
                self._confirm_topic.pop(bytes.fromhex(old), None)
        return mid.hex()

    def topics(self) -> list[dict[str, Any]]:
        """Subscribed topics: kind, mesh peers with their scores, messages in and out,
        caught up, unreadable, and the confirmations of recent messages published here."""
        out = []
        for topic in sorted(set(self.pubsub.topics) - self.hosted):
            counts = self.counts.get(topic, Counter())
            group = self.groups.get(topic)
            out.append({
                "topic": topic,
                "anonymous": self.pubsub.topics[topic],
                "private": group is not None,
                "key_id": key_id(group.current).hex() if group is not None else None,
                "broadcast": topic == self.broadcast,
                "mesh": [{"peer": p, "score": round(self.pubsub.score(p), 3)}
                         for p in self.pubsub.mesh_peers(topic)],
                "peers": len(self.pubsub.topic_peers(topic)),
                "messages_in": counts["in"],
                "messages_out": counts["out"],
                "caught_up": counts["caught_up"],
                "unreadable": counts["unreadable"],
                "refused": counts["refused"],
                "confirmations": [{"id": mid, "subscribers": dict(states)}
                                  for mid, states in self.confirmations.get(topic, {}).items()],
            })
        return out

    def pending_invitations(self) -> list[dict[str, Any]]:
        """Invitations received and not accepted yet (no key: its id only)."""
        return [{"topic": t, "peer": inviter, "anonymous": inv.anonymous,
                 "key_id": inv.key_id.hex(), "received": int(at)}
                for t, (inviter, inv, at) in self.invitations.items()]

    # -- invitations (messages of the messaging path) ------------------------------
    def _on_node_event(self, event: dict[str, Any]) -> None:
        if event.get("type") != "message_received" or "topic" in event:
            return
        body = event.get("message")
        if not isinstance(body, dict) or body.get("type") != INVITE_TYPE:
            return
        inviter = str(event.get("peer", ""))
        ident = NodeSigner(self._identity).current()
        try:
            invitation = read_invitation(body, inviter=inviter, invitee=ident.onion,
                                         xwing_secret=ident.xwing_secret)
        except InvitationError as e:
            self._core.metrics.inc("pubsub_invitations_refused")
            self._core.events.emit("network_error", peer=inviter,
                                   error=f"topic invitation refused: {e}")
            return
        topic = invitation.topic
        group = self.groups.get(topic)
        if group is not None and invitation.key in group.keys:
            return  # a key held already (an invitation sent again)
        self.invitations.pop(topic, None)
        self.invitations[topic] = (inviter, invitation, self._clock.seconds())
        while len(self.invitations) > MAX_INVITATIONS:
            self.invitations.popitem(last=False)
        self._dirty = True
        self._core.metrics.inc("pubsub_invitations_received")
        self._core.events.emit("topic_invitation", peer=inviter, topic=topic,
                               anonymous=invitation.anonymous, key_id=invitation.key_id.hex())

    # -- catch-up -------------------------------------------------------------------
    def _catch_up(self) -> None:
        """Ask topic peers for the history of topics subscribed lately (or at the start):
        each gets CATCH_UP_ROUNDS requests, CATCH_UP_SPACING seconds apart, as soon as it
        has peers."""
        now = self._clock.seconds()
        for topic, (rounds, at) in list(self._catch_up_due.items()):
            if topic not in self.pubsub.topics or rounds <= 0:
                self._catch_up_due.pop(topic, None)
                continue
            if at > now or not self.pubsub.topic_peers(topic):
                continue
            if self.pubsub.catch_up(topic, self.config.history):
                self._catch_up_due[topic] = (rounds - 1, now + CATCH_UP_SPACING)

    # -- broadcast: rate limits ----------------------------------------------------------
    def _bucket_of(self, publisher: bytes) -> Bucket:
        key = hashlib.sha256(publisher).digest()
        bucket = self._publishers.get(key)
        if bucket is None:
            cfg = self.config
            bucket = self._publishers[key] = Bucket(
                cfg.broadcast_rate / 60.0, float(cfg.broadcast_burst),
                float(cfg.broadcast_burst), self._clock.seconds())
        return bucket

    def _forwarder(self, peer: str) -> Bucket:
        bucket = self._forwarders.get(peer)
        if bucket is None:
            cfg = self.config
            bucket = self._forwarders[peer] = Bucket(
                cfg.broadcast_peer_rate / 60.0, float(cfg.broadcast_peer_burst),
                float(cfg.broadcast_peer_burst), self._clock.seconds())
        return bucket

    def _forget_buckets(self) -> None:
        now = self._clock.seconds()
        for table in (self._publishers, self._forwarders):
            for name in [n for n, b in table.items() if b.full(now)]:
                del table[name]  # type: ignore[arg-type]

    def _limit(self, peer: str, rpc: Rpc) -> Rpc:
        """The RPC without the broadcast messages over a rate or size limit; each one
        dropped is a behaviour penalty for ``peer``."""
        topic = self.broadcast
        now = self._clock.seconds()
        kept: list[Message] = []
        dropped = Counter[str]()
        for m in rpc.publish:
            if m.topic != topic:
                kept.append(m)
                continue
            if not self._forwarder(peer).take(now):
                dropped["peer rate"] += 1
                continue
            if len(m.data) > self.config.broadcast_max_bytes:
                dropped["size"] += 1
                continue
            if m.id not in self.pubsub.seen and not m.anonymous and self._verifier.verify(
                    m.key, signed_body(m.topic, m.nonce, m.data, False, m.key, m.ack_from),
                    m.signature) and not self._bucket_of(m.key).take(now):
                dropped["publisher rate"] += 1
                continue
            kept.append(m)  # a bad signature or kind: the core refuses it and scores it
        if not dropped:
            return rpc
        for why, n in dropped.items():
            self._core.metrics.inc("pubsub_broadcast_dropped", n)
            self.pubsub.stats[f"broadcast dropped: {why}"] += n
        self.pubsub.scores.penalty(peer, float(sum(dropped.values())))
        return dataclasses.replace(rpc, publish=tuple(kept))

    # -- the channel ------------------------------------------------------------
    def _connected(self, peer: str) -> None:
        held = self._early.pop(peer, None)
        if self.running:  # peers this node dialed fill the mesh's outbound quota (D_out)
            self.pubsub.add_peer(peer, outbound=self._core.pool.dialed(peer))
            for payload in held[1] if held is not None else ():
                if peer in self.pubsub.peers:  # not removed by what came before
                    self._handle(peer, payload)

    def _disconnected(self, peer: str) -> None:
        self._early.pop(peer, None)
        self.pubsub.remove_peer(peer)
        self._graylisted.discard(peer)
        self._forwarders.pop(peer, None)

    def _receive(self, peer: str, payload: bytes) -> None:
        if not self.running:
            return
        self._core.metrics.inc("pubsub_rpcs_in")
        if peer not in self.pubsub.peers:
            # A frame over a session the pool has not reported connected yet (it does so
            # after its peer store writes): the peer's first frame is its SUBSCRIBE
            # announcement, sent once, so it is held and handed in once the pool reports
            # the session (replies then go over a session the pool holds).
            held = self._early.get(peer)
            if held is None:
                if len(self._early) >= EARLY_PEERS:
                    self.pubsub.stats["from unknown peer"] += 1
                    return
                held = self._early[peer] = (self._clock.seconds(), [])
            if len(held[1]) >= EARLY_FRAMES:
                self.pubsub.stats["from unknown peer"] += 1
                return
            held[1].append(payload)
            return
        self._handle(peer, payload)

    def _handle(self, peer: str, payload: bytes) -> None:
        topic = self.broadcast
        if topic is None or topic.encode() not in payload:
            self.pubsub.receive(peer, payload)
            return
        try:
            rpc = decode(payload)
        except PubSubMessageError:
            self.pubsub.receive(peer, payload)  # counted and scored there
            return
        if peer in self.pubsub.peers:
            rpc = self._limit(peer, rpc)
        self.pubsub.handle(peer, rpc)

    def _send(self, peer: str, rpc: Rpc, delay: float) -> None:
        # ``delay`` is the core's forward_delay, not set here: the mix pool delays instead
        payload = encode(rpc)
        channel = self._core.pubsub
        d = channel.forward(peer, payload) if _anonymous(rpc) else channel.send(peer, payload)
        self._core.metrics.inc("pubsub_rpcs_out")
        d.addErrback(self._not_sent, peer)

    def _not_sent(self, failure: Failure, peer: str) -> None:
        self.log.debug("pub/sub frame to {peer} not sent: {error}", peer=peer,
                       error=failure.getErrorMessage())

    def _open(self, event: Received) -> bytes | None:
        """The payload as the application sees it: opened on a private topic; None when
        it cannot be read here (counted) or is refused (plaintext on a private topic)."""
        counts = self.counts.setdefault(event.topic, Counter())
        group = self.groups.get(event.topic)
        if is_envelope(event.data):
            if group is None:
                counts["unreadable"] += 1
                return None
            try:
                return open_message(group.by_id(), event.topic, event.data)
            except UnknownKey:
                counts["unreadable"] += 1
                return None
            except PrivateMessageError:
                counts["refused"] += 1
                return None
        if group is not None:  # not sealed: not from a member
            counts["refused"] += 1
            return None
        return event.data

    def _event(self, event: Event) -> None:
        events = self._core.events
        if isinstance(event, Received):
            if event.topic in self.hosted:
                return
            data = self._open(event)
            if data is None:
                self._core.metrics.inc("pubsub_unreadable")
                return
            counts = self.counts.setdefault(event.topic, Counter())
            counts["in"] += 1
            self._core.metrics.inc("pubsub_delivered")
            self._delivered.setdefault(event.topic, {})[event.id] = self._clock.seconds()
            self._dirty = True
            fields: dict[str, Any] = {"topic": event.topic, "id": event.id.hex(),
                                      "message": _body(data)}
            author = author_onion(event.author)
            if author is not None:
                fields["author"] = author
            if event.topic in self.groups:
                fields["private"] = True
            if event.topic == self.broadcast:
                fields["broadcast"] = True
            if event.caught_up:
                fields["caught_up"] = True
                counts["caught_up"] += 1
            events.emit("message_received", **fields)
        elif isinstance(event, DeliveryState):
            subscriber = author_onion(event.subscriber)
            topic = self._confirm_topic.get(event.id)
            kept = self.confirmations.get(topic) if topic is not None else None
            states = kept.get(event.id.hex()) if kept is not None else None
            if topic is None and self._publishing is not None:  # during publish()
                topic, states = self._publishing
            if states is not None and subscriber is not None and subscriber in states:
                states[subscriber] = event.state
            fields = {"id": event.id.hex(), "state": event.state, "subscriber": subscriber}
            if topic is not None:
                fields["topic"] = topic
            events.emit("delivery_state", **fields)
        elif isinstance(event, PeersOffered):
            self._peer_exchange(event)

    # -- the identity term and peer exchange --------------------------------------
    def identity_cost(self, peer: str) -> IdentityCost | None:
        """What the score's identity term reads (the core asks once a minute per peer): how
        long this node has known ``peer`` (its peer store entry) and the difficulty of its
        DHT puzzle (zero bits its routing-table contact's nonce gives; 0 when not there)."""
        info = self._core.store.get(peer)
        if info is None:
            return None
        return IdentityCost(max(0.0, self._clock.seconds() - info.added), self._puzzle_bits(peer))

    def _puzzle_bits(self, peer: str) -> int:
        table = getattr(getattr(self._core.dht, "dht", None), "table", None)
        if table is None or not peer.endswith(".onion"):
            return 0
        try:
            target = node_id_of_onion(peer)
        except ValueError:
            return 0
        found = table.closest(target, 1)
        if not found or found[0].id != target:
            return 0
        bits = 0
        while bits < 32 and check_puzzle(target, found[0].nonce, bits + 1):
            bits += 1
        return bits

    def _record_of(self, peer: str) -> bytes:
        """The signed record offered with ``peer`` on PRUNE (empty when not stored)."""
        info = self._core.store.get(peer)
        return info.record if info is not None and info.record else b""

    def _peer_exchange(self, offer: PeersOffered) -> None:
        """Dial peers offered on PRUNE whose signed record is their onion's, as many as the
        topic's mesh lacks to reach D; once connected they are ordinary peers."""
        want = self.pubsub.params.d - len(self.pubsub.mesh.get(offer.topic, ()))
        now = self._clock.seconds()
        for info in offer.peers:
            if want <= 0:
                break
            onion = info.peer
            if onion == self._core.local_address or self._core.pool.connected(onion):
                continue
            try:
                verify_record(info.record, onion, now)
            except (RecordError, ValueError):
                continue
            want -= 1
            Deferred.fromCoroutine(self._dial_offered(onion, info.record)).addErrback(
                lambda f: self.log.info("dialling a peer offered on PRUNE failed: {error}",
                                        error=f.getErrorMessage()))

    async def _dial_offered(self, onion: str, record: bytes) -> None:
        if self._core.store.get(onion) is None:
            await self._core.store.add(onion, record=record, origin=ORIGIN_PEER)
        await self._core.pool.get(onion)

    def _report_scores(self) -> None:
        graylist = self.pubsub.thresholds.graylist
        store = self._core.store
        for peer in list(self.pubsub.peers):
            low = self.pubsub.score(peer) < graylist
            if low and peer not in self._graylisted:
                self._graylisted.add(peer)
                if store.get(peer) is not None:
                    Deferred.fromCoroutine(store.observe(peer, Behaviour.PROTOCOL_VIOLATION)
                                           ).addErrback(self._reputation_failed)
            elif not low:
                self._graylisted.discard(peer)

    def _reputation_failed(self, failure: Failure) -> None:
        self.log.failure("reputation update failed", failure)

    # -- rendezvous -------------------------------------------------------------
    def _rendezvous(self, topic: str) -> None:
        """Look up the topic's rendezvous id and dial the closest nodes (DHT running)."""
        dht = self._core.dht
        if dht is None or not hasattr(dht, "node"):
            return
        self._rendezvous_at[topic] = self._clock.seconds()
        Deferred.fromCoroutine(self._dial_rendezvous(dht, topic)).addErrback(
            lambda f: self.log.info("rendezvous lookup for a topic failed: {error}",
                                    error=f.getErrorMessage()))

    async def _dial_rendezvous(self, dht: Any, topic: str) -> int:
        result = await dht.node.lookup(rendezvous_id(topic))
        own = self._core.local_address
        dialed = 0
        for contact in result.closest[:self.config.rendezvous]:
            onion = contact.onion
            if onion == own or self._core.pool.connected(onion):
                continue
            if self._core.store.get(onion) is None:
                await self._core.store.add(onion, origin=ORIGIN_PEER)
            self._core.pool.get(onion).addErrback(lambda f: None)  # dial failures: the pool's
            dialed += 1
        return dialed

    def _meet(self) -> None:
        """Look up the rendezvous again for subscribed normal topics whose mesh is thin."""
        now = self._clock.seconds()
        for topic, anonymous in list(self.pubsub.topics.items()):
            if anonymous or topic in self.hosted or topic == self.broadcast:
                continue
            if len(self.pubsub.mesh.get(topic, ())) >= self.pubsub.params.d_lo:
                continue
            if now - self._rendezvous_at.get(topic, 0.0) >= RENDEZVOUS_RETRY:
                self._rendezvous(topic)

    def _is_rendezvous(self, topic: str) -> bool:
        dht = self._core.dht
        table = getattr(getattr(dht, "dht", None), "table", None)
        if table is None:
            return False
        target = rendezvous_id(topic)
        n = self.config.rendezvous
        closer = table.closest(target, n)
        if len(closer) < n:
            return True
        t = int.from_bytes(target, "big")
        own = int.from_bytes(table.own.id, "big") ^ t
        return own < int.from_bytes(closer[-1].id, "big") ^ t

    def _host(self) -> None:
        """Host the topics peers announce if this node is one of their rendezvous points;
        stop once no peer subscribes any more."""
        announced: set[str] = set()
        for state in self.pubsub.peers.values():
            announced |= state.topics
        for topic in sorted(self.hosted - announced):
            self.hosted.discard(topic)
            self.pubsub.unsubscribe(topic)
        announced.discard(self.config.broadcast_topic)  # relayed only by its subscribers
        for topic in sorted(announced - set(self.pubsub.topics)):
            if len(self.hosted) >= self.config.max_topics:
                break
            if self._is_rendezvous(topic):
                self.hosted.add(topic)
                self.pubsub.subscribe(topic)
