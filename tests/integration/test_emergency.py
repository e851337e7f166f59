"""Emergency controls end to end on the private Tor network (real processes).

Two nodes with their APIs on loopback, the default mixing profile. A's bandwidth
cap holds a bulk send under it; B isolated keeps A's message queued, and after
resume it arrives exactly once; A's tor restarted through the API comes back and
a message still gets through. Blocking HTTP, no reactor in this file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_hidden.config import Config
from aegis_hidden.testing import NodeProcess, TorNetwork, set_bootstrap, start_node, wait_for

from .test_api_tor import Events, _api_node, api_up, call, metrics

pytestmark = pytest.mark.integration
CELL = Config().mixing.cell_size
CAP = 2048  # bytes/s: a quarter of what one balanced link sends with a backlog


@pytest.fixture(scope="module")
def nodes(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    root: Path = tmp_path_factory.mktemp("emergency")
    a, b = _api_node(tor_network, "a", root), _api_node(tor_network, "b", root)
    set_bootstrap(a, [b.onion])
    for node in (a, b):
        start_node(node, api=True)
    try:
        wait_for(lambda: api_up(a) and api_up(b), 120, "both APIs", [a, b])
        wait_for(lambda: _connected(a, b) and _connected(b, a), 240, "a and b linked", [a, b])
        yield a, b
    finally:
        for node in (a, b):
            node.stop()
        for node in (a, b):
            assert "Traceback" not in node.log_file.read_text(), node.log_tail()


def _connected(node: NodeProcess, peer: NodeProcess) -> bool:
    return any(s["peer"] == peer.onion for s in call(node, "GET", "/api/network/status")[1]
               ["sessions"])


def _state(node: NodeProcess, msg_id: str) -> str:
    return str(call(node, "GET", f"/api/network/messages/{msg_id}")[1]["state"])


def _bulk(a: NodeProcess, b: NodeProcess, seconds: float) -> tuple[float, int, int]:
    """Send 4 KiB messages a -> b for ``seconds`` as fast as the API takes them;
    returns (a's cells sent per second * cell size, accepted, refused with 503)."""
    start_cells = metrics(a)["aegis_mixing_cells_sent_total"]
    start = time.monotonic()
    accepted = refused = 0
    while time.monotonic() - start < seconds:
        code, reply = call(a, "POST", "/api/network/send",
                           {"target": b.onion, "message": {"type": "bulk", "data": "x" * 4096}})
        if code == 202:
            accepted += 1
        else:
            assert code == 503, reply  # backpressure: our own queue is full
            refused += 1
            time.sleep(0.5)
    cells = metrics(a)["aegis_mixing_cells_sent_total"] - start_cells
    return cells * CELL / (time.monotonic() - start), accepted, refused


def test_throttle_holds_a_bulk_send_under_the_cap(nodes: tuple[NodeProcess, NodeProcess]
                                                  ) -> None:
    a, b = nodes
    free, free_taken, free_refused = _bulk(a, b, 10)
    code, reply = call(a, "POST", "/api/node/throttle", {"bytes_per_second": CAP})
    assert code == 200 and reply["throttle"]["bytes_per_second"] == CAP
    capped, accepted, refused = _bulk(a, b, 20)
    print(f"\nbulk send a->b: {free:.0f} B/s uncapped ({free_taken} messages taken, "
          f"{free_refused} answered 503), {capped:.0f} B/s under a cap of {CAP} B/s "
          f"({accepted} taken, {refused} answered 503)")
    assert capped <= CAP
    assert capped >= 0.5 * CAP  # the cap is used, not just everything stopped
    assert free > CAP  # the cap did bind
    code, reply = call(a, "POST", "/api/node/throttle", {"bytes_per_second": 0})
    assert code == 200 and reply["throttle"]["bytes_per_second"] is None
    assert call(b, "GET", "/api/network/peers")[0] == 200
    peer = call(a, "GET", f"/api/network/peers/{b.onion}")[1]
    assert peer["status"] != "blocked" and peer["reputation"] >= 0.5  # backpressure is ours


def test_isolated_node_keeps_the_message_queued_until_resume(
        nodes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = nodes
    code, reply = call(b, "POST", "/api/node/isolate", {"reason": "integration test"})
    assert code == 200 and reply["isolated"]
    events = Events(b)
    try:
        wait_for(lambda: not _connected(a, b), 60, "a's session to b to close", [a, b])
        received = metrics(b)["aegis_messages_received_total"]
        code, sent = call(a, "POST", "/api/network/send", {
            "target": b.onion, "message": {"type": "chat", "data": "while isolated"}})
        assert code == 202
        time.sleep(15)
        assert _state(a, sent["id"]) in ("queued", "sent")
        assert metrics(b)["aegis_messages_received_total"] == received
        assert not call(b, "GET", "/api/network/status")[1]["sessions"]
    finally:
        code, reply = call(b, "POST", "/api/node/resume", {})
    assert code == 200 and not reply["isolated"]
    wait_for(lambda: _state(a, sent["id"]) == "acknowledged", 120, "delivery after resume",
             [a, b])
    time.sleep(3)
    try:  # exactly once (the bulk messages of the test before arrive too)
        assert len(events.find(type="message_received", id=sent["id"])) == 1
    finally:
        events.proc.terminate()
        events.proc.wait(10)


def test_restart_tor_and_a_message_still_gets_through(
        nodes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = nodes
    before = a.tor_state()
    code, reply = call(a, "POST", "/api/node/transports/tor/restart", {})
    assert (code, reply) == (202, {"transport": "tor", "restarting": True})
    wait_for(lambda: a.tor_state().get("restarts") == before.get("restarts", 0) + 1
             and a.tor_state().get("ready"), 150, "a's tor to come back", [a, b])
    assert a.tor_state()["pid"] != before["pid"]
    code, sent = call(a, "POST", "/api/network/send",
                      {"target": b.onion, "message": {"type": "chat", "data": "after restart"}})
    assert code == 202
    wait_for(lambda: _state(a, sent["id"]) == "acknowledged", 150, "delivery after restart",
             [a, b])
