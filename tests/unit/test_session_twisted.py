"""The Twisted session layer in memory: StringTransport, iosim connections, Clock."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport
from zope.interface.verify import verifyObject

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import NodeIdentity, RecordCache
from aegis_hidden.interfaces import IPeerLink, ISessionFactory
from aegis_hidden.session import CloseReason, HandshakeError, Session, SessionParams
from aegis_hidden.session.twisted import NoTransport, PeerLink, RevokedPeer, SessionFactory
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity

NOW = 1_800_000_000.0
PORT = 7701


def outcome(d: Deferred[Any]) -> Any:
    """The result (or Failure) a Deferred already has."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


class Node:
    def __init__(self, identity: NodeIdentity, provider: MemoryTransportProvider, clock: Clock,
                 events: EventBus | None = None, config: Config | None = None) -> None:
        self.identity = identity
        self.sessions = SessionFactory(identity, [provider], config or Config(), clock, events=events)
        self.incoming: list[IPeerLink] = []
        self.sessions.on_incoming(self.incoming.append)
        provider.listen(identity.onion, PORT, self.sessions.server_factory())


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def test_factory_provides_the_interface(clock: Clock,
                                        identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], Config(), clock)
    assert verifyObject(ISessionFactory, sf)


def test_dial_handshake_and_messages_both_ways(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[bool, int]] = []  # (server side?, bytes) of every transport write
    write = FakeTransport.write

    def recording(transport: FakeTransport, data: bytes) -> None:
        writes.append((bool(transport.isServer), len(data)))
        write(transport, data)

    monkeypatch.setattr(FakeTransport, "write", recording)
    provider = MemoryTransportProvider()
    bus = EventBus(now=clock.seconds)
    seen: list[dict[str, Any]] = []
    bus.subscribe(seen.append)
    alice = Node(identities[0], provider, clock, bus)
    bob = Node(identities[1], provider, clock)
    link = outcome(alice.sessions.connect(bob.identity.onion))
    assert isinstance(link, PeerLink) and verifyObject(IPeerLink, link)
    assert link.peer == bob.identity.onion and link.record == bob.identity.record
    assert link.transport_name == "tor"
    (theirs,) = bob.incoming
    assert theirs.peer == alice.identity.onion and theirs.transport_name == "tor"
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    link.send_message(b"early")  # sent before Bob set a receiver: queued, not lost
    provider.flush()
    theirs.set_receiver(got_b.append)
    link.set_receiver(got_a.append)
    theirs.send_message(b"reply" * 1000)
    link.send_message(b"")
    provider.flush()
    assert got_b == [b"early", b""]
    assert got_a == [b"reply" * 1000]
    # Every write on the wire was whole cells, handshake included, in both directions.
    cell = Config().mixing.cell_size
    assert {side for side, _ in writes} == {False, True}
    assert all(n > 0 and n % cell == 0 for _, n in writes), writes
    client_t, server_t = provider.connections[0]
    assert [e["type"] for e in seen] == ["peer_connected"]
    assert seen[0]["peer"] == bob.identity.onion and seen[0]["direction"] == "outgoing"
    # Close: the peer learns the reason, both Deferreds fire, the stream goes away.
    closed_b = theirs.when_closed()
    link.close("bye")
    provider.flush()
    assert outcome(closed_b) == "normal: peer closed: bye"
    assert outcome(link.when_closed()).startswith("normal")
    assert client_t.disconnected and server_t.disconnected
    assert [e["type"] for e in seen] == ["peer_connected", "peer_disconnected"]
    with pytest.raises(Exception, match="closed"):
        link.send_message(b"late")


def test_port_in_the_address_is_used(clock: Clock,
                                     identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)
    bob_sf = SessionFactory(identities[1], [provider], Config(), clock)
    provider.listen(identities[1].onion, 9999, bob_sf.server_factory())
    link = outcome(alice.sessions.connect(f"{identities[1].onion}:9999"))
    assert isinstance(link, PeerLink) and link.peer == identities[1].onion


