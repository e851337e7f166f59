"""Topic pub/sub as the node runs it (PubSubService): fake sessions, real identities,
a task.Clock."""

from __future__ import annotations

import base64
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from aegis_hidden import identity
from aegis_hidden.config import Config, parse_config
from aegis_hidden.dht import check_puzzle, node_id
from aegis_hidden.events import EventBus
from aegis_hidden.node import (
    DhtService,
    IdentityService,
    NodeCore,
    PubSubService,
    TopicError,
    TopicKeyError,
    TopicMessageTooLarge,
    TopicRateLimited,
)
from aegis_hidden.node._pubsub import NodeSigner, NodeVerifier, rendezvous_id
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.pubsub import PeerInfo, PeersOffered, make_invitation
from aegis_hidden.testing import FakeNetwork, result_of

NOW = 1_800_000_000


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, tmp: Path, name: str, seed: int,
                 cfg: Config | None = None) -> None:
        self.ident = identity.create(tmp / f"id-{name}", clock.seconds() - 10)
        self.onion = self.ident.onion
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.cfg = cfg or parse_config({"pubsub": {"broadcast": False}})
        self.service = IdentityService(self.ident, clock)
        self.core = NodeCore(self.cfg, self.service, str(tmp), bus, clock,
                             db=InlineSQLite(str(tmp / f"{name}.db")), local_address=self.onion)
        self.core.attach_session_factory(net.node(self.onion))
        self.core.startService()
        result_of(self.core.when_ready())
        self.pubsub = PubSubService(self.core, self.cfg.pubsub, self.service, clock,
                                    rng=random.Random(seed))
        self.pubsub.startService()

    def connect(self, other: Node) -> None:
        result_of(self.core.store.add(other.onion))
        result_of(self.core.pool.get(other.onion))

    def received(self, topic: str) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e["type"] == "message_received" and e.get("topic") == topic]


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


def run(clock: Clock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)


def mesh(clock: Clock, tmp: Path, n: int) -> list[Node]:
    net = FakeNetwork()
    nodes = [Node(net, clock, tmp, f"n{i}", i) for i in range(n)]
    for i, a in enumerate(nodes):  # a line: n0 - n1 - n2 ...; nobody knows everyone
        if i + 1 < n:
            a.connect(nodes[i + 1])
    return nodes


def test_three_nodes_each_receive_every_message_once(clock: Clock, tmp_path: Path) -> None:
    nodes = mesh(clock, tmp_path, 3)
    for node in nodes:
        node.pubsub.subscribe("news")
    run(clock, 3)
    published = [nodes[0].pubsub.publish("news", {"type": "text", "data": "first"}),
                 nodes[2].pubsub.publish("news", {"type": "text", "data": "second"})]
    run(clock, 10)
    for i, node in enumerate(nodes):
        got = node.received("news")
        others = {p for j, p in enumerate(published) if j != (0 if i == 0 else 1)}
        if i == 1:
            others = set(published)
        assert sorted(e["id"] for e in got) == sorted(others)  # each once, none of its own
        for e in got:
            assert e["message"]["type"] == "text" and "peer" not in e
    first = next(e for e in nodes[2].received("news") if e["id"] == published[0])
    assert first["author"] == nodes[0].onion and first["message"]["data"] == "first"
    topics = nodes[1].pubsub.topics()
    assert topics[0]["topic"] == "news" and topics[0]["messages_in"] == 2
    assert {m["peer"] for m in topics[0]["mesh"]} == {nodes[0].onion, nodes[2].onion}
    assert nodes[0].core.metrics.counters["pubsub_published"] == 1
    assert nodes[1].core.metrics.counters["pubsub_delivered"] == 2
    run(clock, 400, step=5)  # a quiet topic, longer than the pool's idle timeout
    assert nodes[1].core.pool.connected(nodes[0].onion)
    later = nodes[0].pubsub.publish("news", {"type": "text", "data": "still there"})
    run(clock, 5)
    assert [e["id"] for e in nodes[2].received("news")][-1] == later


