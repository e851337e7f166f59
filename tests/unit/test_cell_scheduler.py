"""The cell scheduler seam: sessions queue plaintext cells, a scheduler decides when
they are sealed and written (on a task.Clock), and may add cover cells."""

from __future__ import annotations

import os
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport
from zope.interface import implementer
from zope.interface.verify import verifyObject

from aegis_hidden.config import Config
from aegis_hidden.identity import NodeIdentity
from aegis_hidden.interfaces import ICellLink, ICellScheduler, IPeerLink, ITraceSink
from aegis_hidden.session import (
    Closed,
    CloseReason,
    MessageReceived,
    Session,
    SessionError,
    SessionParams,
)
from aegis_hidden.session._scheduler import ImmediateScheduler
from aegis_hidden.session.twisted import PeerLink, SessionFactory, SessionProtocol
from aegis_hidden.testing._sessions import MemoryTransportProvider, memory_identity

NOW = 1_800_000_000.0
PORT = 7701
CELL = SessionParams().cell_size


def outcome(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


@implementer(ICellScheduler)
class SlotScheduler:
    """A fake mixing scheduler: every ``period`` seconds each link sends ``batch``
    queued cells and tops the slot up to ``batch`` cells with cover."""

    def __init__(self, clock: Clock, period: float = 0.5, batch: int = 2) -> None:
        self.clock = clock
        self.period = period
        self.batch = batch
        self.links: list[ICellLink] = []
        self.notified = 0
        self.writes: list[tuple[int, int]] = []  # (queued cells sent, cover cells asked)
        self._timer: Any = None

    def register(self, link: ICellLink) -> None:
        self.links.append(link)
        if self._timer is None:
            self._timer = self.clock.callLater(self.period, self._slot)

    def unregister(self, link: ICellLink) -> None:
        self.links.remove(link)

    def notify(self, link: ICellLink) -> None:
        self.notified += 1  # nothing leaves before its slot

    def _slot(self) -> None:
        for link in list(self.links):
            if link.closed:
                continue
            real = min(self.batch, link.queued())
            sent = link.emit(real, self.batch - real)
            self.writes.append((sent, self.batch - real))
        self._timer = self.clock.callLater(self.period, self._slot) if self.links else None


@implementer(ITraceSink)
class Trace:
    def __init__(self) -> None:
        self.cells: list[tuple[float, str, str, int, str]] = []

    def record(self, at: float, link: str, direction: str, size: int, kind: str) -> None:
        self.cells.append((at, link, direction, size, kind))


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture(scope="module")
def identities() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def _pair(clock: Clock, identities: tuple[NodeIdentity, NodeIdentity], scheduler: Any,
          params: SessionParams | None = None, trace: Trace | None = None,
          ) -> tuple[MemoryTransportProvider, PeerLink, IPeerLink]:
    provider = MemoryTransportProvider()
    alice = SessionFactory(identities[0], [provider], Config(), clock, params=params,
                           scheduler=scheduler, trace=trace)
    bob = SessionFactory(identities[1], [provider], Config(), clock, params=params)
    incoming: list[IPeerLink] = []
    bob.on_incoming(incoming.append)
    provider.listen(identities[1].onion, PORT, bob.server_factory())
    link = outcome(alice.connect(identities[1].onion))
    assert isinstance(link, PeerLink)
    (theirs,) = incoming
    return provider, link, theirs


def _run(clock: Clock, provider: MemoryTransportProvider, seconds: float, step: float) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
        provider.flush()


def test_the_protocol_is_a_cell_link_and_the_default_scheduler_immediate(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    config = Config()
    factory = SessionFactory(identities[0], [], config, clock)
    assert isinstance(factory.scheduler, ImmediateScheduler)
    assert verifyObject(ICellScheduler, factory.scheduler)
    # performance.message_batch_size is the scheduler's cells per write.
    assert factory.scheduler.batch_size == config.performance.message_batch_size
    proto = factory.server_factory().buildProtocol(None)
    assert isinstance(proto, SessionProtocol) and verifyObject(ICellLink, proto)


def test_immediate_scheduler_writes_message_batch_size_cells_per_write(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    write = FakeTransport.write

    def recording(transport: FakeTransport, data: bytes) -> None:
        if not transport.isServer:
            writes.append(len(data) // CELL)
        write(transport, data)

    provider, link, theirs = _pair(clock, identities, ImmediateScheduler(3))
    got: list[bytes] = []
    theirs.set_receiver(got.append)
    monkeypatch.setattr(FakeTransport, "write", recording)
    message = bytes(range(256)) * 40  # 10240 bytes, incompressible enough: 11 cells
    link.send_message(message)
    provider.flush()  # nothing waits for a clock: immediate
    assert got == [message]
    assert writes == [3, 3, 3, 2]


def test_a_delaying_batching_scheduler_with_cover_delivers_every_message_in_order(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    # Small rekey interval: nonces and keys must stay in step on both sides while
    # cover cells and REKEY cells are interleaved with the data.
    params = SessionParams(rekey_cells=5, compression_threshold=1 << 20)
    scheduler = SlotScheduler(clock, period=0.5, batch=2)
    trace = Trace()
    provider, link, theirs = _pair(clock, identities, scheduler, params, trace)
    got: list[bytes] = []
    theirs.set_receiver(got.append)
    messages = [b"m%d" % k * (k * 150) for k in range(12)]  # 0 to ~4 cells each
    for m in messages:
        link.send_message(m)
    provider.flush()
    assert got == []  # queued, not sealed: the scheduler has not given a slot yet
    queued = link._protocol.queued()
    assert queued >= 12 and scheduler.notified >= 1
    _run(clock, provider, seconds=0.5 * (queued + 10), step=0.5)
    assert got == messages  # every message, once, in order
    assert link._protocol.queued() == 0
    # Cover cells went out (slots with fewer than 2 queued cells were topped up) and
    # the peer dropped them; the keys turned over several times on both sides.
    assert sum(cover for _, cover in scheduler.writes) > 0
    tx, rx = link._protocol.session._tx, theirs._protocol.session._rx  # type: ignore[attr-defined]
    assert tx is not None and rx is not None
    assert tx.generation >= 3 and (tx.generation, tx.count) == (rx.generation, rx.count)
    # Every write was one slot: at most 2 cells (a REKEY takes one of them).
    outs = [c for c in trace.cells if c[2] == "out"]
    slot_times = sorted({c[0] for c in outs if c[0] > NOW})
    assert all(sum(1 for c in outs if c[0] == t) <= 2 for t in slot_times)
    assert {c[4] for c in outs} == {"real", "cover"}
    assert all(c[3] == CELL and len(c[1]) == 16 for c in trace.cells)
    assert identities[1].onion not in {c[1] for c in trace.cells}  # salted id, no peer name
    assert any(c[2] == "in" for c in trace.cells)  # the handshake replies at least


def test_close_is_sealed_after_the_queued_cells(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    scheduler = SlotScheduler(clock, period=10.0, batch=1)
    provider, link, theirs = _pair(clock, identities, scheduler)
    got: list[bytes] = []
    theirs.set_receiver(got.append)
    link.send_message(b"first")
    link.send_message(b"second" * 300)
    link.close("done")  # before any slot: the queued cells go first, then CLOSE
    provider.flush()
    assert got == [b"first", b"second" * 300]
    assert outcome(theirs.when_closed()) == "normal: peer closed: done"
    assert scheduler.links == []  # unregistered
    clock.advance(20)  # a slot after the close writes nothing and does not fail
    provider.flush()


def test_a_close_on_a_poisson_link_sends_the_backlog_at_its_slots_never_more_than_burst(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The integration run once saw one write of BURST + 1 cells on a balanced link,
    # at the node's stop: a close sealed every queued cell and the CLOSE in one
    # write, outside the schedule (here it would be 10 + 1 cells), which tells an
    # observer how many cells were waiting.
    import random

    from aegis_hidden.mixing import PoissonScheduler

    burst = 4
    scheduler = PoissonScheduler(clock, random.Random(5), 2.0, burst=burst)
    writes: list[tuple[float, int]] = []
    write = FakeTransport.write

    def recording(transport: FakeTransport, data: bytes) -> None:
        if not transport.isServer:
            writes.append((clock.seconds(), len(data) // CELL))
        write(transport, data)

    provider, link, theirs = _pair(clock, identities, scheduler,
                                   SessionParams(compression_threshold=1 << 20))
    got: list[bytes] = []
    theirs.set_receiver(got.append)
    monkeypatch.setattr(FakeTransport, "write", recording)
    messages = [b"%d" % k * 100 for k in range(10)]  # one cell each
    for m in messages:
        link.send_message(m)
    assert link.queued() == 10
    link.close("done")
    provider.flush()
    assert writes == [] and not link.is_closed  # nothing leaves outside a slot
    with pytest.raises(SessionError, match="closing"):
        link.send_message(b"late")  # nothing joins the backlog once the close is asked
    _run(clock, provider, seconds=60, step=0.01)
    assert got == messages  # every queued message, once, in order, then the CLOSE
    assert outcome(theirs.when_closed()) == "normal: peer closed: done"
    assert link.close_reason is not None and scheduler.links == 0
    # one write per slot, each at most `burst` cells; the CLOSE has a slot of its own
    assert [k for _, k in writes] == [4, 4, 2, 1]
    assert len({t for t, _ in writes}) == len(writes)


def test_seal_queued_in_the_sans_io_session_keeps_nonces_in_send_order(
        identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    params = SessionParams(rekey_cells=3)
    i = Session(identities[0], params, initiator=True, clock=lambda: NOW,
                peer_address=identities[1].onion)
    r = Session(identities[1], params, initiator=False, clock=lambda: NOW)
    i.start()
    for _ in range(3):
        r.receive_data(i.data_to_send())
        i.receive_data(r.data_to_send())
    i.events()
    r.events()
    messages = [os.urandom(k) for k in (0, 1, 976, 977, 3000)]
    for m in messages:
        i.send_message(m)
    assert i.queued() == 1 + 1 + 1 + 2 + 4
    wire = b""
    while i.queued():
        out = i.seal_queued(1, cover=1)  # one data cell and one cover cell per slot
        assert len(out) == 2 * CELL
        wire += out
    wire += i.seal_queued(0, cover=3)
    i.close(CloseReason.NORMAL, "bye")
    wire += i.data_to_send()
    r.receive_data(wire)
    events = r.events()
    assert events[:-1] == [MessageReceived(m) for m in messages]
    assert isinstance(events[-1], Closed) and events[-1].reason is CloseReason.NORMAL
    assert r.cover_received > 0


def test_seal_slot_counts_the_queued_cells_it_sealed(
        identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    """seal_slot seals what seal_queued would and says how many queued cells went: a
    REKEY takes a slot (a cover one first), and only queued cells are counted."""
    params = SessionParams(rekey_cells=3)
    i = Session(identities[0], params, initiator=True, clock=lambda: NOW,
                peer_address=identities[1].onion)
    r = Session(identities[1], params, initiator=False, clock=lambda: NOW)
    i.start()
    for _ in range(3):
        r.receive_data(i.data_to_send())
        i.receive_data(r.data_to_send())
    i.events()
    r.events()
    messages = [os.urandom(k) for k in (5, 3000, 7)]
    for m in messages:
        i.send_message(m)
    wire, counted = b"", 0
    for count, cover in [(2, 0), (1, 1), (4, 0), (0, 2), (3, 0), (2, 1)]:
        before = i.queued()
        out, sent = i.seal_slot(count, cover)
        assert sent == before - i.queued() and sent <= count
        assert len(out) // CELL <= count + cover
        wire, counted = wire + out, counted + sent
    assert counted == 1 + 4 + 1 and i.queued() == 0
    r.receive_data(wire)
    assert [e for e in r.events() if isinstance(e, MessageReceived)] == [
        MessageReceived(m) for m in messages]
    fresh = Session(identities[0], params, initiator=True, clock=lambda: NOW,
                    peer_address=identities[1].onion)
    fresh.start()
    with pytest.raises(SessionError, match="not established"):
        fresh.seal_slot(1)


def test_seal_queued_before_the_handshake_is_refused(
        identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    from aegis_hidden.session import SessionError

    i = Session(identities[0], SessionParams(), initiator=True, clock=lambda: NOW,
                peer_address=identities[1].onion)
    i.start()
    with pytest.raises(SessionError, match="not established"):
        i.seal_queued(0, cover=1)
    assert i.seal_queued(0) != b""  # the ClientHello, sealed or not, is still handed out


def test_rekey_cells_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="rekey_cells"):
        SessionParams(rekey_cells=0)


def test_loop_cells_are_traced_as_loop_on_the_sending_and_the_returning_side(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    # Issue 11 item 6: the local trace says whether a cell was real, cover or loop.

    from aegis_hidden.mixing import LOOP_ID_BYTES
    from aegis_hidden.node import loop_trace_kind
    from aegis_hidden.node._channels import Channel, encode_frame, send_frame
    from aegis_hidden.node._control import ControlKind

    provider, traces, link, theirs = _traced_pair(clock, identities, 3)
    provider.flush()
    loop_id = os.urandom(LOOP_ID_BYTES)

    def answer(data: bytes) -> None:  # bob answers a loop at once, as PeerLoops does
        if loop_trace_kind(data) == "loop":
            send_frame(theirs, Channel.CONTROL, bytes([ControlKind.LOOP_RETURN]) + loop_id)

    theirs.set_receiver(answer)
    got: list[bytes] = []
    link.set_receiver(got.append)
    for k in range(2):  # before and after the loop: data, and a control frame not a loop
        link.send_message(encode_frame(Channel.MESSAGING, b"hello %d" % k))
        link.send_message(encode_frame(Channel.CONTROL, bytes([ControlKind.RECORD_PUSH]) + loop_id))
        if k == 0:
            send_frame(link, Channel.CONTROL, bytes([ControlKind.LOOP]) + loop_id)
    _run(clock, provider, seconds=10, step=0.01)
    assert got == [encode_frame(Channel.CONTROL, bytes([ControlKind.LOOP_RETURN]) + loop_id)]

    def kinds(trace: Trace, direction: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, _, d, _, kind in trace.cells:
            if d == direction:
                out[kind] = out.get(kind, 0) + 1
        return out

    sent, back = kinds(traces[0], "out"), kinds(traces[0], "in")
    assert sent["loop"] == 1 and back["loop"] == 1  # the sender: its loop, and the return
    assert sent["real"] >= 4 and sent["cover"] > 0
    assert kinds(traces[1], "in")["loop"] == 1  # the returning side: the loop it got...
    assert kinds(traces[1], "out")["loop"] == 1  # ...and the return it sent
    assert kinds(traces[1], "in")["cover"] == sent["cover"]
    # without a kind function every message is "real" (as before)
    assert loop_trace_kind(b"\x00" * 200) == "real" and loop_trace_kind(b"junk") == "real"


def test_a_loop_queued_while_bulk_data_leaves_is_traced_when_it_leaves(
        clock: Clock, identities: tuple[NodeIdentity, NodeIdentity]) -> None:
    """Bulk cells (stream data) of a begun message leave before a loop queued after
    them: the trace must not give the loop's kind to a bulk cell. The sender's
    loop cell is traced at the moment the peer receives the loop."""

    from aegis_hidden.mixing import LOOP_ID_BYTES
    from aegis_hidden.node._channels import Channel, encode_frame, send_frame
    from aegis_hidden.node._control import ControlKind

    provider, traces, link, theirs = _traced_pair(clock, identities, 5)
    theirs.set_receiver(lambda data: None)
    provider.flush()
    link.send_bulk(encode_frame(Channel.STREAM, os.urandom(40_000)))  # ~80 cells
    _run(clock, provider, seconds=2, step=0.01)
    begun = [c for c in traces[0].cells if c[2] == "out" and c[4] == "real"]
    assert begun, "the bulk message has begun to leave"
    send_frame(link, Channel.CONTROL, bytes([ControlKind.LOOP]) + os.urandom(LOOP_ID_BYTES))
    _run(clock, provider, seconds=60, step=0.01)
    out_loops = [c[0] for c in traces[0].cells if c[2] == "out" and c[4] == "loop"]
    in_loops = [c[0] for c in traces[1].cells if c[2] == "in" and c[4] == "loop"]
    assert len(out_loops) == 1 and len(in_loops) == 1
    assert out_loops == in_loops  # traced in the write that carried it


def _traced_pair(clock: Clock, identities: tuple[NodeIdentity, NodeIdentity], seed: int
                 ) -> tuple[MemoryTransportProvider, tuple[Trace, Trace], Any, IPeerLink]:
    """Alice (Poisson scheduler, λ 2, burst 4) connected to Bob, both traced with the
    node's loop kinds: (provider, (alice's, bob's trace), alice's link, bob's link)."""
    import random

    from aegis_hidden.mixing import PoissonScheduler
    from aegis_hidden.node import loop_trace_kind

    provider = MemoryTransportProvider()
    traces = Trace(), Trace()
    alice = SessionFactory(identities[0], [provider], Config(), clock,
                           scheduler=PoissonScheduler(clock, random.Random(seed), 2.0, burst=4),
                           trace=traces[0], trace_kind=loop_trace_kind)
    bob = SessionFactory(identities[1], [provider], Config(), clock, trace=traces[1],
                         trace_kind=loop_trace_kind)
    incoming: list[IPeerLink] = []
    bob.on_incoming(incoming.append)
    provider.listen(identities[1].onion, PORT, bob.server_factory())
    link = outcome(alice.connect(identities[1].onion))
    (theirs,) = incoming
    return provider, traces, link, theirs
