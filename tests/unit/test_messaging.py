"""Node core over the fake session network: pool, reliable messaging, request/response."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from aegis_hidden._backoff import Backoff
from aegis_hidden.config import Config, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import (
    DeliveryState,
    EnvelopeError,
    MessageTooLarge,
    NodeCore,
    PeerBlocked,
    RequestTimeout,
)
from aegis_hidden.peers import InlineSQLite, UnknownPeer
from aegis_hidden.testing import FakeNetwork, result_of


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


class Node:
    """One fake node: a NodeCore on an InlineSQLite file, joined to a FakeNetwork."""

    def __init__(self, network: FakeNetwork, clock: Clock, db_path: str,
                 address: str | None = None, config: Config | None = None,
                 i2p: str | None = None, db: Any = None, **messenger: Any) -> None:
        self.address = address or onion()
        self.i2p = i2p
        self.db_path = db_path
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.db = db if db is not None else InlineSQLite(db_path)
        self.core = NodeCore(config or Config(), None, str(Path(db_path).parent), bus, clock,
                             db=self.db, local_address=self.address,
                             messenger_options=messenger or None)
        aliases = (i2p,) if i2p else ()
        self.factory = network.node(self.address, *aliases)
        self.core.attach_session_factory(self.factory)
        self.core.startService()
        if db is None:
            result_of(self.core.when_ready())

    def stop(self) -> None:
        self.core.stopService()
        result_of(self.db.close())

    def received(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message_received"]

    def states(self, msg_id: str) -> list[str]:
        return [e["state"] for e in self.events
                if e["type"] == "delivery_state" and e["id"] == msg_id]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net() -> FakeNetwork:
    return FakeNetwork()


def pair(net: FakeNetwork, clock: Clock, tmp_path: Path, **kw: Any) -> tuple[Node, Node]:
    a = Node(net, clock, str(tmp_path / "a.db"), **kw)
    b = Node(net, clock, str(tmp_path / "b.db"), **kw)
    result_of(a.core.store.add(b.address))
    return a, b


def test_send_is_delivered_once_and_acknowledged(net: FakeNetwork, clock: Clock,
                                                 tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    msg_id, state = result_of(a.core.send(b.address, {"type": "chat", "data": "hello"}))
    assert state is DeliveryState.ACKNOWLEDGED  # the fake network answers synchronously
    assert a.states(msg_id) == ["queued", "sent", "acknowledged"]
    (got,) = b.received()
    assert got["peer"] == a.address and got["id"] == msg_id
    assert got["message"] == {"type": "chat", "data": "hello"}
    assert a.core.messenger.outbox_size() == 0
    assert [e["type"] for e in a.events if e["type"].startswith("peer_")] == ["peer_connected"]
    assert b.core.store.require(a.address).status == "connected"  # incoming peer learnt
    assert a.core.metrics.counters["messages_acked"] == 1
    assert a.core.metrics.latency.count == 1
    assert b.core.metrics.counters["messages_received"] == 1


def test_unknown_blocked_and_oversize_sends_refused(net: FakeNetwork, clock: Clock,
                                                    tmp_path: Path) -> None:
    cfg = parse_config({"performance": {"max_message_size": 1024}})
    a, b = pair(net, clock, tmp_path, config=cfg)
    with pytest.raises(UnknownPeer):
        result_of(a.core.send(onion(), {"type": "x"}))
    with pytest.raises(MessageTooLarge, match="1024"):
        result_of(a.core.send(b.address, {"type": "x", "data": "z" * 2000}))
    result_of(a.core.store.block(b.address, "test"))
    with pytest.raises(PeerBlocked):
        result_of(a.core.send(b.address, {"type": "x"}))
    assert a.core.messenger.outbox_size() == 0 and not b.received()


def test_retries_with_backoff_until_reachable(net: FakeNetwork, clock: Clock,
                                              tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path, retry_base=2.0, retry_max=16.0)
    a.core.messenger.backoff = Backoff(base=2.0, cap=16.0, mode="full", floor=1.0,
                                       random=random.Random(4).random)
    net.unreachable.add(b.address)
    msg_id, state = result_of(a.core.send(b.address, {"type": "chat", "data": 1}))
    assert state is DeliveryState.QUEUED
    dial_times: list[float] = []
    dialed = 0
    for _ in range(4000):
        clock.advance(0.01)
        if len(a.factory.dialed) != dialed:
            dialed = len(a.factory.dialed)
            dial_times.append(clock.seconds())
    # after the n-th failure a jittered gap in [1, min(16, 2 * 2**(n-1))]: full jitter
    gaps = [y - x for x, y in itertools.pairwise(dial_times)]
    assert len(gaps) >= 4
    for n, gap in enumerate(gaps):
        assert 1.0 - 0.02 <= gap <= min(16.0, 2.0 * 2 ** n) + 0.02, (n, gap)
    assert [round(g) for g in gaps[:3]] != [2, 4, 8]
    assert not b.received()
    net.unreachable.clear()
    clock.advance(16)
    assert len(b.received()) == 1
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert a.core.metrics.counters["connection_attempts_failed"] >= 5


def test_lost_ack_means_resend_but_single_delivery(net: FakeNetwork, clock: Clock,
                                                   tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path, ack_timeout=10.0, retry_base=1.0)
    # b receives but its acks are lost: drop everything b sends
    result_of(a.core.pool.get(b.address))
    b_link = b.core.pool.link(a.address)
    assert b_link is not None
    real_send = b_link.send_message
    b_link.send_message = lambda data: None  # type: ignore[method-assign]
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat", "data": "once"}))
    clock.advance(10)  # ack timeout
    clock.advance(1)  # retry
    assert a.core.metrics.counters["messages_sent"] == 2
    assert a.core.messenger.state(msg_id) is DeliveryState.SENT
    b_link.send_message = real_send  # type: ignore[method-assign]
    clock.advance(10)
    clock.advance(2)
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert len(b.received()) == 1
    assert b.core.metrics.counters["messages_duplicate"] >= 1


def test_sender_restart_resends_unacknowledged(net: FakeNetwork, clock: Clock,
                                               tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    net.unreachable.add(b.address)
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat", "data": "persist"}))
    a.stop()  # crash/stop before any ack
    net.remove(a.address)
    net.unreachable.clear()
    a2 = Node(net, clock, a.db_path, address=a.address)
    assert a2.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    (got,) = b.received()
    assert got["id"] == msg_id and got["message"]["data"] == "persist"
    a2.stop()
    net.remove(a.address)
    a3 = Node(net, clock, a.db_path, address=a.address)
    assert a3.core.messenger.outbox_size() == 0  # acked: gone for good
    clock.advance(3600)
    assert len(b.received()) == 1


def test_sender_restart_keeps_the_exact_ttl(net: FakeNetwork, clock: Clock,
                                           tmp_path: Path) -> None:
    """The envelope carries the hour only; the outbox keeps the exact time for the ttl."""
    clock.advance(5000.0)  # 1:23:20 past the hour: the wire says 3600
    a, b = pair(net, clock, tmp_path)
    net.unreachable.add(b.address)
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat"}))
    a.stop()
    net.remove(a.address)
    a2 = Node(net, clock, a.db_path, address=a.address)
    assert a2.core.messenger._pending[msg_id].message.created == 5000.0
    clock.pump([60.0] * int((86400.0 - 60.0) / 60.0))  # up to a minute before the ttl ends
    assert a2.core.messenger.state(msg_id) is not DeliveryState.EXPIRED
    clock.pump([1.0] * 400)  # the next retry after the ttl expires it
    assert a2.core.messenger.state(msg_id) is DeliveryState.EXPIRED
    a2.stop()


def test_receiver_restart_after_ack_lost_delivers_once(net: FakeNetwork, clock: Clock,
                                                       tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path, ack_timeout=5.0, retry_base=1.0)
    net.drop_all = False
    result_of(a.core.pool.get(b.address))
    link = b.core.pool.link(a.address)
    assert link is not None
    link.send_message = lambda data: None  # type: ignore[method-assign]  # ack lost
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat", "data": "x"}))
    assert len(b.received()) == 1
    b.stop()  # b "crashes" after persisting the id but before the ack got out
    net.remove(b.address)
    clock.advance(5)
    clock.advance(1)
    b2 = Node(net, clock, b.db_path, address=b.address)
    clock.advance(2)
    clock.advance(4)
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert b2.received() == []  # the copy was recognised and only acknowledged
    assert b2.core.metrics.counters["messages_duplicate"] == 1


def test_expires_after_ttl(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path, ttl=100.0, dedupe_window=200.0, retry_max=30.0)
    net.unreachable.add(b.address)
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat"}))
    clock.pump([10] * 15)
    assert a.core.messenger.state(msg_id) is DeliveryState.EXPIRED
    assert a.core.messenger.outbox_size() == 0
    assert any(e["type"] == "network_error" and e.get("id") == msg_id for e in a.events)


def test_failover_to_i2p_destination(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    i2p = "b" * 51 + "a.b32.i2p"  # canonical: unused trailing bits zero
    a = Node(net, clock, str(tmp_path / "a.db"))
    b = Node(net, clock, str(tmp_path / "b.db"), i2p=i2p)
    result_of(a.core.store.add(b.address, i2p_destination=i2p))
    net.unreachable.add(b.address)
    _, state = result_of(a.core.send(b.address, {"type": "chat"}))
    assert state is DeliveryState.ACKNOWLEDGED
    assert a.factory.dialed == [b.address, i2p]
    assert len(b.received()) == 1


def test_pool_reuses_limits_and_expires_idle(net: FakeNetwork, clock: Clock,
                                             tmp_path: Path) -> None:
    cfg = parse_config({"network": {"max_connections": 2}})
    a = Node(net, clock, str(tmp_path / "a.db"), config=cfg)
    others = [Node(net, clock, str(tmp_path / f"o{i}.db")) for i in range(3)]
    for o in others:
        result_of(a.core.store.add(o.address))
    result_of(a.core.send(others[0].address, {"type": "x"}))
    result_of(a.core.send(others[0].address, {"type": "y"}))
    assert a.factory.dialed == [others[0].address]  # reused
    clock.advance(1)
    result_of(a.core.send(others[1].address, {"type": "x"}))
    clock.advance(1)
    result_of(a.core.send(others[2].address, {"type": "x"}))
    assert len(a.core.pool) == 2
    assert not a.core.pool.connected(others[0].address)  # least recently used evicted
    assert a.core.metrics.counters["sessions_closed_idle"] == 0  # an eviction is not idle
    clock.advance(a.core.pool.idle_timeout + 100)
    assert len(a.core.pool) == 0
    assert sum(e["type"] == "peer_disconnected" for e in a.events) == 3
    assert "aegis_sessions_closed_idle_total 2\n" in a.core.metrics.render()


def test_blacklisted_peer_refused_at_accept(net: FakeNetwork, clock: Clock,
                                            tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    result_of(b.core.store.add(a.address))
    result_of(b.core.store.block(a.address, "no thanks"))
    msg_id, _ = result_of(a.core.send(b.address, {"type": "x"}))
    assert b.received() == []
    assert b.core.metrics.counters["connections_refused"] >= 1
    assert a.core.messenger.state(msg_id) is not DeliveryState.ACKNOWLEDGED


def test_protocol_violation_lowers_reputation(net: FakeNetwork, clock: Clock,
                                              tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    link = result_of(a.core.pool.get(b.address))
    before = b.core.store.require(a.address).reputation
    link.send_message(b"not json")
    link.send_message(b'{"k": "msg", "id": "zz"}')
    assert b.core.store.require(a.address).reputation < before
    assert b.core.metrics.counters["protocol_errors"] == 2
    errors = [e for e in b.events if e["type"] == "network_error"]
    assert "envelope.id" in errors[1]["detail"]


@pytest.mark.parametrize(("data", "path"), [
    ("NaN", "envelope.body.data"), ('{"x": [Infinity]}', "envelope.body.data.x[0]"),
    ("-1e400", "envelope.body.data"), ('"\\ud800"', "envelope.body.data"),
    ("[" * 70 + "]" * 70, "nested deeper"), ("[" * 5000 + "]" * 5000, "nested deeper"),
])
def test_peer_sending_non_strict_json_is_a_protocol_violation(
        net: FakeNetwork, clock: Clock, tmp_path: Path, data: str, path: str) -> None:
    """NaN from a peer never reaches the application or the WebSocket."""
    a, b = pair(net, clock, tmp_path)
    link = result_of(a.core.pool.get(b.address))
    link.send_message(('{"k": "msg", "id": "' + "a" * 32 + '", "t": 0, "body": {"type": "x", '
                       '"data": ' + data + "}}").encode())
    assert b.received() == []
    assert b.core.metrics.counters["protocol_errors"] == 1
    (error,) = [e for e in b.events if e["type"] == "network_error"]
    assert error["error"] == "protocol violation" and path in error["detail"]


def test_sending_non_finite_numbers_is_refused(net: FakeNetwork, clock: Clock,
                                               tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    with pytest.raises(EnvelopeError, match="NaN and Infinity"):
        result_of(a.core.send(b.address, {"type": "x", "data": [float("nan")]}))
    assert a.core.messenger.outbox_size() == 0 and b.received() == []


def test_request_response_and_timeout(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    answer = result_of(a.core.messenger.request(b.address, {"type": "ping", "data": 7}))
    assert answer == {"type": "pong", "data": 7}
    b.core.messenger.set_request_handler("sum", lambda peer, body: {
        "type": "sum", "data": sum(body["data"])})
    assert result_of(a.core.messenger.request(
        b.address, {"type": "sum", "data": [1, 2, 3]}))["data"] == 6
    unknown = result_of(a.core.messenger.request(b.address, {"type": "nope"}))
    assert unknown["type"] == "error" and "nope" in unknown["data"]
    net.unreachable.add(b.address)
    a.core.pool.close(b.address, "test")
    d = a.core.messenger.request(b.address, {"type": "ping"}, timeout=5)
    from twisted.internet.defer import Deferred
    dd = Deferred.fromCoroutine(d)
    failures: list[Any] = []
    dd.addErrback(failures.append)
    clock.advance(5)
    assert failures and failures[0].check(RequestTimeout)


def test_handshake_failure_lowers_reputation(net: FakeNetwork, clock: Clock,
                                             tmp_path: Path) -> None:
    a, b = pair(net, clock, tmp_path)
    net.failing_handshakes.add(b.address)
    result_of(a.core.send(b.address, {"type": "x"}))
    peer = a.core.store.require(b.address)
    assert peer.reputation < 0.5 and peer.sessions_failed == 1
    assert a.core.metrics.counters["session_auth_failures"] == 1


def test_no_session_layer_keeps_messages_queued(clock: Clock, tmp_path: Path) -> None:
    bus = EventBus()
    db = InlineSQLite(str(tmp_path / "n.db"))
    core = NodeCore(Config(), None, str(tmp_path), bus, clock, db=db, local_address=onion())
    core.startService()
    result_of(core.when_ready())
    peer = onion()
    result_of(core.store.add(peer))
    msg_id, state = result_of(core.send(peer, {"type": "x"}))
    assert state is DeliveryState.QUEUED
    clock.advance(60)
    assert core.messenger.state(msg_id) is DeliveryState.QUEUED
    assert core.status()["session_layer"] is False
    assert core.status()["counts"]["outbox"] == 1


def test_auto_blacklisting_closes_the_live_session(net: FakeNetwork, clock: Clock,
                                                   tmp_path: Path) -> None:
    from aegis_hidden.peers import Behaviour

    a, b = pair(net, clock, tmp_path)
    result_of(a.core.pool.get(b.address))
    for _ in range(4):
        result_of(a.core.store.observe(b.address, Behaviour.INVALID_SIGNATURE))
    assert a.core.store.is_blocked(b.address)
    assert not a.core.pool.connected(b.address)
    assert a.events[-1]["type"] == "peer_disconnected"
    assert a.events[-1]["reason"] == "blacklisted"


def test_pool_keeps_at_most_connection_pool_size_idle(net: FakeNetwork, clock: Clock,
                                                      tmp_path: Path) -> None:
    cfg = parse_config({"performance": {"connection_pool_size": 1}})
    a = Node(net, clock, str(tmp_path / "a.db"), config=cfg)
    others = [Node(net, clock, str(tmp_path / f"o{i}.db")) for i in range(3)]
    for o in others:
        result_of(a.core.store.add(o.address))
        result_of(a.core.send(o.address, {"type": "x"}))
        clock.advance(1)
    assert len(a.core.pool) == 3
    clock.advance(30)  # used recently enough: all kept
    assert len(a.core.pool) == 3
    clock.advance(a.core.pool.idle_grace)
    assert a.core.pool.peers() == [others[2].address]  # the most recently used stays
    assert a.core.metrics.counters["sessions_closed_idle"] == 2


def test_incoming_session_from_a_non_anonymous_name_is_refused(net: FakeNetwork, clock: Clock,
                                                               tmp_path: Path) -> None:
    a = Node(net, clock, str(tmp_path / "a.db"))
    rogue = net.node("192.0.2.7")
    link = result_of(rogue.connect(a.address))
    assert link.closed and link.closed_reason == "bad peer address"
    assert a.core.metrics.counters["connections_refused"] == 1
    assert len(a.core.store) == 0 and len(a.core.pool) == 0


def test_a_record_alone_does_not_teach_the_i2p_failover_address(net: FakeNetwork, clock: Clock,
                                                               tmp_path: Path) -> None:
    """Item 6/7: the I2P address comes only from a verified binding (tests/unit/test_node_records.py)."""
    from types import SimpleNamespace

    i2p = "c" * 52 + ".b32.i2p"
    a = Node(net, clock, str(tmp_path / "a.db"))
    b_address = onion()
    record = SimpleNamespace(onion=b_address, i2p_destination=i2p,
                             to_bytes=lambda: b"signed record")
    b_factory = net.node(b_address, record=record)
    result_of(b_factory.connect(a.address))  # b dials a: a stores b's record, nothing more
    peer = a.core.store.require(b_address)
    assert peer.record == b"signed record" and peer.i2p_destination is None
    assert peer.addresses() == [b_address]
    assert peer.origin == "peer"  # learnt from a session b opened, not added by the operator


def test_duplicate_and_foreign_acks_are_ignored(net: FakeNetwork, clock: Clock,
                                                tmp_path: Path) -> None:
    from aegis_hidden.node._envelope import Ack

    a, b = pair(net, clock, tmp_path, ack_timeout=10.0)
    c = Node(net, clock, str(tmp_path / "c.db"))
    result_of(a.core.store.add(c.address))
    result_of(a.core.pool.get(b.address))
    b_link = b.core.pool.link(a.address)
    assert b_link is not None
    acks: list[bytes] = []
    real_send = b_link.send_message
    b_link.send_message = lambda data: acks.append(data)  # type: ignore[method-assign]
    msg_id, _ = result_of(a.core.send(b.address, {"type": "x"}))
    assert len(acks) == 1 and a.core.messenger.state(msg_id) is DeliveryState.SENT
    result_of(c.core.store.add(a.address))
    c_link = result_of(c.core.pool.get(a.address))
    c_link.send_message(Ack(msg_id).encode())  # c acks b's message: ignored
    assert a.core.messenger.state(msg_id) is DeliveryState.SENT
    real_send(acks[0])
    real_send(acks[0])  # the same ack twice
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert a.core.metrics.counters["messages_acked"] == 1
    assert a.core.metrics.latency.count == 1
    assert a.states(msg_id) == ["queued", "sent", "acknowledged"]


class SlowDB:
    """An InlineSQLite whose results come back only when flushed, like the worker thread's."""

    def __init__(self, path: str) -> None:
        self.inner = InlineSQLite(path)
        self.queue: list[tuple[Any, Any]] = []

    def run(self, fn: Any) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[Any] = Deferred()
        self.queue.append((fn, d))
        return d

    def close(self) -> Any:
        return self.inner.close()

    def flush(self) -> int:
        done = 0
        while self.queue:
            fn, d = self.queue.pop(0)
            self.inner.run(fn).chainDeferred(d)
            done += 1
        return done


