"""The mixing layer in the node core: loop cover through connected peers on the
control channel, and Exp(μ) mix delays for what a node relays for others (rpc
answers, pub/sub forwards), never for its own messages.

Nodes are NodeCores on the fake session network (``FakeNetwork``) with a
MixingLayer attached as the tap attaches it; everything runs on a task.Clock.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import pytest
from scipy import stats
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from aegis_hidden.config import Config, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.mixing import LOOP_RTT_BUCKETS, MixingLayer, MixingService
from aegis_hidden.node import NodeCore
from aegis_hidden.node._channels import Channel, encode_frame, send_frame
from aegis_hidden.node._control import ControlKind
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.session import Session, SessionParams
from aegis_hidden.testing import FakeNetwork, result_of
from aegis_hidden.testing._sessions import memory_identity

KS_SAMPLES = 10_000


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, path: Path,
                 mixing: dict[str, Any] | None = None, seed: int = 1) -> None:
        self.address = onion_address_from_public_key(os.urandom(32))
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.core = NodeCore(Config(), None, str(path.parent), bus, clock,
                             db=InlineSQLite(str(path)), local_address=self.address)
        self.core.attach_session_factory(net.node(self.address))
        self.layer: MixingLayer | None = None
        if mixing is not None:
            self.layer = MixingLayer.from_config(parse_config({"mixing": mixing}), clock,
                                                 random.Random(seed))
            self.core.loops._rng = random.Random(seed + 1)
            self.core.attach_mixing(self.layer)
            self.service = MixingService(self.layer)
            self.service.startService()
        self.core.startService()
        result_of(self.core.when_ready())

    def reputation(self, peer: str) -> float:
        return self.core.store.require(peer).reputation

    def loop_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events
                if e["type"] == "network_error" and e["error"] == "loop lost"]


def connect(a: Node, b: Node) -> None:
    result_of(a.core.store.add(b.address))
    result_of(a.core.pool.get(b.address))


def run(clock: Clock, seconds: float) -> None:
    """Step the clock to each timer in turn for ``seconds``."""
    end = clock.seconds() + seconds
    while clock.seconds() < end:
        due = [c.getTime() for c in clock.getDelayedCalls()]
        clock.advance(max(0.0, min([*due, end]) - clock.seconds()))


def metric_lines(core: NodeCore) -> dict[str, str]:
    text = core.metrics.render()
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


# -- loop cover -------------------------------------------------------------------------

def test_loops_through_a_peer_that_returns_them_measure_the_round_trip(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork(clock, latency=0.25)  # each way: a round trip is 0.5 s
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced", "loop_rate": 0.5})
    b = Node(net, clock, tmp_path / "b.db")  # no mixing layer: it still returns loops
    connect(a, b)
    clock.advance(1.0)
    before = a.reputation(b.address)
    run(clock, 600)
    assert a.layer is not None and a.layer.loops is not None
    t = a.layer.loops.totals()
    assert t.sent > 250  # λ_L = 0.5 for 600 s: ~300
    assert t.lost == 0 and t.returned == t.sent - a.layer.loops.outstanding
    assert t.rtts and all(rtt == pytest.approx(0.5) for rtt in t.rtts)
    assert b.core.metrics.counters["loops_answered"] == t.returned + a.layer.loops.outstanding
    assert a.reputation(b.address) == before and not a.loop_errors()
    # the round trips are in the histogram on /metrics
    lines = metric_lines(a.core)
    assert lines["aegis_mixing_loops_sent_total"] == str(t.sent)
    assert lines["aegis_mixing_loops_lost_total"] == "0"
    assert lines['aegis_mixing_loop_rtt_seconds_bucket{le="0.5"}'] == str(t.returned)
    assert lines['aegis_mixing_loop_rtt_seconds_bucket{le="+Inf"}'] == str(t.returned)
    assert float(lines["aegis_mixing_loop_rtt_seconds_sum"]) == pytest.approx(0.5 * t.returned)
    assert LOOP_RTT_BUCKETS[0] == 0.5
    st = a.core.status()["mixing"]
    assert st["loop_cover"] is True and st["loop_rate"] == 0.5


def test_a_peer_that_drops_loops_is_detected_and_penalised(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork(clock)
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced", "loop_rate": 0.5})
    b = Node(net, clock, tmp_path / "b.db")
    honest = Node(net, clock, tmp_path / "c.db")
    dropped: list[bytes] = []
    b.core.loops.on_control = lambda peer, kind, body: dropped.append(body)  # type: ignore[method-assign]
    connect(a, b)
    connect(a, honest)
    start_honest = a.reputation(honest.address)
    run(clock, 250)
    assert a.layer is not None and a.layer.loops is not None
    paths = a.layer.loops.paths()
    stats_b = paths[a.core.loops._path_of[b.address]]
    stats_honest = paths[a.core.loops._path_of[honest.address]]
    assert stats_b.sent == len(dropped) > 30
    assert stats_b.returned == 0 and stats_b.lost > 15
    assert stats_honest.lost == 0 and stats_honest.returned == stats_honest.sent > 30
    # each lost loop counts against b: below 0.1 it is blacklisted and disconnected
    peer_b = a.core.store.require(b.address)
    assert peer_b.reputation < 0.1 and "loop_lost" in (peer_b.blocked_reason or "")
    assert not a.core.pool.connected(b.address)
    assert a.reputation(honest.address) == start_honest
    errors = a.loop_errors()
    assert len(errors) == stats_b.lost and {e["peer"] for e in errors} == {b.address}
    assert metric_lines(a.core)["aegis_mixing_loops_lost_total"] == str(stats_b.lost)


def test_loops_outstanding_when_the_session_closes_are_not_lost(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork(clock)
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced", "loop_rate": 1.0})
    b = Node(net, clock, tmp_path / "b.db")
    b.core.loops.on_control = lambda peer, kind, body: None  # type: ignore[method-assign]
    connect(a, b)
    run(clock, 30)
    assert a.layer is not None and a.layer.loops is not None
    assert a.layer.loops.outstanding > 10
    before = a.reputation(b.address)
    a.core.pool.close(b.address, "test")
    run(clock, 120)
    assert a.layer.loops.outstanding == 0 and a.layer.loops.totals().lost == 0
    assert a.reputation(b.address) == before and not a.loop_errors()


def test_a_loop_return_from_another_peer_does_not_count(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork(clock)
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced", "loop_rate": 1.0})
    b = Node(net, clock, tmp_path / "b.db")
    c = Node(net, clock, tmp_path / "c.db")
    sent: list[bytes] = []
    b.core.loops.on_control = lambda peer, kind, body: sent.append(body)  # type: ignore[method-assign]
    connect(a, b)
    connect(c, a)
    run(clock, 30)
    assert sent and a.layer is not None and a.layer.loops is not None
    # c hands back b's loop id: not a return of the loop a sent through b
    link = c.core.pool.link(a.address)
    assert link is not None
    returned = a.layer.loops.totals().returned  # a's loops through c
    unknown = a.layer.loops.unknown
    send_frame(link, Channel.CONTROL, bytes([ControlKind.LOOP_RETURN]) + sent[-1])
    clock.advance(0)
    assert a.layer.loops.totals().returned == returned
    assert a.layer.loops.unknown == unknown + 1


def test_a_malformed_loop_is_a_protocol_violation(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork(clock)
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    connect(a, b)
    link = a.core.pool.link(b.address)
    assert link is not None
    send_frame(link, Channel.CONTROL, bytes([ControlKind.LOOP]) + b"short")
    clock.advance(0)
    assert b.core.metrics.counters["protocol_errors"] == 1
    assert b.core.metrics.counters["loops_answered"] == 0


def test_no_loops_without_loop_rate(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork(clock)
    a = Node(net, clock, tmp_path / "a.db", {"profile": "off"})
    b = Node(net, clock, tmp_path / "b.db")
    connect(a, b)
    run(clock, 300)
    assert a.layer is not None and a.layer.loops is None
    assert b.core.metrics.counters["loops_answered"] == 0
    assert a.core.status()["mixing"]["loop_cover"] is False


# -- mix delays for forwarded traffic ---------------------------------------------------

def advance(clock: Clock, seconds: float) -> None:
    """Advance ``seconds``, stopping at each timer on the way (so each fires on time)."""
    end = clock.seconds() + seconds
    while (due := min((c.getTime() for c in clock.getDelayedCalls()), default=end)) < end:
        clock.advance(max(0.0, due - clock.seconds()))
    clock.advance(end - clock.seconds())


def drain(clock: Clock, node: Node) -> None:
    """Step the clock to each timer until ``node``'s mix pool is empty."""
    assert node.layer is not None and node.layer.pool is not None
    pool = node.layer.pool
    for _ in range(10 * KS_SAMPLES):
        if not len(pool):
            break
        clock.advance(max(0.0, min(c.getTime() for c in clock.getDelayedCalls())
                          - clock.seconds()))


