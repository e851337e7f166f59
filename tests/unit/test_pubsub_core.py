"""The pub/sub core on a task.Clock: mesh upkeep, gossip, scores, catch-up, anonymity, acks."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from twisted.internet.task import Clock

from aegis_hidden.pubsub import (
    Ack,
    CatchUpAnswer,
    DeliveryState,
    Ed25519Signer,
    Event,
    GossipParams,
    Graft,
    IdentityCost,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerScore,
    PeersOffered,
    PubSubCore,
    PubSubError,
    Received,
    Rpc,
    ScoreParams,
    Thresholds,
    TopicScoreParams,
    decode,
    encode,
    signed_body,
)

T = "chat"


class Net:
    """Cores joined by links with a fixed delay; every RPC crosses the real codec."""

    def __init__(self, names: Iterable[str], *, seed: int = 1, delay: float = 0.1,
                 **core_kwargs: object) -> None:
        self.clock = Clock()
        self.delay = delay
        self.rng = random.Random(seed)
        self.events: dict[str, list[Event]] = {}
        self.sent: list[tuple[str, str, Rpc, float]] = []
        self.signers: dict[str, Ed25519Signer] = {}
        self.cores: dict[str, PubSubCore] = {}
        self.down: set[str] = set()
        for name in names:
            self.add(name, **core_kwargs)

    def add(self, name: str, **kwargs: object) -> PubSubCore:
        self.events[name] = []
        self.signers[name] = Ed25519Signer.from_rng(self.rng)

        def send(peer: str, rpc: Rpc, delay: float) -> None:
            self._send(name, peer, rpc, delay)

        core = PubSubCore(clock=self.clock.seconds, rng=random.Random(self.rng.getrandbits(64)),
                          send=send,
                          on_event=self.events[name].append, signer=self.signers[name],
                          **kwargs)  # type: ignore[arg-type]
        self.cores[name] = core
        return core

    def _send(self, src: str, dst: str, rpc: Rpc, delay: float) -> None:
        self.sent.append((src, dst, rpc, delay))
        data = encode(rpc)

        def arrive() -> None:
            if dst in self.cores and dst not in self.down and src in self.cores[dst].peers:
                self.cores[dst].receive(src, data)

        self.clock.callLater(self.delay + delay, arrive)

    def connect(self, a: str, b: str) -> None:
        self.cores[a].add_peer(b, outbound=True)
        self.cores[b].add_peer(a, outbound=False)

    def full_mesh(self) -> None:
        names = sorted(self.cores)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                self.connect(a, b)

    def run(self, seconds: float, step: float = 0.05) -> None:
        """Advance time; every core's heartbeat fires each second."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end - 1e-9:
            before = int(self.clock.seconds())
            self.clock.advance(step)
            if int(self.clock.seconds() + 1e-9) > before:
                for name, core in self.cores.items():
                    if name not in self.down:
                        core.heartbeat()

    def received(self, name: str) -> list[Received]:
        return [e for e in self.events[name] if isinstance(e, Received)]


def _sent(net: Net, src: str, dst: str) -> list[Rpc]:
    return [rpc for s, d, rpc, _ in net.sent if s == src and d == dst]


# -- mesh -----------------------------------------------------------------------------------
def test_meshes_form_within_bounds_and_are_symmetric() -> None:
    net = Net([f"n{i:02d}" for i in range(20)])
    net.full_mesh()
    for core in net.cores.values():
        core.subscribe(T)
    net.run(10)
    p = GossipParams()
    for name, core in net.cores.items():
        mesh = core.mesh_peers(T)
        assert p.d_lo <= len(mesh) <= p.d_hi, (name, mesh)
        for peer in mesh:
            assert name in net.cores[peer].mesh_peers(T), (name, peer)


def _hub(outbound: bool) -> tuple[Net, list[str]]:
    names = ["hub"] + [f"s{i:02d}" for i in range(16)]
    net = Net(names, thresholds=Thresholds(accept_px=0.0))
    for n in names[1:]:
        if outbound:
            net.connect("hub", n)
        else:
            net.connect(n, "hub")
    for n in names:
        net.cores[n].subscribe(T)
    return net, names[1:]


