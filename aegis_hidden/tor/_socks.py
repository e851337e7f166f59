"""SOCKS5 to tor: a sans-I/O client (RFC 1928 + RFC 1929) and a thin Twisted wrapper.

Only domain-name CONNECTs are ever sent (the ``.onion`` name goes to tor, which
resolves it inside Tor: no DNS lookup happens here). The username/password
method is always used: tor isolates streams with different credentials onto
different circuits (``IsolateSOCKSAuth``, on by default).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory, ITransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ._errors import (
    SocksAuthRejected,
    SocksError,
    SocksProtocolError,
    socks_reply_error,
)


class _State(enum.Enum):
    METHOD = "waiting for the method choice"
    AUTH = "waiting for the authentication result"
    REPLY = "waiting for the CONNECT reply"
    DONE = "connected"
    FAILED = "failed"


@dataclass(frozen=True)
class Connected:
    """The tunnel is open; ``leftover`` bytes already belong to the application."""

    leftover: bytes


class Socks5Client:
    """A SOCKS5 CONNECT to ``host:port`` with username/password, as a byte machine.

    ``start()`` gives the greeting; ``feed(data)`` returns the bytes to send
    (possibly empty) and, once the reply arrived, a :class:`Connected`; failures
    raise a :class:`SocksError` subclass.
    """

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        raw_host = host.encode("ascii")
        user, pw = username.encode(), password.encode()
        if not 0 < len(raw_host) < 256:
            raise ValueError("host name must be 1-255 bytes")
        if not (0 < len(user) < 256 and 0 < len(pw) < 256):
            raise ValueError("SOCKS username and password must be 1-255 bytes")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not from 1 to 65535")
        self._host, self._port, self._user, self._pw = raw_host, port, user, pw
        self._buf = b""
        self.state = _State.METHOD

    def start(self) -> bytes:
        return b"\x05\x01\x02"  # version 5, one method: username/password

    def feed(self, data: bytes) -> tuple[bytes, Connected | None]:
        """Bytes to send now, and :class:`Connected` once the tunnel is open."""
        self._buf += data
        out = b""
        try:
            while True:
                before = self.state
                step = self._step()
                if isinstance(step, Connected):
                    return out, step
                out += step
                if self.state is before:  # needs more bytes
                    return out, None
        except SocksError:
            self.state = _State.FAILED
            raise

    def _step(self) -> bytes | Connected:
        if self.state is _State.METHOD:
            if len(self._buf) < 2:
                return b""
            head, self._buf = self._buf[:2], self._buf[2:]
            if head[0] != 5:
                raise SocksProtocolError(f"server speaks SOCKS version {head[0]}, not 5")
            if head[1] == 0xFF:
                raise SocksAuthRejected()
            if head[1] != 0x02:
                raise SocksProtocolError(f"server chose method 0x{head[1]:02X} we did not offer")
            self.state = _State.AUTH
            return (b"\x01" + bytes([len(self._user)]) + self._user
                    + bytes([len(self._pw)]) + self._pw)
        if self.state is _State.AUTH:
            if len(self._buf) < 2:
                return b""
            head, self._buf = self._buf[:2], self._buf[2:]
            if head[0] != 1:
                raise SocksProtocolError(f"bad username/password reply version {head[0]}")
            if head[1] != 0:
                raise SocksAuthRejected(f"status 0x{head[1]:02X}")
            self.state = _State.REPLY
            return (b"\x05\x01\x00\x03" + bytes([len(self._host)]) + self._host
                    + self._port.to_bytes(2, "big"))
        if self.state is _State.REPLY:
            if len(self._buf) < 5:
                return b""
            ver, rep, rsv, atyp = self._buf[0], self._buf[1], self._buf[2], self._buf[3]
            if ver != 5 or rsv != 0:
                raise SocksProtocolError(f"bad CONNECT reply header {self._buf[:4].hex()}")
            if rep != 0:
                raise socks_reply_error(rep)
            if atyp == 1:
                size = 4 + 4 + 2
            elif atyp == 4:
                size = 4 + 16 + 2
            elif atyp == 3:
                size = 4 + 1 + self._buf[4] + 2
            else:
                raise SocksProtocolError(f"bad address type {atyp} in the CONNECT reply")
            if len(self._buf) < size:
                return b""
            leftover, self._buf = self._buf[size:], b""
            self.state = _State.DONE
            return Connected(leftover)
        raise SocksProtocolError(f"data after the conversation ended ({self.state.value})")


@implementer(IAddress)
@dataclass(frozen=True)
class OnionAddress:
    """The far end of a Tor stream, by name only (no IP is ever known above tor)."""

    host: str
    port: int
    transport_name: str = "tor"


class SocksProtocol(Protocol):
    """Feeds :class:`Socks5Client`, then hands the stream to the application protocol.

    ``ready`` fires with the application protocol once the tunnel is open, or
    fails with the :class:`SocksError` / connection loss that stopped it.
    """

    def __init__(self, machine: Socks5Client, factory: IProtocolFactory,
                 address: OnionAddress) -> None:
        self._machine = machine
        self._factory = factory
        self._address = address
        self.app: IProtocol | None = None
        self.ready: Deferred[IProtocol] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:  # small request/response messages: no Nagle delay
            set_no_delay(True)
        self.transport.write(self._machine.start())

    def dataReceived(self, data: bytes) -> None:
        if self.app is not None:
            self.app.dataReceived(data)
            return
        assert self.transport is not None
        try:
            out, connected = self._machine.feed(data)
        except SocksError as e:
            self.transport.loseConnection()
            if not self.ready.called:
                self.ready.errback(Failure(e))
            return
        if out:
            self.transport.write(out)
        if connected is not None:
            app = self._factory.buildProtocol(self._address)
            if app is None:
                self.transport.loseConnection()
                self.ready.errback(Failure(SocksProtocolError("the factory refused to build")))
                return
            self.app = app
            transport: ITransport = self.transport
            app.makeConnection(transport)
            self.ready.callback(app)
            if connected.leftover:
                app.dataReceived(connected.leftover)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self.app is not None:
            self.app.connectionLost(reason)
        elif not self.ready.called:
            self.ready.errback(reason)
