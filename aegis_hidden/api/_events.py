"""The WebSocket at ``/network``: every event of the node's bus, as JSON text frames.

The bearer token is checked before the upgrade (401 from the resource) and
again in the handshake (``onConnect``), so the protocol is safe on its own too.
Every event gets a sequence number ``seq`` (1, 2, ... for the life of the
process) and, where it names a peer as ``peer``, the seed's field name
``peer_id`` too. The factory keeps the last events in a ring
(:data:`HISTORY_EVENTS` events, at most :data:`HISTORY_BYTES` bytes of JSON);
a client that connects with ``/network?since=SEQ`` first gets every kept event
after ``SEQ`` (and a ``history_gap`` event if some were already dropped).

A client's backlog (bytes written to it and not yet sent) is measured over
time, every ``check_interval`` seconds on the injected reactor: it is cut off
only when the backlog stayed above ``max_buffered`` and did not shrink for
``max_strikes`` checks in a row (a client that reads, however far behind a
burst left it, keeps its connection), or at once past ``hard_limit`` bytes
(the node's memory bound). A client that was cut off resumes with ``since``.

autobahn logs through :class:`LibraryLogger`, never a plain twisted ``Logger``:
its debug and trace output (the raw opening handshake with ``Authorization:
Bearer`` and ``?access_token=``, every frame with the message plaintext) stays
out of the node log at every ``log_level``, unless the operator sets
``AEGIS_HIDDEN_LIBRARY_DEBUG=1`` (docs/configuration.md); its info and warning
lines follow the node's ``log_level`` like everything else.
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import Any

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.web.server import Request

from .. import _json as strict_json
from ..events import EventBus
from ._web import Authorizer, method_not_allowed

LIBRARY_DEBUG_ENV = "AEGIS_HIDDEN_LIBRARY_DEBUG"
_LEVELS = ("none", "critical", "error", "warn", "info", "debug", "trace")
HISTORY_EVENTS = 1000  # events kept for ``?since=`` (docs/api.md)
HISTORY_BYTES = 32 * 1024 * 1024  # ... and at most this much JSON


def library_log_level() -> str:
    """The most autobahn may log: the node's level (``txaio``'s global level, which
    ``tap`` sets from ``log_level``), but never below ``info`` unless asked for."""
    level = str(getattr(txaio, "get_global_log_level", lambda: "info")())
    if level not in _LEVELS:
        level = "info"
    if os.environ.get(LIBRARY_DEBUG_ENV, "") not in ("", "0") or \
            _LEVELS.index(level) <= _LEVELS.index("info"):
        return level
    return "info"


def check_socket_token(request: Any, auth: Any) -> None:
    """A WebSocket handshake's bearer token (header, else ``access_token``): refused
    with 401 unless ``auth`` accepts it (the event stream and the stream sockets)."""
    token = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    elif request.params.get("access_token"):
        token = request.params["access_token"][0]
    if not auth.check(token):
        raise ConnectionDeny(401, "missing or wrong bearer token")


class LibraryLogger:
    """A txaio-compatible logger for autobahn that filters by level on every call.

    autobahn calls ``self.log.<level>(format, **fields)`` (and ``trace``, which
    twisted's ``Logger`` lacks); events at or above :func:`library_log_level`
    go on to a twisted ``Logger``, the rest are dropped before any formatting.
    """

    def __init__(self, namespace: str) -> None:
        self._logger = Logger(namespace=namespace)

    def __get__(self, instance: object, owner: Any = None) -> LibraryLogger:
        return self  # one logger per class, like txaio's

    def _on(self, level: str) -> bool:
        return _LEVELS.index(level) <= _LEVELS.index(library_log_level())

    def _emit(self, level: str, format: str | None, /, **kw: Any) -> None:
        if self._on(level):
            tx_level = LogLevel.debug if level == "trace" else LogLevel.lookupByName(level)
            self._logger.emit(tx_level, format, **kw)

    def emit(self, level: str, format: str | None = None, /, **kw: Any) -> None:
        self._emit(level, format, **kw)

    def critical(self, format: str | None = None, /, **kw: Any) -> None:
        self._emit("critical", format, **kw)

    def error(self, format: str | None = None, /, **kw: Any) -> None:
        self._emit("error", format, **kw)

    def warn(self, format: str | None = None, /, **kw: Any) -> None:
        self._emit("warn", format, **kw)

    def info(self, format: str | None = None, /, **kw: Any) -> None:
        self._emit("info", format, **kw)

    def debug(self, format: str | None = None, /, **kw: Any) -> None:
        self._emit("debug", format, **kw)

    def trace(self, format: str | None = None, /, **kw: Any) -> None:
        self._emit("trace", format, **kw)

    def failure(self, format: str | None = None, failure: Any = None, **kw: Any) -> None:
        if self._on("error"):
            self._logger.failure(format or "", failure, **kw)


SINCE_ERROR = "since must be an event seq: a non-negative integer of at most 18 digits"


def valid_since(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) <= 18


def unsent_bytes(transport: Any) -> int:
    """Bytes written to ``transport`` but not yet sent (0 when it cannot tell).

    Twisted has no interface for this; a TCP transport (``FileDescriptor``) keeps
    ``dataBuffer`` + ``_tempDataLen``, an in-memory iosim one keeps ``stream``.
    """
    if hasattr(transport, "dataBuffer"):
        return (len(transport.dataBuffer) - getattr(transport, "offset", 0)
                + getattr(transport, "_tempDataLen", 0))
    stream = getattr(transport, "stream", None)
    if isinstance(stream, list):
        return sum(len(chunk) for chunk in stream)
    return 0


class EventsProtocol(WebSocketServerProtocol):
    log = LibraryLogger("autobahn.websocket.server")  # autobahn's own output goes here
    _log = Logger()  # ours
    factory: EventsFactory
    _since: int | None = None
    _strikes = 0
    _last_backlog = 0
    _checker: LoopingCall | None = None

    def onConnect(self, request: Any) -> None:
        check_socket_token(request, self.factory.auth)
        since = request.params.get("since")
        if since:
            if not valid_since(since[0]):
                raise ConnectionDeny(400, SINCE_ERROR)
            self._since = int(since[0])

    def onOpen(self) -> None:
        self.factory.clients.add(self)
        self.sendMessage(json.dumps({"type": "hello", "node": self.factory.node,
                                     "seq": self.factory.seq}).encode())
        if self._since is not None:
            self.factory.replay(self, self._since)
        if self.factory.check_interval > 0:
            self._checker = LoopingCall(self._check_backlog)
            self._checker.clock = self.factory.reactor
            self._checker.start(self.factory.check_interval, now=False)

    def send_event(self, text: bytes) -> None:
        """Queue one encoded event; only the hard limit cuts off here."""
        buffered = unsent_bytes(self.transport)
        if buffered > self.factory.hard_limit:
            self._drop(buffered)
            return
        self.sendMessage(text)

    def _check_backlog(self) -> None:
        backlog = unsent_bytes(self.transport)
        if backlog <= self.factory.max_buffered:
            self._strikes = 0
        elif backlog >= self._last_backlog:  # above the bound and not draining
            self._strikes += 1
        self._last_backlog = backlog
        if self._strikes >= self.factory.max_strikes:
            self._drop(backlog)

    def _drop(self, backlog: int) -> None:
        self._log.warn("dropping a WebSocket client that stayed {n} bytes behind (it can "
                       "resume with ?since={seq})", n=backlog, seq=self.factory.seq)
        self._stop_checker()
        self.factory.clients.discard(self)
        self.dropConnection(abort=True)

    def _stop_checker(self) -> None:
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        self._checker = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            obj = strict_json.loads(payload)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("type") == "ping":
            self.sendMessage(strict_json.dumps({"type": "pong", "data": obj.get("data")})
                             .encode())
        else:
            self.sendMessage(json.dumps({"type": "error", "error": "this socket only "
                                         "accepts {\"type\": \"ping\"}"}).encode())

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._stop_checker()
        self.factory.clients.discard(self)


class EventsFactory(WebSocketServerFactory):
    """One bus subscription for every client: numbers, encodes and keeps each event once.

    ``max_buffered`` / ``max_strikes`` / ``check_interval``: a client is cut off when
    its unsent backlog stayed above ``max_buffered`` bytes, without shrinking, for
    ``max_strikes`` checks ``check_interval`` seconds apart; ``hard_limit``: at once
    past this many unsent bytes. ``history_events`` / ``history_bytes``: the ring
    that ``?since=`` replays from.
    """

    protocol = EventsProtocol  # type: ignore[assignment]
    log = LibraryLogger("autobahn.websocket.factory")
    _log = Logger()

    def __init__(self, bus: EventBus, auth: Authorizer, node: str, *, reactor: Any,
                 url: str | None = None, max_buffered: int = 4 * 1024 * 1024,
                 hard_limit: int = 64 * 1024 * 1024, check_interval: float = 2.0,
                 max_strikes: int = 5, history_events: int = HISTORY_EVENTS,
                 history_bytes: int = HISTORY_BYTES) -> None:
        super().__init__(url, reactor=reactor)
        self.bus = bus
        self.auth = auth
        self.node = node
        self.max_buffered = max_buffered
        self.hard_limit = hard_limit
        self.check_interval = check_interval
        self.max_strikes = max_strikes
        self.history_bytes = history_bytes
        self.history: deque[tuple[int, bytes]] = deque(maxlen=history_events)
        self._history_size = 0
        self.seq = 0
        self.clients: set[EventsProtocol] = set()
        self._unsubscribe = bus.subscribe(self._event)

    def _event(self, event: dict[str, Any]) -> None:
        self.seq += 1
        event = {**event, "seq": self.seq}
        if "peer" in event and "peer_id" not in event:
            event["peer_id"] = event["peer"]  # the seed spec's name for it
        try:
            text = strict_json.dumps(event, default=str).encode()
        except ValueError as e:  # NaN/Infinity: never send what JSON.parse throws on
            self._log.error("event {type} not encodable as JSON: {error}",
                            type=event.get("type"), error=str(e))
            text = strict_json.dumps({"type": "error", "seq": self.seq, "error": f"a "
                                      f"{event.get('type')!s:.50} event held a non-finite "
                                      "number and was dropped"}).encode()
        self._remember(self.seq, text)
        for client in list(self.clients):
            client.send_event(text)

    def _remember(self, seq: int, text: bytes) -> None:
        if len(self.history) == self.history.maxlen:
            self._history_size -= len(self.history[0][1])
        self.history.append((seq, text))
        self._history_size += len(text)
        while self._history_size > self.history_bytes and len(self.history) > 1:
            self._history_size -= len(self.history.popleft()[1])

    def replay(self, client: EventsProtocol, since: int) -> None:
        """Send ``client`` every kept event after ``since`` (a gap notice first if some
        were no longer kept)."""
        oldest = self.history[0][0] if self.history else self.seq + 1
        if since + 1 < oldest and since < self.seq:
            client.sendMessage(strict_json.dumps({
                "type": "history_gap", "since": since, "oldest": oldest,
                "lost": oldest - since - 1}).encode())
        for seq, text in list(self.history):
            if seq > since:
                client.send_event(text)

    def stop(self) -> None:
        self._unsubscribe()


class EventsResource(WebSocketResource):
    """``/network``: refuses an upgrade without the token with a plain 401, any
    method but GET with a 405 (``Allow: GET``), and a GET that does not ask for a
    WebSocket upgrade with a 426 (never autobahn's HTML version page)."""

    def __init__(self, factory: EventsFactory, streams: Any = None) -> None:
        super().__init__(factory)
        self._auth = factory.auth
        #: ``/network/streams/{id}`` (``_streams.StreamSocketResource``), if any
        self.streams = streams

    def render(self, request: Request) -> bytes | int:
        if self.streams is not None and (request.postpath or [b""])[0] == b"streams":
            result: bytes | int = self.streams.render(request)
            return result
        refused = self._auth.authorize(request, allow_query=True)
        if refused is not None:
            return refused
        if request.method != b"GET":
            return method_not_allowed(request, "GET")
        since = (request.args or {}).get(b"since")
        if since and not valid_since(bytes(since[0]).decode("latin-1")):
            request.setResponseCode(400)
            request.setHeader("content-type", "application/json")
            request.setHeader("cache-control", "no-store")
            return strict_json.dumps({"error": SINCE_ERROR, "field": "since"}).encode()
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade != b"websocket":
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader("upgrade", "websocket")
            request.setHeader("connection", "Upgrade")
            request.setHeader("content-type", "application/json")
            request.setHeader("cache-control", "no-store")
            return strict_json.dumps({
                "error": "/network is a WebSocket: send a GET with \"Upgrade: websocket\" "
                         "(e.g. new WebSocket(\"ws://HOST/network?access_token=TOKEN\"))",
                "field": None}).encode()
        upgraded: bytes | int = super().render(request)
        return upgraded