def test_an_oversubscribed_mesh_is_pruned_back_to_d_with_peer_exchange() -> None:
    net, spokes = _hub(outbound=True)  # the hub dialed them: their GRAFTs are all taken
    net.run(1.5)
    hub = net.cores["hub"]
    assert len(hub.mesh_peers(T)) == 16
    net.run(1)
    p = GossipParams()
    assert len(hub.mesh_peers(T)) == p.d
    offered = [e for n in spokes for e in net.events[n] if isinstance(e, PeersOffered)]
    assert len(offered) == 16 - p.d
    assert all(e.source == "hub" and e.topic == T for e in offered)
    assert all(0 < len(e.peers) <= 16 and all(x.peer != "hub" for x in e.peers) for e in offered)
    pruned = [n for n in spokes if "hub" not in net.cores[n].mesh_peers(T)]
    assert len(pruned) == 16 - p.d


def test_peer_exchange_offers_only_new_peers_and_the_owner_dials_them() -> None:
    net, spokes = _hub(outbound=True)
    net.connect("s00", "s01")  # s00 already has a session with s01
    net.run(2.5)
    offered = {n: [e for e in net.events[n] if isinstance(e, PeersOffered)] for n in spokes}
    pruned = [n for n in spokes if offered[n]]
    assert len(pruned) == 16 - GossipParams().d
    for n in pruned:
        for e in offered[n]:
            names = {x.peer for x in e.peers}
            assert names and not names & (set(net.cores[n].peers) | {n, "hub"}), (n, names)
    a = next(n for n in pruned if n not in ("s00", "s01"))
    assert net.cores[a].mesh_peers(T) == []  # the hub was its only peer, and it is backed off
    for x in offered[a][0].peers:  # what the node does with a PeersOffered: dial each
        net.connect(a, x.peer)
    net.run(2)
    new = {x.peer for x in offered[a][0].peers}
    assert net.cores[a].mesh_peers(T) and set(net.cores[a].mesh_peers(T)) <= new
    assert net.cores[a].peers[next(iter(new))].outbound


def test_peer_exchange_from_a_peer_below_accept_px_is_ignored() -> None:
    names = ["hub"] + [f"s{i:02d}" for i in range(16)]
    net = Net(names)  # default accept_px: 5, which a peer of two seconds does not reach
    for n in names[1:]:
        net.connect("hub", n)
    for n in names:
        net.cores[n].subscribe(T)
    net.run(2.5)
    assert len(net.cores["hub"].mesh_peers(T)) == GossipParams().d
    assert not any(isinstance(e, PeersOffered) for n in names for e in net.events[n])


def test_inbound_grafts_stop_at_d_hi_and_the_rest_are_pruned_with_px() -> None:
    net, spokes = _hub(outbound=False)
    net.run(3)
    hub = net.cores["hub"]
    p = GossipParams()
    assert p.d_lo <= len(hub.mesh_peers(T)) <= p.d_hi
    refused = [n for n in spokes if "hub" not in net.cores[n].mesh_peers(T)]
    assert len(refused) >= 16 - p.d_hi
    assert all(any(isinstance(e, PeersOffered) for e in net.events[n]) for n in refused)


def test_a_graft_during_backoff_is_penalised_and_refused() -> None:
    net = Net(["a", "b"])
    net.connect("a", "b")
    net.cores["a"].subscribe(T)
    net.cores["b"].subscribe(T)
    net.run(2)
    a = net.cores["a"]
    assert a.mesh_peers(T) == ["b"]
    a._prune(T, "b", 60.0, px=False)  # a prunes b: b is in backoff for a minute
    net.run(1)
    before = a.score("b")
    a.handle("b", Rpc(graft=(Graft(T),)))
    assert "b" not in a.mesh_peers(T)
    assert a.stats["graft during backoff"] == 1
    a.handle("b", Rpc(graft=(Graft(T),)))
    assert a.score("b") < before  # P7 past its threshold
    assert a.score("b") < 0


# -- delivery and gossip --------------------------------------------------------------------
def test_a_message_reaches_every_subscriber_once() -> None:
    net = Net([f"n{i:02d}" for i in range(30)])
    names = sorted(net.cores)
    for i, a in enumerate(names):  # a ring with chords: not everyone knows the publisher
        for j in (1, 2, 5):
            net.connect(a, names[(i + j) % len(names)])
    for core in net.cores.values():
        core.subscribe(T)
    net.run(5)
    mid = net.cores["n00"].publish(T, b"hello")
    net.run(5)
    for name in names[1:]:
        got = [e for e in net.received(name) if e.id == mid]
        assert len(got) == 1, name
        assert got[0].author == net.signers["n00"].identity and got[0].data == b"hello"
    assert net.received("n00") == []  # own messages are not delivered back


