"""Mixing on the wire: nodes on the private Tor network, cell times from their traces.

Three nodes with the ``balanced`` profile (λ = 2 cells/s per link) and, as the
positive control, two with ``off`` start at once and send one another small
messages through their APIs at random times for a while. Every node records
each cell its sessions write or read (``mixing.trace_file``: time, salted link
hash, direction, size). Then:

- every cell on every link is one cell of ``mixing.cell_size`` bytes;
- the gaps between a ``balanced`` link's writes pass a Kolmogorov-Smirnov test
  against Exp(λ) (pooled over the links: the gaps of all links are i.i.d.);
- the ``off`` links' writes follow the application and fail the same test.

Driven with subprocesses and blocking HTTP (no reactor in this file). The
p-values are printed (run with ``-s``).
"""

from __future__ import annotations

import itertools
import json
import random
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from aegis_hidden.config import Config
from aegis_hidden.mixing import read_trace
from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)

pytestmark = pytest.mark.integration

LAMBDA = 2.0  # the balanced profile's λ
BURST = 4  # the balanced profile's most cells per slot
CELL = Config().mixing.cell_size
TRACE = "cells.jsonl"
EXCHANGE = 45.0  # seconds of traffic once every link is up
SETTLE = 3.0  # seconds of each link's trace dropped at its start (handshake flights)
P_MIN = 0.01


LOOP_RATE = 0.5  # λ_L of the balanced nodes here: enough loops in EXCHANGE seconds


def _node(net: TorNetwork, name: str, root: Path, profile: str) -> NodeProcess:
    port = free_ports(1)[0]
    mixing: dict[str, Any] = {"profile": profile, "trace_file": TRACE}
    if profile == "balanced":
        mixing["loop_rate"] = LOOP_RATE
    return prepare_node(net, name, root / name, extra={
        "api": {"enabled": True, "listen_address": f"127.0.0.1:{port}"},
        "mixing": mixing})


def _api_port(node: NodeProcess) -> int:
    import yaml

    cfg = yaml.safe_load((node.data_dir / "node.yaml").read_text())
    return int(cfg["api"]["listen_address"].rsplit(":", 1)[1])


