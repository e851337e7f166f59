"""The Twisted SAM protocol, sessions and stream endpoints against the in-memory bridge.

Every test that matters runs against a 3.0/3.1 bridge (what i2pd 2.45.1 speaks)
and a 3.3 bridge (PRIMARY sessions, SESSION ADD, ports, PING).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from aegis_hidden.config import PrivacyError
from aegis_hidden.i2p import (
    CantReachPeer,
    InvalidId,
    InvalidKey,
    KeyNotFound,
    NoVersion,
    SAMProtocolError,
)
from aegis_hidden.i2p._endpoints import SAMStreamClientEndpoint, SAMStreamServerEndpoint
from aegis_hidden.i2p._protocol import I2PAddress, SAMSocketProtocol, open_sam_socket
from aegis_hidden.i2p._sam import DatagramReceived, RawReceived
from aegis_hidden.i2p._session import SAMSession, create_session, generate_destination
from aegis_hidden.testing import FakeI2PNetwork, FakeSAMBridge, result_of

V31 = ("3.0", "3.1")
V33 = ("3.0", "3.1", "3.2", "3.3")


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost = reason


class Echo(Recorder):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        assert self.transport is not None
        self.transport.write(b"echo:" + data)


class Collect(Factory):
    def __init__(self, cls: type[Recorder]) -> None:
        self.cls = cls
        self.built: list[Recorder] = []
        self.addresses: list[Any] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        proto = self.cls()
        proto.factory = self
        self.built.append(proto)
        self.addresses.append(addr)
        return proto


def two_bridges(versions: tuple[str, ...], **kw: Any) -> tuple[FakeSAMBridge, FakeSAMBridge]:
    net = FakeI2PNetwork()
    return FakeSAMBridge(net, versions=versions, **kw), FakeSAMBridge(net, versions=versions, **kw)


def session(bridge: FakeSAMBridge, style: str = "STREAM") -> SAMSession:
    s: SAMSession = result_of(create_session(bridge.endpoint(), style, None))
    return s


# ---------------------------------------------------------------- HELLO, DEST, SESSION


@pytest.mark.parametrize(("versions", "expected"), [(V31, "3.1"), (V33, "3.3"), (("3.0",), "3.0")])
def test_hello_negotiates_the_highest_common_version(versions: tuple[str, ...], expected: str) -> None:
    bridge = FakeSAMBridge(versions=versions)
    proto: SAMSocketProtocol = result_of(open_sam_socket(bridge.endpoint()))
    assert proto.version == expected
    assert bridge.commands[0] == "HELLO VERSION MIN=3.0 MAX=3.3"


def test_hello_without_a_common_version_is_noversion() -> None:
    bridge = FakeSAMBridge(versions=V31)
    with pytest.raises(NoVersion):
        result_of(open_sam_socket(bridge.endpoint(), min_version="3.2"))


def test_dest_generate_returns_a_type7_key_whose_b32_we_compute() -> None:
    bridge = FakeSAMBridge()
    key = result_of(generate_destination(bridge.endpoint()))
    assert key.destination.signature_type == 7
    assert "DEST GENERATE SIGNATURE_TYPE=7" in bridge.commands
    s = result_of(create_session(bridge.endpoint(), "STREAM", key))
    assert bridge.session_by_b32(key.destination.b32) is not None
    assert result_of(s.lookup("ME")) == key.destination


def test_session_create_on_3_1_is_a_plain_stream_session() -> None:
    bridge = FakeSAMBridge(versions=V31)
    s = session(bridge)
    assert s.version == "3.1" and s.stream_id == s.id
    assert any(c.startswith(f"SESSION CREATE STYLE=STREAM ID={s.id} DESTINATION=TRANSIENT "
                            "SIGNATURE_TYPE=7") for c in bridge.commands)
    assert not any(c.startswith("SESSION ADD") for c in bridge.commands)


def test_session_create_on_3_3_is_primary_plus_stream_subsession() -> None:
    bridge = FakeSAMBridge(versions=V33)
    s = session(bridge)
    assert s.version == "3.3" and s.stream_id == f"{s.id}-s"
    assert any(c.startswith(f"SESSION CREATE STYLE=PRIMARY ID={s.id}") for c in bridge.commands)
    assert f"SESSION ADD STYLE=STREAM ID={s.id}-s" in bridge.commands


def test_same_key_twice_is_duplicated_dest_and_closing_frees_it() -> None:
    bridge = FakeSAMBridge()
    first = session(bridge)
    with pytest.raises(Exception, match="DUPLICATED_DEST"):
        result_of(create_session(bridge.endpoint(), "DATAGRAM", first.key))
    first.close()
    again = result_of(create_session(bridge.endpoint(), "DATAGRAM", first.key))
    assert again.destination == first.destination


def test_session_readiness_waits_for_the_router() -> None:
    clock = Clock()
    bridge = FakeSAMBridge(clock=clock, ready_delay=20)
    wrapped = Deferred.fromCoroutine(create_session(bridge.endpoint(), "STREAM", None))
    assert not wrapped.called
    clock.advance(20)
    assert isinstance(result_of(wrapped), SAMSession)


def test_a_b32_name_without_a_leaseset_yet_is_key_not_found_not_a_bad_key() -> None:
    # i2pd 2.45.1 answers INVALID_KEY when the netDb has no LeaseSet for a b32
    # name (as for our own name before its LeaseSet is published): that is a
    # name to retry, not a malformed one
    a, b = two_bridges(V31)
    s = session(a)
    other = result_of(generate_destination(a.endpoint()))
    with pytest.raises(KeyNotFound, match=r"no LeaseSet for \S+\.b32\.i2p"):
        result_of(s.lookup(other.destination.b32))
    assert "NAMING LOOKUP NAME=" + other.destination.b32 in a.commands
    published = result_of(create_session(b.endpoint(), "STREAM", other))
    assert result_of(s.lookup(other.destination.b32)) == published.destination
    with pytest.raises(InvalidKey):  # not a b32 name: the router's answer stands
        result_of(s.lookup("nobody.i2p"))


def test_unknown_keys_and_odd_spacing_from_the_bridge_are_fine() -> None:
    bridge = FakeSAMBridge(noisy=True)
    s = session(bridge)
    assert result_of(s.lookup("ME")) == s.destination


# ---------------------------------------------------------------- streams


def _stream_pair(versions: tuple[str, ...]) -> tuple[FakeSAMBridge, FakeSAMBridge, SAMSession,
                                                     SAMSession, Collect, Any]:
    server_bridge, client_bridge = two_bridges(versions)
    server_session, client_session = session(server_bridge), session(client_bridge)
    factory = Collect(Echo)

    async def src_server() -> SAMSession:
        return server_session

    port = result_of(SAMStreamServerEndpoint(Clock(), server_bridge.endpoint(), src_server)
                     .listen(factory))
    return server_bridge, client_bridge, server_session, client_session, factory, port


@pytest.mark.parametrize("versions", [V31, V33])
def test_stream_both_ways_with_i2p_addresses_only(versions: tuple[str, ...]) -> None:
    _, client_bridge, server_session, client_session, factory, port = _stream_pair(versions)

    async def src_client() -> SAMSession:
        return client_session

    endpoint = SAMStreamClientEndpoint(client_bridge.endpoint(), src_client,
                                       server_session.destination.b32, 7)
    client: Recorder = result_of(endpoint.connect(Collect(Recorder)))
    assert client.transport is not None
    client.transport.write(b"hello\n\x00binary")
    [server] = factory.built
    assert server.data == b"hello\n\x00binary"
    assert client.data == b"echo:hello\n\x00binary"
    peer = factory.addresses[0]
    assert isinstance(peer, I2PAddress) and peer.b32 == client_session.destination.b32
    assert server.transport is not None
    client_peer, server_host = client.transport.getPeer(), server.transport.getHost()
    assert isinstance(client_peer, I2PAddress) and isinstance(server_host, I2PAddress)
    assert client_peer.b32 == server_session.destination.b32 == server_host.b32
    assert port.getHost().b32 == server_session.destination.b32
    connect = [c for c in client_bridge.commands if c.startswith("STREAM CONNECT")]
    assert connect == [f"STREAM CONNECT ID={client_session.stream_id} DESTINATION="
                       f"{server_session.destination.b32} SILENT=false"
                       + (" TO_PORT=7" if versions == V33 else "")]
    client.transport.loseConnection()
    assert server.lost is not None and client.lost is not None


def test_listening_port_rearms_so_a_second_stream_arrives() -> None:
    _, client_bridge, server_session, client_session, factory, port = _stream_pair(V31)

    async def src() -> SAMSession:
        return client_session

    for i in range(3):
        endpoint = SAMStreamClientEndpoint(client_bridge.endpoint(), src, server_session.destination.base64)
        c: Recorder = result_of(endpoint.connect(Collect(Recorder)))
        assert c.transport is not None
        c.transport.write(b"%d" % i)
    assert [p.data for p in factory.built] == [b"0", b"1", b"2"]
    assert port.accepted == 3
    result_of(port.stopListening())


def test_connect_errors_are_typed() -> None:
    server_bridge, client_bridge = two_bridges(V31)
    server_session, client_session = session(server_bridge), session(client_bridge)

    async def src() -> SAMSession:
        return client_session

    endpoint = SAMStreamClientEndpoint(client_bridge.endpoint(), src, server_session.destination.b32)
    with pytest.raises(CantReachPeer):  # nobody accepting yet: like a LeaseSet not published
        result_of(endpoint.connect(Collect(Recorder)))
    client_bridge.fail_next("STREAM CONNECT", "I2P_ERROR")
    with pytest.raises(Exception, match="I2P_ERROR"):
        result_of(endpoint.connect(Collect(Recorder)))
    client_session.close()
    with pytest.raises(InvalidId):
        result_of(endpoint.connect(Collect(Recorder)))
    assert client_bridge.sockets == []  # every failed stream socket was closed


@pytest.mark.parametrize("target", ["example.com", "127.0.0.1", "x.onion", "", "abc.b32.i2p",
                                    "AAAA"])
def test_client_endpoint_dials_only_i2p(target: str) -> None:
    async def src() -> SAMSession:
        raise AssertionError("never asked")

    with pytest.raises(PrivacyError):
        SAMStreamClientEndpoint(FakeSAMBridge().endpoint(), src, target)


def test_acceptor_retries_on_the_clock_after_the_bridge_restarts() -> None:
    clock = Clock()
    server_bridge, client_bridge = two_bridges(V31)
    holder = {"s": session(server_bridge)}

    async def src() -> SAMSession:
        return holder["s"]

    factory = Collect(Echo)
    port = result_of(SAMStreamServerEndpoint(clock, server_bridge.endpoint(), src, retry_delay=5)
                     .listen(factory))
    server_bridge.restart()  # acceptor and session gone
    holder["s"] = session(server_bridge)  # e.g. the provider made a new one
    client_session = session(client_bridge)

    async def csrc() -> SAMSession:
        return client_session

    endpoint = SAMStreamClientEndpoint(client_bridge.endpoint(), csrc, holder["s"].destination.b32)
    with pytest.raises(CantReachPeer):
        result_of(endpoint.connect(Collect(Recorder)))
    clock.advance(5)
    c: Recorder = result_of(endpoint.connect(Collect(Recorder)))
    assert c.transport is not None
    c.transport.write(b"x")
    assert factory.built[-1].data == b"x"
    result_of(port.stopListening())
    clock.advance(60)
    assert server_bridge.sessions and all(not s.acceptors for s in server_bridge.sessions.values())


def test_acceptor_survives_connection_refused_while_the_router_is_down() -> None:
    clock = Clock()
    server_bridge, client_bridge = two_bridges(V31)
    holder = {"s": session(server_bridge)}

    async def src() -> SAMSession:
        return holder["s"]

    factory = Collect(Echo)
    port = result_of(SAMStreamServerEndpoint(clock, server_bridge.endpoint(), src, retry_delay=5)
                     .listen(factory))
    server_bridge.stop()  # i2pd down: connections refused
    clock.advance(5)
    clock.advance(5)  # two refused attempts, the loop keeps going
    server_bridge.start()
    holder["s"] = session(server_bridge)
    clock.advance(5)
    client_session = session(client_bridge)

    async def csrc() -> SAMSession:
        return client_session

    endpoint = SAMStreamClientEndpoint(client_bridge.endpoint(), csrc, holder["s"].destination.b32)
    c: Recorder = result_of(endpoint.connect(Collect(Recorder)))
    assert c.transport is not None
    c.transport.write(b"back")
    assert factory.built[-1].data == b"back"
    result_of(port.stopListening())


# ---------------------------------------------------------------- datagrams


@pytest.mark.parametrize("versions", [V31, V33])
def test_repliable_datagrams_both_ways(versions: tuple[str, ...]) -> None:
    a_bridge, b_bridge = two_bridges(versions)
    a, b = session(a_bridge, "DATAGRAM"), session(b_bridge, "DATAGRAM")
    got_a: list[DatagramReceived | RawReceived] = []
    got_b: list[DatagramReceived | RawReceived] = []
    a.on_datagram(got_a.append)
    b.on_datagram(got_b.append)
    result_of(a.send_datagram(b.destination.b32, b"ping\n\x00"))
    assert [(g.payload, getattr(g, "destination", None)) for g in got_b] == [
        (b"ping\n\x00", a.destination.base64)]
    sender = got_b[0]
    assert isinstance(sender, DatagramReceived)
    result_of(b.send_datagram(sender.destination, b"pong"))  # reply to the sender
    assert [g.payload for g in got_a] == [b"pong"]
    assert any(c.startswith("NAMING LOOKUP NAME=") for c in a_bridge.commands)


def test_stream_session_cannot_send_datagrams() -> None:
    s = session(FakeSAMBridge())
    with pytest.raises(SAMProtocolError, match="cannot send datagrams"):
        result_of(s.send_datagram(s.destination.base64, b"x"))


# ---------------------------------------------------------------- protocol details


def test_bridge_ping_gets_a_pong() -> None:
    proto = SAMSocketProtocol()
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"PING 12345\n")
    assert transport.value() == b"PONG 12345\n"


def test_garbage_fails_the_waiting_command_and_aborts() -> None:
    proto = SAMSocketProtocol()
    transport = StringTransport()
    proto.makeConnection(transport)
    d = proto.command(b"NAMING LOOKUP NAME=ME\n")
    proto.dataReceived(b'NAMING REPLY RESULT="open\n')
    with pytest.raises(SAMProtocolError):
        result_of(d)
    assert transport.disconnecting


def test_connection_lost_fails_pending_commands() -> None:
    proto = SAMSocketProtocol()
    proto.makeConnection(StringTransport())
    d = proto.command(b"SESSION CREATE STYLE=STREAM ID=x DESTINATION=TRANSIENT\n")
    proto.connectionLost(Failure(Exception("gone")))
    with pytest.raises(Exception, match="SAM socket closed"):
        result_of(d)
    assert result_of(proto.when_lost()) is None


def test_data_arriving_before_attach_is_not_lost() -> None:
    proto = SAMSocketProtocol()
    proto.makeConnection(StringTransport())
    proto.reader.stream_pending("CONNECT")
    d = proto.command(b"STREAM CONNECT ID=x DESTINATION=y SILENT=false\n")
    proto.dataReceived(b"STREAM STATUS RESULT=OK\nearly")
    result_of(d)
    app: IProtocol = Recorder()
    proto.attach(app, I2PAddress("h"), I2PAddress("p"))
    proto.dataReceived(b"+late")
    assert isinstance(app, Recorder) and app.data == b"early+late"
