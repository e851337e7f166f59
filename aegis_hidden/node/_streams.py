"""The node's byte streams: the stream core (:mod:`aegis_hidden.streams`) on the
``stream`` channel of every session.

:class:`StreamService` feeds the STREAM frames of each session to one
:class:`~aegis_hidden.streams.StreamCore` and sends what it returns: DATA and
CLOSE in the session's bulk class (:meth:`PeerLink.send_bulk`), so the
messaging, rpc, pubsub and control frames of the same session go first and
wait at most the rest of one DATA chunk. A session that closes resets its
streams.

Streams have ids for the API (``"1"``, ``"2"``... for the life of the process).
The application side of a stream is a :class:`StreamWatcher` (the API's
WebSocket ``/network/streams/{id}``): it is told when there is something to
read, when the stream takes writes again, and when it ends. Until one
attaches, an incoming stream's bytes wait in the core, at most one window: the
peer is held by its credit, not buffered here without bound.

The limits (window, send buffer, chunk, streams per peer) are the ``streams.*``
configuration keys (:func:`limits_from_config`) unless the caller passes others.

Events on the bus: ``stream_opened`` (``stream``, ``peer``, ``label``,
``direction``), ``stream_closed`` and ``stream_reset`` (``error``).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..config import Config
from ..streams import (
    Closed,
    Limits,
    Opened,
    Readable,
    Reset,
    Stream,
    StreamCore,
    StreamError,
    StreamKey,
    StreamProtocolError,
    Writable,
)
from ._channels import Channel, send_frame

__all__ = ["StreamService", "StreamWatcher", "UnknownStream", "limits_from_config"]


def limits_from_config(config: Config) -> Limits:
    """The stream core's :class:`Limits` from the ``streams`` section (validated there:
    a value out of range is a :class:`~aegis_hidden.config.ConfigError` naming its key)."""
    s = config.streams
    return Limits(window=s.window, send_buffer=s.send_buffer, chunk=s.chunk,
                  max_streams=s.max_streams_per_peer)


class UnknownStream(StreamError):
    """No stream with that id (never opened, or over)."""


class StreamWatcher(Protocol):
    def readable(self) -> None: ...

    def writable(self) -> None: ...

    def ended(self, error: str | None) -> None: ...


class StreamService(Service):
    """Streams on the ``stream`` channel (its ``name`` is ``"streams"``)."""

    log = Logger()
    name = "streams"

    def __init__(self, core: Any, limits: Limits | None = None) -> None:
        """``limits``: None for the node's configuration (``core.config.streams``)."""
        self._core = core
        self.core = StreamCore(limits if limits is not None
                               else limits_from_config(core.config))
        self._ids: dict[str, StreamKey] = {}
        self._keys: dict[StreamKey, str] = {}
        self._watchers: dict[str, StreamWatcher] = {}
        self._next = 1
        self._pumping = False
        self._pump_again = False
        #: most bytes held by all streams at once (send + receive buffers)
        self.high_water = 0
        core.channels.register(Channel.STREAM, self._receive)
        core.channels.on_disconnected(self._gone)
        core.streams = self
        m = core.metrics
        c = self.core.counts
        m.gauge("streams_open", "Byte streams open now (both directions).",
                lambda: len(self.core.streams))
        m.gauge("streams_buffered_bytes", "Bytes held by the open streams now (not yet "
                "sent within the peer's credit, or received and not yet read).", self.buffered)
        for name, doc in (("opened", "Streams this node opened."),
                          ("accepted", "Streams peers opened to this node."),
                          ("refused", "Streams refused: the peer had too many open."),
                          ("reset", "Streams reset (by either side, or a violation)."),
                          ("violations", "Stream frames that broke the protocol."),
                          ("bytes_sent", "Stream bytes sent."),
                          ("bytes_received", "Stream bytes received.")):
            m.gauge(f"streams_{name}", doc + " (since start)",
                    lambda name=name: c[name])

    # -- the API's side -----------------------------------------------------------
    def open(self, peer: str, label: str = "") -> Deferred[str]:
        """Open a stream to ``peer`` (dialling it if needed); fires with its id."""
        return Deferred.fromCoroutine(self._open(peer, label))

    async def _open(self, peer: str, label: str) -> str:
        await self._core.channels.link(peer, dial=True)
        s = self.core.open(peer, label)
        sid = self._name(s.key)
        self._core.events.emit("stream_opened", stream=sid, peer=peer, label=label,
                               direction="out")
        self._pump()
        return sid

    def key(self, sid: str) -> StreamKey:
        key = self._ids.get(sid)
        if key is None or key not in self.core.streams:
            raise UnknownStream(f"no stream {sid!r}")
        return key

    def info(self, sid: str) -> dict[str, Any]:
        s = self.core.get(self.key(sid))
        return {"id": sid, **s.info(), "room": self.core.room(s.key),
                "attached": sid in self._watchers}

    def list(self) -> list[dict[str, Any]]:
        return [self.info(sid) for sid in sorted(self._ids, key=int)
                if self._ids[sid] in self.core.streams]

    def buffered(self) -> int:
        return sum(s.send_buffered + s.recv_buffered for s in self.core.streams.values())

    def attach(self, sid: str, watcher: StreamWatcher) -> Stream:
        key = self.key(sid)
        if sid in self._watchers:
            raise StreamError(f"stream {sid} already has a reader")
        self._watchers[sid] = watcher
        return self.core.get(key)

    def detach(self, sid: str) -> None:
        self._watchers.pop(sid, None)

    def write(self, sid: str, data: bytes) -> int:
        took = self.core.write(self.key(sid), data)
        self._pump()
        return took

    def read(self, sid: str, limit: int = -1) -> bytes:
        data = self.core.read(self.key(sid), limit)
        self._pump()
        return data

    def eof(self, sid: str) -> bool:
        return self.core.get(self.key(sid)).eof

    def close(self, sid: str) -> None:
        self.core.close(self.key(sid))
        self._pump()

    def reset(self, sid: str, error: str = "reset") -> None:
        self.core.reset(self.key(sid), error)
        self._pump()

    # -- the sessions' side ---------------------------------------------------------
    def _name(self, key: StreamKey) -> str:
        sid = self._keys.get(key)
        if sid is None:
            sid = str(self._next)
            self._next += 1
            self._ids[sid] = key
            self._keys[key] = sid
        return sid

    def _receive(self, peer: str, payload: bytes) -> None:
        try:
            self.core.receive(peer, payload)
        except StreamProtocolError as e:
            self._core.channels.violation(peer, f"stream: {e}")
        self._pump()

    def _gone(self, peer: str) -> None:
        self.core.peer_gone(peer)
        self._pump()

    def _pump(self) -> None:
        """Send what the core wants sent and hand out its events. Not re-entered: a send
        can bring the peer's answer back before it returns (an in-memory link), and its
        frames must leave after the ones already taken, in the core's order."""
        if self._pumping:
            self._pump_again = True
            return
        self._pumping = True
        try:
            self._pump_again = True
            while self._pump_again:
                self._pump_again = False
                self._pump_once()
        finally:
            self._pumping = False

    def _pump_once(self) -> None:
        held = self.buffered()
        if held > self.high_water:
            self.high_water = held
        for send in self.core.take_sends():
            link = self._core.pool.link(send.peer)
            try:
                if link is None:
                    raise ConnectionError(f"no session with {send.peer}")
                send_frame(link, Channel.STREAM, send.payload, bulk=send.bulk)
            except Exception as e:  # noqa: BLE001 - a closed session: its streams are over
                self.log.info("stream frame to {peer} not sent: {error}", peer=send.peer,
                              error=str(e))
                self.core.peer_gone(send.peer)
        for event in self.core.take_events():
            self._event(event)

    def _event(self, event: Any) -> None:
        if isinstance(event, Opened):
            sid = self._name(event.key)
            self._core.events.emit("stream_opened", stream=sid, peer=event.key[0],
                                   label=event.label, direction="in")
            return
        known = self._keys.get(event.key)
        if known is None:
            return
        sid = known
        watcher = self._watchers.get(sid)
        live = event.key in self.core.streams  # not ended later in the same batch
        if isinstance(event, Readable):
            if watcher is not None and live:
                watcher.readable()
        elif isinstance(event, Writable):
            if watcher is not None and live:
                watcher.writable()
        elif isinstance(event, Closed | Reset):
            error = event.error if isinstance(event, Reset) else None
            self._forget(sid, event.key)
            if error is None:
                self._core.events.emit("stream_closed", stream=sid, peer=event.key[0])
            else:
                self._core.events.emit("stream_reset", stream=sid, peer=event.key[0],
                                       error=error)
            if watcher is not None:
                watcher.ended(error)

    def _forget(self, sid: str, key: StreamKey) -> None:
        self._ids.pop(sid, None)
        self._keys.pop(key, None)
        self._watchers.pop(sid, None)
