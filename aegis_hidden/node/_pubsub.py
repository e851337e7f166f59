"""Topic pub/sub as the running node uses it: one :class:`PubSubService` per node.

It runs :class:`aegis_hidden.pubsub.PubSubCore` on the core's ``pubsub``
channel:

* every live session is a pub/sub peer (named as the pool names it: the
  onion, or the ``.b32.i2p`` name a session came over), added when the pool
  reports it connected (as outbound when this node dialed it) and removed
  when it closes;
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
import hashlib
import random
import secrets
from collections import Counter
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
    MAX_DATA,
    MAX_TOPIC,
    DeliveryState,
    Event,
    GossipParams,
    IdentityCost,
    PeersOffered,
    PubSubCore,
    PubSubError,
    Received,
    Rpc,
    encode,
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

    def _current(self) -> NodeIdentity:
        ident = self._identity
        return ident.identity if isinstance(ident, IdentityService) else ident

    @property
    def identity(self) -> bytes:
        ident = self._current()
        return ident.ed25519_public + ident.mldsa_public

    def sign(self, data: bytes) -> bytes:
        ident = self._current()
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
        pins = getattr(core.records, "mldsa_pin", None)
        params = GossipParams(d=config.d, d_lo=config.d_lo, d_hi=config.d_hi,
                              heartbeat=config.heartbeat, retain=config.history,
                              seen_ttl=config.history * 1.5)
        self.pubsub = PubSubCore(
            clock=clock.seconds, rng=rng if rng is not None else secrets.SystemRandom(),
            send=self._send, on_event=self._event, signer=NodeSigner(identity),
            verifier=NodeVerifier(pins), params=params, identity=self.identity_cost,
            peer_record=self._record_of)
        #: per topic: messages delivered here ("in") and published here ("out")
        self.counts: dict[str, Counter[str]] = {}
        self._graylisted: set[str] = set()
        #: topics hosted as a rendezvous point (relayed, not delivered here)
        self.hosted: set[str] = set()
        self._rendezvous_at: dict[str, float] = {}  # topic -> time of the last lookup
        self._loop: LoopingCall | None = None
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
        for peer in self._core.pool.peers():
            self.pubsub.add_peer(peer, outbound=self._core.pool.dialed(peer))
        loop = self._loop = LoopingCall(self.heartbeat)
        loop.clock = self._clock
        loop.start(self.config.heartbeat, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._core.topics is self:
            self._core.topics = None

    def heartbeat(self) -> None:
        """One heartbeat of the core, then scores into the reputation. Never raises."""
        try:
            self.pubsub.heartbeat()
            for mesh in self.pubsub.mesh.values():  # the pool keeps mesh sessions open
                for peer in mesh:
                    self._core.pool.touch(peer)
            self._report_scores()
            self._host()
            self._meet()
        except Exception:  # noqa: BLE001 - logged; the loop must keep running
            self.log.failure("pub/sub heartbeat failed")

    # -- owner calls ------------------------------------------------------------
    def subscribe(self, topic: str, *, anonymous: bool = False) -> None:
        topic = check_topic(topic)
        own = set(self.pubsub.topics) - self.hosted
        if topic not in own and len(own) >= self.config.max_topics:
            raise TopicError(f"already subscribed to pubsub.max_topics "
                             f"({self.config.max_topics}) topics")
        if topic in self.hosted:  # hosted as a relay (normal): now ours as well
            if anonymous:
                raise TopicError(f"topic {topic!r} is relayed here as a normal topic")
            self.hosted.discard(topic)
        try:
            self.pubsub.subscribe(topic, anonymous=bool(anonymous))
        except PubSubError as e:
            raise TopicError(str(e)) from None
        self.counts.setdefault(topic, Counter())
        if not anonymous:
            self._rendezvous(topic)

    def unsubscribe(self, topic: str) -> bool:
        """Whether this node was subscribed to ``topic``."""
        topic = check_topic(topic)
        was = topic in self.pubsub.topics and topic not in self.hosted
        if was:
            self.pubsub.unsubscribe(topic)
            self._rendezvous_at.pop(topic, None)
        return was

    def publish(self, topic: str, message: dict[str, Any]) -> str:
        """Publish ``message`` (a JSON object, as a direct message's body) on ``topic``,
        of the subscription's kind (normal when not subscribed); the id, in hex."""
        topic = check_topic(topic)
        data = strict_json.dumps(message, separators=(",", ":")).encode()
        if len(data) > MAX_DATA:
            raise TopicMessageTooLarge(f"the message is {len(data)} bytes as JSON, at most "
                                       f"{MAX_DATA}")
        try:
            mid = self.pubsub.publish(topic, data)
        except PubSubError as e:
            raise TopicError(str(e)) from None
        self.counts.setdefault(topic, Counter())["out"] += 1
        self._core.metrics.inc("pubsub_published")
        return mid.hex()

    def topics(self) -> list[dict[str, Any]]:
        """Subscribed topics: kind, mesh peers with their scores, messages in and out."""
        out = []
        for topic in sorted(set(self.pubsub.topics) - self.hosted):
            counts = self.counts.get(topic, Counter())
            out.append({
                "topic": topic,
                "anonymous": self.pubsub.topics[topic],
                "mesh": [{"peer": p, "score": round(self.pubsub.score(p), 3)}
                         for p in self.pubsub.mesh_peers(topic)],
                "peers": len(self.pubsub.topic_peers(topic)),
                "messages_in": counts["in"],
                "messages_out": counts["out"],
            })
        return out

    # -- the channel ------------------------------------------------------------
    def _connected(self, peer: str) -> None:
        if self.running:  # peers this node dialed fill the mesh's outbound quota (D_out)
            self.pubsub.add_peer(peer, outbound=self._core.pool.dialed(peer))

    def _disconnected(self, peer: str) -> None:
        self.pubsub.remove_peer(peer)
        self._graylisted.discard(peer)

    def _receive(self, peer: str, payload: bytes) -> None:
        if not self.running:
            return
        self._core.metrics.inc("pubsub_rpcs_in")
        self.pubsub.receive(peer, payload)

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

    def _event(self, event: Event) -> None:
        events = self._core.events
        if isinstance(event, Received):
            if event.topic in self.hosted:
                return
            self.counts.setdefault(event.topic, Counter())["in"] += 1
            self._core.metrics.inc("pubsub_delivered")
            fields: dict[str, Any] = {"topic": event.topic, "id": event.id.hex(),
                                      "message": _body(event.data)}
            author = author_onion(event.author)
            if author is not None:
                fields["author"] = author
            if event.caught_up:
                fields["caught_up"] = True
            events.emit("message_received", **fields)
        elif isinstance(event, DeliveryState):
            events.emit("delivery_state", id=event.id.hex(), state=event.state,
                        subscriber=author_onion(event.subscriber))
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
            if anonymous or topic in self.hosted:
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
        for topic in sorted(announced - set(self.pubsub.topics)):
            if len(self.hosted) >= self.config.max_topics:
                break
            if self._is_rendezvous(topic):
                self.hosted.add(topic)
                self.pubsub.subscribe(topic)
