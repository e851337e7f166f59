"""Two ``twistd -n aegis-hidden`` nodes on the private Tor network (real processes).

Each node launches its own tor that joins the session's private network, publishes
its identity onion service and dials the other by onion address. Driven with
subprocesses and the nodes' ``status.json`` files (no reactor in this file).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis_hidden.identity import load
from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    prepare_node,
    set_bootstrap,
    start_node,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def nodes(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    root = tmp_path_factory.mktemp("nodes")
    a = prepare_node(tor_network, "a", root / "a")
    b = prepare_node(tor_network, "b", root / "b")
    set_bootstrap(a, [b.onion])
    set_bootstrap(b, [a.onion])
    start_node(a)
    start_node(b)
    try:
        yield a, b
    finally:
        codes = [n.stop() for n in (a, b)]
        tor_pids = [n.tor_state().get("pid") for n in (a, b)]
        assert a.stopped_cleanly() and b.stopped_cleanly(), f"nodes exited with {codes}"
        # each node stopped its own tor
        for pid in tor_pids:
            if pid:
                wait_for(lambda pid=pid: not _running(pid), 15, f"tor {pid} to exit")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reached(node: NodeProcess, peer: NodeProcess, after: float = 0.0) -> bool:
    info = node.peer(peer.onion)
    return bool(info.get("reachable")) and info.get("last_reached", 0) > after


def test_two_nodes_reach_each_other_by_onion(nodes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = nodes
    wait_for(lambda: _reached(a, b) and _reached(b, a), 240, "a and b to reach each other",
             [a, b])
    for node in (a, b):
        ident = load(node.data_dir / "identity", time.time())
        tor = node.tor_state()
        # the address tor reported for the published service is the identity's
        assert tor["published_service_id"] + ".onion" == ident.onion == node.onion
        assert tor["bootstrap"]["progress"] == 100 and tor["ready"]
    # both directions: each side dialed and each side answered a dial
    wait_for(lambda: {a.peer(b.onion).get("last_direction"),
                      b.peer(a.onion).get("last_direction")} <= {"inbound", "outbound"}
             and a.peer(b.onion).get("times_reached", 0) >= 2
             and b.peer(a.onion).get("times_reached", 0) >= 2, 120,
             "an outbound and an inbound exchange on each node", [a, b])


def test_identity_onion_served_to_a_third_party(tor_network: TorNetwork,
                                                nodes: tuple[NodeProcess, NodeProcess]) -> None:
    """The network's own client dials b's identity onion and gets b's HELLO back."""
    a, b = nodes
    wait_for(lambda: b.tor_state().get("ready"), 240, "b ready", [a, b])
    client = tor_network.client

    def hello() -> bytes:
        with socket.create_connection(("127.0.0.1", client.socks_port), timeout=60) as s:
            s.sendall(b"\x05\x01\x00")
            assert s.recv(2) == b"\x05\x00"
            host = b.onion.encode()
            s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host
                      + (7701).to_bytes(2, "big"))
            reply = s.recv(10)
            if reply[1] != 0:
                return b""
            s.settimeout(60)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(512)
                if not chunk:
                    break
                data += chunk
            return data

    line = wait_for(hello, 120, "a SOCKS stream to b's onion", [a, b], interval=2)
    assert line.startswith(f"AEGIS-HELLO 1 {b.onion} ".encode())


def test_kill_9_of_a_nodes_tor(nodes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = nodes
    wait_for(lambda: _reached(a, b) and _reached(b, a), 240, "a and b linked", [a, b])
    before = a.tor_state()
    old_pid = before["pid"]
    killed_at = time.time()
    os.kill(old_pid, signal.SIGKILL)
    # a's provider relaunches tor and republishes the same address
    wait_for(lambda: a.tor_state().get("restarts") == 1 and a.tor_state().get("ready"), 180,
             "a's tor to come back", [a, b])
    after = a.tor_state()
    assert after["pid"] != old_pid and _running(after["pid"])
    assert after["published_service_id"] == before["published_service_id"]
    assert after["published_service_id"] + ".onion" == a.onion
    # b reconnects to a (the old link died with a's tor), and a to b
    wait_for(lambda: _reached(b, a, after=killed_at) and _reached(a, b, after=killed_at), 240,
             "the peers to reconnect after the kill", [a, b])
    # no crash loop: one restart, both node processes alive, still ready a while later
    time.sleep(10)
    assert a.tor_state()["restarts"] == 1 and a.tor_state()["ready"]
    assert a.alive() and b.alive()
    assert "Traceback" not in a.log_file.read_text()


def test_nodes_leave_no_tor_behind(tor_network: TorNetwork, tmp_path: Path) -> None:
    """A node stopped with SIGTERM removes its onion and its tor exits."""
    node = start_node(prepare_node(tor_network, "c", tmp_path / "c"))
    try:
        wait_for(lambda: node.tor_state().get("ready"), 240, "c ready", [node])
        pid = node.tor_state()["pid"]
        assert _running(pid)
    finally:
        node.stop()
    assert node.stopped_cleanly()
    wait_for(lambda: not _running(pid), 15, "c's tor to exit")
    assert "onion service" in node.log_file.read_text() and "removed" in node.log_file.read_text()


@pytest.mark.parametrize(("tor", "message"), [
    ({"tor_binary": "/nonexistent/tor"}, "tor executable '/nonexistent/tor' not found"),
    ({"torrc_lines": ["NoSuchTorOption 1"]}, "before opening its control port"),
    ({"bootstrap_timeout": 5, "dir_authorities": [
        "auth0 orport=1 no-v2 v3ident=" + "A" * 40 + " 127.0.0.1:1 " + "B" * 40]},
     "did not bootstrap within 5s"),
])
def test_start_up_failures_are_clear(tor_network: TorNetwork, tmp_path: Path,
                                     tor: dict[str, object], message: str) -> None:
    """tor missing, a bad torrc line, or no bootstrap: one clear line, exit status 1."""
    node = prepare_node(tor_network, "bad", tmp_path / "bad", extra={"tor": tor})
    start_node(node)
    assert node.proc is not None
    code = node.proc.wait(60)
    log = node.log_file.read_text()
    assert code == 1, log[-2000:]
    assert "tor could not start: " in log and message in log
    pid = node.tor_state().get("pid")
    assert pid is None or not _running(pid)