def test_peers_this_node_dialed_are_outbound_for_the_mesh_quota(clock: Clock,
                                                                 tmp_path: Path) -> None:
    a, b, c = mesh(clock, tmp_path, 3)  # a dialed b, b dialed c
    assert a.core.pool.dialed(b.onion) and not b.core.pool.dialed(a.onion)
    assert a.pubsub.pubsub.peers[b.onion].outbound
    assert not b.pubsub.pubsub.peers[a.onion].outbound
    assert b.pubsub.pubsub.peers[c.onion].outbound
    b.core.pool.close(c.onion, "test")
    assert not b.core.pool.dialed(c.onion) and c.onion not in b.pubsub.pubsub.peers


def test_a_subscription_arriving_before_the_pool_reports_the_session(clock: Clock,
                                                                     tmp_path: Path) -> None:
    net = FakeNetwork()
    a, b = Node(net, clock, tmp_path, "a", 1), Node(net, clock, tmp_path, "b", 2)
    a.pubsub.subscribe("news")
    b.pubsub.subscribe("news")
    listeners = b.core.pool._connected_listeners
    held: list[str] = []
    late = b.pubsub._connected
    listeners[listeners.index(late)] = held.append  # b's pool reports the session late
    a.connect(b)
    run(clock, 2)  # a's SUBSCRIBE (sent once, on connecting) reached b meanwhile
    assert held == [a.onion]
    late(held.pop())  # the report comes: the frames held are handed in
    assert b.pubsub.pubsub.stats["from unknown peer"] == 0
    assert b.pubsub.pubsub.peers[a.onion].topics == {"news"}  # before any GRAFT from a
    assert not b.pubsub.pubsub.peers[a.onion].outbound and a.pubsub.pubsub.peers[b.onion].outbound
    run(clock, 5)
    assert "news" in b.pubsub.pubsub.peers[a.onion].topics
    assert b.pubsub.pubsub.mesh["news"] == {a.onion} and a.pubsub.pubsub.mesh["news"] == {b.onion}
    sent = b.pubsub.publish("news", {"type": "text", "data": "hi"})
    run(clock, 3)
    assert [e["id"] for e in a.received("news")] == [sent]


def test_frames_held_for_a_session_the_pool_never_reports_are_dropped(clock: Clock,
                                                                      tmp_path: Path) -> None:
    _a, b = mesh(clock, tmp_path, 2)
    stranger = "x" * 56 + ".onion"
    b.pubsub._receive(stranger, b"")  # an empty RPC over a session the pool then loses
    assert stranger not in b.pubsub.pubsub.peers and stranger in b.pubsub._early
    run(clock, 20)
    assert stranger in b.pubsub._early
    run(clock, 15)
    assert stranger not in b.pubsub._early and b.pubsub.pubsub.stats["from unknown peer"] == 1
    b.pubsub._connected(stranger)  # reported after all: added, nothing left to hand in
    assert stranger in b.pubsub.pubsub.peers


def test_identity_term_reads_the_peer_store_age_and_the_dht_puzzle(clock: Clock,
                                                                    tmp_path: Path) -> None:
    net = FakeNetwork()
    cfg = parse_config({"dht": {"puzzle_bits": 8}})
    nodes = [Node(net, clock, tmp_path, f"n{i}", i, cfg) for i in range(3)]
    a, b, c = nodes
    a.connect(b)
    assert a.pubsub.identity_cost(c.onion) is None  # unknown to the peer store
    cost = a.pubsub.identity_cost(b.onion)
    assert cost is not None and cost.age == 0 and cost.difficulty == 0  # no DHT running
    dhts = [DhtService(n.core, cfg.dht, n.service, clock,
                       bootstrap=[b.onion] if n is not b else [], rng=random.Random(i))
            for i, n in enumerate(nodes)]
    for d in dhts:
        d.startService()
        result_of(d.when_ready())
    result_of(dhts[0].tick())
    clock.advance(100)
    contact = next(x for x in dhts[0].dht.table.contacts() if x.onion == b.onion)
    cost = a.pubsub.identity_cost(b.onion)
    assert cost is not None and cost.age == 100
    assert cost.difficulty >= 8  # at least what the table demands, as the nonce gives it
    assert check_puzzle(contact.id, contact.nonce, cost.difficulty)
    assert not check_puzzle(contact.id, contact.nonce, cost.difficulty + 1)
    assert a.pubsub.pubsub.scores.identity_term(b.onion) > 0


