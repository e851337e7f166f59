"""The seed spec's JavaScript client against real nodes on the private Tor network.

Node B's operator runs the seed's example client (tests/integration/js/seed_client.js,
Node.js with the ``ws`` package that ``make setup`` installs from the npm registry)
against B's WebSocket, the token in the query as in the seed's URL shape. A adds B
and sends it a message through A's REST API. The client prints
``notification.peer_id`` on ``peer_connected`` (A's onion, not ``undefined``) and the
received message.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_hidden.testing import NodeProcess, TorNetwork, start_node, wait_for

from .test_api_tor import _api_node, _api_port, api_up, call, metrics

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("node") is None
        or not (Path(__file__).parent / "js" / "node_modules" / "ws").is_dir(),
        reason="needs node and the ws package (make setup: npm ci --prefix tests/integration/js)"),
]
CLIENT = Path(__file__).parent / "js" / "seed_client.js"


class SeedClient:
    """``node seed_client.js ws://.../network?access_token=TOKEN``, its lines collected."""

    def __init__(self, node: NodeProcess, count: int) -> None:
        before = metrics(node).get("aegis_events_clients", 0)
        token = (node.data_dir / "api_token").read_text().strip()
        url = f"ws://127.0.0.1:{_api_port(node)}/network?access_token={token}"
        self.proc = subprocess.Popen(["node", str(CLIENT), url, str(count)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: metrics(node).get("aegis_events_clients", 0) > before, 30,
                 f"the seed client of {node.name} to connect", [node])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))

    def collect(self) -> list[str]:
        while True:
            try:
                self.lines.append(self._q.get_nowait())
            except queue.Empty:
                return self.lines

    def starting(self, prefix: str) -> list[str]:
        return [line.removeprefix(prefix) for line in self.collect()
                if line.startswith(prefix)]


@pytest.fixture(scope="module")
def pair(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    root = tmp_path_factory.mktemp("seed-client-nodes")
    a, b = _api_node(tor_network, "a", root), _api_node(tor_network, "b", root)
    start_node(a, api=True)
    start_node(b, api=True)
    try:
        for n in (a, b):
            wait_for(lambda n=n: n.tor_state().get("ready"), 240, f"{n.name} ready", [a, b])
            wait_for(lambda n=n: api_up(n), 60, f"{n.name}'s API", [a, b])
        yield a, b
    finally:
        for n in (a, b):
            n.stop()


def test_seed_javascript_client_prints_peer_id_and_message(
        pair: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = pair
    client = SeedClient(b, count=1)
    try:
        status, body = call(a, "POST", "/api/network/peers",
                            {"action": "add", "peer_address": b.onion})
        assert status == 200, body
        message = {"type": "chat", "data": "hello from the seed's client test"}
        status, sent = call(a, "POST", "/api/network/send", {"target": b.onion,
                                                              "message": message})
        assert status == 202, sent
        received = wait_for(lambda: client.starting("Message from "), 240,
                            "B's seed client to print the message", [a, b])
        sender, _, text = received[0].partition(": ")
        assert sender == a.onion
        assert json.loads(text) == message
        connected = client.starting("Peer connected: ")
        assert connected and connected[0] == a.onion  # not "undefined"
        assert client.proc.wait(timeout=30) == 0
    finally:
        if client.proc.poll() is None:
            client.proc.kill()
        _, err = client.proc.communicate(timeout=10)
    assert "error" not in err.lower(), err