def test_ihave_leads_to_iwant_then_the_message() -> None:
    net = Net(["x", "p"], params=GossipParams(flood_publish=False))
    net.connect("x", "p")
    x, p = net.cores["x"], net.cores["p"]
    x.subscribe(T)
    p.subscribe(T)
    net.run(1.5)
    # take p out of x's mesh and keep it out (backoff), so x only hears of p's message by gossip
    x._prune(T, "p", 600.0, px=False)
    net.run(1)
    assert x.mesh_peers(T) == [] and p.mesh_peers(T) == []
    net.sent.clear()
    mid = p.publish(T, b"gossiped")
    assert net.sent == []  # no mesh, no flood publishing: nothing sent yet
    net.run(1.5)
    ihaves = [ih for rpc in _sent(net, "p", "x") for ih in rpc.ihave]
    iwants = [iw for rpc in _sent(net, "x", "p") for iw in rpc.iwant]
    assert any(mid in ih.ids for ih in ihaves)
    assert any(mid in iw.ids for iw in iwants)
    assert [e.id for e in net.received("x")] == [mid]
    assert p.stats["iwant served"] == 1


def test_a_broken_iwant_promise_is_a_behaviour_penalty() -> None:
    net = Net(["x", "liar"])
    net.connect("x", "liar")
    x = net.cores["x"]
    x.subscribe(T)
    net.run(1)
    for n in range(3):
        x.handle("liar", Rpc(ihave=(IHave(T, (bytes([n]) * 20,)),)))
        net.run(x.params.iwant_followup + 1)
    assert x.stats["broken promise"] == 3
    assert x.score("liar") < 0


def test_idontwant_for_large_messages() -> None:
    net = Net(["a", "b", "c"])
    net.connect("a", "b")
    net.connect("b", "c")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    assert sorted(net.cores["b"].mesh_peers(T)) == ["a", "c"]
    net.sent.clear()
    mid = net.cores["a"].publish(T, bytes(5000))
    net.run(1)
    told = [rpc for s, d, rpc, _ in net.sent if s == "b" and d == "c" and rpc.idontwant]
    assert told and mid in told[0].idontwant[0].ids
    net.sent.clear()
    net.cores["a"].publish(T, b"small")
    net.run(1)
    assert not [rpc for _, _, rpc, _ in net.sent if rpc.idontwant]


def test_a_peer_that_said_idontwant_is_not_sent_the_message() -> None:
    net = Net(["x", "y", "z", "w"])
    for peer in ("y", "z", "w"):
        net.connect("x", peer)
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    x = net.cores["x"]
    assert x.mesh_peers(T) == ["w", "y", "z"]
    signer = net.signers["z"]
    body = signed_body(T, bytes(16), b"big", False, signer.identity, ())
    m = Message(T, b"big", bytes(16), False, signer.identity, signer.sign(body))
    net.sent.clear()
    x.handle("y", Rpc(idontwant=(IDontWant((m.id,)),)))
    x.handle("z", Rpc(publish=(m,)))
    assert sorted(d for s, d, rpc, _ in net.sent if s == "x" and rpc.publish) == ["w"]


# -- scoring ----------------------------------------------------------------------------------
def _forged(net: Net, topic: str, by: str) -> Message:
    signer = net.signers[by]
    body = signed_body(topic, bytes(16), b"forged", False, signer.identity, ())
    sig = bytearray(signer.sign(body))
    sig[0] ^= 1
    return Message(topic, b"forged", bytes(16), False, signer.identity, bytes(sig))


def _bad(net: Net, n: int) -> Message:
    return Message(T, b"x%d" % n, bytes([n]) * 16, False, net.signers["bad"].identity, b"s")


