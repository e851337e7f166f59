"""The /network WebSocket, in memory: autobahn client and server joined by iosim."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from aegis_hidden.api import Authorizer, EventsFactory, TokenChecker
from aegis_hidden.events import EventBus

TOKEN = "t0ken-t0ken-t0ken-t0ken"


class Client(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.opened = False
        self.closed_code: int | None = None

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed_code = code


@pytest.fixture
def reactor() -> Iterator[MemoryReactorClock]:
    """autobahn's timers go through txaio: point them at a memory reactor."""
    clock = MemoryReactorClock()
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = clock
    yield clock
    config.loop = previous


class Harness:
    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.bus = EventBus(now=reactor.seconds)
        self.failures = 0
        auth = Authorizer(TokenChecker(token=TOKEN), self._failed)
        self.factory = EventsFactory(self.bus, auth, "node.onion", reactor=reactor)
        self.factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        self.pumps: list[iosim.IOPump] = []

    def _failed(self) -> None:
        self.failures += 1

    def connect(self, headers: dict[str, str] | None = None, query: str = "") -> Client:
        server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        cf = WebSocketClientFactory(f"ws://127.0.0.1:8470/network{query}",
                                    headers=headers or {}, reactor=self.reactor)
        cf.protocol = Client
        cf.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        client = cf.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8470))
        assert isinstance(client, Client)
        pump = iosim.connect(server, iosim.makeFakeServer(server),
                             client, iosim.makeFakeClient(client))
        self.pumps.append(pump)
        self.flush()
        return client

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()


@pytest.fixture
def ws(reactor: MemoryReactorClock) -> Harness:
    return Harness(reactor)


def test_events_fan_out_as_json_with_type(ws: Harness) -> None:
    clients = [ws.connect({"Authorization": f"Bearer {TOKEN}"}) for _ in range(5)]
    assert all(c.opened for c in clients)
    assert all(c.messages == [{"type": "hello", "node": "node.onion", "seq": 0}]
               for c in clients)
    ws.bus.emit("peer_connected", peer="p.onion", transport="memory")
    ws.bus.emit("message_received", peer="p.onion", id="0" * 32,
                message={"type": "chat", "data": "hi"})
    ws.flush()
    for c in clients:
        types = [m["type"] for m in c.messages]
        assert types == ["hello", "peer_connected", "message_received"]
        assert c.messages[2]["message"] == {"type": "chat", "data": "hi"}
    assert len(ws.factory.clients) == 5


def test_token_in_query_parameter(ws: Harness) -> None:
    client = ws.connect(query=f"?access_token={TOKEN}")
    assert client.opened


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": f"Basic {TOKEN}"}])
def test_upgrade_without_the_token_is_denied(ws: Harness, headers: dict[str, str]) -> None:
    client = ws.connect(headers)
    assert not client.opened
    assert ws.failures == 1
    ws.bus.emit("peer_connected", peer="p.onion")
    ws.flush()
    assert client.messages == [] and not ws.factory.clients


def test_ping_pong_and_unsubscribe_on_close(ws: Harness) -> None:
    client = ws.connect({"Authorization": f"Bearer {TOKEN}"})
    client.sendMessage(json.dumps({"type": "ping", "data": 3}).encode())
    client.sendMessage(b"rubbish")
    ws.flush()
    assert client.messages[1] == {"type": "pong", "data": 3}
    assert client.messages[2]["type"] == "error"
    client.sendClose()
    ws.flush()
    assert not ws.factory.clients
    assert len(ws.bus._subscribers) == 1  # the factory's one subscription, for everyone
    ws.factory.stop()
    assert ws.bus._subscribers == []


def test_slow_client_is_dropped(ws: Harness) -> None:
    """A client that reads nothing is cut off after max_strikes checks, not at once."""
    ws.factory.max_buffered = 10_000
    client = ws.connect({"Authorization": f"Bearer {TOKEN}"})
    server = next(iter(ws.factory.clients))
    transport: Any = server.transport
    for i in range(100):  # no flush: the client reads nothing
        ws.bus.emit("delivery_state", id=str(i), state="sent", pad="x" * 500)
    assert not transport.disconnecting
    for _ in range(ws.factory.max_strikes):
        ws.reactor.advance(ws.factory.check_interval)
    assert transport.disconnecting or transport.disconnected
    assert not ws.factory.clients
    del client


def test_client_past_the_hard_limit_is_dropped_at_once(ws: Harness) -> None:
    ws.factory.hard_limit = 10_000
    ws.connect({"Authorization": f"Bearer {TOKEN}"})
    server = next(iter(ws.factory.clients))
    transport: Any = server.transport
    for i in range(100):
        ws.bus.emit("delivery_state", id=str(i), state="sent", pad="x" * 500)
        if transport.disconnecting:
            break
    assert transport.disconnecting and i < 99


@pytest.mark.parametrize(("auth", "status"), [(True, b"101"), (False, b"401")])
def test_upgrade_through_the_web_tree(reactor: MemoryReactorClock, tmp_path: Path,
                                      auth: bool, status: bytes) -> None:
    """The real Site: /network upgrades with the token and answers 401 without it."""
    from twisted.internet.testing import StringTransport

    from aegis_hidden.api import build_site

    from .test_api import Api

    api = Api(tmp_path)
    site = build_site(api.a, TokenChecker(api.token_path), 4096, reactor)
    proto = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5))
    transport: Any = StringTransport()
    transport.protocol = proto  # autobahn hands the transport over to its protocol
    proto.makeConnection(transport)
    head = ("GET /network HTTP/1.1\r\nHost: 127.0.0.1:8470\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n")
    if auth:
        head += f"Authorization: Bearer {api.token}\r\n"
    proto.dataReceived((head + "\r\n").encode())
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 " + status), out[:100]
    if auth:
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in out  # RFC 6455's example accept key
        api.a.events.emit("peer_connected", peer="x")
        frames = transport.value()[len(out):]
        assert b'"peer_connected"' in frames
