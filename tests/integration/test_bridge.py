"""A node that reaches Tor only through a private obfs4 bridge.

An obfs4 bridge joins the session's private network (no restart: no authority
needs to know a bridge). Node B's own tor gets ``UseBridges 1`` and the bridge's
line, so everything it sends goes through obfs4proxy to the bridge; node A is an
ordinary client of the network. B bootstraps, publishes its onion and exchanges
messages with A through the API. Meanwhile ``tcpdump`` captures loopback: the
bridge connection must look like obfs4 (no TLS header, random bytes) and an
ordinary connection to a relay like Tor's TLS (the privacy audit's check).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis_hidden.audit import ENTROPY_WINDOW, TransportLook, transport_report
from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)
from aegis_hidden.testing._tornet import Instance

pytestmark = pytest.mark.integration


def _api_port(node: NodeProcess) -> int:
    cfg = yaml.safe_load((node.data_dir / "node.yaml").read_text())
    return int(cfg["api"]["listen_address"].rsplit(":", 1)[1])


def call(node: NodeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    token = (node.data_dir / "api_token").read_text().strip()
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{_api_port(node)}{path}", data=data,
                                 method=method,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def api_up(node: NodeProcess) -> bool:
    try:
        return call(node, "GET", "/api/network/status")[0] == 200
    except (OSError, ValueError):
        return False


def received(node: NodeProcess) -> float:
    token = (node.data_dir / "api_token").read_text().strip()
    req = urllib.request.Request(f"http://127.0.0.1:{_api_port(node)}/metrics",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        for line in resp.read().decode().splitlines():
            if line.startswith("aegis_messages_received_total "):
                return float(line.split()[1])
    return 0.0


def relay_ports(net: TorNetwork) -> set[int]:
    """ORPorts and DirPorts of the authorities and relays."""
    return {p for i in net.instances if i.role in ("authority", "relay")
            for p in (i.or_port, i.dir_port) if p}


def or_ports(net: TorNetwork) -> set[int]:
    """ORPorts only (the DirPorts speak plain HTTP between relays: not tor links)."""
    return {i.or_port for i in net.instances if i.role in ("authority", "relay")}


class Tcpdump:
    """tcpdump on lo into a pcap, only the given TCP ports."""

    def __init__(self, path: Path, ports: set[int]) -> None:
        self.path = path
        expr = "tcp and (" + " or ".join(f"port {p}" for p in sorted(ports)) + ")"
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-Z", "root", "-w", str(path), expr],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline().decode(errors="replace")
        if "listening on" not in first:
            self.proc.kill()
            raise RuntimeError(f"tcpdump did not start: {first}")

    def stop(self) -> bytes:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        return self.path.read_bytes()


@pytest.fixture(scope="module")
def bridged(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Instance, NodeProcess, NodeProcess, Tcpdump]]:
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        pytest.skip("the capture needs tcpdump and root (apt-get install tcpdump)")
    if not Path(tor_network.obfs4proxy).exists():
        pytest.skip("the bridge needs obfs4proxy (apt-get install obfs4proxy)")
    root = tmp_path_factory.mktemp("bridge")
    bridge = tor_network.add_bridge()
    line = tor_network.bridge_line(bridge, 60)
    print(f"\nprivate bridge: {line}")
    dump = Tcpdump(root / "lo.pcap", relay_ports(tor_network) | {bridge.pt_port})
    api = [free_ports(1)[0], free_ports(1)[0]]
    a = prepare_node(tor_network, "a", root / "a",
                     extra={"api": {"enabled": True, "listen_address": f"127.0.0.1:{api[0]}"}})
    b = prepare_node(tor_network, "b", root / "b",
                     extra={"api": {"enabled": True, "listen_address": f"127.0.0.1:{api[1]}"},
                            "tor": tor_network.node_tor_config(bridge=bridge)})
    start_node(a, api=True)
    start_node(b, api=True)
    try:
        yield bridge, a, b, dump
    finally:
        for n in (a, b):
            n.stop()
        dump.stop()
        tor_network.stop_instance(bridge)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _remote_ports(pids: set[int]) -> list[tuple[int, int]]:
    """(pid, remote port) of every established TCP connection of ``pids`` (ss -tnp)."""
    text = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                          text=True, check=True).stdout
    out = []
    for row in text.splitlines():
        cols = row.split()
        for pid in pids:
            if f"pid={pid}," in row:
                out.append((pid, int(cols[-2].rsplit(":", 1)[1])))
    return out


def test_node_behind_obfs4_bridge_publishes_and_exchanges_messages(
        tor_network: TorNetwork,
        bridged: tuple[Instance, NodeProcess, NodeProcess, Tcpdump]) -> None:
    bridge, a, b, _ = bridged
    started = time.monotonic()
    for n in (a, b):
        wait_for(lambda n=n: n.tor_state().get("ready"), 300, f"{n.name}'s tor ready", [a, b])
        wait_for(lambda n=n: api_up(n), 60, f"{n.name}'s API", [a, b])
    print(f"\nboth nodes published their onions {time.monotonic() - started:.1f}s after start")
    tor = b.tor_state()
    assert tor["bridges"] == {"configured": 1, "in_use": True, "count": 1,
                              "transports": ["obfs4"], "warning": None}
    assert tor["published_service_id"] + ".onion" == b.onion
    assert a.tor_state()["bridges"]["in_use"] is False

    # B's tor and its obfs4proxy talk to the bridge's obfs4 port and to no relay.
    tor_pid = tor["pid"]
    pids = {tor_pid, *_children(tor_pid)}
    ports = _remote_ports(pids)
    assert ports, "no connection of B's tor found"
    assert not [p for p in ports if p[1] in relay_ports(tor_network)], ports
    assert any(port == bridge.pt_port for _, port in ports), ports
    torrc = (b.data_dir / "tor" / "torrc").read_text()
    assert "UseBridges 1" in torrc and "ClientTransportPlugin obfs4 exec" in torrc

    # messages both ways through the API, B behind the bridge
    for sender, receiver in ((a, b), (b, a)):
        status, body = call(sender, "POST", "/api/network/peers",
                            {"action": "add", "peer_address": receiver.onion})
        assert status in (200, 201), body
        message = {"type": "chat", "data": f"hello {receiver.name}, from {sender.name}"}
        status, sent = call(sender, "POST", "/api/network/send",
                            {"target": receiver.onion, "message": message})
        assert status == 202, sent
        wait_for(lambda r=receiver: received(r) >= 1, 240,
                 f"{receiver.name} to receive {sender.name}'s message", [a, b])
    print(f"messages exchanged both ways {time.monotonic() - started:.1f}s after start")


def test_capture_bridge_looks_like_obfs4_and_relays_like_tls(
        tor_network: TorNetwork,
        bridged: tuple[Instance, NodeProcess, NodeProcess, Tcpdump]) -> None:
    bridge, a, b, dump = bridged
    wait_for(lambda: b.tor_state().get("ready"), 300, "B's tor ready", [a, b])
    time.sleep(2)
    capture = dump.stop()
    reports = transport_report(capture)
    print(f"\ncapture: {len(capture)} bytes, {len(reports)} TCP connections "
          f"(python -m aegis_hidden.audit transport {dump.path})")
    to_bridge = [r for r in reports if r.server[1] == bridge.pt_port and "mid" not in r.why]
    to_relays = [r for r in reports if r.server[1] in or_ports(tor_network)
                 and "mid" not in r.why and r.bytes_to_server]
    for r in to_bridge + to_relays[:5]:
        print(r.line())
    assert to_bridge, "no connection to the bridge's obfs4 port captured"
    assert to_relays, "no ordinary tor connection captured"
    for r in to_bridge:
        assert not r.tls_header, r.line()
        assert r.look is TransportLook.OBFS4, r.line()
        windows = [e for e in (r.entropy_to_server, r.entropy_to_client) if e is not None]
        assert windows and min(windows) >= 7.5, r.line()
        assert max(r.bytes_to_server, r.bytes_to_client) >= ENTROPY_WINDOW
    for r in to_relays:
        assert r.look is TransportLook.TLS and r.head_to_server.startswith("16 03"), r.line()