def test_invalid_signatures_cost_p4_then_gossip_publish_and_graylist_thresholds() -> None:
    net = Net(["x", "bad", "good"])
    net.connect("x", "bad")
    net.connect("x", "good")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    x = net.cores["x"]
    assert x.score("bad") >= 0
    x.handle("bad", Rpc(publish=(_forged(net, T, "bad"),)))
    assert x.stats["invalid: signature"] == 1
    assert net.received("x") == []
    # one invalid message (P4 = -20 x 1^2): below the gossip threshold, above publish
    assert x.thresholds.publish < x.score("bad") < x.thresholds.gossip
    ids = (bytes(20),)
    x.handle("bad", Rpc(ihave=(IHave(T, ids),)))
    assert x.stats["ihave ignored: score"] == 1
    net.sent.clear()
    x.publish(T, b"to both")
    assert sorted(d for _, d, rpc, _ in net.sent if rpc.publish) == ["bad", "good"]
    # a second one (-20 x 2^2): below publish, not yet graylisted
    x.handle("bad", Rpc(publish=(_bad(net, 1),)))
    assert x.thresholds.graylist < x.score("bad") < x.thresholds.publish
    net.sent.clear()
    x.publish(T, b"to the good one")
    assert [d for _, d, rpc, _ in net.sent if rpc.publish] == ["good"]
    # a third (-20 x 3^2): graylisted, its RPCs are ignored
    x.handle("bad", Rpc(publish=(_bad(net, 2),)))
    assert x.score("bad") < x.thresholds.graylist
    x.handle("bad", Rpc(iwant=(IWant(ids),)))
    assert x.stats["graylisted"] == 1
    net.run(2)
    assert "bad" not in x.mesh_peers(T)  # a negative score leaves the mesh at the heartbeat
    assert "good" in x.mesh_peers(T)


def test_a_mesh_peer_that_never_delivers_loses_its_place_p3() -> None:
    params = ScoreParams(default_topic=TopicScoreParams(mesh_deliveries_activation=5.0,
                                                         mesh_deliveries_threshold=2.0,
                                                         time_in_mesh_weight=0.0))
    net = Net(["pub", "x", "sink"], score_params=params)
    net.connect("pub", "x")
    net.connect("x", "sink")
    net.connect("pub", "sink")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    x = net.cores["x"]
    assert sorted(x.mesh_peers(T)) == ["pub", "sink"]
    net.down.add("sink")  # sink receives nothing and forwards nothing from now on
    for n in range(10):
        net.cores["pub"].publish(T, b"m%d" % n)
        net.run(1)
    assert x.score("pub") > 0  # first deliveries
    assert x.score("sink") < 0  # the deficit, squared, once active
    assert "sink" not in x.mesh_peers(T)


def test_a_quiet_topic_costs_its_mesh_peers_nothing_p3() -> None:
    """Nothing published: no peer owes a delivery, so the mesh stays (it was pruned on
    P3's deficit once active)."""
    params = ScoreParams(default_topic=TopicScoreParams(mesh_deliveries_activation=5.0,
                                                         mesh_deliveries_threshold=2.0,
                                                         time_in_mesh_weight=0.0))
    net = Net(["a", "b"], score_params=params)
    net.connect("a", "b")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(120)
    a, b = net.cores["a"], net.cores["b"]
    assert a.score("b") == 0.0 and b.score("a") == 0.0
    assert a.mesh_peers(T) == ["b"] and b.mesh_peers(T) == ["a"]


def test_p3_owes_what_the_topic_carried_and_keeps_the_deficit_of_a_withholder() -> None:
    clock = Clock()
    p = TopicScoreParams(mesh_deliveries_activation=3.0, mesh_deliveries_threshold=4.0,
                         time_in_mesh_weight=0.0, first_deliveries_weight=0.0)
    score = PeerScore(ScoreParams(default_topic=p), clock.seconds)
    for peer in ("quiet", "giver", "withholder"):
        score.add_peer(peer)
        score.graft(peer, T)
        score.graft(peer, "idle")
    for _ in range(5):
        clock.advance(1)
        score.decay()
    assert score.expected(T) == 0.0 and score.score("quiet") == 0.0
    for _ in range(3):  # the giver delivers 3 messages first, the withholder none
        score.first_delivery("giver", T)
    assert score.expected(T) == 3.0
    assert score.score("giver") == 0.0
    assert score.score("withholder") == pytest.approx(-9.0)  # (3 - 0)^2
    # the quiet peer delivered none of them either; its floor computed before does not hide it
    assert score.at_least("quiet", -1.0) is False
    for _ in range(6):
        score.first_delivery("giver", T)
    assert score.expected(T) == 4.0 and score.score("withholder") == pytest.approx(-16.0)
    score.prune("withholder", "idle")  # P3b: the idle topic owed nothing
    score.prune("withholder", T)
    clock.advance(1)
    score.decay()
    assert score.score("withholder") == pytest.approx(-16.0 * p.mesh_failure_penalty_decay)


