"""Topic pub/sub in one process, on a virtual clock, driving the real pub/sub core.

Every node, honest or not, is a :class:`~aegis_hidden.pubsub.PubSubCore`; every
RPC it sends crosses a link with a log-normal one-way delay (the DHT
simulation's onion-like latency: median 0.6 s) and, with ``codec=True``, the
real protobuf codec both ways. Heartbeats run on the same
:class:`~aegis_hidden.sim._dht.VirtualClock`, at a random phase per node.
Nothing of the protocol is written a second time here: the three protocols
compared are the core under three sets of parameters (gossipsub v1.1 with
scores; the mesh without scores, outbound quota or flood publishing, as
gossipsub v1.0; floodsub).

Attacks follow the gossipsub v1.1 evaluation (Vyzovitis et al., 2020):
Sybils are real cores whose mesh accepts everyone (degree up to 120) and
that, once attacking, send every RPC with its messages stripped (they
never forward, never answer IWANT, but GRAFT, gossip and stay). ``cold boot``:
they join with everyone and attack from the start; ``covert flash``: they
behave until publishing starts, then attack at once; ``eclipse``: every Sybil
dials every one of a few victims, and attacks from the start.

Peer exchange runs as in the node: a node offered peers on PRUNE (by a peer
scoring at least ``SIM_THRESHOLDS.accept_px``) dials, after two link delays,
as many as its mesh lacks to reach D. Signatures are real Ed25519, each
distinct one verified once for the whole network (:class:`_MemoVerify`).

A second experiment measures anonymity: a share of the honest nodes are
spies (they run the protocol faithfully and note, for every message, when
and from whom they got it first, stem or fluff); the first-spy estimator
names the peer the earliest spy heard it from as the publisher. Plain gossip
(flood publishing on a normal topic) against an anonymous topic (stem, then
fluff, optionally with mixing delays on every forward).

Deterministic: all randomness flows from ``random.Random(seed)``, time is virtual.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..pubsub import (
    Ed25519Signer,
    Ed25519Verifier,
    Event,
    GossipParams,
    IdentityCost,
    PeersOffered,
    PubSubCore,
    Received,
    Rpc,
    ScoreParams,
    Thresholds,
    TopicScoreParams,
    decode,
    encode,
    verify_ed25519,
)
from ._dht import VirtualClock, _p

TOPIC = "sim"
PROTOCOLS = ("gossipsub", "mesh", "flood")
ATTACKS = ("none", "cold boot", "covert flash", "eclipse")

#: the sim topic's score parameters: about 1-2 messages a second, onion delays
SIM_TOPIC_SCORE = TopicScoreParams(
    time_in_mesh_weight=0.01, time_in_mesh_cap=300.0,
    first_deliveries_weight=0.5, first_deliveries_decay=0.9, first_deliveries_cap=20.0,
    mesh_deliveries_weight=-4.0, mesh_deliveries_decay=0.9, mesh_deliveries_threshold=2.0,
    mesh_deliveries_cap=20.0, mesh_deliveries_activation=15.0, mesh_deliveries_window=3.0,
    mesh_failure_penalty_weight=-4.0, mesh_failure_penalty_decay=0.95,
)


#: peer exchange is taken from peers scoring at least 1 (the core's default is 5, which no
#: peer reaches within the simulated minute): an honest identity's term alone (old, 20-bit
#: puzzle: 1.8) qualifies, a Sybil's (under an hour, 16 bits: 0.7) does not
SIM_THRESHOLDS = Thresholds(accept_px=1.0)


def protocol_params(protocol: str) -> GossipParams:
    if protocol == "gossipsub":
        return GossipParams()
    if protocol == "mesh":
        return GossipParams(scoring=False, d_out=0, flood_publish=False)
    if protocol == "flood":
        return GossipParams(flood=True, scoring=False, flood_publish=False)
    raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")


#: Sybils: a mesh that takes everyone; IHAVE to six peers a heartbeat (cheaper to simulate
#: than to a share of their hundred)
SYBIL_PARAMS = GossipParams(d=60, d_lo=50, d_hi=120, d_score=0, d_out=0, scoring=False,
                            flood_publish=False, gossip_factor=0.0)


@dataclass(frozen=True)
class PubSubScenario:
    protocol: str = "gossipsub"
    attack: str = "none"
    honest: int = 1000
    publishers: int = 100
    messages_per_publisher: int = 1
    out_degree: int = 8  # peers each honest node dials (so about 2x that per node)
    sybils: int = 100
    sybil_degree: int = 50  # honest peers each Sybil dials (cold boot, covert flash)
    victims: int = 10  # eclipse targets (each Sybil dials all of them)
    warmup: float = 20.0  # seconds of background traffic before the measured messages
    window: float = 15.0  # measured messages are published over this many seconds
    drain: float = 15.0
    background_rate: float = 1.0  # unmeasured messages per second during the warm-up
    latency_median: float = 0.6
    latency_sigma: float = 0.5
    payload: int = 200
    codec: bool = True  # every RPC through the real protobuf codec

    def label(self) -> str:
        return f"{self.attack:<13} {self.protocol:<10}"


@dataclass(frozen=True)
class PubSubResult:
    scenario: PubSubScenario
    messages: int
    delivery: float  # share of (message, honest subscriber) pairs delivered
    victim_delivery: float  # the same, for the eclipse victims (1.0 when there are none)
    latency_p50: float
    latency_p99: float
    duplicates: float  # extra copies received per delivered message per node
    rpcs_per_node: float  # RPCs sent per honest node over the run
    sybils_in_mesh: float  # share of honest nodes' mesh slots held by Sybils at the end
    mesh_degree: float  # honest nodes' mean mesh size at the end
    px_dials: int = 0  # sessions honest nodes opened to peers offered on PRUNE


class _MemoVerify:
    """Signature checks shared by all nodes: the same bytes verify once (it is deterministic)."""

    def __init__(self) -> None:
        self._inner = Ed25519Verifier()
        self._memo: dict[tuple[bytes, bytes, bytes], bool] = {}

    def verify(self, identity: bytes, data: bytes, signature: bytes) -> bool:
        key = (identity, data, signature)
        held = self._memo.get(key)
        if held is None:
            held = self._memo[key] = self._inner.verify(identity, data, signature)
        return held

    def ephemeral(self, key: bytes, data: bytes, signature: bytes) -> bool:
        memo_key = (key, data, signature)
        held = self._memo.get(memo_key)
        if held is None:
            held = self._memo[memo_key] = verify_ed25519(key, data, signature)
        return held


class _Network:
    """Cores, links and the virtual clock; ``observe(dst, src, rpc)`` sees every arrival."""

    def __init__(self, seed: int, latency_median: float, latency_sigma: float,
                 codec: bool) -> None:
        self.rng = random.Random(seed)
        self.link_rng = random.Random(self.rng.getrandbits(64))
        self.clock = VirtualClock()
        self.mu = math.log(latency_median)
        self.sigma = latency_sigma
        self.codec = codec
        self.cores: dict[str, PubSubCore] = {}
        self.signers: dict[str, Ed25519Signer] = {}
        self.identities: dict[str, IdentityCost] = {}
        self.events: dict[str, list[tuple[float, Event]]] = {}
        self.silenced: set[str] = set()  # attacking Sybils: their messages are stripped
        self.sent: Counter[str] = Counter()
        self.px_dials: Counter[str] = Counter()  # sessions opened to peers offered on PRUNE
        self.verify = _MemoVerify()
        self.observe: Callable[[str, str, Rpc], None] | None = None

    def add(self, name: str, params: GossipParams, *, score: ScoreParams | None = None,
            forward_delay: Callable[[str], float] | None = None) -> PubSubCore:
        signer = Ed25519Signer.from_rng(self.rng)
        self.signers[name] = signer
        log: list[tuple[float, Event]] = []
        self.events[name] = log
        clock = self.clock

        def on_event(event: Event) -> None:
            if isinstance(event, PeersOffered):
                self._px(name, event)
            else:
                log.append((clock.now, event))

        core = PubSubCore(clock=lambda: clock.now, rng=random.Random(self.rng.getrandbits(64)),
                          send=functools.partial(self._send, name), on_event=on_event,
                          signer=signer, verifier=self.verify,
                          params=params, score_params=score, identity=self.identities.get,
                          forward_delay=forward_delay, verify_ephemeral=self.verify.ephemeral,
                          peer_record=_sim_record, thresholds=SIM_THRESHOLDS)
        self.cores[name] = core
        return core

    def _px(self, name: str, offer: PeersOffered) -> None:
        """Peer exchange as the node does it: dial offered peers whose record checks out,
        as many as the topic's mesh lacks to reach D; the session is up after a round trip."""
        core = self.cores[name]
        want = core.params.d - len(core.mesh.get(offer.topic, ()))
        for info in offer.peers:
            if want <= 0:
                break
            if info.peer not in self.cores or info.record != _sim_record(info.peer):
                continue
            want -= 1
            self.px_dials[name] += 1
            wait = self._latency() + self._latency()
            self.clock.call_later(wait, functools.partial(self.connect, name, info.peer))

    def connect(self, dialer: str, listener: str) -> None:
        if dialer in self.cores[listener].peers:
            return
        self.cores[dialer].add_peer(listener, outbound=True)
        self.cores[listener].add_peer(dialer, outbound=False)

    def _latency(self) -> float:
        """One link's one-way delay: log-normal (Box-Muller draws: cheaper than
        ``lognormvariate``, the same distribution)."""
        return math.exp(self.link_rng.gauss(self.mu, self.sigma))

    def _send(self, src: str, dst: str, rpc: Rpc, delay: float) -> None:
        if src in self.silenced and (rpc.publish or rpc.stem):
            if not (rpc.subscriptions or rpc.ihave or rpc.iwant or rpc.graft or rpc.prune
                    or rpc.idontwant or rpc.acks or rpc.catch_up or rpc.catch_up_answer):
                return  # nothing left once the messages are stripped
            rpc = dataclasses.replace(rpc, publish=(), stem=())
        self.sent[src] += 1
        payload: Rpc | bytes = encode(rpc) if self.codec else rpc
        self.clock.call_later(math.exp(self.link_rng.gauss(self.mu, self.sigma)) + delay,
                              functools.partial(self._arrive, src, dst, payload))

    def _arrive(self, src: str, dst: str, payload: Rpc | bytes) -> None:
        core = self.cores[dst]
        if src not in core.peers:
            return
        rpc = decode(payload) if isinstance(payload, bytes) else payload
        if self.observe is not None:
            self.observe(dst, src, rpc)
        core.handle(src, rpc)

    def heartbeats(self, until: float) -> None:
        """Each core's heartbeat every ``params.heartbeat`` seconds, at a random phase, until then."""
        clock = self.clock

        def schedule(core: PubSubCore, first: float) -> None:
            period = core.params.heartbeat

            def beat() -> None:
                core.heartbeat()
                if clock.now + period <= until:
                    clock.call_later(period, beat)

            clock.call_later(first, beat)

        for name in sorted(self.cores):
            schedule(self.cores[name], self.rng.random() * self.cores[name].params.heartbeat)

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self.clock.call_later(max(0.0, when - self.clock.now), fn)


