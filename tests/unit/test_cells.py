"""Cell codec and sealed-cell record layer: sizes, strict parsing, tamper rejection."""

from __future__ import annotations

import contextlib
import os

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.crypto import AEADS
from aegis_hidden.session import CloseReason, SessionError
from aegis_hidden.session._aead import Direction
from aegis_hidden.wire import (
    CellError,
    CellType,
    Flags,
    MessageTooLarge,
    Reassembler,
    decode_clear,
    decode_inner,
    encode_clear,
    encode_inner,
    fragment,
    inner_body_capacity,
    prepare_message,
)

SIZES = st.sampled_from([256, 514, 996, 1024, 2048])
AEAD_IDS = st.sampled_from(sorted(AEADS.values()))
TYPES = st.sampled_from(list(CellType))


def _pair(aead_id: int, secret: bytes = b"k" * 32) -> tuple[Direction, Direction]:
    return Direction(aead_id, secret, b"test", 0.0), Direction(aead_id, secret, b"test", 0.0)


@settings(max_examples=200, deadline=None)
@given(size=SIZES, aead_id=AEAD_IDS, ctype=TYPES, data=st.data())
def test_every_sealed_cell_is_exactly_the_cell_size(size: int, aead_id: int, ctype: CellType,
                                                    data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=inner_body_capacity(size)))
    tx, rx = _pair(aead_id)
    cell = tx.seal(encode_inner(size, ctype, 0, body))
    assert len(cell) == size
    assert decode_inner(rx.open(cell)) == (ctype, 0, body)


@settings(max_examples=200, deadline=None)
@given(size=SIZES, data=st.data())
def test_every_clear_cell_is_exactly_the_cell_size(size: int, data: st.DataObject) -> None:
    piece = data.draw(st.binary(max_size=size - 8))
    cell = encode_clear(size, int(Flags.MORE), piece)
    assert len(cell) == size
    assert decode_clear(cell, size) == (int(Flags.MORE), piece)


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=3000), size=SIZES)
def test_decoding_arbitrary_bytes_raises_only_cell_error(blob: bytes, size: int) -> None:
    for decode in (lambda: decode_inner(blob), lambda: decode_clear(blob, size)):
        with contextlib.suppress(CellError):
            decode()


@settings(max_examples=300, deadline=None)
@given(size=SIZES, data=st.data())
def test_decoding_mutated_valid_cells_raises_only_cell_error(size: int, data: st.DataObject) -> None:
    # Near-valid input reaches the deeper checks that random bytes rarely get past.
    body = data.draw(st.binary(max_size=40))
    for cell in (bytearray(encode_inner(size, CellType.DATA, 1, body)),
                 bytearray(encode_clear(size, 1, body))):
        for _ in range(data.draw(st.integers(1, 4))):
            cell[data.draw(st.integers(0, 11))] = data.draw(st.integers(0, 255))
        with contextlib.suppress(CellError):
            ctype, flags, out = decode_inner(bytes(cell))
            assert isinstance(ctype, CellType) and len(out) <= size
        with contextlib.suppress(CellError):
            flags, out = decode_clear(bytes(cell), size)
            assert flags in (0, 1) and len(out) <= size - 8


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=5000), flags=st.integers(0, 3))
def test_reassembling_arbitrary_fragments_raises_only_cell_error(blob: bytes, flags: int) -> None:
    r = Reassembler(4096)
    with contextlib.suppress(CellError):
        out = r.feed(flags, blob)
        assert out is None or len(out) <= 4096


@settings(max_examples=150, deadline=None)
@given(size=st.sampled_from([256, 996]), aead_id=AEAD_IDS, data=st.data())
def test_any_single_bit_flip_is_rejected(size: int, aead_id: int, data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=inner_body_capacity(size)))
    bit = data.draw(st.integers(0, size * 8 - 1))
    tx, rx = _pair(aead_id)
    cell = bytearray(tx.seal(encode_inner(size, CellType.DATA, 0, body)))
    cell[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SessionError) as e:
        rx.open(bytes(cell))
    assert e.value.reason is CloseReason.TAMPERED


def test_every_single_bit_flip_of_one_cell_is_rejected() -> None:
    # Exhaustive for one 256-byte cell: all 2048 bit positions.
    tx, _ = _pair(1)
    good = tx.seal(encode_inner(256, CellType.DATA, 0, b"hello"))
    for bit in range(256 * 8):
        rx = Direction(1, b"k" * 32, b"test", 0.0)
        cell = bytearray(good)
        cell[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SessionError):
            rx.open(bytes(cell))


def test_data_padding_and_cover_cells_look_alike() -> None:
    tx, _ = _pair(1)
    cells = [tx.seal(encode_inner(996, t, 0, b"")) for t in (CellType.DATA, CellType.PADDING,
                                                              CellType.COVER)]
    assert {len(c) for c in cells} == {996}
    assert len(set(cells)) == 3  # each is fresh pseudo-random bytes under its own nonce
    assert not any(c.count(0) > 40 for c in cells)  # no clear zero padding shows through


def test_replayed_and_reordered_cells_are_rejected() -> None:
    tx, rx = _pair(2)
    c0, c1, c2 = (tx.seal(encode_inner(256, CellType.DATA, 0, bytes([i]))) for i in range(3))
    rx.open(c0)
    with pytest.raises(SessionError, match="tampered, replayed"):
        rx.open(c0)  # replay of cell 0 where cell 1 is expected
    _, rx2 = _pair(2)
    with pytest.raises(SessionError):
        rx2.open(c1)  # cell 1 before cell 0
    _, rx3 = _pair(2)
    rx3.open(c0)
    with pytest.raises(SessionError):
        rx3.open(c2)  # cell 1 dropped


