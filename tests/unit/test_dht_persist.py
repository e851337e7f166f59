"""The DHT routing table and records kept in the node's SQLite database."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred

from aegis_hidden import identity
from aegis_hidden.dht import Contact, DhtPersistence, RecordStore, RoutingTable, sign_record
from aegis_hidden.dht._ids import bucket_index
from aegis_hidden.peers import InlineSQLite

T = TypeVar("T")
NOW = 1_800_000_000


def done(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine over the inline database (it completes at once)."""
    results: list[T] = []
    d = Deferred.fromCoroutine(coro)
    d.addCallback(results.append)
    failures: list[Any] = []
    d.addErrback(failures.append)
    if failures:
        failures[0].raiseException()
    assert results, "did not complete"
    return results[0]


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> identity.NodeIdentity:
    return identity.create(Path(tmp_path_factory.mktemp("alice")), NOW - 100)


def test_the_routing_table_survives_a_restart() -> None:
    rng = random.Random(1)
    own = Contact(rng.randbytes(32))
    table = RoutingTable(own, k=3)
    for _ in range(40):
        table.observe(Contact(rng.randbytes(32)), 0.0)
    db = InlineSQLite()
    p = DhtPersistence(db)
    done(p.open())
    done(p.open())  # idempotent
    saved = done(p.save_table(table))
    assert saved == len(table) + sum(len(b.replacements) for b in table.buckets.values())
    again = RoutingTable(own, k=3)
    assert done(p.load_table(again, 5.0)) == saved
    assert again.contacts() == table.contacts()
    assert {c.id for b in again.buckets.values() for c in b.replacements} == {
        c.id for b in table.buckets.values() for c in b.replacements}


def _near(own: Contact, rng: random.Random, index: int) -> Contact:
    """A contact whose id falls in ``own``'s bucket ``index`` (keys drawn until one does)."""
    while True:
        c = Contact(rng.randbytes(32))
        if bucket_index(own.id, c.id) == index:
            return c


def test_the_sibling_list_survives_a_restart() -> None:
    rng = random.Random(7)
    own = Contact(rng.randbytes(32))
    table = RoutingTable(own, k=2, sibling_size=8)
    # eight neighbours in one bucket (room for 2, 2 replacements): four of them are
    # known only to the sibling list
    near = [_near(own, rng, 252) for _ in range(8)]
    far = [_near(own, rng, 255) for _ in range(4)]
    for c in near + far:
        table.observe(c, 1.0)
    assert set(table.siblings()) >= set(near)
    kept = set(table.contacts()) | {c for b in table.buckets.values() for c in b.replacements}
    assert len(set(near) - kept) == 4  # the case the sibling table is for
    p = DhtPersistence(InlineSQLite())
    done(p.open())
    done(p.save_table(table))
    again = RoutingTable(own, k=2, sibling_size=8)
    done(p.load_table(again, 5.0))
    assert again.siblings() == table.siblings()
    assert again.closest(own.id, 8) == table.closest(own.id, 8)
    # the buckets and the replacement caches come back as they were
    assert again.contacts() == table.contacts()
    assert {i: b.replacements for i, b in again.buckets.items() if b.replacements} == {
        i: b.replacements for i, b in table.buckets.items() if b.replacements}


def test_a_database_written_before_the_sibling_table_opens_and_loads() -> None:
    rng = random.Random(8)
    own = Contact(rng.randbytes(32))
    stored = [Contact(rng.randbytes(32)) for _ in range(3)]
    db = InlineSQLite()

    def old_schema(conn: Any) -> None:  # dht_contacts as first released: no nonce, no siblings
        conn.execute("CREATE TABLE dht_contacts (ed25519_public BLOB PRIMARY KEY, "
                     "i2p TEXT NOT NULL, replacement INTEGER NOT NULL, position INTEGER NOT NULL)")
        conn.executemany("INSERT INTO dht_contacts VALUES (?, '', 0, ?)",
                         [(c.ed25519_public, i) for i, c in enumerate(stored)])

    db.run(old_schema)  # inline: done at once
    p = DhtPersistence(db)
    done(p.open())
    table = RoutingTable(own, k=20)
    assert done(p.load_table(table, 1.0)) == 3
    assert set(table.contacts()) == set(stored)
    assert set(table.siblings()) == set(stored)  # rebuilt from the contacts as before
    done(p.save_table(table))  # and the upgraded database takes the new rows
    again = RoutingTable(own, k=20)
    done(p.load_table(again, 2.0))
    assert again.siblings() == table.siblings()


def test_records_survive_a_restart_and_dead_ones_are_dropped(alice: identity.NodeIdentity) -> None:
    def make(name: bytes, expires: int) -> Any:
        return sign_record(alice.master, alice.mldsa, alice.record.to_bytes(), name, b"v", 1, expires)

    store = RecordStore(republish_interval=100)
    keep, short = make(b"keep", NOW + 5000), make(b"short", NOW + 50)
    store.put(keep, NOW)
    store.put(short, NOW)
    db = InlineSQLite()
    p = DhtPersistence(db)
    done(p.open())
    assert done(p.save_records(store)) == 2
    # a record damaged on disk is dropped, never trusted
    forged = dataclasses.replace(make(b"forged", NOW + 5000), value=b"changed")
    store.load(forged, NOW)
    done(p.save_record(store, forged.key))
    restored = RecordStore()
    loaded, dropped = done(p.load_records(restored, NOW + 60))  # `short` has expired
    assert (loaded, dropped) == (1, 2)
    assert restored.records() == [keep]
    assert restored.republish_at(keep.key) == NOW + 100
    assert done(p.load_records(RecordStore(), NOW + 60)) == (1, 0)  # the dead rows are gone
    # a record no longer held is deleted by save_record
    restored.expire(NOW + 6000)
    done(p.save_record(restored, keep.key))
    assert done(p.load_records(RecordStore(), NOW)) == (0, 0)
