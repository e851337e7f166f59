"""The stream core (issue 13 item 7): credit windows, ordering, close/reset, limits, codec."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.streams import (
    MAX_CHUNK,
    MAX_CREDIT,
    MAX_LABEL,
    Closed,
    Limits,
    LimitsError,
    Opened,
    Readable,
    Reset,
    StreamClosedError,
    StreamCore,
    StreamError,
    StreamProtocolError,
    TooManyStreams,
    Writable,
    decode,
    encode,
)
from aegis_hidden.wire import frame_pb2

M = frame_pb2.StreamMessage
A, B = "a.onion", "b.onion"
LIMITS = Limits(window=64 * 1024, send_buffer=32 * 1024, chunk=4096, max_streams=4)


class Pair:
    """Two cores; :meth:`pump` carries every send to the other side."""

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.a, self.b = StreamCore(limits), StreamCore(limits)
        self.on_wire = 0  # DATA bytes sent and not yet delivered

    def pump(self, deliver: bool = True) -> int:
        moved = 0
        while True:
            sends = [(B, s) for s in self.a.take_sends()] + [(A, s) for s in self.b.take_sends()]
            if not sends:
                return moved
            for to, s in sends:
                (self.b if to == B else self.a).receive(A if to == B else B, s.payload)
                moved += 1


def test_reader_that_stops_stops_the_sender_after_one_window() -> None:
    p = Pair()
    s = p.a.open(B, "file")
    p.pump()
    (opened,) = [e for e in p.b.take_events() if isinstance(e, Opened)]
    assert opened.label == "file"
    total = 0
    blob = os.urandom(10 * 1024 * 1024)
    for _ in range(200):  # the application writes as hard as it can; nobody reads
        total += p.a.write(s.key, blob[total:total + 50_000])
        p.pump()
    rb = p.b.streams[opened.key]
    # in flight (received, unread) is one window; the sender holds at most its buffer
    assert rb.recv_buffered == LIMITS.window
    assert s.bytes_sent == LIMITS.window
    assert s.send_buffered == LIMITS.send_buffer
    assert total == LIMITS.window + LIMITS.send_buffer
    assert p.a.write(s.key, b"more") == 0 and p.a.room(s.key) == 0
    # reading grants credit: the sender moves again, and says it is writable
    got = p.b.read(opened.key)
    p.pump()
    assert len(got) == LIMITS.window
    assert any(isinstance(e, Writable) for e in p.a.take_events())
    assert s.send_buffered == 0 and s.bytes_sent == LIMITS.window + LIMITS.send_buffer


def test_ordered_bytes_and_close_with_every_chunk_within_credit() -> None:
    p = Pair()
    s = p.a.open(B)
    p.pump()
    key = next(e.key for e in p.b.take_events() if isinstance(e, Opened))
    blob = os.urandom(1_000_003)
    sent = got = 0
    out = []
    while got < len(blob):
        sent += p.a.write(s.key, blob[sent:sent + 7777])
        if sent == len(blob) and not s.local_closed:
            p.a.close(s.key)
        for x in p.a.take_sends():
            assert len(x.payload) <= LIMITS.chunk + 16
            assert x.bulk == (decode(x.payload).kind in (M.DATA, M.CLOSE))
            p.b.receive(A, x.payload)
        piece = p.b.read(key, 50_000)
        got += len(piece)
        out.append(piece)
        p.pump()
        assert p.b.streams[key].recv_buffered <= LIMITS.window
    assert b"".join(out) == blob
    p.pump()
    assert p.b.streams[key].eof  # the reader saw EOF; its side ends once it closes too
    assert not any(isinstance(e, Closed) for e in p.b.take_events())
    p.b.close(key)
    p.pump()
    assert any(isinstance(e, Closed) for e in p.b.take_events())
    assert any(isinstance(e, Closed) for e in p.a.take_events())
    assert not p.a.streams and not p.b.streams


def test_both_sides_close_and_forget() -> None:
    p = Pair()
    s = p.a.open(B)
    p.pump()
    key = next(e.key for e in p.b.take_events() if isinstance(e, Opened))
    p.a.write(s.key, b"hello")
    p.b.write(key, b"world")
    p.a.close(s.key)
    p.b.close(key)
    p.pump()
    assert p.b.read(key) == b"hello" and p.a.read(s.key) == b"world"
    p.pump()
    assert not p.a.streams and not p.b.streams
    assert any(isinstance(e, Closed) for e in p.a.take_events())
    with pytest.raises(StreamError):
        p.a.write(s.key, b"x")


def test_reset_reaches_the_peer_and_drops_buffers() -> None:
    p = Pair()
    s = p.a.open(B)
    p.pump()
    key = next(e.key for e in p.b.take_events() if isinstance(e, Opened))
    p.a.write(s.key, os.urandom(100_000))
    p.b.reset(key, "no thanks")
    p.pump()
    (reset,) = [e for e in p.a.take_events() if isinstance(e, Reset)]
    assert reset.by_peer and reset.error == "no thanks"
    assert not p.a.streams and not p.b.streams


def test_closed_for_writing() -> None:
    p = Pair()
    s = p.a.open(B)
    p.a.close(s.key)
    with pytest.raises(StreamClosedError):
        p.a.write(s.key, b"x")


def test_open_streams_per_peer_are_limited_on_both_sides() -> None:
    p = Pair()
    for _ in range(LIMITS.max_streams):
        p.a.open(B)
    with pytest.raises(TooManyStreams):
        p.a.open(B)
    p.a.open("c.onion")  # another peer is not affected
    # a peer that ignores the limit gets RESET "too many streams"
    rogue = StreamCore(Limits(window=LIMITS.window, max_streams=100, chunk=LIMITS.chunk))
    for _ in range(LIMITS.max_streams + 2):
        rogue.open(A)
    for x in rogue.take_sends():
        p.a.receive(B, x.payload)
    assert len([k for k in p.a.streams if k[0] == B and not k[1]]) == 0  # a's own 4 fill it
    refusals = [decode(x.payload) for x in p.a.take_sends() if decode(x.payload).kind == M.RESET]
    assert len(refusals) == LIMITS.max_streams + 2
    assert {r.error for r in refusals} == {"too many streams"}
    assert p.a.counts["refused"] == LIMITS.max_streams + 2


def test_data_beyond_credit_is_a_violation_and_resets() -> None:
    p = Pair()
    s = p.a.open(B)
    p.pump()
    key = next(e.key for e in p.b.take_events() if isinstance(e, Opened))
    too_much = encode(M(kind=M.DATA, id=s.key[2], opener=True, data=b"x" * (LIMITS.window + 1)))
    with pytest.raises(StreamProtocolError, match="beyond"):
        p.b.receive(A, too_much)
    assert key not in p.b.streams and p.b.counts["violations"] == 1
    assert any(isinstance(e, Reset) and not e.by_peer for e in p.b.take_events())


def test_late_frames_for_a_forgotten_stream_are_ignored() -> None:
    core = StreamCore(LIMITS)
    core.receive(A, encode(M(kind=M.DATA, id=9, opener=True, data=b"late")))
    core.receive(A, encode(M(kind=M.CREDIT, id=9, opener=False, credit=5)))
    assert not core.streams and not core.take_events()


@pytest.mark.parametrize("payload", [
    b"\xff\xff", encode(M(kind=M.DATA, id=0, data=b"x")), encode(M(kind=M.DATA, id=1)),
    encode(M(kind=M.CREDIT, id=1, credit=3, data=b"x")), encode(M(id=1)),
    encode(M(kind=M.OPEN, id=1, opener=True, label="x" * (MAX_LABEL + 1))),
    encode(M(kind=M.OPEN, id=1, opener=False)),
])
def test_bad_messages_are_typed_errors(payload: bytes) -> None:
    with pytest.raises(StreamProtocolError):
        StreamCore(LIMITS).receive(A, payload)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="window"):
        Limits(window=10, chunk=100)
    with pytest.raises(ValueError, match="max_streams"):
        Limits(max_streams=0)
    # typed: the field and the value are on the error
    for kwargs, name in (({"chunk": 0}, "chunk"), ({"chunk": MAX_CHUNK + 1}, "chunk"),
                         ({"window": MAX_CREDIT + 1}, "window"),
                         ({"send_buffer": -1}, "send_buffer"),
                         ({"max_streams": True}, "max_streams"),
                         ({"window": 65536.0}, "window")):
        with pytest.raises(LimitsError) as info:
            Limits(**kwargs)
        assert info.value.name == name and info.value.value == kwargs[name]
    with pytest.raises(StreamError, match="label"):
        StreamCore().open(B, "x" * (MAX_LABEL + 1))


kinds = st.sampled_from([M.OPEN, M.DATA, M.CREDIT, M.CLOSE, M.RESET])


@given(kinds, st.integers(1, 2**64 - 1), st.booleans(), st.binary(min_size=1, max_size=9000),
       st.integers(0, 2**64 - 1), st.text(max_size=MAX_LABEL), st.text(max_size=200))
def test_codec_round_trip(kind: int, id_: int, opener: bool, data: bytes, credit: int,
                          label: str, error: str) -> None:
    m = M(kind=kind, id=id_, opener=opener, data=data if kind == M.DATA else b"",  # type: ignore[arg-type]
          credit=credit, label=label, error=error)
    assert decode(encode(m)) == m


@given(st.binary(max_size=300))
def test_decode_never_raises_anything_but_its_error(data: bytes) -> None:
    with contextlib.suppress(StreamProtocolError):
        decode(data)


@given(st.binary(max_size=300))
def test_receive_of_garbage_is_only_a_typed_error(data: bytes) -> None:
    core = StreamCore(LIMITS)
    core.open(A)
    with contextlib.suppress(StreamProtocolError):
        core.receive(A, data)
    assert all(isinstance(e, (Opened, Readable, Writable, Closed, Reset))
               for e in core.take_events())
