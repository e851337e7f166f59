"""Two priority classes in the session's outgoing queue (issue 13 item 7).

Bulk stream data is pushed with ``bulk=True``: it leaves only when no other
message waits, and the cells of one message stay together, so a small message
queued behind 10 MB of stream data waits at most the rest of one stream chunk.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.session import MessageReceived, Session, SessionParams
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.wire import CellQueue, Flags, decode_inner, inner_body_capacity

NOW = 1_800_000_000.0
CELL = 996
CHUNK = 8192  # the stream layer's largest DATA payload (aegis_hidden.streams)


def _plain(nonce: bytes, plain: bytes, ad: None) -> bytes:
    return plain


def _seal_one(q: CellQueue) -> bytes:
    out: list[bytes] = []
    q.seal(1, _plain, 0, 0, 8, out)
    assert len(out) == 1
    return out[0]


def test_small_message_behind_10_mb_of_stream_data_leaves_within_one_chunk() -> None:
    q = CellQueue(CELL)
    chunk = os.urandom(CHUNK)
    for _ in range(10 * 1024 * 1024 // CHUNK):
        q.push(0, chunk, bulk=True)
    bulk_cells = q.bulk_queued
    per_chunk = -(-CHUNK // inner_body_capacity(CELL))
    assert bulk_cells == per_chunk * (10 * 1024 * 1024 // CHUNK)
    for _ in range(3):  # part-way into the first chunk
        _seal_one(q)
    q.push(0, b"small message")
    waited = 0
    while True:
        body = decode_inner(_seal_one(q))[2]
        if body == b"small message":
            break
        waited += 1
    assert waited == per_chunk - 3  # the rest of the chunk begun, not the 10 MB
    assert waited <= per_chunk
    assert q.bulk_queued == bulk_cells - per_chunk
    assert not q.bulk_started


def test_bulk_alone_flows_and_normal_class_goes_first() -> None:
    q = CellQueue(CELL)
    q.push(0, b"b1", bulk=True)
    q.push(0, b"n1")
    q.push(0, b"b2", bulk=True)
    q.push(0, b"n2")
    bodies = [decode_inner(_seal_one(q))[2] for _ in range(4)]
    assert bodies == [b"n1", b"n2", b"b1", b"b2"]
    assert q.queued == q.bulk_queued == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3000)), min_size=1, max_size=12),
       st.integers(1, 7))
def test_every_message_arrives_whole_whatever_the_interleaving(
        msgs: list[tuple[bool, int]], step: int) -> None:
    """Through real sessions: cells of one message stay together, each class keeps
    its order, and the receiver reassembles every message."""
    a, b = memory_identity(NOW), memory_identity(NOW)
    params = SessionParams(cell_size=CELL)
    i = Session(a, params, initiator=True, clock=lambda: NOW, peer_address=b.onion)
    r = Session(b, params, initiator=False, clock=lambda: NOW)
    i.start()
    for _ in range(3):
        r.receive_data(i.data_to_send())
        i.receive_data(r.data_to_send())
    assert i.established and r.established
    r.events()
    sent = [(bulk, bytes([n % 251]) * size + n.to_bytes(2, "big"))
            for n, (bulk, size) in enumerate(msgs)]
    half = len(sent) // 2
    for bulk, data in sent[:half]:
        i.send_message(data, bulk=bulk)
    r.receive_data(i.seal_queued(step))  # some cells leave, then more messages of both classes come
    for bulk, data in sent[half:]:
        i.send_message(data, bulk=bulk)
    while i.queued():
        r.receive_data(i.seal_queued(step))
    r.receive_data(i.seal_queued(0))
    got = [e.data for e in r.events() if isinstance(e, MessageReceived)]
    assert sorted(got) == sorted(d for _, d in sent)
    for cls in (True, False):
        mine = [d for bulk, d in sent if bulk is cls]
        assert [d for d in got if d in mine] == mine


def test_more_flag_is_never_split_by_a_normal_message() -> None:
    q = CellQueue(CELL)
    q.push(0, os.urandom(3 * CELL), bulk=True)
    _seal_one(q)
    q.push(0, b"x")
    flags = [decode_inner(_seal_one(q))[1] & Flags.MORE for _ in range(q.queued)]
    # the bulk message's remaining cells (MORE, then its last), then the small one
    assert flags[-2:] == [0, 0] and all(flags[:-2])
