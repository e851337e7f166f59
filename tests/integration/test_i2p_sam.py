"""The SAM client and the I2P provider against real i2pd routers.

All tests share one private I2P network (the ``i2p_network`` session fixture:
4 patched i2pd routers on 127.0.0.1, netid 37, 1-hop tunnels; destinations
that talk to each other live on the two routers that are not floodfills). i2pd 2.45.1
speaks SAM 3.0/3.1 and answers SESSION CREATE only once tunnels are built
(polled every 20 s), so each session takes 20-40 s to come up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from aegis_hidden.config import load_config
from aegis_hidden.i2p import (
    CantReachPeer,
    DatagramReceived,
    Destination,
    DuplicatedDest,
    I2PAddress,
    I2PProvider,
    KeyNotFound,
    NoVersion,
    RawReceived,
    SAMSession,
    SAMStreamClientEndpoint,
    SAMStreamServerEndpoint,
    create_session,
    generate_destination,
    open_sam_socket,
)
from aegis_hidden.i2p._provider import load_or_generate_key_file
from aegis_hidden.identity import load_or_create, verify_binding, verify_record
from aegis_hidden.testing import I2PNetwork

pytestmark = pytest.mark.integration
reactor: Any = _reactor

SESSION_TIMEOUT = 150.0
# 5 tunnels each way (i2pd's default): i2pd 2.45.1 skips publishing a LeaseSet
# whose inbound tunnels were built before any outbound one and retries only when
# an inbound tunnel changes; with 2 tunnels that happened in about 1 start of 6.
TUNNEL_OPTIONS = {"inbound.length": 1, "outbound.length": 1,
                  "inbound.quantity": 5, "outbound.quantity": 5}


def sam(net: I2PNetwork, index: int) -> TCP4ClientEndpoint:
    return TCP4ClientEndpoint(reactor, "127.0.0.1", net.routers[index].sam_port, timeout=10)


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def until(predicate: Callable[[], bool], timeout: float, what: str, net: I2PNetwork) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{net.logs()}")
        await sleep(0.5)


async def with_timeout(d: Deferred[Any], seconds: float, what: str, net: I2PNetwork) -> Any:
    timer = reactor.callLater(seconds, d.cancel)
    try:
        return await d
    except Exception as e:
        if not timer.active():
            raise AssertionError(f"{what} took more than {seconds:.0f}s\n{net.logs()}") from e
        raise
    finally:
        if timer.active():
            timer.cancel()


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.greeting = b""

    def connectionMade(self) -> None:
        if self.greeting:
            assert self.transport is not None
            self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class Greeter(Factory):
    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:
        p = Recorder()
        p.greeting = self.greeting
        p.factory = self
        self.built.append(p)
        return p


# ---------------------------------------------------------------- SAM basics


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_hello_negotiates_3_0_or_3_1(i2p_network: I2PNetwork) -> None:
    proto = await open_sam_socket(sam(i2p_network, 0))
    assert proto.version in ("3.0", "3.1")
    proto.close()
    with pytest.raises(NoVersion):
        await open_sam_socket(sam(i2p_network, 0), min_version="3.2", max_version="3.3")


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_dest_generate_gives_signature_type_7(i2p_network: I2PNetwork) -> None:
    key = await generate_destination(sam(i2p_network, 1))
    assert key.destination.signature_type == 7
    assert len(key.destination.raw) == 391 and key.destination.b32.endswith(".b32.i2p")


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_stream_and_datagram_sessions_with_the_persistent_key(
        i2p_network: I2PNetwork, tmp_path: Path) -> None:
    key_file = tmp_path / "destination.key"
    generated = await generate_destination(sam(i2p_network, 0))
    load_or_generate_key_file(key_file, generated)
    key = load_or_generate_key_file(key_file, None)  # read back from disk
    assert key is not None and key == generated

    stream = await with_timeout(Deferred.fromCoroutine(create_session(
        sam(i2p_network, 0), "STREAM", key, options=TUNNEL_OPTIONS)), SESSION_TIMEOUT,
        "SESSION CREATE STYLE=STREAM", i2p_network)
    assert stream.destination == key.destination
    me = await stream.lookup("ME")
    assert me == key.destination and me.b32 == key.destination.b32
    # the router's own view of the b32 name resolves to the destination we hashed,
    # once the session's LeaseSet is in the netDb (until then: KeyNotFound)
    assert (await _lookup_when_published(stream, key.destination.b32, i2p_network)) \
        == key.destination
    stream.close()

    datagram = None
    for _ in range(20):  # the router frees the destination shortly after the socket closes
        try:
            datagram = await with_timeout(Deferred.fromCoroutine(create_session(
                sam(i2p_network, 0), "DATAGRAM", key, options=TUNNEL_OPTIONS)), SESSION_TIMEOUT,
                "SESSION CREATE STYLE=DATAGRAM", i2p_network)
            break
        except DuplicatedDest:
            await sleep(0.5)
    assert datagram is not None and datagram.destination == key.destination
    assert (await datagram.lookup("ME")) == key.destination
    datagram.close()


async def _lookup_when_published(session: SAMSession, name: str, net: I2PNetwork,
                                 timeout: float = 150) -> Destination:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await session.lookup(name)
        except KeyNotFound:
            if time.monotonic() > deadline:
                raise AssertionError(f"no LeaseSet for {name} after {timeout:.0f}s\n{net.logs()}") \
                    from None
            await sleep(3)


# ---------------------------------------------------------------- two routers


async def _connect_with_retry(endpoint: SAMStreamClientEndpoint, factory: Greeter,
                              net: I2PNetwork, timeout: float = 150) -> Recorder:
    deadline = time.monotonic() + timeout
    while True:
        try:
            proto = await endpoint.connect(factory)
            assert isinstance(proto, Recorder)
            return proto
        except CantReachPeer:  # the peer's LeaseSet is not in the netDb yet
            if time.monotonic() > deadline:
                raise AssertionError(f"CANT_REACH_PEER for {timeout:.0f}s\n{net.logs()}") from None
            await sleep(3)


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_two_destinations_on_two_routers_stream_both_ways(i2p_network: I2PNetwork) -> None:
    server_s, client_s = await with_timeout(Deferred.fromCoroutine(_two_sessions(i2p_network)),
                                            SESSION_TIMEOUT, "two STREAM sessions", i2p_network)
    try:
        await _stream_both_ways(i2p_network, server_s, client_s)
    finally:
        server_s.close()
        client_s.close()


async def _two_sessions(net: I2PNetwork) -> tuple[SAMSession, SAMSession]:
    server, client = net.client_routers[:2]
    a, b = await gatherResults([
        Deferred.fromCoroutine(create_session(sam(net, server), "STREAM", None,
                                              options=TUNNEL_OPTIONS)),
        Deferred.fromCoroutine(create_session(sam(net, client), "STREAM", None,
                                              options=TUNNEL_OPTIONS)),
    ])
    return a, b


async def _stream_both_ways(net: I2PNetwork, server_s: SAMSession, client_s: SAMSession) -> None:
    async def server_src() -> SAMSession:
        return server_s

    async def client_src() -> SAMSession:
        return client_s

    server_factory = Greeter(b"hello from the server\n")
    server_router, client_router = net.client_routers[:2]
    port = await SAMStreamServerEndpoint(reactor, sam(net, server_router), server_src).listen(
        server_factory)
    try:
        endpoint = SAMStreamClientEndpoint(sam(net, client_router), client_src,
                                           server_s.destination.b32)
        client = await _connect_with_retry(endpoint, Greeter(b"hello from the client\n" * 200), net)
        expected_at_server = b"hello from the client\n" * 200
        await until(lambda: client.data == b"hello from the server\n"
                    and bool(server_factory.built)
                    and server_factory.built[-1].data == expected_at_server,
                    120, "application data both ways", net)
        transport = server_factory.built[-1].transport
        assert transport is not None
        peer = transport.getPeer()
        assert isinstance(peer, I2PAddress) and peer.b32 == client_s.destination.b32
        assert client.transport is not None
        client.transport.loseConnection()
    finally:
        await maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_repliable_datagrams_between_two_routers(i2p_network: I2PNetwork) -> None:
    a, b = await with_timeout(gatherResults([
        Deferred.fromCoroutine(create_session(sam(i2p_network, i2p_network.client_routers[0]),
                                              "DATAGRAM", None, options=TUNNEL_OPTIONS)),
        Deferred.fromCoroutine(create_session(sam(i2p_network, i2p_network.client_routers[1]),
                                              "DATAGRAM", None,
                                              options=TUNNEL_OPTIONS)),
    ]), SESSION_TIMEOUT, "two DATAGRAM sessions", i2p_network)
    try:
        at_a: list[DatagramReceived | RawReceived] = []
        at_b: list[DatagramReceived | RawReceived] = []
        a.on_datagram(at_a.append)
        b.on_datagram(at_b.append)
        deadline = time.monotonic() + 150
        while not at_b:  # unreliable by nature, and the first lookups may miss
            if time.monotonic() > deadline:
                raise AssertionError(f"no datagram arrived\n{i2p_network.logs()}")
            await a.send_datagram(b.destination.base64, b"ping \x00\n from a")
            await sleep(3)
        got = at_b[0]
        assert isinstance(got, DatagramReceived)
        assert got.payload == b"ping \x00\n from a"
        assert Destination.from_base64(got.destination) == a.destination  # repliable: signed sender
        while not at_a:
            if time.monotonic() > deadline:
                raise AssertionError(f"no reply datagram arrived\n{i2p_network.logs()}")
            await b.send_datagram(got.destination, b"pong from b")
            await sleep(3)
        assert at_a[0].payload == b"pong from b"
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------- the provider


def _provider(net: I2PNetwork, index: int, data_dir: Path) -> I2PProvider:
    ident, _ = load_or_create(data_dir / "identity", time.time())
    cfg = load_config(None, {"i2p.enabled": True, "i2p.sam_address": net.routers[index].sam_address,
                             "i2p.tunnel_length": 1, "i2p.tunnel_quantity": 5})
    return I2PProvider(reactor, cfg, ident, data_dir, retry_base=1.0, retry_cap=5.0)


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_provider_two_nodes_and_router_restart_brings_the_same_destination_back(
        i2p_network: I2PNetwork, tmp_path: Path) -> None:
    a_router, b_router = i2p_network.client_routers[-1], i2p_network.client_routers[0]
    a = _provider(i2p_network, a_router, tmp_path / "a")
    b = _provider(i2p_network, b_router, tmp_path / "b")
    a.startService()
    b.startService()
    try:
        await with_timeout(a.when_ready(), SESSION_TIMEOUT, "provider A ready", i2p_network)
        await with_timeout(b.when_ready(), SESSION_TIMEOUT, "provider B ready", i2p_network)
        address = a.state()["address"]
        verify_record(a.identity.record, a.identity.onion, now=time.time())
        binding = a.identity.i2p_binding
        assert binding is not None and Destination.from_base64(binding.destination).b32 == address
        assert verify_binding(a.identity.record, binding) == address
        me = await (await a.stream_session()).lookup("ME")
        assert me.b32 == address

        # B reaches A through the provider's endpoints
        factory = Greeter(b"A here\n")
        port = await a.server_endpoint().listen(factory)
        client = await _connect_with_retry(b.client_endpoint(address, 0), Greeter(b"B here\n"),
                                           i2p_network)
        await until(lambda: client.data == b"A here\n" and bool(factory.built)
                    and factory.built[-1].data == b"B here\n", 120, "provider stream", i2p_network)

        # restart A's router: the provider re-creates its sessions, same destination
        await deferToThread(i2p_network.restart_router, a_router)
        await until(lambda: a.state()["state"] != "ready" or a.sessions_created > 1, 60,
                    "provider to notice the restart", i2p_network)
        await until(lambda: a.state()["ready"] and a.sessions_created == 2, SESSION_TIMEOUT,
                    "provider ready again", i2p_network)
        assert a.state()["address"] == address
        me = await (await a.stream_session()).lookup("ME")
        assert me.b32 == address

        # and a peer reaches A again at the same address (A's acceptor re-armed itself).
        # Not B's destination: it caches A's old LeaseSet, whose leases died with A's
        # router, and i2pd 2.45.1 keeps using them until they expire (up to 10 minutes).
        # A's new LeaseSet may also take a few publish attempts, so each try gets 30 s.
        fresh: SAMSession = await with_timeout(Deferred.fromCoroutine(create_session(
            sam(i2p_network, b_router), "STREAM", None, options=TUNNEL_OPTIONS)),
            SESSION_TIMEOUT, "a fresh STREAM session", i2p_network)

        async def fresh_src() -> SAMSession:
            return fresh

        try:
            deadline = time.monotonic() + 240
            while True:
                endpoint = SAMStreamClientEndpoint(sam(i2p_network, b_router), fresh_src, address)
                again = await _connect_with_retry(endpoint, Greeter(b"B again\n"), i2p_network)
                try:
                    await until(lambda again=again: again.data == b"A here\n" and any(  # type: ignore[misc]
                        p.data == b"B again\n" for p in factory.built), 30, "data", i2p_network)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no stream to {address} after the restart\n"
                                             f"{i2p_network.logs()}") from None
                    assert again.transport is not None
                    again.transport.loseConnection()
        finally:
            fresh.close()
        await maybeDeferred(port.stopListening)
    finally:
        await a.stopService()
        await b.stopService()
