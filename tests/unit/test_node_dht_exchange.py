"""Peer exchange and reachability checks as the node runs them (DhtService, fake sessions,
real identities, a task.Clock)."""

from __future__ import annotations

import dataclasses
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from aegis_hidden.config import parse_config
from aegis_hidden.dht import OFFER_RATE, Contact, Offered, PexEntry
from aegis_hidden.peers import WEIGHTS, Behaviour
from aegis_hidden.testing import FakeNetwork, fake_private_key, result_of

from .test_node_dht import NOW, Node, _answer_with, network, settle


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


def forget(node: Node, other: Node) -> Contact:
    """``node`` forgets ``other`` as a DHT contact (table and candidates)."""
    contact = other.dht.dht.own
    node.dht.dht.table.remove(contact)
    assert not node.dht.dht.table.knows(contact)
    return contact


def entry_of(node: Node) -> PexEntry:
    return PexEntry(node.dht._current().record.to_bytes(), node.dht.dht.own.nonce)


def test_offered_records_are_accepted_and_the_contacts_checked_before_trusted(
        clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 4)
    a, b, c = nodes[1], nodes[2], nodes[3]
    contact = forget(b, c)
    b.dht.dht.offer_limiter._buckets.clear()  # the ticks' offers spent some of a's burst
    was = b.dht.stats()
    taken = a.dht.stats()["exchange"]["offers_taken"]
    accepted = b.core.metrics.counters["dht_exchange_accepted"]
    offered = result_of(a.dht.node.offer(b.dht.dht.own, [entry_of(c)]))
    assert offered == Offered(1, 0)
    candidates = b.dht.dht.candidates
    assert candidates is not None and contact in candidates
    assert not b.dht.dht.table.knows(contact)  # learnt, not trusted yet
    stats = b.dht.stats()
    assert stats["exchange"]["records_accepted"] == was["exchange"]["records_accepted"] + 1
    assert stats["candidates"]["queued"] == was["candidates"]["queued"] + 1
    assert stats["candidates"]["waiting"] == 1
    assert b.core.metrics.counters["dht_exchange_accepted"] == accepted + 1
    assert a.dht.stats()["exchange"]["offers_taken"] == taken + 1
    # b's next tick PINGs it through a session: it answers and is trusted
    settle(clock, [b], ticks=1)
    assert b.dht.dht.table.knows(contact)
    assert b.dht.stats()["candidates"]["trusted"] == was["candidates"]["trusted"] + 1
    assert b.core.metrics.counters["dht_candidates_trusted"] == b.dht.stats()[
        "candidates"]["trusted"]


def test_the_maintenance_tick_offers_good_contacts_to_connected_peers(
        clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 5)
    sent = sum(n.dht.node.stats["offers_sent"] for n in nodes)
    taken = sum(n.dht.dht.exchange["records_accepted"] for n in nodes)
    assert sent >= len(nodes) and taken >= len(nodes)  # settle ran three ticks each
    for n in nodes:  # each offer carries at most 3 entries, each a table contact's record
        assert n.dht.node.stats["records_offered"] <= 3 * n.dht.node.stats["offers_sent"]
        assert n.dht.dht.refused["offer rate"] == 0  # one offer per peer per tick at most
        assert len(n.dht.dht.table) == len(nodes) - 1


def test_a_short_maintenance_interval_never_makes_a_node_exceed_its_peers_offer_rate(
        clock: Clock, tmp_path: Path) -> None:
    # ticks every 5 s (the integration test's interval) for 5 minutes: each node offers
    # a peer again only after 1 / OFFER_RATE seconds, so no peer refuses for the rate
    nodes = network(clock, tmp_path, 4)
    before = sum(n.dht.node.stats["offers_sent"] for n in nodes)
    offered: dict[tuple[str, str], list[float]] = {}
    for n in nodes:
        offer = n.dht.node.offer

        def noted(peer: Contact, entries: Any, n: Node = n, offer: Any = offer) -> Any:
            offered.setdefault((n.onion, peer.onion), []).append(clock.seconds())
            return offer(peer, entries)

        n.dht.node.offer = noted  # type: ignore[method-assign,assignment]
    for _ in range(60):
        clock.advance(5)
        for n in nodes:
            result_of(n.dht.tick())
    assert sum(n.dht.node.stats["offers_sent"] for n in nodes) - before >= len(nodes) * 4
    for times in offered.values():
        assert all(b - a >= 1 / OFFER_RATE for a, b in pairwise(times)), times
    for n in nodes:
        assert n.dht.dht.refused["offer rate"] == 0
        assert n.dht.stats()["exchange"]["offers_over_rate"] == 0