def test_wire_is_whole_cells_with_string_transport(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    # The responder protocol on a StringTransport, driven by a sans-I/O initiator.
    bob_sf = SessionFactory(identities[1], [], Config(), clock)
    incoming: list[IPeerLink] = []
    bob_sf.on_incoming(incoming.append)
    proto = bob_sf.server_factory().buildProtocol(None)
    assert proto is not None
    transport = StringTransport()
    proto.makeConnection(transport)
    initiator = Session(identities[0], SessionParams.from_config(Config()), initiator=True,
                        clock=clock.seconds, peer_address=identities[1].onion)
    initiator.start()
    flights = []
    for _ in range(3):
        out = initiator.data_to_send()
        for k in range(0, len(out), 7):  # byte dribbles: framing must not care
            proto.dataReceived(out[k:k + 7])
        back = transport.value()
        transport.clear()
        flights.append(back)
        initiator.receive_data(back)
    assert initiator.established and len(incoming) == 1
    assert all(len(f) % Config().mixing.cell_size == 0 for f in flights if f)


def test_handshake_timeout_on_the_clock(clock: Clock,
                                        identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)

    class Silent(Protocol):
        pass

    from twisted.internet.protocol import Factory

    provider.listen(identities[1].onion, PORT, Factory.forProtocol(Silent))
    d = alice.sessions.connect(identities[1].onion)
    box: list[Any] = []
    d.addBoth(box.append)
    clock.advance(59)
    assert box == []
    clock.advance(1.5)
    (result,) = box
    assert isinstance(result, Failure) and isinstance(result.value, HandshakeError)
    assert result.value.reason is CloseReason.TIMEOUT
    client_t, _ = provider.connections[0]
    assert client_t.disconnecting or client_t.disconnected
    assert clock.getDelayedCalls() == []


def test_responder_timeout_and_timer_cancelled_on_success(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    bob_sf = SessionFactory(identities[1], [], Config(), clock)
    proto = bob_sf.server_factory().buildProtocol(None)
    assert proto is not None
    transport = StringTransport()
    proto.makeConnection(transport)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(60)
    assert transport.disconnecting
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)
    Node(identities[1], provider, clock)
    outcome(alice.sessions.connect(identities[1].onion))
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_misrouted_stream_fails_with_a_handshake_error(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)
    bob = Node(identities[1], provider, clock)
    carol = memory_identity(NOW)
    provider.listen(carol.onion, PORT, bob.sessions.server_factory())  # Bob answers for Carol
    result = outcome(alice.sessions.connect(carol.onion))
    assert isinstance(result, Failure) and result.check(HandshakeError)
    assert bob.incoming == []


def test_no_transport_and_refused(clock: Clock,
                                  identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)
    no = outcome(alice.sessions.connect("abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.b32.i2p"))
    assert isinstance(no, Failure) and no.check(NoTransport)
    refused = outcome(alice.sessions.connect(memory_identity(NOW).onion))
    assert isinstance(refused, Failure) and refused.check(ConnectionRefusedError)


def test_stream_cut_after_handshake_is_truncation(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)
    bob = Node(identities[1], provider, clock)
    link = outcome(alice.sessions.connect(bob.identity.onion))
    closed = link.when_closed()
    _, server_t = provider.connections[0]
    server_t.loseConnection()  # the stream dies without a CLOSE cell
    provider.flush()
    assert outcome(closed).startswith("truncated")
    assert outcome(bob.incoming[0].when_closed()).startswith("truncated")


def test_receiver_exception_does_not_kill_the_session(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    alice = Node(identities[0], provider, clock)
    bob = Node(identities[1], provider, clock)
    link = outcome(alice.sessions.connect(bob.identity.onion))
    got: list[bytes] = []

    def bad(data: bytes) -> None:
        got.append(data)
        raise RuntimeError("receiver bug")

    bob.incoming[0].set_receiver(bad)
    link.send_message(b"1")
    link.send_message(b"2")
    provider.flush()
    assert got == [b"1", b"2"]


def test_connect_gives_up_when_the_dial_hangs(clock: Clock,
                                              identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    from twisted.internet.defer import CancelledError
    from zope.interface import implementer

    from aegis_hidden.interfaces import ITransportProvider

    cancelled: list[bool] = []

    @implementer(ITransportProvider)
    class Hanging(MemoryTransportProvider):
        def client_endpoint(self, address: str, port: int) -> Any:
            class Endpoint:
                def connect(self, factory: Any) -> Deferred[Any]:
                    return Deferred(lambda d: cancelled.append(True))
            return Endpoint()

    sf = SessionFactory(identities[0], [Hanging()], Config(), clock)
    d = sf.connect(identities[1].onion)
    clock.advance(59.9)
    assert not d.called
    clock.advance(0.2)
    result = outcome(d)
    assert isinstance(result, Failure) and isinstance(result.value, HandshakeError)
    assert result.value.reason is CloseReason.TIMEOUT and cancelled == [True]
    assert not result.check(CancelledError)


def test_incoming_streams_are_capped_by_max_connections(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    from aegis_hidden.config import parse_config

    config = parse_config({"network": {"max_connections": 2}})
    sf = SessionFactory(identities[1], [], config, clock)
    server = sf.server_factory()
    protos = [server.buildProtocol(None) for _ in range(3)]
    assert protos[0] is not None and protos[1] is not None and protos[2] is None
    transports = [StringTransport(), StringTransport()]
    for proto, t in zip(protos[:2], transports, strict=True):
        assert proto is not None
        proto.makeConnection(t)
    assert sf.incoming_streams == 2
    protos[0].connectionLost()
    assert sf.incoming_streams == 1
    assert server.buildProtocol(None) is not None


def test_a_session_established_after_the_caller_gave_up_is_closed(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    """A transport that ignores cancellation and connects late must not leave an
    orphan session that nobody reads (the peer would answer into it for ever)."""
    from zope.interface import implementer

    from aegis_hidden.interfaces import ITransportProvider

    provider = MemoryTransportProvider()
    late: list[Any] = []

    @implementer(ITransportProvider)
    class Late(MemoryTransportProvider):
        def client_endpoint(self, address: str, port: int) -> Any:
            real = provider.client_endpoint(address, port)

            class Endpoint:
                def connect(self, factory: Any) -> Deferred[Any]:
                    d: Deferred[Any] = Deferred(lambda _: None)  # cancel ignored
                    late.append(lambda: real.connect(factory))
                    return d
            return Endpoint()

    b = Node(identities[1], provider, clock)
    announced: list[Any] = []
    bus = EventBus(now=clock.seconds)
    bus.subscribe(announced.append)
    sf = SessionFactory(identities[0], [Late()], Config(), clock, events=bus)
    d = sf.connect(identities[1].onion)
    clock.advance(61)
    assert isinstance(outcome(d), Failure)
    late[0]()  # the transport finally connects
    provider.flush()
    assert b.incoming, "the responder completed its side"
    closed = outcome(b.incoming[0].when_closed())
    assert "abandoned" in str(closed)
    assert not [e for e in announced if e["type"] == "peer_connected"]


# -- record cache, ML-DSA pins and revocations through the factory --------------------
class RecordingSessions:
    """Wraps ``Session`` in the factory module and records the keywords each got."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import inspect

        from aegis_hidden.session import _twisted

        self.kwargs: list[dict[str, Any]] = []
        accepted = set(inspect.signature(Session).parameters)

        def build(*args: Any, **kwargs: Any) -> Session:
            self.kwargs.append(dict(kwargs))
            return Session(*args, **{k: v for k, v in kwargs.items() if k in accepted})

        monkeypatch.setattr(_twisted, "Session", build)


class MarkedRevoked(RecordCache):
    """A record cache in which the given onions count as revoked."""

    def __init__(self, *onions: str) -> None:
        super().__init__()
        self.marked = set(onions)

    def is_revoked(self, onion: str) -> bool:
        return onion in self.marked or super().is_revoked(onion)


def test_record_cache_and_mldsa_pin_reach_every_session(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    recording = RecordingSessions(monkeypatch)
    provider = MemoryTransportProvider()
    cache = RecordCache()

    def pin(onion: str) -> bytes | None:
        return None

    alice = SessionFactory(identities[0], [provider], Config(), clock,
                           record_cache=cache, mldsa_pin=pin)
    bob = SessionFactory(identities[1], [provider], Config(), clock,
                         record_cache=cache, mldsa_pin=pin)
    provider.listen(identities[0].onion, PORT, alice.server_factory())
    provider.listen(identities[1].onion, PORT, bob.server_factory())
    assert isinstance(outcome(alice.connect(identities[1].onion)), PeerLink)
    assert isinstance(outcome(bob.connect(identities[0].onion)), PeerLink)
    assert len(recording.kwargs) == 4  # two initiators, two responders
    for kwargs in recording.kwargs:
        # responders get a wrapper that also notes who the peer claims to be
        assert kwargs["record_cache"] is cache
        assert kwargs["mldsa_pin"] is pin or kwargs["mldsa_pin"].__wrapped__ is pin
    # without them, the factory passes nothing (Session's own defaults apply)
    plain = SessionFactory(identities[0], [provider], Config(), clock)
    assert isinstance(outcome(plain.connect(identities[1].onion)), PeerLink)
    assert "record_cache" not in recording.kwargs[-2] and "mldsa_pin" not in recording.kwargs[-2]


def test_dialing_a_revoked_onion_fails_before_any_stream(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    provider = MemoryTransportProvider()
    bob = Node(identities[1], provider, clock)
    alice = SessionFactory(identities[0], [provider], Config(), clock,
                           record_cache=MarkedRevoked(bob.identity.onion))
    result = outcome(alice.connect(bob.identity.onion + ":7701"))
    assert isinstance(result, Failure) and result.check(RevokedPeer)
    assert bob.identity.onion in str(result.value)
    assert provider.connections == [] and alice.revoked_refused == 1


def test_a_revoked_initiator_is_never_announced(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept side: the initiator's onion is only known after the handshake."""
    RecordingSessions(monkeypatch)  # the factory's own check, whatever Session does
    provider = MemoryTransportProvider()
    alice_id, bob_id = identities
    bob = SessionFactory(bob_id, [provider], Config(), clock,
                         record_cache=MarkedRevoked(alice_id.onion))
    incoming: list[IPeerLink] = []
    bob.on_incoming(incoming.append)
    provider.listen(bob_id.onion, PORT, bob.server_factory())
    alice = SessionFactory(alice_id, [provider], Config(), clock)
    result = outcome(alice.connect(bob_id.onion))
    provider.flush()
    assert incoming == []
    assert isinstance(result, Failure) or result.is_closed
    assert bob.revoked_refused == 1


def test_a_peer_revoked_during_the_handshake_is_refused_to_the_dialer(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dial side: a revocation learned while the handshake ran (say, from another
    session's record push) still stops the new session."""
    RecordingSessions(monkeypatch)  # the factory's own check, whatever Session does
    provider = MemoryTransportProvider()
    bob = Node(identities[1], provider, clock)
    cache = MarkedRevoked()
    alice = SessionFactory(identities[0], [provider], Config(), clock, record_cache=cache)
    checks: list[str] = []
    original = cache.is_revoked

    def flip(onion: str) -> bool:
        checks.append(onion)
        if len(checks) > 1:
            cache.marked.add(onion)
        return original(onion)

    cache.is_revoked = flip  # type: ignore[method-assign]
    result = outcome(alice.connect(bob.identity.onion))
    assert isinstance(result, Failure) and result.check(RevokedPeer)
    assert alice.revoked_refused == 1
    provider.flush()
    assert all(isinstance(link, PeerLink) and link.is_closed for link in bob.incoming)


def test_a_new_identity_on_the_factory_signs_with_its_own_keys(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    """tap.py swaps in a re-signed identity at run time: its keys must come along."""
    provider = MemoryTransportProvider()
    bob = Node(identities[1], provider, clock)
    alice = SessionFactory(identities[0], [provider], Config(), clock)
    renewed = memory_identity(NOW)
    alice.identity = renewed
    link = outcome(alice.connect(bob.identity.onion))
    assert isinstance(link, PeerLink), link
    (theirs,) = bob.incoming
    assert theirs.peer == renewed.onion and alice.identity is renewed
