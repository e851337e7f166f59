"""The Kademlia core (aegis_hidden.dht): ids, k-buckets, lookups, answers."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.addresses import onion_address_from_public_key
from aegis_hidden.dht import (
    Contact,
    DhtCore,
    FindNode,
    Lookup,
    LookupMisuse,
    Nodes,
    Ping,
    Pong,
    Refused,
    RoutingTable,
    SignedRecord,
    bucket_index,
    decode_response,
    distance,
    encode,
    node_id,
    node_id_of_onion,
)


def contact(rng: random.Random) -> Contact:
    return Contact(rng.randbytes(32))


def test_node_id_is_sha256_of_the_onion_key() -> None:
    import hashlib

    key = bytes(range(32))
    onion = onion_address_from_public_key(key)
    assert node_id(key) == hashlib.sha256(key).digest() == node_id_of_onion(onion)
    assert Contact(key).id == node_id(key)
    assert Contact(key).onion == onion
    assert Contact.of_onion(onion) == Contact(key)
    with pytest.raises(ValueError, match="32 bytes"):
        Contact(b"short")
    with pytest.raises(ValueError, match="b32"):
        Contact(key, i2p="example.i2p")


def test_distance_and_bucket_index() -> None:
    a = bytes(32)
    assert distance(a, a) == 0
    assert bucket_index(a, a) == -1
    assert bucket_index(a, bytes(31) + b"\x01") == 0
    assert bucket_index(a, b"\x80" + bytes(31)) == 255


def test_bucket_full_keeps_old_contacts_and_asks_to_ping_the_oldest() -> None:
    rng = random.Random(1)
    own = Contact(bytes(32))
    table = RoutingTable(own, k=2)
    # three contacts in the far half (bucket 255)
    far: list[Contact] = []
    while len(far) < 4:
        c = contact(rng)
        if bucket_index(own.id, c.id) == 255:
            far.append(c)
    assert table.observe(far[0], 1.0) is None
    assert table.observe(far[1], 2.0) is None
    ping = table.observe(far[2], 3.0)
    assert ping is not None and ping.oldest == far[0] and ping.newcomer == far[2]
    assert far[2] not in table  # waits in the replacement cache
    assert table.observe(far[3], 4.0) is None  # one ping at a time per bucket
    # the oldest answers: it stays, now the freshest
    table.ping_answered(far[0], 5.0)
    assert table.buckets[255].contacts == [far[1], far[0]]
    # next newcomer: ping the (new) oldest, which fails -> freshest replacement promoted
    ping = table.observe(far[2], 6.0)
    assert ping is not None and ping.oldest == far[1]
    promoted = table.ping_failed(far[1])
    assert promoted == far[2]
    assert set(table.contacts()) == {far[0], far[2]}


def test_repeated_failures_drop_a_contact() -> None:
    rng = random.Random(2)
    table = RoutingTable(Contact(bytes(32)), max_failures=2)
    c = contact(rng)
    table.observe(c, 0.0)
    assert table.failed(c) is None and c in table
    table.failed(c)
    assert c not in table
    # an answer in between resets the count
    table.observe(c, 1.0)
    table.failed(c)
    table.observe(c, 2.0)
    table.failed(c)
    assert c in table


def test_closest_orders_by_xor_distance() -> None:
    rng = random.Random(3)
    table = RoutingTable(contact(rng))
    for _ in range(300):
        table.observe(contact(rng), 0.0)
    target = rng.randbytes(32)
    got = table.closest(target, 10)
    everyone = sorted(table.contacts(), key=lambda c: distance(c.id, target))
    assert got == everyone[:10]


def test_refresh_is_due_per_bucket_on_the_clock_and_targets_fall_in_the_bucket() -> None:
    rng = random.Random(4)
    own = contact(rng)
    table = RoutingTable(own, refresh_interval=100.0, now=0.0)
    for _ in range(50):
        table.observe(contact(rng), 10.0)
    assert table.due_refresh(50.0) == []
    due = table.due_refresh(200.0)
    assert due and all(i >= 0 for i in due)
    for i in due:
        target = table.refresh_target(i, rng)
        assert bucket_index(own.id, target) == i
    table.touch(table.refresh_target(due[-1], rng), 200.0)
    assert due[-1] not in table.due_refresh(200.0)


# -- lookups over a small in-memory network, synchronous -----------------------

def network(n: int, seed: int, k: int = 20) -> dict[bytes, DhtCore]:
    rng = random.Random(seed)
    cores = {}
    for _ in range(n):
        c = contact(rng)
        cores[c.id] = DhtCore(c, k=k)
    everyone = [core.own for core in cores.values()]
    for core in cores.values():
        for c in rng.sample(everyone, min(len(everyone), 60)):
            core.table.observe(c, 0.0)
    return cores


def run(lookup: Lookup[SignedRecord], start: DhtCore, cores: dict[bytes, DhtCore],
        bad: frozenset[bytes] | set[bytes] = frozenset(), max_steps: int = 10_000) -> None:
    steps = 0
    while not lookup.done:
        queries = lookup.next_queries()
        if not queries:
            break
        for q in queries:
            steps += 1
            assert steps < max_steps
            if q.contact.id in bad:
                start.feed(lookup, q.contact, None, 0.0)
                continue
            handled = cores[q.contact.id].handle(start.own, start.find_node(lookup.target), 0.0)
            start.feed(lookup, q.contact, handled.answer, 0.0)


def test_lookup_finds_the_target_among_200_nodes() -> None:
    cores = network(200, seed=5)
    ids = list(cores)
    rng = random.Random(6)
    for _ in range(20):
        a, b = rng.sample(ids, 2)
        lookup = cores[a].lookup(b)
        run(lookup, cores[a], cores)
        assert lookup.done
        result = lookup.result()
        assert result.found(b)
        expected = sorted((i for i in ids if i != a), key=lambda i: distance(i, b))[:20]
        assert [c.id for c in result.closest] == expected
        assert result.messages >= 1 and result.rounds >= 1


def test_disjoint_paths_never_share_a_queried_node() -> None:
    cores = network(200, seed=7)
    ids = list(cores)
    a, b = ids[0], ids[1]
    lookup = cores[a].lookup(b, paths=4)
    asked: dict[bytes, int] = {}
    while not lookup.done:
        queries = lookup.next_queries()
        if not queries:
            break
        for q in queries:
            assert q.contact.id not in asked  # never asked twice, by any path
            asked[q.contact.id] = q.path
            answer = cores[q.contact.id].handle(cores[a].own, encode(FindNode(b)), 0.0).answer
            cores[a].feed(lookup, q.contact, answer, 0.0)
    assert len(set(asked.values())) == 4
    assert lookup.result().found(b)


def test_lookup_survives_timeouts_and_respects_alpha() -> None:
    cores = network(200, seed=8)
    ids = list(cores)
    a, b = ids[0], ids[1]
    bad = set(random.Random(9).sample([i for i in ids if i not in (a, b)], 40))
    lookup = cores[a].lookup(b)
    first = lookup.next_queries()
    assert len(first) == 3  # α
    assert lookup.next_queries() == []  # nothing more until something comes back
    for q in first:
        cores[a].feed(lookup, q.contact, None, 0.0)  # all three time out
    run(lookup, cores[a], cores, bad)
    result = lookup.result()
    assert result.failures >= 3
    assert result.found(b)


def test_lookup_refuses_answers_it_did_not_ask_for() -> None:
    rng = random.Random(10)
    seeds = [contact(rng) for _ in range(5)]
    lookup: Lookup[object] = Lookup(rng.randbytes(32), seeds)
    with pytest.raises(LookupMisuse):
        lookup.on_response(seeds[0], ())
    qs = lookup.next_queries()
    lookup.on_failure(qs[0].contact)
    with pytest.raises(LookupMisuse):
        lookup.on_failure(qs[0].contact)


def test_empty_lookup_is_done_at_once() -> None:
    lookup: Lookup[object] = Lookup(bytes(32), [])
    assert lookup.done and lookup.next_queries() == [] and lookup.result().closest == []


def test_a_garbled_answer_is_a_failure_of_that_contact() -> None:
    cores = network(50, seed=11)
    a = next(iter(cores.values()))
    lookup = a.lookup(bytes(32))
    q = lookup.next_queries()[0]
    a.feed(lookup, q.contact, b"\xff\xff garbage", 0.0)
    assert lookup.result().failures == 1
    assert a.refused["malformed answer"] == 1


def test_core_answers_ping_and_find_node_and_learns_the_asker() -> None:
    cores = network(30, seed=12)
    a, b = list(cores.values())[:2]
    stranger = Contact(bytes(range(32)))
    handled = a.handle(stranger, encode(Ping()), 0.0)
    assert decode_response(handled.answer) == Pong()
    assert stranger in a.table
    nodes = decode_response(a.handle(b.own, encode(FindNode(b.own.id)), 0.0).answer)
    assert isinstance(nodes, Nodes) and len(nodes.contacts) <= 20
    # refusals are answers (REFUSED with a reason), not rpc errors
    newcomer = Contact(bytes(range(2, 34)))
    garbage = a.handle(newcomer, b"\x00garbage", 0.0)
    assert decode_response(garbage.answer) == Refused("malformed request")
    assert decode_response(a.handle(newcomer, encode(Pong()), 0.0).answer) == Refused(
        "malformed request")  # an answer is not a request
    assert a.refused["malformed"] == 2
    assert newcomer not in a.table  # a malformed request teaches the table nothing


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 6), st.integers(1, 4), st.floats(0.0, 0.9))
def test_any_lookup_terminates_asking_each_contact_once(seed: int, alpha: int, paths: int,
                                                        fail: float) -> None:
    """Whatever fails, a lookup ends, never asks anyone twice, keeps α per path."""
    rng = random.Random(seed)
    universe = [contact(rng) for _ in range(60)]
    target = rng.randbytes(32)
    lookup: Lookup[object] = Lookup(target, rng.sample(universe, 10), k=8, alpha=alpha,
                                    paths=paths)
    asked: set[bytes] = set()
    in_flight: list[Contact] = []
    for _ in range(1000):
        if lookup.done:
            break
        for q in lookup.next_queries():
            assert q.contact.id not in asked
            asked.add(q.contact.id)
            in_flight.append(q.contact)
        per_path = len(in_flight)
        assert per_path <= alpha * paths
        if not in_flight:
            break
        c = in_flight.pop(rng.randrange(len(in_flight)))
        if rng.random() < fail:
            lookup.on_failure(c)
        else:
            lookup.on_response(c, rng.sample(universe, 8))
    assert lookup.done
    r = lookup.result()
    assert r.messages == len(asked) and len(r.closest) <= 8
    assert r.closest == sorted(r.closest, key=lambda c: distance(c.id, target))


# -- sibling lists (S/Kademlia §4.2) and lookups that end at the target ---------

def _near(own: Contact, rng: random.Random, index: int) -> Contact:
    """A contact whose id falls in ``own``'s bucket ``index`` (keys drawn until one does)."""
    while True:
        c = contact(rng)
        if bucket_index(own.id, c.id) == index:
            return c


