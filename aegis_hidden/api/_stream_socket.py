"""The WebSocket ``/network/streams/{id}``: one stream's bytes (docs/streams.md and
``_streams``, which describes the messages and the backpressure)."""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.server import Request

from .. import _json as strict_json
from ..node import UnknownStream
from ..streams import StreamError
from ._events import LibraryLogger, check_socket_token, unsent_bytes
from ._web import Authorizer, method_not_allowed

JSON = dict[str, Any]
#: the most bytes the node leaves unsent on a stream's WebSocket before it stops reading
SOCKET_BACKLOG = 256 * 1024
#: the most bytes read from a stream into one WebSocket message
MESSAGE_BYTES = 64 * 1024
#: the largest WebSocket message a client may send
MAX_CLIENT_MESSAGE = 1024 * 1024
RETRY_SECONDS = 0.02


class StreamSocket(WebSocketServerProtocol):
    """One stream's bytes over one WebSocket (see the module docstring)."""

    log = LibraryLogger("autobahn.websocket.server")
    _log = Logger()
    factory: StreamSocketFactory
    sid = ""
    _attached = False
    _ended = False
    _close_asked = False
    _eof_sent = False
    _retry: IDelayedCall | None = None
    _reading = False
    _again = False
    _writing = False
    _write_again = False

    def onConnect(self, request: Any) -> None:
        check_socket_token(request, self.factory.auth)
        parts = request.path.strip("/").split("/")
        if len(parts) != 3 or parts[:2] != ["network", "streams"]:
            raise ConnectionDeny(404, "no such stream")
        self.sid = parts[2]
        self._pending = bytearray()
        try:
            self.factory.service().attach(self.sid, self)
        except StreamError as e:
            raise ConnectionDeny(404 if isinstance(e, UnknownStream) else 409, str(e)) from None
        self._attached = True

    def onOpen(self) -> None:
        try:
            info = self.factory.service().info(self.sid)
        except UnknownStream:
            self.ended("the stream ended before its socket opened")
            return
        self._text({"type": "open", **info})
        self.readable()

    # -- StreamWatcher --------------------------------------------------------------
    def readable(self) -> None:
        """Send what the stream holds, while this socket's backlog allows. A read grants
        credit, and the bytes it lets in can make the stream readable again before the
        read returns: that nested call only asks for another round, so the messages
        keep the stream's order."""
        if self._reading:
            self._again = True
            return
        self._reading = True
        try:
            self._again = True
            while self._again:
                self._again = False
                self._send_readable()
        finally:
            self._reading = False

    def _send_readable(self) -> None:
        if self._ended or self._eof_sent:
            return
        service = self.factory.service()
        try:
            while unsent_bytes(self.transport) < SOCKET_BACKLOG:
                data = service.read(self.sid, MESSAGE_BYTES)
                if not data:
                    break
                self.sendMessage(data, isBinary=True)
            else:
                self._retry_later()
                return
            if service.eof(self.sid):
                self._eof_sent = True
                self._text({"type": "eof"})
        except UnknownStream:
            return

    def _retry_later(self) -> None:
        if self._retry is None or not self._retry.active():
            self._retry = self.factory.reactor.callLater(RETRY_SECONDS, self.readable)

    def writable(self) -> None:
        if self._pending:
            self._write_pending()

    def ended(self, error: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._attached = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if error is None:
            if not self._eof_sent:  # the peer's CLOSE and the end came in one batch
                self._eof_sent = True
                self._text({"type": "eof"})
            self._text({"type": "closed"})
        else:
            self._text({"type": "reset", "error": error})
        self.sendClose(1000)

    # -- from the client --------------------------------------------------------------
    def _write_pending(self) -> None:
        """Write what the client sent, as far as the stream takes it. A write can let a
        CREDIT in before it returns (the stream is writable again): that nested call
        only asks for another round, so no byte is written twice or out of order."""
        if self._writing:
            self._write_again = True
            return
        service = self.factory.service()
        self._writing = True
        try:
            self._write_again = True
            while self._write_again and self._pending:
                self._write_again = False
                took = service.write(self.sid, bytes(self._pending))
                del self._pending[:took]
        except StreamError as e:
            self._pending.clear()
            self._text({"type": "error", "error": str(e)})
            return
        finally:
            self._writing = False
        transport: Any = self.transport
        if self._pending:
            transport.pauseProducing()  # the client's writes wait in its socket
            return
        transport.resumeProducing()
        if self._close_asked:
            service.close(self.sid)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._ended:
            return
        if isBinary:
            if self._close_asked:
                self._text({"type": "error", "error": "bytes after close"})
                return
            self._pending += payload
            self._write_pending()
            return
        try:
            obj = strict_json.loads(payload)
        except ValueError:
            obj = None
        kind = obj.get("type") if isinstance(obj, dict) else None
        try:
            if kind == "close":
                self._close_asked = True
                if not self._pending:
                    self.factory.service().close(self.sid)
            elif kind == "reset":
                self.factory.service().reset(self.sid, "reset by the application")
            else:
                self._text({"type": "error", "error": "text messages are {\"type\": "
                            "\"close\"} or {\"type\": \"reset\"}; bytes go in binary "
                            "messages"})
        except UnknownStream:
            return

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if not self._attached or self._ended:
            return
        service = self.factory.service()
        service.detach(self.sid)
        try:  # a socket gone mid-stream: the stream cannot go on without its application
            if not (self._close_asked and service.eof(self.sid)):
                service.reset(self.sid, "the application's socket closed")
        except UnknownStream:
            pass

    def _text(self, obj: JSON) -> None:
        self.sendMessage(json.dumps(obj).encode())


class StreamSocketFactory(WebSocketServerFactory):
    protocol = StreamSocket  # type: ignore[assignment]
    log = LibraryLogger("autobahn.websocket.factory")

    def __init__(self, core: Any, auth: Authorizer, *, reactor: Any) -> None:
        super().__init__(None, reactor=reactor)
        self.core = core
        self.auth = auth
        self.setProtocolOptions(maxMessagePayloadSize=MAX_CLIENT_MESSAGE,
                                maxFramePayloadSize=MAX_CLIENT_MESSAGE)

    def service(self) -> Any:
        service = getattr(self.core, "streams", None)
        if service is None:
            raise UnknownStream("streams are not running on this node")
        return service


class StreamSocketResource(WebSocketResource):
    """``/network/streams/{id}`` (reached through ``/network``'s resource)."""

    def __init__(self, factory: StreamSocketFactory) -> None:
        super().__init__(factory)
        self._auth = factory.auth
        self._factory = factory

    def render(self, request: Request) -> bytes | int:
        refused = self._auth.authorize(request, allow_query=True)
        if refused is not None:
            return refused
        if request.method != b"GET":
            return method_not_allowed(request, "GET")
        if (request.getHeader(b"upgrade") or b"").lower() != b"websocket":
            request.setResponseCode(426, b"Upgrade Required")
            request.setHeader("upgrade", "websocket")
            request.setHeader("content-type", "application/json")
            return strict_json.dumps({"error": "/network/streams/{id} is a WebSocket",
                                      "field": None}).encode()
        refused = self._refusal(request)
        if refused is not None:
            return refused
        result: bytes | int = super().render(request)
        return result

    def _refusal(self, request: Request) -> bytes | None:
        """A JSON 404 (no such stream) or 409 (it has a socket already) before the
        upgrade, as the document says; the handshake checks again (a race)."""
        parts = (request.path or b"").decode("ascii", "replace").strip("/").split("/")
        sid = parts[2] if len(parts) == 3 and parts[:2] == ["network", "streams"] else ""
        try:
            attached = bool(self._factory.service().info(sid)["attached"]) if sid else None
        except UnknownStream:
            attached = None
        if attached is None:
            code, error = 404, "no such stream (or it is over)"
        elif attached:
            code, error = 409, f"stream {sid} already has a reader"
        else:
            return None
        request.setResponseCode(code)
        request.setHeader("content-type", "application/json")
        return strict_json.dumps({"error": error, "field": None}).encode()
