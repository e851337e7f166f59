"""Bulk messages (stream data) through real sessions on a paced scheduler: a small
message sent behind megabytes of bulk messages leaves within one bulk message's
cells (issue 13 item 7, priorities), and PeerLink.send_bulk refuses a closed link."""

from __future__ import annotations

import os
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from zope.interface import implementer

from aegis_hidden.config import Config
from aegis_hidden.interfaces import ICellLink, ICellScheduler
from aegis_hidden.session.twisted import PeerLink, SessionFactory
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity
from aegis_hidden.wire import inner_body_capacity

NOW = 1_800_000_000.0
PORT = 7701
CHUNK = 8192


@implementer(ICellScheduler)
class Manual:
    """Sends only when the test says so (one cell per :meth:`slot`), like a paced
    scheduler whose slots the test controls."""

    def __init__(self) -> None:
        self.links: list[ICellLink] = []

    def register(self, link: ICellLink) -> None:
        self.links.append(link)

    def unregister(self, link: ICellLink) -> None:
        if link in self.links:
            self.links.remove(link)

    def notify(self, link: ICellLink) -> None:
        pass

    def slot(self, link: ICellLink, cells: int = 1) -> None:
        link.emit(cells)


def outcome(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box
    return box[0]


def test_small_message_overtakes_megabytes_of_bulk_within_one_chunk() -> None:
    clock = Clock()
    clock.advance(NOW)
    provider = MemoryTransportProvider()
    a_id, b_id = memory_identity(NOW), memory_identity(NOW)
    scheduler = Manual()
    alice = SessionFactory(a_id, [provider], Config(), clock, scheduler=scheduler)
    bob = SessionFactory(b_id, [provider], Config(), clock)
    incoming: list[Any] = []
    bob.on_incoming(incoming.append)
    provider.listen(b_id.onion, PORT, bob.server_factory())
    d = alice.connect(b_id.onion)
    provider.flush()
    link = outcome(d)
    assert isinstance(link, PeerLink)
    (theirs,) = incoming
    got: list[bytes] = []
    theirs.set_receiver(got.append)
    (paced,) = scheduler.links
    for i in range(2 * 1024 * 1024 // CHUNK):  # 2 MiB of stream data, 8 KiB each
        link.send_bulk(i.to_bytes(4, "big") + os.urandom(CHUNK - 4))  # no compression
    for _ in range(5):  # part-way into the first chunk
        scheduler.slot(paced)
        provider.flush()
    link.send_message(b"urgent")
    slots = 0
    while b"urgent" not in got:
        scheduler.slot(paced)
        provider.flush()
        slots += 1
    per_chunk = -(-(CHUNK + 16) // inner_body_capacity(Config().mixing.cell_size))
    assert per_chunk == 9
    assert slots == per_chunk - 5 + 1  # the rest of the chunk begun, then the small message
    assert len(got) == 2 and got[0][:4] == (0).to_bytes(4, "big")
    while paced.queued():  # the bulk data then flows, in order
        scheduler.slot(paced, 200)
        provider.flush()
    bulk = [m for m in got if m != b"urgent"]
    assert [int.from_bytes(m[:4], "big") for m in bulk] == list(range(len(bulk)))
    assert len(bulk) == 2 * 1024 * 1024 // CHUNK
    link.close("done")
    provider.flush()
    with pytest.raises(Exception, match="closed"):
        link.send_bulk(b"late")