def test_peers_offered_on_prune_are_dialled_when_their_record_checks_out(clock: Clock,
                                                                          tmp_path: Path) -> None:
    net = FakeNetwork()
    a, b, c, d = (Node(net, clock, tmp_path, f"n{i}", i) for i in range(4))
    a.connect(b)
    a.pubsub.subscribe("news")
    forged = PeerInfo(d.onion, c.ident.record.to_bytes())  # c's record offered as d
    offer = PeersOffered("news", b.onion, (forged, PeerInfo(c.onion, c.ident.record.to_bytes())))
    a.pubsub._event(offer)
    run(clock, 1)
    assert a.core.pool.connected(c.onion) and a.core.pool.dialed(c.onion)
    assert not a.core.pool.connected(d.onion) and a.core.store.get(d.onion) is None
    assert c.onion in a.pubsub.pubsub.peers
    # the record a PRUNE offers with a peer is the one stored for it (the session's)
    stored = a.core.store.get(c.onion)
    assert stored is not None and stored.record and a.pubsub._record_of(c.onion) == stored.record
    assert a.pubsub._record_of(d.onion) == b""


def test_anonymous_topic_names_no_author(clock: Clock, tmp_path: Path) -> None:
    nodes = mesh(clock, tmp_path, 3)
    for node in nodes:
        node.pubsub.subscribe("whispers", anonymous=True)
    run(clock, 3)
    mid = nodes[0].pubsub.publish("whispers", {"type": "text", "data": "psst"})
    run(clock, 40)  # stem, then the embargo at the latest
    for node in nodes[1:]:
        got = node.received("whispers")
        assert [e["id"] for e in got] == [mid]
        assert "author" not in got[0] and "peer" not in got[0]


def test_a_node_that_is_not_subscribed_gets_nothing(clock: Clock, tmp_path: Path) -> None:
    nodes = mesh(clock, tmp_path, 3)
    nodes[0].pubsub.subscribe("a")
    nodes[1].pubsub.subscribe("a")
    run(clock, 3)
    nodes[0].pubsub.publish("a", {"type": "text", "data": "x"})
    run(clock, 5)
    assert len(nodes[1].received("a")) == 1
    assert nodes[2].received("a") == []


def test_bad_topics_and_kinds_are_refused(clock: Clock, tmp_path: Path) -> None:
    node = mesh(clock, tmp_path, 1)[0]
    for bad in ("", "x" * 129, "a\nb"):
        with pytest.raises(TopicError):
            node.pubsub.subscribe(bad)
    node.pubsub.subscribe("t", anonymous=True)
    with pytest.raises(TopicError, match="anonymous"):
        node.pubsub.subscribe("t")
    with pytest.raises(TopicError, match="at most"):
        node.pubsub.publish("t", {"type": "x", "data": "y" * 70_000})
    assert node.pubsub.unsubscribe("t") is True
    assert node.pubsub.unsubscribe("t") is False


def test_signatures_bind_both_keys_and_the_pin(tmp_path: Path) -> None:
    a = identity.create(tmp_path / "a", NOW)
    b = identity.create(tmp_path / "b", NOW)
    signer = NodeSigner(a)
    sig = signer.sign(b"body")
    assert NodeVerifier().verify(signer.identity, b"body", sig)
    assert not NodeVerifier().verify(signer.identity, b"other", sig)
    # b's ML-DSA key beside a's Ed25519 key: the ML-DSA signature fails
    mixed = a.ed25519_public + b.mldsa_public
    assert not NodeVerifier().verify(mixed, b"body", sig)
    # a pin that names another ML-DSA key refuses even valid signatures
    assert not NodeVerifier(lambda onion: b.mldsa_public).verify(signer.identity, b"body", sig)
    assert NodeVerifier(lambda onion: a.mldsa_public).verify(signer.identity, b"body", sig)
    assert not NodeVerifier().verify(signer.identity[:10], b"body", sig)


