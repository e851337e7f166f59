"""The dashboard: three static files from the package, at ``/`` and ``/static/``.

The files need no token (they hold nothing of the node's); every call the page
makes to ``/api/...``, ``/metrics`` and the WebSocket does. Only the names in
:data:`STATIC_FILES` are served, read once from the package: no path from a
request ever reaches the file system, so ``..`` or an encoded ``/`` in a
segment is just an unknown name (404).

Every answer carries :func:`set_security_headers`: scripts, styles and
connections from this origin only (the WebSocket URL of the same host named
explicitly), no inline script, no framing, no referrer, no form submission
(the login form is read by the script; a form that submitted would put the
token in a URL).
"""

from __future__ import annotations

import re
from importlib import resources

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from ._web import _json_bytes, method_not_allowed

#: name -> content type; the only files served (``aegis_hidden/api/static/``).
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
INDEX = "index.html"

# A Host header that may be written into the policy as is: a DNS name (an onion
# address is one) or an IPv4/IPv6 literal, with an optional port. Anything else
# (spaces, quotes, semicolons...) leaves only 'self'.
_HOST = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
                   r"(:[0-9]{1,5})?$")


def content_security_policy(host: bytes | None) -> str:
    """The policy for a page served under ``Host: host``."""
    connect = "'self'"
    if host is not None:
        try:
            name = host.decode("ascii")
        except UnicodeDecodeError:
            name = ""
        if _HOST.match(name):
            connect += f" ws://{name}"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src {connect}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def set_security_headers(request: Request) -> None:
    request.setHeader("content-security-policy",
                      content_security_policy(request.getHeader(b"host")))
    request.setHeader("x-content-type-options", "nosniff")
    request.setHeader("x-frame-options", "DENY")
    request.setHeader("referrer-policy", "no-referrer")
    request.setHeader("cross-origin-opener-policy", "same-origin")
    request.setHeader("cross-origin-resource-policy", "same-origin")


def load_static() -> dict[str, bytes]:
    """Every file of :data:`STATIC_FILES`, read from the package."""
    folder = resources.files("aegis_hidden.api").joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in STATIC_FILES}


def _not_found(request: Request) -> bytes:
    set_security_headers(request)
    request.setResponseCode(404)
    path = (request.path or b"").decode("utf-8", "replace")[:200]
    return _json_bytes(request, {"error": f"no such file: {path}", "field": None})


class StaticFile(Resource):
    """One file; GET and HEAD; nothing below it."""

    isLeaf = True

    def __init__(self, name: str, body: bytes) -> None:
        super().__init__()
        self.content_type = STATIC_FILES[name]
        self.body = body

    def render(self, request: Request) -> bytes:
        if request.postpath:  # /static/app.js/x
            return _not_found(request)
        set_security_headers(request)
        if request.method not in (b"GET", b"HEAD"):
            return method_not_allowed(request, "GET, HEAD")
        request.setHeader("content-type", self.content_type)
        request.setHeader("cache-control", "no-cache")
        return self.body


class StaticFolder(Resource):
    """``/static/<name>`` for the names of :data:`STATIC_FILES` (the index aside)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__()
        self._files = files

    def getChild(self, path: bytes, request: Request) -> IResource:
        name = path.decode("utf-8", "replace")
        if name in self._files and name != INDEX:
            return StaticFile(name, self._files[name])
        return _Missing()

    def render(self, request: Request) -> bytes:  # /static itself
        return _not_found(request)


class _Missing(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        return _not_found(request)


def dashboard_resources(files: dict[str, bytes] | None = None
                        ) -> tuple[StaticFile, StaticFolder]:
    """The page for ``/`` and the folder for ``/static``."""
    if files is None:
        files = load_static()
    return StaticFile(INDEX, files[INDEX]), StaticFolder(files)
