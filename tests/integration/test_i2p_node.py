"""An I2P-only node (Tor disabled) on the private I2P network.

The nodes' service trees are built by ``aegis_hidden.tap`` exactly as ``twistd
aegis-hidden --no-tor --i2p`` would, in this process: node A must start and
publish its destination (bound into its signed identity record); a third party
completes the post-quantum session handshake with A at its ``.b32.i2p``
address (A's I2P streams are forwarded to its listen address); and node B,
given A's address as bootstrap peer, keeps an authenticated session with it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.application.service import MultiService
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

from aegis_hidden import tap
from aegis_hidden.config import load_config
from aegis_hidden.i2p import (
    CantReachPeer,
    Destination,
    I2PProvider,
    SAMError,
    SAMSession,
    SAMStreamClientEndpoint,
    create_session,
)
from aegis_hidden.identity import (
    I2PBinding,
    load_or_create,
    parse_record,
    verify_binding,
    verify_record,
)
from aegis_hidden.session import Closed, Established, Session, SessionParams
from aegis_hidden.testing import I2PNetwork, memory_identity

from .test_i2p_sam import (
    SESSION_TIMEOUT,
    TUNNEL_OPTIONS,
    Greeter,
    Recorder,
    _connect_with_retry,
    sam,
    sleep,
    until,
    with_timeout,
)

pytestmark = pytest.mark.integration
reactor: Any = _reactor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node(net: I2PNetwork, router: int, data_dir: Path, bootstrap: str = "") -> MultiService:
    config = data_dir.parent / f"{data_dir.name}.yaml"
    config.write_text(
        "i2p:\n"
        f"  sam_address: \"{net.routers[router].sam_address}\"\n"
        "  tunnel_length: 1\n"
        "  tunnel_quantity: 5\n"
        "logging:\n  status_peers: true\n"  # the per-peer list in status.json
        + (f"network:\n  bootstrap_nodes:\n    - \"{bootstrap}\"\n" if bootstrap else ""))
    opts = tap.Options()
    opts.parseOptions(["-c", str(config), "-d", str(data_dir), "--no-tor", "--i2p", "--no-api",
                       "--listen-address", f"127.0.0.1:{_free_port()}"])
    node = tap.makeService(opts)
    assert isinstance(node, MultiService)
    return node


class HandshakeClient(Protocol):
    """A third party's side of the session handshake (the sans-I/O Session, fed bytes)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.established: Established | None = None
        self.closed: Closed | None = None

    def connectionMade(self) -> None:
        self.session.start()
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        self.session.receive_data(data)
        self._flush()

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            assert self.transport is not None
            self.transport.write(out)
        for event in self.session.events():
            if isinstance(event, Established):
                self.established = event
            elif isinstance(event, Closed):
                self.closed = event


def _leaseset_lines(net: I2PNetwork, router: int, address: str, limit: int = 20) -> str:
    """The router's log lines on publishing the LeaseSet of ``address`` (debug level)."""
    b32 = address.removesuffix(".b32.i2p")
    try:
        text = net.routers[router].log_file.read_text("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    lines = [line for line in text.splitlines()
             if "publish" in line.lower() and (b32 in line or "LeaseSet" in line)]
    return (f"--- router {router}: LeaseSet publishing ({len(lines)} lines, last {limit})\n"
            + "\n".join(lines[-limit:]))


