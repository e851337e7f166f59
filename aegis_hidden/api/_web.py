"""The REST resources under ``/api/network/``, ``/metrics`` and ``/api/openapi.json``.

Plain twisted.web: one leaf resource routes ``/api/...`` by path and method;
handlers are ``async def`` and return ``(code, json)``; every failure a client
can cause maps to a 4xx JSON body ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import provider

from .. import _json as strict_json
from ..node import (
    WIPE_CONFIRMATION,
    Backpressure,
    DeliveryState,
    EnvelopeError,
    MessageTooLarge,
    NodeCore,
    PeerBlocked,
    wipe,
)
from ..peers import PeerAddressError, UnknownPeer, check_peer_address
from ._deliveries import DeliveryLog
from ._dht import DhtEndpoints
from ._emergency import EmergencyEndpoints
from ._openapi import openapi_json
from ._pubsub import TopicEndpoints, is_topic_target
from ._streams import StreamEndpoints
from ._token import TokenChecker

JSON = dict[str, Any]


@dataclass(frozen=True)
class RawBody:
    """A handler's answer that is not JSON (the audit's HTML report)."""

    content_type: str
    data: bytes


class ApiError(Exception):
    def __init__(self, code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> JSON:
        return {"error": self.message, "field": self.field}


# The access log keeps the route, never what varies in it: a peer's address or a
# message id in the path is replaced by a placeholder, the query string (where a
# WebSocket client may put ``access_token``) is never read. Unknown paths (probes,
# typos) are cut at the first unknown segment.
_ROUTES: dict[str, Any] = {
    "api": {"network": {"peers": "{peer}", "messages": "{id}", "send": None,
                        "status": None, "audit": "{id}", "topics": None,
                        "streams": "{id}",
                        "dht": {"records": "{key}", "crawl": None}},
            "openapi.json": None},
    "metrics": None,
    "network": {"streams": "{id}"},
    "static": {"app.js": None, "app.css": None, "favicon.svg": None},
}
_METHOD = re.compile(r"^[A-Z]{1,16}$")


def access_log_path(path: bytes) -> str:
    """``path`` (no query) with every segment that is not a fixed route name replaced."""
    parts: list[str] = []
    node: Any = _ROUTES
    for raw in path.split(b"/")[1:]:
        try:
            segment = raw.decode("ascii")
        except UnicodeDecodeError:
            segment = "\0"  # never a route name
        if segment == "":
            parts.append("")
        elif isinstance(node, dict) and segment in node:
            parts.append(segment)
            node = node[segment]
        elif isinstance(node, str):
            parts.append(node)
            node = None
        else:
            parts.append("{...}")
            break
    return "/" + "/".join(parts)


@provider(IAccessLogFormatter)
def private_access_log(timestamp: str, request: Request) -> str:
    """One access-log line: method, route (see :func:`access_log_path`), status, size.

    Unlike twisted.web's combined format there is no query string, no peer
    address or message id, no client address, referrer or user agent, and no
    second timestamp (the log observer stamps every line).
    """
    method = (request.method or b"").decode("ascii", "replace")
    if not _METHOD.match(method):
        method = "-"
    return (f"api: {method} {access_log_path(request.path or b'/')} {request.code} "
            f"{request.sentLength or '-'}")


class NotAscii(ValueError):
    """The Authorization header holds bytes that are not ASCII (400, not 500)."""


def bearer_token(request: Request, allow_query: bool = False) -> str | None:
    """The presented token; :class:`NotAscii` when the header cannot be one."""
    raw = request.getHeader(b"authorization")
    if raw is not None:
        try:
            header = raw.decode("ascii")
        except UnicodeDecodeError:
            raise NotAscii("the Authorization header is not ASCII") from None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    if allow_query:
        values = (request.args or {}).get(b"access_token")
        if values:
            return bytes(values[0]).decode("utf-8", "replace")
    return None


class Authorizer:
    """The bearer-token check shared by every resource and the WebSocket upgrade."""

    def __init__(self, checker: TokenChecker, on_failure: Callable[[], None]) -> None:
        self._checker = checker
        self._on_failure = on_failure

    def check(self, presented: str | None) -> bool:
        if self._checker.check(presented):
            return True
        self._on_failure()
        return False

    def refuse(self, request: Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader("www-authenticate", 'Bearer realm="aegis-hidden"')
        return _json_bytes(request, {"error": "missing or wrong bearer token", "field": None})

    def authorize(self, request: Request, allow_query: bool = False) -> bytes | None:
        """None when the request carries the token; else the body of a 401 (or a 400
        for an Authorization header that is not ASCII) to return."""
        try:
            presented = bearer_token(request, allow_query)
        except NotAscii as e:
            self._on_failure()
            request.setResponseCode(400)
            return _json_bytes(request, {"error": str(e), "field": "Authorization"})
        if self.check(presented):
            return None
        return self.refuse(request)


_log = Logger()
DEFAULT_PAGE = 500  # GET /api/network/peers without ?limit=
MAX_PAGE = 1000
PEER_STATUSES = ("new", "connected", "disconnected", "blocked")
MAX_BLOCK_SECONDS = 100 * 365 * 86400  # "duration" beyond a century is a mistake


def method_not_allowed(request: Request, allowed: str) -> bytes:
    """A JSON 405 with ``Allow`` (TRACE, OPTIONS, DELETE... on a GET-only resource)."""
    request.setResponseCode(405)
    request.setHeader("allow", allowed)
    return _json_bytes(request, {"error": f"method not allowed here; use {allowed}",
                                 "field": None})


def _json_bytes(request: Request, body: JSON) -> bytes:
    request.setHeader("content-type", "application/json")
    request.setHeader("cache-control", "no-store")
    return strict_json.dumps(body).encode()


def _finish(request: Request, code: int, body: JSON | RawBody) -> None:
    if getattr(request, "_aegis_gone", False):
        return
    try:
        if isinstance(body, RawBody):
            request.setHeader("content-type", body.content_type)
            request.setHeader("cache-control", "no-store")
            data = body.data
        else:
            data = _json_bytes(request, body)
    except ValueError as e:  # NaN/Infinity in a reply: a bug here, never invalid JSON out
        _log.error("API reply to {method} {path} not encodable as JSON: {error}",
                   method=request.method, path=access_log_path(request.path or b"/"),
                   error=str(e))
        code, data = 500, _json_bytes(request, {"error": "internal error (see the node's "
                                                "log)", "field": None})
    request.setResponseCode(code)
    request.setHeader("content-length", str(len(data)))
    request.write(data)
    request.finish()


def read_json_body(request: Request, max_size: int) -> JSON:
    length = request.getHeader("content-length")
    if length is not None and length.isdigit() and int(length) > max_size:
        raise ApiError(413, f"body of {length} bytes exceeds api.max_body_size ({max_size})")
    if getattr(request, "aegis_too_large", False):
        raise ApiError(413, f"body exceeds api.max_body_size ({max_size})")
    assert request.content is not None
    raw = request.content.read(max_size + 1)
    if len(raw) > max_size:
        raise ApiError(413, f"body exceeds api.max_body_size ({max_size})")
    try:
        body = strict_json.loads(raw)
    except strict_json.JSONValueError as e:
        if e.path is None:
            raise ApiError(400, f"body is not valid JSON: {e.message}") from None
        raise ApiError(400, f"\"{e.path}\": {e.message}", e.path) from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def _string(body: JSON, name: str, *, required: bool = True, max_len: int = 500) -> str | None:
    """The string field ``name``; absent is None (or 400 when required); an explicit
    ``null`` is 400 like any other non-string (the OpenAPI document says string)."""
    if name in body and body[name] is None:
        raise ApiError(400, f"\"{name}\" must be a non-empty string of at most {max_len} "
                       "characters (leave it out instead of null)", name)
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f"missing field \"{name}\"", name)
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ApiError(400, f"\"{name}\" must be a non-empty string of at most {max_len} "
                       "characters", name)
    return value


def _address(body: JSON, name: str, required: bool = True) -> str | None:
    value = _string(body, name, required=required)
    if value is None:
        return None
    try:
        return check_peer_address(value)
    except PeerAddressError as e:
        raise ApiError(400, f"\"{name}\": {e}", name) from None


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    """The query parameters, each at most once, none unknown (400 naming it)."""
    out: dict[str, str] = {}
    for raw_name, values in (request.args or {}).items():
        name = bytes(raw_name).decode("utf-8", "replace")
        if name not in allowed:
            raise ApiError(400, f"unknown query parameter \"{name[:50]}\"", name[:50])
        if len(values) != 1:
            raise ApiError(400, f"query parameter \"{name}\" given more than once", name)
        try:
            out[name] = bytes(values[0]).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, f"query parameter \"{name}\" is not UTF-8", name) from None
    return out


def _unknown_fields(body: JSON, allowed: set[str], where: str = "") -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(400, f"unknown field \"{where}{extra[0]}\"", f"{where}{extra[0]}")


class ApiResource(Resource):
    """Everything under ``/api/``: routes by method and path."""

    isLeaf = True
    log = Logger()

    def __init__(self, core: NodeCore, auth: Authorizer, max_body_size: int,
                 deliveries: DeliveryLog | None = None, audits: Any = None) -> None:
        super().__init__()
        self.core = core
        self.auth = auth
        self.max_body_size = max_body_size
        self.deliveries = deliveries
        self.dht = DhtEndpoints(core, lambda r: read_json_body(r, max_body_size), ApiError)
        self.emergency = EmergencyEndpoints(core, lambda r: read_json_body(r, max_body_size),
                                            ApiError)
        self.topics = TopicEndpoints(core, lambda r: read_json_body(r, max_body_size), ApiError)
        self.streams = StreamEndpoints(core, lambda r: read_json_body(r, max_body_size),
                                       ApiError)
        #: /api/network/audit/... (``_audit.NodeAudits``: its ``route`` gives the handlers)
        self.audits = audits

    def render(self, request: Request) -> bytes | int:
        refused = self.auth.authorize(request)
        if refused is not None:
            return refused
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        while path and path[-1] == "":
            path.pop()
        method = (request.method or b"").decode()
        handler, args = self._route(method, path)
        request.notifyFinish().addErrback(lambda _: setattr(request, "_aegis_gone", True))
        d = Deferred.fromCoroutine(self._call(handler, request, *args))
        d.addCallbacks(lambda r: _finish(request, *r), lambda f: self._fail(request, f))
        return NOT_DONE_YET

    async def _call(self, handler: Callable[..., Awaitable[tuple[int, JSON]]],
                    request: Request, *args: str) -> tuple[int, JSON]:
        return await handler(request, *args)

    def _fail(self, request: Request, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, ApiError):
            _finish(request, error.code, error.body())
            return
        self.log.failure("API request {method} {path} failed", failure,
                         method=request.method, path=access_log_path(request.path or b"/"))
        _finish(request, 500, {"error": "internal error (see the node's log)", "field": None})

    def _route(self, method: str, path: list[str]
               ) -> tuple[Callable[..., Awaitable[tuple[int, JSON]]], tuple[str, ...]]:
        routes: dict[tuple[str, ...], dict[str, Callable[..., Awaitable[tuple[int, JSON]]]]] = {
            ("network", "peers"): {"GET": self.list_peers, "POST": self.change_peer},
            ("network", "send"): {"POST": self.send},
            ("network", "status"): {"GET": self.status},
            ("node", "wipe"): {"POST": self.wipe},
            ("openapi.json",): {"GET": self.openapi},
            ("network", "dht"): {"GET": self.dht.stats},
            ("network", "dht", "records"): {"POST": self.dht.put_record},
            ("network", "dht", "crawl"): {"POST": self.dht.crawl},
            ("network", "topics"): {"GET": self.topics.list, "POST": self.topics.change},
            ("network", "streams"): {"GET": self.streams.list, "POST": self.streams.open},
            ("node", "emergency"): {"GET": self.emergency.status},
            ("node", "isolate"): {"POST": self.emergency.isolate},
            ("node", "resume"): {"POST": self.emergency.resume},
            ("node", "throttle"): {"POST": self.emergency.throttle},
        }
        key = tuple(path)
        args: tuple[str, ...] = ()
        if len(path) == 3 and path[:2] == ["network", "peers"]:
            key, args = ("network", "peers", "*"), (path[2],)
            routes[key] = {"GET": self.get_peer}
        elif len(path) == 4 and path[:3] == ["network", "dht", "records"]:
            key, args = ("network", "dht", "records", "*"), (path[3],)
            routes[key] = {"GET": self.dht.get_record}
        elif len(path) == 3 and path[:2] == ["network", "streams"]:
            key, args = ("network", "streams", "*"), (path[2],)
            routes[key] = {"GET": self.streams.get}
        elif len(path) == 3 and path[:2] == ["network", "messages"]:
            key, args = ("network", "messages", "*"), (path[2],)
            routes[key] = {"GET": self.get_message}
        elif len(path) == 4 and path[:2] == ["node", "transports"] and path[3] == "restart":
            key, args = ("node", "transports", "*", "restart"), (path[2],)
            routes[key] = {"POST": self.emergency.restart_transport}
        elif path[:2] == ["network", "audit"] and self.audits is not None:
            found = self.audits.route(path[2:])
            if found is not None:
                routes[key], args = found
        methods = routes.get(key)
        if methods is None:
            return self._not_found, ("/api/" + "/".join(path),)
        handler = methods.get(method)
        if handler is None:
            return self._bad_method, (", ".join(sorted(methods)),)
        return handler, args

    async def _not_found(self, request: Request, path: str) -> tuple[int, JSON]:
        raise ApiError(404, f"no such endpoint: {path}")

    async def _bad_method(self, request: Request, allowed: str) -> tuple[int, JSON]:
        request.setHeader("allow", allowed)
        raise ApiError(405, f"method not allowed here; use {allowed}")

    # -- handlers -----------------------------------------------------------
    async def list_peers(self, request: Request) -> tuple[int, JSON]:
        """One page of peers in address order: ``limit`` (1..MAX_PAGE, default
        DEFAULT_PAGE), ``cursor`` (the ``next_cursor`` of the page before), filters
        ``status`` and ``transport``; ``next_cursor`` is null on the last page."""
        args = _query(request, {"limit", "cursor", "status", "transport"})
        limit = DEFAULT_PAGE
        if "limit" in args:
            raw = args["limit"]
            if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw[:6]) <= MAX_PAGE:
                raise ApiError(400, f"\"limit\" must be an integer from 1 to {MAX_PAGE}",
                               "limit")
            limit = int(raw)
        status = args.get("status")
        if status is not None and status not in PEER_STATUSES:
            raise ApiError(400, "\"status\" must be one of " + ", ".join(PEER_STATUSES),
                           "status")
        transport = args.get("transport")
        if transport is not None and transport not in ("tor", "i2p"):
            raise ApiError(400, "\"transport\" must be tor or i2p", "transport")
        cursor = args.get("cursor")
        if cursor is not None and (not cursor or len(cursor) > 100):
            raise ApiError(400, "\"cursor\" must be the next_cursor of a previous page",
                           "cursor")
        page: list[JSON] = []
        more = False
        for peer in sorted(self.core.store.all(), key=lambda p: p.peer_id):
            if cursor is not None and peer.peer_id <= cursor:
                continue
            if transport == "tor" and not peer.peer_id.endswith(".onion"):
                continue
            if transport == "i2p" and not (peer.i2p_destination
                                           or peer.peer_id.endswith(".b32.i2p")):
                continue
            if status is not None and self.core.peer_status(peer) != status:
                continue
            if len(page) == limit:
                more = True
                break
            page.append(self.core.peer_json(peer))
        return 200, {"peers": page, "next_cursor": page[-1]["id"] if more else None}

    async def get_peer(self, request: Request, peer_id: str) -> tuple[int, JSON]:
        peer = self.core.store.get(peer_id)
        if peer is None:
            raise ApiError(404, f"unknown peer {peer_id[:100]}", "peer_id")
        return 200, self.core.peer_json(peer)

    async def change_peer(self, request: Request) -> tuple[int, JSON]:
        body = read_json_body(request, self.max_body_size)
        _unknown_fields(body, {"action", "peer_address", "peer_id", "i2p_destination",
                               "reason", "duration", "keep_messages"})
        keep = body.get("keep_messages", False)
        if not isinstance(keep, bool) or (keep and body.get("action") != "remove"):
            raise ApiError(400, "\"keep_messages\" is true or false, for \"remove\" only",
                           "keep_messages")
        action = body.get("action")
        if action not in ("add", "remove", "block", "unblock"):
            raise ApiError(400, "\"action\" must be one of add, remove, block, unblock",
                           "action")
        if "peer_address" not in body and "peer_id" not in body:
            raise ApiError(400, "missing field \"peer_address\" (or \"peer_id\")",
                           "peer_address")
        if "peer_address" in body and "peer_id" in body:
            raise ApiError(400, "give \"peer_address\" or \"peer_id\" (the same thing), "
                           "not both", "peer_id")
        field = "peer_address" if "peer_address" in body else "peer_id"
        peer_id = _address(body, field)
        assert peer_id is not None
        store = self.core.store
        if action == "add":
            i2p = _address(body, "i2p_destination", required=False)
            peer = await store.add(peer_id, i2p_destination=i2p)
        elif action == "block":
            reason = _string(body, "reason", required=False) or "blocked by the operator"
            duration = body.get("duration")
            if duration is not None and (isinstance(duration, bool) or not isinstance(
                    duration, int | float) or not 0 < duration <= MAX_BLOCK_SECONDS):
                raise ApiError(400, "\"duration\" must be a positive number of seconds "
                               f"(at most {MAX_BLOCK_SECONDS}) or null", "duration")
            peer = await store.block(peer_id, reason, duration)
            self.core.pool.close(peer_id, "blacklisted")
        else:
            if store.get(peer_id) is None:
                raise ApiError(404, f"unknown peer {peer_id}", field)
            if action == "remove":
                # its queued messages expire, or wait with no retries (keep_messages)
                peer = await self.core.remove_peer(peer_id, keep_messages=keep)
            else:
                peer = await store.unblock(peer_id)
        self.core.events.emit("peer_changed", peer=peer.peer_id, action=action)
        return 200, {"ok": True, "action": action, "peer": self.core.peer_json(peer)}

    async def send(self, request: Request) -> tuple[int, JSON]:
        body = read_json_body(request, self.max_body_size)
        _unknown_fields(body, {"target", "message", "confirm_from"})
        topic = body.get("target") if is_topic_target(body.get("target")) else None
        target = topic or _address(body, "target")
        assert target is not None
        message = body.get("message")
        if not isinstance(message, dict):
            raise ApiError(400, "\"message\" must be an object with \"type\" and \"data\"",
                           "message")
        _unknown_fields(message, {"type", "data"}, "message.")
        kind = message.get("type")
        if not isinstance(kind, str) or not kind or len(kind) > 200:
            raise ApiError(400, "\"message.type\" must be a non-empty string of at most 200 "
                           "characters", "message.type")
        if topic is not None:  # "topic:NAME": published on the topic, no outbox
            return self.topics.publish(topic, message, body.get("confirm_from"), request)
        if "confirm_from" in body:
            raise ApiError(400, "\"confirm_from\" goes with a topic target (a message to a "
                           "peer is acknowledged by that peer)", "confirm_from")
        if not await self.core.resolve(target):  # in the store, or found in the DHT
            raise ApiError(404, f"unknown peer {target} (add it first)", "target")
        try:
            msg_id, state = await self.core.send(target, message)
        except MessageTooLarge as e:
            raise ApiError(413, str(e), "message") from None
        except PeerBlocked as e:
            raise ApiError(409, str(e), "target") from None
        except Backpressure as e:  # nothing stored: the client tries again later
            request.setHeader("retry-after", str(e.retry_after))
            raise ApiError(503, str(e), "target") from None
        except (EnvelopeError, UnknownPeer) as e:
            raise ApiError(400, str(e), "message") from None
        return 202, {"id": msg_id, "target": target, "state": state.value}

    async def get_message(self, request: Request, msg_id: str) -> tuple[int, JSON]:
        state: DeliveryState | None = self.core.messenger.state(msg_id)
        if state is not None:
            return 200, {"id": msg_id, "state": state.value}
        stored = None if self.deliveries is None else await self.deliveries.state(msg_id)
        if stored is None:
            raise ApiError(404, f"unknown message {msg_id[:64]}", "message_id")
        return 200, {"id": msg_id, "state": stored}

    async def status(self, request: Request) -> tuple[int, JSON]:
        return 200, self.core.status()

    async def wipe(self, request: Request) -> tuple[int, JSON]:
        """The emergency wipe: keys, logs and database destroyed, node stopped.

        ``confirm`` must read ``wipe <this node's onion>``: a typo, or a token used
        against the wrong node, changes nothing. Key files go first; the open
        database is unlinked (ciphertext whose key is gone); the process stops
        shortly after the answer is written.
        """
        body = read_json_body(request, self.max_body_size)
        _unknown_fields(body, {"confirm"})
        confirm = body.get("confirm")
        word, _, address = confirm.partition(" ") if isinstance(confirm, str) else ("", "", "")
        if word != WIPE_CONFIRMATION or not address:
            raise ApiError(400, "\"confirm\" must be \"wipe\", a space and this node's "
                           "onion address; nothing was changed", "confirm")
        if address != self.core.local_address:
            raise ApiError(409, "\"confirm\" names another node's address: nothing was "
                           "changed", "confirm")
        data = Path(self.core.data_dir)
        report = wipe(data, self.core.config.identity_dir(data))
        self.log.warn("emergency wipe through the API: {count} files destroyed; stopping",
                      count=len(report.deleted))
        stop = getattr(self.core.reactor, "stop", None)
        if callable(stop):  # the real reactor: twistd exits (a test clock has no stop)
            self.core.reactor.callLater(0.2, stop)
        return 200, {"ok": True, "overwritten": len(report.overwritten),
                     "deleted": len(report.deleted), "failed": len(report.failed)}

    async def openapi(self, request: Request) -> tuple[int, JSON]:
        doc: JSON = json.loads(openapi_json())
        return 200, doc


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, core: NodeCore, auth: Authorizer) -> None:
        super().__init__()
        self.core = core
        self.auth = auth

    def render(self, request: Request) -> bytes:
        refused = self.auth.authorize(request)
        if refused is not None:
            return refused
        if request.method not in (b"GET", b"HEAD"):
            return method_not_allowed(request, "GET, HEAD")
        request.setHeader("content-type", "text/plain; version=0.0.4; charset=utf-8")
        return self.core.metrics.render().encode()


class NotFoundResource(Resource):
    isLeaf = True

    def __init__(self, auth: Authorizer) -> None:
        super().__init__()
        self.auth = auth

    def render(self, request: Request) -> bytes:
        refused = self.auth.authorize(request)
        if refused is not None:
            return refused
        request.setResponseCode(404)
        path = (request.path or b"").decode("utf-8", "replace")[:200]
        return _json_bytes(request, {"error": f"no such endpoint: {path}", "field": None})
