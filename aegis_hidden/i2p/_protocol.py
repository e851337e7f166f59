"""The thin Twisted protocol around :class:`SAMReader`: one instance per SAM socket.

A SAM socket is either a session's control socket (commands, replies,
datagrams) or a stream socket (HELLO, STREAM CONNECT/ACCEPT, then the bytes
of one I2P stream, handed to an application protocol through a transport
that shows I2P addresses, never the SAM bridge's IP address).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, cast
from typing import Protocol as TypingProtocol

import attr
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IPushProducer,
    IStreamClientEndpoint,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import _sam
from ._destination import b32_address, b64decode, is_b32_address
from ._errors import DestinationError, SAMError, SAMProtocolError
from ._sam import DatagramReceived, PeerAccepted, RawReceived, Reply, SAMReader, StreamData


class StreamObserver(TypingProtocol):
    """Told when a stream carries a byte from the peer and when it ends."""

    def stream_data(self) -> None: ...

    def stream_lost(self) -> None: ...


class SAMConnectionLost(SAMError):
    """The SAM socket closed while a command was waiting for its reply."""


@implementer(IAddress)
@attr.s(frozen=True, auto_attribs=True)
class I2PAddress:
    """An I2P endpoint address: a destination (base64) or a name, and a port (SAM 3.2+)."""

    destination: str
    port: int = 0

    @property
    def b32(self) -> str:
        """The ``.b32.i2p`` address ("" when ``destination`` is neither b32 nor base64)."""
        if is_b32_address(self.destination):
            return self.destination.lower()
        try:
            return b32_address(b64decode(self.destination))
        except DestinationError:
            return ""


@implementer(ITransport, IPushProducer)
class I2PStreamTransport:
    """What an application protocol sees of an I2P stream: bytes and I2P addresses."""

    def __init__(self, sam_transport: Any, host: I2PAddress, peer: I2PAddress) -> None:
        self._t = sam_transport
        self._host = host
        self._peer = peer
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        self._t.write(data)

    def writeSequence(self, data: Any) -> None:
        self._t.writeSequence(data)

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._t.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._t.abortConnection()

    def getPeer(self) -> I2PAddress:
        return self._peer

    def getHost(self) -> I2PAddress:
        return self._host

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._t.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._t.unregisterProducer()

    def pauseProducing(self) -> None:
        self._t.pauseProducing()

    def resumeProducing(self) -> None:
        self._t.resumeProducing()

    def stopProducing(self) -> None:
        self._t.stopProducing()


class SAMSocketProtocol(Protocol):
    """One SAM socket (see the module docstring)."""

    log = Logger()

    def __init__(self) -> None:
        self.reader = SAMReader()
        self.version: str | None = None
        self.on_datagram: Callable[[DatagramReceived | RawReceived], None] | None = None
        self._waiters: deque[Deferred[Reply]] = deque()
        self._lost_waiters: list[Deferred[None]] = []
        self._peer_waiter: Deferred[PeerAccepted] | None = None
        self._peer: PeerAccepted | None = None
        self._app: IProtocol | None = None
        self._early: list[bytes] = []
        self._closed = False
        self._reason: Failure | None = None
        # told of stream bytes from the peer and of the stream's end (StreamWatch)
        self.observer: StreamObserver | None = None

    # ---------------------------------------------------------------- commands

    def command(self, line: bytes) -> Deferred[Reply]:
        """Send one command; fires with its reply, or fails with the typed error."""
        if self._closed:
            return Deferred.fromCoroutine(self._raise_lost())
        d: Deferred[Reply] = Deferred()
        self._waiters.append(d)
        assert self.transport is not None
        self.transport.write(line)
        return d

    async def _raise_lost(self) -> Reply:
        raise SAMConnectionLost("the SAM socket is closed")

    async def hello(self, min_version: str = _sam.MIN_VERSION,
                    max_version: str = _sam.MAX_VERSION) -> str:
        reply = await self.command(_sam.hello(min_version, max_version))
        version = reply.require("VERSION")
        got = _sam.version_tuple(version)
        if not _sam.version_tuple(min_version) <= got <= _sam.version_tuple(max_version):
            raise SAMProtocolError(f"bridge chose version {version}, outside "
                                   f"{min_version}-{max_version}")
        self.version = version
        return version

    def send_raw(self, data: bytes) -> None:
        """Write bytes that get no reply (DATAGRAM SEND, PONG)."""
        if self._closed:
            raise SAMConnectionLost("the SAM socket is closed")
        assert self.transport is not None
        self.transport.write(data)

    def next_peer(self) -> Deferred[PeerAccepted]:
        """After an accepted ``STREAM ACCEPT``: fires with the connecting peer."""
        if self._peer is not None:
            return succeed(self._peer)
        if self._closed:
            return Deferred.fromCoroutine(self._raise_lost_peer())
        self._peer_waiter = Deferred()
        return self._peer_waiter

    async def _raise_lost_peer(self) -> PeerAccepted:
        raise SAMConnectionLost("the SAM socket closed before a peer connected")

    def attach(self, app: IProtocol, host: I2PAddress, peer: I2PAddress) -> None:
        """Hand the socket over to ``app``: from now on it carries stream bytes."""
        assert self.transport is not None
        self._app = app
        app.makeConnection(I2PStreamTransport(self.transport, host, peer))
        early, self._early = self._early, []
        for chunk in early:
            self._observe_data(chunk)
            app.dataReceived(chunk)
        if self._closed:
            if self.observer is not None:
                self.observer.stream_lost()
            app.connectionLost(self._reason or Failure(ConnectionDone()))

    def _observe_data(self, data: bytes) -> None:
        if data and self.observer is not None:
            self.observer.stream_data()

    def close(self) -> None:
        if self.transport is not None and not self._closed:
            self.transport.loseConnection()

    def when_lost(self) -> Deferred[None]:
        if self._closed:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    @property
    def closed(self) -> bool:
        return self._closed

    # ---------------------------------------------------------------- bytes in

    def dataReceived(self, data: bytes) -> None:
        if self._app is not None:
            self._observe_data(data)
            self._app.dataReceived(data)
            return
        try:
            events = self.reader.feed(data)
        except SAMError as e:
            self.log.error("SAM bridge sent something invalid: {error}", error=str(e))
            self._fail_all(Failure(e))
            if self.transport is not None:
                cast(ITCPTransport, self.transport).abortConnection()
            return
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: _sam.Event) -> None:
        if isinstance(event, StreamData):
            if self._app is not None:
                self._observe_data(event.data)
                self._app.dataReceived(event.data)
            else:
                self._early.append(event.data)
        elif isinstance(event, PeerAccepted):
            self._peer = event
            waiter, self._peer_waiter = self._peer_waiter, None
            if waiter is not None:
                waiter.callback(event)
        elif isinstance(event, DatagramReceived | RawReceived):
            if self.on_datagram is not None:
                self.on_datagram(event)
            else:
                self.log.warn("datagram of {size} bytes on a socket with no receiver",
                              size=len(event.payload))
        elif event.verb == "PING":
            assert self.transport is not None
            self.transport.write(_sam.pong(event.text))
        else:
            self._reply(event)

    def _reply(self, reply: Reply) -> None:
        if not self._waiters:
            self.log.warn("unsolicited SAM reply {name} ignored", name=reply.name)
            return
        waiter = self._waiters.popleft()
        if waiter.called:  # given up on (a client-side timeout): the late reply is dropped
            return
        try:
            reply.raise_for_result()
        except SAMError as e:
            waiter.errback(Failure(e))
            return
        waiter.callback(reply)

    def _fail_all(self, failure: Failure) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.called:
                waiter.errback(failure)
        peer_waiter, self._peer_waiter = self._peer_waiter, None
        if peer_waiter is not None:
            peer_waiter.errback(failure)

    def connectionLost(self, reason: Failure = Failure(ConnectionLost())) -> None:  # noqa: B008
        self._closed = True
        self._reason = reason
        self._fail_all(Failure(SAMConnectionLost(f"SAM socket closed: {reason.getErrorMessage()}")))
        if self._app is not None:
            if self.observer is not None:
                self.observer.stream_lost()
            self._app.connectionLost(reason)
        lost, self._lost_waiters = self._lost_waiters, []
        for d in lost:
            d.callback(None)


async def open_sam_socket(sam: IStreamClientEndpoint, min_version: str = _sam.MIN_VERSION,
                          max_version: str = _sam.MAX_VERSION) -> SAMSocketProtocol:
    """Connect to the bridge and say HELLO; the socket's ``version`` is what it chose."""
    proto = SAMSocketProtocol()
    await connectProtocol(sam, proto)
    try:
        await proto.hello(min_version, max_version)
    except BaseException:
        proto.close()
        raise
    return proto
