"""OnionEndpoint: privacy refusal, isolation, readiness wait, retries, timeouts."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from aegis_hidden.config import PrivacyError
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.tor import (
    Backoff,
    DialTimeout,
    OnionClientAuthMissing,
    OnionDescriptorNotFound,
    OnionEndpoint,
    check_onion,
)

ONION = onion_address_from_public_key(bytes(range(32)))
OK = b"\x05\x00\x00\x01" + bytes(6)


@implementer(IStreamClientEndpoint)
class FakeSocksEndpoint:
    """Each connect plays the next script entry: a reply code, 'refuse' or 'hang'."""

    def __init__(self, owner: FakeContext) -> None:
        self.owner = owner

    def connect(self, factory: Any) -> Deferred[Any]:
        script = self.owner.script.pop(0)
        self.owner.connects.append(self.owner.clock.seconds())
        if script == "refuse":
            return fail(ConnectionRefusedError("tor is restarting"))
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.owner.transports.append(transport)
        if script != "hang":
            proto.dataReceived(b"\x05\x02\x01\x00")
            proto.dataReceived(bytes([5, script, 0, 1]) + bytes(6) if script else OK)
        return succeed(proto)


class FakeContext:
    def __init__(self, script: list[Any], ready: bool = True) -> None:
        self.clock = Clock()
        self.script = script
        self.connects: list[float] = []
        self.transports: list[StringTransport] = []
        self.ready: Deferred[None] | None = None if ready else Deferred()

    def when_ready(self) -> Deferred[None]:
        if self.ready is None or self.ready.called:
            return succeed(None)
        d: Deferred[None] = Deferred()

        def fire(result: None) -> None:
            d.callback(None)

        self.ready.addCallback(fire)
        return d

    def socks_endpoint(self) -> IStreamClientEndpoint:
        return FakeSocksEndpoint(self)

    @property
    def isolation_password(self) -> str:
        return "secret"


class App(Protocol):
    pass


def endpoint(ctx: FakeContext, **kw: Any) -> OnionEndpoint:
    kw.setdefault("backoff", Backoff(base=1.0, factor=2.0, cap=30.0, jitter=0.0))
    return OnionEndpoint(ctx.clock, ctx, ONION.upper(), 7701, **kw)


def results(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.addBoth(out.append)
    return out


@pytest.mark.parametrize("address", [
    "example.com", "127.0.0.1", "10.0.0.1", "::1", "facebookcorewwwi.onion",
    "a" * 56 + ".onion", ONION + ".evil.com", "x.b32.i2p", "",
])
def test_only_v3_onions(address: str) -> None:
    with pytest.raises(PrivacyError, match=r"v3 \.onion"):
        check_onion(address, 80)
    with pytest.raises(PrivacyError):
        OnionEndpoint(Clock(), FakeContext([]), address, 80)


def test_connects_with_isolation_credentials() -> None:
    ctx = FakeContext([0])
    out = results(endpoint(ctx).connect(Factory.forProtocol(App)))
    assert isinstance(out[0], App)
    sent = ctx.transports[0].value()
    user = ONION.encode()
    assert sent[3:].startswith(b"\x01" + bytes([len(user)]) + user + b"\x06secret")
    assert bytes([len(ONION)]) + ONION.encode() + (7701).to_bytes(2, "big") in sent


def test_isolation_key_can_be_chosen() -> None:
    ctx = FakeContext([0])
    results(endpoint(ctx, isolation="api").connect(Factory.forProtocol(App)))
    assert b"\x01\x03api\x06secret" in ctx.transports[0].value()


def test_retries_with_backoff_until_published() -> None:
    ctx = FakeContext([0xF0, 0xF0, "refuse", 0])
    out = results(endpoint(ctx).connect(Factory.forProtocol(App)))
    assert ctx.connects == [0.0] and not out
    ctx.clock.advance(0.99)
    assert len(ctx.connects) == 1
    ctx.clock.advance(0.01)
    assert ctx.connects == [0.0, 1.0]
    ctx.clock.advance(2.0)
    assert ctx.connects == [0.0, 1.0, 3.0]
    ctx.clock.advance(4.0)
    assert ctx.connects == [0.0, 1.0, 3.0, 7.0]
    assert isinstance(out[0], App)


def test_gives_up_after_attempts_with_the_last_error() -> None:
    ctx = FakeContext([0xF0] * 3)
    out = results(endpoint(ctx, attempts=3).connect(Factory.forProtocol(App)))
    ctx.clock.pump([1.0] * 100)
    assert ctx.connects == [0.0, 1.0, 3.0]
    assert len(ctx.connects) == 3
    assert isinstance(out[0], Failure) and out[0].check(OnionDescriptorNotFound)


def test_non_retryable_fails_at_once() -> None:
    ctx = FakeContext([0xF4, 0])
    out = results(endpoint(ctx).connect(Factory.forProtocol(App)))
    ctx.clock.pump([1.0] * 100)
    assert len(ctx.connects) == 1
    assert out[0].check(OnionClientAuthMissing)


def test_attempt_timeout() -> None:
    ctx = FakeContext(["hang", "hang"])
    out = results(endpoint(ctx, timeout=10, attempts=2).connect(Factory.forProtocol(App)))
    ctx.clock.advance(10)
    assert ctx.transports[0].disconnecting
    ctx.clock.advance(1)
    assert len(ctx.connects) == 2 and not out
    ctx.clock.advance(10)
    assert out[0].check(DialTimeout)
    assert "within 10s" in out[0].getErrorMessage()


def test_waits_for_readiness_instead_of_spinning() -> None:
    ctx = FakeContext([0], ready=False)
    out = results(endpoint(ctx, timeout=60).connect(Factory.forProtocol(App)))
    ctx.clock.advance(30)
    assert ctx.connects == [] and not out
    assert ctx.ready is not None
    ctx.ready.callback(None)
    assert isinstance(out[0], App) and ctx.connects == [30.0]


def test_never_ready_times_out() -> None:
    ctx = FakeContext([], ready=False)
    out = results(endpoint(ctx, timeout=5, attempts=2).connect(Factory.forProtocol(App)))
    ctx.clock.advance(5)
    ctx.clock.advance(1)
    ctx.clock.advance(5)
    assert out[0].check(DialTimeout) and ctx.connects == []
    assert "not ready" in out[0].getErrorMessage()


@pytest.mark.parametrize("when", [5.0, 10.5])  # during an attempt, during the backoff
def test_cancel_stops_every_further_attempt(when: float) -> None:
    """A caller that gives up (its own timeout) must not leave a dial running that
    later delivers an orphan connection."""
    ctx = FakeContext(["hang", "hang", "hang", 0])
    d = endpoint(ctx, timeout=10, attempts=4).connect(Factory.forProtocol(App))
    out = results(d)
    ctx.clock.advance(when)
    d.cancel()
    assert out[0].check(CancelledError)
    assert ctx.transports[0].disconnecting
    connects = len(ctx.connects)
    ctx.clock.advance(300)
    assert len(ctx.connects) == connects  # no attempt after the cancel