def test_subscribers_that_know_no_one_meet_at_the_rendezvous(clock: Clock, tmp_path: Path,
                                                             ) -> None:
    net = FakeNetwork()
    cfg = parse_config({"dht": {"puzzle_bits": 8},
                        "pubsub": {"rendezvous": 2, "broadcast": False}})
    nodes = [Node(net, clock, tmp_path, f"n{i}", i, cfg) for i in range(6)]
    dhts = [DhtService(n.core, cfg.dht, n.service, clock,
                       bootstrap=[nodes[0].onion] if i else [], rng=random.Random(i))
            for i, n in enumerate(nodes)]
    for d in dhts:
        d.startService()
        result_of(d.when_ready())
    for d in dhts[1:]:
        result_of(d.tick())
    for _ in range(3):  # a contact enters a DHT table once it answered a check (a tick)
        clock.advance(cfg.dht.maintenance_interval)
    for n in nodes:  # every session closed: nobody is connected to anybody
        for peer in n.core.pool.peers():
            n.core.pool.close(peer, "test")
    run(clock, 2)
    assert all(len(n.core.pool) == 0 for n in nodes)
    a, b = nodes[2], nodes[5]

    def closest(topic: str) -> list[Node]:
        target = int.from_bytes(rendezvous_id(topic), "big")
        return sorted(nodes, key=lambda n: int.from_bytes(
            node_id(n.ident.ed25519_public), "big") ^ target)[:2]

    # a topic whose two rendezvous nodes are neither subscriber (identities are random)
    topic = next(t for t in (f"meet-{i}" for i in range(1000))
                 if a not in closest(t) and b not in closest(t))
    a.pubsub.subscribe(topic)
    b.pubsub.subscribe(topic)
    run(clock, 10)
    hosts = [n for n in nodes if topic in n.pubsub.hosted]
    assert hosts == [n for n in nodes if n in closest(topic)]
    assert all(n.pubsub.topics() == [] for n in hosts)  # relayed, not listed
    gauges = hosts[0].core.metrics.gauges
    assert (gauges["pubsub_topics"][1](), gauges["pubsub_topics_hosted"][1]()) == (0, 1)
    mid = a.pubsub.publish(topic, {"type": "text", "data": "found you"})
    run(clock, 10)
    assert [e["id"] for e in b.received(topic)] == [mid]
    assert all(n.received(topic) == [] for n in hosts)  # relays deliver nothing
    b.pubsub.unsubscribe(topic)
    a.pubsub.unsubscribe(topic)
    run(clock, 5)
    assert not any(n.pubsub.hosted for n in nodes)


def test_hosted_topics_do_not_crowd_out_own_subscriptions(clock: Clock, tmp_path: Path,
                                                          ) -> None:
    cfg = parse_config({"pubsub": {"max_topics": 2, "broadcast": False}})
    net = FakeNetwork()
    host, peer = Node(net, clock, tmp_path, "h", 1, cfg), Node(net, clock, tmp_path, "p", 2, cfg)
    host.connect(peer)
    host.pubsub._is_rendezvous = lambda topic: True  # type: ignore[method-assign]
    peer.pubsub.subscribe("t1")
    peer.pubsub.subscribe("t2")
    run(clock, 2)
    assert host.pubsub.hosted == {"t1", "t2"}
    host.pubsub.subscribe("mine")
    host.pubsub.subscribe("t1")  # hosted: now its own as well
    assert host.pubsub.hosted == {"t2"}
    assert [t["topic"] for t in host.pubsub.topics()] == ["mine", "t1"]
    with pytest.raises(TopicError, match="max_topics"):
        host.pubsub.subscribe("another")


# -- private topics, catch-up after a restart, confirmations, broadcast ------------------
def _topic(node: Node, name: str) -> dict[str, Any]:
    return next(t for t in node.pubsub.topics() if t["topic"] == name)


def _invite(clock: Clock, inviter: Node, invitee: Node, topic: str) -> dict[str, Any]:
    """Invite over a direct session (opened for it, closed after); the invitation event."""
    inviter.connect(invitee)
    run(clock, 2)
    result_of(Deferred.fromCoroutine(inviter.pubsub.invite(topic, invitee.onion)))
    run(clock, 3)
    inviter.core.pool.close(invitee.onion, "test")
    run(clock, 1)
    return [e for e in invitee.events if e["type"] == "topic_invitation"][-1]


