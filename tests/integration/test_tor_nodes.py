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
from aegis_hidden.session import Closed, Established, Session, SessionParams
from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    memory_identity,
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
    # both directions: each side dialed the other, authenticated it by its onion key,
    # and got a ping answered over the post-quantum session
    wait_for(lambda: all(n.peer(m.onion).get("authenticated") and "rtt" in n.peer(m.onion)
                         for n, m in ((a, b), (b, a))), 120,
             "a ping answered over a session on each node", [a, b])
    for n, m in ((a, b), (b, a)):
        assert n.peer(m.onion)["last_direction"] == "outbound"
        assert n.peer(m.onion)["transport"] == "tor"


def test_identity_onion_served_to_a_third_party(tor_network: TorNetwork,
                                                nodes: tuple[NodeProcess, NodeProcess]) -> None:
    """A third party (the network's own client) runs a session handshake with b's onion.

    The handshake only completes if the service behind the onion proves, with the
    identity record signed by the onion's own key, that it is b.
    """
    a, b = nodes
    wait_for(lambda: b.tor_state().get("ready"), 240, "b ready", [a, b])
    client = tor_network.client
    me = memory_identity(time.time())

    def handshake() -> Established | None:
        with socket.create_connection(("127.0.0.1", client.socks_port), timeout=60) as s:
            s.sendall(b"\x05\x01\x00")
            assert s.recv(2) == b"\x05\x00"
            host = b.onion.encode()
            s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host
                      + (7701).to_bytes(2, "big"))
            reply = s.recv(10)
            if reply[1] != 0:
                return None
            s.settimeout(60)
            session = Session(me, SessionParams(), initiator=True, clock=time.time,
                              peer_address=b.onion)
            session.start()
            while True:
                out = session.data_to_send()
                if out:
                    s.sendall(out)
                for event in session.events():
                    if isinstance(event, Established):
                        return event
                    if isinstance(event, Closed):
                        raise AssertionError(f"b closed the handshake: {event}")
                data = s.recv(65536)
                if not data:
                    return None
                session.receive_data(data)

    established = wait_for(handshake, 120, "a session handshake with b's onion", [a, b],
                           interval=2)
    assert established.peer == b.onion
    assert established.record.onion == b.onion
    assert established.record.xwing_public == load(b.data_dir / "identity",
                                                  time.time()).xwing_public


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
