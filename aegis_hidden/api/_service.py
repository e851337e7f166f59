"""The API service: one web tree on ``api.listen_address`` (and optionally an onion).

Build it in ``makeService`` (the endpoint is made there; it listens on start)::

    api = make_api_service(reactor, config, core, data_dir, tor=tor_provider)
    api.setServiceParent(node_service)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from .. import _json as strict_json
from .._listen import local_server_endpoint
from ..config import Config
from ..node import NodeCore
from ._audit import NodeAudits
from ._deliveries import DeliveryLog
from ._events import EventsFactory, EventsResource
from ._onion import ApiOnionService, OnionPublisher
from ._static import dashboard_resources
from ._stream_socket import StreamSocketFactory, StreamSocketResource
from ._token import TokenChecker, load_or_create_token
from ._web import (
    ApiResource,
    Authorizer,
    MetricsResource,
    NotAscii,
    NotFoundResource,
    bearer_token,
    private_access_log,
)


class _Root(Resource):
    def __init__(self, auth: Authorizer) -> None:
        super().__init__()
        self._missing = NotFoundResource(auth)

    def getChild(self, path: bytes, request: Request) -> IResource:
        return self._missing


def build_root(core: NodeCore, checker: TokenChecker, max_body_size: int,
               auth: Authorizer | None = None) -> Resource:
    """The resource tree: /api/..., /metrics, /network (WebSocket), and the dashboard
    (``/`` and ``/static/...``, served without the token)."""
    if auth is None:
        auth = core_authorizer(core, checker)
    root = _Root(auth)
    deliveries = DeliveryLog(core.db, core.events, core.reactor.seconds)
    audits = NodeAudits(core, core.reactor, max_body_size=max_body_size)
    root.putChild(b"api", ApiResource(core, auth, max_body_size, deliveries, audits))
    root.putChild(b"metrics", MetricsResource(core, auth))
    factory = EventsFactory(core.events, auth, core.local_address, reactor=core.reactor)
    core.metrics.gauge("events_clients", "WebSocket event subscribers connected now.",
                       lambda: len(factory.clients))
    streams = StreamSocketResource(StreamSocketFactory(core, auth, reactor=core.reactor))
    root.putChild(b"network", EventsResource(factory, streams))
    index, static = dashboard_resources()
    root.putChild(b"", index)
    root.putChild(b"static", static)
    return root


def core_authorizer(core: NodeCore, checker: TokenChecker) -> Authorizer:
    return Authorizer(checker, lambda: core.metrics.inc("auth_failures"))


def _refusal(code: int, phrase: str, message: str, extra: str = "") -> bytes:
    body = strict_json.dumps({"error": message, "field": None}).encode()
    return (f"HTTP/1.1 {code} {phrase}\r\ncontent-type: application/json\r\n"
            f"cache-control: no-store\r\n{extra}content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def limited_request_factory(max_body_size: int, auth: Authorizer | None = None
                            ) -> type[Request]:
    """A Request that refuses a body at the headers: without the bearer token (401,
    when ``auth`` is given) or declared larger than ``max_body_size`` (413), the
    reply is written and the connection closed before one byte of the body is read
    (a 10 GiB ``Content-Length`` holds nothing). A chunked body that grows past
    ``max_body_size`` stops being buffered (-> 413 from the handler)."""

    class LimitedRequest(Request):
        aegis_too_large = False

        def gotLength(self, length: int | None) -> None:
            if length != 0:  # a body follows (None: chunked)
                refusal = self._refuse_at_headers(length)
                if refusal is not None:
                    self.aegis_too_large = True
                    self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after it
                    channel: Any = self.channel
                    channel.transport.write(refusal)
                    # read nothing more: the body and any pipelined request are dropped
                    channel.dataReceived = channel.rawDataReceived = \
                        channel.lineReceived = lambda *args: None
                    channel.loseConnection()
                    length = 0
            super().gotLength(length)

        def _refuse_at_headers(self, length: int | None) -> bytes | None:
            if auth is not None:
                try:
                    presented = bearer_token(self)
                except NotAscii:
                    presented = None
                if not auth.check(presented):
                    return _refusal(401, "Unauthorized", "missing or wrong bearer token",
                                    'www-authenticate: Bearer realm="aegis-hidden"\r\n')
            if length is not None and length > max_body_size:
                return _refusal(413, "Request Entity Too Large", f"body of {length} bytes "
                                f"exceeds api.max_body_size ({max_body_size})")
            return None

        def handleContentChunk(self, data: bytes) -> None:
            if self.aegis_too_large:
                return
            assert self.content is not None
            if self.content.tell() + len(data) > max_body_size:
                self.aegis_too_large = True
                return
            super().handleContentChunk(data)

    return LimitedRequest


def build_site(core: NodeCore, checker: TokenChecker, max_body_size: int,
               reactor: Any = None) -> Site:
    # The access log (through twisted's log, into node.log) writes routes only: no
    # query string (a WebSocket client's access_token), no peer address.
    auth = core_authorizer(core, checker)
    site = Site(build_root(core, checker, max_body_size, auth), reactor=reactor,
                logFormatter=private_access_log)
    site.requestFactory = limited_request_factory(max_body_size, auth)
    site.displayTracebacks = False
    site.noisy = False
    return site


class ApiService(MultiService):
    log = Logger()
    name = "api"

    def __init__(self, site: Site, endpoint: IStreamServerEndpoint, token_path: Path,
                 onion: ApiOnionService | None = None) -> None:
        super().__init__()
        self.site = site
        self.token_path = token_path
        self.listener = StreamServerEndpointService(endpoint, site)
        self.listener.setServiceParent(self)
        self.onion = onion
        if onion is not None:
            onion.setServiceParent(self)


def make_api_service(reactor: Any, config: Config, core: NodeCore, data_dir: Path,
                     tor: OnionPublisher | None = None) -> ApiService:
    """Token (created 0600 on first start), web tree, listener and optional API onion."""
    token_path = data_dir / config.api.token_file
    _, created = load_or_create_token(token_path)
    if created:
        ApiService.log.info("API token created in {path}", path=str(token_path))
    checker = TokenChecker(token_path)
    site = build_site(core, checker, config.api.max_body_size, reactor)
    onion = None
    if config.api.onion:
        if tor is None:
            raise ValueError("api.onion is true but Tor is not enabled (security.enable_tor)")
        onion = ApiOnionService(tor, config, data_dir)
        onion.client_keys()  # refuse at start-up, with the fix, when no key is authorized
    return ApiService(site, local_server_endpoint(reactor, config.api.listen_address), token_path,
                      onion)