def test_offers_over_a_peers_rate_are_refused_and_counted(clock: Clock,
                                                          tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 4)
    a, b, c = nodes[1], nodes[2], nodes[3]
    b.dht.dht.offer_limiter._buckets.clear()  # the ticks' offers spent some of a's burst
    before = b.core.store.get(a.onion)
    answers = [result_of(a.dht.node.offer(b.dht.dht.own, [entry_of(c)])) for _ in range(4)]
    assert [isinstance(x, Offered) for x in answers] == [True, True, True, False]
    assert b.dht.dht.refused["offer rate"] == 1
    assert b.dht.stats()["exchange"]["offers_over_rate"] == 1
    assert b.core.metrics.counters["dht_exchange_refused"] == 1
    assert a.dht.node.stats["offers_refused"] == 1
    after = b.core.store.get(a.onion)  # over the rate is refused, not held against it
    assert before is not None and after is not None
    assert after.reputation == before.reputation
    assert not b.dht.misbehaviour


def test_a_forged_record_is_refused_and_costs_the_offerer(clock: Clock,
                                                          tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 4)
    a, b, c = nodes[1], nodes[2], nodes[3]
    b.dht.dht.offer_limiter._buckets.clear()
    contact = forget(b, c)
    good = entry_of(c)
    forged = dataclasses.replace(good, record=good.record[:-3] + b"xyz")
    before = b.core.store.get(a.onion)
    assert result_of(a.dht.node.offer(b.dht.dht.own, [forged])) == Offered(0, 1)
    after = b.core.store.get(a.onion)
    assert before is not None and after is not None
    weight = WEIGHTS[Behaviour.DHT_BAD_RECORD][1]
    assert after.reputation == pytest.approx(before.reputation * (1 - weight))
    assert b.dht.misbehaviour == {"dht_bad_record": 1}
    assert b.of_type("dht_record_refused")[-1]["reason"] == "ForgedEntry"
    assert b.dht.stats()["exchange"]["records_refused"] == 1
    assert b.core.metrics.counters["dht_exchange_refused"] == 1
    candidates = b.dht.dht.candidates
    assert candidates is not None and contact not in candidates


def test_a_candidate_that_never_answers_is_never_trusted(clock: Clock, tmp_path: Path) -> None:
    nodes = network(clock, tmp_path, 4)
    a, b, c = nodes[1], nodes[2], nodes[3]
    b.dht.dht.offer_limiter._buckets.clear()
    contact = forget(b, c)
    was = b.dht.stats()["candidates"]
    _answer_with(c, lambda body: Deferred())  # c never answers anything now
    assert result_of(a.dht.node.offer(b.dht.dht.own, [entry_of(c)])) == Offered(1, 0)
    settle(clock, [b], ticks=3)  # the PING times out within a tick
    assert not b.dht.dht.table.knows(contact)
    assert contact not in b.dht.dht.table.closest(contact.id)
    counts = b.dht.stats()["candidates"]
    assert counts["unreachable"] == was["unreachable"] + 1
    assert counts["trusted"] == was["trusted"]
    assert b.core.metrics.counters["dht_candidates_unreachable"] == counts["unreachable"]
    # offered again within the hour: not queued, not asked again
    b.dht.dht.offer_limiter._buckets.clear()
    result_of(a.dht.node.offer(b.dht.dht.own, [entry_of(c)]))
    candidates = b.dht.dht.candidates
    assert candidates is not None and contact not in candidates


def test_a_requester_waits_for_its_check_and_a_lookup_answer_checks_it(
        clock: Clock, tmp_path: Path) -> None:
    net = FakeNetwork()
    first = Node(net, clock, tmp_path, "n0", 0, [])
    joiner = Node(net, clock, tmp_path, "n1", 1, [first.onion])
    first.start()
    joiner.start()  # its first tick bootstraps: a lookup through n0
    asker = joiner.dht.dht.own
    # n0 answered, so the joiner trusts it; the joiner only asked n0: a candidate there
    assert joiner.dht.dht.table.knows(first.dht.dht.own)
    assert not first.dht.dht.table.knows(asker)
    candidates = first.dht.dht.candidates
    assert candidates is not None and asker in candidates
    # n0's lookup reaches the joiner only if it answers, which checks it
    result_of(first.dht.node.lookup(asker.id, seeds=[asker]))
    assert first.dht.dht.table.knows(asker) and asker not in candidates
    assert candidates.counts["checked_by_lookup"] == 1


