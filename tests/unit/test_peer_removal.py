"""Removing a peer settles its queued messages; retries never spin on an unknown peer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from aegis_hidden.node import DeliveryState
from aegis_hidden.testing import FakeNetwork, result_of
from tests.unit.test_messaging import Node, pair


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net() -> FakeNetwork:
    return FakeNetwork()


def outbox_rows(node: Node) -> list[str]:
    conn = sqlite3.connect(node.db_path)
    try:
        return [r[0] for r in conn.execute("SELECT msg_id FROM outbox ORDER BY msg_id")]
    finally:
        conn.close()


def queue_three(net: FakeNetwork, clock: Clock, tmp_path: Path) -> tuple[Node, Node, list[str]]:
    a, b = pair(net, clock, tmp_path, retry_base=2.0, retry_max=16.0)
    net.unreachable.add(b.address)
    ids = [result_of(a.core.send(b.address, {"type": "t", "data": i}))[0] for i in range(3)]
    assert all(a.core.messenger.state(i) is DeliveryState.QUEUED for i in ids)
    assert len(outbox_rows(a)) == 3
    return a, b, ids


def test_removal_expires_queued_messages_with_an_event(net: FakeNetwork, clock: Clock,
                                                        tmp_path: Path) -> None:
    a, b, ids = queue_three(net, clock, tmp_path)
    result_of(a.core.remove_peer(b.address))
    for msg_id in ids:
        (event,) = [e for e in a.events if e["type"] == "delivery_state" and e["id"] == msg_id
                    and e["state"] == "expired"]
        assert event["reason"] == "peer removed" and event["peer"] == b.address
        assert a.core.messenger.state(msg_id) is DeliveryState.EXPIRED
    assert a.core.messenger.outbox_size() == 0
    assert outbox_rows(a) == []


def test_removal_through_the_store_expires_too(net: FakeNetwork, clock: Clock,
                                               tmp_path: Path) -> None:
    a, b, ids = queue_three(net, clock, tmp_path)
    result_of(a.core.store.remove(b.address))  # what the API's remove does today
    assert [a.core.messenger.state(i) for i in ids] == [DeliveryState.EXPIRED] * 3
    assert outbox_rows(a) == []


def test_no_retries_after_removal(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = queue_three(net, clock, tmp_path)
    result_of(a.core.remove_peer(b.address, keep_messages=True))
    dials = len(a.factory.dialed)
    logged = len(a.events)
    clock.advance(1)
    for _ in range(200):  # a day and more of retry timers
        clock.advance(600)
    assert len(a.factory.dialed) == dials
    assert [c for c in clock.getDelayedCalls()
            if getattr(getattr(c, "func", None), "__name__", "") == "_attempt"] == []
    assert [e for e in a.events[logged:] if e["type"] == "delivery_state"] == []


def test_kept_messages_wait_and_go_when_the_peer_is_added_again(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, ids = queue_three(net, clock, tmp_path)
    result_of(a.core.remove_peer(b.address, keep_messages=True))
    assert a.core.messenger.outbox_size() == 3
    assert len(outbox_rows(a)) == 3
    assert all(a.core.messenger.state(i) is DeliveryState.QUEUED for i in ids)
    net.unreachable.discard(b.address)
    clock.advance(100)
    assert not b.received()
    result_of(a.core.store.add(b.address))
    assert sorted(e["id"] for e in b.received()) == sorted(ids)
    assert a.core.messenger.outbox_size() == 0


def test_kept_messages_for_an_unknown_peer_after_restart_do_not_spin(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = queue_three(net, clock, tmp_path)
    result_of(a.core.remove_peer(b.address, keep_messages=True))
    a.stop()
    again = Node(net, clock, a.db_path, address=a.address, retry_base=2.0)
    assert again.core.messenger.outbox_size() == 3
    for _ in range(50):
        clock.advance(600)
    assert again.factory.dialed == []


def test_the_keep_flag_is_for_one_removal_only(net: FakeNetwork, clock: Clock,
                                               tmp_path: Path) -> None:
    a, b, ids = queue_three(net, clock, tmp_path)
    result_of(a.core.remove_peer(b.address, keep_messages=True))
    result_of(a.core.store.add(b.address))
    result_of(a.core.remove_peer(b.address))
    assert [a.core.messenger.state(i) for i in ids] == [DeliveryState.EXPIRED] * 3


def test_cli_remove_sends_keep_messages_only_when_asked() -> None:
    from aegis_hidden.cli._main import build_parser
    from tests.unit.test_address_canonical import ONION

    args = build_parser().parse_args(["peers", "remove", ONION, "--keep-messages"])
    assert args.keep_messages is True
    assert build_parser().parse_args(["peers", "remove", ONION]).keep_messages is False


def test_api_remove_with_and_without_keep_messages(tmp_path: Path) -> None:
    from tests.unit.test_api import Api

    api = Api(tmp_path)
    b = api.b.local_address
    assert api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})[0] == 200
    api.net.unreachable.add(b)
    sent = api.call("POST", "/api/network/send", {"target": b, "message": {"type": "t"}})
    assert sent[0] == 202 and sent[1]["state"] == "queued"
    code, reply, _ = api.call("POST", "/api/network/peers",
                              {"action": "block", "peer_address": b, "keep_messages": True})
    assert code == 400 and reply["field"] == "keep_messages"
    assert api.call("POST", "/api/network/peers", {"action": "remove", "peer_address": b,
                                                   "keep_messages": True})[0] == 200
    assert api.a.messenger.outbox_size() == 1
    api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})
    assert api.call("POST", "/api/network/peers", {"action": "remove", "peer_address": b})[0] \
        == 200
    assert api.a.messenger.outbox_size() == 0
    assert api.a.messenger.state(sent[1]["id"]) is DeliveryState.EXPIRED