def _sim_record(peer: str) -> bytes:
    """What stands for a peer's signed record in a PRUNE's peer exchange."""
    return b"sim record " + peer.encode()


def _honest_names(n: int) -> list[str]:
    return [f"h{i:05d}" for i in range(n)]


def _build_honest(net: _Network, sc: PubSubScenario, params: GossipParams,
                  score: ScoreParams | None, rng: random.Random,
                  forward_delay: Callable[[str], float] | None = None,
                  anonymous: bool = False) -> list[str]:
    names = _honest_names(sc.honest)
    for name in names:
        net.identities[name] = IdentityCost(rng.uniform(0, 30 * 86400), 20)
        net.add(name, params, score=score, forward_delay=forward_delay)
    for name in names:
        for other in rng.sample(names, sc.out_degree + 1):
            if other != name:
                net.connect(name, other)
    for name in names:
        net.cores[name].subscribe(TOPIC, anonymous=anonymous)
    return names


def simulate_pubsub(sc: PubSubScenario, seed: int) -> PubSubResult:
    """One protocol under one attack: delivery, latency and duplicates of honest messages."""
    if sc.attack not in ATTACKS:
        raise ValueError(f"unknown attack {sc.attack!r}; one of {', '.join(ATTACKS)}")
    rng = random.Random(seed)
    net = _Network(rng.getrandbits(64), sc.latency_median, sc.latency_sigma, sc.codec)
    params = protocol_params(sc.protocol)
    score = ScoreParams(default_topic=SIM_TOPIC_SCORE) if params.scoring else None
    names = _build_honest(net, sc, params, score, rng)
    victims: list[str] = []
    sybils: list[str] = []
    if sc.attack != "none":
        sybils = [f"s{i:05d}" for i in range(sc.sybils)]
        if sc.attack == "eclipse":
            victims = rng.sample(names, sc.victims)
        for name in sybils:
            net.identities[name] = IdentityCost(rng.uniform(0, 3600), 16)
            net.add(name, SYBIL_PARAMS)
            targets = victims if sc.attack == "eclipse" else rng.sample(names, sc.sybil_degree)
            for target in targets:
                net.connect(name, target)
            net.cores[name].subscribe(TOPIC)
        if sc.attack in ("cold boot", "eclipse"):
            net.silenced.update(sybils)
    start = sc.warmup
    end = start + sc.window + sc.drain
    net.heartbeats(end)
    pool = [n for n in names if n not in set(victims)]
    publishers = rng.sample(pool, min(sc.publishers, len(pool)))
    measured: dict[bytes, tuple[str, float]] = {}

    def publish(who: str, payload: bytes, keep: bool) -> None:
        mid = net.cores[who].publish(TOPIC, payload)
        if keep:
            measured[mid] = (who, net.clock.now)

    n_background = int(sc.warmup * sc.background_rate)
    for k in range(n_background):
        who = rng.choice(publishers)
        net.at(rng.uniform(0, sc.warmup),
               functools.partial(publish, who, b"warm-up %d " % k + bytes(sc.payload), False))
    plan = [(p, k) for p in publishers for k in range(sc.messages_per_publisher)]
    for who, k in plan:
        body = f"{who} {k} ".encode() + bytes(sc.payload)
        net.at(start + rng.uniform(0, sc.window), functools.partial(publish, who, body, True))
    if sc.attack == "covert flash":
        net.at(start, lambda: net.silenced.update(sybils))
    copies: Counter[bytes] = Counter()
    honest = set(names)

    def observe(dst: str, src: str, rpc: Rpc) -> None:
        if dst in honest and rpc.publish:
            for m in rpc.publish:
                copies[m.id] += 1

    net.observe = observe
    net.clock.run()

    latencies: list[float] = []
    delivered = 0
    victim_delivered = 0
    victim_set = set(victims)
    for name in names:
        for when, event in net.events[name]:
            if isinstance(event, Received) and event.id in measured:
                delivered += 1
                latencies.append(when - measured[event.id][1])
                if name in victim_set:
                    victim_delivered += 1
    expected = len(measured) * (len(names) - 1)
    victim_expected = len(measured) * len(victims)
    total_copies = sum(copies[mid] for mid in measured)
    slots = sybil_slots = 0
    sybil_set = set(sybils)
    for name in names:
        mesh = net.cores[name].mesh_peers(TOPIC)
        slots += len(mesh)
        sybil_slots += sum(1 for x in mesh if x in sybil_set)
    return PubSubResult(
        scenario=sc,
        messages=len(measured),
        delivery=delivered / expected if expected else 0.0,
        victim_delivery=victim_delivered / victim_expected if victim_expected else 1.0,
        latency_p50=statistics.median(latencies) if latencies else math.inf,
        latency_p99=_p(latencies, 0.99) if latencies else math.inf,
        duplicates=(total_copies - delivered) / delivered if delivered else 0.0,
        rpcs_per_node=sum(net.sent[n] for n in names) / len(names),
        sybils_in_mesh=sybil_slots / slots if slots else 0.0,
        mesh_degree=slots / len(names),
        px_dials=sum(net.px_dials[n] for n in names),
    )