def test_time_in_mesh_first_deliveries_and_the_identity_term() -> None:
    ages = {"old": IdentityCost(30 * 86400, 24), "new": IdentityCost(0, 0)}
    net = Net(["x", "old", "new"], identity=ages.get)
    net.connect("x", "old")
    net.connect("x", "new")
    x = net.cores["x"]
    assert x.score("old") == pytest.approx(ScoreParams().identity_weight)
    assert x.score("new") == 0.0
    for core in net.cores.values():
        core.subscribe(T)
    net.run(1)
    s0 = x.score("new")
    net.run(20)
    assert x.score("new") > s0  # P1 grows with time in the mesh
    before = x.score("new")
    net.cores["new"].publish(T, b"first")
    net.run(1)
    assert x.score("new") > before + 0.5  # P2


def test_thresholds_are_ordered() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Thresholds(gossip=-100, publish=-50)
    with pytest.raises(ValueError, match="d_lo"):
        GossipParams(d=3, d_lo=4)
    with pytest.raises(ValueError, match="seen_ttl"):
        GossipParams(seen_ttl=10, retain=600)


def test_scoring_off_keeps_everyone_at_zero() -> None:
    net = Net(["x", "bad"], params=GossipParams(scoring=False))
    net.connect("x", "bad")
    net.cores["x"].subscribe(T)
    x = net.cores["x"]
    x.handle("bad", Rpc(publish=(_forged(net, T, "bad"),)))
    assert x.stats["invalid: signature"] == 1 and x.score("bad") == 0.0


# -- invalid input ------------------------------------------------------------------------------
def test_malformed_bytes_and_wrong_kind_are_held_against_the_sender() -> None:
    net = Net(["x", "y"])
    net.connect("x", "y")
    x = net.cores["x"]
    x.subscribe(T)
    for _ in range(3):
        x.receive("y", b"\xff\xfe garbage")
    assert x.stats["malformed"] == 3 and x.score("y") < 0
    net2 = Net(["x", "y"])
    net2.connect("x", "y")
    x2 = net2.cores["x"]
    x2.subscribe(T)  # a normal topic: an anonymous message is invalid here
    y2 = net2.cores["y"]
    y2.subscribe("other", anonymous=True)
    net2.run(1)
    mid = y2.publish(T, b"wrong kind", anonymous=True)
    net2.run(30)
    assert x2.stats["invalid: wrong kind for the topic"] >= 1
    assert x2.score("y") < 0
    assert all(e.id != mid for e in net2.received("x"))
    with pytest.raises(PubSubError):
        y2.publish("other", b"x", anonymous=False)


# -- catch-up ----------------------------------------------------------------------------------
def test_a_subscriber_that_was_offline_catches_up_from_its_peers_history() -> None:
    net = Net(["a", "b", "late"])
    net.connect("a", "b")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    mids = [net.cores["a"].publish(T, b"m%d" % n) for n in range(5)]
    net.run(3)
    late = net.cores["late"]
    assert net.received("late") == []
    net.connect("late", "b")
    net.run(2)
    asked = late.catch_up(T, 3600)
    assert asked == ["b"]
    net.run(1)
    got = net.received("late")
    assert [e.id for e in got] == mids and all(e.caught_up for e in got)
    # a second answer brings nothing twice; asking again too soon is penalised
    b = net.cores["b"]
    late.catch_up(T, 3600)
    net.run(1)
    assert b.stats["catch-up: too soon"] == 1
    assert len(net.received("late")) == 5
    # an answer nobody asked for is penalised
    before = late.stats["catch-up: unasked answer"]
    late.handle("b", Rpc(catch_up_answer=CatchUpAnswer("never asked", ())))
    assert late.stats["catch-up: unasked answer"] == before + 1