def test_private_topic_members_read_and_a_relay_only_forwards(clock: Clock,
                                                              tmp_path: Path) -> None:
    a, relay, b = mesh(clock, tmp_path, 3)  # a - relay - b: b hears a only through relay
    made = a.pubsub.subscribe("club", private=True)
    assert made["private"] and made["created"] and len(made["key_id"]) == 16
    relay.pubsub.subscribe("club")  # not a member: no key
    invitation = _invite(clock, a, b, "club")
    assert invitation == {**invitation, "peer": a.onion, "topic": "club", "anonymous": False,
                          "key_id": made["key_id"]}
    assert "key" not in invitation and b.pubsub.pending_invitations()[0]["topic"] == "club"
    joined = b.pubsub.subscribe("club", private=True)  # accepts the invitation
    assert joined["accepted"] and joined["key_id"] == made["key_id"] and not joined["created"]
    assert b.pubsub.pending_invitations() == []
    assert not a.core.pool.connected(b.onion)
    run(clock, 5)
    secret = "the plaintext the relay must not see"
    mid = a.pubsub.publish("club", {"type": "text", "data": secret})
    run(clock, 5)
    got = b.received("club")
    assert [(e["id"], e["message"]["data"], e["private"]) for e in got] == [(mid, secret, True)]
    assert relay.received("club") == []  # forwarded, not read
    assert _topic(relay, "club")["unreadable"] == 1 and _topic(relay, "club")["messages_in"] == 0
    cached = relay.pubsub.pubsub.cache.get(bytes.fromhex(mid))
    assert cached is not None and secret.encode() not in cached.message.data
    assert len(cached.message.data) == 256  # the smallest length class
    # a plaintext message on the topic (from the relay, which has no key) is refused
    relay.pubsub.publish("club", {"type": "text", "data": "let me in"})
    run(clock, 5)
    assert len(b.received("club")) == 1 and _topic(b, "club")["refused"] == 1
    # rotation: a new key, read by b only once invited again
    new = a.pubsub.rotate("club")
    assert new != made["key_id"]
    a.pubsub.publish("club", {"type": "text", "data": "after the rotation"})
    run(clock, 5)
    assert len(b.received("club")) == 1 and _topic(b, "club")["unreadable"] == 1
    _invite(clock, a, b, "club")
    assert b.pubsub.subscribe("club", private=True)["key_id"] == new
    a.pubsub.publish("club", {"type": "text", "data": "re-invited"})
    run(clock, 5)
    assert [e["message"]["data"] for e in b.received("club")][-1] == "re-invited"


def test_bad_keys_and_invitations_are_refused(clock: Clock, tmp_path: Path) -> None:
    a, b, c = mesh(clock, tmp_path, 3)
    for bad in ("not base64!", "AAAA", b"\x00" * 31):
        with pytest.raises(TopicKeyError):
            a.pubsub.subscribe("club", key=bad)
    assert "club" not in a.pubsub.pubsub.topics
    with pytest.raises(TopicError, match="not a private topic"):
        result_of(Deferred.fromCoroutine(a.pubsub.invite("club", b.onion)))
    a.pubsub.subscribe("club", private=True)
    with pytest.raises(TopicError, match="no identity record"):
        result_of(Deferred.fromCoroutine(a.pubsub.invite("club", "x" * 56 + ".onion")))
    # invitations that are malformed, or sealed for someone else, reach b's messaging
    good = make_invitation(bytes(32), "club", False, inviter=a.onion, invitee=c.onion,
                           invitee_xwing=c.ident.xwing_public)
    broken = {"type": "pubsub_invite", "data": {**good["data"], "v": 9}}
    for body in (good, broken, {"type": "pubsub_invite", "data": "x"}):
        result_of(Deferred.fromCoroutine(a.core.send(b.onion, body)))
        run(clock, 2)
    refused = [e for e in b.events if e["type"] == "network_error"
               and "topic invitation refused" in e["error"]]
    assert [e["peer"] for e in refused] == [a.onion] * 3
    assert "does not open" in refused[0]["error"] and "data.v" in refused[1]["error"]
    assert b.pubsub.pending_invitations() == []
    assert b.core.metrics.counters["pubsub_invitations_refused"] == 3


