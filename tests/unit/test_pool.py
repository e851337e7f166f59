"""The connection pool's identity checks: failover links, revoked peers, the node's gate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import DialFailed, NodeCore
from aegis_hidden.node._pool import PeerRevoked, link_is_peer
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of
from aegis_hidden.testing._fake_sessions import FakeRecord


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


I2P = "q" * 52 + ".b32.i2p"


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, path: Path, *aliases: str,
                 record: Any = None) -> None:
        self.address = onion()
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.db = InlineSQLite(str(path))
        self.core = NodeCore(Config(), None, str(path.parent), bus, clock, db=self.db,
                             local_address=self.address)
        self.factory = net.node(self.address, *aliases, record=record)
        self.core.attach_session_factory(self.factory)
        self.core.startService()
        result_of(self.core.when_ready())

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "network_error"]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net() -> FakeNetwork:
    return FakeNetwork()


def test_failover_link_to_another_identity_is_not_adopted(net: FakeNetwork, clock: Clock,
                                                          tmp_path: Path) -> None:
    """Item 6: B's onion is down; its stored I2P address answers, but as C: refused."""
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    c = Node(net, clock, tmp_path / "c.db", I2P)  # C, not B, holds that I2P address
    result_of(a.core.store.add(b.address, i2p_destination=I2P))
    net.unreachable.add(b.address)
    with pytest.raises(DialFailed, match="identity mismatch"):
        result_of(a.core.pool.get(b.address))
    assert a.factory.dialed == [b.address, I2P]
    assert not a.core.pool.connected(b.address)
    assert not a.core.pool.connected(c.address)
    assert a.core.metrics.counters["identity_mismatches"] == 1
    assert any(e["error"] == "identity mismatch" and e["peer"] == b.address
               for e in a.errors())
    assert all(link.closed for link in a.factory.links)  # the misbound link is closed


def test_failover_link_to_the_same_identity_is_adopted(net: FakeNetwork, clock: Clock,
                                                       tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db", I2P)
    result_of(a.core.store.add(b.address, i2p_destination=I2P))
    net.unreachable.add(b.address)
    link = result_of(a.core.pool.get(b.address))
    assert link.peer == I2P and link.record.onion == b.address
    assert a.core.pool.connected(b.address)
    assert a.core.metrics.counters["identity_mismatches"] == 0


def test_incoming_link_whose_record_is_another_onion_is_refused(net: FakeNetwork, clock: Clock,
                                                                tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    liar = net.node(onion(), record=FakeRecord(onion()))
    with pytest.raises(Exception, match="closed"):
        result_of(liar.connect(a.address)).send_message(b"{}")
    assert a.core.pool.peers() == []
    assert a.core.metrics.counters["identity_mismatches"] == 1


def test_link_is_peer_rules() -> None:
    net = FakeNetwork()
    me, b = onion(), onion()
    net.node(me)
    net.node(b, I2P)
    link = result_of(net._nodes[me].connect(I2P))
    assert link_is_peer(link, b)  # an onion peer: the record's onion decides
    assert not link_is_peer(link, onion())
    assert link_is_peer(link, I2P)  # an I2P-only peer: the proven address decides
    assert not link_is_peer(link, "r" * 52 + ".b32.i2p")


def test_revoked_peer_refused_at_dial_and_accept(net: FakeNetwork, clock: Clock,
                                                 tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    a.core.pool.is_revoked = lambda peer: peer == b.address
    with pytest.raises(PeerRevoked):
        result_of(a.core.pool.get(b.address))
    assert a.factory.dialed == []
    result_of(b.core.store.add(a.address))
    with pytest.raises(Exception, match="closed"):
        result_of(b.core.pool.get(a.address)).send_message(b"{}")
    assert not a.core.pool.connected(b.address)
    assert a.core.metrics.counters["revoked_refused"] == 1


def _connected_link(net: FakeNetwork, clock: Clock, tmp_path: Path) -> tuple[Node, Node, Any]:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))
    (raw,) = [link for link in a.factory.links if not link.closed]
    return a, b, raw


def test_stop_waits_for_a_session_closing_at_its_slots(net: FakeNetwork, clock: Clock,
                                                        tmp_path: Path) -> None:
    """A paced session sends its queued cells at their slots before its CLOSE: the pool's
    stop fires only once it has closed and its status is saved (the core closes its
    database after that, not under the status update)."""
    a, b, raw = _connected_link(net, clock, tmp_path)
    real_close = raw.close
    raw.close = lambda reason: clock.callLater(2.0, real_close, reason)
    fired: list[object] = []
    a.core.pool.stop().addCallback(fired.append)
    assert not fired
    clock.advance(1.9)
    assert not fired and a.core.pool.connected(b.address)
    clock.advance(0.1)
    assert fired and not a.core.pool.connected(b.address)
    info = a.core.store.get(b.address)
    assert info is not None and info.status == "disconnected"


def test_stop_gives_up_on_a_session_that_never_closes(net: FakeNetwork, clock: Clock,
                                                       tmp_path: Path) -> None:
    from aegis_hidden.node._pool import STOP_WAIT

    a, _b, raw = _connected_link(net, clock, tmp_path)
    raw.close = lambda reason: None
    fired: list[object] = []
    a.core.pool.stop().addCallback(fired.append)
    clock.advance(STOP_WAIT - 0.1)
    assert not fired
    clock.advance(0.1)
    assert fired
    assert not clock.getDelayedCalls() or all(
        c.getTime() > clock.seconds() for c in clock.getDelayedCalls())


def test_stop_with_no_sessions_fires_at_once(net: FakeNetwork, clock: Clock,
                                             tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    assert a.core.pool.stop().called


def test_a_dial_that_completes_after_the_pool_began_stopping_is_closed(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    """A session dialled before the node began stopping and established after it is
    closed at once, not adopted: the stop would otherwise wait for it and its status
    update could reach a closed database (seen in a pub/sub integration run)."""
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    assert a.core.pool.stop().called
    with pytest.raises(DialFailed):
        result_of(a.core.pool.get(b.address))
    assert not a.core.pool.connected(b.address)
    assert a.factory.links and all(link.closed for link in a.factory.links)
