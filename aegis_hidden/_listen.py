"""Listening on a configured local address (``network.listen_address``, ``api.listen_address``).

The configuration has already refused anything but loopback and unix sockets;
this only turns the validated string into a server endpoint. Unix sockets are
created 0600, so other local users cannot connect to them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXServerEndpoint,
)
from twisted.internet.interfaces import IStreamServerEndpoint

from .addresses import split_host_port


def local_server_endpoint(reactor: Any, listen_address: str) -> IStreamServerEndpoint:
    """``127.0.0.1:PORT``, ``[::1]:PORT`` or ``unix:/path`` as a server endpoint."""
    if listen_address.startswith("unix:"):
        return UNIXServerEndpoint(reactor, listen_address[5:], mode=0o600)
    host, port = split_host_port(listen_address, allow_unix=False)
    if ":" in host:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)
