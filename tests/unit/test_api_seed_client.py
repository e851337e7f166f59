"""The seed spec's JavaScript client (tests/integration/js/seed_client.js), run by the
real ``node`` with the ``ws`` package against an API on 127.0.0.1 over a fake
network (no tor): it prints a real ``peer_id`` and the received message.
The same client runs against real nodes in
tests/integration/test_seed_client.py.

The API runs in a child process (``python -m tests.unit.test_api_seed_client DIR``)
with the real reactor, so this test process never touches the global reactor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JS = REPO / "tests" / "integration" / "js"
MESSAGE = {"type": "chat", "data": {"text": "hello from B", "n": [1, 2]}}

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (JS / "node_modules" / "ws").is_dir(),
    reason="needs node and `npm install --prefix tests/integration/js` (make setup)")


def serve(root: Path) -> None:  # pragma: no cover - runs in the child process
    from typing import Any

    from twisted.internet import reactor as global_reactor
    from twisted.internet.task import LoopingCall

    from aegis_hidden.api import TokenChecker, build_site
    from aegis_hidden.testing import result_of

    from .test_api import Api

    reactor: Any = global_reactor
    api = Api(root)
    site = build_site(api.a, TokenChecker(api.token_path), 1 << 20, reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    resource: Any = site.resource
    factory = resource.children[b"network"]._factory
    print(json.dumps({"port": port.getHost().port, "token": api.token}), flush=True)

    def when_connected() -> None:
        if not factory.clients:
            return
        poll.stop()
        a = api.a.local_address
        result_of(api.b.store.add(a))
        result_of(api.b.send(a, MESSAGE))  # B dials A, A's events: peer_connected, message

    poll = LoopingCall(when_connected)
    poll.start(0.05)
    reactor.callLater(60, reactor.stop)
    reactor.run()


@needs_node
def test_seed_javascript_client_prints_peer_id_and_message(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-m", "tests.unit.test_api_seed_client",
                               str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        url = f"ws://127.0.0.1:{info['port']}/network?access_token={info['token']}"
        client = subprocess.run(["node", str(JS / "seed_client.js"), url, "1"],
                                capture_output=True, text=True, timeout=60)
    finally:
        server.kill()
        _, err = server.communicate()
    out = client.stdout
    assert client.returncode == 0, (out, client.stderr, err[-2000:])
    lines = out.splitlines()
    connected = [line for line in lines if line.startswith("Peer connected: ")]
    assert connected, out
    peer = connected[0].removeprefix("Peer connected: ")
    assert peer != "undefined" and peer.endswith(".onion") and len(peer) == 62
    (received,) = [line for line in lines if line.startswith("Message from ")]
    sender, _, text = received.removeprefix("Message from ").partition(": ")
    assert sender == peer
    assert json.loads(text) == MESSAGE


if __name__ == "__main__":  # pragma: no cover
    serve(Path(sys.argv[1]))
