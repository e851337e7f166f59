"""The management API end to end, on the private Tor network (real processes).

Node A's operator adds node B and sends it a message through A's REST API; B's
operator, following B's WebSocket events with ``aegis-hidden events``, receives
it; A's sees it acknowledged. Then B stops, A sends again, B comes back: the
message arrives exactly once. Driven with subprocesses and blocking HTTP (no
reactor in this file).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)

pytestmark = pytest.mark.integration


def _api_node(net: TorNetwork, name: str, root: Path) -> NodeProcess:
    port = free_ports(1)[0]
    return prepare_node(net, name, root / name,
                        extra={"api": {"enabled": True, "listen_address": f"127.0.0.1:{port}"}})


def _api_port(node: NodeProcess) -> int:
    import yaml

    cfg = yaml.safe_load((node.data_dir / "node.yaml").read_text())
    return int(cfg["api"]["listen_address"].rsplit(":", 1)[1])


def call(node: NodeProcess, method: str, path: str, body: Any = None,
         token: str | None = None) -> tuple[int, Any]:
    if token is None:
        token = (node.data_dir / "api_token").read_text().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{_api_port(node)}{path}", data=data,
                                 method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def api_up(node: NodeProcess) -> bool:
    try:
        return call(node, "GET", "/api/network/status")[0] == 200
    except (OSError, ValueError):  # not listening yet, or the token file not written yet
        return False


def metrics(node: NodeProcess) -> dict[str, float]:
    """The node's Prometheus counters and gauges without labels."""
    token = (node.data_dir / "api_token").read_text().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{_api_port(node)}/metrics",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


class Events:
    """``aegis-hidden events`` for a node, its JSON lines collected by a thread."""

    def __init__(self, node: NodeProcess) -> None:
        before = metrics(node).get("aegis_events_clients", 0)
        exe = str(Path(sys.executable).with_name("aegis-hidden"))
        self.proc = subprocess.Popen(
            [exe, "events", "--config", str(node.data_dir / "node.yaml"),
             "--data-dir", str(node.data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.seen: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        # subscribed once the node counts one more WebSocket client
        wait_for(lambda: metrics(node).get("aegis_events_clients", 0) > before, 30,
                 f"the events client of {node.name} to subscribe", [node])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(json.loads(line))

    def collect(self) -> list[dict[str, Any]]:
        while True:
            try:
                self.seen.append(self._q.get_nowait())
            except queue.Empty:
                return self.seen

    def find(self, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.collect()
                if all(e.get(k) == v for k, v in match.items())]

    def close(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err.decode(errors="replace")


@pytest.fixture(scope="module")
def pair(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    root = tmp_path_factory.mktemp("api-nodes")
    a, b = _api_node(tor_network, "a", root), _api_node(tor_network, "b", root)
    start_node(a, api=True)
    start_node(b, api=True)
    try:
        for n in (a, b):
            wait_for(lambda n=n: n.tor_state().get("ready"), 240, f"{n.name} ready", [a, b])
            wait_for(lambda n=n: api_up(n), 60,
                     f"{n.name}'s API", [a, b])
        yield a, b
    finally:
        for n in (a, b):
            n.stop()


def test_token_is_required(pair: tuple[NodeProcess, NodeProcess]) -> None:
    a, _ = pair
    assert call(a, "GET", "/api/network/peers", token="wrong")[0] == 401
    status, body = call(a, "GET", "/api/network/status")
    assert status == 200 and body["identity"]["onion"] == a.onion


def test_message_through_the_api_and_redelivery_after_restart(
        pair: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = pair
    a_events, b_events = Events(a), Events(b)
    try:
        status, body = call(a, "POST", "/api/network/peers",
                            {"action": "add", "peer_address": b.onion})
        assert status in (200, 201), body
        status, peers = call(a, "GET", "/api/network/peers")
        assert status == 200 and b.onion in [p["address"] for p in peers["peers"]]

        message = {"type": "chat", "data": "hello b, from a, over an onion"}
        status, sent = call(a, "POST", "/api/network/send", {"target": b.onion,
                                                              "message": message})
        assert status == 202, sent
        first = sent["id"]
        got = wait_for(lambda: b_events.find(type="message_received", id=first), 240,
                       "B's operator to receive the message", [a, b])
        assert got[0]["message"] == message and got[0]["peer"] == a.onion
        wait_for(lambda: a_events.find(type="delivery_state", id=first, state="acknowledged"),
                 120, "A's operator to see the acknowledgement", [a, b])
    finally:
        b_err = b_events.close()
        a_events.close()
    assert "Traceback" not in b_err

    # B goes away; A's message waits in A's outbox; B comes back; it arrives once.
    assert b.stop() is not None and b.stopped_cleanly()
    a_events = Events(a)
    try:
        second = {"type": "chat", "data": "sent while you were away"}
        status, sent = call(a, "POST", "/api/network/send", {"target": b.onion,
                                                              "message": second})
        assert status == 202 and sent["state"] in ("queued", "sent"), sent
        msg_id = sent["id"]
        time.sleep(5)  # A tries, B is not there
        start_node(b, api=True)
        wait_for(lambda: b.tor_state().get("ready") and api_up(b), 240, "B back", [a, b])
        b_events = Events(b)
        try:
            wait_for(lambda: a_events.find(type="delivery_state", id=msg_id,
                                           state="acknowledged"), 300,
                     "the queued message to be acknowledged after B's restart", [a, b])
            time.sleep(10)  # any duplicate delivery would have happened by now
            # B's counters started at zero when it restarted: exactly one message was
            # handed to B's application since, and it is this one.
            counters = metrics(b)
            assert counters.get("aegis_messages_received_total") == 1, counters
            copies = [e for e in b_events.collect()
                      if e["type"] == "message_received" and e.get("id") == msg_id]
            assert len(copies) <= 1  # the client may have subscribed after the delivery
        finally:
            b_events.close()
    finally:
        a_events.close()
