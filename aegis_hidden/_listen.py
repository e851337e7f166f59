"""Listening on a local address: a transport's own listener, the API's.

The configuration has already refused anything but loopback and unix sockets;
:func:`local_server_endpoint` only turns the validated string into a server
endpoint. Unix sockets are created 0600, so other local users cannot connect.

:class:`LocalListener` is the listening side a transport provider owns (the Tor
onion service's target, the loopback port the I2P router forwards streams to):
a child service that listens while its provider runs. The session layer never
opens a socket of its own; it hands each provider a server factory made for that
transport, so every stream accepted there carries the transport it came from.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from .addresses import split_host_port


def local_server_endpoint(reactor: Any, listen_address: str) -> IStreamServerEndpoint:
    """``127.0.0.1:PORT``, ``[::1]:PORT`` or ``unix:/path`` as a server endpoint."""
    if listen_address.startswith("unix:"):
        return UNIXServerEndpoint(reactor, listen_address[5:], mode=0o600)
    host, port = split_host_port(listen_address, allow_unix=False)
    if ":" in host:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)


class LocalListener(Service):
    """Serves ``factory`` on ``endpoint`` while running (a transport's listener).

    :meth:`when_listening` fires with the listening port once it listens (the
    I2P provider needs the port the system gave it before it asks the router to
    forward there); a listen failure is logged and fails the waiters.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory,
                 name: str = "listener") -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.setName(name)
        self.port: IListeningPort | None = None
        self.error: Failure | None = None
        self._listening: Deferred[IListeningPort] | None = None
        self._waiters: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        super().startService()
        self.error = None
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self._listening = None
        self.port = port
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(port)

    def _failed(self, failure: Failure) -> None:
        self._listening = None
        self.error = failure
        if not failure.check(CancelledError):  # cancelled: stopped before it listened
            self.log.failure("cannot listen for incoming streams ({name})", failure,
                             name=self.name)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.errback(failure)

    def when_listening(self) -> Deferred[IListeningPort]:
        if self.port is not None:
            return succeed(self.port)
        d: Deferred[IListeningPort] = Deferred()
        self._waiters.append(d)
        return d

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        stopped: Deferred[None] = Deferred()
        result = port.stopListening()
        if isinstance(result, Deferred):
            result.addBoth(lambda _: stopped.callback(None))
        else:
            stopped.callback(None)
        return stopped
