"""The DHT as the node runs it (DhtService): fake sessions, real identities, a task.Clock."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.task import Clock

from aegis_hidden import identity
from aegis_hidden.config import Config, parse_config
from aegis_hidden.dht import sign_record
from aegis_hidden.events import EventBus
from aegis_hidden.identity import RecordKind
from aegis_hidden.node import DhtService, IdentityService, NodeCore, identity_key
from aegis_hidden.node._dht import IDENTITY_NAME
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of

NOW = 1_800_000_000


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, tmp: Path, name: str, seed: int,
                 bootstrap: list[str], cfg: Config | None = None) -> None:
        self.ident = identity.create(tmp / f"id-{name}", clock.seconds() - 10)
        self.onion = self.ident.onion
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.cfg = cfg or parse_config({"dht": {"puzzle_bits": 8}})  # cheap to solve
        self.service = IdentityService(self.ident, clock)
        self.db = InlineSQLite(str(tmp / f"{name}.db"))
        self.core = NodeCore(self.cfg, self.service, str(tmp), bus, clock, db=self.db,
                             local_address=self.onion)
        self.core.rpc._rng = random.Random(seed)
        self.core.attach_session_factory(net.node(self.onion))
        self.core.startService()
        result_of(self.core.when_ready())
        self.dht = DhtService(self.core, self.cfg.dht, self.service, clock,
                              bootstrap=bootstrap, rng=random.Random(seed))

    def start(self) -> None:
        self.dht.startService()
        result_of(self.dht.when_ready())

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


def network(clock: Clock, tmp: Path, n: int) -> list[Node]:
    net = FakeNetwork()
    first = Node(net, clock, tmp, "n0", 0, [])
    nodes = [first] + [Node(net, clock, tmp, f"n{i}", i, [first.onion]) for i in range(1, n)]
    for node in nodes:
        node.start()
    for node in nodes[1:]:  # each one's first tick: bootstrap and publish
        result_of(node.dht.tick())
    settle(clock, nodes)
    return nodes


def settle(clock: Clock, nodes: list[Node], ticks: int = 3) -> None:
    """Run every node's maintenance tick a few times: the nodes that asked another
    are checked there (a PING) before they enter its table, and peer exchange
    spreads the records of the contacts checked."""
    for _ in range(ticks):
        clock.advance(nodes[0].cfg.dht.maintenance_interval)


def test_nodes_that_know_one_bootstrap_node_find_each_other(clock: Clock, tmp_path: Path,
                                                            ) -> None:
    nodes = network(clock, tmp_path, 5)
    first, last = nodes[1], nodes[-1]
    assert len(last.dht.dht.table) == 4  # every other node
    assert first.dht.own_stored >= 1
    found = result_of(last.dht.get(identity_key(first.onion)))
    assert found is not None and found.publisher_record == first.ident.record.to_bytes()
    stats = last.dht.stats()
    assert stats["routing_table"]["contacts"] == 4
    assert stats["lookups"]["ok"] >= 1
    assert sorted(stats["contacts"]) == sorted(n.onion for n in nodes[:-1])


def test_a_peer_known_only_through_the_dht_is_resolved_and_sent_to(clock: Clock,
                                                                  tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 4)
    a, b = nodes[2], nodes[3]
    result_of(b.core.store.remove(a.onion)) if b.core.store.get(a.onion) else None
    b.core.pool.close(a.onion, "test")
    assert b.core.store.get(a.onion) is None
    msg_id, _ = result_of(b.core.send(a.onion, {"type": "chat", "data": "hi"}))
    got = [e for e in a.of_type("message_received") if e.get("peer") == b.onion]
    assert len(got) == 1
    state = b.core.messenger.state(msg_id)
    assert state is not None and state.value == "acknowledged"
    peer = b.core.store.get(a.onion)
    assert peer is not None and peer.record == a.ident.record.to_bytes()
    assert b.core.records.cache.get(a.onion) is not None


def test_a_peer_nobody_published_stays_unknown(clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.peers import UnknownPeer

    nodes = network(clock, tmp_path, 3)
    stranger = identity.create(tmp_path / "stranger", NOW - 10)
    with pytest.raises(UnknownPeer):
        result_of(nodes[1].core.send(stranger.onion, {"type": "chat", "data": "hi"}))
    failed = nodes[1].of_type("dht_lookup_failed")
    assert failed and failed[-1]["kind"] == "value"
    assert nodes[1].core.metrics.counters["dht_lookups_failed"] >= 1


def test_a_revocation_learnt_through_the_dht_reaches_the_record_keeper(
        clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    a, b = nodes[1], nodes[2]
    revocation = identity.revoke(a.ident, clock.seconds(), "key lost")
    record = sign_record(a.ident.master, a.ident.mldsa, a.ident.record.to_bytes(),
                         IDENTITY_NAME, revocation.to_bytes(), int(clock.seconds()) + 5,
                         int(clock.seconds()) + 3600)
    result_of(a.dht.node.put(record))
    b.dht.dht.store._held.pop(record.key, None)  # b must look it up, not read its copy
    learnt = result_of(b.dht.resolve(a.onion))
    assert learnt is not None and learnt.kind is RecordKind.REVOCATION
    assert b.core.records.is_revoked(a.onion)
    assert any(e["error"] == "peer revoked" for e in b.of_type("network_error"))


def test_a_refused_store_is_counted_and_reported(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    a, b = nodes[1], nodes[2]
    old = a.dht.sign(b"topic", b"v2", 600)
    stale = sign_record(a.ident.master, a.ident.mldsa, a.ident.record.to_bytes(), b"topic",
                        b"v1", old.sequence - 1, old.expires)
    result_of(a.dht.node.put(old))
    result_of(a.dht.node._store_at(stale, [b.dht.dht.own]))
    refused = b.of_type("dht_record_refused")
    assert refused and refused[-1]["reason"] == "StaleRecord"
    assert refused[-1]["peer"] == a.onion
    assert b.core.metrics.counters["dht_records_refused"] == 1
    assert "aegis_dht_records_refused_total 1" in b.core.metrics.render()


def test_put_refuses_the_identity_name_and_get_finds_a_put(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    with pytest.raises(ValueError, match="identity"):
        result_of(nodes[1].dht.put(IDENTITY_NAME, b"x", 600))
    assert result_of(nodes[1].dht.put(b"topic", b"hello", 600)) >= 1
    key = nodes[1].dht.sign(b"topic", b"", 1).key
    nodes[2].dht.dht.store._held.pop(key, None)
    found = result_of(nodes[2].dht.get(key))
    assert found is not None and found.value == b"hello"


def test_bootstrap_retried_on_the_clock_until_the_bootstrap_node_is_up(
        clock: Clock, tmp_path: Path) -> None:
    net = FakeNetwork()
    seed = Node(net, clock, tmp_path, "seed", 0, [])
    late = Node(net, clock, tmp_path, "late", 1, [seed.onion])
    net.unreachable.add(seed.onion)
    late.start()  # first tick: bootstrap fails
    assert (late.dht.bootstrapped, late.dht.own_stored) == (False, 0)
    net.unreachable.discard(seed.onion)
    seed.start()
    clock.advance(late.cfg.dht.maintenance_interval)
    assert late.dht.bootstrapped and len(late.dht.dht.table) == 1
    assert late.dht.own_stored == 1  # seed holds late's identity record
    assert seed.dht.dht.store.get(identity_key(late.onion), clock.seconds()) is not None


def test_the_table_and_records_survive_a_restart(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    a = nodes[1]
    result_of(a.dht.stopService())
    again = DhtService(a.core, a.cfg.dht, a.service, clock, rng=random.Random(9))
    again.startService()
    result_of(again.when_ready())
    assert len(again.dht.table) == 2
    before = a.dht.own_record
    assert before is not None and again.own_record is not None
    # loaded from the database, then published again above the sequence it had
    assert again.own_record.sequence > before.sequence
    result_of(again.stopService())


def test_identity_changes_republish_the_record(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    a = nodes[1]
    before = a.dht.own_record
    assert before is not None
    clock.advance(1)
    a.service.adopt(identity.refresh(a.ident, clock.seconds()), "refresh")
    after = a.dht.own_record
    assert after is not None and after.sequence > before.sequence
    assert after.publisher_record == a.service.identity.record.to_bytes()


def test_dht_settings_are_validated() -> None:
    cfg = parse_config({"dht": {"disjoint_paths": 2, "quorum": 1, "enabled": False}})
    assert cfg.dht.disjoint_paths == 2 and not cfg.dht.enabled
    from aegis_hidden.config import ConfigError

    with pytest.raises(ConfigError, match=r"dht\.k"):
        parse_config({"dht": {"k": 50}})


def test_records_are_written_again_only_when_they_changed(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    a = nodes[1]
    node = a.dht.node
    result_of(node.save())
    saved = node.stats["records_saved"]
    result_of(node.save())
    assert node.stats["records_saved"] == saved  # nothing new: the table only
    result_of(a.dht.put(b"topic", b"v", 600))
    result_of(node.save())
    assert node.stats["records_saved"] == saved + 1


def test_a_request_over_an_i2p_session_is_answered_for_its_verified_onion(
        clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.dht import Ping as PingRequest
    from aegis_hidden.dht import Pong, decode_response, encode

    nodes = network(clock, tmp_path, 2)
    b = nodes[1]
    handler = b.core.rpc._handler
    assert handler is not None
    i2p = "a" * 52 + ".b32.i2p"
    assert decode_response(handler(i2p, encode(PingRequest()))).reason.startswith(  # type: ignore[union-attr, arg-type]
        "no onion identity")

    class Link:
        record = type("R", (), {"onion": nodes[0].onion})()

    b.core.pool._links[i2p] = Link()  # type: ignore[assignment]
    answer = handler(i2p, encode(PingRequest()))
    assert isinstance(decode_response(answer), Pong)  # type: ignore[arg-type]
    assert nodes[0].dht.dht.own in b.dht.dht.table


def test_a_node_that_did_not_solve_the_puzzle_is_answered_but_not_learnt(
        clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.dht import check_puzzle

    net = FakeNetwork()
    first = Node(net, clock, tmp_path, "n0", 0, [])
    cheap = Node(net, clock, tmp_path, "cheap", 1, [first.onion],
                 cfg=parse_config({"dht": {"puzzle_bits": 0}}))  # sends nonce 0
    first.start()
    cheap.start()
    assert cheap.dht.bootstrapped  # its lookups are answered
    paid = check_puzzle(cheap.dht.dht.own.id, 0, 8)  # nonce 0 solves 8 bits 1 time in 256
    # learnt: in the table, or a candidate waiting for its check (1 run in 256 pays)
    queue = first.dht.dht.candidates
    learnt = cheap.dht.dht.own in first.dht.dht.table or (
        queue is not None and cheap.dht.dht.own in queue)
    assert learnt == paid
    assert (first.dht.dht.refused["puzzle"] >= 1) == (not paid)
    if not paid:  # and its STOREs are refused
        assert cheap.dht.own_stored == 0
        assert first.of_type("dht_record_refused")[-1]["reason"] == "puzzle"


class QueuedDb:
    """A database that runs calls later, in order, and refuses new ones once closed
    (as ThreadedSQLite does: queued calls still complete)."""

    def __init__(self, path: Path) -> None:
        self.inner = InlineSQLite(str(path))
        self.queue: list[tuple[Any, Any]] = []
        self.closed = False

    def run(self, fn: Any) -> Any:
        from twisted.internet.defer import Deferred, fail

        if self.closed:
            return fail(RuntimeError("the database is closed"))
        d: Deferred[Any] = Deferred()
        self.queue.append((fn, d))
        return d

    def drain(self) -> None:
        while self.queue:
            fn, d = self.queue.pop(0)
            self.inner.run(fn).chainDeferred(d)


def test_the_save_at_stop_is_queued_before_the_database_closes(clock: Clock,
                                                               tmp_path: Path) -> None:
    from aegis_hidden.dht import Contact, DhtCore, DhtNode, DhtPersistence

    db = QueuedDb(tmp_path / "q.db")
    ident = identity.create(tmp_path / "q-id", NOW - 10)
    core = DhtCore(Contact(ident.ed25519_public))
    other = identity.create(tmp_path / "o-id", NOW - 10)
    core.table.observe(Contact(other.ed25519_public), clock.seconds())
    record = sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), b"n", b"v", 1,
                         NOW + 600)
    core.store.put(record, clock.seconds())
    persistence = DhtPersistence(db)
    node = DhtNode(core, FakeRpc(), clock, random.Random(1), persistence=persistence)
    opened = node.save()
    db.drain()  # the first save opens the tables
    result_of(opened)
    core.table.observe(Contact(identity.create(tmp_path / "p-id", NOW).ed25519_public), 0.0)
    core.store.put(sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), b"n",
                               b"v2", 2, NOW + 600), clock.seconds())
    saved = node.save()  # as DhtService.stopService does ...
    db.closed = True  # ... right before the core closes the database
    db.drain()
    result_of(saved)
    again = DhtCore(Contact(ident.ed25519_public))
    result_of(DhtPersistence(db.inner).load_table(again.table, 0.0))
    assert len(again.table) == 2
    loaded, _ = result_of(DhtPersistence(db.inner).load_records(again.store, clock.seconds()))
    assert loaded == 1 and again.store.get(record.key, clock.seconds()).value == b"v2"  # type: ignore[union-attr]


class FakeRpc:
    def on_request(self, handler: Any) -> None:
        pass

    def request(self, peer: str, payload: bytes, timeout: float) -> Any:
        from twisted.internet.defer import Deferred

        return Deferred()


# -- reputation: contacts that answer wrongly or not at all ----------------------------
def _answer_with(node: Node, answer: Any) -> list[str]:
    """Make ``node`` answer every DHT request with ``answer(body)``; who asked."""
    asked: list[str] = []

    def handler(peer: str, body: bytes) -> Any:
        asked.append(peer)
        return answer(body)

    node.core.rpc.on_request(handler)
    return asked


def _in_table(node: Node, other: Node) -> bool:
    return other.onion in node.dht.contacts()


def test_a_contact_that_never_answers_loses_reputation_and_is_evicted(
        clock: Clock, tmp_path: Path) -> None:
    from twisted.internet.defer import Deferred

    from aegis_hidden.dht import Contact
    from aegis_hidden.node._dht import MIN_REPUTATION

    nodes = network(clock, tmp_path, 4)
    a, b = nodes[1], nodes[2]
    assert _in_table(a, b)
    asked = _answer_with(b, lambda body: Deferred())  # never answers
    start = a.core.store.get(b.onion)
    assert start is not None
    pings = 0
    while _in_table(a, b):
        d = a.dht.node.ping(Contact.of_onion(b.onion))
        clock.advance(a.cfg.dht.request_timeout + 1)
        assert result_of(d) is False
        pings += 1
        assert pings < 100
    info = a.core.store.get(b.onion)
    assert info is not None and info.reputation < MIN_REPUTATION < start.reputation
    assert a.dht.misbehaviour["dht_timeout"] >= pings  # the maintenance tick asks too
    assert a.core.metrics.counters["dht_contacts_evicted"] == 1
    # never asked again: a lookup does not reach it, and its own requests are refused
    before = len(asked)
    result_of(a.dht.node.lookup(b.dht.dht.own.id))
    assert len(asked) == before
    assert a.dht.stats()["evicted"] == 1


@pytest.mark.parametrize(("kind", "answer"), [
    ("dht_bad_answer", lambda body: b"\xff\x00 not a DHT answer"),
    ("dht_refused", lambda body: _encode_refused("")),
    ("dht_bad_answer", lambda body: _encode_pong()),  # a PONG to a FIND_NODE
])
def test_wrong_answers_cost_reputation(clock: Clock, tmp_path: Path, kind: str,
                                       answer: Any) -> None:
    from aegis_hidden.peers import WEIGHTS, Behaviour

    nodes = network(clock, tmp_path, 3)
    a, b = nodes[1], nodes[2]
    _answer_with(b, answer)
    before = a.core.store.get(b.onion)
    assert before is not None
    found = result_of(a.dht.node.ask_nodes(a.dht.dht.table.closest(b.dht.dht.own.id, 1)[0],
                                           b.dht.dht.own.id))
    assert found is None
    after = a.core.store.get(b.onion)
    assert after is not None
    weight = WEIGHTS[Behaviour(kind)][1]
    assert after.reputation == pytest.approx(before.reputation * (1 - weight))
    assert a.dht.misbehaviour == {kind: 1}
    assert a.core.metrics.counters["dht_misbehaviour"] == 1


def _encode_refused(reason: str) -> bytes:
    from aegis_hidden.dht import Refused, encode

    return encode(Refused(reason))


def _encode_pong() -> bytes:
    from aegis_hidden.dht import Pong, encode

    return encode(Pong())


def test_a_refusal_with_a_reason_costs_nothing(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 3)
    a, b = nodes[1], nodes[2]
    _answer_with(b, lambda body: _encode_refused("store rate exceeded"))
    before = a.core.store.get(b.onion)
    result_of(a.dht.node.ask_nodes(a.dht.dht.table.closest(b.dht.dht.own.id, 1)[0],
                                   b.dht.dht.own.id))
    after = a.core.store.get(b.onion)
    assert before is not None and after is not None
    assert after.reputation == before.reputation and not a.dht.misbehaviour


def test_contacts_that_fail_the_puzzle_and_forged_records_cost_reputation(
        clock: Clock, tmp_path: Path) -> None:
    import dataclasses

    from aegis_hidden.dht import Contact, Nodes, Value, check_puzzle, encode

    nodes = network(clock, tmp_path, 4)
    a, b, c = nodes[1], nodes[2], nodes[3]
    unsolved = Contact(c.ident.ed25519_public, nonce=0)
    nonce = 0
    while check_puzzle(unsolved.id, nonce, a.cfg.dht.puzzle_bits):
        nonce += 1  # a nonce that does not solve it
    unsolved = Contact(c.ident.ed25519_public, nonce=nonce)
    _answer_with(b, lambda body: encode(Nodes((unsolved,))))
    result_of(a.dht.node.ask_nodes(Contact.of_onion(b.onion), c.dht.dht.own.id))
    assert a.dht.misbehaviour == {"dht_bad_contacts": 1}

    # a value lookup answered with a record whose signature was tampered with
    record = c.dht.sign(b"topic", b"v", 600)
    forged = dataclasses.replace(record, value=b"forged")
    _answer_with(b, lambda body: encode(Value(forged)))
    before = a.core.store.get(b.onion)
    assert before is not None
    lookup = a.dht.dht.lookup(record.key, seeds=[Contact.of_onion(b.onion)])
    assert [q.contact.onion for q in lookup.next_queries()] == [b.onion]
    answer = result_of(a.dht.node._ask(Contact.of_onion(b.onion),
                                       a.dht.dht.find_value(record.key)))
    assert not a.dht.dht.feed(lookup, Contact.of_onion(b.onion), answer, clock.seconds())
    after = a.core.store.get(b.onion)
    assert after is not None and after.reputation == pytest.approx(before.reputation * 0.5)
    assert a.dht.misbehaviour["dht_bad_record"] == 1
    assert a.of_type("dht_record_refused")[-1]["reason"] == "BadRecordSignature"


# -- revocations in the DHT -------------------------------------------------------------
def test_the_revocation_record_overrides_and_is_never_replaced(clock: Clock,
                                                              tmp_path: Path) -> None:
    import dataclasses

    from aegis_hidden.dht import BadRecordSignature, RecordStore, StaleRecord, verify_record
    from aegis_hidden.dht._records import revocation_record

    ident = identity.create(tmp_path / "r", NOW - 10)
    now = clock.seconds()
    normal = sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), IDENTITY_NAME,
                         b"", int(now) + 10, int(now) + 3600)
    revocation = identity.revoke(ident, now, "key lost")
    record = revocation_record(revocation.to_bytes())
    assert record.key == identity_key(ident.onion) and record.expires == 0
    assert verify_record(record, now + 10 * 365 * 86400) is record  # never expires
    store = RecordStore()
    store.put(normal, now)
    assert normal.sequence > record.sequence
    assert store.put(record, now)  # overrides a higher sequence
    assert store.get(record.key, now + 86400 * 30) == record
    newer = sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), IDENTITY_NAME,
                        b"", normal.sequence + 1, int(now) + 3600)
    with pytest.raises(StaleRecord):
        store.put(newer, now)
    assert not store.put(record, now)  # the same again
    assert store.expire(now + 86400 * 365) == []
    assert store.due_republish(now + 7200) == [record]
    for bad in (dataclasses.replace(record, value=b"x"),
                dataclasses.replace(record, expires=int(now) + 60),
                dataclasses.replace(record, sequence=record.sequence + 1),
                dataclasses.replace(record, publisher_record=revocation.to_bytes()[:-1] + b"\0")):
        with pytest.raises(BadRecordSignature):
            verify_record(bad, now)


def test_a_revoked_node_publishes_its_revocation_and_others_refuse_to_dial_it(
        clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.node import PeerRevoked

    net = FakeNetwork()
    first = Node(net, clock, tmp_path, "n0", 0, [])
    nodes = [first] + [Node(net, clock, tmp_path, f"n{i}", i, [first.onion]) for i in range(1, 5)]
    for node in nodes:
        node.start()
    for node in nodes[1:]:
        result_of(node.dht.tick())
    settle(clock, nodes)
    a = nodes[1]
    revocation = identity.revoke(a.ident, clock.seconds(), "key lost")
    a.core.records.revoke(revocation)
    result_of(a.dht.tick())
    own = a.dht.own_record
    assert own is not None and own.is_revocation
    assert a.dht.stats()["revoked"] is True
    # the nodes with a session got it pushed; they hold it and store it on
    holders = [n for n in nodes if n is not a and (r := n.dht.dht.store.get(
        own.key, clock.seconds())) is not None and r.is_revocation]
    assert len(holders) == 4
    # a stops for good; a node that was offline meanwhile joins later and looks a up
    net.remove(a.onion)
    late = Node(net, clock, tmp_path, "late", 9, [first.onion])
    late.start()
    result_of(late.dht.tick())
    assert not late.core.records.is_revoked(a.onion)
    learnt = result_of(late.dht.resolve(a.onion))
    assert learnt is not None and learnt.kind is RecordKind.REVOCATION
    assert late.core.records.is_revoked(a.onion)
    with pytest.raises(PeerRevoked):
        result_of(late.core.pool.get(a.onion))


def test_a_node_that_learns_a_revocation_holds_and_stores_it(clock: Clock,
                                                             tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 5)
    a, b = nodes[1], nodes[2]
    others = [n for n in nodes if n not in (a, b)]
    revocation = identity.revoke(a.ident, clock.seconds(), "key lost")
    key = identity_key(a.onion)
    for n in others:
        n.dht.dht.store._held.pop(key, None)
    # b learns it other than through the DHT (a record push does the same)
    assert b.core.records.learn(a.onion, revocation.to_bytes(), "push") is not None
    held = b.dht.dht.store.get(key, clock.seconds())
    assert held is not None and held.is_revocation
    holders = [n for n in others if (r := n.dht.dht.store.get(key, clock.seconds()))
               is not None and r.is_revocation]
    assert holders  # stored at the closest that answered
    found = result_of(others[0].dht.get(key, local=False))
    assert found is not None and found.is_revocation


# -- the Tor/I2P spread of disjoint paths ----------------------------------------------
def test_path_network_spreads_odd_paths_over_i2p_when_both_run() -> None:
    from aegis_hidden.node._dht import path_network

    b32 = "a" * 52 + ".b32.i2p"
    both = ("tor", "i2p")
    assert [path_network(p, both, b32) for p in range(4)] == ["tor", "i2p", "tor", "i2p"]
    assert path_network(1, ("tor",), b32) == "tor"  # no I2P here
    assert path_network(1, both, None) == "tor"  # its owner gave no I2P destination
    assert path_network(None, both, b32) == "tor"  # not a lookup query


def test_lookup_paths_go_over_both_networks(clock: Clock, tmp_path: Path) -> None:
    import base64
    import hashlib
    from types import SimpleNamespace

    cfg = parse_config({"dht": {"puzzle_bits": 8, "disjoint_paths": 2}})
    net = FakeNetwork()
    nodes = [Node(net, clock, tmp_path, "n0", 0, [], cfg)]
    nodes += [Node(net, clock, tmp_path, f"n{i}", i, [nodes[0].onion], cfg) for i in range(1, 7)]
    for n in nodes:
        n.start()
    for n in nodes[1:]:
        result_of(n.dht.tick())
    settle(clock, nodes)
    a = nodes[1]
    aliases = {}
    for n in nodes:
        b32 = base64.b32encode(hashlib.sha256(n.onion.encode()).digest()).decode()
        aliases[n.onion] = b32.lower().rstrip("=") + ".b32.i2p"
        net._nodes[aliases[n.onion]] = net._nodes[n.onion]
    for n in nodes:
        if n is not a:
            result_of(a.core.store.add(n.onion, i2p_destination=aliases[n.onion]))
            a.core.pool.close(n.onion, "test")
    a.core.transports.extend([cast(Any, SimpleNamespace(name=n)) for n in ("tor", "i2p")])
    result = result_of(a.dht.node.lookup(nodes[-1].dht.dht.own.id))
    assert result.closest
    spread = a.dht.stats()["paths"]
    assert spread["i2p"] >= 1 and spread["tor"] >= 1
    assert any(p.endswith(".b32.i2p") for p in a.core.pool.peers())


def test_request_round_trips_are_timed_warm_and_cold(clock: Clock, tmp_path: Path) -> None:
    from twisted.internet.defer import Deferred

    from aegis_hidden.dht import Contact

    nodes = network(clock, tmp_path, 3)
    a, b = nodes[1], nodes[2]

    def slow_pong(body: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        clock.callLater(0.25, d.callback, _encode_pong())
        return d

    _answer_with(b, slow_pong)

    def ping() -> None:
        d = a.dht.node.ping(Contact.of_onion(b.onion))
        clock.advance(0.25)
        assert result_of(d) is True

    before = a.dht.stats()["rpc_seconds"]
    assert before["warm"]["count"] + before["cold"]["count"] >= 1  # the bootstrap's requests
    a.core.pool.close(b.onion, "test")
    clock.advance(1)
    assert not a.core.pool.connected(b.onion)
    ping()  # the pool dials first: cold
    assert a.core.pool.connected(b.onion)
    ping()  # over the session just opened: warm
    stats = a.dht.stats()["rpc_seconds"]
    assert stats["cold"]["count"] == before["cold"]["count"] + 1
    assert stats["warm"]["count"] == before["warm"]["count"] + 1
    assert stats["cold"]["samples"][-1] == stats["warm"]["samples"][-1] == 0.25
    warm = stats["warm"]
    assert warm["p50"] <= warm["p95"] and warm["ln_sd"] >= 0
    text = a.core.metrics.render()
    count = int(text.split('aegis_dht_request_seconds_count{kind="warm"} ')[1].split()[0])
    assert count == stats["warm"]["count"]
    assert 'aegis_dht_request_seconds_bucket{kind="cold",le="0.3"}' in text


def test_rpc_summary_fits_a_log_normal() -> None:
    import math

    from aegis_hidden.node._dht import rpc_summary

    assert rpc_summary(0, [])["p50"] is None
    xs = [0.1, 0.2, 0.4]
    s = rpc_summary(7, xs)
    assert s["count"] == 7 and s["p50"] == 0.2 and s["p95"] == 0.4
    assert s["ln_mean"] == round(math.log(0.2), 4)
    assert s["ln_sd"] == round(math.log(2) * math.sqrt(2 / 3), 4)
