"""The WebSocket /network/streams/{id}, in memory: autobahn clients and the node's
stream sockets joined by iosim, two nodes over the fake network, on a memory reactor.
Bytes flow both ways in order; a client that does not read holds the sender back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from aegis_hidden import identity
from aegis_hidden.api import Authorizer, TokenChecker
from aegis_hidden.api._stream_socket import StreamSocketFactory
from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.node import IdentityService, NodeCore, StreamService
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.streams import Limits
from aegis_hidden.testing import FakeNetwork, result_of

TOKEN = "t0ken-t0ken-t0ken-t0ken"
NOW = 1_800_000_000
LIMITS = Limits(window=32 * 1024, send_buffer=32 * 1024, chunk=4096)


class Client(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[dict[str, Any]] = []
        self.received = bytearray()
        self.closed_code: int | None = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.received += payload
        else:
            self.texts.append(json.loads(payload))
            if self.texts[-1]["type"] == "eof":
                self.sendMessage(b'{"type": "close"}')

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed_code = code

    def kinds(self) -> list[str]:
        return [t["type"] for t in self.texts]


@pytest.fixture
def reactor() -> Iterator[MemoryReactorClock]:
    clock = MemoryReactorClock()
    clock.advance(NOW)
    config: Any = txaio.config  # type: ignore[attr-defined]
    previous = config.loop
    config.loop = clock
    yield clock
    config.loop = previous


class Side:
    def __init__(self, net: FakeNetwork, reactor: MemoryReactorClock, tmp: Path, name: str
                 ) -> None:
        ident = identity.create(tmp / f"id-{name}", NOW - 10)
        self.onion = ident.onion
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=reactor.seconds)
        bus.subscribe(self.events.append)
        self.core = NodeCore(parse_config({}), IdentityService(ident, reactor), str(tmp), bus,
                             reactor, db=InlineSQLite(str(tmp / f"{name}.db")),
                             local_address=self.onion)
        self.core.attach_session_factory(net.node(self.onion))
        self.core.startService()
        result_of(self.core.when_ready())
        self.streams = StreamService(self.core, LIMITS)
        auth = Authorizer(TokenChecker(token=TOKEN), lambda: None)
        self.factory = StreamSocketFactory(self.core, auth, reactor=reactor)
        self.factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)


class Harness:
    def __init__(self, reactor: MemoryReactorClock, tmp: Path) -> None:
        self.reactor = reactor
        net = FakeNetwork()
        self.a, self.b = Side(net, reactor, tmp, "a"), Side(net, reactor, tmp, "b")
        result_of(self.a.core.store.add(self.b.onion))
        self.pumps: list[iosim.IOPump] = []

    def connect(self, side: Side, sid: str, token: str = TOKEN) -> Client:
        server = side.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        cf = WebSocketClientFactory(f"ws://127.0.0.1:8470/network/streams/{sid}",
                                    headers={"Authorization": f"Bearer {token}"},
                                    reactor=self.reactor)
        cf.protocol = Client
        cf.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        client = cf.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8470))
        assert isinstance(client, Client)
        self.pumps.append(iosim.connect(server, iosim.makeFakeServer(server),
                                        client, iosim.makeFakeClient(client)))
        self.flush()
        return client

    def flush(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            for pump in self.pumps:
                pump.flush()
            self.reactor.advance(0.05)


@pytest.fixture
def h(reactor: MemoryReactorClock, tmp_path: Path) -> Harness:
    return Harness(reactor, tmp_path)


def _open(h: Harness) -> tuple[str, str]:
    sid = result_of(h.a.streams.open(h.b.onion, "x"))
    (event,) = [e for e in h.b.events if e["type"] == "stream_opened"]
    return sid, event["stream"]


def test_bytes_flow_in_order_and_both_close(h: Harness) -> None:
    sid, rid = _open(h)
    sender, receiver = h.connect(h.a, sid), h.connect(h.b, rid)
    assert sender.kinds() == ["open"] and receiver.kinds() == ["open"]
    blob = os.urandom(300_000)
    for i in range(0, len(blob), 50_000):
        sender.sendMessage(blob[i:i + 50_000], isBinary=True)
        h.flush(3)
    sender.sendMessage(b'{"type": "close"}')
    h.flush(20)
    assert bytes(receiver.received) == blob
    assert receiver.kinds() == ["open", "eof", "closed"]
    assert sender.kinds() == ["open", "eof", "closed"]
    assert not h.a.streams.list() and not h.b.streams.list()


def test_a_stream_without_its_reader_holds_the_sender_by_credit(h: Harness) -> None:
    sid, _ = _open(h)
    sender = h.connect(h.a, sid)
    for _ in range(10):
        sender.sendMessage(os.urandom(50_000), isBinary=True)
        h.flush(2)
    info = h.a.streams.info(sid)
    assert info["bytes_sent"] == LIMITS.window and info["credit"] == 0
    assert info["send_buffered"] <= LIMITS.send_buffer
    assert h.b.streams.buffered() == LIMITS.window


def test_wrong_token_and_unknown_stream_are_refused(h: Harness) -> None:
    sid, _ = _open(h)
    assert h.connect(h.a, sid, token="nope").closed_code is not None
    assert h.connect(h.a, "99").closed_code is not None
    assert not h.a.streams.info(sid)["attached"]


def test_socket_gone_mid_stream_resets_it(h: Harness) -> None:
    sid, _rid = _open(h)
    sender = h.connect(h.a, sid)
    sender.sendMessage(b"partial", isBinary=True)
    h.flush(2)
    sender.dropConnection(abort=True)
    h.flush(4)
    assert any(e["type"] == "stream_reset" for e in h.b.events)
