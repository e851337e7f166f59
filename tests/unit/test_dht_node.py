"""The DHT over the node's rpc channel: three nodes on fake sessions and a task.Clock."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from aegis_hidden import identity
from aegis_hidden.config import Config
from aegis_hidden.dht import Contact, DhtCore, DhtNode, node_id, sign_record
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, path: Path, seed: int,
                 key: bytes | None = None, k: int = 20) -> None:
        self.key = key if key is not None else os.urandom(32)
        self.address = onion_address_from_public_key(self.key)
        bus = EventBus(now=clock.seconds)
        self.core = NodeCore(Config(), None, str(path.parent), bus, clock,
                             db=InlineSQLite(str(path)), local_address=self.address)
        self.core.rpc._rng = random.Random(seed)
        self.core.attach_session_factory(net.node(self.address))
        self.core.startService()
        result_of(self.core.when_ready())
        self.contact = Contact(self.key)
        self.dht = DhtNode(DhtCore(self.contact, k=k, now=clock.seconds()), self.core.rpc, clock,
                           random.Random(seed), timeout=5.0)

    def knows(self, *others: Node) -> None:
        for other in others:
            result_of(self.core.store.add(other.address))


@pytest.fixture
def three(tmp_path: Path) -> tuple[Clock, Node, Node, Node]:
    clock = Clock()
    clock.advance(1_800_000_000)
    net = FakeNetwork()
    a, b, c = (Node(net, clock, tmp_path / f"{n}.db", i) for i, n in enumerate("abc"))
    a.knows(b, c)
    b.knows(a, c)
    c.knows(a, b)
    return clock, a, b, c


def test_bootstrap_finds_a_node_known_only_to_the_bootstrap_node(
        three: tuple[Clock, Node, Node, Node]) -> None:
    _, a, b, c = three
    b.dht.core.table.observe(c.contact, 0.0)  # b knows c; a knows only b
    found = result_of(a.dht.bootstrap([b.contact]))
    assert {x.id for x in found.closest} == {b.contact.id, c.contact.id}
    assert c.contact in a.dht.core.table
    assert a.contact in b.dht.core.table  # b learnt the asker from its session
    result = result_of(a.dht.lookup(c.contact.id))
    assert result.found(c.contact.id)
    assert node_id(c.key) == c.contact.id


def test_put_and_get_a_signed_record(three: tuple[Clock, Node, Node, Node], tmp_path: Path) -> None:
    clock, a, b, c = three
    now = int(clock.seconds())
    for x, y in ((a, b), (b, c), (c, a)):
        x.dht.core.table.observe(y.contact, now)
    ident = identity.create(tmp_path / "publisher", now - 10)
    record = sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), b"topic", b"v1", 1,
                         now + 3600)
    stored = result_of(a.dht.put(record))
    assert stored == 2  # b and c took it (a holds it itself)
    assert b.dht.core.store.get(record.key, now) == record
    assert result_of(c.dht.get(record.key)) == record
    assert result_of(c.dht.get(record.key, quorum=2)) == record


def test_an_unanswered_request_is_a_timeout_on_the_clock(three: tuple[Clock, Node, Node, Node]) -> None:
    clock, a, b, _ = three
    b.core.rpc.on_request(lambda peer, body: _never())
    a.dht.core.table.observe(b.contact, clock.seconds())
    d = a.dht.lookup(os.urandom(32))
    assert not d.called
    clock.advance(5.1)
    result = result_of(d)
    assert result.failures == 1 and result.closest == []
    assert a.dht.stats["rpc_failures"] == 1


def test_maintenance_refreshes_buckets_on_one_looping_call(
        three: tuple[Clock, Node, Node, Node]) -> None:
    clock, a, b, _ = three
    a.dht.core.table.observe(b.contact, clock.seconds())
    a.dht.start(60.0)
    clock.advance(3600 + 60)
    assert a.dht.stats["lookups"] >= 1
    a.dht.stop()
    before = a.dht.stats["lookups"]
    clock.advance(7200)
    assert a.dht.stats["lookups"] == before


def _never() -> Any:
    from twisted.internet.defer import Deferred

    return Deferred()


def test_a_full_bucket_pings_its_oldest_over_rpc(tmp_path: Path) -> None:
    from aegis_hidden.dht import bucket_index

    clock = Clock()
    net = FakeNetwork()
    a = Node(net, clock, tmp_path / "a.db", 1, k=1)
    b = Node(net, clock, tmp_path / "b.db", 2)
    c = Node(net, clock, tmp_path / "c.db", 3, key=_same_bucket(a, b))  # b's bucket in a
    a.knows(b, c)
    b.knows(a)
    c.knows(a)
    a.dht.core.table.observe(b.contact, clock.seconds())
    result_of(c.dht.ping(a.contact))  # c asks a: a's bucket is full, a pings b, b answers
    assert b.dht.stats["requests_answered"] == 1
    assert a.dht.core.table.contacts() == [b.contact]  # the oldest answered: it stays
    bucket = a.dht.core.table.bucket(bucket_index(a.contact.id, b.contact.id))
    assert bucket.replacements == [c.contact] and bucket.pinging is None
    # b goes silent: the next newcomer's ping times out and c takes b's place
    b.core.rpc.on_request(lambda peer, body: _never())
    d = Node(net, clock, tmp_path / "d.db", 4, key=_same_bucket(a, b))
    a.knows(d)
    d.knows(a)
    result_of(d.dht.ping(a.contact))
    clock.advance(5.1)
    assert b.contact not in a.dht.core.table
    assert a.dht.core.table.contacts()[0] in (c.contact, d.contact)


def _same_bucket(a: Node, b: Node) -> bytes:
    from aegis_hidden.dht import bucket_index

    while True:
        key = os.urandom(32)
        if bucket_index(a.contact.id, Contact(key).id) == bucket_index(a.contact.id, b.contact.id):
            return key


def test_a_contact_that_answers_wrongly_loses_its_place(three: tuple[Clock, Node, Node, Node]) -> None:
    from aegis_hidden.dht import Pong, encode

    clock, a, b, _ = three
    a.dht.core.table.max_failures = 2
    b.core.rpc.on_request(lambda peer, body: encode(Pong()))  # a PONG to every FIND_NODE
    a.dht.core.table.observe(b.contact, clock.seconds())
    for _ in range(2):
        result = result_of(a.dht.lookup(os.urandom(32)))
        assert result.failures == 1
    assert b.contact not in a.dht.core.table
    assert a.dht.core.refused["wrong answer"] == 2


def test_the_table_and_records_survive_a_restart(three: tuple[Clock, Node, Node, Node],
                                                 tmp_path: Path) -> None:
    from aegis_hidden.dht import DhtPersistence
    from aegis_hidden.peers import InlineSQLite

    clock, a, b, c = three
    db = InlineSQLite(str(tmp_path / "dht.db"))
    a.dht.persistence = DhtPersistence(db)
    assert result_of(a.dht.load()) == (0, 0, 0)
    a.dht.core.table.observe(b.contact, clock.seconds())
    b.dht.core.table.observe(c.contact, clock.seconds())
    now = int(clock.seconds())
    ident = identity.create(tmp_path / "publisher", now - 10)
    record = sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), b"n", b"v", 1, now + 600)
    result_of(a.dht.put(record))
    a.dht.start(60.0)
    clock.advance(60)  # the maintenance tick saves
    a.dht.stop()
    again = DhtNode(DhtCore(a.contact, now=clock.seconds()), a.core.rpc, clock, random.Random(1),
                    persistence=DhtPersistence(db))
    contacts, records, dropped = result_of(again.load())
    assert contacts == 2 and records == 1 and dropped == 0
    assert {x.id for x in again.core.table.contacts()} == {b.contact.id, c.contact.id}
    assert again.core.store.get(record.key, clock.seconds()) == record
    clock.advance(600)  # the record expires: dropped at the next load
    assert result_of(DhtNode(DhtCore(a.contact), a.core.rpc, clock, random.Random(1),
                             persistence=DhtPersistence(db)).load()) == (2, 0, 1)
