"""The pub/sub simulation (aegis_hidden.sim._pubsub) small: it drives the real core, deterministically.

The 1,000-node figures come from ``benchmarks/pubsub_sim.py`` (docs/pubsub.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import re
from pathlib import Path

from aegis_hidden.sim import (
    AnonymityScenario,
    PubSubScenario,
    pubsub_fingerprint,
    simulate_anonymity,
    simulate_pubsub,
)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "pubsub_sim.py"
SMALL = PubSubScenario(honest=40, publishers=8, sybils=8, sybil_degree=10, victims=3,
                       warmup=8.0, window=4.0, drain=8.0)


def test_the_quick_benchmark_prints_the_whole_table_with_every_message_delivered() -> None:
    spec = importlib.util.spec_from_file_location("pubsub_sim_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench.main(["--quick", "--codec"]) == 0
    text = out.getvalue()
    rows = [line.split() for line in text.splitlines() if re.match(r"\s+(none|cold|covert|eclipse)",
                                                                    line)]
    assert len(rows) == 12
    gossipsub = [r for r in rows if "gossipsub" in r]
    assert len(gossipsub) == 4
    for r in gossipsub:
        assert r[r.index("gossipsub") + 1] == "100.00%", r
    assert "first spy" in text and "fingerprint" in text


def test_same_seed_same_figures_and_attacks_change_them() -> None:
    a = simulate_pubsub(SMALL, seed=3)
    b = simulate_pubsub(SMALL, seed=3)
    assert a == b and pubsub_fingerprint([a]) == pubsub_fingerprint([b])
    assert a.messages == 8 and a.delivery == 1.0
    assert a.duplicates > 0 and a.latency_p50 < a.latency_p99
    assert a.px_dials > 0  # peers offered on PRUNE are dialled, as the node does
    mesh = simulate_pubsub(dataclasses.replace(SMALL, protocol="mesh"), seed=3)
    assert mesh.px_dials == 0  # without scores no peer reaches accept_px
    cold = simulate_pubsub(dataclasses.replace(SMALL, attack="cold boot", protocol="mesh"),
                           seed=3)
    assert cold.sybils_in_mesh > 0  # without scores, Sybils keep their mesh slots


def test_the_stem_hides_the_publisher_from_the_first_spy_better_than_plain_gossip() -> None:
    small = AnonymityScenario(honest=40, spies=0.2, messages=15, warmup=6.0, window=4.0,
                              drain=20.0)
    plain = simulate_anonymity(dataclasses.replace(small, anonymous=False), 5)
    stem = simulate_anonymity(small, 5)
    assert plain.delivery == 1.0 and stem.delivery == 1.0
    assert stem.first_spy < plain.first_spy
