"""Byte streams in the API: REST to open and list, a WebSocket per stream for the bytes.

* ``GET  /api/network/streams``: every open stream with its backpressure:
  ``credit`` (bytes the peer still lets this node send), ``send_buffered``
  (taken from the application, not yet sent), ``recv_buffered`` (received, not
  yet read), ``granted``, ``room`` (what a write would take now), bytes sent
  and received, the stream's ``high_water`` mark; and the node's limits;
* ``POST /api/network/streams`` ``{"peer": ONION, "label": TEXT}``: open a
  stream to a peer (201, its ``id``);
* ``GET  /api/network/streams/{id}``: one stream;
* WebSocket ``/network/streams/{id}`` (token as for ``/network``): binary
  messages from the client are written to the stream, binary messages to the
  client are what the peer sent; text messages are JSON: to the node
  ``{"type": "close"}`` (no more bytes from this side) or ``{"type": "reset"}``;
  from the node ``{"type": "open", ...}`` first, ``{"type": "eof"}`` when the
  peer closed and everything was read, ``{"type": "closed"}`` or
  ``{"type": "reset", "error": ...}`` at the end.

Backpressure both ways: when the stream takes no more (the peer's credit and
this node's send buffer are used up), the node stops reading the WebSocket's
connection until it does, so the client's writes block in its own socket; the
node reads from the stream only while the client's connection has less than
:data:`SOCKET_BACKLOG` unsent bytes, so a slow client holds its peer back by
credit, not by memory here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.web.server import Request

from ..node import PeerBlocked, UnknownStream
from ..peers import PeerAddressError, UnknownPeer, check_peer_address
from ..streams import StreamError, TooManyStreams

JSON = dict[str, Any]
class StreamEndpoints:
    def __init__(self, core: Any, read_body: Callable[[Request], JSON],
                 error: Callable[..., Exception]) -> None:
        self._core = core
        self._read_body = read_body
        self._error = error

    def _service(self) -> Any:
        service = getattr(self._core, "streams", None)
        if service is None:
            raise self._error(503, "streams are not running on this node")
        return service

    async def list(self, request: Request) -> tuple[int, JSON]:
        service = self._service()
        limits = service.core.limits
        return 200, {"streams": service.list(), "buffered": service.buffered(),
                     "high_water": service.high_water,
                     "limits": {"window": limits.window, "send_buffer": limits.send_buffer,
                                "chunk": limits.chunk, "max_streams": limits.max_streams}}

    async def get(self, request: Request, sid: str) -> tuple[int, JSON]:
        try:
            return 200, self._service().info(sid)
        except UnknownStream as e:
            raise self._error(404, str(e)) from None

    async def open(self, request: Request) -> tuple[int, JSON]:
        body = self._read_body(request)
        extra = sorted(set(body) - {"peer", "label"})
        if extra:
            raise self._error(400, f"unknown field \"{extra[0]}\"", extra[0])
        peer = body.get("peer")
        if not isinstance(peer, str):
            raise self._error(400, "\"peer\": expected a peer address", "peer")
        try:
            peer = check_peer_address(peer)
        except PeerAddressError as e:
            raise self._error(400, f"\"peer\": {e}", "peer") from None
        label = body.get("label", "")
        if not isinstance(label, str) or len(label) > 200:
            raise self._error(400, "\"label\": a string of at most 200 characters", "label")
        service = self._service()
        try:
            sid = await service.open(peer, label)
        except TooManyStreams as e:
            raise self._error(429, str(e)) from None
        except StreamError as e:
            raise self._error(400, str(e)) from None
        except UnknownPeer:
            raise self._error(404, f"unknown peer {peer} (add it first)", "peer") from None
        except PeerBlocked as e:
            raise self._error(409, f"{peer} is blocked: {e}", "peer") from None
        except ConnectionError as e:
            raise self._error(502, f"could not reach {peer}: {e}") from None
        return 201, {**service.info(sid), "websocket": f"/network/streams/{sid}"}