def test_rekey_changes_keys_and_both_sides_follow() -> None:
    tx, rx = _pair(1)
    before = tx.seal(encode_inner(256, CellType.DATA, 0, b"x"))
    rx.open(before)
    tx.rekey(5.0)
    rx.rekey(5.0)
    assert tx.count == 0 and tx.generation == 1
    after = tx.seal(encode_inner(256, CellType.DATA, 0, b"x"))
    assert after != before
    assert decode_inner(rx.open(after))[2] == b"x"
    stale = Direction(1, b"k" * 32, b"test", 0.0)
    stale.count = 1
    with pytest.raises(SessionError):
        stale.open(after)  # the old key cannot open a cell of the new one


@pytest.mark.parametrize(
    ("plain", "message"),
    [
        (bytes([9, 0, 0, 0]) + bytes(236), "unknown cell type 9"),
        (bytes([1, 4, 0, 0]) + bytes(236), "unknown cell flags"),
        (bytes([1, 0, 0xFF, 0xFF]) + bytes(236), "overruns"),
        (bytes([1, 0, 0, 1]) + b"a" + bytes(234) + b"x", "padding is not zero"),
        (b"\x01", "shorter than its header"),
    ],
)
def test_inner_parse_errors_name_the_problem(plain: bytes, message: str) -> None:
    with pytest.raises(CellError, match=message):
        decode_inner(plain)


def test_clear_parse_errors_name_the_problem() -> None:
    good = encode_clear(256, 0, b"abc")
    cases = {
        b"XX" + good[2:]: "bad magic",
        good[:2] + (512).to_bytes(2, "big") + good[4:]: "512-byte cells",
        good[:4] + b"\x01" + good[5:]: "only HANDSHAKE",
        good[:5] + b"\x02" + good[6:]: "unknown flags",
        good[:6] + (300).to_bytes(2, "big") + good[8:]: "overruns",
        good[:-1] + b"\x01": "padding is not zero",
        good[:-1]: "expected 256",
    }
    for cell, message in cases.items():
        with pytest.raises(CellError, match=message):
            decode_clear(cell, 256)


@settings(max_examples=100, deadline=None)
@given(message=st.binary(max_size=6000), room=st.integers(1, 1000))
def test_fragments_reassemble(message: bytes, room: int) -> None:
    r = Reassembler(10_000)
    out = None
    pieces = list(fragment(message, room))
    assert all(len(p) <= room for _, p in pieces)
    assert [bool(f & Flags.MORE) for f, _ in pieces] == [True] * (len(pieces) - 1) + [False]
    for flags, piece in pieces:
        assert out is None
        out = r.feed(flags, piece)
    assert out == message


def test_compression_above_threshold_only_and_round_trip() -> None:
    text = b"the same words again and again " * 100
    flags, payload = prepare_message(text, compression_threshold=1024, max_message_size=10**6)
    assert flags == Flags.ZSTD and len(payload) < len(text)
    assert Reassembler(10**6).feed(flags, payload) == text
    small = b"x" * 1024
    assert prepare_message(small, 1024, 10**6) == (0, small)  # not above the threshold
    noise = os.urandom(4000)
    assert prepare_message(noise, 1024, 10**6)[0] == 0  # incompressible: sent as is


def test_size_limits() -> None:
    with pytest.raises(MessageTooLarge):
        prepare_message(b"x" * 2001, 10**6, 2000)
    r = Reassembler(2000)
    r.feed(int(Flags.MORE), b"x" * 1500)
    with pytest.raises(MessageTooLarge):
        r.feed(0, b"x" * 501)


def test_decompression_bomb_is_refused_before_expanding() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * 10_000_000)
    assert len(bomb) < 1000
    with pytest.raises(MessageTooLarge, match="would decompress to 10000000"):
        Reassembler(1_000_000).feed(int(Flags.ZSTD), bomb)
    # A frame that hides its size is refused too.
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    hidden = cctx.compress(b"\x00" * 5000)
    with pytest.raises(CellError, match="does not declare its size"):
        Reassembler(1_000_000).feed(int(Flags.ZSTD), hidden)


def test_truncated_compressed_message_is_refused() -> None:
    packed = zstandard.ZstdCompressor().compress(b"abc" * 1000)
    with pytest.raises(CellError):
        Reassembler(10**6).feed(int(Flags.ZSTD), packed[:-4])


def test_compression_flag_must_not_change_mid_message() -> None:
    r = Reassembler(10**6)
    r.feed(int(Flags.MORE | Flags.ZSTD), b"abc")
    with pytest.raises(CellError, match="compression flag changed"):
        r.feed(0, b"def")


def test_every_fragment_counts_and_empty_non_final_fragments_are_refused() -> None:
    r = Reassembler(10)
    r.feed(int(Flags.MORE), b"x" * 5)
    with pytest.raises(MessageTooLarge):
        r.feed(0, b"x" * 6)  # the last fragment counts too: 11 > 10
    r = Reassembler(10)
    r.feed(int(Flags.MORE), b"x" * 5)
    assert r.feed(0, b"x" * 5) == b"x" * 10
    r = Reassembler(10)
    with pytest.raises(CellError, match="empty fragment"):
        r.feed(int(Flags.MORE), b"")
    assert Reassembler(10).feed(0, b"") == b""  # an empty message is one empty final piece


def test_non_final_fragments_must_be_full_when_room_is_set() -> None:
    r = Reassembler(100, room=10)
    with pytest.raises(CellError, match="must fill"):
        r.feed(int(Flags.MORE), b"x" * 9)
    r = Reassembler(100, room=10)
    r.feed(int(Flags.MORE), b"x" * 10)
    assert r.feed(0, b"y" * 3) == b"x" * 10 + b"yyy"  # the last one may be short
