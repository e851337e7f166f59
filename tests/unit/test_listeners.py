"""Transports own their listeners: each provider serves the session factory on its
own listener, and every accepted stream carries the transport it came through."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from zope.interface.verify import verifyObject

from aegis_hidden import identity as ident
from aegis_hidden._listen import LocalListener
from aegis_hidden.config import Config, load_config, parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.i2p._provider import I2PProvider
from aegis_hidden.identity import NodeIdentity
from aegis_hidden.interfaces import IPeerLink, ITransportProvider
from aegis_hidden.session.twisted import PeerLink, ServerFactory, SessionFactory
from aegis_hidden.testing import FakeSAMBridge, memory_identity, result_of
from aegis_hidden.testing._sessions import MemoryTransportProvider
from aegis_hidden.tor import TorProvider

NOW = 1_800_000_000.0
PORT = 7701


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def accepted_through(factory: Any, clock: Clock, alice: NodeIdentity,
                     bob: NodeIdentity) -> IPeerLink:
    """Alice dials Bob over an in-memory stream that lands on ``factory`` (what Bob's
    provider listens with); returns the link Bob's side accepted."""
    net = MemoryTransportProvider()
    net.listen(bob.onion, PORT, factory)
    dialer = SessionFactory(alice, [net], Config(), clock)
    assert isinstance(result_of(dialer.connect(f"{bob.onion}:{PORT}")), PeerLink)
    accepted = factory._sessions.incoming
    assert len(accepted) == 1
    link: IPeerLink = accepted[0]
    return link


def bob_sessions(bob: NodeIdentity, clock: Clock, config: Config | None = None
                 ) -> SessionFactory:
    sessions = SessionFactory(bob, [], config or Config(), clock)
    incoming: list[IPeerLink] = []
    sessions.on_incoming(incoming.append)
    sessions.incoming = incoming  # type: ignore[attr-defined]
    return sessions


@pytest.mark.parametrize(("listen", "kind", "where"), [
    ("127.0.0.1:7701", "tcp", ("127.0.0.1", 7701)),
    ("[::1]:7702", "tcp", ("::1", 7702)),
    ("unix:/tmp/aegis-test.sock", "unix", ("/tmp/aegis-test.sock",)),
])
def test_tor_serves_sessions_on_the_onion_target(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity], tmp_path: Path,
        listen: str, kind: str, where: tuple[Any, ...]) -> None:
    """The onion service's target (network.listen_address) is the Tor provider's own
    listener, a child of it; the session factory opens no socket."""
    reactor = MemoryReactorClock()
    config = parse_config({"network": {"listen_address": listen}})
    tor = TorProvider(reactor, config, identities[1], tmp_path, EventBus(), clock=clock)
    sessions = bob_sessions(identities[1], clock, config)
    listener = tor.serve(sessions.server_factory(tor.name))
    assert isinstance(listener, LocalListener) and listener.parent is tor
    listener.startService()
    if kind == "tcp":
        ((port, factory, _backlog, interface),) = reactor.tcpServers
        assert (interface, port) == where
    else:
        ((path, factory, *_rest),) = reactor.unixServers
        assert (path,) == where
    assert isinstance(factory, ServerFactory) and factory.transport_name == "tor"
    assert not hasattr(sessions, "server_service")
    result_of(listener.stopService())


def test_a_stream_accepted_by_tor_reports_tor(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity], tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    tor = TorProvider(reactor, Config(), identities[1], tmp_path, EventBus(), clock=clock)
    sessions = bob_sessions(identities[1], clock)
    tor.serve(sessions.server_factory(tor.name)).startService()
    ((_port, factory, _backlog, _interface),) = reactor.tcpServers
    link = accepted_through(factory, clock, identities[0], identities[1])
    assert link.transport_name == "tor" and link.peer == identities[0].onion


def test_a_stream_accepted_by_i2p_reports_i2p_not_a_guess(
        identities: tuple[NodeIdentity, NodeIdentity], tmp_path: Path) -> None:
    """The I2P provider serves on a loopback port of its own and asks the router to
    forward there. A stream arriving there is I2P even when nothing in the handshake
    says so (here the dialler named Bob by his onion: the old suffix guess said tor)."""
    clock = Clock()
    clock.advance(time.time())
    bob = ident.create(tmp_path / "identity", clock.seconds())
    reactor = MemoryReactorClock()
    bridge = FakeSAMBridge()
    cfg = load_config(None, {"i2p.enabled": True, "i2p.tunnel_length": 1})
    i2p = I2PProvider(reactor, cfg, bob, tmp_path, clock=clock, sam=bridge.endpoint())
    sessions = bob_sessions(bob, clock)
    listener = i2p.serve(sessions.server_factory(i2p.name))
    assert listener.parent is i2p
    i2p.startService()
    result_of(i2p.when_ready())
    ((port, factory, _backlog, interface),) = reactor.tcpServers
    assert interface == "127.0.0.1" and port == 0  # loopback, a port the system picks
    [forward] = [c for c in bridge.commands if c.startswith("STREAM FORWARD")]
    assert "HOST=127.0.0.1" in forward and "SILENT=true" in forward
    alice = memory_identity(clock.seconds())
    link = accepted_through(factory, clock, alice, i2p.identity)
    assert link.transport_name == "i2p" and link.peer == alice.onion
    with pytest.raises(ValueError, match="already forwards"):
        i2p.serve(sessions.server_factory("i2p"))
    result_of(i2p.stopService())
    assert bridge.sockets == []


def test_every_provider_serves_through_the_interface(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider(local_address=identities[1].onion, port=PORT)
    assert verifyObject(ITransportProvider, provider)
    sessions = bob_sessions(identities[1], clock)
    listener = provider.serve(sessions.server_factory(provider.name))
    assert provider.servers == {}  # listens only while running
    listener.startService()
    link = accepted_through(provider.servers[(identities[1].onion, PORT)], clock,
                            identities[0], identities[1])
    assert link.transport_name == "tor"
    listener.stopService()
    assert provider.servers == {}


def test_tap_has_each_provider_serve_the_sessions(tmp_path: Path) -> None:
    """No 'sessions' listener of the session layer in the tree: the providers listen."""
    from aegis_hidden import tap

    opts = tap.Options()
    opts.parseOptions(["-d", str(tmp_path), "--i2p", "--no-api"])
    node = tap.makeService(opts)
    assert "sessions" not in node.namedServices  # type: ignore[attr-defined]
    for name in ("tor", "i2p"):
        provider = node.getServiceNamed(name)  # type: ignore[attr-defined]
        listener = provider.getServiceNamed("listener")
        assert isinstance(listener, LocalListener)
        assert isinstance(listener.factory, ServerFactory)
        assert listener.factory.transport_name == name
