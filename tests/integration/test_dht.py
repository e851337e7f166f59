"""The DHT on the private Tor network: 8 ``twistd aegis-hidden`` nodes (real processes).

Every node uses the network's client tor in connect mode, each with its own
onion service, and knows one bootstrap node only. Driven through each node's
REST API on loopback (no reactor in this file). Prints the lookup latencies.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.cli._api import ApiClient
from aegis_hidden.cli._common import CLIError
from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)

pytestmark = pytest.mark.integration

N = 8


class Api:
    def __init__(self, node: NodeProcess, port: int) -> None:
        self.node = node
        self.address = f"127.0.0.1:{port}"

    def call(self, method: str, path: str, body: Any = None, timeout: float = 180
             ) -> tuple[int, Any]:
        token = (self.node.data_dir / "api_token").read_text().strip()
        return ApiClient(self.address, token, timeout).call(method, path, body)

    def stats(self) -> dict[str, Any]:
        try:
            code, body = self.call("GET", "/api/network/dht", timeout=10)
        except (CLIError, OSError):
            return {}
        return body if code == 200 and isinstance(body, dict) else {}


@contextmanager
def dht_nodes(tor_network: TorNetwork, root: Path, prefix: str, count: int,
              mixing: str = "off", dht: dict[str, Any] | None = None,
              check_logs: bool = True) -> Iterator[list[Api]]:
    """``count`` nodes sharing the private network's client tor (connect mode), each
    with its API; all but the first know only the first as bootstrap node. Stopped at
    the end; with ``check_logs``, a cleanly stopped node must have logged nothing
    critical."""
    ports = free_ports(count)
    control = f"127.0.0.1:{tor_network.client.control_port}"
    apis: list[Api] = []
    first_onion: str | None = None
    for i in range(count):
        node = prepare_node(
            tor_network, f"{prefix}{i}", root / f"{prefix}{i}",
            bootstrap=[first_onion] if first_onion else [],
            extra={"tor": {"mode": "connect", "control_port": control},
                   "api": {"enabled": True, "listen_address": f"127.0.0.1:{ports[i]}"},
                   "mixing": {"profile": mixing},
                   "dht": {"maintenance_interval": 5, "request_timeout": 30, **(dht or {})}})
        first_onion = first_onion or node.onion
        apis.append(Api(node, ports[i]))
    try:
        for api in apis:
            start_node(api.node, api=True)
        yield apis
    finally:
        for api in apis:
            api.node.stop()
        for api in apis if check_logs else []:
            if api.node.stopped_cleanly():
                log = api.node.log_file.read_text(errors="replace")
                assert "#critical]" not in log, api.node.log_tail(40)


@pytest.fixture(scope="module")
def nodes(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[list[Api]]:
    with dht_nodes(tor_network, tmp_path_factory.mktemp("dht"), "n", N) as apis:
        yield apis


def _published(api: Api) -> bool:
    stats = api.stats()
    return bool(stats) and stats["records"]["own_stored_at"] >= 1


def test_dht_on_the_private_tor_network(nodes: list[Api]) -> None:
    procs = [a.node for a in nodes]
    started = time.monotonic()
    for api in nodes[1:]:
        wait_for(lambda api=api: _published(api), 300, f"{api.node.name} to publish its record",
                 procs, interval=2)
    joined = time.monotonic() - started

    # each knew one bootstrap node; each comes to know all, a contact entering a table
    # only once it answered that node (reachability check, lookup answer)
    def full() -> bool:
        return all(s and s["routing_table"]["contacts"] == N - 1
                   for s in (a.stats() for a in nodes))

    wait_for(full, 180, "every routing table to hold the 7 others", procs, interval=2)
    filled = time.monotonic() - started
    stats = [a.stats() for a in nodes]
    sizes = [s["routing_table"]["contacts"] for s in stats]
    # cold: each node's first lookup (its bootstrap, every contact dialled afresh)
    cold = [s["lookups"]["recent"][0]["seconds"] for s in stats[1:] if s["lookups"]["recent"]]
    print(f"\n{N} nodes published their identity records in {joined:.0f}s; "
          f"routing tables full in {filled:.0f}s; sizes {sizes}")
    assert sizes == [N - 1] * N

    # every node finds every other's identity record (looked up in the network)
    asker = nodes[-1]
    first: list[float] = []
    for other in nodes[:-1]:
        t0 = time.monotonic()
        code, record = asker.call("GET", f"/api/network/dht/records/{other.node.onion}"
                                  "?source=network")
        first.append(time.monotonic() - t0)
        assert code == 200, record
        assert record["publisher"] == other.node.onion and record["name"] == "identity"
    warm: list[float] = []
    for other in nodes[:-1]:
        t0 = time.monotonic()
        code, _ = asker.call("GET", f"/api/network/dht/records/{other.node.onion}"
                             "?source=network")
        warm.append(time.monotonic() - t0)
        assert code == 200
    for api in nodes[:-1]:  # and each node the last one's
        code, record = api.call("GET", f"/api/network/dht/records/{asker.node.onion}")
        assert code == 200 and record["publisher"] == asker.node.onion

    # a peer never configured anywhere but learnt through the DHT gets a message
    sender, target = nodes[6], nodes[3]
    code, sent = sender.call("POST", "/api/network/send", {
        "target": target.node.onion, "message": {"type": "chat", "data": "via the DHT"}})
    assert code == 202, sent

    def acknowledged() -> bool:
        code, state = sender.call("GET", f"/api/network/messages/{sent['id']}", timeout=10)
        return code == 200 and state["state"] == "acknowledged"

    t0 = time.monotonic()
    wait_for(acknowledged, 120, "the message to be acknowledged", procs, interval=1)
    print(f"message to a peer learnt through the DHT acknowledged in "
          f"{time.monotonic() - t0:.1f}s")

    # per-request round trips over all 8 nodes, before any is killed
    rtt = {kind: [x for a in nodes for x in a.stats()["rpc_seconds"][kind]["samples"]]
           for kind in ("warm", "cold")}

    # peer exchange ran over the open sessions, and contacts were checked before trusted
    pex = [a.stats()["exchange"] for a in nodes]
    checks = [a.stats()["candidates"] for a in nodes]
    totals = {k: sum(p[k] for p in pex) for k in (
        "offers_sent", "offers_taken", "records_offered", "records_accepted",
        "records_refused", "offers_over_rate")}
    checked = {k: sum(c[k] for c in checks) for k in (
        "queued", "trusted", "checked_by_lookup", "unreachable", "dropped", "waiting")}
    print(f"peer exchange over all {N} nodes: {totals}")
    print(f"reachability checks over all {N} nodes: {checked}")
    assert max(p["records_accepted"] for p in pex) > 0, pex
    assert totals["records_refused"] == 0 and totals["offers_over_rate"] == 0, pex
    # every node but the first was a candidate at the bootstrap node until it was checked
    assert checks[0]["queued"] >= N - 1, checks[0]
    assert checked["trusted"] + checked["checked_by_lookup"] >= N - 1, checks

    # 3 nodes killed: lookups still succeed (their records too: holders keep them)
    for api in nodes[4:7]:
        assert api.node.proc is not None
        api.node.proc.kill()
        api.node.proc.wait(10)
    after: list[float] = []
    survivor = nodes[1]
    for other in nodes:
        t0 = time.monotonic()
        code, record = survivor.call("GET", f"/api/network/dht/records/{other.node.onion}"
                                     "?source=network")
        after.append(time.monotonic() - t0)
        assert code == 200, (other.node.name, record)
        assert record["publisher"] == other.node.onion
    crawl_code, crawl = survivor.call("POST", "/api/network/dht/crawl", {"max_nodes": 50})
    assert crawl_code == 200
    assert crawl["reachable"] == N - 3 - 1, crawl  # every survivor but the crawler itself

    def line(name: str, xs: list[float]) -> str:
        return (f"  {name:<38} n={len(xs):<2} median {statistics.median(xs):6.2f}s  "
                f"min {min(xs):6.2f}s  max {max(xs):6.2f}s")

    print("DHT lookup latency on the private Tor network (client tor shared, k=20, "
          "alpha=3, d=4, quorum=3):")
    if cold:
        print(line("cold (bootstrap self-lookup)", cold))
    print(line("first value lookup per target", first))
    print(line("warm value lookup (same targets)", warm))
    print(line("value lookup with 3 of 8 nodes killed", after))
    print(f"  crawl from {survivor.node.name}: {crawl['reachable']} reachable, "
          f"{crawl['unreachable']} unreachable, {crawl['seconds']}s")
    print("DHT request round trips over all 8 nodes (aegis_dht_request_seconds; warm: "
          "session already open, cold: the pool dialled first):")
    for kind, xs in rtt.items():
        if not xs:
            print(f"  {kind}: no samples")
            continue
        xs = sorted(xs)
        logs = [math.log(max(x, 1e-6)) for x in xs]
        sigma = statistics.pstdev(logs) if len(logs) > 1 else 0.0
        print(f"  {kind:<4} n={len(xs):<4} median {statistics.median(xs):6.3f}s  "
              f"p95 {xs[math.ceil(0.95 * len(xs)) - 1]:6.3f}s  min {xs[0]:6.3f}s  "
              f"max {xs[-1]:6.3f}s  log-normal fit: median {math.exp(statistics.fmean(logs)):.3f}s "
              f"sigma {sigma:.3f}")
    # every node bootstrapped, published and looked up over open sessions, and 7 nodes
    # dialled at least their bootstrap node first
    assert len(rtt["warm"]) >= 5 * N, rtt
    assert len(rtt["cold"]) >= N - 1, rtt
