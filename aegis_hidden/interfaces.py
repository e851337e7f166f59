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