def test_rpc_answers_wait_exp_mu_and_requests_do_not(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork()  # delivers at once: the delays measured are the pool's
    mu = 2.0
    a = Node(net, clock, tmp_path / "a.db")  # asks: its own requests, no pool
    b = Node(net, clock, tmp_path / "b.db", {"profile": "off", "mix_rate": mu})
    connect(a, b)
    asked: list[float] = []

    def answer(peer: str, body: bytes) -> bytes:
        asked.append(clock.seconds())
        return body

    b.core.rpc.on_request(answer)
    b.core.rpc.max_inbound = KS_SAMPLES
    delays: list[float] = []

    def took(_: bytes, sent: float) -> None:
        delays.append(clock.seconds() - sent)

    for n in range(KS_SAMPLES):
        sent = clock.seconds()
        d = a.core.rpc.request(b.address, b"%d" % n, 10_000.0)
        d.addCallback(took, sent)
        advance(clock, 0.01)
    # a's requests (its own) reached b at once, without a mix delay
    assert len(asked) == KS_SAMPLES and asked[0] == 0.0
    drain(clock, b)
    assert len(delays) == KS_SAMPLES
    assert stats.kstest(delays, "expon", args=(0, 1 / mu)).pvalue >= 0.01
    assert sum(delays) / len(delays) == pytest.approx(1 / mu, rel=0.05)
    assert b.layer is not None and b.layer.pool is not None
    assert b.layer.pool.stats.released == KS_SAMPLES


def test_pubsub_forwards_wait_exp_mu_and_own_messages_do_not(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork()  # delivers at once: the delays measured are the pool's
    mu = 1.0
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced", "mix_rate": mu})
    b = Node(net, clock, tmp_path / "b.db")
    connect(a, b)
    arrived: list[tuple[bytes, float]] = []
    b.core.pubsub.on_message(lambda peer, data: arrived.append((data, clock.seconds())))
    # own messages: at once (pub/sub, rpc requests, messaging)
    result_of(a.core.pubsub.send(b.address, b"own"))
    assert arrived == [(b"own", 0.0)]
    got: list[float] = []

    def answer(peer: str, body: bytes) -> bytes:
        got.append(clock.seconds())
        return b""

    b.core.rpc.on_request(answer)
    a.core.rpc.request(b.address, b"q", 5.0)
    assert got == [0.0]
    before = len(b.events)
    result_of(a.core.send(b.address, {"type": "chat", "data": "hi"}))
    assert any(e["type"] == "message_received" for e in b.events[before:])
    arrived.clear()
    added: dict[bytes, float] = {}
    done: list[Deferred[None]] = []
    for n in range(KS_SAMPLES):
        key = b"f%d" % n
        added[key] = clock.seconds()
        done.append(a.core.pubsub.forward(b.address, key))
        advance(clock, 0.05)
    drain(clock, a)
    assert len(arrived) == KS_SAMPLES and all(d.called for d in done)
    delays = [at - added[data] for data, at in arrived]
    assert stats.kstest(delays, "expon", args=(0, 1 / mu)).pvalue >= 0.01


def test_forwards_leave_in_timed_batches(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork()  # delivers at once: the delays measured are the pool's
    interval = 0.5
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced", "mix_rate": 4.0,
                                            "batch_interval": interval, "batch_size": 1000})
    b = Node(net, clock, tmp_path / "b.db")
    connect(a, b)
    arrived: list[float] = []
    b.core.pubsub.on_message(lambda peer, data: arrived.append(clock.seconds()))
    rng = random.Random(4)
    for _ in range(2000):
        a.core.pubsub.forward(b.address, b"x")
        advance(clock, rng.random() * 0.02)
    drain(clock, a)
    assert len(arrived) == 2000
    # every release is on a multiple of the interval (the pool started at 0)
    assert all(math.isclose(t / interval, round(t / interval), abs_tol=1e-6) for t in arrived)
    assert a.layer is not None and a.layer.pool is not None
    assert a.layer.pool.stats.batches == len(set(arrived)) > 10
    st = a.core.status()["mixing"]
    assert st["mix_pool"] and st["mix_rate"] == 4.0 and st["batch_interval"] == interval
    assert st["batch_size"] == 1000


def test_a_full_batch_leaves_before_the_interval(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork()  # delivers at once: the delays measured are the pool's
    a = Node(net, clock, tmp_path / "a.db", {"profile": "off", "batch_interval": 10.0,
                                            "batch_size": 5})
    b = Node(net, clock, tmp_path / "b.db")
    connect(a, b)
    arrived: list[float] = []
    b.core.pubsub.on_message(lambda peer, data: arrived.append(clock.seconds()))
    for _ in range(4):
        a.core.pubsub.forward(b.address, b"x")
    clock.advance(1.0)
    assert arrived == []  # 4 < 5: they wait for the interval
    a.core.pubsub.forward(b.address, b"x")
    clock.advance(0)
    assert arrived == [1.0] * 5  # the fifth fills the batch: all leave now


def test_a_forward_to_a_peer_gone_meanwhile_fails_cleanly(tmp_path: Path) -> None:
    clock = Clock()
    net = FakeNetwork()  # delivers at once: the delays measured are the pool's
    a = Node(net, clock, tmp_path / "a.db", {"profile": "balanced"})
    b = Node(net, clock, tmp_path / "b.db")
    connect(a, b)
    d = a.core.pubsub.forward(b.address, b"x")
    a.core.pool.close(b.address, "test")
    drain(clock, a)
    errors: list[Any] = []
    d.addErrback(errors.append)
    assert errors and "no session" in errors[0].getErrorMessage()



def test_a_loop_is_one_sealed_cell_like_a_cover_cell() -> None:
    """On the wire a loop (and its return) is one cell of the cell size, sealed,
    as a cover cell is: nothing in its size or form tells it apart."""
    now = 1_800_000_000.0
    alice, bob = memory_identity(now), memory_identity(now)
    params = SessionParams()
    i = Session(alice, params, initiator=True, clock=lambda: now, peer_address=bob.onion)
    r = Session(bob, params, initiator=False, clock=lambda: now)
    i.start()
    for _ in range(3):
        r.receive_data(i.data_to_send())
        i.receive_data(r.data_to_send())
    assert i.established and r.established
    i.events()
    r.events()
    loop_id = random.Random(3).randbytes(16)
    for kind in (ControlKind.LOOP, ControlKind.LOOP_RETURN):
        frame = encode_frame(Channel.CONTROL, bytes([kind]) + loop_id)
        i.send_message(frame)
        sealed = i.seal_queued(1, 0)
        cover = i.seal_queued(0, 1)
        assert len(sealed) == len(cover) == params.cell_size
        assert loop_id not in sealed and frame not in sealed
        r.receive_data(sealed + cover)
        got = [getattr(e, "data", None) for e in r.events()]
        assert frame in got
