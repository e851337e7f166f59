"""Dialing ``.onion`` peers through tor's SOCKS port: isolation, timeout, retries."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from ..config import PrivacyError
from ..identity import is_onion_v3
from ._backoff import Backoff
from ._errors import DialTimeout, SocksError
from ._socks import OnionAddress, Socks5Client, SocksProtocol


class DialContext(Protocol):
    """What an :class:`OnionEndpoint` needs from its provider."""

    def when_ready(self) -> Deferred[None]: ...

    def socks_endpoint(self) -> IStreamClientEndpoint: ...

    @property
    def isolation_password(self) -> str: ...


def check_onion(address: str, port: int) -> str:
    """``address`` lower-cased if it is a valid v3 onion, else :class:`PrivacyError`."""
    if not isinstance(address, str) or not is_onion_v3(address):
        raise PrivacyError(
            "peer address", address,
            "is not a v3 .onion address: Tor would have to resolve or exit to it, which "
            "could leak who this node talks to", "dial peers only by their v3 .onion address")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not from 1 to 65535")
    return address.lower()


class _SocksFactory(Factory):
    noisy = False

    def __init__(self, machine: Socks5Client, app: IProtocolFactory,
                 address: OnionAddress) -> None:
        self._args = (machine, app, address)

    def buildProtocol(self, addr: object) -> SocksProtocol:
        return SocksProtocol(*self._args)


@implementer(IStreamClientEndpoint)
class OnionEndpoint:
    """Dials ``host:port`` (a v3 onion) through tor, retrying with backoff.

    Each attempt is bounded by ``timeout``; failures that can pass (descriptor
    not yet published, circuit timeout, tor restarting) are retried up to
    ``attempts`` times with exponential backoff and jitter; others (missing
    client authorization, invalid address) fail at once with their typed error.
    Before each attempt the endpoint waits for the provider to be ready.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, context: DialContext, host: str, port: int, *,
                 isolation: str | None = None, timeout: float = 60.0, attempts: int = 6,
                 backoff: Backoff | None = None) -> None:
        self._clock = clock
        self._context = context
        self.host = check_onion(host, port)
        self.port = port
        self.isolation = isolation or self.host
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff or Backoff(base=1.0, cap=30.0)

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, app: IProtocolFactory) -> IProtocol:
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                delay = self.backoff.delay(attempt - 1)
                self.log.info("retrying {host} in {delay:.1f}s (attempt {n}/{total}): {error}",
                              host=self.host, delay=delay, n=attempt + 1,
                              total=self.attempts, error=str(last))
                await deferLater(self._clock, delay, lambda: None)
            ready = self._context.when_ready()
            ready.addTimeout(self.timeout, self._clock)
            try:
                await ready
            except TimeoutError:
                last = DialTimeout(f"tor was not ready within {self.timeout:.0f}s")
                continue
            try:
                return await self._attempt(app)
            except SocksError as e:
                if not e.retryable:
                    raise
                last = e
            except (DialTimeout, ConnectError, ConnectionClosed) as e:
                last = e
        assert last is not None
        if isinstance(last, SocksError | DialTimeout):
            raise last
        raise DialTimeout(f"could not reach {self.host} after {self.attempts} attempts: {last}")

    async def _attempt(self, app: IProtocolFactory) -> IProtocol:
        machine = Socks5Client(self.host, self.port, self.isolation,
                               self._context.isolation_password)
        factory = _SocksFactory(machine, app, OnionAddress(self.host, self.port))
        holder: list[SocksProtocol] = []

        async def run() -> IProtocol:
            proto = await self._context.socks_endpoint().connect(factory)
            assert isinstance(proto, SocksProtocol)
            holder.append(proto)
            return await proto.ready

        d = Deferred.fromCoroutine(run())
        d.addTimeout(self.timeout, self._clock)
        try:
            return await d
        except (TimeoutError, CancelledError) as e:
            for proto in holder:
                if proto.transport is not None:
                    proto.transport.loseConnection()
            if isinstance(e, CancelledError):
                raise  # the caller gave up: no more attempts
            raise DialTimeout(f"no stream to {self.host} within {self.timeout:.0f}s") from None

