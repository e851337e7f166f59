"""/metrics shows what the alert rules in deploy/prometheus watch: transport readiness,
tor's bootstrap progress and how long until this node's record expires."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, memory_identity, result_of


class _Provider:
    """A transport whose state the test sets (only ``name`` and ``state()`` are read)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.current: Mapping[str, Any] | Exception = {}

    def state(self) -> Mapping[str, Any]:
        if isinstance(self.current, Exception):
            raise self.current
        return self.current


def _value(text: str, name: str) -> float:
    values = [line.split()[1] for line in text.splitlines() if line.split(" ")[0] == name]
    assert len(values) == 1, f"{name} shown {len(values)} times"
    return float(values[0])


def _core(tmp_path: Path, clock: Clock, identity: Any = None) -> NodeCore:
    return NodeCore(Config(), identity, str(tmp_path), EventBus(now=clock.seconds), clock,
                    db=InlineSQLite(), local_address="a" * 56 + ".onion")


def test_transport_readiness_and_bootstrap(tmp_path: Path) -> None:
    clock = Clock()
    core = _core(tmp_path, clock)
    tor, i2p = _Provider("tor"), _Provider("i2p")
    core.add_transport(tor)  # type: ignore[arg-type]
    core.add_transport(i2p)  # type: ignore[arg-type]
    text = core.metrics.render()
    assert _value(text, "aegis_tor_ready") == 0 and _value(text, "aegis_i2p_ready") == 0
    assert _value(text, "aegis_tor_bootstrap_percent") == 0
    assert "aegis_i2p_bootstrap_percent" not in text  # tor's alone
    tor.current = {"ready": False, "bootstrap": {"progress": 85}}
    assert _value(core.metrics.render(), "aegis_tor_bootstrap_percent") == 85
    tor.current = {"ready": True, "bootstrap": {"progress": 100}}
    i2p.current = {"ready": True, "state": "ready"}
    text = core.metrics.render()
    assert _value(text, "aegis_tor_ready") == 1 and _value(text, "aegis_i2p_ready") == 1
    assert _value(text, "aegis_tor_bootstrap_percent") == 100
    # A provider whose state() fails reads as not ready and does not break /metrics.
    tor.current = RuntimeError("boom")
    text = core.metrics.render()
    assert _value(text, "aegis_tor_ready") == 0 and _value(text, "aegis_i2p_ready") == 1


def test_record_expiry_counts_down_and_follows_a_new_record(tmp_path: Path) -> None:
    clock = Clock()
    clock.advance(1_000_000)
    core = _core(tmp_path, clock, memory_identity(clock.seconds(), lifetime=86_400))
    assert _value(core.metrics.render(), "aegis_record_expires_in_seconds") == 86_400
    clock.advance(3600)
    assert _value(core.metrics.render(), "aegis_record_expires_in_seconds") == 82_800
    core.set_identity(memory_identity(clock.seconds(), lifetime=7 * 86_400))
    assert _value(core.metrics.render(), "aegis_record_expires_in_seconds") == 604_800
    clock.advance(8 * 86_400)
    assert _value(core.metrics.render(), "aegis_record_expires_in_seconds") == -86_400


def test_record_expiry_unknown_without_identity(tmp_path: Path) -> None:
    text = _core(tmp_path, Clock()).metrics.render()
    assert math.isnan(_value(text, "aegis_record_expires_in_seconds"))


def test_sessions_by_transport(tmp_path: Path) -> None:
    """Peer distribution is by transport (tor, i2p; the fake network's 'memory')."""
    clock = Clock()
    net = FakeNetwork()
    cores = []
    for _ in range(2):
        address = onion_address_from_public_key(os.urandom(32))
        core = NodeCore(Config(), None, str(tmp_path), EventBus(now=clock.seconds), clock,
                        db=InlineSQLite(), local_address=address)
        core.attach_session_factory(net.node(address))
        core.startService()
        result_of(core.when_ready())
        cores.append(core)
    a, b = cores
    text = a.metrics.render()
    assert "# TYPE aegis_sessions gauge" in text
    assert _value(text, 'aegis_sessions{transport="tor"}') == 0
    assert _value(text, 'aegis_sessions{transport="i2p"}') == 0
    result_of(a.store.add(b.local_address))
    result_of(a.pool.get(b.local_address))
    text = a.metrics.render()
    assert _value(text, 'aegis_sessions{transport="memory"}') == 1
    assert _value(text, 'aegis_sessions{transport="tor"}') == 0
    assert _value(text, "aegis_active_connections") == 1


def test_gauges_render_exact_values() -> None:
    """A gauge is rendered with every digit: ``:g`` rounded a record expiry of
    1,000,003 s to ``1e+06`` (six significant digits), losing three seconds."""
    from aegis_hidden.node._metrics import Metrics, sample

    assert sample(1_000_003) == "1000003"
    assert sample(1_796_000_123.0) == "1796000123"
    assert sample(0.1234567891) == "0.1234567891"
    assert sample(math.inf) == "+Inf" and sample(-math.inf) == "-Inf"
    assert sample(math.nan) == "NaN"
    metrics = Metrics()
    metrics.gauge("record_expiry_seconds", "Seconds until the record expires.", lambda: 1_000_003.0)
    assert "aegis_record_expiry_seconds 1000003\n" in metrics.render()