def _restart(node: Node, clock: Clock, peers: list[Node]) -> None:
    """A new PubSubService on the same core and database (the old one stopped), its
    sessions opened again (as after a restart: peers announce their topics anew)."""
    for peer in peers:
        node.core.pool.close(peer.onion, "restart")
    node.pubsub = PubSubService(node.core, node.cfg.pubsub, node.service, clock,
                                rng=random.Random(99))
    node.pubsub.startService()
    for peer in peers:
        node.connect(peer)


def test_a_restarted_subscriber_catches_up_exactly_once(clock: Clock, tmp_path: Path) -> None:
    a, b = mesh(clock, tmp_path, 2)
    a.pubsub.subscribe("log")
    b.pubsub.subscribe("log", private=True, key=bytes(range(32)))
    a.pubsub.subscribe("log", key=bytes(range(32)))
    run(clock, 3)
    before = a.pubsub.publish("log", {"type": "n", "data": 0})
    run(clock, 3)
    assert [e["id"] for e in b.received("log")] == [before]
    result_of(b.pubsub.stopService() or succeed(None))
    missed = [a.pubsub.publish("log", {"type": "n", "data": i}) for i in (1, 2)]
    run(clock, 5)
    assert len(b.received("log")) == 1  # b's pub/sub is down
    _restart(b, clock, [a])
    assert b.pubsub.pubsub.topics == {"log": False} and "log" in b.pubsub.groups
    run(clock, 80)  # both catch-up rounds
    got = b.received("log")
    assert sorted(e["id"] for e in got[1:]) == sorted(missed)  # each once, not `before`
    assert all(e.get("caught_up") for e in got[1:]) and got[1]["message"]["type"] == "n"
    t = _topic(b, "log")
    assert (t["caught_up"], t["messages_in"], t["private"]) == (2, 2, True)
    # the ids kept with the state are bounded by time (1.5 x history): later, one is left
    run(clock, 1000, step=10)
    b.connect(a)  # the quiet topic's session may have gone idle
    run(clock, 3)
    last = a.pubsub.publish("log", {"type": "n", "data": 3})
    run(clock, 3)
    row = result_of(b.core.db.run(lambda c: c.execute(
        "SELECT value FROM node_secrets WHERE name = 'pubsub_state'").fetchone()))
    state = json.loads(bytes(row[0]))
    assert state["delivered"] == {"log": [[last, state["delivered"]["log"][0][1]]]}
    assert state["topics"]["log"]["keys"] == [base64.b64encode(bytes(range(32))).decode()]


def test_confirmations_from_named_subscribers(clock: Clock, tmp_path: Path) -> None:
    a, b, c = mesh(clock, tmp_path, 3)
    for node in (a, b, c):
        node.pubsub.subscribe("news")
    run(clock, 3)
    with pytest.raises(TopicError, match="no identity record"):
        a.pubsub.publish("news", {"type": "t"}, confirm_from=["y" * 56 + ".onion"])
    c.connect(a)  # c's record reaches a (the pub/sub path stays a - b - c for the message)
    run(clock, 2)
    c.core.pool.close(a.onion, "test")
    run(clock, 1)
    mid = a.pubsub.publish("news", {"type": "t", "data": 1}, confirm_from=[c.onion, b.onion])
    run(clock, 5)
    states = [e for e in a.events if e["type"] == "delivery_state" and e["id"] == mid]
    assert sorted((e["subscriber"], e["state"], e["topic"]) for e in states) == sorted(
        [(b.onion, "acknowledged", "news"), (c.onion, "acknowledged", "news")])
    assert _topic(a, "news")["confirmations"][0]["subscribers"] == {
        c.onion: "acknowledged", b.onion: "acknowledged"}
    c.pubsub.unsubscribe("news")  # named, but no longer there: expires after ack_timeout
    run(clock, 2)
    late = a.pubsub.publish("news", {"type": "t", "data": 2}, confirm_from=[c.onion])
    run(clock, 5)
    assert _topic(a, "news")["confirmations"][-1] == {"id": late,
                                                      "subscribers": {c.onion: "pending"}}
    run(clock, 125)
    assert _topic(a, "news")["confirmations"][-1]["subscribers"] == {c.onion: "expired"}
    assert [e["state"] for e in a.events if e["type"] == "delivery_state"
            and e["id"] == late] == ["expired"]


