"""The seams between layers: one zope Interface per boundary.

Fakes of each live in :mod:`aegis_hidden.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
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

    def serve(factory: IProtocolFactory) -> IService:
        """Serve incoming streams of this network with ``factory``; returns the child
        service that listens while the provider runs.

        The provider owns its listening side (as Tahoe-LAFS's providers own
        ``get_listener()``): Tor serves on the identity onion's target (a loopback
        or unix listener at ``network.listen_address``), I2P on a loopback port of
        its own that the router forwards (SAM ``STREAM FORWARD``) each stream to.
        ``factory`` is the session layer's server factory made for this provider
        (``server_factory(provider.name)``), so every accepted stream carries the
        transport it came from; the session layer opens no socket of its own.
        """


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


class ICellLink(Interface):
    """One established session as a cell scheduler sees it.

    The session queues *plaintext* cells (data, and control cells such as
    REKEY); nothing is sealed until the scheduler asks for it, so a cover cell
    sealed in a slot and a data cell sealed in the same slot are
    indistinguishable, and nonces are consumed in send order. Handshake flights
    and the final CLOSE cell do not go through the scheduler: they are sealed
    and written at once.
    """

    link_id = Attribute("an opaque id for this link, unique within the process; never a peer name")
    closed = Attribute("True once the session is closed: the scheduler drops the link")

    def queued() -> int:
        """How many plaintext cells are waiting to be sealed."""

    def emit(count: int, cover: int = 0) -> int:
        """Seal and write, in ONE transport write, up to ``count`` queued cells
        followed by ``cover`` cover cells; returns how many queued cells went.

        At most ``count + cover`` cells are written: when the record layer must
        rekey, its REKEY cell takes one of the slots (a cover slot if any, else
        the next queued cell waits for the next call). Returns 0 and writes
        nothing once the link is closed."""


class ICellScheduler(Interface):
    """Decides when each link's cells are sealed and written (on an injected clock).

    The default scheduler writes at once (``performance.message_batch_size``
    cells per write); the mixing schedulers send one cell per Poisson slot and
    fill empty slots with cover.
    """

    def register(link: ICellLink) -> None:
        """Start scheduling ``link`` (called once its session is established)."""

    def unregister(link: ICellLink) -> None:
        """Stop scheduling ``link`` (called when it closes)."""

    def notify(link: ICellLink) -> None:
        """New cells were queued on ``link``."""


class ITraceSink(Interface):
    """Where cell traces go (off by default; tests, benchmarks and the audit turn it on).

    A trace holds only what the audit needs: time, a per-run salted hash of
    the link, direction, size, and locally whether the cell was real, cover or
    loop. Never a peer name, never message content.
    """

    def record(at: float, link: str, direction: str, size: int, kind: str) -> None:
        """One cell: ``direction`` is 'out' or 'in'; ``kind`` is 'real', 'cover' or 'loop'."""


class IIdentityService(Interface):
    """The one owner of this node's identity (keys and current signed record).

    Layers hold the service, never a copy of the identity: they read
    :attr:`identity` when they need it (a session signs with the current record),
    or subscribe to hear of a new record. Transports ask it to bind their
    addresses; nothing below the node core re-signs the record itself.
    """

    identity = Attribute("the current NodeIdentity (keys + signed record)")

    def subscribe(callback: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``callback(identity)`` whenever the record changes; returns an unsubscribe."""

    def bind_i2p_destination(destination: str) -> Any:
        """A transport's binding request: commit the record to this I2P destination
        (base64); returns the current NodeIdentity (unchanged if already bound)."""


class IDHT(Interface):
    """The node's DHT as the API and the messaging layer use it (``node.DhtService``;
    a fake in ``aegis_hidden.testing``). Keys are 32 bytes; records are
    ``aegis_hidden.dht.SignedRecord``."""

    def stats() -> dict[str, Any]:
        """Routing table, records held, lookups ok/failed, refusals, contacts (JSON)."""

    def contacts() -> list[str]:
        """The onion addresses in the routing table."""

    def get(key: bytes) -> Deferred[Any]:
        """The newest verified record at ``key`` (held here, else looked up), or None."""

    def put(name: bytes, value: bytes, lifetime: float) -> Deferred[int]:
        """Sign a record of this node called ``name``, STORE it; how many holders took it."""

    def resolve(onion: str) -> Deferred[Any]:
        """Find ``onion``'s identity record and add the peer (None: not found)."""

    def crawl(max_nodes: int, parallel: int) -> Deferred[dict[str, Any]]:
        """Walk the network from the routing table; count the nodes that answered."""
