"""The WebSocket at ``/network``: every event of the node's bus, as JSON text frames.

The bearer token is checked before the upgrade (401 from the resource) and
again in the handshake (``onConnect``), so the protocol is safe on its own too.
A client that falls too far behind (``max_buffered`` bytes unsent) is dropped
rather than letting the node's memory grow.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger
from twisted.web.server import Request

from ..events import EventBus
from ._web import Authorizer, bearer_token


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
    log = Logger()
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
            self.log.warn("dropping a WebSocket client that is {n} bytes behind", n=buffered)
            self.dropConnection(abort=True)
            return
        self.sendMessage(json.dumps(event, default=str).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            obj = json.loads(payload)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("type") == "ping":
            self.sendMessage(json.dumps({"type": "pong", "data": obj.get("data")}).encode())
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
        if not self._auth.check(bearer_token(request, allow_query=True)):
            return self._auth.refuse(request)
        result: bytes | int = super().render(request)
        return result