def _broadcast_nodes(clock: Clock, tmp: Path, cfgs: list[dict[str, Any]]) -> list[Node]:
    net = FakeNetwork()
    nodes = [Node(net, clock, tmp, f"b{i}", i, parse_config({"pubsub": cfg}))
             for i, cfg in enumerate(cfgs)]
    for x, y in itertools.pairwise(nodes):
        x.connect(y)
    run(clock, 3)
    return nodes


def test_broadcast_reaches_everyone_within_the_publisher_rate(clock: Clock,
                                                               tmp_path: Path) -> None:
    # the first node allows itself more than the others allow any publisher
    loud, relay, far = _broadcast_nodes(clock, tmp_path, [{"broadcast_burst": 10}, {}, {}])
    topic = relay.cfg.pubsub.broadcast_topic
    assert _topic(relay, topic)["broadcast"] and relay.pubsub.broadcast == topic
    ids = [loud.pubsub.publish(topic, {"type": "news", "data": i}) for i in range(6)]
    run(clock, 5)
    assert [e["id"] for e in relay.received(topic)] == ids[:3]  # burst 3 a publisher
    assert [e["id"] for e in far.received(topic)] == ids[:3]
    assert all(e["broadcast"] for e in far.received(topic))
    assert relay.pubsub.pubsub.stats["broadcast dropped: publisher rate"] == 3
    assert relay.core.metrics.counters["pubsub_broadcast_dropped"] == 3
    assert relay.pubsub.pubsub.score(loud.onion) < 0 <= relay.pubsub.pubsub.score(far.onion)
    # this node's own limit: the default burst of 3, then one a minute
    for i in range(3):
        far.pubsub.publish(topic, {"type": "news", "data": i})
    with pytest.raises(TopicRateLimited) as refused:
        far.pubsub.publish(topic, {"type": "news", "data": 3})
    assert 1 <= refused.value.retry_after <= 60
    run(clock, 61)
    far.pubsub.publish(topic, {"type": "news", "data": 4})
    with pytest.raises(TopicMessageTooLarge):
        far.pubsub.publish(topic, {"type": "news", "data": "x" * 3000})
    with pytest.raises(TopicError, match="normal topic"):
        far.pubsub.subscribe(topic, anonymous=True)
    with pytest.raises(TopicError, match="cannot be private"):
        far.pubsub.subscribe(topic, private=True)


def test_broadcast_per_forwarding_peer_limit(clock: Clock, tmp_path: Path) -> None:
    lax = {"broadcast_burst": 100, "broadcast_peer_burst": 100}
    nodes = _broadcast_nodes(clock, tmp_path, [lax, {"broadcast_peer_burst": 4,
                                                     "broadcast_burst": 100}])
    src, dst = nodes
    topic = src.cfg.pubsub.broadcast_topic
    for i in range(7):
        src.pubsub.publish(topic, {"type": "news", "data": i})
    run(clock, 3)
    assert len(dst.received(topic)) == 4
    assert dst.pubsub.pubsub.stats["broadcast dropped: peer rate"] == 3
    assert dst.pubsub.pubsub.score(src.onion) < 0


def test_an_anonymous_private_topic(clock: Clock, tmp_path: Path) -> None:
    a, relay, b = mesh(clock, tmp_path, 3)
    kid = a.pubsub.subscribe("whispers", anonymous=True, private=True)["key_id"]
    relay.pubsub.subscribe("whispers", anonymous=True)
    assert _invite(clock, a, b, "whispers")["anonymous"] is True
    with pytest.raises(TopicError, match="anonymous"):
        b.pubsub.subscribe("whispers", anonymous=False, private=True)
    joined = b.pubsub.subscribe("whispers", private=True)  # the invitation's kind
    assert (joined["anonymous"], joined["key_id"]) == (True, kid)
    run(clock, 5)
    mid = a.pubsub.publish("whispers", {"type": "text", "data": "quietly"})
    run(clock, 60)  # stem, then fluff (or the embargo)
    got = b.received("whispers")
    assert [(e["id"], e["message"]["data"]) for e in got] == [(mid, "quietly")]
    assert "author" not in got[0] and relay.received("whispers") == []
    assert _topic(relay, "whispers")["unreadable"] == 1
