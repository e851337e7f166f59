"""An I2P-only node (Tor disabled) on the private I2P network.

The node's service tree is built by ``aegis_hidden.tap`` exactly as ``twistd
aegis-hidden --no-tor --i2p`` would, in this process: it must start, publish
its destination (bound into its signed identity record), and a second node's
I2P provider must reach it: the peer hello completes both ways over I2P.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver

from aegis_hidden import tap
from aegis_hidden.i2p import CantReachPeer, Destination, I2PProvider
from aegis_hidden.identity import parse_record, verify_record
from aegis_hidden.node._bootstrap import HelloExchange, PeerReached
from aegis_hidden.testing import I2PNetwork

from .test_i2p_sam import SESSION_TIMEOUT, sleep, until, with_timeout

pytestmark = pytest.mark.integration
reactor: Any = _reactor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node(net: I2PNetwork, router: int, data_dir: Path) -> MultiService:
    config = data_dir.parent / f"{data_dir.name}.yaml"
    config.write_text(
        "i2p:\n"
        f"  sam_address: \"{net.routers[router].sam_address}\"\n"
        "  tunnel_length: 1\n"
        "  tunnel_quantity: 5\n")
    opts = tap.Options()
    opts.parseOptions(["-c", str(config), "-d", str(data_dir), "--no-tor", "--i2p", "--no-api",
                       "--listen-address", f"127.0.0.1:{_free_port()}"])
    node = tap.makeService(opts)
    assert isinstance(node, MultiService)
    return node


class HelloClient(LineOnlyReceiver):
    delimiter = b"\n"

    def __init__(self, exchange: HelloExchange) -> None:
        self.exchange = exchange
        self.reached: PeerReached | None = None

    def connectionMade(self) -> None:
        self.sendLine(self.exchange.start())

    def lineReceived(self, line: bytes) -> None:
        reply, reached = self.exchange.receive(line)
        if reply is not None:
            self.sendLine(reply)
        if reached is not None:
            self.reached = reached


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_i2p_only_node_publishes_its_destination_and_is_reached(
        i2p_network: I2PNetwork, tmp_path: Path) -> None:
    a_router, b_router = i2p_network.client_routers[-1], i2p_network.client_routers[0]
    a = _node(i2p_network, a_router, tmp_path / "a")
    b = _node(i2p_network, b_router, tmp_path / "b")
    a.startService()
    b.startService()
    try:
        a_i2p = a.getServiceNamed("i2p")
        b_i2p = b.getServiceNamed("i2p")
        assert isinstance(a_i2p, I2PProvider) and isinstance(b_i2p, I2PProvider)
        assert "tor" not in a.namedServices
        await with_timeout(a_i2p.when_ready(), SESSION_TIMEOUT, "node A's I2P", i2p_network)
        await with_timeout(b_i2p.when_ready(), SESSION_TIMEOUT, "node B's I2P", i2p_network)
        address = a_i2p.state()["address"]

        # published: the signed record on disk carries the destination of that address
        record = parse_record((tmp_path / "a" / "identity" / "record.bin").read_bytes())
        onion = a_i2p.identity.onion
        verify_record(record, onion, now=time.time())
        assert Destination.from_base64(record.i2p_destination).b32 == address

        # node B reaches node A over I2P; A's hello service answers through the forward
        exchange = HelloExchange(b_i2p.identity.onion, time.time, expected_peer=onion)
        client = HelloClient(exchange)
        deadline = time.monotonic() + 150
        while True:
            try:
                await b_i2p.client_endpoint(address, 0).connect(Factory.forProtocol(lambda: client))
                break
            except CantReachPeer:
                if time.monotonic() > deadline:
                    raise AssertionError(f"CANT_REACH_PEER\n{i2p_network.logs()}") from None
                await sleep(3)
        await until(lambda: client.reached is not None, 120, "the hello over I2P", i2p_network)
        assert client.reached is not None and client.reached.onion == onion

        # and A recorded B as a reachable peer (inbound), as for onion peers
        def a_saw_b() -> bool:
            try:
                status = json.loads((tmp_path / "a" / "status.json").read_text())
            except (OSError, ValueError):
                return False
            return b_i2p.identity.onion in status.get("peers", {})

        await until(a_saw_b, 30, "node A's status.json to list node B", i2p_network)
        status = json.loads((tmp_path / "a" / "status.json").read_text())
        assert status["transports"]["i2p"]["address"] == address
    finally:
        await maybeDeferred(a.stopService)
        await maybeDeferred(b.stopService)
        await Deferred.fromCoroutine(sleep(0.1))
