"""No API token and no peer address in the node's log.

A real WebSocket upgrade: autobahn's client against the node's real ``Site``
(the web tree ``make_api_service`` serves), joined in memory by iosim. Every log
event goes to the observer twistd writes ``node.log`` with (a text file
observer on the global log publisher, every level, the legacy ``log.msg``
bridge included, which carries twisted.web's access log), and the node's
library log level is set to ``debug``: the worst case, an operator who asked
for debug output.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher, textFileLogObserver
from twisted.test import iosim
from twisted.web.server import Site

from aegis_hidden import tap
from aegis_hidden.api import EventsProtocol, TokenChecker, build_site
from aegis_hidden.api._events import LIBRARY_DEBUG_ENV
from aegis_hidden.api._web import access_log_path

from .test_api import Api, onion


class Client(WebSocketClientProtocol):
    # The test's client is not the node: its own debug lines (its request, with the
    # token) would be in the test's log, not in node.log. Keep them out.
    log = txaio.make_logger(level="error")  # type: ignore[attr-defined]

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []
        self.opened = False

    def onOpen(self) -> None:
        self.opened = True
        self.sendMessage(json.dumps({"type": "ping", "data": "hello"}).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append(json.loads(payload))


@pytest.fixture
def reactor() -> Iterator[MemoryReactorClock]:
    clock = MemoryReactorClock()
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = clock
    yield clock
    config.loop = previous


@pytest.fixture
def node_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything ``twistd --logfile node.log`` would write, with log_level debug."""
    monkeypatch.delenv(LIBRARY_DEBUG_ENV, raising=False)
    out = io.StringIO()
    observer = textFileLogObserver(out)
    globalLogPublisher.addObserver(observer)
    tap._quiet_libraries("debug")
    try:
        yield out
    finally:
        globalLogPublisher.removeObserver(observer)
        tap._quiet_libraries("info")


class Web:
    def __init__(self, tmp_path: Path, reactor: MemoryReactorClock) -> None:
        self.api = Api(tmp_path)
        self.reactor = reactor
        self.site: Site = build_site(self.api.a, TokenChecker(self.api.token_path), 4096,
                                     reactor)
        self.site.doStart()  # what listening does: opens the access log
        self.pumps: list[iosim.IOPump] = []

    def websocket(self, query: str = "", headers: dict[str, str] | None = None) -> Client:
        server = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        factory = WebSocketClientFactory(f"ws://127.0.0.1:8470/network{query}",
                                         headers=headers or {}, reactor=self.reactor)
        factory.protocol = Client
        factory.log = Client.log
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        client = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8470))
        assert isinstance(client, Client) and server is not None
        pump = iosim.connect(server, iosim.makeFakeServer(server),
                             client, iosim.makeFakeClient(client))
        self.pumps.append(pump)
        pump.flush()
        return client

    def http(self, request: bytes) -> bytes:
        proto = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        proto.dataReceived(request)
        self.api.stub.flush()
        return bytes(transport.value())

    def stop(self) -> None:
        self.site.doStop()


@pytest.fixture
def web(tmp_path: Path, reactor: MemoryReactorClock) -> Iterator[Web]:
    w = Web(tmp_path, reactor)
    yield w
    w.stop()


@pytest.mark.parametrize("form", ["header", "query"])
def test_websocket_token_never_reaches_the_log(web: Web, node_log: io.StringIO,
                                               form: str) -> None:
    token = web.api.token
    if form == "header":
        client = web.websocket(headers={"Authorization": f"Bearer {token}"})
    else:
        client = web.websocket(query=f"?access_token={token}")
    assert client.opened, "the upgrade must succeed for the test to mean anything"
    web.api.a.events.emit("peer_connected", peer="p.onion")
    for pump in web.pumps:
        pump.flush()
    assert [m["type"] for m in client.messages] == ["hello", "pong", "peer_connected"]
    client.sendClose()
    for pump in web.pumps:
        pump.flush()
    # a refused upgrade (wrong token) does not log the presented token either
    wrong = "wrong-" + token[::-1]
    refused = web.websocket(query=f"?access_token={wrong}")
    assert not refused.opened
    text = node_log.getvalue()
    assert text, "the observer saw nothing: the test would pass vacuously"
    for secret in (token, wrong):
        assert secret not in text
        assert secret[:16] not in text  # not even a prefix


def test_access_log_has_no_query_and_no_peer(web: Web, node_log: io.StringIO) -> None:
    peer = onion()
    token = web.api.token
    out = web.http(f"GET /api/network/peers/{peer}?access_token={token}&x=1 HTTP/1.1\r\n"
                   f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 404"), out[:100]
    out = web.http(f"GET /api/network/messages/{'a' * 32} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 404"), out[:100]
    text = node_log.getvalue()
    lines = [line for line in text.splitlines() if "/api/network/" in line]
    assert len(lines) == 2, text  # the access log is on: one line per request
    assert "GET /api/network/peers/{peer} 404" in lines[0]
    assert "GET /api/network/messages/{id} 404" in lines[1]
    assert peer not in text and peer.removesuffix(".onion")[:20] not in text
    assert token not in text and "access_token" not in text and "x=1" not in text


@pytest.mark.parametrize(("path", "logged"), [
    (b"/api/network/peers", "/api/network/peers"),
    (b"/api/network/peers/", "/api/network/peers/"),
    (b"/api/network/peers/abc.onion", "/api/network/peers/{peer}"),
    (b"/api/network/peers/abc.onion/x", "/api/network/peers/{peer}/{...}"),
    (b"/api/network/messages/00ff", "/api/network/messages/{id}"),
    (b"/api/network/status", "/api/network/status"),
    (b"/api/openapi.json", "/api/openapi.json"),
    (b"/metrics", "/metrics"),
    (b"/network", "/network"),
    (b"/", "/"),
    (b"/abc.onion", "/{...}"),
    (b"/api/abc.onion/peers", "/api/{...}"),
    (b"/api/network/\xff", "/api/network/{...}"),
])
def test_access_log_path_keeps_only_known_route_parts(path: bytes, logged: str) -> None:
    assert access_log_path(path) == logged


def test_library_debug_only_when_asked(web: Web, node_log: io.StringIO,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """AEGIS_HIDDEN_LIBRARY_DEBUG=1 lets autobahn's debug output through (documented)."""
    client = web.websocket(headers={"Authorization": f"Bearer {web.api.token}"})
    assert client.opened and "[autobahn" not in node_log.getvalue()
    monkeypatch.setenv(LIBRARY_DEBUG_ENV, "1")
    client = web.websocket(headers={"Authorization": f"Bearer {web.api.token}"})
    assert client.opened
    assert "[autobahn.websocket.server#debug]" in node_log.getvalue()


@pytest.mark.parametrize(("node_level", "shown"), [
    ("error", {"error"}), ("warn", {"error", "warn"}), ("info", {"error", "warn", "info"}),
    ("debug", {"error", "warn", "info"}),  # library debug needs AEGIS_HIDDEN_LIBRARY_DEBUG
])
def test_library_logger_follows_the_node_level(node_log: io.StringIO, node_level: str,
                                               shown: set[str]) -> None:
    tap._quiet_libraries(node_level)
    log = EventsProtocol.log
    for level in ("error", "warn", "info", "debug", "trace"):
        getattr(log, level)("library line at {at}", at=level)
    text = node_log.getvalue()
    assert {lv for lv in ("error", "warn", "info", "debug", "trace")
            if f"library line at {lv}" in text} == shown