@dataclass(frozen=True)
class AnonymityScenario:
    anonymous: bool = True
    honest: int = 1000
    out_degree: int = 8
    spies: float = 0.1  # share of the nodes
    messages: int = 100
    warmup: float = 20.0
    window: float = 20.0
    drain: float = 30.0
    stem_fluff: float = 0.25
    mix_delay: float = 0.0  # mean of an exponential delay added to every anonymous forward
    latency_median: float = 0.6
    latency_sigma: float = 0.5
    codec: bool = True

    def label(self) -> str:
        if not self.anonymous:
            return "plain gossip (flood publishing)"
        mix = f", mix delay {self.mix_delay:g} s" if self.mix_delay else ""
        return f"anonymous: stem q={self.stem_fluff:g}{mix}"


@dataclass(frozen=True)
class AnonymityResult:
    scenario: AnonymityScenario
    messages: int
    first_spy: float  # probability that the first-spy estimator names the publisher
    delivery: float
    latency_p50: float
    latency_p99: float


def simulate_anonymity(sc: AnonymityScenario, seed: int) -> AnonymityResult:
    """The first-spy estimator against plain gossip or an anonymous topic."""
    rng = random.Random(seed)
    net = _Network(rng.getrandbits(64), sc.latency_median, sc.latency_sigma, sc.codec)
    params = dataclasses.replace(GossipParams(), stem_fluff=sc.stem_fluff)
    delay_rng = random.Random(rng.getrandbits(64))
    forward_delay = ((lambda topic: delay_rng.expovariate(1.0 / sc.mix_delay))
                     if sc.mix_delay > 0 else None)
    score = ScoreParams(default_topic=SIM_TOPIC_SCORE)
    names = _build_honest(net,
                          PubSubScenario(honest=sc.honest, out_degree=sc.out_degree), params,
                          score, rng, forward_delay, anonymous=sc.anonymous)
    spies = set(rng.sample(names, round(sc.spies * len(names))))
    first: dict[bytes, tuple[float, str]] = {}

    def observe(dst: str, src: str, rpc: Rpc) -> None:
        if dst not in spies or src in spies:
            return
        now = net.clock.now
        for m in rpc.publish + rpc.stem:
            mid = m.id
            if mid not in first:
                first[mid] = (now, src)

    net.observe = observe
    end = sc.warmup + sc.window + sc.drain
    net.heartbeats(end)
    honest_publishers = [n for n in names if n not in spies]
    measured: dict[bytes, tuple[str, float]] = {}

    def publish(who: str, body: bytes) -> None:
        measured[net.cores[who].publish(TOPIC, body)] = (who, net.clock.now)

    for k in range(sc.messages):
        who = rng.choice(honest_publishers)
        net.at(sc.warmup + rng.uniform(0, sc.window),
               functools.partial(publish, who, b"message %d" % k))
    net.clock.run()
    named = sum(1 for mid, (who, _) in measured.items()
                if mid in first and first[mid][1] == who)
    latencies = []
    delivered = 0
    for name in names:
        for when, event in net.events[name]:
            if isinstance(event, Received) and event.id in measured:
                delivered += 1
                latencies.append(when - measured[event.id][1])
    n = len(measured)
    return AnonymityResult(
        scenario=sc, messages=n, first_spy=named / n if n else 0.0,
        delivery=delivered / (n * (len(names) - 1)) if n else 0.0,
        latency_p50=statistics.median(latencies) if latencies else math.inf,
        latency_p99=_p(latencies, 0.99) if latencies else math.inf,
    )


def fingerprint(results: Sequence[PubSubResult | AnonymityResult]) -> str:
    """A short hash of the figures (two runs with one seed print the same)."""
    text = repr([dataclasses.astuple(r) for r in results])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