def test_exactly_once_with_asynchronous_database(net: FakeNetwork, clock: Clock,
                                                 tmp_path: Path) -> None:
    dbs = [SlowDB(str(tmp_path / "a.db")), SlowDB(str(tmp_path / "b.db"))]

    def settle() -> None:
        while sum(db.flush() for db in dbs):
            pass

    a = Node(net, clock, str(tmp_path / "a.db"), db=dbs[0], ack_timeout=5.0, retry_base=1.0)
    b = Node(net, clock, str(tmp_path / "b.db"), db=dbs[1])
    settle()
    result_of(a.core.when_ready())
    result_of(b.core.when_ready())
    from twisted.internet.defer import Deferred

    d = Deferred.fromCoroutine(a.core.store.add(b.address))
    settle()
    result_of(d)
    results = [Deferred.fromCoroutine(a.core.send(b.address, {"type": "n", "data": i}))
               for i in range(20)]
    for _ in range(10):  # interleave: time passes (ack timeouts, retries) while writes lag
        dbs[1].flush()
        clock.advance(3)
        dbs[0].flush()
    settle()
    clock.advance(60)
    settle()
    ids = [result_of(r)[0] for r in results]
    assert all(a.core.messenger.state(i) is DeliveryState.ACKNOWLEDGED for i in ids)
    got = [e["message"]["data"] for e in b.received()]
    assert sorted(got) == list(range(20))  # each exactly once
    assert a.core.messenger.outbox_size() == 0
    assert a.core.metrics.counters["messages_acked"] == 20
    assert a.core.metrics.counters["messages_sent"] > 20  # retries did happen meanwhile


