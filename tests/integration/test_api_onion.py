"""The management API through its client-authorized onion service (real processes).

A node with ``api.onion: true`` publishes its API as a v3 onion with client
authorization for one operator key (made with ``aegis-hidden api client-key
add``). The private network's client tor cannot even fetch the API onion's
descriptor content without that key (SOCKS extended error 0xF4), and reaches
the API with it; the bearer token is still required on top.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)

pytestmark = pytest.mark.integration

MISSING_CLIENT_AUTH = 0xF4


def _socks(net: TorNetwork, onion: str, port: int) -> tuple[int, socket.socket | None]:
    """SOCKS5 CONNECT through the network's client tor: (reply code, socket if 0)."""
    s = socket.create_connection(("127.0.0.1", net.client.socks_port), timeout=90)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    host = onion.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + port.to_bytes(2, "big"))
    reply = s.recv(10)
    if len(reply) < 2 or reply[1] != 0:
        s.close()
        return (reply[1] if len(reply) >= 2 else -1), None
    return 0, s


def _control(net: TorNetwork, command: str) -> str:
    cookie = (Path(net.client.data_dir) / "control_auth_cookie").read_bytes()
    with socket.create_connection(("127.0.0.1", net.client.control_port), timeout=30) as s:
        f = s.makefile("rwb")
        out = []
        for cmd in (f"AUTHENTICATE {cookie.hex()}", command):
            f.write(cmd.encode() + b"\r\n")
            f.flush()
            line = f.readline().decode().strip()
            out.append(line)
        return out[-1]


def _http_get(s: socket.socket, path: str, token: str | None) -> tuple[int, bytes]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: api\r\n{auth}Connection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture(scope="module")
def api_node(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[NodeProcess, str, str]]:
    root = tmp_path_factory.mktemp("api-onion")
    port = free_ports(1)[0]
    node = prepare_node(tor_network, "op", root / "op",
                        extra={"api": {"enabled": True, "onion": True,
                                       "listen_address": f"127.0.0.1:{port}"}})
    exe = str(Path(sys.executable).with_name("aegis-hidden"))
    out = subprocess.run([exe, "api", "client-key", "add", "operator", "--data-dir",
                          str(node.data_dir), "--config", str(node.data_dir / "node.yaml")],
                         capture_output=True, text=True, check=True).stdout
    private_line = next(line for line in out.splitlines() if ":descriptor:x25519:" in line)
    start_node(node, api=True)
    try:
        wait_for(lambda: node.tor_state().get("ready"), 240, "the node's tor", [node])
        wait_for(lambda: "API onion" in node.log_file.read_text(errors="replace"), 120,
                 "the API onion to be published", [node])
        yield node, private_line, (node.data_dir / "api_token").read_text().strip()
    finally:
        node.stop()


def test_api_onion_needs_the_client_key_then_the_token(
        tor_network: TorNetwork, api_node: tuple[NodeProcess, str, str]) -> None:
    node, private_line, token = api_node
    address, _, rest = private_line.partition(":")
    onion = address + ".onion"
    assert onion != node.onion  # the API onion is not linkable to the node's identity
    assert f"API onion {onion}" in node.log_file.read_text(errors="replace")

    # Without the key: tor finds the descriptor but cannot decrypt it (0xF4).
    def refused() -> bool:
        code, s = _socks(tor_network, onion, 80)
        if s is not None:
            s.close()
            raise AssertionError("the API onion answered a client without the key")
        return code == MISSING_CLIENT_AUTH

    wait_for(refused, 180, "tor to report the missing client authorization", [node],
             interval=3)

    # With the key (ONION_CLIENT_AUTH_ADD on the client tor): reachable...
    private = base64.b32decode(rest.rsplit(":", 1)[1] + "=" * (-len(rest.rsplit(":", 1)[1]) % 8))
    reply = _control(tor_network, f"ONION_CLIENT_AUTH_ADD {address} "
                                  f"x25519:{base64.b64encode(private).decode()}")
    assert reply[:3] in ("250", "251", "252"), reply  # 252: decrypted a cached descriptor

    def reached() -> socket.socket | None:
        return _socks(tor_network, onion, 80)[1]

    s = wait_for(reached, 180, "the API onion with the client key", [node], interval=3)
    with s:
        status, body = _http_get(s, "/api/network/status", token)
    assert status == 200, body
    assert json.loads(body)["identity"]["onion"] == node.onion

    # ...and the bearer token is still required behind the onion.
    s = wait_for(reached, 60, "a second stream", [node], interval=2)
    with s:
        status, _ = _http_get(s, "/api/network/status", None)
    assert status == 401

    # The dashboard is the same site: its page and script, without the token.
    for path, marker in (("/", b'<script src="/static/app.js"'), ("/static/app.js",
                                                                  b"sessionStorage")):
        s = wait_for(reached, 60, f"a stream for {path}", [node], interval=2)
        with s:
            status, body = _http_get(s, path, None)
        assert status == 200 and marker in body, body[:200]
    _control(tor_network, f"ONION_CLIENT_AUTH_REMOVE {address}")
