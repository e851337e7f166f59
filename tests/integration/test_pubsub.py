"""Topic pub/sub on the private Tor network: 6 ``twistd aegis-hidden`` nodes (real processes).

Each node knows one bootstrap node only (for the DHT) and finds the topic's mesh
through the DHT rendezvous. Every node publishes one message; every other node
must deliver it exactly once. Driven through each node's REST API on loopback
(no reactor in this file). Prints publish-to-all-delivered latencies.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aegis_hidden.cli._common import CLIError
from aegis_hidden.testing import TorNetwork, wait_for

from .test_dht import Api, dht_nodes

pytestmark = pytest.mark.integration

N = 6
TOPIC = "integration/news"


@pytest.fixture(scope="module", params=["off", "balanced"])
def nodes(request: pytest.FixtureRequest, tor_network: TorNetwork,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Api]]:
    """6 nodes on one mixing profile: ``off`` (cells at once) and ``balanced`` (Poisson
    slots with cover, relayed anonymous traffic through the mix pool)."""
    root = tmp_path_factory.mktemp(f"pubsub-{request.param}")
    with dht_nodes(tor_network, root, "p", N, mixing=request.param) as apis:
        yield apis


def _topic(api: Api) -> dict[str, Any] | None:
    try:
        code, body = api.call("GET", "/api/network/topics", timeout=10)
    except (CLIError, OSError):
        return None
    if code != 200:
        return None
    for t in body["topics"]:
        if t["topic"] == TOPIC:
            return dict(t)
    return None


def _dht_joined(api: Api) -> bool:
    stats = api.stats()
    return bool(stats) and stats["records"]["own_stored_at"] >= 1


def test_every_subscriber_gets_every_message_once(nodes: list[Api],
                                                  request: pytest.FixtureRequest) -> None:
    profile = request.node.callspec.params["nodes"]
    procs = [a.node for a in nodes]
    started = time.monotonic()
    for api in nodes[1:]:
        wait_for(lambda api=api: _dht_joined(api), 300, f"{api.node.name} to join the DHT",
                 procs, interval=2)
    print(f"\n{N} nodes joined the DHT in {time.monotonic() - started:.0f}s")
    # the DHT's lookups left sessions between the nodes: close them all (isolate, then
    # resume), so the subscribers find each other through the topic's rendezvous
    for api in nodes:
        code, body = api.call("POST", "/api/node/isolate", {"reason": "pubsub test"})
        assert code == 200, body
    for api in nodes:
        code, body = api.call("POST", "/api/node/resume", {})
        assert code == 200, body
    sessions = {a.node.name: a.call("GET", "/api/network/status")[1]["counts"]["connected"]
                for a in nodes}
    print(f"sessions after isolate/resume: {sessions}")

    t0 = time.monotonic()
    for api in nodes:
        code, body = api.call("POST", "/api/network/topics",
                              {"action": "subscribe", "topic": TOPIC})
        assert code == 200, body
    for api in nodes:
        wait_for(lambda api=api: bool((_topic(api) or {}).get("mesh")), 240,
                 f"{api.node.name} to have mesh peers", procs, interval=1)
    meshes = {a.node.name: len((_topic(a) or {})["mesh"]) for a in nodes}
    print(f"meshes formed in {time.monotonic() - t0:.0f}s: mesh sizes {meshes}")

    latencies: list[float] = []
    for i, sender in enumerate(nodes):
        before = {a.node.name: (_topic(a) or {})["messages_in"] for a in nodes}
        t0 = time.monotonic()
        code, sent = sender.call("POST", "/api/network/send", {
            "target": f"topic:{TOPIC}", "message": {"type": "chat", "data": f"from {i}"}})
        assert code == 202 and sent["state"] == "published", sent
        others = [a for a in nodes if a is not sender]

        def all_delivered(others: list[Api] = others, before: dict[str, int] = before) -> bool:
            return all((_topic(a) or {}).get("messages_in", -1) > before[a.node.name]
                       for a in others)

        wait_for(all_delivered, 180, f"message {i} to reach every subscriber", procs,
                 interval=0.02)
        latencies.append(time.monotonic() - t0)

    time.sleep(15)  # late duplicates would show up as extra deliveries
    for api in nodes:
        t = _topic(api)
        assert t is not None
        assert (t["messages_in"], t["messages_out"]) == (N - 1, 1), (api.node.name, t)
    print(f"mixing profile {profile}: "
          f"publish-to-all-delivered latency over {N} messages ({N - 1} subscribers each, "
          f"API polled every 0.02 s): median {statistics.median(latencies):.2f}s, "
          f"min {min(latencies):.2f}s, max {max(latencies):.2f}s; "
          f"all: {', '.join(f'{x:.2f}' for x in latencies)}")
