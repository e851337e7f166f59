"""The WebSocket at ``/network``: every event of the node's bus, as JSON text frames.

The bearer token is checked before the upgrade (401 from the resource) and
again in the handshake (``onConnect``), so the protocol is safe on its own too.
A client that falls too far behind (``max_buffered`` bytes unsent) is dropped
rather than letting the node's memory grow.

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
from typing import Any

import txaio
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger, LogLevel
from twisted.web.server import Request

from .. import _json as strict_json
from ..events import EventBus
from ._web import Authorizer

LIBRARY_DEBUG_ENV = "AEGIS_HIDDEN_LIBRARY_DEBUG"
_LEVELS = ("none", "critical", "error", "warn", "info", "debug", "trace")


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

    def onConnect(self, request: Any) -> None:
        token = None
        header = request.headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
        elif request.params.get("access_token"):
            token = request.params["access_token"][0]
        if not self.factory.auth.check(token):
            raise ConnectionDeny(401, "missing or wrong bearer token")

    def onOpen(self) -> None:
        self._unsubscribe = self.factory.bus.subscribe(self._event)
        self.factory.clients.add(self)
        self.sendMessage(json.dumps({"type": "hello", "node": self.factory.node}).encode())

    def _event(self, event: dict[str, Any]) -> None:
        buffered = unsent_bytes(self.transport)
        if buffered > self.factory.max_buffered:
            self._log.warn("dropping a WebSocket client that is {n} bytes behind", n=buffered)
            self.dropConnection(abort=True)
            return
        try:
            text = strict_json.dumps(event, default=str)
        except ValueError as e:  # NaN/Infinity: never send what JSON.parse throws on
            self._log.error("event {type} not encodable as JSON: {error}",
                            type=event.get("type"), error=str(e))
            text = strict_json.dumps({"type": "error", "error": f"a {event.get('type')!s:.50} "
                                      "event held a non-finite number and was dropped"})
        self.sendMessage(text.encode())

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
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe is not None:
            unsubscribe()
        self.factory.clients.discard(self)


class EventsFactory(WebSocketServerFactory):
    protocol = EventsProtocol  # type: ignore[assignment]
    log = LibraryLogger("autobahn.websocket.factory")

    def __init__(self, bus: EventBus, auth: Authorizer, node: str, *, reactor: Any,
                 url: str | None = None, max_buffered: int = 4 * 1024 * 1024) -> None:
        super().__init__(url, reactor=reactor)
        self.bus = bus
        self.auth = auth
        self.node = node
        self.max_buffered = max_buffered
        self.clients: set[EventsProtocol] = set()


class EventsResource(WebSocketResource):
    """``/network``: refuses an upgrade without the token with a plain 401."""

    def __init__(self, factory: EventsFactory) -> None:
        super().__init__(factory)
        self._auth = factory.auth

    def render(self, request: Request) -> bytes | int:
        refused = self._auth.authorize(request, allow_query=True)
        if refused is not None:
            return refused
        result: bytes | int = super().render(request)
        return result