def _request(node: NodeProcess, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
    token = (node.data_dir / "api_token").read_text().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{_api_port(node)}{path}", data=data,
                                 method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def call(node: NodeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    code, raw = _request(node, method, path, body)
    return code, json.loads(raw or b"null")


def api_up(node: NodeProcess) -> bool:
    try:
        return call(node, "GET", "/api/network/status")[0] == 200
    except (OSError, ValueError):
        return False


def metrics(node: NodeProcess) -> dict[str, float]:
    text = _request(node, "GET", "/metrics")[1].decode()
    return {name: float(value) for name, _, value in
            (line.partition(" ") for line in text.splitlines() if line and line[0] != "#")}


def connected(node: NodeProcess, peer: NodeProcess) -> bool:
    """The node has an authenticated session with ``peer`` (its API says so)."""
    status, body = call(node, "GET", "/api/network/peers")
    return status == 200 and any(p["address"] == peer.onion and p["status"] == "connected"
                                 for p in body["peers"])


@pytest.fixture(scope="module")
def mixnet(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[list[NodeProcess], list[NodeProcess]]]:
    root = tmp_path_factory.mktemp("mixing")
    balanced = [_node(tor_network, n, root, "balanced") for n in ("a", "b", "c")]
    off = [_node(tor_network, n, root, "off") for n in ("d", "e")]
    everyone = balanced + off
    for n in everyone:  # all at once: the five tors bootstrap side by side
        start_node(n, api=True)
    try:
        for n in everyone:
            wait_for(lambda n=n: n.tor_state().get("ready") and api_up(n), 240,
                     f"{n.name} ready", everyone)
        yield balanced, off
    finally:
        for n in everyone:
            n.stop()


def _ring(group: list[NodeProcess]) -> list[tuple[NodeProcess, NodeProcess]]:
    """a -> b -> c -> a (or d -> e -> d): each node adds and messages the next."""
    return [(group[k], group[(k + 1) % len(group)]) for k in range(len(group))]


def _write_gaps(rows: list[dict[str, Any]]) -> list[list[float]]:
    """Per link: the gaps between the link's writes (cells written at one instant
    are one write), the first SETTLE seconds of the link dropped."""
    writes: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["dir"] == "out":
            writes[str(r["link"])].append(float(r["t"]))
    out = []
    for times in writes.values():
        start = min(times)
        slots = sorted({t for t in times if t >= start + SETTLE})
        gaps = [b - a for a, b in itertools.pairwise(slots)]
        if len(gaps) >= 20:
            out.append(gaps)
    return out


def _cells_per_write(group: list[NodeProcess], trace: Any) -> list[int]:
    """Cells in each write (cells written by one link at one instant) after SETTLE."""
    out: list[int] = []
    for n in group:
        writes: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
        for r in trace(n):
            if r["dir"] == "out":
                writes[str(r["link"])][float(r["t"])] += 1
        for per_time in writes.values():
            start = min(per_time)
            out += [k for t, k in per_time.items() if t >= start + SETTLE]
    return out


def test_balanced_links_write_on_a_poisson_schedule_and_off_links_do_not(
        mixnet: tuple[list[NodeProcess], list[NodeProcess]]) -> None:
    balanced, off = mixnet
    everyone = balanced + off
    pairs = _ring(balanced) + _ring(off)
    for me, peer in pairs:
        status, body = call(me, "POST", "/api/network/peers",
                            {"action": "add", "peer_address": peer.onion})
        assert status in (200, 201), body
    # a first message dials each link; the sessions are up once it is acknowledged
    for me, peer in pairs:
        status, sent = call(me, "POST", "/api/network/send",
                            {"target": peer.onion, "message": {"type": "chat", "data": "hi"}})
        assert status == 202, sent
    wait_for(lambda: all(connected(me, peer) for me, peer in pairs), 240,
             "every link established", everyone)

    # Traffic: each node messages its next peer at Poisson times, ~0.5 message/s.
    rng = random.Random(11)
    due = {id(me): time.monotonic() + rng.expovariate(0.5) for me, _ in pairs}
    end = time.monotonic() + EXCHANGE
    sent_count = 0
    while time.monotonic() < end:
        for me, peer in pairs:
            if time.monotonic() >= due[id(me)]:
                status, body = call(me, "POST", "/api/network/send", {
                    "target": peer.onion,
                    "message": {"type": "chat", "data": f"m{sent_count}"}})
                assert status == 202, body
                sent_count += 1
                due[id(me)] = time.monotonic() + rng.expovariate(0.5)
        time.sleep(0.05)

    # Observability in a running node: profile in status, cover counted in /metrics.
    for n in balanced:
        status, st = call(n, "GET", "/api/network/status")
        assert st["mixing"]["profile"] == "balanced" and st["mixing"]["cover_traffic"]
        m = metrics(n)
        assert m["aegis_mixing_cover_cells_sent_total"] > 0
        assert m["aegis_mixing_cover_cells_received_total"] > 0
        # loop cover through the peers over Tor: loops come back, round trips measured
        assert st["mixing"]["loop_cover"] and st["mixing"]["loop_rate"] == LOOP_RATE
        returned = m["aegis_mixing_loops_returned_total"]
        assert m["aegis_mixing_loops_sent_total"] > 0 and returned > 0, m
        assert m["aegis_mixing_loops_lost_total"] == 0, m
        assert m["aegis_mixing_loop_rtt_seconds_count"] == returned
        assert m["aegis_loops_answered_total"] > 0, m
        print(f"\nloops: {m['aegis_mixing_loops_sent_total']:g} sent, {returned:g} back, "
              f"mean round trip {m['aegis_mixing_loop_rtt_seconds_sum'] / returned:.2f} s")
    for n in off:
        m = metrics(n)
        assert m["aegis_mixing_cover_cells_sent_total"] == 0
        assert m["aegis_mixing_cover_cells_received_total"] == 0

    for n in everyone:  # a clean stop flushes and closes the trace
        n.stop()
        assert n.stopped_cleanly(), n.log_tail()

    def trace(n: NodeProcess) -> list[dict[str, Any]]:
        with open(n.data_dir / TRACE, encoding="utf-8") as f:
            return read_trace(f)

    results: dict[str, tuple[int, int, float]] = {}
    for name, group in (("balanced", balanced), ("off", off)):
        rows = [r for n in group for r in trace(n)]
        assert rows, f"no trace from the {name} nodes"
        # every frame is whole cells of one size, in both directions
        assert {r["size"] for r in rows} == {CELL}, name
        per_write = _cells_per_write(group, trace)
        multi = sum(1 for k in per_write if k > 1)
        links = [g for n in group for g in _write_gaps(trace(n))]
        pooled = [x for g in links for x in g]
        p = float(stats.kstest(pooled, "expon", args=(0, 1 / LAMBDA)).pvalue)
        per_link = [float(stats.kstest(g, "expon", args=(0, 1 / LAMBDA)).pvalue)
                    for g in links]
        print(f"\n{name}: {len(links)} links, {len(pooled)} write gaps, mean gap "
              f"{sum(pooled) / max(len(pooled), 1):.3f} s (1/λ = {1 / LAMBDA}), "
              f"KS p vs Exp({LAMBDA}) pooled {p:.4g}, per link "
              + ", ".join(f"{q:.3g}" for q in per_link)
              + f"; {len(per_write)} writes after the handshake, {multi} of more than one "
              f"cell (at most {max(per_write, default=0)})")
        if name == "balanced":  # one cell per slot, a backlog at most `burst` per slot
            # Including the close at the node's stop: a session closing with cells
            # queued sends them at its slots, then the CLOSE in a slot of its own
            # (it once wrote the backlog and the CLOSE at once: 4 + 1 cells).
            assert max(per_write) <= BURST, per_write
        results[name] = (len(links), len(pooled), p)
    print(f"messages sent: {sent_count}")
    n_links, n_gaps, p_balanced = results["balanced"]
    assert n_links >= 6 and n_gaps >= 300, results  # 3 links, both ends
    assert p_balanced >= P_MIN, results
    assert results["off"][2] < P_MIN, results  # positive control
