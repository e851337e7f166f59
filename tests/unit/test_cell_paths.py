"""The fast cell paths agree byte for byte with the reference codec (docs/protocol.md §3, §4).

The reference is wire's plain codec: :func:`fragment` + :func:`encode_inner`
to build cells, :func:`decode_inner` + :class:`Reassembler` to read them, and
:class:`Direction.seal` / :meth:`Direction.open` one cell at a time. The fast
paths are what the session runs: :class:`CellQueue`, :meth:`CellReader.open_read`
(opening and reading in one loop) and the record layer's batched sealing and
key switching.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_hidden.identity import NodeIdentity
from aegis_hidden.session import MessageReceived, Session, SessionParams
from aegis_hidden.session._aead import Direction
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.wire import (
    CellError,
    CellQueue,
    CellReader,
    CellType,
    Flags,
    Reassembler,
    UnexpectedCell,
    data_cells,
    decode_inner,
    encode_inner,
    fragment,
    inner_body_capacity,
    prepare_message,
)

NOW = 1_800_000_000.0
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
CELL_SIZES = st.sampled_from([256, 300, 996, 1400])


def _sizes_around_boundaries(room: int) -> st.SearchStrategy[int]:
    """Message sizes at, just under and just over a whole number of cells."""
    return st.one_of(
        st.builds(lambda k, d: max(0, k * room + d), st.integers(0, 5), st.integers(-2, 2)),
        st.integers(0, 6 * room))


@st.composite
def _message(draw: st.DrawFn, room: int) -> bytes:
    size = draw(_sizes_around_boundaries(room))
    seed = draw(st.integers(0, 255))
    return bytes((seed + k * 7) % 256 for k in range(size))


# -- building cells -----------------------------------------------------------------


@SETTINGS
@given(data=st.data(), cell_size=CELL_SIZES, flags=st.sampled_from([0, int(Flags.ZSTD)]))
def test_data_cells_are_the_reference_encoding(data: st.DataObject, cell_size: int,
                                               flags: int) -> None:
    room = inner_body_capacity(cell_size)
    payload = data.draw(_message(room))
    reference = [encode_inner(cell_size, CellType.DATA, f, piece)
                 for f, piece in fragment(payload, room, flags)]
    assert data_cells(cell_size, flags, payload) == reference


@SETTINGS
@given(data=st.data(), cell_size=CELL_SIZES, first=st.integers(0, 1 << 40))
def test_cell_queue_seals_the_reference_cells_in_order(data: st.DataObject, cell_size: int,
                                                       first: int) -> None:
    # Messages queued and cells sealed in any interleaving and any counts: the
    # j-th sealed cell is the j-th reference cell, under nonce iv ^ (first + j).
    room = inner_body_capacity(cell_size)
    queue = CellQueue(cell_size)
    expected: list[bytes] = []
    sealed: list[bytes] = []

    def encrypt(nonce: bytes, plain: bytes, ad: None) -> bytes:
        assert ad is None
        return nonce + plain

    for _ in range(data.draw(st.integers(1, 10))):
        if data.draw(st.booleans()):
            flags = data.draw(st.sampled_from([0, int(Flags.ZSTD)]))
            message = data.draw(_message(room))
            # A caller's buffer (from untyped code), changed after the push: the
            # cells keep what was pushed.
            buffer = bytearray(message)
            queue.push(flags, cast(bytes, buffer))
            buffer[:] = bytes(len(buffer))
            expected += [encode_inner(cell_size, CellType.DATA, f, piece)
                         for f, piece in fragment(message, room, flags)]
        else:
            k = data.draw(st.integers(0, queue.queued))
            queue.seal(k, encrypt, 0x5A5A, first + len(sealed), 12, sealed)
        assert queue.queued == len(expected) - len(sealed)
    with pytest.raises(ValueError, match="cannot seal"):
        queue.seal(queue.queued + 1, encrypt, 0x5A5A, first + len(sealed), 12, sealed)
    queue.seal(queue.queued, encrypt, 0x5A5A, first + len(sealed), 12, sealed)
    assert sealed == [(0x5A5A ^ (first + j)).to_bytes(12, "big") + plain
                      for j, plain in enumerate(expected)]


# -- reading cells ------------------------------------------------------------------


def _reference_read(cell_size: int, limit: int, plains: list[bytes]
                    ) -> tuple[list[bytes], bytes | None]:
    """Every cell through decode_inner and one Reassembler: no fast path at all."""
    reassembler = Reassembler(limit, room=inner_body_capacity(cell_size))
    out: list[bytes] = []
    for plain in plains:
        kind, flags, body = decode_inner(plain)
        if kind is not CellType.DATA and flags:
            raise UnexpectedCell(f"{kind.name} cell with flags {flags:#x}")
        if kind in (CellType.REKEY, CellType.PADDING, CellType.COVER) and body:
            raise UnexpectedCell(f"{kind.name} cell with a body")
        if kind is CellType.DATA:
            msg = reassembler.feed(flags, body)
            if msg is not None:
                out.append(msg)
        elif kind is CellType.CLOSE:
            return out, body
        elif kind is CellType.HANDSHAKE:
            raise UnexpectedCell("handshake cell after the handshake")
    return out, None


def _outcome(read: Any) -> tuple[Any, ...]:
    try:
        messages, close = read()
    except CellError as e:
        return ("error", type(e), str(e))
    return ("ok", messages, close)


@st.composite
def _cell_stream(draw: st.DrawFn, cell_size: int) -> list[bytes]:
    """Valid messages (plain and zstd), control cells, and some cells spoilt on purpose."""
    room = inner_body_capacity(cell_size)
    plains: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        what = draw(st.sampled_from(["message", "message", "compressed", "control", "raw"]))
        if what == "message":
            plains += data_cells(cell_size, 0, draw(_message(room)))
        elif what == "compressed":
            text = b"compressible " * draw(st.integers(1, 200))
            flags, payload = prepare_message(text, 0, 1 << 20)
            plains += data_cells(cell_size, flags, payload)
        elif what == "control":
            kind = draw(st.sampled_from([CellType.COVER, CellType.PADDING, CellType.REKEY,
                                         CellType.CLOSE, CellType.HANDSHAKE]))
            plains.append(encode_inner(cell_size, kind, 0, b"bye" if kind is CellType.CLOSE else b""))
        else:
            ctype = draw(st.integers(0, 7))
            flags = draw(st.sampled_from([0, 1, 2, 3, 4]))
            body = draw(st.binary(max_size=room))
            plains.append(encode_inner(cell_size, ctype, flags, body))
    if draw(st.booleans()) and plains:
        # Spoil one byte of one cell: header, body or padding.
        k = draw(st.integers(0, len(plains) - 1))
        cell = bytearray(plains[k])
        at = draw(st.integers(0, len(cell) - 1))
        cell[at] ^= draw(st.integers(1, 255))
        plains[k] = bytes(cell)
    return plains


@SETTINGS
@given(data=st.data(), cell_size=CELL_SIZES, limit=st.sampled_from([100, 2000, 1 << 20]),
       split=st.integers(0, 20))
def test_cell_reader_reads_what_the_reference_reads(data: st.DataObject, cell_size: int,
                                                    limit: int, split: int) -> None:
    plains = data.draw(_cell_stream(cell_size))
    expected = _outcome(lambda: _reference_read(cell_size, limit, plains))
    reader = CellReader(cell_size, limit)

    def fast() -> tuple[list[bytes], bytes | None]:
        out: list[bytes] = []
        # The cells "sealed" with an AEAD that only appends a 16-byte tag, read in
        # two runs split anywhere (the reader keeps its state between them) and
        # called again after each REKEY, as the record layer does.
        view = memoryview(b"".join(p + bytes(16) for p in plains))
        pos, count, close = 0, 0, None
        for stop in (min(split, len(plains)) * cell_size, len(view)):
            while pos < stop and close is None:
                pos, count, stopped, close = reader.open_read(
                    _FakeAEAD(7).decrypt, InvalidTag, 7, count, 12, view, pos, stop, out, bytes)
                assert stopped in (0, CellType.REKEY, CellType.CLOSE)
                assert count == pos // cell_size
        return out, close

    assert _outcome(fast) == expected


class _FakeAEAD:
    """Opens a cell by dropping its 16-byte tag; checks the nonce is ``iv ^ k`` for the
    k-th cell; fails on the cell numbers in ``bad``."""

    def __init__(self, iv: int, bad: frozenset[int] = frozenset()) -> None:
        self.iv, self.bad = iv, bad

    def decrypt(self, nonce: bytes, cell: memoryview, ad: None) -> bytes:
        k = int.from_bytes(nonce, "big") ^ self.iv
        assert len(nonce) == 12 and ad is None
        if k in self.bad:
            raise InvalidTag
        return bytes(cell[:-16])


@SETTINGS
@given(data=st.data(), cell_size=CELL_SIZES)
def test_open_read_stops_at_a_cell_that_does_not_open(data: st.DataObject, cell_size: int) -> None:
    room = inner_body_capacity(cell_size)
    messages = [data.draw(_message(room)) for _ in range(data.draw(st.integers(1, 4)))]
    plains = [c for m in messages for c in data_cells(cell_size, 0, m)]
    bad = data.draw(st.integers(0, len(plains) - 1))
    view = memoryview(b"".join(p + bytes(16) for p in plains))
    out: list[bytes] = []
    reader = CellReader(cell_size, 1 << 20)
    pos, count, stopped, close = reader.open_read(
        _FakeAEAD(3, frozenset({bad + 5})).decrypt, InvalidTag, 3, 5, 12, view, 0, len(view),
        out, bytes)
    # Every message whose cells all came before the bad one is out; the bad cell is not read.
    assert (pos, count, stopped, close) == (bad * cell_size, bad + 5, -1, None)
    ends = [sum(len(data_cells(cell_size, 0, m)) for m in messages[:j + 1])
            for j in range(len(messages))]
    assert out == [m for m, end in zip(messages, ends, strict=True) if end <= bad]


# -- sealing and opening through the session ----------------------------------------


@pytest.fixture(scope="module")
def pair() -> tuple[NodeIdentity, NodeIdentity]:
    return memory_identity(NOW), memory_identity(NOW)


def _established(pair: tuple[NodeIdentity, NodeIdentity], params: SessionParams
                 ) -> tuple[Session, Session]:
    a, b = pair
    i = Session(a, params, initiator=True, clock=lambda: NOW, peer_address=b.onion)
    r = Session(b, params, initiator=False, clock=lambda: NOW)
    i.start()
    for _ in range(3):
        r.receive_data(i.data_to_send())
        i.receive_data(r.data_to_send())
    assert i.established and r.established
    i.events()
    r.events()
    return i, r


def _copy(d: Direction) -> Direction:
    c = Direction(d.aead_id, d._secret, d._label, NOW)
    c.count, c.generation = d.count, d.generation
    return c


@st.composite
def _sends(draw: st.DrawFn, room: int) -> list[tuple[str, Any]]:
    """Messages, and scheduler slots: (queued cells to seal, cover cells to add)."""
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.integers(0, 3)):
            compressible = draw(st.booleans())
            ops.append(("message", b"abc" * (draw(_sizes_around_boundaries(room)) // 3)
                        if compressible else draw(_message(room))))
        else:
            ops.append(("slot", (draw(st.integers(0, 3)), draw(st.integers(0, 2)))))
    return ops


@SETTINGS
@given(data=st.data(), rekey_cells=st.sampled_from([2, 3, 7, 1 << 20]),
       threshold=st.sampled_from([100, 1 << 20]), chunk=st.integers(1, 3000))
def test_session_seals_and_opens_what_the_reference_codec_does(
        pair: tuple[NodeIdentity, NodeIdentity], data: st.DataObject, rekey_cells: int,
        threshold: int, chunk: int) -> None:
    params = dataclasses.replace(SessionParams(), rekey_cells=rekey_cells,
                                 compression_threshold=threshold)
    n = params.cell_size
    room = inner_body_capacity(n)
    i, r = _established(pair, params)
    assert i._tx is not None and r._rx is not None
    ref_tx, ref_rx = _copy(i._tx), _copy(r._rx)
    ops = data.draw(_sends(room))

    # Reference: every cell encoded with encode_inner over fragment() and sealed
    # one at a time, a REKEY before any cell once the key has sealed rekey_cells.
    queue: list[bytes] = []
    expected: list[bytes] = []
    wire = b""

    def ref_seal(plain: bytes) -> None:
        if ref_tx.count >= rekey_cells:
            expected.append(ref_tx.seal(encode_inner(n, CellType.REKEY, 0, b"")))
            ref_tx.rekey(NOW)
        expected.append(ref_tx.seal(plain))

    cover = encode_inner(n, CellType.COVER, 0, b"")
    messages = []
    for what, arg in ops:
        if what == "message":
            messages.append(arg)
            i.send_message(arg)
            flags, payload = prepare_message(arg, threshold, params.max_message_size)
            queue += [encode_inner(n, CellType.DATA, f, piece)
                      for f, piece in fragment(payload, room, flags)]
        else:
            count, covers = arg
            wire += i.seal_queued(count, covers)
            # count + covers slots, queued cells first; a due REKEY takes a slot
            # (a cover slot first, else the next queued cell waits).
            reals = min(count, len(queue))
            while reals or covers:
                if ref_tx.count >= rekey_cells:
                    expected.append(ref_tx.seal(encode_inner(n, CellType.REKEY, 0, b"")))
                    ref_tx.rekey(NOW)
                    if covers:
                        covers -= 1
                    else:
                        reals -= 1
                    continue
                if reals:
                    reals -= 1
                    expected.append(ref_tx.seal(queue.pop(0)))
                else:
                    covers -= 1
                    expected.append(ref_tx.seal(cover))
    wire += i.data_to_send()
    for plain in queue:
        ref_seal(plain)
    assert wire == b"".join(expected)
    assert i.queued() == 0

    # Opening: the session's batched open + CellReader against Direction.open +
    # the reference reader, fed in arbitrary chunks.
    for k in range(0, len(wire), chunk):
        r.receive_data(wire[k:k + chunk])
    got = r.events()
    assert got == [MessageReceived(m) for m in messages]
    plains = []
    for k in range(0, len(wire), n):
        plain = ref_rx.open(wire[k:k + n])
        plains.append(plain)
        if plain[0] == CellType.REKEY:
            ref_rx.rekey(NOW)
    assert _reference_read(n, params.max_message_size, plains) == (messages, None)
    assert r._rx is not None and (r._rx.generation, r._rx.count) == (ref_rx.generation, ref_rx.count)
