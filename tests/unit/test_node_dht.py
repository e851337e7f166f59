"""The DHT as the node runs it (DhtService): fake sessions, real identities, a task.Clock."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

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
    return nodes


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
    assert again.own_record.sequence == before.sequence + 1
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
    assert (cheap.dht.dht.own in first.dht.dht.table) == paid
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