@pytest.mark.parametrize(("reason", "expected"), [
    ("AUTH_FAILED", "invalid_signature"), ("WRONG_IDENTITY", "invalid_signature"),
    ("TAMPERED", "protocol_violation"), ("VERSION_MISMATCH", "handshake_failed"),
    ("TIMEOUT", "timeout"), ("CONNECTION_LOST", None), ("TRUNCATED", None)])
def test_session_failures_map_to_reputation(reason: str, expected: str | None) -> None:
    from aegis_hidden.node import classify_failure
    from aegis_hidden.session import CloseReason, HandshakeError

    behaviour = classify_failure(HandshakeError(CloseReason[reason], "test"))
    assert (behaviour.value if behaviour else None) == expected


def test_other_failures_map_to_reputation() -> None:
    from twisted.internet.defer import TimeoutError as DeferTimeout

    from aegis_hidden.identity import RecordError
    from aegis_hidden.node import classify_failure
    from aegis_hidden.testing import FakeHandshakeFailed, FakeUnreachable

    assert classify_failure(RecordError("bad")) is not None
    assert classify_failure(RecordError("bad")).value == "invalid_signature"  # type: ignore[union-attr]
    assert classify_failure(DeferTimeout()).value == "timeout"  # type: ignore[union-attr]
    assert classify_failure(FakeHandshakeFailed()).value == "handshake_failed"  # type: ignore[union-attr]
    assert classify_failure(FakeUnreachable()) is None


