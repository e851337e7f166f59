"""Emergency controls on a virtual clock: isolate/resume, the bandwidth cap, transport restart."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.interfaces import ICellLink
from aegis_hidden.mixing import ImmediateScheduler, PoissonScheduler, Throttle
from aegis_hidden.node import DeliveryState, NodeCore
from aegis_hidden.node._emergency import STATE_FILE, NotSupported, UnknownTransport
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of

CELL = 996


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, data_dir: Path,
                 address: str | None = None) -> None:
        data_dir.mkdir(exist_ok=True)
        self.address = address or onion_address_from_public_key(os.urandom(32))
        self.data_dir = data_dir
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.db = InlineSQLite(str(data_dir / "state.db"))
        self.core = NodeCore(Config(), None, str(data_dir), bus, clock, db=self.db,
                             local_address=self.address)
        self.factory = net.node(self.address)
        self.core.attach_session_factory(self.factory)
        self.core.startService()
        result_of(self.core.when_ready())

    def stop(self) -> None:
        self.core.stopService()
        result_of(self.db.close())

    def received(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message_received"]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pair(clock: Clock, tmp_path: Path) -> tuple[FakeNetwork, Node, Node]:
    net = FakeNetwork()
    a, b = Node(net, clock, tmp_path / "a"), Node(net, clock, tmp_path / "b")
    result_of(a.core.store.add(b.address))
    result_of(b.core.store.add(a.address))
    return net, a, b


def test_isolate_closes_refuses_keeps_queue_and_resume_drains(clock: Clock,
                                                              tmp_path: Path) -> None:
    _, a, b = pair(clock, tmp_path)
    _, state = result_of(a.core.send(b.address, {"type": "chat", "data": "before"}))
    assert state is DeliveryState.ACKNOWLEDGED and a.core.pool.connected(b.address)

    assert a.core.emergency.isolate("test") is True
    assert len(a.core.pool) == 0 and len(b.core.pool) == 0  # live sessions closed
    assert "node_isolated" in a.types()
    assert json.loads((a.data_dir / STATE_FILE).read_text())["isolated"] is True
    dialed = len(a.factory.dialed)
    out_id, out_state = result_of(a.core.send(b.address, {"type": "chat", "data": "out"}))
    in_id, _ = result_of(b.core.send(a.address, {"type": "chat", "data": "in"}))
    clock.advance(1)
    for _ in range(60):  # ten virtual minutes of retries
        clock.advance(10)
    assert out_state is DeliveryState.QUEUED
    assert len(a.factory.dialed) == dialed  # never dialled while isolated
    assert a.core.messenger.outbox_size() == 1 and b.core.messenger.outbox_size() == 1
    assert len(a.core.pool) == 0  # b's dials were refused
    assert [m["message"]["data"] for m in b.received()] == ["before"]
    assert not a.received()
    assert a.core.status()["emergency"]["isolated"] is True

    assert a.core.emergency.resume() is True
    assert "node_resumed" in a.types()
    assert a.core.messenger.state(out_id) is DeliveryState.ACKNOWLEDGED  # drained at once
    for _ in range(40):
        clock.advance(10)  # b's own retry reaches a
    assert b.core.messenger.state(in_id) is DeliveryState.ACKNOWLEDGED
    assert [m["message"]["data"] for m in b.received()] == ["before", "out"]
    assert [m["message"]["data"] for m in a.received()] == ["in"]  # exactly once
    assert a.core.store.require(b.address).reputation >= 0.5  # nobody was charged
    assert b.core.store.require(a.address).reputation >= 0.5
    assert json.loads((a.data_dir / STATE_FILE).read_text())["isolated"] is False


def test_isolation_survives_a_restart(clock: Clock, tmp_path: Path) -> None:
    net, a, b = pair(clock, tmp_path)
    a.core.emergency.isolate()
    result_of(a.core.send(b.address, {"type": "chat", "data": "kept"}))
    a.stop()
    net.remove(a.address)
    again = Node(net, clock, tmp_path / "a", address=a.address)
    assert again.core.emergency.isolated
    for _ in range(30):
        clock.advance(10)
    assert again.factory.dialed == [] and again.core.messenger.outbox_size() == 1
    again.core.emergency.resume()
    assert again.core.messenger.outbox_size() == 0
    assert [m["message"]["data"] for m in b.received()] == ["kept"]


def test_unreadable_state_file_starts_isolated(clock: Clock, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / STATE_FILE).write_text("{not json")
    node = Node(FakeNetwork(), clock, tmp_path / "a")
    assert node.core.emergency.isolated
    assert node.core.emergency.status()["isolation_reason"] == "state file unreadable"


@implementer(ICellLink)
class SaturatedLink:
    """Always has cells queued; counts what is written."""

    def __init__(self, name: str) -> None:
        self.link_id = name
        self.closed = False
        self.cells = 0  # real + cover cells written

    def queued(self) -> int:
        return 1_000_000

    def emit(self, count: int, cover: int = 0) -> int:
        self.cells += count + cover
        return count


@pytest.mark.parametrize("cap", [2048, 8192, 50_000])
def test_throttle_caps_poisson_scheduler_over_60s(clock: Clock, cap: int) -> None:
    sched = PoissonScheduler(clock, random.Random(7), rate=20.0, burst=4)
    throttle = Throttle(clock, CELL)
    sched.throttle = throttle
    throttle.set_rate(cap, largest_write=sched.burst)
    links = [SaturatedLink(f"l{i}") for i in range(5)]
    for link in links:
        sched.register(link)
    for _ in range(6000):
        clock.advance(0.01)
    sent = sum(link.cells for link in links) * CELL
    assert sent / 60 <= cap  # never above the cap
    assert sent / 60 >= 0.8 * min(cap, 5 * 20 * 4 * CELL)  # and the cap is used
    assert throttle.refused > 0


def test_throttle_caps_immediate_scheduler_and_lifting_it_drains(clock: Clock) -> None:
    sched = ImmediateScheduler(batch_size=16)
    throttle = Throttle(clock, CELL)
    sched.throttle = throttle
    throttle.set_rate(10_000)

    @implementer(ICellLink)
    class Finite:
        link_id, closed = "f", False

        def __init__(self, n: int) -> None:
            self.left, self.cells = n, 0

        def queued(self) -> int:
            return self.left

        def emit(self, count: int, cover: int = 0) -> int:
            count = min(count, self.left)
            self.left -= count
            self.cells += count
            return count

    link = Finite(10_000)
    sched.register(link)  # saturated: far more than 60 s of the cap
    for _ in range(600):
        clock.advance(0.1)
    assert 0.8 * 10_000 <= link.cells * CELL / 60 <= 10_000
    throttle.set_rate(None)  # lifted: the waiting link is woken and drains
    assert link.left == 0


def test_set_throttle_validates_persists_and_emits(clock: Clock, tmp_path: Path) -> None:
    node = Node(FakeNetwork(), clock, tmp_path / "a")
    with pytest.raises(NotSupported):  # no cell scheduler attached
        node.core.emergency.set_throttle(4096)
    sched = PoissonScheduler(clock, random.Random(1), rate=10.0)
    node.core.emergency.attach_scheduler(sched, CELL)
    for bad in (-1, 12, 1.5, "100", True, float("nan"), 10**12):
        with pytest.raises(ValueError, match="bytes_per_second"):
            node.core.emergency.set_throttle(bad)
    assert node.core.emergency.set_throttle(4096) == 4096
    assert sched.throttle is not None and sched.throttle.rate == 4096
    assert node.events[-1]["type"] == "node_throttled"
    assert json.loads((tmp_path / "a" / STATE_FILE).read_text())[
        "throttle_bytes_per_second"] == 4096
    assert node.core.status()["emergency"]["throttle"]["bytes_per_second"] == 4096
    assert node.core.emergency.set_throttle(0) is None
    assert sched.throttle.rate is None


class FakeProvider:
    def __init__(self, name: str) -> None:
        self.name = name
        self.restarts: list[str] = []
        self.ready: Deferred[None] | None = None

    def restart(self, why: str) -> bool:
        self.restarts.append(why)
        self.ready = Deferred()
        return True

    def when_ready(self) -> Deferred[None]:
        return self.ready if self.ready is not None else succeed(None)

    def state(self) -> Mapping[str, Any]:
        return {"ready": self.ready is None or self.ready.called}


def test_restart_transport_drops_its_sessions_and_redials_when_ready(
        clock: Clock, tmp_path: Path) -> None:
    net, a, b = pair(clock, tmp_path)
    c = Node(net, clock, tmp_path / "c")
    result_of(a.core.store.add(c.address))
    tor, i2p = FakeProvider("tor"), FakeProvider("i2p")
    a.core.add_transport(tor)  # type: ignore[arg-type]
    a.core.add_transport(i2p)  # type: ignore[arg-type]
    result_of(a.core.send(b.address, {"type": "chat", "data": 1}))
    result_of(a.core.send(c.address, {"type": "chat", "data": 1}))
    a.core.pool.link(b.address).raw.transport_name = "tor"  # type: ignore[union-attr]
    a.core.pool.link(c.address).raw.transport_name = "i2p"  # type: ignore[union-attr]

    with pytest.raises(UnknownTransport, match="running: i2p, tor"):
        a.core.emergency.restart_transport("loki")
    net.unreachable.add(b.address)  # tor is down while it restarts
    result_of(a.core.emergency.restart_transport("tor"))
    assert tor.restarts and not i2p.restarts
    assert not a.core.pool.connected(b.address) and a.core.pool.connected(c.address)
    assert a.events[-1]["type"] in ("transport_restarting", "peer_disconnected")
    assert any(e["type"] == "transport_restarting" and e["transport"] == "tor"
               and e["sessions_closed"] == 1 for e in a.events)
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat", "data": 2}))
    assert a.core.messenger.state(msg_id) is DeliveryState.QUEUED
    net.unreachable.discard(b.address)
    assert tor.ready is not None
    tor.ready.callback(None)  # ready again: the queue is sent at once
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    assert [m["message"]["data"] for m in b.received()] == [1, 2]


def test_restart_transport_needs_a_restartable_provider(clock: Clock, tmp_path: Path) -> None:
    node = Node(FakeNetwork(), clock, tmp_path / "a")

    class Plain:
        name = "i2p"

        def state(self) -> Mapping[str, Any]:
            return {}

    node.core.add_transport(Plain())  # type: ignore[arg-type]
    with pytest.raises(NotSupported):
        node.core.emergency.restart_transport("i2p")


def test_a_provider_without_restart_is_stopped_and_started(clock: Clock,
                                                           tmp_path: Path) -> None:
    class I2PLike(Service):
        name = "i2p"
        calls: list[str] = []

        def startService(self) -> None:
            super().startService()
            self.calls.append("start")

        def stopService(self) -> Deferred[None]:
            super().stopService()
            self.calls.append("stop")
            return succeed(None)

        def when_ready(self) -> Deferred[None]:
            return succeed(None)

        def state(self) -> Mapping[str, Any]:
            return {}

    node = Node(FakeNetwork(), clock, tmp_path / "a")
    i2p = I2PLike()
    i2p.startService()
    node.core.add_transport(i2p)  # type: ignore[arg-type]
    result_of(node.core.emergency.restart_transport("i2p"))
    assert i2p.calls == ["start", "stop", "start"] and i2p.running


def test_state_file_with_a_non_finite_cap_starts_isolated(clock: Clock, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / STATE_FILE).write_text(
        '{"isolated": false, "since": null, "reason": "", "throttle_bytes_per_second": NaN}')
    node = Node(FakeNetwork(), clock, tmp_path / "a")
    assert node.core.emergency.isolated
    assert node.core.emergency.status()["isolation_reason"] == "state file unreadable"
