"""The dashboard's static files through the real resource tree (StubTreq and raw
HTTP over a StringTransport): served without the token, with the security
headers; nothing else readable; the API behind it still needs the token."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aegis_hidden.api._static import STATIC_FILES, content_security_policy, load_static
from aegis_hidden.testing import result_of

from .test_api import Api
from .test_api_headers import Conn

STATIC = Path(__file__).resolve().parents[2] / "aegis_hidden" / "api" / "static"


def _csp(headers: object) -> str:
    values = headers.getRawHeaders("content-security-policy")  # type: ignore[attr-defined]
    assert values is not None and len(values) == 1
    return str(values[0])


def test_index_is_served_without_a_token_with_the_security_headers(tmp_path: Path) -> None:
    api = Api(tmp_path)
    code, body, headers = api.call("GET", "/", token=None)
    assert code == 200
    assert headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert body == (STATIC / "index.html").read_text()
    assert '<script src="/static/app.js"' in body
    assert headers.getRawHeaders("x-content-type-options") == ["nosniff"]
    assert headers.getRawHeaders("x-frame-options") == ["DENY"]
    assert headers.getRawHeaders("referrer-policy") == ["no-referrer"]
    csp = dict(part.strip().split(" ", 1) for part in _csp(headers).split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    # StubTreq's requests name the host 127.0.0.1:8470: the WebSocket of that host only
    assert csp["connect-src"] == "'self' ws://127.0.0.1:8470"
    assert csp["frame-ancestors"] == "'none'" and csp["form-action"] == "'none'"
    assert api.a.metrics.counters.get("auth_failures", 0) == 0


def test_the_page_has_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    html = (STATIC / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S):
        assert tag.strip() == ""  # every script is a src= of this origin
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith("/static/"), url
    js = (STATIC / "app.js").read_text()
    assert "eval(" not in js and "innerHTML" not in js and "new Function" not in js
    assert "http://" not in js and "https://" not in js  # no CDN, no other origin
    assert "sessionStorage" in js and "localStorage" not in js


@pytest.mark.parametrize("name", sorted(STATIC_FILES))
def test_every_static_file_resolves_with_its_content_type(tmp_path: Path, name: str) -> None:
    api = Api(tmp_path)
    path = "/" if name == "index.html" else f"/static/{name}"
    code, body, headers = api.call("GET", path, token=None)
    assert code == 200
    assert headers.getRawHeaders("content-type") == [STATIC_FILES[name]]
    assert body == (STATIC / name).read_text()
    assert headers.getRawHeaders("x-content-type-options") == ["nosniff"]


def test_every_file_in_the_folder_is_served_and_loaded_from_the_package() -> None:
    assert sorted(p.name for p in STATIC.iterdir()) == sorted(STATIC_FILES)
    assert load_static() == {n: (STATIC / n).read_bytes() for n in STATIC_FILES}


def test_head_serves_the_headers(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(b"HEAD /static/app.js HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert b"Content-Type: text/javascript; charset=utf-8" in head


@pytest.mark.parametrize("path", [
    "/static/../api/network/status",
    "/static/..%2fapi%2fnetwork%2fstatus",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f_static.py",
    "/static/../_static.py",
    "/static/%2e%2e%2f_web.py",
    "/static//etc/passwd",
    "/static/app.js/../../_token.py",
])
def test_path_traversal_is_refused(tmp_path: Path, path: str) -> None:
    conn = Conn(tmp_path)
    out = conn.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), head
    reply = json.loads(body)  # the 404 and nothing else: no file, no status
    assert set(reply) == {"error", "field"} and reply["error"].startswith("no such file")
    assert b"content-security-policy" in head.lower()


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/", "/static",
                                  "/static/index.html", "/static/APP.JS",
                                  "/static/app.js/x", "//x"])
def test_unknown_static_is_404_json(tmp_path: Path, path: str) -> None:
    api = Api(tmp_path)
    code, body, headers = api.call("GET", path, token=None)
    assert code == 404
    assert body["error"].startswith("no such file")
    assert headers.getRawHeaders("x-content-type-options") == ["nosniff"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_static_files_are_get_and_head_only(tmp_path: Path, method: str) -> None:
    api = Api(tmp_path)
    code, _, headers = api.call(method, "/static/app.css", token=None)
    assert code == 405
    assert headers.getRawHeaders("allow") == ["GET, HEAD"]


@pytest.mark.parametrize("path", ["/api/network/status", "/api/network/peers", "/metrics",
                                  "/api/openapi.json", "/nope", "/index.html"])
def test_the_api_still_needs_the_token(tmp_path: Path, path: str) -> None:
    api = Api(tmp_path)
    assert api.call("GET", "/", token=None)[0] == 200
    code, body, _ = api.call("GET", path, token=None)
    assert code == 401 and body["error"] == "missing or wrong bearer token"
    assert api.call("GET", path)[0] in (200, 404)


def test_a_post_to_the_page_with_a_body_needs_the_token(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert out.startswith(b"HTTP/1.1 401 ")


@pytest.mark.parametrize(("host", "connect"), [
    (b"127.0.0.1:8470", "'self' ws://127.0.0.1:8470"),
    (b"[::1]:8470", "'self' ws://[::1]:8470"),
    (b"abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion",
     "'self' ws://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion"),
    (b"evil; script-src *", "'self'"),
    (b"a b", "'self'"),
    (b"x'y", "'self'"),
    (b"\xff", "'self'"),
    (None, "'self'"),
])
def test_the_websocket_source_is_the_host_only_when_it_is_a_host(host: bytes | None,
                                                                 connect: str) -> None:
    policy = content_security_policy(host)
    assert f"connect-src {connect};" in policy
    assert policy.count(";") == 7  # nothing injected


def test_status_lists_live_sessions_with_their_transport(tmp_path: Path) -> None:
    api = Api(tmp_path)
    assert api.call("GET", "/api/network/status")[1]["sessions"] == []
    b = api.b.local_address
    assert api.call("POST", "/api/network/peers", {"action": "add", "peer_address": b})[0] == 200
    result_of(api.a.pool.get(b))
    code, status, _ = api.call("GET", "/api/network/status")
    assert code == 200
    assert status["sessions"] == [{"peer": b, "transport": "memory"}]
    assert status["counts"]["connected"] == 1


def test_status_says_whether_the_dht_runs(tmp_path: Path) -> None:
    api = Api(tmp_path)
    assert api.call("GET", "/api/network/status")[1]["dht"] == {"running": False}
    assert api.call("GET", "/api/network/dht")[0] == 503  # what the page then skips
    api.a.dht = object()
    assert api.call("GET", "/api/network/status")[1]["dht"] == {"running": True}
