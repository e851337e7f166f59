"""Silent streams to a peer whose router restarted re-create the SAM session.

i2pd keeps a peer's LeaseSet per session until its leases expire (10 minutes);
the fake bridge does the same with ``lease_cache=True``, so these tests fail on
a provider that never re-creates its session.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock

from aegis_hidden.config import load_config
from aegis_hidden.events import EventBus
from aegis_hidden.i2p import (
    CantReachPeer,
    ConnectTimeout,
    InvalidId,
    SAMSession,
    SAMStreamClientEndpoint,
    SAMTimeout,
    create_session,
)
from aegis_hidden.i2p._health import HealthPolicy, StreamHealth, destination_key
from aegis_hidden.i2p._provider import I2PProvider
from aegis_hidden.identity import create, load
from aegis_hidden.testing import FakeI2PNetwork, FakeSAMBridge, result_of
from aegis_hidden.testing._sam_fake import fake_private_key

B32 = "a" * 52 + ".b32.i2p"
OTHER = "b" * 52 + ".b32.i2p"


# ------------------------------------------------------------------ StreamHealth alone

class Requests:
    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.got: list[tuple[str, int]] = []

    def __call__(self, dest: str, strikes: int) -> bool:
        self.got.append((dest, strikes))
        return self.accept


def health(policy: HealthPolicy | None = None, accept: bool = True
           ) -> tuple[StreamHealth, Requests, Clock]:
    clock = Clock()
    requests = Requests(accept)
    return StreamHealth(clock, requests, policy), requests, clock


def test_threshold_consecutive_bad_streams_ask_for_a_new_session() -> None:
    h, requests, clock = health(HealthPolicy(threshold=3))
    h.failed(B32, "CANT_REACH_PEER")
    h.watch(B32)
    clock.advance(30)  # silent_after: no byte came
    assert requests.got == [] and h.strikes(B32) == 2
    h.watch(B32).stream_lost()  # closed without a byte: silent at once
    assert requests.got == [(B32, 3)]
    assert h.recreations == 1 and h.silent_streams == 2 and h.failed_streams == 1
    assert h.strikes(B32) == 0  # a new session starts every count again


def test_a_stream_that_carries_data_resets_the_count() -> None:
    h, requests, clock = health(HealthPolicy(threshold=2))
    h.watch(B32).stream_lost()
    watch = h.watch(B32)
    watch.stream_data()
    watch.stream_lost()  # once settled, a stream counts once
    clock.advance(60)
    assert h.strikes(B32) == 0
    h.failed(B32)
    h.failed(OTHER)  # other destinations count apart
    assert requests.got == []


def test_strikes_older_than_the_window_do_not_count() -> None:
    h, requests, clock = health(HealthPolicy(threshold=2, window=100))
    h.failed(B32)
    clock.advance(101)
    h.failed(B32)
    assert requests.got == []
    clock.advance(50)
    h.failed(B32)
    assert requests.got == [(B32, 2)]


def test_recreations_are_rate_limited_and_an_offline_peer_costs_one() -> None:
    h, requests, clock = health(HealthPolicy(threshold=2, min_interval=300, dest_cooldown=1800))
    for _ in range(2):
        h.failed(B32)
    assert len(requests.got) == 1
    for _ in range(2):  # another peer at once: not before min_interval
        h.failed(OTHER)
    assert len(requests.got) == 1
    clock.advance(300)
    h.failed(OTHER)  # its strikes were kept
    assert requests.got[-1] == (OTHER, 3)
    # B32 stays silent for an hour, dialed every minute: a re-creation per dest_cooldown
    # (at 0, 1800 and 3600 s), not one every min_interval
    for _ in range(60):
        clock.advance(60)
        h.failed(B32)
    assert [d for d, _ in requests.got].count(B32) == 3
    assert h.recreations == 4


def test_a_refused_request_is_not_counted_and_is_asked_again() -> None:
    h, requests, _ = health(HealthPolicy(threshold=2), accept=False)
    h.failed(B32)
    h.failed(B32)
    h.failed(B32)
    assert requests.got == [(B32, 2), (B32, 3)] and h.recreations == 0


def test_destinations_are_named_by_b32() -> None:
    key = fake_private_key()
    assert destination_key(key.destination.base64) == key.destination.b32
    assert destination_key(B32.upper()) == B32
    with pytest.raises(ValueError, match="threshold"):
        HealthPolicy(threshold=0)


# ------------------------------------------------------------------ the provider

def wall_clock() -> Clock:
    clock = Clock()
    clock.advance(time.time())
    return clock


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("ids")
    dirs = []
    for i in range(2):
        d = base / f"id{i}"
        create(d, time.time())
        dirs.append(d)
    return dirs


def make(tmp_path: Path, ident_dir: Path, bridge: FakeSAMBridge, clock: Clock, name: str,
         events: EventBus | None = None, **kwargs: Any) -> I2PProvider:
    data = tmp_path / name
    shutil.copytree(ident_dir, data / "identity")
    cfg = load_config(None, {"i2p.enabled": True, "i2p.tunnel_length": 1})
    return I2PProvider(object(), cfg, load(data / "identity", clock.seconds()), data, events,
                       clock=clock, sam=bridge.endpoint(), **kwargs)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data.upper())


class Ping(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"ping")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


def dial(provider: I2PProvider, address: str) -> Ping:
    proto = result_of(provider.client_endpoint(address, 0).connect(
        Factory.forProtocol(Ping)))
    assert isinstance(proto, Ping)
    return proto


def pair(tmp_path: Path, identities: list[Path], clock: Clock, events: EventBus | None = None,
         reuse_window: float = 0.0, **kwargs: Any
         ) -> tuple[I2PProvider, I2PProvider, FakeSAMBridge, FakeSAMBridge]:
    net = FakeI2PNetwork()
    bridge_a = FakeSAMBridge(net, clock=clock, lease_cache=True, reuse_window=reuse_window)
    bridge_b = FakeSAMBridge(net, clock=clock, lease_cache=True, reuse_window=reuse_window)
    a = make(tmp_path, identities[0], bridge_a, clock, "a", events, **kwargs)
    b = make(tmp_path, identities[1], bridge_b, clock, "b")
    a.startService()
    b.startService()
    result_of(a.when_ready())
    result_of(b.when_ready())
    return a, b, bridge_a, bridge_b


@pytest.mark.parametrize("reuse_window", [0.0, 5.0])
def test_a_peer_whose_router_restarted_is_reached_again_well_before_its_leases_expire(
        tmp_path: Path, identities: list[Path], reuse_window: float) -> None:
    # reuse_window=5: like i2pd 2.45.1, a SESSION CREATE within 5 s of closing the
    # old session would get the old destination back (stale cache, stopped 5 s later)
    clock = wall_clock()
    events = EventBus()
    got: list[dict[str, Any]] = []
    events.subscribe(got.append)
    a, b, bridge_a, bridge_b = pair(tmp_path, identities, clock, events, reuse_window)
    port = result_of(b.server_endpoint().listen(Factory.forProtocol(Echo)))
    address = b.state()["address"]
    assert dial(a, address).data == b"PING"  # A's session caches B's LeaseSet

    start = clock.seconds()
    bridge_b.restart()  # B's router restarts: same destination, new leases
    clock.advance(2)  # B's provider re-creates its session (same key)
    clock.advance(5)  # and its acceptor re-arms
    assert b.state()["ready"] and b.state()["address"] == address
    reached_after = None
    for _ in range(30):
        connecting = a.client_endpoint(address, 0).connect(Factory.forProtocol(Ping))
        clock.advance(31)  # HealthPolicy.silent_after = 30 (or the session re-created)
        ping = result_of(connecting)
        if ping.data == b"PING":
            reached_after = clock.seconds() - start
            break
        ping.transport.loseConnection()
    assert reached_after is not None, a.state()
    assert reached_after < 200  # i2pd's cache would have kept it silent for 600 s
    state = a.state()
    assert state["session_recreations"] == 1 and state["silent_streams"] == 2
    assert state["address"] == bridge_a.session_by_b32(state["address"]).b32  # type: ignore[union-attr]
    assert bridge_a.silent_streams == 2 and a.sessions_created == 2
    assert bridge_a.reused_destinations == 0 and state["invalid_sessions"] == 0
    assert [e["type"] for e in got].count("i2p_session_recreated") == 1
    assert "i2p_session_lost" not in [e["type"] for e in got]
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())


def test_without_the_lease_cache_nothing_is_re_created(tmp_path: Path,
                                                       identities: list[Path]) -> None:
    clock = wall_clock()
    a, b, _, _ = pair(tmp_path, identities, clock)
    port = result_of(b.server_endpoint().listen(Factory.forProtocol(Echo)))
    for _ in range(5):
        ping = dial(a, b.state()["address"])
        assert ping.data == b"PING"
        ping.transport.loseConnection()  # type: ignore[union-attr]
        clock.advance(60)
    assert a.state()["session_recreations"] == 0 and a.state()["silent_streams"] == 0
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())


def test_cant_reach_peer_is_counted_but_never_re_creates_the_session(
        tmp_path: Path, identities: list[Path]) -> None:
    # i2pd says CANT_REACH_PEER when it holds no LeaseSet and the floodfills had
    # none: a new session would look up the same (a peer not published yet, or
    # offline); re-creating for it cost the private-network run its session
    clock = wall_clock()
    a, b, bridge_a, _ = pair(tmp_path, identities, clock)
    address = b.state()["address"]
    bridge_a.fail_next("STREAM CONNECT", "CANT_REACH_PEER", times=10)
    for _ in range(10):
        with pytest.raises(CantReachPeer):
            dial(a, address)
        clock.advance(3)
    state = a.state()
    assert state["unreachable_streams"] == 10 and state["failed_streams"] == 0
    assert state["session_recreations"] == 0 and a.sessions_created == 1
    result_of(a.stopService())
    result_of(b.stopService())


def test_an_offline_peer_does_not_make_the_session_flap(
        tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    a, b, bridge_a, _ = pair(tmp_path, identities, clock)
    address = b.state()["address"]
    result_of(b.stopService())  # gone for good
    bridge_a.fail_next("STREAM CONNECT", "TIMEOUT", times=1000)
    for _ in range(120):  # dialed every 30 s for an hour
        with pytest.raises(SAMTimeout):
            dial(a, address)
        clock.advance(30)
    state = a.state()
    assert state["failed_streams"] == 120
    # one re-creation, then one per dest_cooldown (30 min) at most
    assert 1 <= state["session_recreations"] <= 2 and state["ready"]
    result_of(a.stopService())


def test_a_stream_connect_without_a_reply_times_out_as_a_failed_stream(
        tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    a, b, bridge_a, _ = pair(tmp_path, identities, clock,
                             health=HealthPolicy(connect_timeout=45, threshold=2))
    port = result_of(b.server_endpoint().listen(Factory.forProtocol(Echo)))
    address = b.state()["address"]
    bridge_a.hang_next("STREAM CONNECT")
    sockets = len(bridge_a.sockets)
    connecting = a.client_endpoint(address, 0).connect(Factory.forProtocol(Ping))
    clock.advance(44.9)
    assert not connecting.called and len(bridge_a.sockets) == sockets + 1
    clock.advance(0.1)
    with pytest.raises(ConnectTimeout, match="45s"):
        result_of(connecting)
    assert len(bridge_a.sockets) == sockets  # the SAM socket is closed
    assert a.state()["failed_streams"] == 1 and a.health.strikes(address) == 1
    bridge_a.hang_next("STREAM CONNECT")  # a second one: threshold 2, a new session
    connecting = a.client_endpoint(address, 0).connect(Factory.forProtocol(Ping))
    clock.advance(45)
    with pytest.raises(ConnectTimeout):
        result_of(connecting)
    assert a.state()["session_recreations"] == 1
    clock.advance(10)  # reuse_pause
    assert a.state()["ready"] and a.sessions_created == 2
    assert dial(a, address).data == b"PING"
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())


def test_the_endpoint_alone_bounds_stream_connect_on_its_clock() -> None:
    clock = Clock()
    bridge = FakeSAMBridge(clock=clock)
    session: SAMSession = result_of(Deferred.fromCoroutine(create_session(
        bridge.endpoint(), "STREAM", fake_private_key())))

    async def source() -> SAMSession:
        return session

    bridge.hang_next("STREAM CONNECT")
    endpoint = SAMStreamClientEndpoint(bridge.endpoint(), source, B32, clock=clock,
                                       connect_timeout=5)
    connecting = endpoint.connect(Factory.forProtocol(Ping))
    clock.advance(5)
    with pytest.raises(ConnectTimeout):
        result_of(connecting)
    bridge.hang_next("STREAM CONNECT")  # without a timeout it waits as long as it takes
    connecting = SAMStreamClientEndpoint(bridge.endpoint(), source, B32).connect(
        Factory.forProtocol(Ping))
    clock.advance(3600)
    assert not connecting.called
    connecting.cancel()
    with pytest.raises(CancelledError):
        result_of(connecting)
    with pytest.raises(ValueError, match="connect_timeout"):
        HealthPolicy(connect_timeout=-1)


def test_a_session_that_i2pd_stopped_under_us_is_re_created(
        tmp_path: Path, identities: list[Path]) -> None:
    # what the private-network run met: the session re-created 1 s after closing
    # the old one got i2pd's lingering destination, which i2pd stopped 5 s later;
    # the control socket stayed open and every STREAM CONNECT got INVALID_ID
    clock = wall_clock()
    a, b, bridge_a, _ = pair(tmp_path, identities, clock, reuse_window=5.0,
                             retry_base=1.0, reuse_pause=0.0)
    port = result_of(b.server_endpoint().listen(Factory.forProtocol(Echo)))
    address = b.state()["address"]
    assert a._request_recreate(address, 2)  # as StreamHealth would
    clock.advance(1)
    assert a.state()["ready"] and bridge_a.reused_destinations == 2  # stream + datagram
    clock.advance(5)  # the old session's clean-up stops the destination under the new one
    with pytest.raises(InvalidId):
        dial(a, address)
    state = a.state()
    assert state["invalid_sessions"] == 1 and state["failed_streams"] == 0
    clock.advance(1)  # a fresh destination this time (the stopped one is gone)
    assert a.state()["ready"] and a.sessions_created == 3
    assert dial(a, address).data == b"PING"
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())


def test_a_connect_that_races_a_session_re_creation_is_tried_once_more(
        tmp_path: Path, identities: list[Path]) -> None:
    clock = wall_clock()
    a, b, bridge_a, _ = pair(tmp_path, identities, clock)
    port = result_of(b.server_endpoint().listen(Factory.forProtocol(Echo)))
    bridge_a.fail_next("STREAM CONNECT", "INVALID_ID")  # our old session id, just closed
    assert dial(a, b.state()["address"]).data == b"PING"
    assert a.state()["failed_streams"] == 0  # our own session, not the peer's fault
    result_of(port.stopListening())
    result_of(a.stopService())
    result_of(b.stopService())