def test_an_i2p_binding_offered_by_its_owner_is_passed_on_and_routes_strangers_over_i2p(
        clock: Clock, tmp_path: Path) -> None:
    net = FakeNetwork()
    share = parse_config({"dht": {"puzzle_bits": 8, "exchange_i2p": True}})
    first = Node(net, clock, tmp_path, "n0", 0, [])
    owner = Node(net, clock, tmp_path, "owner", 1, [first.onion], cfg=share)
    relay = Node(net, clock, tmp_path, "relay", 2, [first.onion])
    stranger = Node(net, clock, tmp_path, "stranger", 3, [first.onion])
    nodes = [first, owner, relay, stranger]
    key = fake_private_key()
    owner.service.bind_i2p_destination(key.destination.base64)
    b32 = key.destination.b32
    for n in nodes:
        n.start()
    for n in nodes[1:]:
        result_of(n.dht.tick())
    settle(clock, nodes)
    for n in nodes:
        n.dht.dht.offer_limiter._buckets.clear()
    # the owner offers its own record with its binding; the relay takes it
    entries = owner.dht._entries_for(relay.dht.dht.own)
    assert entries[0].i2p_binding == owner.service.identity.i2p_binding.to_bytes()  # type: ignore[union-attr]
    assert result_of(owner.dht.node.offer(relay.dht.dht.own, entries)).accepted >= 1
    assert relay.dht.learnt_by_exchange(owner.onion) is not None
    info = relay.core.store.get(owner.onion)
    assert info is not None and info.i2p_destination == b32
    # the relay passes the binding on; a node without it never adds one of its own
    passed = [e for e in relay.dht._entries_for(stranger.dht.dht.own)
              if e.record == owner.dht._current().record.to_bytes()]
    if not passed:  # the relay picks 3 of its contacts at random: offer the owner's
        passed = [PexEntry(owner.dht._current().record.to_bytes(), owner.dht.dht.own.nonce,
                           relay.dht._pex[owner.onion][1])]
    assert passed[0].i2p_binding
    assert all(not e.i2p_binding for e in relay.dht._entries_for(stranger.dht.dht.own)
               if e.record != owner.dht._current().record.to_bytes())
    learnt = relay.dht.learnt_by_exchange(owner.onion)
    assert learnt is not None and learnt[1] == b32
    # the stranger learns the owner's I2P name from the relay alone ...
    result_of(stranger.core.store.remove(owner.onion))
    stranger.core.pool.close(owner.onion, "test")
    assert result_of(relay.dht.node.offer(stranger.dht.dht.own, passed)) == Offered(1, 0)
    assert stranger.dht.learnt_by_exchange(owner.onion) == (
        owner.dht._current().record.to_bytes(), b32)
    # ... and a lookup query on an odd disjoint path to the owner goes over I2P
    stranger.core.transports.extend([cast(Any, SimpleNamespace(name=n)) for n in ("tor", "i2p")])
    stranger.dht._path_of[owner.onion] = 1
    assert stranger.dht.route(owner.onion) == b32
    stranger.dht._path_of[owner.onion] = 0
    assert stranger.dht.route(owner.onion) == owner.onion
    # a node that did not allow it offers no binding of its own
    assert all(not e.i2p_binding for e in relay.dht._entries_for(first.dht.dht.own)
               if e.record == relay.dht._current().record.to_bytes())


def test_the_own_record_reaches_the_contacts_trusted_after_its_first_publication(
        clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.node import identity_key

    nodes = network(clock, tmp_path, 5)  # each published at its first tick, tables grew after
    for n in nodes:
        key = identity_key(n.onion)
        holders = [o for o in nodes if o is not n
                   and o.dht.dht.store.get(key, clock.seconds()) is not None]
        assert len(holders) == len(nodes) - 1, n.onion
        assert n.dht.own_stored == len(nodes) - 1