def _status(data_dir: Path) -> dict[str, Any]:
    try:
        out: dict[str, Any] = json.loads((data_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return out


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_i2p_only_node_publishes_its_destination_and_is_reached(
        i2p_network: I2PNetwork, tmp_path: Path) -> None:
    a_router, b_router = i2p_network.client_routers[-1], i2p_network.client_routers[0]
    a = _node(i2p_network, a_router, tmp_path / "a")
    a.startService()
    b: MultiService | None = None
    try:
        a_i2p = a.getServiceNamed("i2p")
        assert isinstance(a_i2p, I2PProvider) and "tor" not in a.namedServices
        await with_timeout(a_i2p.when_ready(), SESSION_TIMEOUT, "node A's I2P", i2p_network)
        address = a_i2p.state()["address"]
        onion = a_i2p.identity.onion

        # bound: the signed record on disk commits to the destination of that address
        # (the destination itself is only in i2p-binding.bin, revealed to chosen peers)
        record = parse_record((tmp_path / "a" / "identity" / "record.bin").read_bytes())
        verify_record(record, onion, now=time.time())
        binding = I2PBinding.parse((tmp_path / "a" / "identity" / "i2p-binding.bin").read_bytes())
        assert verify_binding(record, binding) == address
        assert Destination.from_base64(binding.destination).b32 == address

        # a second node, I2P-only too, with A as its bootstrap peer by .b32.i2p address
        b = _node(i2p_network, b_router, tmp_path / "b", bootstrap=address)
        b.startService()
        b_i2p = b.getServiceNamed("i2p")
        assert isinstance(b_i2p, I2PProvider)
        await with_timeout(b_i2p.when_ready(), SESSION_TIMEOUT, "node B's I2P", i2p_network)

        # a third party completes the session handshake with A over I2P: A proves it
        # holds its onion key and that its record binds the destination we dialed
        third: SAMSession = await with_timeout(Deferred.fromCoroutine(create_session(
            sam(i2p_network, b_router), "STREAM", None, options=TUNNEL_OPTIONS)),
            SESSION_TIMEOUT, "a third-party session", i2p_network)

        async def third_src() -> SAMSession:
            return third

        try:
            deadline = time.monotonic() + 180
            while True:
                client = HandshakeClient(Session(memory_identity(time.time()), SessionParams(),
                                                 initiator=True, clock=time.time,
                                                 peer_address=address))
                try:
                    await SAMStreamClientEndpoint(sam(i2p_network, b_router), third_src,
                                                  address).connect(
                        Factory.forProtocol(lambda c=client: c))  # type: ignore[misc]
                    await until(lambda c=client: c.established is not None  # type: ignore[misc]
                                or c.closed is not None, 45, "handshake", i2p_network)
                    break
                except (CantReachPeer, AssertionError):
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no handshake with {address}\n"
                                             f"{i2p_network.logs()}") from None
                    await sleep(3)
            assert client.closed is None, client.closed
            assert client.established is not None
            assert client.established.peer == address  # named by the address we dialed
            assert client.established.record.onion == onion  # and proven to be node A
            assert client.established.record.i2p_commitment == record.i2p_commitment
        finally:
            third.close()

        # and node B keeps an authenticated session with A, over I2P
        def b_reached_a() -> bool:
            peers = _status(tmp_path / "b").get("peers", {})
            return any(p.get("reachable") and p.get("transport") == "i2p" for p in peers.values())

        await until(b_reached_a, 240, "node B's status.json to show A reached over I2P",
                    i2p_network)
        assert _status(tmp_path / "b")["transports"]["i2p"]["ready"]
    finally:
        await maybeDeferred(a.stopService)
        if b is not None:
            await maybeDeferred(b.stopService)


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_a_peer_whose_router_restarted_is_reached_again_by_a_new_session(
        i2p_network: I2PNetwork, tmp_path: Path) -> None:
    """A cached B's LeaseSet; B's router restarts (new leases).

    B's provider sees its control sockets close and creates its sessions again
    on the restarted router (same keys, as a real node does), which publishes B's
    new LeaseSet. i2pd 2.45.1 keeps sending A's streams to B's dead leases until
    they expire (up to 10 minutes); A's provider notices the silent streams
    (default HealthPolicy: 2 in a row, silent after 30 s) and re-creates its SAM
    session with the same key, 10 s after closing the old one (reuse_pause: i2pd
    would otherwise hand back the old destination, cache and all, and stop it 5 s
    later), whose empty LeaseSet cache finds B's new LeaseSet.
    """
    a_router, b_router = i2p_network.client_routers[-1], i2p_network.client_routers[0]

    def provider(index: int, data_dir: Path) -> I2PProvider:
        ident, _ = load_or_create(data_dir / "identity", time.time())
        cfg = load_config(None, {"i2p.enabled": True,
                                 "i2p.sam_address": i2p_network.routers[index].sam_address,
                                 "i2p.tunnel_length": 1, "i2p.tunnel_quantity": 5})
        return I2PProvider(reactor, cfg, ident, data_dir, retry_base=1.0, retry_cap=5.0)

    a = provider(a_router, tmp_path / "a")
    b = provider(b_router, tmp_path / "b")
    a.startService()
    b.startService()
    port = None
    try:
        await with_timeout(a.when_ready(), SESSION_TIMEOUT, "provider A ready", i2p_network)
        await with_timeout(b.when_ready(), SESSION_TIMEOUT, "provider B ready", i2p_network)
        address = b.state()["address"]
        factory = Greeter(b"B here\n")
        port = await b.server_endpoint().listen(factory)
        first = await _connect_with_retry(a.client_endpoint(address, 0), Greeter(b"A here\n"),
                                          i2p_network)
        await until(lambda: first.data == b"B here\n", 120, "A's first stream to B", i2p_network)
        assert first.transport is not None
        first.transport.loseConnection()

        # B's router restarts; B's provider comes back with the same destination
        restarted = time.monotonic()
        await deferToThread(i2p_network.restart_router, b_router)
        await until(lambda: b.state()["ready"] and b.sessions_created == 2, SESSION_TIMEOUT,
                    "provider B ready again", i2p_network)
        b_back = time.monotonic() - restarted
        assert b.state()["address"] == address

        # A dials B as a node would (each try waits 35 s for B's greeting)
        deadline = restarted + 420
        tries = 0
        while True:
            tries += 1
            try:
                again = await a.client_endpoint(address, 0).connect(Greeter(b"A again\n"))
            except (CantReachPeer, SAMError):  # SAMError: A's session being re-created
                again = None
            if again is not None:
                assert isinstance(again, Recorder)
                try:
                    await until(lambda again=again: again.data == b"B here\n",  # type: ignore[misc]
                                35, "B's greeting", i2p_network)
                    break
                except AssertionError:
                    assert again.transport is not None
                    again.transport.loseConnection()
            else:
                await sleep(3)
            if time.monotonic() > deadline:
                raise AssertionError(f"A did not reach B in 420 s after its router restart: "
                                     f"{a.state()}\n"
                                     f"{_leaseset_lines(i2p_network, b_router, address)}\n"
                                     f"{i2p_network.logs()}")
        elapsed = time.monotonic() - restarted
        state = a.state()
        print(f"\nA reached B again {elapsed:.0f} s after B's router restart (B's session back "
              f"after {b_back:.0f} s; {tries} tries; A: {state['session_recreations']} session "
              f"re-creation(s), {state['silent_streams']} silent, "
              f"{state['failed_streams']} failed, {state['unreachable_streams']} unreachable "
              f"streams, {state['invalid_sessions']} invalid sessions)")
        print(_leaseset_lines(i2p_network, b_router, address))
        assert elapsed < 420
        assert state["session_recreations"] >= 1 and state["invalid_sessions"] == 0
    finally:
        if port is not None:
            await maybeDeferred(port.stopListening)
        await a.stopService()
        await b.stopService()