class CountingDB:
    """An InlineSQLite that counts transactions and keeps the SQL they ran."""

    def __init__(self, path: str) -> None:
        self.inner = InlineSQLite(path)
        self.transactions = 0
        self.statements: list[str] = []

    def run(self, fn: Any) -> Any:
        def counted(conn: Any) -> Any:
            self.transactions += 1
            conn.set_trace_callback(self.statements.append)
            try:
                return fn(conn)
            finally:
                conn.set_trace_callback(None)

        return self.inner.run(counted)

    def close(self) -> Any:
        return self.inner.close()


def test_a_message_acknowledged_at_once_costs_no_attempts_update(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    counting = CountingDB(str(tmp_path / "a.db"))
    a = Node(net, clock, str(tmp_path / "a.db"), db=counting)
    result_of(a.core.when_ready())
    b = Node(net, clock, str(tmp_path / "b.db"))
    result_of(a.core.store.add(b.address))
    result_of(a.core.send(b.address, {"type": "warm", "data": 0}))  # session up
    before, counting.statements = counting.transactions, []
    _, state = result_of(a.core.send(b.address, {"type": "chat", "data": 1}))
    assert state is DeliveryState.ACKNOWLEDGED
    # outbox insert, outbox delete on the ack, the peer's reputation: no UPDATE of a
    # row the ack already deleted
    assert counting.transactions - before == 3
    assert not [s for s in counting.statements if s.startswith("UPDATE outbox")]


class FailingDeletes(CountingDB):
    """Fails the transactions that delete from the outbox, ``failures`` times."""

    def __init__(self, path: str, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def run(self, fn: Any) -> Any:
        def maybe_fail(conn: Any) -> Any:
            result = fn(conn)
            if self.failures and any(s.startswith("DELETE FROM outbox")
                                     for s in self.statements):
                self.failures -= 1
                import sqlite3

                raise sqlite3.OperationalError("disk I/O error (injected)")
            return result

        self.statements = []
        return super().run(maybe_fail)


def test_a_failed_outbox_delete_loses_nothing(net: FakeNetwork, clock: Clock,
                                              tmp_path: Path) -> None:
    db = FailingDeletes(str(tmp_path / "a.db"), failures=1)
    a = Node(net, clock, str(tmp_path / "a.db"), db=db, retry_base=1.0)
    result_of(a.core.when_ready())
    b = Node(net, clock, str(tmp_path / "b.db"))
    result_of(a.core.store.add(b.address))
    msg_id, state = result_of(a.core.send(b.address, {"type": "chat", "data": 1}))
    # the ack came, but its delete was rolled back: still queued, retried
    assert state is DeliveryState.SENT
    assert a.core.messenger.outbox_size() == 1
    clock.advance(60)
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert a.core.messenger.outbox_size() == 0
    assert [e["message"]["data"] for e in b.received()] == [1]  # delivered once
    assert b.core.metrics.counters["messages_duplicate"] == 1  # the copy was acked again
    rows = result_of(db.inner.run(lambda c: c.execute("SELECT COUNT(*) FROM outbox").fetchone()))
    assert rows == (0,)


def test_a_failed_expiry_is_tried_again(net: FakeNetwork, clock: Clock,
                                        tmp_path: Path) -> None:
    db = FailingDeletes(str(tmp_path / "a.db"), failures=1)
    a = Node(net, clock, str(tmp_path / "a.db"), db=db, retry_base=1.0, ttl=10.0,
             dedupe_window=20.0)
    result_of(a.core.when_ready())
    gone = onion()  # never joins the network: every dial fails
    result_of(a.core.store.add(gone))
    msg_id, _ = result_of(a.core.send(gone, {"type": "chat", "data": 1}))
    for _ in range(120):
        clock.advance(1)
    assert db.failures == 0  # the first expiry's delete was refused...
    assert a.core.messenger.state(msg_id) is DeliveryState.EXPIRED  # ...the next one did it
    assert a.core.messenger.outbox_size() == 0
    rows = result_of(db.inner.run(lambda c: c.execute("SELECT COUNT(*) FROM outbox").fetchone()))
    assert rows == (0,)