def test_history_is_bounded_by_time() -> None:
    params = GossipParams(retain=10.0, seen_ttl=10.0)
    net = Net(["a", "b", "late"], params=params)
    net.connect("a", "b")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(1)
    net.cores["a"].publish(T, b"old")
    net.run(20)
    new = net.cores["a"].publish(T, b"new")
    net.run(1)
    net.connect("late", "b")
    net.run(1)
    net.cores["late"].catch_up(T, 3600)
    net.run(1)
    assert [e.id for e in net.received("late")] == [new]


# -- anonymous topics ------------------------------------------------------------------------------
def test_anonymous_messages_carry_no_identity_and_are_stemmed_to_one_relay() -> None:
    net = Net([f"n{i}" for i in range(8)], params=GossipParams(stem_fluff=0.5))
    net.full_mesh()
    for core in net.cores.values():
        core.subscribe(T, anonymous=True)
    net.run(3)
    net.sent.clear()
    pub = net.cores["n0"]
    mid = pub.publish(T, b"whistle")
    first = [(d, rpc) for s, d, rpc, _ in net.sent if s == "n0"]
    assert len(first) == 1 and first[0][1].stem and not first[0][1].publish
    m = first[0][1].stem[0]
    assert m.anonymous and m.key not in {s.identity for s in net.signers.values()}
    net.run(30)
    for name in sorted(net.cores)[1:]:
        got = [e for e in net.received(name) if e.id == mid]
        assert len(got) == 1 and got[0].author is None
    # the same relay for every message of the epoch
    net.sent.clear()
    pub.publish(T, b"again")
    assert [d for s, d, rpc, _ in net.sent if s == "n0"] == [first[0][0]]


def test_the_embargo_fluffs_a_stem_that_was_swallowed() -> None:
    net = Net(["pub", "sink", "c"], params=GossipParams(stem_fluff=0.01, embargo_base=5,
                                                        embargo_mean=1))
    net.connect("pub", "sink")
    net.connect("pub", "c")
    for core in net.cores.values():
        core.subscribe(T, anonymous=True)
    net.run(2)
    pub = net.cores["pub"]
    pub._stem_relay[T] = ("sink", 1e9)
    net.down.add("sink")  # the relay swallows the stem
    mid = pub.publish(T, b"stemmed")
    net.run(3)
    assert all(e.id != mid for e in net.received("c"))
    net.run(15)
    assert pub.stats["embargo fluffed"] == 1
    assert [e.id for e in net.received("c")] == [mid]


def test_forwarding_delays_from_the_mixing_layer_apply_to_anonymous_topics() -> None:
    delays: list[str] = []

    def delay(topic: str) -> float:
        delays.append(topic)
        return 2.5

    net = Net(["a", "b"], forward_delay=delay)
    net.connect("a", "b")
    for core in net.cores.values():
        core.subscribe(T, anonymous=True)
        core.subscribe("plain")
    net.run(2)
    net.sent.clear()
    net.cores["a"].publish(T, b"slow")
    assert [d for *_, d in net.sent] == [2.5] and delays == [T]
    net.sent.clear()
    net.cores["a"].publish("plain", b"fast")
    assert [d for *_, d in net.sent] == [0.0] and delays == [T]


# -- delivery confirmation -------------------------------------------------------------------------
def test_named_subscribers_acknowledge_along_the_reverse_path() -> None:
    net = Net(["a", "b", "c", "d"], params=GossipParams(ack_timeout=20))
    net.connect("a", "b")
    net.connect("b", "c")
    net.connect("c", "d")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    c_id, d_id = net.signers["c"].identity, net.signers["d"].identity
    ghost = b"\x01" * 32
    mid = net.cores["a"].publish(T, b"confirm", ack_from=[c_id, d_id, ghost])
    net.run(3)
    states = [e for e in net.events["a"] if isinstance(e, DeliveryState)]
    assert {(e.id, e.subscriber, e.state) for e in states} == {
        (mid, c_id, "acknowledged"), (mid, d_id, "acknowledged")}
    net.run(20)
    states = [e for e in net.events["a"] if isinstance(e, DeliveryState)]
    assert (mid, ghost, "expired") in {(e.id, e.subscriber, e.state) for e in states}
    assert len(states) == 3


