"""Topic pub/sub on the private Tor network: 6 ``twistd aegis-hidden`` nodes (real processes).

Each node knows one bootstrap node only (for the DHT) and finds the topic's mesh
through the DHT rendezvous. Every node publishes one message; every other node
must deliver it exactly once. Then, on other topics: delivery confirmations
from named subscribers; a subscriber killed and restarted catches up on what
was published while it was down, exactly once; a private topic's member reads
it and a subscriber without the key only relays it. Driven through each node's
REST API on loopback (no reactor in this file). Prints publish-to-all-delivered
and publish-to-all-confirmed latencies.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aegis_hidden.cli._common import CLIError
from aegis_hidden.testing import TorNetwork, start_node, wait_for

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


def _topic(api: Api, name: str = TOPIC) -> dict[str, Any] | None:
    try:
        code, body = api.call("GET", "/api/network/topics", timeout=10)
    except (CLIError, OSError):
        return None
    if code != 200:
        return None
    for t in body["topics"]:
        if t["topic"] == name:
            return dict(t)
    return None


def _count(api: Api, name: str, field: str) -> int:
    return int((_topic(api, name) or {}).get(field, -1))


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


LOG = "integration/log"
PRIVATE = "integration/private"


def _subscribe(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    code, answer = api.call("POST", "/api/network/topics", {"action": "subscribe", **body})
    assert code == 200, answer
    return dict(answer)


def test_confirmations_catch_up_and_a_private_topic(nodes: list[Api],
                                                    request: pytest.FixtureRequest) -> None:
    profile = request.node.callspec.params["nodes"]
    procs = [a.node for a in nodes]
    for api in nodes[1:]:
        wait_for(lambda api=api: _dht_joined(api), 300, f"{api.node.name} to join the DHT",
                 procs, interval=2)
    # -- delivery confirmations from named subscribers ---------------------------------
    for api in nodes:
        _subscribe(api, {"topic": LOG})
    for api in nodes:
        wait_for(lambda api=api: bool((_topic(api, LOG) or {}).get("mesh")), 240,
                 f"{api.node.name} to have mesh peers on {LOG}", procs, interval=1)
    sender, others = nodes[0], nodes[1:]
    named = [a.node.onion for a in others]
    delivered: list[float] = []
    confirmed: list[float] = []
    for i in range(3):
        before = {a.node.name: _count(a, LOG, "messages_in") for a in others}
        t0 = time.monotonic()
        code, sent = sender.call("POST", "/api/network/send", {
            "target": f"topic:{LOG}", "message": {"type": "log", "data": f"confirmed {i}"},
            "confirm_from": named})
        assert code == 202 and sent["confirm_from"] == named, sent
        wait_for(lambda before=before: all(_count(a, LOG, "messages_in") > before[a.node.name]
                                           for a in others),
                 180, f"log message {i} to reach every subscriber", procs, interval=0.02)
        delivered.append(time.monotonic() - t0)

        def states(mid: str = sent["id"]) -> dict[str, str]:
            for c in (_topic(sender, LOG) or {}).get("confirmations", []):
                if c["id"] == mid:
                    return dict(c["subscribers"])
            return {}

        wait_for(lambda: set(states().values()) == {"acknowledged"}, 180,
                 f"every named subscriber to confirm log message {i}", procs, interval=0.02)
        confirmed.append(time.monotonic() - t0)
        assert sorted(states()) == sorted(named)
    print(f"\nmixing profile {profile}: {len(named)} named subscribers; publish-to-all-"
          f"delivered {', '.join(f'{x:.2f}' for x in delivered)} s; publish-to-all-"
          f"confirmed {', '.join(f'{x:.2f}' for x in confirmed)} s (API polled every 0.02 s)")

    # -- a subscriber killed and restarted catches up, exactly once ---------------------
    victim = nodes[5]
    assert _count(victim, LOG, "messages_in") == 3
    victim.node.stop()
    missed = []
    for i in range(3):
        code, sent = sender.call("POST", "/api/network/send", {
            "target": f"topic:{LOG}", "message": {"type": "log", "data": f"missed {i}"}})
        assert code == 202, sent
        missed.append(sent["id"])
    up = [a.node for a in nodes if a is not victim]
    wait_for(lambda: all(_count(a, LOG, "messages_in") == 6 for a in nodes[1:5]), 180,
             "the missed messages to reach the subscribers that are up", up, interval=0.5)
    t0 = time.monotonic()
    start_node(victim.node, api=True)
    wait_for(lambda: _count(victim, LOG, "caught_up") >= 3, 420,
             f"{victim.node.name} to catch up after its restart", procs, interval=1)
    caught = time.monotonic() - t0
    time.sleep(45)  # the second catch-up round (35 s later) must not deliver again
    t = _topic(victim, LOG)
    assert t is not None
    # counters start at 0 with the process: 3 delivered, all by catch-up, none of the 3
    # delivered before the stop again (they are in every peer's history too)
    assert (t["messages_in"], t["caught_up"]) == (3, 3), t
    print(f"{victim.node.name} restarted; caught up on {t['caught_up']} messages "
          f"{caught:.0f} s after its start (tor, onion, DHT, mesh, catch-up)")

    # -- a private topic: a member reads it, a subscriber without the key only relays --
    creator, member, relay = nodes[0], nodes[1], nodes[3]
    made = _subscribe(creator, {"topic": PRIVATE, "private": True})
    assert made["private"] and made["created"]
    _subscribe(relay, {"topic": PRIVATE})
    code, invited = creator.call("POST", "/api/network/topics", {
        "action": "invite", "topic": PRIVATE, "peer": member.node.onion})
    assert code == 202, invited

    def invitation() -> bool:
        code, body = member.call("GET", "/api/network/topics", timeout=10)
        return code == 200 and any(i["topic"] == PRIVATE for i in body["invitations"])

    wait_for(invitation, 180, "the invitation to arrive", procs, interval=0.5)
    joined = _subscribe(member, {"topic": PRIVATE, "private": True})
    assert joined["accepted"] and joined["key_id"] == made["key_id"]
    for api in (creator, member, relay):
        wait_for(lambda api=api: bool((_topic(api, PRIVATE) or {}).get("mesh")), 240,
                 f"{api.node.name} to have mesh peers on {PRIVATE}", procs, interval=1)
    secret = "plaintext-only-members-may-read-4f1c"
    t0 = time.monotonic()
    code, sent = creator.call("POST", "/api/network/send", {
        "target": f"topic:{PRIVATE}", "message": {"type": "chat", "data": secret}})
    assert code == 202, sent
    wait_for(lambda: _count(member, PRIVATE, "messages_in") == 1, 180,
             "the member to read the private message", procs, interval=0.02)
    private_latency = time.monotonic() - t0
    wait_for(lambda: _count(relay, PRIVATE, "unreadable") >= 1, 180,
             "the relay to receive the sealed message", procs, interval=0.5)
    r = _topic(relay, PRIVATE)
    assert r is not None and r["messages_in"] == 0 and not r["private"], r
    for api in nodes:  # never logged, by members or not
        assert secret not in api.node.log_file.read_text(errors="replace")
    print(f"private topic: the member read the message {private_latency:.2f} s after it "
          f"was published; the relay got {r['unreadable']} sealed, delivered none")
