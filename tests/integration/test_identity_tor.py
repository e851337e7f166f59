"""Our onion-address derivation against a real ``tor`` (no network needed).

Tor is started on loopback with ``DisableNetwork 1``: it still loads each
``HiddenServiceDir`` key we wrote and writes its own ``hostname`` file, and
answers ``ADD_ONION`` with the service id it computed from our expanded key.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aegis_hidden import identity as ident

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tor") is None, reason="needs the Debian package tor"),
]

N_KEYS = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate: object, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; tor log:\n{log.read_text()[-3000:]}")


def _control(port: int, cookie: Path, commands: list[str]) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        replies: list[str] = []
        for cmd in [f"AUTHENTICATE {cookie.read_bytes().hex()}", *commands]:
            f.write(cmd.encode() + b"\r\n")
            f.flush()
            lines = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                lines.append(line)
                if len(line) >= 4 and line[3] == " ":
                    break
            replies.append("\n".join(lines))
        return replies


def test_tor_computes_the_same_onion_addresses(tmp_path: Path) -> None:
    seeds = [os.urandom(32) for _ in range(N_KEYS)]
    torrc = [
        "DisableNetwork 1",
        "SocksPort 0",
        f"DataDirectory {tmp_path / 'tor'}",
        f"ControlPort 127.0.0.1:{_free_port()}",
        "CookieAuthentication 1",
        f"Log notice file {tmp_path / 'tor.log'}",
        "GeoIPFile /nonexistent",
        "GeoIPv6File /nonexistent",
    ]
    expected: dict[Path, str] = {}
    for i, seed in enumerate(seeds):
        hs = tmp_path / f"hs{i}"
        hs.mkdir(mode=0o700)
        ours = ident.onion_address_from_public_key(
            Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
        )
        # Only the secret key: tor derives the public key and hostname itself.
        (hs / "hs_ed25519_secret_key").write_bytes(ident.tor_secret_key_file(seed))
        torrc += [f"HiddenServiceDir {hs}", "HiddenServicePort 80 127.0.0.1:9"]
        expected[hs] = ours
    control_port = int(torrc[3].rsplit(":", 1)[1])
    (tmp_path / "torrc").write_text("\n".join(torrc) + "\n")
    log = tmp_path / "tor.log"
    log.touch()
    proc = subprocess.Popen(["tor", "-f", str(tmp_path / "torrc")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: all((hs / "hostname").exists() for hs in expected), 60,
                  "tor to write every hostname", log)
        for hs, ours in expected.items():
            assert (hs / "hostname").read_text().strip() == ours
            # Tor's public key file matches ours byte for byte.
            pub = ident.public_key_from_onion_address(ours)
            assert (hs / "hs_ed25519_public_key").read_bytes() == ident.tor_public_key_file(pub)

        # ADD_ONION with our expanded key: tor's ServiceID is our address.
        cookie = tmp_path / "tor" / "control_auth_cookie"
        _wait_for(cookie.exists, 30, "the control cookie", log)
        node = ident.create(tmp_path / "node", time.time())
        key = base64.b64encode(node.expanded_secret_key()).decode()
        replies = _control(control_port, cookie,
                           [f"ADD_ONION ED25519-V3:{key} Flags=DiscardPK Port=80,127.0.0.1:9",
                            "QUIT"])
        assert replies[0].startswith("250")
        assert f"250-ServiceID={node.onion.removesuffix('.onion')}" in replies[1], replies[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