def test_a_forged_ack_is_refused() -> None:
    net = Net(["a", "b"])
    net.connect("a", "b")
    for core in net.cores.values():
        core.subscribe(T)
    net.run(2)
    b_id = net.signers["b"].identity
    mid = net.cores["a"].publish(T, b"x", ack_from=[b_id])
    net.cores["a"].handle("b", Rpc(acks=(Ack(mid, b_id, bytes(64)),)))
    assert net.cores["a"].stats["ack invalid"] == 1
    assert not [e for e in net.events["a"] if isinstance(e, DeliveryState)]


def test_rpc_batches_decode() -> None:
    net = Net(["a", "b"])
    net.connect("a", "b")
    net.cores["a"].subscribe(T)
    for _, _, rpc, _ in net.sent:
        assert decode(encode(rpc)) == rpc


def test_stems_beyond_the_rate_are_dropped_and_penalised() -> None:
    net = Net(["x", "y"], params=GossipParams(max_stems=3))
    net.connect("x", "y")
    x = net.cores["x"]
    x.subscribe(T, anonymous=True)
    stems = []
    for n in range(5):
        m = Message(T, b"s%d" % n, bytes([n]) * 16, True, bytes(32), bytes(64))
        stems.append(m)
    x.handle("y", Rpc(stem=tuple(stems)))
    assert x.stats["stem over the rate"] == 1
    assert x.stats["invalid: signature"] == 3  # the first three were looked at (and are forged)


def test_small_order_keys_are_refused_though_their_forged_signatures_would_verify() -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from aegis_hidden.pubsub import verify_ed25519, weak_ed25519_key

    p = 2**255 - 19
    order8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
    weak = [bytes(32), (1).to_bytes(32, "little"), (p - 1).to_bytes(32, "little"), order8,
            (p - int.from_bytes(order8, "little")).to_bytes(32, "little"),
            (p + 1).to_bytes(32, "little")]
    forged = 0
    for key in weak:
        assert weak_ed25519_key(key)
        for n in range(8):
            signature = (1).to_bytes(32, "little") + bytes(32)  # R = identity, S = 0
            data = b"m%d" % n
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(signature, data)
            except (InvalidSignature, ValueError):
                continue
            finally:
                assert not verify_ed25519(key, data, signature)
            forged += 1
    assert forged > 0  # the library alone accepts some of them
    good = Ed25519Signer.from_rng(random.Random(3))
    assert not weak_ed25519_key(good.identity)
    assert verify_ed25519(good.identity, b"x", good.sign(b"x"))


def test_at_least_answers_as_a_fresh_score_would_through_events_and_decays() -> None:
    """The floor ``at_least`` keeps across first deliveries and decays never says yes
    where the score, computed afresh, says no (and agrees with it everywhere)."""
    params = ScoreParams(default_topic=TopicScoreParams(
        first_deliveries_decay=0.8, mesh_deliveries_threshold=3.0, mesh_deliveries_weight=-4.0,
        mesh_deliveries_activation=3.0, mesh_failure_penalty_weight=-3.0))
    for seed in range(30):
        rng = random.Random(seed)
        clock = Clock()
        identity = {"p": IdentityCost(3 * 86400, 12)}.get
        sut = PeerScore(params, clock.seconds, identity)
        ref = PeerScore(params, clock.seconds, identity)
        for s in (sut, ref):
            s.add_peer("p")
        for _ in range(200):
            event = rng.choice(["graft", "prune", "first", "near", "near", "invalid", "penalty",
                                "decay", "decay", "first", "first"])
            for s in (sut, ref):
                if event == "graft":
                    s.graft("p", T)
                elif event == "prune":
                    s.prune("p", T)
                elif event == "first":
                    s.first_delivery("p", T)
                elif event == "near":
                    s.near_first_delivery("p", T, clock.seconds())
                elif event == "invalid":
                    s.invalid("p", T)
                elif event == "penalty":
                    s.penalty("p")
            if event == "decay":
                clock.advance(1)  # time moves only here, so every score of an interval agrees
                sut.decay()
                ref.decay()
            for threshold in (-80.0, -50.0, -10.0, -1.0, 0.0, 0.5, 2.0):
                ref._cached.clear()
                ref._floor.clear()
                assert sut.at_least("p", threshold) == (ref.score("p") >= threshold), (
                    seed, event, threshold)
