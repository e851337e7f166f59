"""Ordered byte streams between two peers, with credit windows: the sans-I/O core.

One :class:`StreamCore` per node holds every stream with every peer. It takes
the payloads of STREAM-channel frames (:meth:`StreamCore.receive`) and calls
from the application (:meth:`open`, :meth:`write`, :meth:`read`,
:meth:`close`, :meth:`reset`), and returns what to send as :class:`Send`
items (:meth:`take_sends`) and what happened as events (:meth:`take_events`).
No reactor, no sockets.

Flow control (docs/streams.md): the receiver grants credit in bytes: the
initial window in OPEN (for the opener's own receive side) or the first
CREDIT (for the accepter's), then more as the application reads. A sender
sends DATA only within its credit, so at most one window is in flight, and
accepts at most ``send_buffer`` bytes from the application beyond it:
:meth:`write` returns how many bytes it took (0 once the buffer is full, the
backpressure the caller sees) and a :class:`Writable` event says when there
is room again. A reader that stops reading therefore stops the sender after
one window plus its buffer, whatever the application tries to write.
"""

from __future__ import annotations

import dataclasses
from collections import deque

from google.protobuf.message import DecodeError

from ..wire import frame_pb2

__all__ = [
    "MAX_CHUNK",
    "MAX_CREDIT",
    "MAX_LABEL",
    "Closed",
    "Limits",
    "LimitsError",
    "Opened",
    "Readable",
    "Reset",
    "Send",
    "Stream",
    "StreamClosedError",
    "StreamCore",
    "StreamError",
    "StreamEvent",
    "StreamKey",
    "StreamProtocolError",
    "TooManyStreams",
    "Writable",
    "decode",
    "encode",
]

_M = frame_pb2.StreamMessage
MAX_LABEL = 200
MAX_ERROR = 200
#: The most credit a peer may grant at once (the sender's buffer is bounded by
#: its own ``send_buffer``, whatever the credit).
MAX_CREDIT = 1 << 32
#: The largest DATA payload a :class:`Limits` may set.
MAX_CHUNK = 65536


class StreamError(Exception):
    """A stream operation that cannot be done (bad argument, unknown stream...)."""


class TooManyStreams(StreamError):
    """The peer already has as many open streams as :attr:`Limits.max_streams` allows."""


class StreamClosedError(StreamError):
    """Writing to a stream this side closed, or one that was reset."""


class StreamProtocolError(ValueError):
    """Bytes from a peer that are not a valid stream message (a protocol violation)."""


class LimitsError(ValueError):
    """A :class:`Limits` value out of range: ``name`` is the field, ``value`` what was
    given, the message says what is allowed (the configuration checks the same ranges
    first, as ``streams.*`` keys)."""

    def __init__(self, name: str, value: object, allowed: str) -> None:
        super().__init__(f"{name} = {value!r}: {allowed}")
        self.name = name
        self.value = value


