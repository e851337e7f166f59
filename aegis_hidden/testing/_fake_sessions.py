"""An in-memory network of fake sessions: several fake nodes that can talk.

``FakeNetwork`` holds one :class:`FakeSessionFactory` per node address. Dialing
an address registered on the network gives both ends a connected
:class:`FakePeerLink`; messages are delivered synchronously, or after
``latency`` seconds on an injected clock. Tests can make addresses unreachable,
make handshakes fail, cut links, and count what was sent. A node core sends
frames (``Frame{channel, payload}``, docs/protocol.md §9) over its links;
:meth:`FakePeerLink.sent_frames` reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IPeerLink, ISessionFactory
from ..wire import frame_pb2


class FakeUnreachable(ConnectionError):
    """Nobody listens at that address on the fake network (or it was made unreachable)."""


class FakeHandshakeFailed(Exception):
    """The fake handshake was told to fail for that address."""

    reputation_behaviour = "handshake_failed"


class FakeLinkClosed(ConnectionError):
    """send_message on a closed fake link."""


@dataclass(frozen=True)
class FakeRecord:
    """What a fake link shows as the peer's verified record: its onion, nothing signed.

    The pool adopts a link as peer P only when the record's ``onion`` is P, so a
    fake node's record names the node's own address by default.
    """

    onion: str

    def to_bytes(self) -> bytes:
        return b"fake record of " + self.onion.encode()


@implementer(IPeerLink)
class FakePeerLink:
    """One end of an in-memory session."""

    transport_name = "memory"

    def __init__(self, network: FakeNetwork, local: str, peer: str, record: Any = None) -> None:
        self._network = network
        self.local = local
        self.peer = peer
        self.record = record
        self.other: FakePeerLink | None = None
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self._receiver: Callable[[bytes], None] | None = None
        self._buffer: list[bytes] = []
        self.closed_reason: str | None = None
        self._closed_waiters: list[Deferred[str]] = []

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def sent_frames(self) -> list[tuple[int, bytes]]:
        """``(channel, payload)`` of every message sent on this end, as frames."""
        out = []
        for data in self.sent:
            frame = frame_pb2.Frame()
            frame.ParseFromString(data)  # DecodeError: not a frame
            out.append((int(frame.channel), bytes(frame.payload)))
        return out

    def send_message(self, data: bytes) -> None:
        if self.closed or self.other is None:
            raise FakeLinkClosed(f"link {self.local} -> {self.peer} is closed")
        if not isinstance(data, bytes):
            raise TypeError(f"send_message takes bytes, got {type(data).__name__}")
        self.sent.append(data)
        self._network.bytes_sent += len(data)
        if self._network.drop_all:
            return
        other = self.other
        clock = self._network.clock
        if clock is None:
            other._deliver(data)
        else:
            clock.callLater(self._network.latency, other._deliver, data)

    def _deliver(self, data: bytes) -> None:
        if self.closed:
            return
        self.received.append(data)
        if self._receiver is None:
            self._buffer.append(data)
        else:
            self._receiver(data)

    def set_receiver(self, callback: Callable[[bytes], None]) -> None:
        self._receiver = callback
        buffered, self._buffer = self._buffer, []
        for data in buffered:
            callback(data)

    def close(self, reason: str) -> None:
        self._close(reason)
        if self.other is not None:
            self.other._close(reason)

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed_reason = reason
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(reason)

    def when_closed(self) -> Deferred[str]:
        if self.closed_reason is not None:
            return succeed(self.closed_reason)
        d: Deferred[str] = Deferred()
        self._closed_waiters.append(d)
        return d


@implementer(ISessionFactory)
class FakeSessionFactory:
    """The fake session layer of one node (named by its onion address)."""

    def __init__(self, network: FakeNetwork, address: str, record: Any = None) -> None:
        self.network = network
        self.address = address
        self.record = record if record is not None else FakeRecord(address)
        self._incoming: list[Callable[[IPeerLink], None]] = []
        self.dialed: list[str] = []
        self.links: list[FakePeerLink] = []

    def connect(self, address: str) -> Deferred[IPeerLink]:
        self.dialed.append(address)
        return self.network._dial(self, address)

    def on_incoming(self, callback: Callable[[IPeerLink], None]) -> None:
        self._incoming.append(callback)

    def _accept(self, link: FakePeerLink) -> None:
        self.links.append(link)
        for callback in list(self._incoming):
            callback(link)


class FakeNetwork:
    """The in-memory network joining several :class:`FakeSessionFactory`."""

    def __init__(self, clock: IReactorTime | None = None, latency: float = 0.0) -> None:
        self.clock = clock
        self.latency = latency
        self._nodes: dict[str, FakeSessionFactory] = {}
        self.unreachable: set[str] = set()
        self.failing_handshakes: set[str] = set()
        self.drop_all = False
        self.bytes_sent = 0

    def node(self, address: str, *aliases: str, record: Any = None) -> FakeSessionFactory:
        """Register a node under its onion address (and e.g. its .b32.i2p alias).

        ``record`` is what its peers see as its verified record (by default a
        :class:`FakeRecord` naming ``address``).
        """
        factory = FakeSessionFactory(self, address, record)
        for name in (address, *aliases):
            self._nodes[name] = factory
        return factory

    def remove(self, address: str) -> None:
        """Take a node off the network (it 'stops'); its links close."""
        factory = self._nodes.get(address)
        for name in [n for n, f in self._nodes.items() if f is factory]:
            del self._nodes[name]
        if factory is not None:
            for link in factory.links:
                link.close("node stopped")

    def cut(self, a: str, b: str) -> int:
        """Close every open link between ``a`` and ``b``; returns how many."""
        count = 0
        for factory in {id(f): f for f in self._nodes.values()}.values():
            for link in factory.links:
                ends = {link.local, link.peer, getattr(link.record, "onion", None)}
                if not link.closed and {a, b} <= ends:
                    link.close("cut")
                    count += 1
        return count

    def _dial(self, source: FakeSessionFactory, address: str) -> Deferred[IPeerLink]:
        target = self._nodes.get(address)
        if target is None or address in self.unreachable:
            return fail(FakeUnreachable(f"{address} is unreachable on the fake network"))
        if address in self.failing_handshakes:
            return fail(FakeHandshakeFailed(f"handshake with {address} failed"))
        # Like a real session, the dialling end knows the peer by the address it dialled
        # (a .b32.i2p alias stays the alias); the verified record names the onion.
        ours = FakePeerLink(self, source.address, address, target.record)
        theirs = FakePeerLink(self, target.address, source.address, source.record)
        ours.other, theirs.other = theirs, ours
        source.links.append(ours)
        target._accept(theirs)
        return succeed(ours)


def result_of(d: Deferred[Any] | Coroutine[Any, Any, Any]) -> Any:
    """The result of a Deferred (or coroutine) that has already fired; raises its error.

    For tests on fakes that answer synchronously (InlineSQLite, FakeNetwork without
    a clock): fails loudly if the result is not there yet.
    """
    if not isinstance(d, Deferred):
        d = Deferred.fromCoroutine(d)
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise AssertionError("the Deferred has not fired yet")
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
