"""What the API decides from the request line and headers alone:
a body without the token or over the limit is refused before it is read, plain
GET /network is not autobahn's page, unsupported methods get 405 with Allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from aegis_hidden.api import TokenChecker, build_site

from .test_api import Api

TEN_GIB = 10 * 1024 ** 3


class Conn:
    def __init__(self, tmp_path: Path, max_body: int = 4096) -> None:
        self.api = Api(tmp_path)
        site = build_site(self.api.a, TokenChecker(self.api.token_path), max_body,
                          MemoryReactorClock())
        self.proto: Any = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5))
        self.transport: Any = cast(Any, StringTransport())
        self.transport.protocol = self.proto  # autobahn hands the transport over
        self.proto.makeConnection(self.transport)

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        out: bytes = self.transport.value()
        return out

    def requests_buffered(self) -> int:
        return sum(len(r.content.getvalue()) for r in self.proto._channel.requests
                   if r.content is not None and hasattr(r.content, "getvalue"))


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic x"])
def test_unauthenticated_body_is_refused_at_the_headers(tmp_path: Path,
                                                        auth: str | None) -> None:
    conn = Conn(tmp_path)
    head = (f"POST /api/network/send HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {TEN_GIB}\r\n")
    if auth:
        head += f"Authorization: {auth}\r\n"
    out = conn.send((head + "\r\n").encode())  # not one byte of the body sent
    assert out.startswith(b"HTTP/1.1 401 "), out[:100]
    assert b"missing or wrong bearer token" in out
    assert conn.transport.disconnecting  # the connection is not held for 10 GiB
    conn.send(b"x" * 100_000)  # whatever still arrives is not buffered
    assert conn.requests_buffered() == 0
    assert conn.transport.value() == out


def test_expect_100_continue_gets_the_refusal_only(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(f"POST /api/network/send HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                    f"Content-Length: {TEN_GIB}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in out
    assert conn.transport.disconnecting


def test_chunked_unauthenticated_body_is_refused_at_the_headers(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(b"POST /api/network/peers HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 401 ") and conn.transport.disconnecting


def test_declared_oversize_body_is_413_at_the_headers(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(f"POST /api/network/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{conn.api.token}\r\nContent-Length: {TEN_GIB}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 413 ") and b"max_body_size (4096)" in out
    assert conn.transport.disconnecting


def test_authenticated_body_is_still_read(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    body = b'{"action": "add"}'
    out = conn.send(f"POST /api/network/peers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{conn.api.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body)
    assert out.startswith(b"HTTP/1.1 400 ")  # the handler saw the body
    assert not conn.transport.disconnecting


def test_unauthenticated_get_is_a_plain_401(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(b"GET /api/network/status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 401 ")


# -- methods, the WebSocket path without an upgrade, the document -------------------

@pytest.mark.parametrize(("path", "allow"), [
    ("/network", b"GET"), ("/metrics", b"GET, HEAD"), ("/api/network/status", b"GET"),
    ("/api/openapi.json", b"GET"), ("/api/network/peers", b"GET, POST")])
@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "DELETE"])
def test_unsupported_methods_are_405_with_allow(tmp_path: Path, method: str, path: str,
                                                allow: bytes) -> None:
    conn = Conn(tmp_path)
    out = conn.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{conn.api.token}\r\n\r\n".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nAllow: " + allow + b"\r\n" in head + b"\r\n"
    assert b"method not allowed" in body


@pytest.mark.parametrize("query", ["", "?access_token=TOKEN"])
def test_plain_get_network_is_426_not_autobahns_page(tmp_path: Path, query: str) -> None:
    conn = Conn(tmp_path)
    auth = "" if query else f"Authorization: Bearer {conn.api.token}\r\n"
    out = conn.send(f"GET /network{query.replace('TOKEN', conn.api.token)} HTTP/1.1\r\n"
                    f"Host: x\r\n{auth}\r\n".encode())
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required")
    assert b"Upgrade: websocket" in head
    assert b"<html" not in body.lower() and b"autobahn" not in body.lower()
    assert b"Upgrade: websocket" in body.replace(b'\\"', b"")


def test_bad_since_is_a_json_400_before_the_upgrade(tmp_path: Path) -> None:
    conn = Conn(tmp_path)
    out = conn.send(f"GET /network?since=-1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {conn.api.token}"
                    "\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 400 ") and b'"field": "since"' in out


def _validator(schema: str) -> Any:
    import jsonschema_rs

    from aegis_hidden.api import DOCUMENT
    return jsonschema_rs.Draft202012Validator(
        {**DOCUMENT["components"]["schemas"][schema],
         "$defs": DOCUMENT["components"]["schemas"]})


@pytest.mark.parametrize("body", [
    {"action": "add"},
    {"action": "add", "peer_address": ""},
    {"action": "add", "peer_id": ""},
    {"action": "add", "peer_address": "example.com"},
    {"action": "add", "peer_address": "PEER", "peer_id": "PEER"},
    {"action": "add", "peer_address": "PEER", "i2p_destination": None},
    {"action": "add", "peer_address": "PEER", "i2p_destination": ""},
    {"action": "block", "peer_address": "PEER", "reason": None},
    {"action": "block", "peer_address": "PEER", "reason": ""},
    {"action": "add", "peer_address": "PEER", "keep_messages": True},
    {"action": "remove", "peer_address": "PEER", "keep_messages": "yes"},
])
def test_document_and_code_agree_on_refused_peer_actions(tmp_path: Path,
                                                         body: dict[str, Any]) -> None:
    api = Api(tmp_path)
    body = {k: api.b.local_address if v == "PEER" else v for k, v in body.items()}
    assert not _validator("PeerAction").is_valid(body)
    code, reply, _ = api.call("POST", "/api/network/peers", body)
    assert code == 400, reply


@pytest.mark.parametrize("body", [
    {"action": "add", "peer_address": "PEER"},
    {"action": "add", "peer_id": "PEER"},
    {"action": "add", "peer_address": "UPPER"},
    {"action": "add", "peer_address": "PEER", "i2p_destination": "B32"},
    {"action": "block", "peer_id": "PEER", "reason": "spam", "duration": None},
    {"action": "add", "peer_id": "PEER", "keep_messages": False},
])
def test_document_and_code_agree_on_accepted_peer_actions(tmp_path: Path,
                                                          body: dict[str, Any]) -> None:
    api = Api(tmp_path)
    values = {"PEER": api.b.local_address, "UPPER": api.b.local_address.upper(),
              "B32": "a" * 51 + "q.b32.i2p"}
    body = {k: values.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    assert _validator("PeerAction").is_valid(body)
    code, reply, _ = api.call("POST", "/api/network/peers", body)
    assert code == 200, reply


def test_document_refuses_an_empty_send_target(tmp_path: Path) -> None:
    api = Api(tmp_path)
    body = {"target": "", "message": {"type": "0"}}
    assert not _validator("SendRequest").is_valid(body)
    assert api.call("POST", "/api/network/send", body)[0] == 400
    ok = {"target": api.b.local_address, "message": {"type": "0"}}
    assert _validator("SendRequest").is_valid(ok)


def test_document_accepts_a_b32_send_target() -> None:
    assert _validator("SendRequest").is_valid({"target": "a" * 51 + "q.b32.i2p",
                                               "message": {"type": "0"}})


@pytest.mark.parametrize("keep", [True, False])
def test_document_and_code_agree_on_remove_keep_messages(tmp_path: Path, keep: bool) -> None:
    api = Api(tmp_path)
    peer = api.b.local_address
    assert api.call("POST", "/api/network/peers", {"action": "add", "peer_id": peer})[0] == 200
    body = {"action": "remove", "peer_id": peer, "keep_messages": keep}
    assert _validator("PeerAction").is_valid(body)
    code, reply, _ = api.call("POST", "/api/network/peers", body)
    assert code == 200, reply
