"""Offline mailboxes as the node runs them: DhtService + Messenger on fake sessions, a Clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import fail
from twisted.internet.task import Clock

from aegis_hidden.config import parse_config
from aegis_hidden.dht import MAX_LETTER, mailbox_key, utc_day
from aegis_hidden.node import DeliveryState
from aegis_hidden.testing import FakeNetwork, FakeUnreachable, result_of

from .test_node_dht import NOW, Node, settle


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


class OfflineNetwork(FakeNetwork):
    """A fake network on which an unreachable node cannot dial out either (it is off)."""

    def _dial(self, source: Any, address: str) -> Any:
        if source.address in self.unreachable:
            return fail(FakeUnreachable(f"{source.address} is offline"))
        return super()._dial(source, address)


def build(clock: Clock, tmp: Path, n: int = 5,
          settings: dict[str, Any] | None = None) -> tuple[FakeNetwork, list[Node]]:
    net = OfflineNetwork()
    cfg = parse_config({"dht": {"puzzle_bits": 8, **(settings or {})}})
    first = Node(net, clock, tmp, "n0", 0, [], cfg)
    nodes = [first] + [Node(net, clock, tmp, f"n{i}", i, [first.onion], cfg) for i in range(1, n)]
    for node in nodes:
        node.start()
    for node in nodes[1:]:
        result_of(node.dht.tick())
    settle(clock, nodes)  # contacts enter the tables once they answered a check
    return net, nodes


def offline(net: FakeNetwork, node: Node, others: list[Node]) -> None:
    net.unreachable.add(node.onion)
    for other in others:
        if other is not node:
            net.cut(node.onion, other.onion)


def run(clock: Clock, seconds: float, step: float = 10.0) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)


def received(node: Node, msg_id: str) -> list[dict[str, Any]]:
    return [e for e in node.of_type("message_received") if e["id"] == msg_id]


def test_a_message_to_an_offline_peer_reaches_it_once_through_its_mailbox(
        clock: Clock, tmp_path: Path) -> None:
    net, nodes = build(clock, tmp_path)
    alice, bob, holders = nodes[1], nodes[2], [nodes[0], *nodes[3:]]
    result_of(alice.core.store.add(bob.onion, record=bob.ident.record.to_bytes()))
    offline(net, bob, nodes)
    msg_id, _ = result_of(alice.core.messenger.send(bob.onion, {"type": "text", "data": "hi"}))
    run(clock, 590)
    assert not alice.of_type("mailbox_deposited")  # not before mailbox_after (600 s)
    run(clock, 400)
    deposited = alice.of_type("mailbox_deposited")
    assert len(deposited) == 1 and deposited[0]["id"] == msg_id
    assert deposited[0]["holders"] == 3  # every node but alice and the offline bob
    assert alice.core.messenger.state(msg_id) is not DeliveryState.ACKNOWLEDGED
    key = mailbox_key(bob.onion, utc_day(clock.seconds()))
    assert all(len(h.dht.dht.mailboxes) == 1 and h.dht.dht.mailboxes.keys() == [key]
               for h in holders)
    assert alice.core.metrics.counters["mailbox_deposited"] == 1
    for h in holders:
        mail = h.dht.stats()["mailbox"]
        assert mail["letters_held"] == 1 and mail["accepted"] == 1
        assert mail["bytes_held"] == len(h.dht.dht.mailboxes.entries()[0][1]) > 0
    assert alice.dht.stats()["mailbox"]["deposited"] == 1
    assert "aegis_dht_mailbox_letters 1" in holders[0].core.metrics.render()

    # the sender goes away, the recipient comes back: its tick collects
    offline(net, alice, nodes)
    net.unreachable.discard(bob.onion)
    result_of(bob.dht.tick())
    got = received(bob, msg_id)
    assert len(got) == 1 and got[0]["peer"] == alice.onion and got[0]["message"]["data"] == "hi"
    assert bob.of_type("mailbox_collected")[0]["letters"] == 1
    assert bob.dht.stats()["mailbox"]["collected"] == 1
    assert all(h.dht.stats()["mailbox"]["letters_held"] == 0 for h in holders)
    assert all(len(h.dht.dht.mailboxes) == 0 for h in holders)  # deleted after delivery
    result_of(bob.dht.tick())
    assert len(received(bob, msg_id)) == 1

    # the sender is back: its retry is acknowledged as a duplicate, not delivered again
    net.unreachable.discard(alice.onion)
    run(clock, 400)
    assert alice.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert len(received(bob, msg_id)) == 1
    assert bob.core.metrics.counters["messages_duplicate"] >= 1


def test_a_message_that_arrives_first_over_a_session_is_not_delivered_again(
        clock: Clock, tmp_path: Path) -> None:
    net, nodes = build(clock, tmp_path)
    alice, bob = nodes[1], nodes[2]
    result_of(alice.core.store.add(bob.onion, record=bob.ident.record.to_bytes()))
    offline(net, bob, nodes)
    msg_id, _ = result_of(alice.core.messenger.send(bob.onion, {"type": "text", "data": "x"}))
    run(clock, 1000)
    assert alice.of_type("mailbox_deposited")
    net.unreachable.discard(bob.onion)  # both online again: the outbox retry gets through
    run(clock, 400)
    assert alice.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert len(received(bob, msg_id)) == 1
    result_of(bob.dht.tick())  # then the mailbox copy
    assert len(received(bob, msg_id)) == 1


def test_mailbox_after_zero_never_deposits(clock: Clock, tmp_path: Path) -> None:
    net, nodes = build(clock, tmp_path, 4, {"mailbox_after": 0})
    alice, bob = nodes[1], nodes[2]
    result_of(alice.core.store.add(bob.onion, record=bob.ident.record.to_bytes()))
    offline(net, bob, nodes)
    result_of(alice.core.messenger.send(bob.onion, {"type": "text", "data": "x"}))
    run(clock, 2000)
    assert not alice.of_type("mailbox_deposited")
    assert all(len(n.dht.dht.mailboxes) == 0 for n in nodes)


def test_a_message_too_large_for_a_letter_is_not_deposited_and_stays_queued(
        clock: Clock, tmp_path: Path) -> None:
    net, nodes = build(clock, tmp_path, 4)
    alice, bob = nodes[1], nodes[2]
    result_of(alice.core.store.add(bob.onion, record=bob.ident.record.to_bytes()))
    offline(net, bob, nodes)
    msg_id, _ = result_of(alice.core.messenger.send(
        bob.onion, {"type": "text", "data": "x" * (MAX_LETTER + 10)}))
    run(clock, 2000)
    assert not alice.of_type("mailbox_deposited")
    assert alice.core.messenger.pending_for(bob.onion) == [msg_id]


def test_the_recipient_key_is_found_through_the_dht(clock: Clock, tmp_path: Path) -> None:
    net, nodes = build(clock, tmp_path)
    alice, bob = nodes[1], nodes[2]
    # alice knows bob's onion only; his identity record is in the DHT (published at start)
    result_of(alice.core.store.add(bob.onion))
    offline(net, bob, nodes)
    msg_id, _ = result_of(alice.core.messenger.send(bob.onion, {"type": "text", "data": "y"}))
    run(clock, 1000)
    assert [e["id"] for e in alice.of_type("mailbox_deposited")] == [msg_id]


def test_a_collect_reaches_back_the_days_asked(clock: Clock, tmp_path: Path) -> None:
    net, nodes = build(clock, tmp_path, settings={"maintenance_interval": 600})
    alice, bob = nodes[1], nodes[2]
    result_of(alice.core.store.add(bob.onion, record=bob.ident.record.to_bytes()))
    offline(net, bob, nodes)
    msg_id, _ = result_of(alice.core.messenger.send(bob.onion, {"type": "text", "data": "z"}))
    run(clock, 1000)
    assert alice.of_type("mailbox_deposited")
    offline(net, alice, nodes)
    # bob stays away a day and a half: today's key is not the one the letter is under
    run(clock, 1.5 * 86400, step=3600)
    assert not received(bob, msg_id)  # bob's ticks did run, but he could reach nobody
    net.unreachable.discard(bob.onion)
    result_of(bob.dht.bootstrap())
    assert result_of(bob.dht.collect_mail(0)) == 0  # today's mailbox is empty
    assert result_of(bob.dht.collect_mail(2)) == 1
    assert len(received(bob, msg_id)) == 1


def test_mailbox_settings_are_validated() -> None:
    from aegis_hidden.config import ConfigError

    for bad in ({"mailbox_after": -1}, {"mailbox_ttl": 60}, {"mailbox_quota": 1000},
                {"mailbox_days": 8}):
        with pytest.raises(ConfigError):
            parse_config({"dht": bad})
    cfg = parse_config({}).dht
    assert (cfg.mailbox_after, cfg.mailbox_ttl, cfg.mailbox_quota, cfg.mailbox_days) == (
        600.0, 172800.0, 262144, 2)


def test_a_holder_keeps_its_letters_across_a_restart(clock: Clock, tmp_path: Path) -> None:
    import random

    from aegis_hidden.node import DhtService

    net, nodes = build(clock, tmp_path, 4)
    alice, bob, holder = nodes[1], nodes[2], nodes[3]
    result_of(alice.core.store.add(bob.onion, record=bob.ident.record.to_bytes()))
    offline(net, bob, nodes)
    result_of(alice.core.messenger.send(bob.onion, {"type": "text", "data": "kept"}))
    run(clock, 1000)
    held = holder.dht.dht.mailboxes.entries()
    assert len(held) == 1
    result_of(holder.dht.stopService())
    again = DhtService(holder.core, holder.cfg.dht, holder.service, clock, rng=random.Random(7))
    again.startService()
    result_of(again.when_ready())
    assert again.dht.mailboxes.entries() == held
    assert again.node.stats["letters_loaded"] == 1
    result_of(again.stopService())


def test_a_full_mailbox_is_collected_over_several_rounds_and_bad_letters_dropped(
        clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.dht import seal_letter
    from aegis_hidden.node._envelope import Message

    _, nodes = build(clock, tmp_path, 4)
    alice, bob, holder = nodes[1], nodes[2], nodes[3]
    key = mailbox_key(bob.onion, utc_day(clock.seconds()))
    ids = [f"{i:032x}" for i in range(6)]
    for msg_id in ids:  # ~5 KiB letters: more than one answer holds (20 KiB)
        data = Message(msg_id, clock.seconds(), {"type": "text", "data": "x" * 2000}).encode()
        holder.dht.dht.mailboxes.put(
            key, seal_letter(bob.onion, bob.ident.xwing_public, key, alice.ident.master, data),
            clock.seconds())
    # a letter sealed to someone else under bob's key: never opens, refused and deleted
    holder.dht.dht.mailboxes.put(
        key, seal_letter(bob.onion, alice.ident.xwing_public, key, alice.ident.master, b"x"),
        clock.seconds())
    assert result_of(bob.dht.collect_mail(0)) == 6
    assert sorted(e["id"] for e in bob.of_type("message_received")) == ids
    assert len(holder.dht.dht.mailboxes) == 0
    assert [e["reason"] for e in bob.of_type("dht_record_refused")] == ["BadLetter"]


def test_a_letter_from_a_peer_known_by_its_i2p_name_is_named_by_it(clock: Clock,
                                                                    tmp_path: Path) -> None:
    from aegis_hidden import identity
    from aegis_hidden.dht import seal_letter
    from aegis_hidden.node._envelope import Message

    _, nodes = build(clock, tmp_path, 4)
    bob, holder = nodes[2], nodes[3]
    carol = identity.create(tmp_path / "carol", clock.seconds() - 10)  # not a DHT node
    i2p = "a" * 52 + ".b32.i2p"
    result_of(bob.core.store.add(i2p, record=carol.record.to_bytes()))
    key = mailbox_key(bob.onion, utc_day(clock.seconds()))
    data = Message("f" * 32, clock.seconds(), {"type": "text", "data": "hi"}).encode()
    holder.dht.dht.mailboxes.put(
        key, seal_letter(bob.onion, bob.ident.xwing_public, key, carol.master, data),
        clock.seconds())
    assert result_of(bob.dht.collect_mail(0)) == 1
    # the same de-duplication key as a copy arriving over an I2P session from that peer
    assert [e["peer"] for e in bob.of_type("message_received")] == [i2p]


def test_refused_deposits_are_counted_by_reason(clock: Clock, tmp_path: Path) -> None:
    from aegis_hidden.dht import Deposit

    _, nodes = build(clock, tmp_path, 3)
    a, b = nodes[1], nodes[2]
    key = mailbox_key(a.onion, utc_day(clock.seconds()))
    answer = result_of(a.dht.node._ask(b.dht.dht.own, a.dht.dht.request(Deposit(key, b"x" * 10))))
    assert answer is not None
    mail = b.dht.stats()["mailbox"]
    assert mail["refused"] == {"MailNotPadded": 1} and mail["accepted"] == 0
    assert b.core.metrics.counters["mailbox_refused"] == 1
