"""Our own send queue filling up is backpressure, never the peer's fault."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from aegis_hidden import tap
from aegis_hidden.config import Config, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import Backpressure, DeliveryState, NodeCore
from aegis_hidden.peers import AUTO_BLOCK_BELOW, InlineSQLite
from aegis_hidden.session.twisted import SessionFactory
from aegis_hidden.testing import FakeNetwork, result_of
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity


class Backlog:
    """Cells waiting in our session's queue: each message adds 2, the link sends
    ``rate`` per second (a balanced link with a saturating sender)."""

    def __init__(self, clock: Clock, rate: float) -> None:
        self.clock, self.rate = clock, rate
        self.cells, self.at = 0.0, 0.0

    def drain(self) -> None:
        now = self.clock.seconds()
        self.cells = max(0.0, self.cells - (now - self.at) * self.rate)
        self.at = now

    def queued(self) -> int:
        self.drain()
        return int(self.cells + 0.999)


def core(net: FakeNetwork, clock: Clock, path: Path) -> NodeCore:
    path.mkdir()
    address = onion_address_from_public_key(os.urandom(32))
    c = NodeCore(Config(), None, str(path), EventBus(now=clock.seconds), clock,
                 db=InlineSQLite(str(path / "state.db")), local_address=address)
    c.attach_session_factory(net.node(address))
    c.startService()
    result_of(c.when_ready())
    return c


def test_full_queue_at_20_messages_per_second_never_blacklists_the_peer(tmp_path: Path) -> None:
    clock, net = Clock(), FakeNetwork()
    a, b = core(net, clock, tmp_path / "a"), core(net, clock, tmp_path / "b")
    peer = b.local_address
    result_of(a.store.add(peer))
    result_of(a.send(peer, {"type": "x"}))
    link = a.pool.link(peer)
    assert link is not None
    backlog = Backlog(clock, rate=2.0)
    link.raw.queued = backlog.queued  # type: ignore[attr-defined]
    a.messenger.link_rate = lambda: backlog.rate
    net.drop_all = True  # the peer's acks wait behind our queue: none arrives in time
    accepted = refused = 0
    retry_afters: list[int] = []
    for _ in range(150 * 20):  # 2.5 minutes at 20 messages/s
        clock.advance(0.05)
        try:
            result_of(a.send(peer, {"type": "chat", "data": "z" * 1000}))
        except Backpressure as e:
            refused += 1
            retry_afters.append(e.retry_after)
            continue
        accepted += 1
        backlog.drain()
        backlog.cells += 2
    info = a.store.require(peer)
    assert not info.blocked(clock.seconds()) and info.reputation >= 0.5
    assert refused > 0 and accepted > 0
    assert all(1 <= r <= 300 for r in retry_afters)
    # the queue stays bounded: what the link sends in an ack timeout, plus one message
    assert backlog.queued() <= 2.0 * a.messenger.ack_timeout + 2
    assert a.metrics.counters["sends_refused_backpressure"] == refused
    assert a.messenger.outbox_size() == accepted  # every accepted message kept


def test_silent_peer_still_charged_once_our_queue_is_empty(tmp_path: Path) -> None:
    clock, net = Clock(), FakeNetwork()
    a, b = core(net, clock, tmp_path / "a"), core(net, clock, tmp_path / "b")
    peer = b.local_address
    result_of(a.store.add(peer))
    result_of(a.send(peer, {"type": "x"}))
    link = a.pool.link(peer)
    assert link is not None
    waiting = [5]
    link.raw.queued = lambda: waiting[0]  # type: ignore[attr-defined]
    net.drop_all = True
    msg_id, _ = result_of(a.send(peer, {"type": "y"}))
    start = a.store.require(peer).reputation
    sends = len(link.raw.sent)  # type: ignore[attr-defined]
    clock.advance(a.messenger.ack_timeout * 4)
    assert a.store.require(peer).reputation == pytest.approx(start)  # our backlog: no charge
    assert len(link.raw.sent) == sends  # type: ignore[attr-defined]  # and no copy queued
    assert a.messenger.state(msg_id) is DeliveryState.SENT
    waiting[0] = 0  # our queue is empty now: a missing ack is the peer's silence
    clock.advance(a.messenger.ack_timeout)
    assert a.store.require(peer).reputation < start
    assert a.store.require(peer).reputation > AUTO_BLOCK_BELOW


def test_a_real_session_link_reports_its_unsent_cells(tmp_path: Path) -> None:
    """What the messenger measures: PeerLink.queued() over real sessions on a balanced
    scheduler (cells wait for their Poisson slots)."""
    now = 1_800_000_000.0
    clock = Clock()
    clock.advance(now)
    cfg = parse_config({})
    provider = MemoryTransportProvider()
    a_id, b_id = memory_identity(now), memory_identity(now)
    layer = tap.build_mixing(cfg, tmp_path, clock, random.Random(1))
    alice = SessionFactory(a_id, [provider], cfg, clock, scheduler=layer.scheduler)
    bob = SessionFactory(b_id, [provider], cfg, clock)
    provider.listen(b_id.onion, 7701, bob.server_factory())
    d = alice.connect(b_id.onion)
    provider.flush()
    link = result_of(d)
    for n in range(20):
        link.send_message(f"m{n}".encode())
    assert link.queued() == 20
    for _ in range(2000):
        clock.advance(0.05)
        provider.flush()
    assert link.queued() == 0
