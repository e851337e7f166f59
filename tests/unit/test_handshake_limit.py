"""Item 8: the responder's handshake rate limit (token bucket on the injected clock).

In memory only: ``task.Clock``, the in-memory transport provider, no reactor.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from aegis_hidden.config import Config, ConfigError, parse_config
from aegis_hidden.identity import NodeIdentity
from aegis_hidden.session import Session, _twisted
from aegis_hidden.session.twisted import PeerLink, SessionFactory, TokenBucket
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity

NOW = 1_800_000_000.0
PORT = 7701


def outcome(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def limited(rate: float, burst: int) -> Config:
    return parse_config({"security": {"handshake_rate": rate, "handshake_burst": burst}})


# -- the bucket ---------------------------------------------------------------
def test_bucket_starts_full_then_refuses(clock: Clock) -> None:
    bucket = TokenBucket(2.0, 3, clock.seconds)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert not bucket.take()


def test_bucket_refills_at_the_rate_on_the_clock(clock: Clock) -> None:
    bucket = TokenBucket(2.0, 3, clock.seconds)
    while bucket.take():
        pass
    clock.advance(0.4)  # 0.8 token: not yet one
    assert not bucket.take()
    clock.advance(0.1)  # 1.0 token
    assert bucket.take() and not bucket.take()
    clock.advance(10.0)  # capped at the burst, not 20 tokens
    assert math.isclose(bucket.tokens, 3.0)
    assert sum(bucket.take() for _ in range(10)) == 3


def test_bucket_sustained_rate_over_a_simulated_minute(clock: Clock) -> None:
    bucket = TokenBucket(5.0, 10, clock.seconds)
    granted = 0
    for _ in range(60 * 100):  # an attacker trying 100 handshakes a second for 60 s
        granted += bucket.take()
        clock.advance(0.01)
    assert granted == pytest.approx(10 + 5 * 60, abs=2)


def test_bucket_clock_going_backwards_mints_nothing(clock: Clock) -> None:
    now = [100.0]
    bucket = TokenBucket(1.0, 1, lambda: now[0])
    assert bucket.take()
    now[0] = 50.0  # the clock steps back 50 s ...
    assert not bucket.take()
    now[0] = 100.5  # ... and forward again: only time past 100.0 counts
    assert not bucket.take()
    now[0] = 101.0
    assert bucket.take()


@pytest.mark.parametrize("rate", [0, -1.0, math.nan, math.inf, True, "10"])
def test_bucket_refuses_a_bad_rate(clock: Clock, rate: Any) -> None:
    with pytest.raises(ValueError, match="handshake rate must be a positive number"):
        TokenBucket(rate, 5, clock.seconds)


@pytest.mark.parametrize("burst", [0, -3, 1.5, True, "5"])
def test_bucket_refuses_a_bad_burst(clock: Clock, burst: Any) -> None:
    with pytest.raises(ValueError, match="handshake burst must be an integer of at least 1"):
        TokenBucket(3.0, burst, clock.seconds)


# -- the configuration ----------------------------------------------------------
def test_config_defaults_and_the_factory_uses_them(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    cfg = Config()
    assert cfg.security.handshake_rate == 10.0 and cfg.security.handshake_burst == 50
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], cfg, clock)
    assert sf.handshake_limit.rate == 10.0 and sf.handshake_limit.burst == 50
    assert sf.handshakes_rate_limited == 0
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], limited(0.5, 2), clock)
    assert sf.handshake_limit.rate == 0.5 and sf.handshake_limit.burst == 2


@pytest.mark.parametrize(("key", "value", "words"), [
    ("handshake_rate", 0, "expected a number from 0.1 to 10000"),
    ("handshake_rate", -5, "expected a number from 0.1 to 10000"),
    ("handshake_rate", "fast", "expected a number"),
    ("handshake_burst", 0, "expected an integer from 1 to 100000"),
    ("handshake_burst", 2.5, "expected an integer"),
    ("handshake_burst", True, "expected an integer"),
])
def test_config_refuses_bad_limits_naming_the_key(key: str, value: Any, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"security": {key: value}})
    assert f"security.{key}" in str(info.value) and words in str(info.value)


# -- the accept path --------------------------------------------------------------
class CountingSessions:
    """Counts the Session objects the factory builds (each responder signs later)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[Any] = []
        real = Session

        def build(*args: Any, **kwargs: Any) -> Any:
            session = real(*args, **kwargs)
            self.built.append(session)
            return session

        monkeypatch.setattr(_twisted, "Session", build)


