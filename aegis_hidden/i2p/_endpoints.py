"""Twisted endpoints over SAM streams: one new SAM socket per stream.

The client endpoint opens a SAM socket, says HELLO and ``STREAM CONNECT``; the
server endpoint keeps one socket in ``STREAM ACCEPT`` at all times and hands
each accepted stream to the factory's protocol. Both take a *session source*:
a callable returning (a Deferred of) the live session to use, so that a
provider can recreate its session after an i2pd restart under the endpoints.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from ..config import PrivacyError
from . import _sam
from ._destination import Destination, is_i2p_name
from ._errors import (
    CantReachPeer,
    ConnectTimeout,
    DestinationError,
    InvalidId,
    PeerNotFound,
    SAMError,
    SAMResultError,
)
from ._health import StreamHealth
from ._protocol import I2PAddress, SAMConnectionLost, SAMSocketProtocol, open_sam_socket
from ._sam import PeerAccepted
from ._session import SAMSession, supports_primary

SessionSource = Callable[[], Awaitable[SAMSession]]
InvalidSessionHandler = Callable[[SAMSession], None]


def check_i2p_target(destination: str, where: str = "i2p endpoint") -> None:
    """Refuse anything but ``.i2p`` / ``.b32.i2p`` names and full base64 destinations."""
    if is_i2p_name(destination):
        return
    try:
        Destination.from_base64(destination)
    except DestinationError:
        raise PrivacyError(
            where, destination, "is not an I2P name: dialing it could leave I2P",
            "dial only .b32.i2p / .i2p names or base64 I2P destinations") from None


@implementer(IStreamClientEndpoint)
class SAMStreamClientEndpoint:
    """Dial ``destination`` (a ``.b32.i2p``/``.i2p`` name or base64) over I2P.

    ``connect_timeout`` (seconds on ``clock``; default: the health policy's,
    0 for none) bounds the wait for the router's ``STREAM STATUS``: without an
    answer the SAM socket is closed and :class:`ConnectTimeout` raised (a
    failed stream for ``health``). ``on_invalid_session`` is told when the
    router answers ``INVALID_ID`` twice for a session whose control socket is
    still open: the router no longer serves it (see the provider).
    """

    log = Logger()

    def __init__(self, sam: IStreamClientEndpoint, session: SessionSource, destination: str,
                 port: int = 0, *, health: StreamHealth | None = None,
                 clock: IReactorTime | None = None, connect_timeout: float | None = None,
                 on_invalid_session: InvalidSessionHandler | None = None) -> None:
        check_i2p_target(destination)
        self._sam = sam
        self._session = session
        self._destination = destination
        self._port = port
        self._health = health
        self._clock = clock if clock is not None else (
            health.clock if health is not None else None)
        if connect_timeout is None:
            connect_timeout = health.policy.connect_timeout if health is not None else 0.0
        self._connect_timeout = connect_timeout
        self._on_invalid_session = on_invalid_session

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        return Deferred.fromCoroutine(self._connect(protocolFactory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        try:
            return await self._connect_once(factory, await self._session())
        except InvalidId:
            # our session went away while we opened the socket (the provider
            # re-created it, or the router restarted): once more on the live one
            pass
        session = await self._session()
        try:
            return await self._connect_once(factory, session)
        except InvalidId:
            if self._on_invalid_session is not None and not session.closed:
                self._on_invalid_session(session)
            raise

    async def _stream_status(self, proto: SAMSocketProtocol, session: SAMSession) -> None:
        ports = supports_primary(proto.version) and self._port
        proto.reader.stream_pending("CONNECT")
        reply = proto.command(_sam.stream_connect(
            session.stream_id, self._destination, to_port=self._port if ports else None))
        if self._connect_timeout > 0 and self._clock is not None:
            reply.addTimeout(self._connect_timeout, self._clock)
        try:
            await reply
        except DeferredTimeout:
            raise ConnectTimeout(self._connect_timeout) from None

    async def _connect_once(self, factory: IProtocolFactory, session: SAMSession) -> IProtocol:
        proto = await open_sam_socket(self._sam)
        try:
            try:
                await self._stream_status(proto, session)
            except (CantReachPeer, PeerNotFound) as e:
                if self._health is not None:
                    self._health.unreachable(self._destination, str(e))
                raise
            except (SAMResultError, SAMConnectionLost) as e:
                if self._health is not None and not isinstance(e, InvalidId):
                    self._health.failed(self._destination, str(e))
                raise
            peer = I2PAddress(self._destination, self._port)
            app = factory.buildProtocol(peer)
            if app is None:
                raise SAMError("the protocol factory refused the connection")
            if self._health is not None:
                proto.observer = self._health.watch(self._destination)
            proto.attach(app, I2PAddress(session.destination.base64), peer)
        except BaseException:
            proto.close()
            raise
        return app


@implementer(IListeningPort)
class SAMListeningPort:
    """Keeps a ``STREAM ACCEPT`` pending; stopListening closes it."""

    log = Logger()

    def __init__(self, clock: IReactorTime, sam: IStreamClientEndpoint, session: SessionSource,
                 factory: IProtocolFactory, retry_delay: float = 5.0) -> None:
        self._clock = clock
        self._sam = sam
        self._session = session
        self._factory = factory
        self._retry_delay = retry_delay
        self._stopped = False
        self._acceptor: SAMSocketProtocol | None = None
        self._sleep: Deferred[None] | None = None
        self._loop: Deferred[None] | None = None
        self._host = I2PAddress("")
        self.accepted = 0

    async def start(self) -> None:
        """Arm the first acceptor (fails if that fails), then keep accepting."""
        session = await self._session()
        self._host = I2PAddress(session.destination.base64)
        first = await self._arm(session)
        self._factory.doStart()
        self._loop = Deferred.fromCoroutine(self._run(first))

    async def _arm(self, session: SAMSession) -> SAMSocketProtocol:
        proto = await open_sam_socket(self._sam)
        try:
            proto.reader.stream_pending("ACCEPT")
            self._acceptor = proto
            await proto.command(_sam.stream_accept(session.stream_id))
        except BaseException:
            proto.close()
            raise
        return proto

    async def _run(self, proto: SAMSocketProtocol | None) -> None:
        while not self._stopped:
            try:
                if proto is None:
                    session = await self._session()
                    self._host = I2PAddress(session.destination.base64)
                    proto = await self._arm(session)
                peer = await proto.next_peer()
            except (SAMError, ConnectError, OSError, CancelledError) as e:
                proto = None
                if self.stopped:
                    return
                self.log.warn("I2P acceptor failed ({error}); retrying in {delay}s",
                              error=str(e), delay=self._retry_delay)
                self._sleep = deferLater(self._clock, self._retry_delay, lambda: None)
                try:
                    await self._sleep
                except CancelledError:
                    return
                finally:
                    self._sleep = None
                continue
            accepted, proto = proto, None
            self._dispatch(accepted, peer)

    def _dispatch(self, proto: SAMSocketProtocol, accepted: PeerAccepted) -> None:
        raw_port = accepted.options.get("FROM_PORT", "0")
        port = int(raw_port) if raw_port.isdigit() and raw_port.isascii() else 0
        peer = I2PAddress(accepted.destination, port)
        app = self._factory.buildProtocol(peer)
        if app is None:
            proto.close()
            return
        self.accepted += 1
        proto.attach(app, self._host, peer)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def startListening(self) -> None:
        """Listening starts in :meth:`start` (the endpoint's ``listen`` calls it)."""

    def stopListening(self) -> Deferred[None]:
        if self._stopped:
            return succeed(None)
        self._stopped = True
        if self._acceptor is not None:
            self._acceptor.close()
        if self._sleep is not None:
            self._sleep.cancel()
        self._factory.doStop()
        return succeed(None)

    def getHost(self) -> I2PAddress:
        return self._host


@implementer(IStreamServerEndpoint)
class SAMStreamServerEndpoint:
    """Accept I2P streams to the session's destination."""

    def __init__(self, clock: IReactorTime, sam: IStreamClientEndpoint, session: SessionSource,
                 retry_delay: float = 5.0) -> None:
        self._clock = clock
        self._sam = sam
        self._session = session
        self._retry_delay = retry_delay

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return Deferred.fromCoroutine(self._listen(protocolFactory))

    async def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        port = SAMListeningPort(self._clock, self._sam, self._session, factory, self._retry_delay)
        await port.start()
        return port