@dataclasses.dataclass(frozen=True)
class Limits:
    """``window``: bytes one side lets its peer send ahead of its reading;
    ``send_buffer``: bytes accepted from the application beyond the credit;
    ``chunk``: the largest DATA payload (one bulk message on the session, so
    the most a small message waits behind stream data); ``max_streams``: open
    streams per peer (both directions together).

    The defaults are the ``streams.*`` configuration keys' defaults; a value out
    of range is a :class:`LimitsError`."""

    window: int = 256 * 1024
    send_buffer: int = 256 * 1024
    chunk: int = 8192
    max_streams: int = 16

    def __post_init__(self) -> None:
        for name in ("window", "send_buffer", "chunk", "max_streams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise LimitsError(name, value, "expected an integer")
        if not 1 <= self.chunk <= MAX_CHUNK:
            raise LimitsError("chunk", self.chunk, f"expected 1 to {MAX_CHUNK} bytes")
        if not self.chunk <= self.window <= MAX_CREDIT:
            raise LimitsError("window", self.window, f"expected at least one chunk "
                              f"({self.chunk} bytes) and at most {MAX_CREDIT} bytes")
        if self.send_buffer < 0:
            raise LimitsError("send_buffer", self.send_buffer, "expected 0 bytes or more")
        if self.max_streams < 1:
            raise LimitsError("max_streams", self.max_streams, "expected at least 1")


#: (peer, opened by this node, number chosen by the opener)
StreamKey = tuple[str, bool, int]


@dataclasses.dataclass(frozen=True)
class Send:
    """One STREAM-channel payload for ``peer``; ``bulk`` for DATA and CLOSE (the
    session's low class, which keeps their order; OPEN, CREDIT and RESET go first)."""

    peer: str
    payload: bytes
    bulk: bool


@dataclasses.dataclass(frozen=True)
class Opened:
    """The peer opened a stream to this node."""

    key: StreamKey
    label: str


@dataclasses.dataclass(frozen=True)
class Readable:
    key: StreamKey


@dataclasses.dataclass(frozen=True)
class Writable:
    key: StreamKey


@dataclasses.dataclass(frozen=True)
class Closed:
    """The stream is over and forgotten: both sides closed and everything was read."""

    key: StreamKey


@dataclasses.dataclass(frozen=True)
class Reset:
    """The stream was aborted (by either side, or for a violation); it is forgotten."""

    key: StreamKey
    error: str
    by_peer: bool


StreamEvent = Opened | Readable | Writable | Closed | Reset


def encode(message: frame_pb2.StreamMessage) -> bytes:
    return message.SerializeToString()


def decode(payload: bytes) -> frame_pb2.StreamMessage:
    """A checked :class:`StreamMessage`; :class:`StreamProtocolError` for anything else."""
    m = _M()
    try:
        m.ParseFromString(payload)
    except DecodeError as e:
        raise StreamProtocolError(f"not a StreamMessage: {e}") from None
    if m.kind not in (_M.OPEN, _M.DATA, _M.CREDIT, _M.CLOSE, _M.RESET):
        raise StreamProtocolError(f"stream message of unknown kind {m.kind}")
    if m.id == 0:
        raise StreamProtocolError("stream message without a stream id")
    if len(m.label) > MAX_LABEL:
        raise StreamProtocolError(f"stream label of {len(m.label)} characters (at most {MAX_LABEL})")
    if m.kind == _M.DATA and not m.data:
        raise StreamProtocolError("empty DATA")
    if m.kind != _M.DATA and m.data:
        raise StreamProtocolError("data in a message that is not DATA")
    return m


class Stream:
    """One stream's state (read it; change it through :class:`StreamCore`)."""

    def __init__(self, key: StreamKey, label: str) -> None:
        self.key = key
        self.label = label
        #: Bytes the peer still lets this side send.
        self.credit = 0
        #: Bytes accepted from the application, not sent yet.
        self.send_buf: deque[bytes] = deque()
        self.send_buffered = 0
        #: Bytes received, not read yet.
        self.recv_buf: deque[bytes] = deque()
        self.recv_buffered = 0
        #: Bytes this side still lets the peer send (granted, not received).
        self.granted = 0
        #: Bytes read since the last grant.
        self.consumed = 0
        self.local_closed = False  # the application closed its side
        self.close_sent = False
        self.remote_closed = False  # the peer's CLOSE came
        self.bytes_sent = 0
        self.bytes_received = 0
        self.high_water = 0  # most bytes this stream held at once (both buffers)
        self.blocked = False  # a write was refused or cut: say Writable when room comes

    @property
    def peer(self) -> str:
        return self.key[0]

    @property
    def eof(self) -> bool:
        """Everything the peer will send has been read."""
        return self.remote_closed and not self.recv_buffered

    def _mark(self) -> None:
        held = self.send_buffered + self.recv_buffered
        if held > self.high_water:
            self.high_water = held

    def info(self) -> dict[str, object]:
        return {"peer": self.peer, "outgoing": self.key[1], "number": self.key[2],
                "label": self.label, "credit": self.credit,
                "send_buffered": self.send_buffered, "recv_buffered": self.recv_buffered,
                "granted": self.granted, "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received, "high_water": self.high_water,
                "local_closed": self.local_closed, "remote_closed": self.remote_closed}


class StreamCore:
    """Every stream of one node (see the module docstring)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits if limits is not None else Limits()
        self.streams: dict[StreamKey, Stream] = {}
        self._next = 1
        self._sends: list[Send] = []
        self._events: list[StreamEvent] = []
        #: Counters for ``/metrics``.
        self.counts: dict[str, int] = {"opened": 0, "accepted": 0, "refused": 0, "closed": 0,
                                       "reset": 0, "violations": 0, "bytes_sent": 0,
                                       "bytes_received": 0}

    # -- the application's side -------------------------------------------------
    def open(self, peer: str, label: str = "") -> Stream:
        """A new stream to ``peer`` (OPEN queued with this side's receive window)."""
        if len(label) > MAX_LABEL:
            raise StreamError(f"label of {len(label)} characters (at most {MAX_LABEL})")
        if self.open_with(peer) >= self.limits.max_streams:
            raise TooManyStreams(f"{peer} already has {self.limits.max_streams} open streams")
        key = (peer, True, self._next)
        self._next += 1
        s = Stream(key, label)
        s.granted = self.limits.window
        self.streams[key] = s
        self.counts["opened"] += 1
        self._send(s, _M(kind=_M.OPEN, credit=s.granted, label=label))
        return s

    def open_with(self, peer: str) -> int:
        return sum(1 for k in self.streams if k[0] == peer)

    def get(self, key: StreamKey) -> Stream:
        s = self.streams.get(key)
        if s is None:
            raise StreamError(f"no stream {key[2]} ({'to' if key[1] else 'from'} {key[0]})")
        return s

    def room(self, key: StreamKey) -> int:
        """Bytes :meth:`write` would take now."""
        s = self.get(key)
        return max(0, s.credit + self.limits.send_buffer - s.send_buffered)

    def write(self, key: StreamKey, data: bytes) -> int:
        """Take up to :meth:`room` bytes of ``data``; returns how many (0: full, wait
        for :class:`Writable`)."""
        s = self.get(key)
        if s.local_closed:
            raise StreamClosedError(f"stream {key[2]} is closed for writing")
        take = min(len(data), max(0, s.credit + self.limits.send_buffer - s.send_buffered))
        if take < len(data):
            s.blocked = True
        if take:
            s.send_buf.append(bytes(data[:take]))
            s.send_buffered += take
            s._mark()
            self._flush(s)
        return take

    def read(self, key: StreamKey, limit: int = -1) -> bytes:
        """Up to ``limit`` buffered bytes (all if negative); reading grants credit."""
        s = self.get(key)
        out: list[bytes] = []
        want = s.recv_buffered if limit < 0 else min(limit, s.recv_buffered)
        got = 0
        while got < want:
            piece = s.recv_buf[0]
            if len(piece) <= want - got:
                s.recv_buf.popleft()
            else:
                s.recv_buf[0] = piece[want - got:]
                piece = piece[:want - got]
            out.append(piece)
            got += len(piece)
        s.recv_buffered -= got
        s.consumed += got
        if s.consumed and s.consumed >= self.limits.window // 2 and not s.remote_closed:
            s.granted += s.consumed
            self._send(s, _M(kind=_M.CREDIT, credit=s.consumed))
            s.consumed = 0
        self._maybe_done(s)
        return b"".join(out)

    def close(self, key: StreamKey) -> None:
        """No more writes from this side; CLOSE follows the buffered bytes."""
        s = self.get(key)
        s.local_closed = True
        self._flush(s)

    def reset(self, key: StreamKey, error: str = "reset") -> None:
        s = self.streams.get(key)
        if s is None:
            return
        self._send(s, _M(kind=_M.RESET, error=error[:MAX_ERROR]))
        self._drop(s, error, by_peer=False)

    def peer_gone(self, peer: str) -> None:
        """The session with ``peer`` closed: its streams are reset."""
        for s in [s for k, s in self.streams.items() if k[0] == peer]:
            self._drop(s, "session closed", by_peer=True)

    def take_sends(self) -> list[Send]:
        out, self._sends = self._sends, []
        return out

    def take_events(self) -> list[StreamEvent]:
        out, self._events = self._events, []
        return out

    # -- the peer's side ----------------------------------------------------------
    def receive(self, peer: str, payload: bytes) -> None:
        """One STREAM frame's payload from ``peer``. Raises :class:`StreamProtocolError`
        for a violation (the caller reports it); the stream concerned is reset."""
        m = decode(payload)
        key = (peer, not m.opener, m.id)
        if m.kind == _M.OPEN:
            self._on_open(peer, m, key)
            return
        s = self.streams.get(key)
        if s is None:
            return  # a stream already reset or finished here: late frames are normal
        if m.kind == _M.DATA:
            self._on_data(s, bytes(m.data))
        elif m.kind == _M.CREDIT:
            if m.credit == 0 or s.credit + m.credit > MAX_CREDIT:
                self._violation(s, f"CREDIT of {m.credit} bytes")
            s.credit += m.credit
            self._flush(s)
        elif m.kind == _M.CLOSE:
            if s.remote_closed:
                self._violation(s, "second CLOSE")
            s.remote_closed = True
            s.granted = 0
            self._events.append(Readable(s.key))
            self._maybe_done(s)
        else:  # RESET
            self._drop(s, m.error[:MAX_ERROR] or "reset by peer", by_peer=True)

    def _on_open(self, peer: str, m: frame_pb2.StreamMessage, key: StreamKey) -> None:
        if not m.opener:
            raise StreamProtocolError("OPEN of a stream this node opened")
        if key in self.streams:
            self._violation(self.streams[key], f"second OPEN of stream {m.id}")
        if self.open_with(peer) >= self.limits.max_streams:
            self.counts["refused"] += 1
            self._sends.append(Send(peer, encode(_M(kind=_M.RESET, id=m.id, opener=False,
                                                      error="too many streams")), False))
            return
        s = Stream(key, m.label)
        if m.credit > MAX_CREDIT:
            raise StreamProtocolError(f"OPEN with {m.credit} bytes of credit")
        s.credit = m.credit
        s.granted = self.limits.window
        self.streams[key] = s
        self.counts["accepted"] += 1
        self._send(s, _M(kind=_M.CREDIT, credit=s.granted))
        self._events.append(Opened(key, m.label))

    def _on_data(self, s: Stream, data: bytes) -> None:
        if s.remote_closed:
            self._violation(s, "DATA after CLOSE")
        if len(data) > s.granted:
            self._violation(s, f"{len(data)} bytes of DATA beyond the {s.granted} granted")
        s.granted -= len(data)
        s.recv_buf.append(data)
        s.recv_buffered += len(data)
        s.bytes_received += len(data)
        self.counts["bytes_received"] += len(data)
        s._mark()
        self._events.append(Readable(s.key))

    def _violation(self, s: Stream, detail: str) -> None:
        self.counts["violations"] += 1
        self.reset(s.key, "protocol violation")
        raise StreamProtocolError(f"stream {s.key[2]}: {detail}")

    # -- internals ------------------------------------------------------------------
    def _send(self, s: Stream, m: frame_pb2.StreamMessage) -> None:
        m.id = s.key[2]
        m.opener = s.key[1]
        # CLOSE goes in the bulk class too: it must not overtake the stream's DATA.
        self._sends.append(Send(s.peer, encode(m), m.kind in (_M.DATA, _M.CLOSE)))

    def _flush(self, s: Stream) -> None:
        chunk = self.limits.chunk
        while s.send_buffered and s.credit > 0:
            piece = s.send_buf.popleft()
            n = min(len(piece), chunk, s.credit)
            if n < len(piece):
                s.send_buf.appendleft(piece[n:])
                piece = piece[:n]
            s.send_buffered -= n
            s.credit -= n
            s.bytes_sent += n
            self.counts["bytes_sent"] += n
            self._send(s, _M(kind=_M.DATA, data=piece))
        if s.local_closed and not s.send_buffered and not s.close_sent:
            s.close_sent = True
            self._send(s, _M(kind=_M.CLOSE))
        if s.blocked and not s.local_closed and \
                s.credit + self.limits.send_buffer - s.send_buffered > 0:
            s.blocked = False
            self._events.append(Writable(s.key))
        self._maybe_done(s)

    def _maybe_done(self, s: Stream) -> None:
        if s.close_sent and s.eof and s.key in self.streams:
            del self.streams[s.key]
            self.counts["closed"] += 1
            self._events.append(Closed(s.key))

    def _drop(self, s: Stream, error: str, *, by_peer: bool) -> None:
        if self.streams.pop(s.key, None) is None:
            return
        s.send_buf.clear()
        s.send_buffered = 0
        self.counts["reset"] += 1
        self._events.append(Reset(s.key, error, by_peer))

