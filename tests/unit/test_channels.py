"""Channels above the session: frames, the router, the rpc and pubsub channels.

Nodes are NodeCores on the fake session network (``FakeNetwork``): every byte a
fake link carries is what a real session would carry, i.e. one Frame.
"""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import DeliveryState, NodeCore
from aegis_hidden.node._channels import (
    Channel,
    ChannelLink,
    FrameError,
    RpcLinkClosed,
    RpcRemoteError,
    RpcTimeout,
    RpcUnreachable,
    decode_frame,
    encode_frame,
)
from aegis_hidden.peers import InlineSQLite
from aegis_hidden.testing import FakeNetwork, result_of
from aegis_hidden.wire import frame_pb2


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


class Node:
    def __init__(self, net: FakeNetwork, clock: Clock, path: Path) -> None:
        self.address = onion()
        self.events: list[dict[str, Any]] = []
        bus = EventBus(now=clock.seconds)
        bus.subscribe(self.events.append)
        self.db = InlineSQLite(str(path))
        self.core = NodeCore(Config(), None, str(path.parent), bus, clock, db=self.db,
                             local_address=self.address)
        self.core.rpc._rng = random.Random(7)
        self.factory = net.node(self.address)
        self.core.attach_session_factory(self.factory)
        self.core.startService()
        result_of(self.core.when_ready())

    def counter(self, name: str) -> int:
        return int(self.core.metrics.counters[name])

    def received(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == "message_received"]

    def reputation(self, peer: str) -> float:
        return self.core.store.require(peer).reputation


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def net() -> FakeNetwork:
    return FakeNetwork()


def pair(net: FakeNetwork, clock: Clock, tmp_path: Path) -> tuple[Node, Node, ChannelLink]:
    """a and b, a knows b and has a session with it (a's end, as the pool hands it out)."""
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    link = result_of(a.core.pool.get(b.address))
    assert isinstance(link, ChannelLink)
    return a, b, link


def timers(clock: Clock) -> list[Any]:
    """The rpc timeouts waiting on ``clock`` (the node's own loops run beside them)."""
    return [c for c in clock.getDelayedCalls() if "_timed_out" in repr(c)]


def failure_of(d: Deferred[Any]) -> BaseException:
    out: list[Any] = []
    d.addErrback(lambda f: out.append(f.value))
    assert out, "the Deferred has not failed"
    error = out[0]
    assert isinstance(error, BaseException)
    return error


# -- the frame codec -----------------------------------------------------------------


@given(st.integers(1, 2**31 - 1), st.binary(max_size=2048))
def test_frame_round_trip(channel: int, payload: bytes) -> None:
    assert decode_frame(encode_frame(channel, payload)) == (channel, payload)


def test_frame_is_the_protobuf_message() -> None:
    data = encode_frame(Channel.RPC, b"x")
    frame = frame_pb2.Frame()
    frame.ParseFromString(data)
    assert (frame.channel, frame.payload) == (frame_pb2.RPC, b"x")
    assert [int(c) for c in Channel] == [1, 2, 3, 4, 5]
    assert {c.name: int(c) for c in Channel} == {
        n: frame_pb2.Channel.Value(n) for n in ("MESSAGING", "RPC", "PUBSUB", "CONTROL", "STREAM")}


@pytest.mark.parametrize("data", [b"not json", b'{"k": "msg"}', b"\x00\x01", b"",
                                  b"\x12\x01x", b"\x08" + b"\xff" * 9 + b"\x01"])
def test_not_a_frame(data: bytes) -> None:
    with pytest.raises(FrameError):  # corrupt, or no channel (0 is never a channel)
        decode_frame(data)


@given(st.binary(max_size=64))
def test_decode_frame_returns_or_raises_frame_error(data: bytes) -> None:
    try:
        channel, _ = decode_frame(data)
    except FrameError:
        return
    assert channel > 0


# -- routing -------------------------------------------------------------------------


