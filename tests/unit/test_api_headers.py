"""What the API decides from the request line and headers alone (issue 16, items 7, 9):
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
