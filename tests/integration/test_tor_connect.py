"""Connect mode against a tor we run ourselves: control socket, password, reconnect.

A client tor of the private network is started with a unix control socket and a
hashed control password; a connect-mode ``TorProvider`` (in-process,
pytest-twisted) publishes the identity onion through it. Then that tor is killed
with SIGKILL and started again on the same socket: the provider reconnects,
publishes the same address again and emits ``tor_restarted``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import create
from aegis_hidden.testing import TorNetwork, free_ports
from aegis_hidden.tor import TESTING_CLIENT_LINES, TorProvider

pytestmark = pytest.mark.integration


def _start_tor(torrc: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["tor", "-f", str(torrc)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


async def _until(reactor: Any, predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.25, lambda: None)


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_connect_mode_password_socket_and_reconnect(tor_network: TorNetwork,
                                                         tmp_path: Path) -> None:
    from twisted.internet import reactor

    hashed = subprocess.run(["tor", "--quiet", "--hash-password", "s3cret"], check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    tor_dir = tmp_path / "t"
    tor_dir.mkdir(mode=0o700)
    sock = tor_dir / "control.sock"
    socks_port = free_ports(1)[0]
    lines = [f"DataDirectory {tor_dir}", f"ControlPort unix:{sock}",
             f"HashedControlPassword {hashed}", "CookieAuthentication 0",
             f"SocksPort 127.0.0.1:{socks_port} ExtendedErrors",
             f"Log notice file {tor_dir / 'notice.log'}", *TESTING_CLIENT_LINES]
    lines += [f"DirAuthority {d}" for d in tor_network.dir_authority_lines()]
    torrc = tmp_path / "torrc"
    torrc.write_text("\n".join(lines) + "\n")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    proc = _start_tor(torrc)
    events: list[dict[str, Any]] = []
    bus = EventBus()
    bus.subscribe(events.append)
    cfg = parse_config({"tor": {"mode": "connect", "control_port": f"unix:{sock}",
                                "control_password_file": str(password),
                                "bootstrap_timeout": 120}})
    ident = create(tmp_path / "id", time.time())
    provider = TorProvider(reactor, cfg, ident, tmp_path / "node", bus, stable_after=0.0)
    try:
        await _until(reactor, sock.exists, 30, "the control socket")
        provider.startService()
        await provider.when_ready()
        state = provider.state()
        assert state["socks"] == f"127.0.0.1:{socks_port}"  # asked tor for it
        assert state["published_service_id"] + ".onion" == ident.onion
        assert state["pid"] is None  # connect mode: not our process

        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        await _until(reactor, lambda: provider.state()["phase"] != "ready", 10, "loss noticed")
        assert not provider.state()["ready"]
        sock.unlink(missing_ok=True)
        proc = _start_tor(torrc)
        await provider.when_ready()
        assert provider.state()["restarts"] == 1
        assert provider.state()["published_service_id"] + ".onion" == ident.onion
        kinds = [e["type"] for e in events]
        assert kinds.count("onion_published") == 2 and "tor_restarted" in kinds
    finally:
        await provider.stopService()
        proc.terminate()
        proc.wait(10)
