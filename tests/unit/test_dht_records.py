"""Signed DHT records and the record store: every refusal is typed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden import identity
from aegis_hidden.dht import (
    MAX_LIFETIME,
    BadRecordSignature,
    Contact,
    DhtCore,
    ExpiredRecord,
    FindValue,
    QuotaExceeded,
    RecordStore,
    RecordTooLarge,
    Refused,
    SignedRecord,
    StaleRecord,
    Store,
    Stored,
    UnsignedRecord,
    Value,
    decode_response,
    encode,
    record_key,
    sign_record,
    verify_record,
)

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> identity.NodeIdentity:
    return identity.create(Path(tmp_path_factory.mktemp("alice")), NOW - 100)


@pytest.fixture(scope="module")
def mallory(tmp_path_factory: pytest.TempPathFactory) -> identity.NodeIdentity:
    return identity.create(Path(tmp_path_factory.mktemp("mallory")), NOW - 100)


def make(ident: identity.NodeIdentity, seq: int = 1, value: bytes = b"hello",
         expires: int = NOW + 3600, name: bytes = b"mailbox") -> SignedRecord:
    return sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), name, value, seq, expires)


def refusal(core: DhtCore, sender: Contact, request: Store) -> str:
    """The reason of the REFUSED answer ``core`` gives to ``request``."""
    answer = decode_response(core.handle(sender, encode(request), NOW).answer)
    assert isinstance(answer, Refused), answer
    return answer.reason


def test_a_signed_record_verifies_and_its_key_names_the_publisher(alice: identity.NodeIdentity) -> None:
    rec = make(alice)
    assert verify_record(rec, NOW) is rec
    assert rec.publisher == alice.ed25519_public
    assert rec.key == record_key(alice.ed25519_public, b"mailbox")


def test_unsigned_records_are_refused(alice: identity.NodeIdentity) -> None:
    rec = make(alice)
    for stripped in (dataclasses.replace(rec, signature=b""),
                     dataclasses.replace(rec, mldsa_signature=b""),
                     dataclasses.replace(rec, publisher_record=b"")):
        with pytest.raises(UnsignedRecord):
            verify_record(stripped, NOW)


def test_forged_records_are_refused(alice: identity.NodeIdentity, mallory: identity.NodeIdentity) -> None:
    rec = make(alice)
    with pytest.raises(BadRecordSignature):  # value changed after signing
        verify_record(dataclasses.replace(rec, value=b"evil"), NOW)
    bad = bytearray(rec.mldsa_signature)
    bad[10] ^= 1
    with pytest.raises(BadRecordSignature):
        verify_record(dataclasses.replace(rec, mldsa_signature=bytes(bad)), NOW)
    # Mallory signs with her keys but claims Alice's identity record: the key is Alice's
    forged = sign_record(mallory.master, mallory.mldsa, mallory.record.to_bytes(), b"mailbox",
                         b"evil", 9, NOW + 3600)
    claimed = dataclasses.replace(forged, publisher_record=alice.record.to_bytes())
    with pytest.raises(BadRecordSignature):
        verify_record(claimed, NOW)
    # and her own valid record lands at another key: she cannot overwrite Alice's
    assert forged.key != rec.key
    with pytest.raises(BadRecordSignature):  # a garbled publisher record
        verify_record(dataclasses.replace(rec, publisher_record=rec.publisher_record[:-5]), NOW)


def test_expired_and_too_long_lived_records_are_refused(alice: identity.NodeIdentity) -> None:
    with pytest.raises(ExpiredRecord):
        verify_record(make(alice, expires=NOW - 1), NOW)
    with pytest.raises(ExpiredRecord):
        verify_record(make(alice, expires=NOW + MAX_LIFETIME + 10), NOW)


def test_oversized_records_are_refused(alice: identity.NodeIdentity) -> None:
    with pytest.raises(RecordTooLarge):
        make(alice, value=bytes(9000))
    with pytest.raises(RecordTooLarge):
        make(alice, name=bytes(65))


def test_the_store_keeps_the_highest_sequence_and_refuses_replays(alice: identity.NodeIdentity) -> None:
    store = RecordStore()
    r1, r2 = make(alice, 1), make(alice, 2, b"newer")
    assert store.put(r1, NOW)
    assert not store.put(r1, NOW)  # same again: nothing new
    assert store.put(r2, NOW)
    assert store.get(r1.key, NOW) == r2
    with pytest.raises(StaleRecord):
        store.put(r1, NOW)  # lower sequence: a replay
    with pytest.raises(StaleRecord):
        store.put(make(alice, 2, b"other"), NOW)  # same sequence, other content
    assert len(store) == 1


def test_store_quotas(alice: identity.NodeIdentity) -> None:
    store = RecordStore(max_records=10, max_per_publisher=2)
    store.put(make(alice, name=b"a"), NOW)
    store.put(make(alice, name=b"b"), NOW)
    with pytest.raises(QuotaExceeded):
        store.put(make(alice, name=b"c"), NOW)


def test_expiry_and_republish_are_due_on_the_clock(alice: identity.NodeIdentity) -> None:
    store = RecordStore(republish_interval=100)
    short = make(alice, name=b"short", expires=NOW + 50)
    long = make(alice, name=b"long", expires=NOW + 1000)
    store.put(short, NOW)
    store.put(long, NOW)
    assert store.next_due() == NOW + 50
    assert store.due_republish(NOW + 10) == []
    assert store.expire(NOW + 60) == [short.key]
    assert store.get(short.key, NOW + 60) is None
    assert store.due_republish(NOW + 100) == [long]
    assert store.due_republish(NOW + 150) == []  # rescheduled one interval on
    assert store.due_republish(NOW + 200) == [long]
    assert store.expire(NOW + 1000) == [long.key] and len(store) == 0


def test_core_stores_and_serves_values_and_refuses_bad_ones(alice: identity.NodeIdentity) -> None:
    core = DhtCore(Contact(bytes(32)))
    asker = Contact(bytes(range(32)))
    rec = make(alice, expires=NOW + 7200)
    assert decode_response(core.handle(asker, encode(Store(rec)), NOW).answer) == Stored()
    got = decode_response(core.handle(asker, encode(FindValue(rec.key)), NOW).answer)
    assert isinstance(got, Value) and got.record == rec
    assert refusal(core, asker, Store(make(alice, 0))) == "record refused: StaleRecord"
    assert refusal(core, asker, Store(dataclasses.replace(rec, signature=b""))) == (
        "record refused: UnsignedRecord")
    assert core.refused == {"StaleRecord": 1, "UnsignedRecord": 1}
    # republish is due after the interval, expired records are dropped first
    assert core.due_republish(NOW + 10) == []
    assert core.due_republish(NOW + 3600) == [rec]
    assert core.due_republish(NOW + 3601 + 3600) == []


def test_a_lookup_verifies_the_value_it_is_given(alice: identity.NodeIdentity,
                                                 mallory: identity.NodeIdentity) -> None:
    asker = DhtCore(Contact(bytes(32)))
    holder = DhtCore(Contact(bytes(range(32))))
    liar = DhtCore(Contact(bytes(range(1, 33))))
    rec = make(alice)
    holder.store.put(rec, NOW)
    # the liar serves Mallory's record under Alice's key: wrong key -> failure
    liar.store.put(make(mallory), NOW)
    fake = liar.store.records()[0]
    lookup = asker.lookup(rec.key, seeds=[holder.own, liar.own])
    for q in lookup.next_queries():
        if q.contact == liar.own:
            answer = encode(Value(fake))
        else:
            answer = holder.handle(asker.own, encode(FindValue(rec.key)), NOW).answer
        asker.feed(lookup, q.contact, answer, NOW)
    result = lookup.result()
    assert result.value == rec and result.failures == 1
    assert asker.refused["DhtRecordError"] == 1


def test_store_is_rate_limited_per_peer_on_the_clock(alice: identity.NodeIdentity) -> None:
    from aegis_hidden.dht import StoreLimiter

    core = DhtCore(Contact(bytes(32)), limiter=StoreLimiter(rate=1.0, burst=2))
    asker, other = Contact(bytes(range(32))), Contact(bytes(range(1, 33)))
    records = [make(alice, seq, expires=NOW + 7200) for seq in range(1, 6)]
    core.handle(asker, encode(Store(records[0])), NOW)
    core.handle(asker, encode(Store(records[1])), NOW)
    assert refusal(core, asker, Store(records[2])) == "store rate exceeded"
    core.handle(other, encode(Store(records[2])), NOW)  # another peer has its own bucket
    core.handle(asker, encode(Store(records[3])), NOW + 1.0)  # one token back a second later
    assert core.refused["store rate"] == 1
    limiter = StoreLimiter(rate=1.0, burst=1, max_peers=2)
    assert limiter.take(b"a", 0) and limiter.take(b"b", 0) and limiter.take(b"c", 0)
    assert limiter.take(b"a", 0)  # forgotten (least recently used), so full again
    assert not limiter.take(b"c", 0)


def test_store_is_refused_by_a_node_that_knows_k_closer_ones(alice: identity.NodeIdentity) -> None:
    import random

    from aegis_hidden.dht import distance

    rec = make(alice, expires=NOW + 7200)
    rng = random.Random(3)
    own = Contact(rng.randbytes(32))
    core = DhtCore(own, k=2)
    assert core.responsible_for(rec.key)
    while len(core.table) < 2:
        c = Contact(rng.randbytes(32))
        if distance(c.id, rec.key) < distance(own.id, rec.key):
            core.table.observe(c, NOW)
    assert not core.responsible_for(rec.key)
    assert "k closest" in refusal(core, Contact(bytes(range(32))), Store(rec))
    assert core.refused["not responsible"] == 1


def test_a_quorum_outvotes_a_holder_that_replays_an_old_record(alice: identity.NodeIdentity) -> None:
    old, new = make(alice, 1, b"old", NOW + 7200), make(alice, 2, b"new", NOW + 7200)
    asker = DhtCore(Contact(bytes(32)))
    holders = [Contact(bytes([i]) * 32) for i in range(1, 4)]
    replayer = holders[0]

    def run(quorum: int) -> Any:
        lookup = asker.lookup(new.key, seeds=holders, quorum=quorum)
        while not lookup.done:
            queries = lookup.next_queries()
            # the replayer answers first
            for q in sorted(queries, key=lambda q: q.contact != replayer):
                asker.feed(lookup, q.contact, encode(Value(old if q.contact == replayer else new)),
                           NOW)
        return lookup.result()

    first = run(1)
    assert first.value == old  # one answer cannot tell a replay from the newest
    assert asker.newest(first.values) == new  # answers already in flight still count
    assert asker.newest(run(2).values) == new
    assert asker.newest(run(3).values) == new
