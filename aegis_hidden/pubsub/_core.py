"""One node's topic pub/sub: the mesh, gossip, scores, stem/fluff and acks (sans-I/O).

:class:`PubSubCore` takes RPCs from peers (:meth:`~PubSubCore.receive` with the
bytes of a ``pubsub`` frame) and calls from its owner (:meth:`~PubSubCore.publish`,
:meth:`~PubSubCore.subscribe`, :meth:`~PubSubCore.heartbeat` every
``params.heartbeat`` seconds, ...). What it has to say goes out through the
injected ``send(peer, rpc, delay)``; what the owner must know arrives as
events through ``on_event``. Time is read from the injected ``clock`` and
every random choice draws from the injected ``rng``: no reactor, no socket,
no timer of its own (the heartbeat also runs the embargo and ack timers).

The reference is gossipsub v1.1 (libp2p/specs, pubsub/gossipsub): a mesh of
degree D kept within D_lo..D_hi at every heartbeat, IHAVE/IWANT gossip to
peers outside the mesh, IDONTWANT for large messages, PRUNE with backoff and
peer exchange, flood publishing of one's own messages, an outbound quota in
the mesh, opportunistic grafting, and peer scores (:mod:`._score`). What is
ours: message ids that name no one, anonymous topics (an ephemeral signing
key, a Dandelion++-style stem before the fluff, delays from the mixing layer),
delivery acknowledgements that travel back along the path a message came,
and catch-up from a peer's message history after being offline.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._cache import MessageCache, SeenCache, TimedMap
from ._messages import (
    MAX_ENTRIES,
    MAX_IDS,
    MAX_PX,
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
)
from ._score import IdentityCost, PeerScore, ScoreParams, Thresholds
from ._signing import (
    Ed25519Verifier,
    EphemeralKeys,
    Signer,
    Verifier,
    ack_body,
    signed_body,
    verify_ed25519,
)


@dataclass(frozen=True)
class GossipParams:
    """The mesh and its timers (seconds); the defaults are gossipsub's, slowed for onions."""

    d: int = 6
    d_lo: int = 4
    #: gossipsub's example is 12; a mesh push gives each node about (mean degree - 2)
    #: duplicates, and GRAFTs accepted up to 12 leave meshes of 8-9 peers on average
    #: (about 7 duplicates); up to 9, about 7 (docs/pubsub.md, the simulation)
    d_hi: int = 9
    d_score: int = 4  # kept by score when the mesh is pruned back to D
    d_out: int = 2  # outbound peers (this node dialed them) kept in the mesh
    d_lazy: int = 6  # peers told IHAVE per topic per heartbeat, at least
    gossip_factor: float = 0.25  # ... or this share of the eligible peers
    heartbeat: float = 1.0
    gossip_window: float = 3.0  # messages this recent are announced in IHAVE
    retain: float = 600.0  # message history kept for IWANT and catch-up
    max_per_topic: int = 1000
    seen_ttl: float = 900.0  # at least ``retain``: a caught-up message is not delivered twice
    fanout_ttl: float = 60.0
    prune_backoff: float = 60.0
    unsubscribe_backoff: float = 10.0
    prune_peers: int = MAX_PX  # peers offered on PRUNE
    flood_publish: bool = True  # own messages go to every topic peer above the publish threshold
    flood: bool = False  # floodsub: every message to every topic peer; no mesh, no gossip
    scoring: bool = True
    opportunistic_graft_ticks: int = 60
    opportunistic_graft_peers: int = 2
    idontwant_threshold: int = 1024  # bytes of payload from which IDONTWANT is sent
    max_ihave_length: int = 5000  # ids asked per peer per heartbeat
    max_ihave_messages: int = 10  # IHAVEs accepted per peer per heartbeat
    iwant_followup: float = 10.0  # an IWANT not answered by then is a broken promise (P7)
    gossip_retransmission: int = 3  # copies of one message served to one peer per heartbeat
    catch_up_interval: float = 30.0  # per peer and topic; asking more often is penalised
    catch_up_bytes: int = 256 * 1024
    catch_up_peers: int = 3
    stem_fluff: float = 0.25  # q: probability that a stem hop fluffs (mean stem 1/q hops)
    stem_epoch: float = 600.0  # a node keeps one stem relay per topic this long
    embargo_base: float = 15.0  # a stemmed message not seen fluffed after this
    embargo_mean: float = 5.0  # ... plus an exponential of this mean is fluffed by the holder
    ack_timeout: float = 120.0
    max_stems: int = 50  # stem messages taken from one peer per heartbeat (each is held)

    def __post_init__(self) -> None:
        if not (0 < self.d_lo <= self.d <= self.d_hi):
            raise ValueError("mesh degrees must satisfy 0 < d_lo <= d <= d_hi")
        if not (0 <= self.d_out < self.d_lo and self.d_out <= self.d // 2):
            raise ValueError("d_out must be below d_lo and at most d / 2")
        if not (0 <= self.d_score <= self.d):
            raise ValueError("d_score must be between 0 and d")
        if self.heartbeat <= 0 or self.retain <= 0:
            raise ValueError("heartbeat and retain are positive")
        if self.seen_ttl < self.retain:
            raise ValueError("seen_ttl must be at least retain (or catch-up delivers twice)")
        if not (0 < self.stem_fluff <= 1):
            raise ValueError("stem_fluff is a probability above 0")


# -- events -------------------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """A new, valid message on a subscribed topic; ``author`` is None on anonymous topics."""

    topic: str
    data: bytes
    id: bytes
    author: bytes | None
    caught_up: bool = False


@dataclass(frozen=True)
class DeliveryState:
    """A named subscriber confirmed one of this node's messages, or did not in time."""

    id: bytes
    subscriber: bytes
    state: str  # "acknowledged" or "expired"


@dataclass(frozen=True)
class PeersOffered:
    """Peers a well-scored peer offered on PRUNE for a subscribed topic, none of them a peer
    already; the records are unverified: the owner checks each and may dial it (gossipsub's
    peer exchange), after which it is an ordinary peer (``add_peer``)."""

    topic: str
    source: str
    peers: tuple[PeerInfo, ...]


Event = Received | DeliveryState | PeersOffered


class PubSubError(ValueError):
    """A call the core cannot do (publishing without a signer, a topic of the wrong kind)."""


@dataclass
class _Peer:
    outbound: bool
    topics: set[str] = field(default_factory=set)
    dontwant: dict[bytes, float] = field(default_factory=dict)
    ihaves: int = 0
    asked: int = 0
    stems: int = 0
    catch_up_at: dict[str, float] = field(default_factory=dict)
    catch_up_asked: set[str] = field(default_factory=set)


class _Out:
    __slots__ = ("acks", "graft", "idontwant", "ihave", "iwant", "prune", "publish", "stem",
                 "subs")

    def __init__(self) -> None:
        self.subs: list[Subscription] = []
        self.publish: list[Message] = []
        self.ihave: list[IHave] = []
        self.iwant: list[bytes] = []
        self.graft: list[Graft] = []
        self.prune: list[Prune] = []
        self.idontwant: list[bytes] = []
        self.stem: list[Message] = []
        self.acks: list[Ack] = []

    def only_publish(self) -> bool:
        return not (self.subs or self.ihave or self.iwant or self.graft or self.prune
                    or self.idontwant or self.stem or self.acks)

    def rpcs(self) -> Iterable[Rpc]:
        # one RPC in the common case; long lists are cut so each stays within the decoder's limits
        step = MAX_ENTRIES
        n = max(len(self.publish), len(self.stem), len(self.acks), len(self.ihave),
                len(self.prune), len(self.graft), len(self.subs), 1)
        if n <= step and len(self.iwant) <= MAX_IDS and len(self.idontwant) <= MAX_IDS:
            yield Rpc(tuple(self.subs), tuple(self.publish), tuple(self.ihave),
                      (IWant(tuple(self.iwant)),) if self.iwant else (), tuple(self.graft),
                      tuple(self.prune),
                      (IDontWant(tuple(self.idontwant)),) if self.idontwant else (),
                      tuple(self.stem), tuple(self.acks))
            return
        for i in range(0, n, step):
            first = i == 0
            yield Rpc(
                subscriptions=tuple(self.subs[i:i + step]),
                publish=tuple(self.publish[i:i + step]),
                ihave=tuple(self.ihave[i:i + step]),
                iwant=tuple(IWant(tuple(self.iwant[j:j + MAX_IDS]))
                            for j in range(0, len(self.iwant), MAX_IDS)) if first else (),
                graft=tuple(self.graft[i:i + step]),
                prune=tuple(self.prune[i:i + step]),
                idontwant=tuple(IDontWant(tuple(self.idontwant[j:j + MAX_IDS]))
                                for j in range(0, len(self.idontwant), MAX_IDS)) if first else (),
                stem=tuple(self.stem[i:i + step]),
                acks=tuple(self.acks[i:i + step]),
            )


Send = Callable[[str, Rpc, float], None]


class PubSubCore:
    """Topic pub/sub for one node; peers are named by opaque strings (the node: onions)."""

    def __init__(self, *, clock: Callable[[], float], rng: random.Random, send: Send,
                 on_event: Callable[[Event], None], signer: Signer | None = None,
                 verifier: Verifier | None = None, params: GossipParams | None = None,
                 score_params: ScoreParams | None = None, thresholds: Thresholds | None = None,
                 identity: Callable[[str], IdentityCost | None] | None = None,
                 forward_delay: Callable[[str], float] | None = None,
                 peer_record: Callable[[str], bytes] | None = None,
                 verify_ephemeral: Callable[[bytes, bytes, bytes], bool] = verify_ed25519,
                 ephemeral_lifetime: float = 600.0) -> None:
        self.params = params if params is not None else GossipParams()
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self._clock = clock
        self._rng = rng
        self._send = send
        self._emit = on_event
        self._signer = signer
        self._verifier: Verifier = verifier if verifier is not None else Ed25519Verifier()
        self._verify_ephemeral = verify_ephemeral
        self._forward_delay = forward_delay
        self._peer_record = peer_record
        self.scores = PeerScore(score_params if score_params is not None else ScoreParams(),
                                clock, identity)
        if self.params.scoring:
            self._at_least = self.scores.at_least  # type: ignore[method-assign]
        self._ephemeral = EphemeralKeys(rng, clock, ephemeral_lifetime)
        p = self.params
        self.peers: dict[str, _Peer] = {}
        self.topics: dict[str, bool] = {}  # subscribed topic -> anonymous
        self.mesh: dict[str, set[str]] = {}
        self.fanout: dict[str, set[str]] = {}
        self._fanout_used: dict[str, float] = {}
        self._topic_peers: dict[str, set[str]] = {}
        self._backoff: dict[tuple[str, str], float] = {}
        self.seen = SeenCache(p.seen_ttl)
        self.cache = MessageCache(p.retain, p.max_per_topic)
        self._invalid: TimedMap[None] = TimedMap(p.seen_ttl)
        self._own: TimedMap[None] = TimedMap(p.seen_ttl)
        self._back: TimedMap[str] = TimedMap(p.seen_ttl)  # id -> the peer it came from first
        self._acks_forwarded: TimedMap[None] = TimedMap(p.ack_timeout)
        self._requested: TimedMap[None] = TimedMap(p.iwant_followup)
        self._promises: dict[bytes, tuple[str, float]] = {}
        self._served: Counter[tuple[str, bytes]] = Counter()
        self._stem_relay: dict[str, tuple[str, float]] = {}
        self._embargo: dict[bytes, tuple[Message, float, str | None]] = {}
        self._awaiting: dict[bytes, tuple[set[bytes], float]] = {}
        self._out: dict[str, _Out] = {}
        self._ticks = 0
        self.stats: Counter[str] = Counter()

    # -- owner calls ------------------------------------------------------------------
    def add_peer(self, peer: str, *, outbound: bool = False) -> None:
        """A session to ``peer`` is up (``outbound``: this node dialed it)."""
        if peer in self.peers:
            return
        self.peers[peer] = _Peer(outbound)
        self.scores.add_peer(peer)
        if self.topics:
            self._q(peer).subs.extend(Subscription(t, True) for t in sorted(self.topics))
        self._flush()

    def remove_peer(self, peer: str) -> None:
        state = self.peers.pop(peer, None)
        if state is None:
            return
        for topic in state.topics:
            self._topic_peers.get(topic, set()).discard(peer)
            if peer in self.mesh.get(topic, ()):
                self.mesh[topic].discard(peer)
                self.scores.prune(peer, topic)
            self.fanout.get(topic, set()).discard(peer)
        self.scores.remove_peer(peer)
        for topic, (relay, _) in list(self._stem_relay.items()):
            if relay == peer:
                del self._stem_relay[topic]
        self._out.pop(peer, None)

    def subscribe(self, topic: str, *, anonymous: bool = False) -> None:
        if topic in self.topics:
            if self.topics[topic] != anonymous:
                raise PubSubError(f"topic {topic!r} is already subscribed as "
                                  f"{'anonymous' if self.topics[topic] else 'normal'}")
            return
        self.topics[topic] = anonymous
        for peer in self.peers:
            self._q(peer).subs.append(Subscription(topic, True))
        if not self.params.flood:
            mesh = self.mesh[topic] = set()
            for peer in sorted(self.fanout.pop(topic, set())):
                if self._at_least(peer, 0.0) and len(mesh) < self.params.d:
                    self._graft(topic, peer)
            self._fanout_used.pop(topic, None)
            want = self.params.d - len(mesh)
            candidates = self._candidates(topic)
            for peer in self._rng.sample(candidates, min(want, len(candidates))):
                self._graft(topic, peer)
        self._flush()

    def unsubscribe(self, topic: str) -> None:
        if self.topics.pop(topic, None) is None:
            return
        for peer in self.peers:
            self._q(peer).subs.append(Subscription(topic, False))
        for peer in sorted(self.mesh.pop(topic, set())):
            self._prune(topic, peer, self.params.unsubscribe_backoff, px=False)
        self._ephemeral.forget(topic)
        self._flush()

    def publish(self, topic: str, data: bytes, *, anonymous: bool | None = None,
                ack_from: Iterable[bytes] = ()) -> bytes:
        """Publish ``data``; the message id. ``anonymous`` defaults to the subscription's kind.

        ``ack_from``: identities of subscribers asked to confirm delivery; each
        answer (or its absence after ``ack_timeout``) arrives as a
        :class:`DeliveryState` event.
        """
        if anonymous is None:
            anonymous = self.topics.get(topic, False)
        elif topic in self.topics and self.topics[topic] != anonymous:
            raise PubSubError(f"topic {topic!r} is subscribed as "
                              f"{'anonymous' if self.topics[topic] else 'normal'}")
        acks = tuple(dict.fromkeys(ack_from))
        nonce = self._rng.randbytes(16)
        if anonymous:
            private, key = self._ephemeral.key(topic)
            signature = private.sign(signed_body(topic, nonce, data, True, key, acks))
        else:
            if self._signer is None:
                raise PubSubError("publishing on a normal topic needs a signer")
            key = self._signer.identity
            signature = self._signer.sign(signed_body(topic, nonce, data, False, key, acks))
        message = Message(topic, data, nonce, anonymous, key, signature, acks)
        mid = message.id
        now = self._clock()
        self._own.set(mid, None, now)
        if acks:
            self._awaiting[mid] = (set(acks), now + self.params.ack_timeout)
        self.stats["published"] += 1
        if anonymous and not self.params.flood:
            relay = self._relay(topic, exclude=None)
            if relay is not None:
                self._stem(relay, message)
                self._embargo[mid] = (message, self._embargo_deadline(), None)
                self._flush()
                return mid
        self.seen.add(mid, now)
        self.cache.put(mid, message, now, None)
        self._diffuse(message, mid, None, publishing=True)
        self._flush()
        return mid

    def catch_up(self, topic: str, within: float, peers: Iterable[str] | None = None) -> list[str]:
        """Ask mesh peers (or ``peers``) for ``topic``'s messages of the last ``within`` seconds."""
        if topic not in self.topics:
            raise PubSubError(f"not subscribed to {topic!r}")
        if peers is None:
            pool = sorted(self.mesh.get(topic) or self._topic_peers.get(topic, set()))
            asked = self._rng.sample(pool, min(self.params.catch_up_peers, len(pool)))
        else:
            asked = [p for p in peers if p in self.peers]
        seconds = max(1, min(int(within), int(self.params.retain)))
        for peer in asked:
            self.peers[peer].catch_up_asked.add(topic)
            self._send(peer, Rpc(catch_up=CatchUp(topic, seconds)), 0.0)
        return asked

    def receive(self, peer: str, data: bytes) -> None:
        """The bytes of one ``pubsub`` frame from ``peer``."""
        try:
            rpc = decode(data)
        except PubSubMessageError:
            self.stats["malformed"] += 1
            self.scores.penalty(peer)
            return
        self.handle(peer, rpc)

    def handle(self, peer: str, rpc: Rpc) -> None:
        """One decoded RPC from ``peer`` (a peer not added is ignored)."""
        state = self.peers.get(peer)
        if state is None:
            self.stats["from unknown peer"] += 1
            return
        if not self._at_least(peer, self.thresholds.graylist):
            self.stats["graylisted"] += 1
            return
        for s in rpc.subscriptions:
            self._on_subscription(peer, state, s)
        if rpc.idontwant:
            until = self._clock() + self.params.gossip_window + self.params.heartbeat
            for dw in rpc.idontwant:
                for mid in dw.ids:
                    if len(state.dontwant) < MAX_IDS:
                        state.dontwant[mid] = until
        for m in rpc.publish:
            self._on_message(peer, m)
        for m in rpc.stem:
            state.stems += 1
            if state.stems > self.params.max_stems:
                self.stats["stem over the rate"] += 1
                self.scores.penalty(peer)
                break
            self._on_stem(peer, m)
        for ih in rpc.ihave:
            self._on_ihave(peer, state, ih)
        for iw in rpc.iwant:
            self._on_iwant(peer, iw)
        for g in rpc.graft:
            self._on_graft(peer, state, g)
        for pr in rpc.prune:
            self._on_prune(peer, pr)
        for a in rpc.acks:
            self._on_ack(peer, a)
        if rpc.catch_up is not None:
            self._on_catch_up(peer, state, rpc.catch_up)
        if rpc.catch_up_answer is not None:
            self._on_catch_up_answer(peer, state, rpc.catch_up_answer)
        self._flush()

    def heartbeat(self) -> None:
        """Every ``params.heartbeat`` seconds: mesh upkeep, gossip, timers, score decay."""
        now = self._clock()
        self._ticks += 1
        p = self.params
        # scores are computed when first needed and kept until the next decay (PeerScore)
        if not p.flood:
            for topic in sorted(self.mesh):
                self._maintain(topic, now)
            for topic in sorted(self.fanout):
                self._maintain_fanout(topic, now)
            for topic in sorted(set(self.mesh) | set(self.fanout)):
                self._gossip(topic, now)
        self._expire(now)
        if p.scoring:
            self.scores.decay()
        self._flush()

    # -- queries ------------------------------------------------------------------------
    def score(self, peer: str) -> float:
        return self._score(peer)

    def mesh_peers(self, topic: str) -> list[str]:
        return sorted(self.mesh.get(topic, ()))

    def topic_peers(self, topic: str) -> list[str]:
        return sorted(self._topic_peers.get(topic, ()))

    # -- receiving --------------------------------------------------------------------
    def _on_subscription(self, peer: str, state: _Peer, s: Subscription) -> None:
        if s.subscribe:
            if s.topic not in state.topics and len(state.topics) >= MAX_ENTRIES:
                self.scores.penalty(peer)
                return
            state.topics.add(s.topic)
            self._topic_peers.setdefault(s.topic, set()).add(peer)
            return
        state.topics.discard(s.topic)
        self._topic_peers.get(s.topic, set()).discard(peer)
        if peer in self.mesh.get(s.topic, ()):
            self.mesh[s.topic].discard(peer)
            self.scores.prune(peer, s.topic)
        self.fanout.get(s.topic, set()).discard(peer)

    def _valid(self, m: Message) -> bool:
        body = signed_body(m.topic, m.nonce, m.data, m.anonymous, m.key, m.ack_from)
        if m.anonymous:
            return self._verify_ephemeral(m.key, body, m.signature)
        return self._verifier.verify(m.key, body, m.signature)

    def _reject(self, peer: str, m: Message, mid: bytes, why: str) -> None:
        self.stats[f"invalid: {why}"] += 1
        self._invalid.set(mid, None, self._clock())
        self.scores.invalid(peer, m.topic)

    def _on_message(self, peer: str, m: Message, *, catch_up: bool = False) -> None:
        topic = m.topic
        anonymous = self.topics.get(topic)
        if anonymous is None:
            self.stats["not subscribed"] += 1
            return
        mid = m.id
        if mid in self._invalid:
            self.scores.invalid(peer, topic)
            return
        first = self.seen.first_seen(mid)
        if first is not None:
            self.stats["duplicate"] += 1
            if not catch_up and self.params.scoring:
                self.scores.near_first_delivery(peer, topic, first)
            return
        if m.anonymous != anonymous:
            self._reject(peer, m, mid, "wrong kind for the topic")
            return
        if not self._valid(m):
            self._reject(peer, m, mid, "signature")
            return
        now = self._clock()
        self.seen.add(mid, now)
        self._promises.pop(mid, None)
        self._requested.pop(mid)
        if not catch_up and self.params.scoring:
            self.scores.first_delivery(peer, topic)
        self._accept(m, mid, peer, forward=not catch_up, caught_up=catch_up)

    def _accept(self, m: Message, mid: bytes, came_from: str | None, *, forward: bool,
                caught_up: bool = False) -> None:
        """Keep, deliver and (``forward``) pass on a new valid message."""
        now = self._clock()
        self.seen.add(mid, now)
        self._embargo.pop(mid, None)
        self.cache.put(mid, m, now, came_from)
        if came_from is not None and mid not in self._back:
            self._back.set(mid, came_from, now)
        if mid not in self._own and m.topic in self.topics:
            self.stats["delivered"] += 1
            self._emit(Received(m.topic, m.data, mid, None if m.anonymous else m.key, caught_up))
            signer = self._signer
            if signer is not None and came_from is not None and signer.identity in m.ack_from:
                ack = Ack(mid, signer.identity, signer.sign(ack_body(mid, signer.identity)))
                self._q(came_from).acks.append(ack)
        if forward:
            self._diffuse(m, mid, came_from)

    def _diffuse(self, m: Message, mid: bytes, came_from: str | None, *,
                 publishing: bool = False) -> None:
        p = self.params
        topic = m.topic
        if p.flood or (publishing and p.flood_publish):
            pool = self._topic_peers.get(topic, set())
            targets = [peer for peer in sorted(pool) if peer != came_from and (
                self._at_least(peer, self.thresholds.publish))]
        elif topic in self.mesh:
            targets = sorted(self.mesh[topic])
        else:
            targets = sorted(self._fanout(topic))
        if len(m.data) >= p.idontwant_threshold and topic in self.mesh:
            for peer in sorted(self.mesh[topic]):
                if peer != came_from:
                    self._q(peer).idontwant.append(mid)
        delay = self._forward_delay if m.anonymous else None
        for peer in targets:
            if peer == came_from:
                continue
            state = self.peers.get(peer)
            if state is None or mid in state.dontwant:
                continue
            if delay is not None:
                self._send(peer, Rpc(publish=(m,)), delay(topic))
            else:
                self._q(peer).publish.append(m)

    def _fanout(self, topic: str) -> set[str]:
        now = self._clock()
        fan = self.fanout.get(topic)
        if fan is None:
            pool = [peer for peer in sorted(self._topic_peers.get(topic, set()))
                    if self._at_least(peer, self.thresholds.publish)]
            fan = self.fanout[topic] = set(self._rng.sample(pool, min(self.params.d, len(pool))))
        self._fanout_used[topic] = now
        return fan

    # -- anonymous topics: stem and fluff ---------------------------------------------
    def _relay(self, topic: str, exclude: str | None) -> str | None:
        """This epoch's stem relay for ``topic`` (another one if it is ``exclude``)."""
        now = self._clock()
        held = self._stem_relay.get(topic)
        if held is not None and held[1] > now and held[0] != exclude and held[0] in self.peers \
                and topic in self.peers[held[0]].topics:
            return held[0]
        pool = [peer for peer in sorted(self._topic_peers.get(topic, set()))
                if peer != exclude and self._at_least(peer, 0.0)]
        if not pool:
            return None
        choice = self._rng.choice(pool)
        if held is None or held[1] <= now or held[0] not in self.peers:
            self._stem_relay[topic] = (choice, now + self.params.stem_epoch)
        return choice

    def _stem(self, relay: str, m: Message) -> None:
        delay = self._forward_delay(m.topic) if self._forward_delay is not None else 0.0
        self._send(relay, Rpc(stem=(m,)), delay)
        self.stats["stemmed"] += 1

    def _embargo_deadline(self) -> float:
        p = self.params
        return self._clock() + p.embargo_base + self._rng.expovariate(1.0 / p.embargo_mean)

    def _on_stem(self, peer: str, m: Message) -> None:
        mid = m.id
        if mid in self.seen or mid in self._embargo:
            self.stats["stem duplicate"] += 1
            return
        if mid in self._invalid:
            self.scores.invalid(peer, m.topic)
            return
        if not m.anonymous or (m.topic in self.topics and not self.topics[m.topic]):
            self._reject(peer, m, mid, "wrong kind for the topic")
            return
        if not self._verify_ephemeral(m.key, signed_body(m.topic, m.nonce, m.data, True, m.key,
                                                         m.ack_from), m.signature):
            self._reject(peer, m, mid, "signature")
            return
        now = self._clock()
        self._back.set(mid, peer, now)
        relay = None
        if self._rng.random() >= self.params.stem_fluff:
            relay = self._relay(m.topic, exclude=peer)
        if relay is None:
            self.stats["fluffed"] += 1
            self._accept(m, mid, peer, forward=True)
            return
        self._stem(relay, m)
        self._embargo[mid] = (m, self._embargo_deadline(), peer)

    # -- gossip -------------------------------------------------------------------------
    def _on_ihave(self, peer: str, state: _Peer, ih: IHave) -> None:
        if ih.topic not in self.topics or self.params.flood:
            return
        if not self._at_least(peer, self.thresholds.gossip):
            self.stats["ihave ignored: score"] += 1
            return
        state.ihaves += 1
        if state.ihaves > self.params.max_ihave_messages:
            self.stats["ihave ignored: too many"] += 1
            return
        room = self.params.max_ihave_length - state.asked
        want = [mid for mid in ih.ids if mid not in self.seen and mid not in self._requested
                and mid not in self._embargo][:max(0, room)]
        if not want:
            return
        now = self._clock()
        state.asked += len(want)
        self._rng.shuffle(want)
        for mid in want:
            self._requested.set(mid, None, now)
        self._q(peer).iwant.extend(want)
        promised = self._rng.choice(want)
        self._promises[promised] = (peer, now + self.params.iwant_followup)
        self.stats["iwant sent"] += len(want)

    def _on_iwant(self, peer: str, iw: IWant) -> None:
        if not self._at_least(peer, self.thresholds.gossip):
            self.stats["iwant ignored: score"] += 1
            return
        for mid in iw.ids:
            cached = self.cache.get(mid)
            if cached is None:
                continue
            key = (peer, mid)
            self._served[key] += 1
            if self._served[key] > self.params.gossip_retransmission:
                continue
            m = cached.message
            if m.anonymous and self._forward_delay is not None:
                self._send(peer, Rpc(publish=(m,)), self._forward_delay(m.topic))
            else:
                self._q(peer).publish.append(m)
            self.stats["iwant served"] += 1

    def _gossip(self, topic: str, now: float) -> None:
        p = self.params
        ids = self.cache.recent(topic, now - p.gossip_window)[:p.max_ihave_length]
        if not ids:
            return
        inner = self.mesh.get(topic, set()) | self.fanout.get(topic, set())
        pool = [peer for peer in sorted(self._topic_peers.get(topic, set())) if peer not in inner]
        self._rng.shuffle(pool)
        want = max(p.d_lazy, int(p.gossip_factor * len(pool)))
        ihave = IHave(topic, tuple(ids))
        for peer in pool:  # in random order: scores are computed only for the peers drawn
            if want <= 0:
                break
            if self._at_least(peer, self.thresholds.gossip):
                self._q(peer).ihave.append(ihave)
                want -= 1

    # -- the mesh -----------------------------------------------------------------------
    def _score(self, peer: str) -> float:
        return self.scores.score(peer) if self.params.scoring else 0.0

    def _at_least(self, peer: str, threshold: float) -> bool:
        """``_score(peer) >= threshold`` for a threshold of 0 or below (cheaper; without
        scoring every peer passes; with scoring ``__init__`` binds ``scores.at_least``)."""
        return True

    def _backed_off(self, topic: str, peer: str) -> bool:
        until = self._backoff.get((topic, peer))
        return until is not None and until > self._clock()

    def _candidates(self, topic: str) -> list[str]:
        mesh = self.mesh.get(topic, set())
        out = []
        for peer in sorted(self._topic_peers.get(topic, set())):
            if peer in mesh or self._backed_off(topic, peer):
                continue
            if self._at_least(peer, 0.0):
                out.append(peer)
        return out

    def _graft(self, topic: str, peer: str) -> None:
        self.mesh[topic].add(peer)
        self.scores.graft(peer, topic)
        self._q(peer).graft.append(Graft(topic))

    def _prune(self, topic: str, peer: str, backoff: float, *, px: bool) -> None:
        self.mesh.get(topic, set()).discard(peer)
        self.scores.prune(peer, topic)
        self._backoff[(topic, peer)] = self._clock() + backoff
        offered: tuple[PeerInfo, ...] = ()
        if px and self.params.prune_peers:
            pool = [x for x in sorted(self._topic_peers.get(topic, set()))
                    if x != peer and self._at_least(x, 0.0)]
            chosen = self._rng.sample(pool, min(self.params.prune_peers, len(pool)))
            record = self._peer_record
            offered = tuple(PeerInfo(x, record(x) if record is not None else b"") for x in chosen)
        self._q(peer).prune.append(Prune(topic, offered, int(backoff)))

    def _on_graft(self, peer: str, state: _Peer, g: Graft) -> None:
        topic = g.topic
        p = self.params
        if topic not in self.topics or p.flood:
            self._q(peer).prune.append(Prune(topic, (), 0))
            return
        mesh = self.mesh[topic]
        if peer in mesh:
            return
        if self._backed_off(topic, peer):
            self.stats["graft during backoff"] += 1
            self.scores.penalty(peer)
            self._q(peer).prune.append(Prune(topic, (), int(p.prune_backoff)))
            return
        if not self._at_least(peer, 0.0):
            self._prune(topic, peer, p.prune_backoff, px=False)
            return
        if len(mesh) >= p.d_hi and not state.outbound:
            self._prune(topic, peer, p.prune_backoff, px=True)
            return
        state.topics.add(topic)
        self._topic_peers.setdefault(topic, set()).add(peer)
        mesh.add(peer)
        self.scores.graft(peer, topic)

    def _on_prune(self, peer: str, pr: Prune) -> None:
        topic = pr.topic
        if peer in self.mesh.get(topic, ()):
            self.mesh[topic].discard(peer)
            self.scores.prune(peer, topic)
        backoff = min(float(pr.backoff) if pr.backoff else self.params.prune_backoff, 3600.0)
        self._backoff[(topic, peer)] = max(self._backoff.get((topic, peer), 0.0),
                                           self._clock() + backoff)
        if pr.peers and topic in self.topics and self._score(peer) >= self.thresholds.accept_px:
            # only peers this node has no session with; the owner checks each record and dials
            fresh = tuple(x for x in pr.peers if x.peer not in self.peers and x.peer != peer)
            if fresh:
                self.stats["px offered"] += len(fresh)
                self._emit(PeersOffered(topic, peer, fresh))

    def _maintain(self, topic: str, now: float) -> None:
        p = self.params
        mesh = self.mesh[topic]
        for peer in sorted(mesh):
            if not self._at_least(peer, 0.0):
                self._prune(topic, peer, p.prune_backoff, px=False)
        if len(mesh) < p.d_lo:
            candidates = self._candidates(topic)
            for peer in self._rng.sample(candidates, min(p.d - len(mesh), len(candidates))):
                self._graft(topic, peer)
        if len(mesh) > p.d_hi:
            ordered = sorted(mesh)
            self._rng.shuffle(ordered)
            ordered.sort(key=lambda x: self._score(x), reverse=True)
            keep = ordered[:p.d_score]
            rest = ordered[p.d_score:]
            self._rng.shuffle(rest)
            keep += rest[:p.d - p.d_score]
            if p.d_out:
                outbound = [x for x in keep if self.peers[x].outbound]
                spare = [x for x in ordered if x not in keep and self.peers[x].outbound]
                while len(outbound) < p.d_out and spare:
                    inbound = [x for x in keep[p.d_score:] if not self.peers[x].outbound]
                    if not inbound:
                        break
                    keep.remove(inbound[-1])
                    keep.append(spare.pop(0))
                    outbound = [x for x in keep if self.peers[x].outbound]
            for peer in ordered:
                if peer not in keep:
                    self._prune(topic, peer, p.prune_backoff, px=True)
        if p.d_out:
            have = sum(1 for x in mesh if self.peers[x].outbound)
            if have < p.d_out:
                extra = [x for x in self._candidates(topic) if self.peers[x].outbound]
                for peer in self._rng.sample(extra, min(p.d_out - have, len(extra))):
                    self._graft(topic, peer)
        if (p.scoring and p.opportunistic_graft_ticks and len(mesh) > 1
                and self._ticks % p.opportunistic_graft_ticks == 0):
            median = statistics.median(self._score(x) for x in mesh)
            if median < self.thresholds.opportunistic_graft:
                better = [x for x in self._candidates(topic) if self._score(x) > median]
                for peer in self._rng.sample(better, min(p.opportunistic_graft_peers,
                                                         len(better))):
                    self._graft(topic, peer)
                    self.stats["opportunistic graft"] += 1

    def _maintain_fanout(self, topic: str, now: float) -> None:
        if self._fanout_used.get(topic, 0.0) + self.params.fanout_ttl <= now:
            self.fanout.pop(topic, None)
            self._fanout_used.pop(topic, None)
            return
        fan = self.fanout[topic]
        pool = self._topic_peers.get(topic, set())
        for peer in sorted(fan):
            if peer not in pool or not self._at_least(peer, self.thresholds.publish):
                fan.discard(peer)
        if len(fan) < self.params.d:
            more = [x for x in sorted(pool) if x not in fan
                    and self._at_least(x, self.thresholds.publish)]
            fan.update(self._rng.sample(more, min(self.params.d - len(fan), len(more))))

    # -- acks -----------------------------------------------------------------------------
    def _on_ack(self, peer: str, a: Ack) -> None:
        awaiting = self._awaiting.get(a.id)
        if awaiting is not None:
            pending = awaiting[0]
            if a.subscriber not in pending:
                self.stats["ack duplicate"] += 1
                return
            if not self._verifier.verify(a.subscriber, ack_body(a.id, a.subscriber),
                                         a.signature):
                self.stats["ack invalid"] += 1
                self.scores.penalty(peer)
                return
            pending.discard(a.subscriber)
            if not pending:
                del self._awaiting[a.id]
            self._emit(DeliveryState(a.id, a.subscriber, "acknowledged"))
            return
        back = self._back.get(a.id)
        cached = self.cache.get(a.id)
        named = cached.message.ack_from if cached is not None else ()
        if back is None or back == peer or a.subscriber not in named:
            self.stats["ack dropped"] += 1
            return
        key = a.id + a.subscriber
        if key in self._acks_forwarded:
            return
        self._acks_forwarded.set(key, None, self._clock())
        if back in self.peers:
            self._q(back).acks.append(a)
            self.stats["ack forwarded"] += 1

    # -- catch-up ---------------------------------------------------------------------------
    def _on_catch_up(self, peer: str, state: _Peer, req: CatchUp) -> None:
        p = self.params
        now = self._clock()
        if req.topic not in self.topics:
            self.stats["catch-up: not subscribed"] += 1
            return
        last = state.catch_up_at.get(req.topic)
        if last is not None and now - last < p.catch_up_interval:
            self.stats["catch-up: too soon"] += 1
            self.scores.penalty(peer)
            return
        if not self._at_least(peer, self.thresholds.gossip):
            return
        state.catch_up_at[req.topic] = now
        since = now - min(float(req.within), p.retain)
        messages: list[Message] = []
        size = 0
        more = False
        for cached in self.cache.history(req.topic, since):
            m = cached.message
            cost = len(m.data) + len(m.key) + len(m.signature) + 64 + sum(map(len, m.ack_from))
            if size + cost > p.catch_up_bytes or len(messages) >= MAX_ENTRIES:
                more = True
                break
            size += cost
            messages.append(m)
        self.stats["catch-up answered"] += 1
        self._send(peer, Rpc(catch_up_answer=CatchUpAnswer(req.topic, tuple(messages), more)),
                   0.0)

    def _on_catch_up_answer(self, peer: str, state: _Peer, answer: CatchUpAnswer) -> None:
        if answer.topic not in state.catch_up_asked:
            self.stats["catch-up: unasked answer"] += 1
            self.scores.penalty(peer)
            return
        state.catch_up_asked.discard(answer.topic)
        for m in answer.messages:
            self._on_message(peer, m, catch_up=True)

    # -- timers -----------------------------------------------------------------------------
    def _expire(self, now: float) -> None:
        self.seen.expire(now)
        self.cache.expire(now)
        self._invalid.expire(now)
        self._own.expire(now)
        self._back.expire(now)
        self._acks_forwarded.expire(now)
        self._requested.expire(now)
        self._served.clear()
        for key in [k for k, until in self._backoff.items() if until <= now]:
            del self._backoff[key]
        for state in self.peers.values():
            state.ihaves = 0
            state.asked = 0
            state.stems = 0
            if state.dontwant:
                for mid in [m for m, until in state.dontwant.items() if until <= now]:
                    del state.dontwant[mid]
        for mid, (peer, deadline) in list(self._promises.items()):
            if deadline <= now:
                del self._promises[mid]
                if mid not in self.seen:
                    self.stats["broken promise"] += 1
                    self.scores.penalty(peer)
        for mid, (message, deadline, came_from) in list(self._embargo.items()):
            if deadline <= now:
                del self._embargo[mid]
                if mid not in self.seen:
                    self.stats["embargo fluffed"] += 1
                    self._accept(message, mid, came_from, forward=True)
        for mid, (pending, deadline) in list(self._awaiting.items()):
            if deadline <= now:
                del self._awaiting[mid]
                for subscriber in sorted(pending):
                    self._emit(DeliveryState(mid, subscriber, "expired"))

    # -- output -------------------------------------------------------------------------------
    def _q(self, peer: str) -> _Out:
        out = self._out.get(peer)
        if out is None:
            out = self._out[peer] = _Out()
        return out

    def _flush(self) -> None:
        if not self._out:
            return
        out, self._out = self._out, {}
        peers = self.peers
        single: dict[int, Rpc] = {}  # one message alone: the same (immutable) RPC for every peer
        for peer, pending in out.items():
            if peer not in peers:
                continue
            if len(pending.publish) == 1 and pending.only_publish():
                m = pending.publish[0]
                rpc = single.get(id(m))
                if rpc is None:
                    rpc = single[id(m)] = Rpc(publish=(m,))
                self._send(peer, rpc, 0.0)
                continue
            for rpc in pending.rpcs():
                if rpc:
                    self._send(peer, rpc, 0.0)
