"""The node hello (issue 3): the pure exchange and two services talking in memory."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, connect

from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node._bootstrap import (
    HelloError,
    HelloExchange,
    HelloService,
    PeerReached,
    _HelloProtocol,
    split_peer,
)

A = onion_address_from_public_key(bytes(32))
B = onion_address_from_public_key(bytes(range(32)))


def pair(expected: str | None = B) -> tuple[HelloExchange, HelloExchange, Clock]:
    clock = Clock()
    return (HelloExchange(A, clock.seconds, expected), HelloExchange(B, clock.seconds), clock)


def test_exchange_both_ways() -> None:
    a, b, clock = pair()
    line_a, line_b = a.start(), b.start()
    assert line_a == f"AEGIS-HELLO 1 {A} {a.nonce}".encode()
    clock.advance(0.25)
    ack_from_b, done_b = b.receive(line_a)
    assert ack_from_b == f"AEGIS-ACK {a.nonce} {B}".encode() and done_b is None
    ack_from_a, done_a = a.receive(line_b)
    assert done_a is None and ack_from_a is not None
    _, done_b = b.receive(ack_from_a)
    _, done_a = a.receive(ack_from_b)
    assert done_a == PeerReached(B, 0.25) and done_b == PeerReached(A, 0.25)


def test_nonces_are_fresh() -> None:
    a, b, _ = pair()
    assert a.nonce != b.nonce and len(a.nonce) == 32


@pytest.mark.parametrize(("line", "message"), [
    (b"GET / HTTP/1.1", "unexpected line"),
    (b"AEGIS-HELLO 2 " + B.encode() + b" " + b"0" * 32, "version"),
    (b"AEGIS-HELLO 1 example.com " + b"0" * 32, "v3 onion"),
    (b"AEGIS-HELLO 1 " + B.encode() + b" xyz", "nonce"),
    (b"AEGIS-HELLO 1 " + A.encode() + b" " + b"0" * 32, "answered"),
    (b"AEGIS-ACK " + b"1" * 32 + b" " + B.encode(), "echo our nonce"),
    (b"\xff\xfe", "ASCII"),
])
def test_bad_lines(line: bytes, message: str) -> None:
    a, _, _ = pair()
    a.start()
    with pytest.raises(HelloError, match=message):
        a.receive(line)


def test_duplicates_are_refused() -> None:
    a, b, _ = pair()
    hello_b = b.start()
    a.start()
    a.receive(hello_b)
    with pytest.raises(HelloError, match="second HELLO"):
        a.receive(hello_b)
    ack = f"AEGIS-ACK {a.nonce} {B}".encode()
    a.receive(ack)
    with pytest.raises(HelloError, match="second ACK"):
        a.receive(ack)


def test_split_peer() -> None:
    assert split_peer(B.upper() + ":9000", 7701) == (B, 9000)
    assert split_peer(B, 7701) == (B, 7701)


def service(tmp: Path, onion: str, clock: Clock, events: EventBus) -> HelloService:
    return HelloService(MemoryReactorClock(), onion, "127.0.0.1:7701", [], [], tmp, events,
                        clock=clock, wall=clock.seconds)


def test_two_services_reach_each_other_and_record_it(tmp_path: Path) -> None:
    clock = Clock()
    seen: list[dict[str, Any]] = []
    events = EventBus(now=clock.seconds)
    events.subscribe(seen.append)
    svc_a = service(tmp_path / "a", A, clock, events)
    svc_b = service(tmp_path / "b", B, clock, events)
    client = _HelloProtocol(svc_a, "outbound", B)
    server = _HelloProtocol(svc_b, "inbound", None)
    pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False))
    pump.flush()
    assert svc_a.peers[B]["reachable"] and svc_a.peers[B]["last_direction"] == "outbound"
    assert svc_b.peers[A]["last_direction"] == "inbound"
    status = json.loads((tmp_path / "a" / "status.json").read_text())
    assert status["onion"] == A and status["peers"][B]["times_reached"] == 1
    assert sorted(e["peer"] for e in seen if e["type"] == "peer_reachable") == sorted([A, B])
    client.transport.loseConnection()  # type: ignore[union-attr]
    pump.flush()
    assert svc_a.peers[B]["connected"] is False
    assert client.closed.called


def test_wrong_peer_is_dropped(tmp_path: Path) -> None:
    clock = Clock()
    events = EventBus(now=clock.seconds)
    svc_a = service(tmp_path / "a", A, clock, events)
    svc_b = service(tmp_path / "b", B, clock, events)
    client = _HelloProtocol(svc_a, "outbound", A)  # dialed A, but B answers
    server = _HelloProtocol(svc_b, "inbound", None)
    pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False))
    pump.flush()
    assert B not in svc_a.peers
    assert client.closed.called


@given(st.binary(max_size=200))
def test_arbitrary_lines_fail_only_with_hello_errors(line: bytes) -> None:
    a, _, _ = pair()
    a.start()
    with contextlib.suppress(HelloError):
        a.receive(line)
