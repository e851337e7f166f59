"""The seams between layers (STYLE.md #3): one zope Interface per boundary.

Fakes of each live in :mod:`aegis_hidden.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import Attribute, Interface


class ITransportProvider(Interface):
    """An anonymous network (Tor, I2P) as seen by the layers above it.

    Nothing above a provider sees an IP address: peers are named by ``.onion``
    or ``.b32.i2p`` address, and connections are made through endpoints.
    """

    name = Attribute("short name: 'tor' or 'i2p'")

    def handles(address: str) -> bool:
        """True when ``address`` belongs to this network (e.g. ends in .onion)."""

    def client_endpoint(address: str, port: int) -> IStreamClientEndpoint:
        """An endpoint that dials ``address:port`` through this network.

        Raises :class:`aegis_hidden.config.PrivacyError` for any address that is
        not an anonymous address of this network: never a DNS lookup, never a
        clearnet connection.
        """

    def when_ready() -> Deferred[None]:
        """Fires when the network is usable (bootstrapped, service published)."""

    def state() -> Mapping[str, Any]:
        """JSON-friendly state for the API and CLI (bootstrap progress, address...)."""


class IEventSink(Interface):
    """Where layers report events (``tor_restarted``, ``peer_connected``...)."""

    def emit(event_type: str, **fields: Any) -> None:
        """Publish one event: a JSON object with a ``type`` field plus ``fields``."""

    def subscribe(callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``callback`` with every event; returns a function that unsubscribes."""


class IPeerLink(Interface):
    """One authenticated, encrypted session with a peer (the session layer's product).

    ``peer`` has been proven by the handshake: the other side holds the private
    key of that onion address. Messages are whole application messages (bytes);
    fragmentation, padding and encryption happen below.
    """

    peer = Attribute("the peer's onion (or .b32.i2p) address, authenticated")
    record = Attribute("the peer's verified IdentityRecord")
    transport_name = Attribute("'tor', 'i2p' or 'memory'")

    def send_message(data: bytes) -> None:
        """Queue one application message to the peer."""

    def set_receiver(callback: Callable[[bytes], None]) -> None:
        """Deliver every message received from the peer to ``callback``."""

    def close(reason: str) -> None:
        """Close the session, telling the peer ``reason`` when possible."""

    def when_closed() -> Deferred[str]:
        """Fires with the reason once the session is closed, from either side."""


class ISessionFactory(Interface):
    """Makes authenticated sessions: dials peers and accepts them."""

    def connect(address: str) -> Deferred[IPeerLink]:
        """Dial ``address`` through the right transport and complete the handshake.

        Fails with a typed error (privacy refusal, unreachable, handshake failure).
        """

    def on_incoming(callback: Callable[[IPeerLink], None]) -> None:
        """Call ``callback`` with every session a peer opened to us."""