def test_the_sibling_list_keeps_the_closest_even_when_their_bucket_is_full() -> None:
    rng = random.Random(20)
    own = contact(rng)
    table = RoutingTable(own, k=2, sibling_size=6)
    near = [_near(own, rng, 250) for _ in range(5)]  # one bucket, room for 2
    far = [_near(own, rng, 255) for _ in range(3)]
    for c in near + far:
        table.observe(c, 1.0)
    assert sum(1 for c in near if c in table) == 2  # the bucket kept its first two
    by_distance = sorted(near + far, key=lambda c: distance(c.id, own.id))
    assert table.siblings() == by_distance[:6]
    # lookups and the responsibility check see the siblings the buckets had no room for
    got = table.closest(own.id, 5)
    assert got == by_distance[:5]
    assert all(c in got for c in near)
    # without a sibling list the neighbours the bucket had no room for are unknown
    plain = RoutingTable(own, k=2, sibling_size=0)
    for c in near + far:
        plain.observe(c, 1.0)
    assert plain.siblings() == [] and len(plain.closest(own.id, 5)) == 4


def test_a_sibling_that_keeps_failing_is_dropped_and_a_closer_one_displaces_the_farthest() -> None:
    rng = random.Random(21)
    own = contact(rng)
    table = RoutingTable(own, k=1, sibling_size=3, max_failures=2)
    a, b, c = (_near(own, rng, 250) for _ in range(3))
    for x in (a, b, c):
        table.observe(x, 0.0)
    outside = [x for x in (a, b, c) if x not in table]
    assert len(outside) == 2 and len(table.siblings()) == 3
    gone = outside[0]
    table.failed(gone)
    assert gone in table.siblings()
    table.failed(gone)
    assert gone not in table.siblings() and gone not in table.closest(own.id, 10)
    # a sibling seen again counts from zero; a closer newcomer pushes out the farthest
    closer = _near(own, rng, 246)
    table.observe(gone, 1.0)
    table.observe(closer, 1.0)
    sibs = table.siblings()
    assert len(sibs) == 3 and sibs[0] == closer
    assert max((a, b, c), key=lambda x: distance(x.id, own.id)) not in sibs


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), near_own=st.booleans(), n=st.integers(1, 40))
def test_closest_from_the_buckets_equals_sorting_everything(seed: int, near_own: bool,
                                                           n: int) -> None:
    rng = random.Random(seed)
    own = contact(rng)
    table = RoutingTable(own, k=4, sibling_size=10)
    for _ in range(120):
        table.observe(contact(rng), 0.0)
    target = own.id if near_own else rng.randbytes(32)
    known = {c.id: c for c in table.contacts() + table.siblings()}
    expected = sorted(known.values(), key=lambda c: distance(c.id, target))[:n]
    assert table.closest(target, n) == expected
    exclude = expected[0].id
    assert table.closest(target, n, exclude=exclude) == [
        c for c in sorted(known.values(), key=lambda c: distance(c.id, target))
        if c.id != exclude][:n]


def test_a_lookup_until_found_ends_at_the_first_answer_naming_the_target() -> None:
    cores = network(200, seed=22)
    ids = list(cores)
    rng = random.Random(23)
    shorter = 0
    for _ in range(15):
        a, b = rng.sample(ids, 2)
        if any(c.id == b for c in cores[a].table.contacts()):
            quick = cores[a].lookup(b, until_found=True)
            assert quick.done and quick.next_queries() == []  # known already: no query
            assert quick.result().found_depth == 0
            continue
        full = cores[a].lookup(b)
        run(full, cores[a], cores)
        quick = cores[a].lookup(b, until_found=True)
        run(quick, cores[a], cores)
        r, q = full.result(), quick.result()
        assert q.target_seen and q.found_depth is not None and q.found_depth <= q.rounds
        assert q.messages <= r.messages and q.rounds <= r.rounds
        assert r.found_depth is not None  # the full lookup saw it too, and went on
        shorter += q.messages < r.messages
    assert shorter > 0
