"""Bootstrap peering over sessions, and status.json, in memory with a Clock."""

from __future__ import annotations

import itertools
import json
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
from aegis_hidden.node import NodeCore
from aegis_hidden.node._peering import PeeringService, bootstrap_peer
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, tmp: Path, name: str,
                 bootstrap: list[str], config: Config | None = None) -> None:
        self.address = onion()
        self.dir = tmp / name
        self.dir.mkdir()
        self.db = InlineSQLite(str(self.dir / "node.db"))
        config = config or parse_config({"logging": {"status_peers": True}})
        self.core = NodeCore(config, None,
                             str(self.dir), EventBus(now=clock.seconds), clock,
                             db=self.db, local_address=self.address)
        self.core.attach_session_factory(net.node(self.address))
        self.bootstrap = bootstrap
        self.clock = clock
        self.peering: PeeringService | None = None

    def start(self) -> None:
        self.core.startService()
        result_of(self.core.when_ready())
        self.peering = PeeringService(self.core, self.bootstrap, self.dir, self.clock,
                                      wall=self.clock.seconds, redial_delay=5.0)
        self.peering.startService()

    def stop(self) -> None:
        assert self.peering is not None
        self.peering.stopService()
        self.core.stopService()
        result_of(self.db.close())

    def status(self) -> dict[str, Any]:
        doc = json.loads((self.dir / "status.json").read_text())
        assert isinstance(doc, dict)
        return doc


def run(clock: Clock, seconds: float, step: float = 0.5) -> None:
    for _ in range(int(seconds / step)):
        clock.advance(step)


def test_bootstrap_entry_parsing() -> None:
    a = onion()
    assert bootstrap_peer(f"{a}:7701") == a
    assert bootstrap_peer(a.upper()) == a


def test_both_sides_record_an_authenticated_session(tmp_path: Path) -> None:
    clock, net = Clock(), FakeNetwork()
    b = Node(net, clock, tmp_path, "b", [])
    a = Node(net, clock, tmp_path, "a", [f"{b.address}:7701", b.address])
    b.start()
    a.start()
    run(clock, 10)
    sa, sb = a.status(), b.status()
    assert sa["onion"] == a.address and sa["bootstrap_nodes"] == [b.address]
    peer_b = sa["peers"][b.address]
    assert peer_b["reachable"] and peer_b["connected"] and peer_b["authenticated"]
    assert peer_b["last_direction"] == "outbound" and "rtt" in peer_b
    assert sb["peers"][a.address]["reachable"]  # inbound side
    a.stop()
    b.stop()


def test_status_json_holds_no_peer_list_by_default(tmp_path: Path) -> None:
    """The contact graph is not rewritten to disk every 2 s; counts only."""
    clock, net = Clock(), FakeNetwork()
    b = Node(net, clock, tmp_path, "b", [], Config())
    a = Node(net, clock, tmp_path, "a", [b.address], Config())
    b.start()
    a.start()
    run(clock, 10)
    sa, sb = a.status(), b.status()
    assert "peers" not in sa and sa["bootstrap_nodes"] == 1
    assert sa["peers_reachable"] == sa["peers_connected"] == 1
    assert sb["peers_reachable"] == 1
    for side, other in ((a, b), (b, a)):
        raw = (side.dir / "status.json").read_text()
        assert other.address not in raw and other.address[:56] not in raw
    a.stop()
    b.stop()


def test_dropped_session_is_redialed(tmp_path: Path) -> None:
    clock, net = Clock(), FakeNetwork()
    b = Node(net, clock, tmp_path, "b", [])
    a = Node(net, clock, tmp_path, "a", [b.address])
    b.start()
    a.start()
    run(clock, 5)
    assert a.status()["peers"][b.address]["times_reached"] == 1
    assert net.cut(a.address, b.address) >= 1
    run(clock, 2)
    assert a.status()["peers"][b.address]["connected"] is False
    run(clock, 20)
    entry = a.status()["peers"][b.address]
    assert entry["connected"] and entry["times_reached"] == 2
    a.stop()
    b.stop()


@pytest.mark.parametrize(("base", "cap", "seconds", "seed"), [
    (5.0, 120.0, 900, 1),  # the defaults but base
    (2.0, 10.0, 90, 2),
    (2.0, 10.0, 90, 3),
])
def test_unreachable_peer_backs_off(tmp_path: Path, base: float, cap: float, seconds: int,
                                    seed: int) -> None:
    """Redials of an unreachable bootstrap peer: at once, then after the n-th failure a
    jittered gap in ``[redial_delay / 2, min(max_redial_delay, redial_delay * 2**(n-1))]``
    (full jitter from the injected random): never a fixed schedule."""
    clock, net = Clock(), FakeNetwork()
    ghost = onion()
    a = Node(net, clock, tmp_path, "a", [ghost])
    dials: list[float] = []
    original = net._dial

    def counting(source: Any, address: str) -> Any:
        if address == ghost:
            dials.append(clock.seconds())
        return original(source, address)

    net._dial = counting  # type: ignore[method-assign]
    a.core.startService()
    result_of(a.core.when_ready())
    backoff = Backoff(base=base, cap=cap, mode="full", floor=base / 2,
                      random=random.Random(seed).random)
    a.peering = PeeringService(a.core, [ghost], a.dir, clock, wall=clock.seconds,
                               redial_delay=base, max_redial_delay=cap, backoff=backoff)
    a.peering.startService()
    run(clock, seconds, step=0.01)
    assert dials[0] == 0.0  # the first dial does not wait
    gaps = [b - a_ for a_, b in itertools.pairwise(dials)]
    assert len(gaps) >= 6
    for n, gap in enumerate(gaps):
        nominal = min(cap, base * 2 ** n)
        assert base / 2 - 0.02 <= gap <= nominal + 0.02, (n, gap)
    assert len(set(round(g, 2) for g in gaps)) > len(gaps) // 2  # jittered, not a fixed step
    assert ghost not in a.status()["peers"]  # never reached, never reported reachable
    a.stop()