def test_streams_over_the_burst_are_closed_before_any_session_exists(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingSessions(monkeypatch)
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], limited(1.0, 3), clock)
    server = sf.server_factory()
    built = [server.buildProtocol(None) for _ in range(5)]
    assert [p is not None for p in built] == [True, True, True, False, False]
    assert sf.handshakes_rate_limited == 2
    assert len(counting.built) == 3  # the refused two cost no Session, no key, no signature
    assert sf.incoming_streams == 3  # refused streams do not hold a connection slot
    clock.advance(1.0)  # one token back
    assert server.buildProtocol(None) is not None
    assert server.buildProtocol(None) is None
    assert sf.handshakes_rate_limited == 3 and len(counting.built) == 4


def test_a_granted_stream_answers_a_refused_one_gets_nothing(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    """On a real transport: the granted responder waits for a ClientHello; the
    factory builds nothing for the refused one (Twisted then closes the socket)."""
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], limited(1.0, 1), clock)
    server = sf.server_factory()
    proto = server.buildProtocol(None)
    assert proto is not None
    transport = StringTransport()
    proto.makeConnection(transport)
    assert transport.value() == b"" and transport.connected  # waits for the initiator
    assert server.buildProtocol(None) is None
    proto.connectionLost(connectionDone)
    assert sf.incoming_streams == 0


def test_flood_over_in_memory_transports(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dials beyond the burst fail at once; after a refill the next one succeeds."""
    alice_id, bob_id = identities
    provider = MemoryTransportProvider()
    bob = SessionFactory(bob_id, [provider], limited(0.5, 2), clock)
    provider.listen(bob_id.onion, PORT, bob.server_factory())
    incoming: list[Any] = []
    bob.on_incoming(incoming.append)
    alice = SessionFactory(alice_id, [provider], Config(), clock)
    counting = CountingSessions(monkeypatch)

    results = [outcome(alice.connect(bob_id.onion)) for _ in range(5)]
    ok = [r for r in results if isinstance(r, PeerLink)]
    refused = [r for r in results if isinstance(r, Failure)]
    assert len(ok) == 2 and len(incoming) == 2
    assert len(refused) == 3 and all(r.check(ConnectionRefusedError) for r in refused)  # the memory
    # provider's stand-in for Twisted closing a stream whose factory built nothing
    assert bob.handshakes_rate_limited == 3
    responders = [s for s in counting.built if not s.initiator]
    assert len(responders) == 2  # Bob signed twice, not five times
    clock.advance(2.0)  # 0.5/s: one token after 2 s
    assert isinstance(outcome(alice.connect(bob_id.onion)), PeerLink)
    assert isinstance(outcome(alice.connect(bob_id.onion)), Failure)
    assert bob.handshakes_rate_limited == 4


def test_max_connections_refusal_spends_no_token(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    cfg = parse_config({"network": {"max_connections": 1},
                        "security": {"handshake_rate": 1.0, "handshake_burst": 2}})
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], cfg, clock)
    server = sf.server_factory()
    first = server.buildProtocol(None)
    assert first is not None
    assert server.buildProtocol(None) is None  # pool full: refused, but not rate limited
    assert sf.handshakes_rate_limited == 0
    assert math.isclose(sf.handshake_limit.tokens, 1.0)


def test_a_flood_logs_one_warning_a_minute_not_one_per_stream(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    sf = SessionFactory(identities[0], [MemoryTransportProvider()], limited(0.1, 1), clock)
    server = sf.server_factory()
    with capturedLogs() as logs:
        assert server.buildProtocol(None) is not None
        for _ in range(100):
            assert server.buildProtocol(None) is None
            clock.advance(0.05)  # 5 s of flood: no token comes back at 0.1/s (needs 10 s)
        clock.advance(60.0)
        server.buildProtocol(None)  # the token that came back
        assert server.buildProtocol(None) is None
    warned = [e for e in logs if "handshake rate limit" in str(e.get("log_format"))]
    assert len(warned) == 2
    assert warned[0]["count"] == 1 and warned[1]["count"] == 101
    assert sf.handshakes_rate_limited == 101