def test_unknown_channel_is_ignored_without_penalty(net: FakeNetwork, clock: Clock,
                                                    tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    before = b.reputation(a.address)
    link.send_frame(99, b"a channel from a newer version")
    link.send_frame(2**31 - 1, b"")
    assert b.counter("frames_unknown_channel") == 2
    assert b.reputation(a.address) == before
    assert b.counter("protocol_errors") == 0
    assert not [e for e in b.events if e["type"] == "network_error"]
    assert b.core.pool.connected(a.address)
    # and the session still carries messages
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat", "data": "after"}))
    assert [e["message"]["data"] for e in b.received()] == ["after"]
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED


def test_a_newer_peers_frame_with_unknown_fields_is_still_routed(
        net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    """A later version may add fields to Frame: this one reads the fields it knows."""
    _, b, link = pair(net, clock, tmp_path)
    got: list[bytes] = []
    b.core.pubsub.on_message(lambda peer, data: got.append(data))
    frame = encode_frame(Channel.PUBSUB, b"topic") + b"\x1a\x03new"  # field 3, bytes
    link.raw.send_message(frame)
    assert got == [b"topic"] and b.counter("protocol_errors") == 0


def test_bytes_that_are_not_a_frame_are_a_protocol_violation(net: FakeNetwork, clock: Clock,
                                                             tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    before = b.reputation(a.address)
    link.raw.send_message(b'{"k": "msg"}')  # an unframed envelope, as before channels
    link.raw.send_message(b"")  # parses, but names no channel
    assert b.counter("protocol_errors") == 2
    assert b.reputation(a.address) < before
    assert b.counter("frames_unknown_channel") == 0
    errors = [e for e in b.events if e["type"] == "network_error"]
    assert [e["error"] for e in errors] == ["protocol violation"] * 2
    assert b.received() == []


def test_messaging_travels_in_messaging_frames(net: FakeNetwork, clock: Clock,
                                               tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    msg_id, _ = result_of(a.core.send(b.address, {"type": "chat", "data": "hi"}))
    assert a.core.messenger.state(msg_id) is DeliveryState.ACKNOWLEDGED
    (got,) = b.received()
    assert got["message"]["data"] == "hi"
    # on the wire: every message is a frame; the envelope and its ack on channel 1,
    # the record pushes (none here: fake nodes without identity) on channel 4
    raw_a: Any = link.raw
    sent = raw_a.sent_frames()
    assert [c for c, _ in sent] == [Channel.MESSAGING]
    assert sent[0][1].startswith(b"{")
    acks = raw_a.other.sent_frames()
    assert [c for c, _ in acks] == [Channel.MESSAGING]
    assert acks[0][1].startswith(b"{")


def test_channel_link_is_the_pools_view_of_a_session(net: FakeNetwork, clock: Clock,
                                                     tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    same: Any = a.core.pool.link(b.address)
    assert same is link
    assert link.peer == b.address and link.record.onion == b.address
    assert link.transport_name == "memory" and not link.closed
    with pytest.raises(RuntimeError, match="channel router"):
        link.set_receiver(lambda data: None)
    assert copy.copy(link).raw is link.raw
    link.close("done")
    assert link.closed and result_of(link.when_closed()) == "done"


def test_a_channel_has_one_handler(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    with pytest.raises(ValueError, match="already"):
        a.core.channels.register(Channel.RPC, lambda peer, data: None)
    with pytest.raises(ValueError, match="not a channel"):
        a.core.channels.register(0, lambda peer, data: None)
    a.core.channels.register(7, lambda peer, data: None)
    assert a.core.channels.channels() == [1, 2, 3, 4, 7]


def test_pubsub_hook(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    result_of(a.core.pubsub.send(b.address, b"dropped"))
    assert b.counter("pubsub_unhandled") == 1
    got: list[tuple[str, bytes]] = []
    b.core.pubsub.on_message(lambda peer, data: got.append((peer, data)))
    result_of(a.core.pubsub.send(b.address, b"topic"))
    assert got == [(a.address, b"topic")]
    assert b.counter("frames_unknown_channel") == 0


# -- rpc -----------------------------------------------------------------------------


def test_rpc_request_and_response(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    seen: list[tuple[str, bytes]] = []

    def answer(peer: str, body: bytes) -> bytes:
        seen.append((peer, body))
        return body[::-1]

    b.core.rpc.on_request(answer)
    assert result_of(a.core.rpc.request(b.address, b"ping", 5.0)) == b"gnip"
    assert seen == [(a.address, b"ping")]
    assert a.core.rpc.pending() == 0
    assert a.counter("rpc_requests_sent") == 1 and b.counter("rpc_requests_received") == 1
    assert not timers(clock)  # the timeout was cancelled
    # no outbox: nothing was written for it
    assert a.core.messenger.outbox_size() == 0


def test_rpc_dials_when_there_is_no_session(net: FakeNetwork, clock: Clock,
                                            tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    b.core.rpc.on_request(lambda peer, body: b"pong")
    assert result_of(a.core.rpc.request(b.address, b"ping", 5.0)) == b"pong"
    assert a.core.pool.connected(b.address)


def test_rpc_answer_from_a_deferred_or_a_coroutine(net: FakeNetwork, clock: Clock,
                                                   tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    later: Deferred[bytes] = Deferred()
    b.core.rpc.on_request(lambda peer, body: later)
    d = a.core.rpc.request(b.address, b"x", 5.0)
    assert not d.called
    later.callback(b"later")
    assert result_of(d) == b"later"

    async def coro(peer: str, body: bytes) -> bytes:
        return b"async " + body

    b.core.rpc.on_request(coro)
    assert result_of(a.core.rpc.request(b.address, b"y", 5.0)) == b"async y"


def test_rpc_timeout_on_the_clock(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    never: Deferred[bytes] = Deferred()
    b.core.rpc.on_request(lambda peer, body: never)
    d = a.core.rpc.request(b.address, b"x", 3.0)
    clock.advance(2.9)
    assert not d.called
    clock.advance(0.2)
    assert isinstance(failure_of(d), RpcTimeout)
    assert a.counter("rpc_timeouts") == 1 and a.core.rpc.pending() == 0
    # the late answer is counted and dropped, and held against no one
    before = a.reputation(b.address)
    never.callback(b"too late")
    assert a.counter("rpc_unmatched") == 1
    assert a.reputation(b.address) == before and a.counter("protocol_errors") == 0


def test_rpc_closed_link(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    b.core.rpc.on_request(lambda peer, body: Deferred())
    d = a.core.rpc.request(b.address, b"x", 30.0)
    link.close("gone")
    error = failure_of(d)
    assert isinstance(error, RpcLinkClosed) and isinstance(error, ConnectionError)
    assert a.core.rpc.pending() == 0 and not timers(clock)


def test_rpc_send_on_a_dead_session_is_link_closed(net: FakeNetwork, clock: Clock,
                                                   tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    raw: Any = link.raw
    raw.other = None  # the session died under the pool (the fake refuses to send)
    error = failure_of(a.core.rpc.request(b.address, b"x", 30.0))
    assert isinstance(error, RpcLinkClosed)


def test_rpc_unreachable_peer(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a = Node(net, clock, tmp_path / "a.db")
    b = Node(net, clock, tmp_path / "b.db")
    result_of(a.core.store.add(b.address))
    net.unreachable.add(b.address)
    error = failure_of(a.core.rpc.request(b.address, b"x", 30.0))
    assert isinstance(error, RpcUnreachable) and "could not reach" in str(error)
    assert a.core.rpc.pending() == 0


def test_rpc_remote_errors(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    error = failure_of(a.core.rpc.request(b.address, b"x", 5.0))
    assert isinstance(error, RpcRemoteError) and "no rpc handler" in str(error)

    def broken(peer: str, body: bytes) -> bytes:
        raise KeyError("secret detail")

    b.core.rpc.on_request(broken)
    error = failure_of(a.core.rpc.request(b.address, b"x", 5.0))
    assert isinstance(error, RpcRemoteError) and "KeyError" in str(error)
    assert "secret detail" not in str(error)


def test_rpc_requests_being_answered_are_bounded_per_peer(net: FakeNetwork, clock: Clock,
                                                          tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    b.core.rpc.max_inbound = 2
    waiting: list[Deferred[bytes]] = []

    def slow(peer: str, body: bytes) -> Deferred[bytes]:
        waiting.append(Deferred())
        return waiting[-1]

    b.core.rpc.on_request(slow)
    first, second = (a.core.rpc.request(b.address, b"x", 30.0) for _ in range(2))
    error = failure_of(a.core.rpc.request(b.address, b"x", 30.0))
    assert isinstance(error, RpcRemoteError) and "busy" in str(error)
    assert b.counter("rpc_busy") == 1
    waiting[0].callback(b"one")
    assert result_of(first) == b"one"
    third = a.core.rpc.request(b.address, b"x", 30.0)  # a slot is free again
    waiting[1].errback(ValueError("x"))
    waiting[2].callback(b"three")
    assert isinstance(failure_of(second), RpcRemoteError)
    assert result_of(third) == b"three"
    assert b.core.rpc._inbound == {}


def test_rpc_cancel(net: FakeNetwork, clock: Clock, tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    b.core.rpc.on_request(lambda peer, body: Deferred())
    d = a.core.rpc.request(b.address, b"x", 30.0)
    d.cancel()
    d.addErrback(lambda f: None)
    assert a.core.rpc.pending() == 0 and not timers(clock)


def test_rpc_answer_only_counts_from_the_peer_asked(net: FakeNetwork, clock: Clock,
                                                    tmp_path: Path) -> None:
    a, b, _ = pair(net, clock, tmp_path)
    c = Node(net, clock, tmp_path / "c.db")
    b.core.rpc.on_request(lambda peer, body: Deferred())
    d = a.core.rpc.request(b.address, b"x", 30.0)
    ((_, request_id),) = a.core.rpc._pending
    result_of(c.core.store.add(a.address))
    c_link = result_of(c.core.pool.get(a.address))
    forged = frame_pb2.RpcMessage(id=request_id, kind=frame_pb2.RpcMessage.RESPONSE,
                                  body=b"forged")
    c_link.send_frame(Channel.RPC, forged.SerializeToString())
    assert not d.called and a.counter("rpc_unmatched") == 1
    d.cancel()
    d.addErrback(lambda f: None)


def test_malformed_rpc_payload_is_a_protocol_violation(net: FakeNetwork, clock: Clock,
                                                       tmp_path: Path) -> None:
    a, b, link = pair(net, clock, tmp_path)
    before = b.reputation(a.address)
    link.send_frame(Channel.RPC, b"\xff\xff")
    assert b.counter("protocol_errors") == 1 and b.reputation(a.address) < before
    # a kind from a newer version is not a violation
    link.send_frame(Channel.RPC, frame_pb2.RpcMessage(id=1, kind=9).SerializeToString())  # type: ignore[arg-type]
    assert b.counter("protocol_errors") == 1
