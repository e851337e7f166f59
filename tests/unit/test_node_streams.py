"""The node's streams on the stream channel (issue 13 item 7), on a task.Clock over the
in-memory network with a link latency: flow control end to end, events, metrics,
session loss, and the API's REST calls."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from aegis_hidden import identity
from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.node import IdentityService, NodeCore, StreamService, UnknownStream
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.streams import Limits, StreamClosedError, TooManyStreams
from aegis_hidden.testing import FakeNetwork, result_of

NOW = 1_800_000_000
LIMITS = Limits(window=64 * 1024, send_buffer=64 * 1024, chunk=8192, max_streams=4)
LATENCY = 0.25


class Watcher:
    def __init__(self, service: StreamService, sid: str, *, reading: bool = True) -> None:
        self.service, self.sid, self.reading = service, sid, reading
        self.got = bytearray()
        self.writable_calls = 0
        self.end: tuple[str | None] | None = None

    def readable(self) -> None:
        if self.reading:
            self.got += self.service.read(self.sid)

    def writable(self) -> None:
        self.writable_calls += 1

    def ended(self, error: str | None) -> None:
        self.end = (error,)


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, tmp: Path, name: str,
                 raw_config: dict[str, Any] | None = None,
                 limits: Limits | None = LIMITS) -> None:
        self.ident = identity.create(tmp / f"id-{name}", clock.seconds() - 10)
        self.onion = self.ident.onion
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.core = NodeCore(parse_config(raw_config or {}), IdentityService(self.ident, clock), str(tmp),
                             bus, clock, db=InlineSQLite(str(tmp / f"{name}.db")),
                             local_address=self.onion)
        self.core.attach_session_factory(net.node(self.onion))
        self.core.startService()
        result_of(self.core.when_ready())
        self.streams = StreamService(self.core, limits)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Clock, Node, Node]:
    clock = Clock()
    clock.advance(NOW)
    net = FakeNetwork(clock, latency=LATENCY)
    a, b = Node(net, clock, tmp_path, "a"), Node(net, clock, tmp_path, "b")
    result_of(a.core.store.add(b.onion))
    return clock, a, b


def run(clock: Clock, seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        clock.advance(0.05)


def opened(clock: Clock, a: Node, b: Node) -> tuple[str, str]:
    d = a.streams.open(b.onion, "file.bin")
    run(clock, 2)
    sid = result_of(d)
    (event,) = b.of("stream_opened")
    assert event["peer"] == a.onion and event["label"] == "file.bin" and event["direction"] == "in"
    return sid, event["stream"]


def test_reader_that_stops_stops_the_sender_after_one_window(pair: tuple[Clock, Node, Node]
                                                             ) -> None:
    clock, a, b = pair
    sid, rid = opened(clock, a, b)
    reader = Watcher(b.streams, rid, reading=False)
    b.streams.attach(rid, reader)
    writer = Watcher(a.streams, sid)
    a.streams.attach(sid, writer)
    blob = os.urandom(3 * 1024 * 1024)
    offered = 0
    for _ in range(100):  # write as hard as the stream takes, for 5 virtual seconds
        offered += a.streams.write(sid, blob[offered:offered + 100_000])
        run(clock, 0.05)
    sender, receiver = a.streams.info(sid), b.streams.info(rid)
    assert receiver["recv_buffered"] == LIMITS.window  # one window in flight, then nothing
    assert sender["bytes_sent"] == LIMITS.window
    assert sender["send_buffered"] == LIMITS.send_buffer and sender["room"] == 0
    assert offered == LIMITS.window + LIMITS.send_buffer
    assert a.streams.high_water <= LIMITS.window + LIMITS.send_buffer
    assert b.streams.high_water <= LIMITS.window
    # the reader reads again: everything flows, in order, and both ends close
    reader.reading = True
    reader.readable()
    while offered < len(blob):
        offered += a.streams.write(sid, blob[offered:offered + 100_000])
        run(clock, 0.05)
        assert b.streams.high_water <= LIMITS.window
    a.streams.close(sid)
    run(clock, 5)
    assert writer.writable_calls >= 1
    assert hashlib.sha256(reader.got).digest() == hashlib.sha256(blob).digest()
    assert b.streams.eof(rid)
    b.streams.close(rid)
    run(clock, 2)
    assert reader.end == (None,) and writer.end == (None,)
    assert b.of("stream_closed") and a.of("stream_closed")
    assert not a.streams.list() and not b.streams.list()
    assert a.core.metrics.gauges["streams_bytes_sent"][1]() == len(blob)
    with pytest.raises(UnknownStream):
        a.streams.write(sid, b"x")


def test_the_streams_configuration_keys_set_the_window_chunk_and_streams_per_peer(
        tmp_path: Path) -> None:
    raw = {"streams": {"window": 40 * 1024, "send_buffer": 8 * 1024, "chunk": 4096,
                       "max_streams_per_peer": 2}}
    clock = Clock()
    clock.advance(NOW)
    net = FakeNetwork(clock, latency=LATENCY)
    # no Limits given: the service takes the node's configuration
    a = Node(net, clock, tmp_path, "a", raw, limits=None)
    b = Node(net, clock, tmp_path, "b", raw, limits=None)
    result_of(a.core.store.add(b.onion))
    sid, rid = opened(clock, a, b)
    b.streams.attach(rid, Watcher(b.streams, rid, reading=False))
    offered = 0
    for _ in range(40):
        offered += a.streams.write(sid, os.urandom(50_000))
        run(clock, 0.05)
    sender, receiver = a.streams.info(sid), b.streams.info(rid)
    assert receiver["recv_buffered"] == 40 * 1024  # the configured window, not 256 KiB
    assert sender["bytes_sent"] == 40 * 1024
    assert offered == 40 * 1024 + 8 * 1024  # window + configured send buffer
    # every DATA payload is at most the configured chunk (8192 by default)
    pieces = b.streams.core.get(b.streams.key(rid)).recv_buf
    assert len(pieces) == 10 and max(len(p) for p in pieces) == 4096
    # a second stream is allowed, a third is refused (both ends count two)
    a.streams.open(b.onion)
    run(clock, 2)
    with pytest.raises(TooManyStreams):
        result_of(a.streams.open(b.onion))


def test_session_loss_resets_the_streams(pair: tuple[Clock, Node, Node]) -> None:
    clock, a, b = pair
    _, rid = opened(clock, a, b)
    w = Watcher(b.streams, rid)
    b.streams.attach(rid, w)
    link = a.core.pool.link(b.onion)
    assert link is not None
    link.close("test")
    run(clock, 2)
    assert w.end is not None and w.end[0] is not None
    assert a.of("stream_reset") and b.of("stream_reset")
    assert not a.streams.list()


def test_application_reset_reaches_the_peer(pair: tuple[Clock, Node, Node]) -> None:
    clock, a, b = pair
    sid, rid = opened(clock, a, b)
    b.streams.reset(rid, "not wanted")
    run(clock, 2)
    (event,) = a.of("stream_reset")
    assert event["error"] == "not wanted" and event["stream"] == sid
    with pytest.raises(UnknownStream):
        a.streams.info(sid)


def test_closed_stream_refuses_writes(pair: tuple[Clock, Node, Node]) -> None:
    clock, a, b = pair
    sid, _ = opened(clock, a, b)
    a.streams.close(sid)
    with pytest.raises(StreamClosedError):
        a.streams.write(sid, b"x")


def test_stream_frames_are_bulk_and_other_frames_are_not(pair: tuple[Clock, Node, Node]
                                                         ) -> None:
    clock, a, b = pair
    sid, rid = opened(clock, a, b)
    link: Any = a.core.pool.link(b.onion)
    raw: Any = getattr(link, "raw", link)
    sent: list[tuple[bool, bytes]] = []
    original = raw.send_message

    def normal(data: bytes) -> None:
        sent.append((False, data))
        original(data)

    raw.send_bulk = lambda data: sent.append((True, data))
    raw.send_message = normal
    a.streams.write(sid, b"x" * 20_000)
    a.streams.close(sid)
    assert [bulk for bulk, _ in sent] == [True, True, True, True]  # 3 chunks and CLOSE
    b.streams.read(rid)
    json.dumps(a.streams.list())  # the API's listing is JSON
