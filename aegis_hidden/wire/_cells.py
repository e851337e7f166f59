"""Fixed-size cells: layouts, fragmentation, reassembly and compression.

Pure code (no crypto, no I/O). docs/protocol.md §3 is the specification.

Two cell layouts exist, both exactly ``cell_size`` bytes on the wire:

* a *clear* cell, only for the two hello messages of the handshake::

      magic "AH" | u16 cell_size | u8 type (HANDSHAKE) | u8 flags | u16 length
      | fragment (length bytes) | zero bytes up to cell_size

* a *sealed* cell, everything else: ``AEAD(inner) | 16-byte tag``, where the
  inner plaintext of ``cell_size - 16`` bytes is::

      u8 type | u8 flags | u16 length | body (length bytes) | zero bytes

  Sealing is the session layer's job (:mod:`aegis_hidden.session`); this
  module builds and parses the inner plaintext.

Every parse is strict: wrong magic, size, type, flags, a length that does not
fit, or a non-zero padding byte raises :class:`CellError` and nothing else.

This module is the one definition of the layouts. :func:`encode_inner`,
:func:`fragment` and :class:`Reassembler` are the reference codec;
:class:`CellQueue` (sending) and :meth:`CellReader.open_read` (receiving) are the fast
paths the session runs, built on the same constants, and a property test
(tests/unit/test_cell_paths.py) checks that both agree byte for byte.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import zstandard

__all__ = [
    "CLEAR_HEADER_SIZE",
    "CLOSE_TYPE",
    "DATA_TYPE",
    "INNER_HEADER",
    "INNER_HEADER_SIZE",
    "MAGIC",
    "MAX_CELL_SIZE",
    "MIN_CELL_SIZE",
    "MORE_FLAG",
    "REKEY_TYPE",
    "TAG_SIZE",
    "ZSTD_FLAG",
    "CellError",
    "CellQueue",
    "CellReader",
    "CellType",
    "Encrypt",
    "Flags",
    "MessageTooLarge",
    "Reassembler",
    "UnexpectedCell",
    "clear_body_capacity",
    "data_cells",
    "decode_clear",
    "decode_inner",
    "encode_clear",
    "encode_inner",
    "fragment",
    "inner_body_capacity",
    "prepare_message",
]

MAGIC = b"AH"
TAG_SIZE = 16
MIN_CELL_SIZE = 256
MAX_CELL_SIZE = 65535
CLEAR_HEADER_SIZE = 8
INNER_HEADER_SIZE = 4
_CLEAR = struct.Struct(">2sHBBH")
#: The header of a sealed cell's plaintext: ``u8 type | u8 flags | u16 length``.
INNER_HEADER = struct.Struct(">BBH")
_INNER = INNER_HEADER


class CellError(ValueError):
    """A cell (or a run of cells) that does not parse; the message says what is wrong."""


class MessageTooLarge(CellError):
    """A message over the configured ``performance.max_message_size``."""


class UnexpectedCell(CellError):
    """A well-formed cell the protocol forbids where it came (a control cell with
    flags or a body, a HANDSHAKE cell after the handshake): a protocol error."""


class CellType(enum.IntEnum):
    DATA = 1        # a fragment of an application message
    PADDING = 2     # filler (batching); discarded by the receiver
    COVER = 3       # cover traffic; discarded by the receiver
    CLOSE = 4       # a Close message: the sender ends the session
    REKEY = 5       # the sender switches to its next traffic key after this cell
    HANDSHAKE = 6   # a fragment of a handshake message


class Flags(enum.IntFlag):
    NONE = 0
    MORE = 1        # more fragments of this message follow
    ZSTD = 2        # the message is zstd-compressed (set on every fragment of it)


# Plain ints on the hot paths (IntFlag / IntEnum arithmetic is slow).
DATA_TYPE = int(CellType.DATA)
CLOSE_TYPE = int(CellType.CLOSE)
REKEY_TYPE = int(CellType.REKEY)
MORE_FLAG = int(Flags.MORE)
ZSTD_FLAG = int(Flags.ZSTD)
_MORE = MORE_FLAG
_ZSTD = ZSTD_FLAG
_ALL_FLAGS = _MORE | _ZSTD
_TYPE_OF: tuple[CellType | None, ...] = tuple(
    CellType(v) if v in {int(t) for t in CellType} else None for v in range(256))


def _check_size(cell_size: int) -> None:
    if not MIN_CELL_SIZE <= cell_size <= MAX_CELL_SIZE:
        raise ValueError(f"cell size must be from {MIN_CELL_SIZE} to {MAX_CELL_SIZE}, got {cell_size}")


def clear_body_capacity(cell_size: int) -> int:
    return cell_size - CLEAR_HEADER_SIZE


def inner_body_capacity(cell_size: int) -> int:
    """Payload bytes one sealed cell carries."""
    return cell_size - TAG_SIZE - INNER_HEADER_SIZE


def encode_clear(cell_size: int, flags: int, fragment_: bytes) -> bytes:
    _check_size(cell_size)
    n = len(fragment_)
    if n > cell_size - CLEAR_HEADER_SIZE:
        raise ValueError(f"fragment of {n} bytes does not fit in a {cell_size}-byte cell")
    header = _CLEAR.pack(MAGIC, cell_size, int(CellType.HANDSHAKE), flags, n)
    return header + fragment_ + bytes(cell_size - CLEAR_HEADER_SIZE - n)


def decode_clear(cell: bytes, cell_size: int) -> tuple[int, bytes]:
    """``(flags, fragment)`` of a clear handshake cell."""
    if len(cell) != cell_size:
        raise CellError(f"clear cell is {len(cell)} bytes, expected {cell_size}")
    magic, size, ctype, flags, n = _CLEAR.unpack_from(cell)
    if magic != MAGIC:
        raise CellError("not an aegis-hidden handshake cell (bad magic)")
    if size != cell_size:
        raise CellError(f"peer uses {size}-byte cells, this node {cell_size}-byte cells")
    if ctype != CellType.HANDSHAKE:
        raise CellError(f"clear cell has type {ctype}, only HANDSHAKE may be in clear")
    if flags & ~_MORE:
        raise CellError(f"clear cell has unknown flags {flags:#x}")
    end = CLEAR_HEADER_SIZE + n
    if end > cell_size:
        raise CellError(f"clear cell length {n} overruns the cell")
    if cell.count(0, end) != cell_size - end:
        raise CellError("clear cell padding is not zero")
    return flags, bytes(cell[CLEAR_HEADER_SIZE:end])


def encode_inner(cell_size: int, ctype: int, flags: int, body: bytes) -> bytes:
    """The plaintext of a sealed cell (``cell_size - 16`` bytes)."""
    n = len(body)
    room = cell_size - TAG_SIZE - INNER_HEADER_SIZE
    if n > room:
        raise ValueError(f"body of {n} bytes does not fit in a {cell_size}-byte cell")
    return _INNER.pack(ctype, flags, n) + body + bytes(room - n)


def decode_inner(plain: bytes | memoryview) -> tuple[CellType, int, bytes]:
    """``(type, flags, body)`` of a sealed cell's plaintext."""
    if len(plain) < INNER_HEADER_SIZE:
        raise CellError(f"cell plaintext of {len(plain)} bytes is shorter than its header")
    ctype, flags, n = _INNER.unpack_from(plain)
    kind = _TYPE_OF[ctype]
    if kind is None:
        raise CellError(f"unknown cell type {ctype}")
    if flags & ~_ALL_FLAGS:
        raise CellError(f"unknown cell flags {flags:#x}")
    end = INNER_HEADER_SIZE + n
    size = len(plain)
    if end > size:
        raise CellError(f"cell length {n} overruns the cell")
    if bytes(plain[end:]).count(0) != size - end:
        raise CellError("cell padding is not zero")
    return kind, flags, bytes(plain[INNER_HEADER_SIZE:end])


def fragment(data: bytes, room: int, flags: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(flags, piece)`` pieces of at most ``room`` bytes; MORE on all but the last.

    An empty message is one empty piece.
    """
    if room <= 0:
        raise ValueError("no room for a fragment")
    n = len(data)
    if n == 0:
        yield flags, b""
        return
    if n <= room:
        yield flags, bytes(data)
        return
    view = memoryview(data)
    for start in range(0, n, room):
        end = start + room
        yield (flags | _MORE) if end < n else flags, bytes(view[start:end])


def prepare_message(data: bytes, compression_threshold: int, max_message_size: int,
                    level: int = 3) -> tuple[int, bytes]:
    """``(flags, payload)``: zstd-compressed when larger than the threshold and it helps.

    Compression comes before fragmentation and padding, so padding hides the
    compressed size up to a cell.
    """
    if len(data) > max_message_size:
        raise MessageTooLarge(
            f"message of {len(data)} bytes is over performance.max_message_size "
            f"({max_message_size})")
    if len(data) > compression_threshold:
        packed = zstandard.ZstdCompressor(level=level).compress(data)
        if len(packed) < len(data):
            return int(Flags.ZSTD), packed
    return 0, data


class Reassembler:
    """Joins fragments back into messages, with a size limit.

    ``limit`` bounds both the bytes of all fragments of a message, the last one
    included, and (for compressed messages) the decompressed size; anything over
    it raises :class:`MessageTooLarge`. A fragment with ``MORE`` set and no bytes
    raises :class:`CellError` (it would let a peer send cells without end).
    """

    def __init__(self, limit: int, room: int | None = None) -> None:
        self.limit = limit
        #: When set, every fragment but the last must be exactly ``room`` bytes
        #: (a full cell: §3.2, §3.3); None accepts any non-empty non-final size.
        self.room = room
        self._parts: list[bytes] = []
        self._size = 0
        self._flags: int | None = None

    @property
    def pending(self) -> bool:
        return self._flags is not None

    def feed(self, flags: int, piece: bytes) -> bytes | None:
        """Add one fragment; returns the whole message after its last fragment."""
        zstd = flags & _ZSTD
        if self._flags is not None and (self._flags & _ZSTD) != zstd:
            raise CellError("compression flag changed in the middle of a message")
        more = flags & _MORE
        if more and not piece:
            # Every fragment but the last carries at least one byte, so a run of
            # MORE cells always makes progress towards the size limit.
            raise CellError("empty fragment with MORE set")
        if more and self.room is not None and len(piece) != self.room:
            raise CellError(f"non-final fragment of {len(piece)} bytes; it must fill its cell "
                            f"({self.room} bytes)")
        self._flags = flags
        # Every fragment counts, the last one too (§3.3).
        self._size += len(piece)
        if self._size > self.limit:
            raise MessageTooLarge(f"message is over the {self.limit}-byte limit")
        self._parts.append(piece)
        if more:
            return None
        data = b"".join(self._parts)
        self._parts, self._size, self._flags = [], 0, None
        if zstd:
            return self._decompress(data)
        return data

    def _decompress(self, data: bytes) -> bytes:
        # The sender always records the content size in the frame; it must be
        # there, within the limit, and match what comes out. Streamed with a cap,
        # so a small bomb never expands past the limit in memory.
        try:
            declared = zstandard.frame_content_size(data)
        except zstandard.ZstdError as e:
            raise CellError(f"compressed message has no valid zstd frame header: {e}") from None
        if declared < 0:
            raise CellError("compressed message does not declare its size")
        if declared > self.limit:
            raise MessageTooLarge(f"message would decompress to {declared} bytes, over the "
                                  f"{self.limit}-byte limit")
        parts: list[bytes] = []
        size = 0
        try:
            with zstandard.ZstdDecompressor().stream_reader(data) as reader:
                while True:
                    chunk = reader.read(min(65536, self.limit + 1 - size))
                    if not chunk:
                        break
                    parts.append(chunk)
                    size += len(chunk)
                    if size > self.limit:
                        raise MessageTooLarge(
                            f"message decompresses to over the {self.limit}-byte limit")
        except zstandard.ZstdError as e:
            raise CellError(f"compressed message does not decompress: {e}") from None
        if size != declared:
            raise CellError(f"compressed message gave {size} bytes, its frame declares {declared}")
        return b"".join(parts)


def data_cells(cell_size: int, flags: int, payload: bytes) -> list[bytes]:
    """The plaintexts of the DATA cells that carry one prepared message (§3.3):
    what a :class:`CellQueue` cuts, without sealing."""
    queue = CellQueue(cell_size)
    queue.push(flags, payload)
    out: list[bytes] = []
    queue.seal(queue.queued, _as_is, 0, 0, 8, out)
    return out


def _as_is(nonce: bytes, plain: bytes, ad: None) -> bytes:
    return plain


#: Seals one cell's plaintext: ``encrypt(nonce, plaintext, None)`` (an AEAD's encrypt).
Encrypt = Callable[[bytes, bytes, None], bytes]


class CellQueue:
    """DATA cells waiting to be sealed, in order, each cut from its message only
    when it is sealed (§3.3): a long message never waits as a pile of plaintext
    cells, and one loop builds and seals each cell.

    Sealing is the caller's (the record layer's): :meth:`seal` takes its AEAD,
    nonce base and counter. ``flags`` of :meth:`push` is what
    :func:`prepare_message` returned (0 or ZSTD); MORE is set on every cell of
    a message but the last, and every cell but the last is full. The same bytes
    as ``encode_inner`` over :func:`fragment`, without the enum arithmetic.

    Two priority classes: a message pushed with ``bulk=True`` (stream data)
    waits in a second queue that is sealed only when the first is empty. The
    cells of one message stay together on the wire (the reader reassembles a
    message from consecutive cells), so a bulk message that has begun is
    finished first: a message pushed behind bulk data waits at most the rest of
    one bulk message (:attr:`bulk_started`), however much bulk data is queued.
    """

    def __init__(self, cell_size: int) -> None:
        _check_size(cell_size)
        self._room = inner_body_capacity(cell_size)
        # Runs of one-cell messages (their plaintexts) and longer messages being cut.
        self._q: deque[deque[bytes] | _Cutting] = deque()
        self._bulk: deque[deque[bytes] | _Cutting] = deque()
        #: How many cells are waiting (both classes).
        self.queued = 0
        #: How many of them are bulk cells.
        self.bulk_queued = 0
        #: A bulk message is part-sealed: its remaining cells go before anything else.
        self.bulk_started = False

    def push(self, flags: int, payload: bytes, *, bulk: bool = False) -> None:
        """Queue the cells of one prepared message (``bulk``: in the low class)."""
        room = self._room
        size = len(payload)
        q = self._bulk if bulk else self._q
        if size <= room:
            plain = _INNER.pack(DATA_TYPE, flags, size) + payload + bytes(room - size)
            if q and isinstance(last := q[-1], deque):
                last.append(plain)
            else:
                q.append(deque((plain,)))
            self.queued += 1
            if bulk:
                self.bulk_queued += 1
            return
        if type(payload) is not bytes:
            payload = bytes(payload)  # cut later: a caller's buffer may change meanwhile
        cutting = _Cutting(room, flags, payload)
        q.append(cutting)
        self.queued += cutting.left
        if bulk:
            self.bulk_queued += cutting.left

    def seal(self, k: int, encrypt: Encrypt, iv: int, count: int, nonce_size: int,
             out: list[bytes]) -> None:
        """Seal the next ``k`` cells (at most :attr:`queued`) in order, appending them
        to ``out``: the j-th with ``encrypt((iv ^ (count + j)).to_bytes(nonce_size),
        plaintext, None)``, the caller's key and nonce rule (docs/protocol.md §4)."""
        if not 0 <= k <= self.queued:
            raise ValueError(f"cannot seal {k} cells, {self.queued} queued")
        self.queued -= k
        bulk = self._bulk
        while k:
            if bulk and (self.bulk_started or not self._q):
                run = bulk[0]
                if isinstance(run, _Cutting):
                    # At most the rest of this message: then the normal class again.
                    m = _seal_run(bulk, min(k, run.left), encrypt, iv, count, nonce_size, out)
                    self.bulk_started = bool(bulk) and bulk[0] is run
                else:
                    m = _seal_run(bulk, k, encrypt, iv, count, nonce_size, out)
                self.bulk_queued -= m
            else:
                m = _seal_run(self._q, k, encrypt, iv, count, nonce_size, out)
            count += m
            k -= m

    def clear(self) -> None:
        self._q.clear()
        self._bulk.clear()
        self.queued = self.bulk_queued = 0
        self.bulk_started = False


def _seal_run(q: deque[deque[bytes] | _Cutting], k: int, encrypt: Encrypt, iv: int,
              count: int, nonce_size: int, out: list[bytes]) -> int:
    """Seal up to ``k`` cells from the head run of ``q``; returns how many."""
    run = q[0]
    if isinstance(run, deque):
        m = len(run)
        if k >= m:
            out.extend([encrypt((iv ^ c).to_bytes(nonce_size), plain, None)
                        for c, plain in enumerate(run, count)])
            q.popleft()
        else:
            m = k
            popleft = run.popleft
            out.extend([encrypt((iv ^ c).to_bytes(nonce_size), popleft(), None)
                        for c in range(count, count + m)])
        return m
    m = run.seal(k, encrypt, iv, count, nonce_size, out)
    if not run.left:
        q.popleft()
    return m


class _Cutting:
    """One message of more than one cell, cut as it is sealed."""

    __slots__ = ("_at", "_full", "_last", "_room", "_tail", "_view", "left")

    def __init__(self, room: int, flags: int, payload: bytes) -> None:
        size = len(payload)
        view = memoryview(payload)
        last = ((size - 1) // room) * room  # where the last cell's piece starts
        k = size - last
        self._view = view
        self._room = room
        self._full = _INNER.pack(DATA_TYPE, flags | _MORE, room)
        self._last = last
        self._tail = b"".join((_INNER.pack(DATA_TYPE, flags, k), view[last:], bytes(room - k)))
        self._at = 0
        #: Cells not sealed yet.
        self.left = last // room + 1

    def seal(self, k: int, encrypt: Encrypt, iv: int, count: int, nonce_size: int,
             out: list[bytes]) -> int:
        """Seal up to ``k`` more cells; returns how many."""
        at, room, view, full = self._at, self._room, self._view, self._full
        stop = min(self._last, at + k * room)
        out.extend([encrypt((iv ^ c).to_bytes(nonce_size), full + view[s:s + room], None)
                    for c, s in enumerate(range(at, stop, room), count)])
        m = (stop - at) // room
        if m < k and self.left == m + 1:
            out.append(encrypt((iv ^ (count + m)).to_bytes(nonce_size), self._tail, None))
            m += 1
        self._at = stop
        self.left -= m
        return m


class CellReader:
    """Reads the sealed cells of an established session: whole messages out (§3.3).

    :meth:`open_read` opens each cell with the caller's AEAD and reads it in
    the same loop (the per-cell hot path of the receiving side): uncompressed
    DATA cells (single-cell messages and full-cell fragments) are handled
    inline; anything else goes through :func:`decode_inner` and a
    :class:`Reassembler`, with the same checks. Keys are the caller's (the
    record layer's): this only stops after a REKEY cell so it can switch, and
    checks that control cells carry no flags and (but CLOSE) no body.
    """

    def __init__(self, cell_size: int, limit: int) -> None:
        _check_size(cell_size)
        self.limit = limit
        self._n = cell_size
        self._cap = cell_size - TAG_SIZE
        # The header of a full uncompressed fragment with more to come: the bulk
        # of a long message, recognised with one comparison.
        self._full_more = _INNER.pack(DATA_TYPE, _MORE, inner_body_capacity(cell_size))
        self._data = Reassembler(limit, room=inner_body_capacity(cell_size))
        self._parts: list[bytes] = []  # fragments of an uncompressed message
        self._size = 0
        #: COVER and PADDING cells read so far.
        self.cover_cells = 0

    def open_read(self, decrypt: Callable[[bytes, memoryview, None], bytes],
                  failure: type[Exception], iv: int, count: int, nonce_size: int,
                  view: memoryview, pos: int, stop: int, out: list[Any],
                  wrap: Callable[[bytes], Any]) -> tuple[int, int, int, bytes | None]:
        """Open and read the whole cells of ``view[pos:stop]`` in order, appending
        ``wrap(message)`` to ``out`` for each whole message.

        Cell number ``k`` (from ``count``) is opened with
        ``decrypt((iv ^ k).to_bytes(nonce_size), cell, None)``: the caller's key
        and nonce rule (docs/protocol.md §4), passed in so that one loop both
        opens and reads. Returns ``(pos, count, stopped, close)``: where reading
        stopped, the next cell number, and why: ``0`` when every cell was read,
        ``REKEY_TYPE`` after a REKEY cell (the caller switches keys and calls
        again from ``pos``), ``CLOSE_TYPE`` after a CLOSE cell (``close`` is its
        body; cells after it are not opened), or ``-1`` when the cell at ``pos``,
        number ``count``, raised ``failure`` (it is not read). Raises
        :class:`CellError` (or its subclasses :class:`MessageTooLarge` and
        :class:`UnexpectedCell`) for a cell that opened but does not parse.
        """
        n = self._n
        cap = self._cap
        unpack = _INNER.unpack_from
        emit = out.append
        parts = self._parts
        size = self._size
        limit = self.limit
        reassembling = self._data.pending
        data_type, more, h = DATA_TYPE, _MORE, INNER_HEADER_SIZE
        full_more, room = self._full_more, cap - h
        try:
            for start in range(pos, stop, n):
                try:
                    plain = decrypt((iv ^ count).to_bytes(nonce_size), view[start:start + n], None)
                except failure:
                    return start, count, -1, None
                count += 1
                if plain[1] == more and plain.startswith(full_more) and not reassembling:
                    # A full fragment, more to come: the checks below, for that
                    # header. (The flags byte first: a one-cell message is not
                    # slowed by the comparison.)
                    size += room
                    if size > limit:
                        raise MessageTooLarge(f"message is over the {limit}-byte limit")
                    parts.append(plain[h:])
                    continue
                ctype, flags, length = unpack(plain)
                end = length + h
                if (ctype == data_type and flags | more == more and end <= cap and not reassembling
                        and (end == cap or plain.count(0, end) == cap - end)):
                    # The checks of Reassembler.feed, in its order. Every fragment
                    # counts towards the limit, the last one too (§3.3).
                    if flags:
                        if end != cap:
                            raise CellError("empty fragment with MORE set" if not length else
                                            f"non-final fragment of {length} bytes; it must fill "
                                            f"its cell ({cap - h} bytes)")
                        size += length
                        if size > limit:
                            raise MessageTooLarge(f"message is over the {limit}-byte limit")
                        parts.append(plain[h:end])
                        continue
                    size += length
                    if size > limit:
                        raise MessageTooLarge(f"message is over the {limit}-byte limit")
                    if parts:
                        parts.append(plain[h:end])
                        emit(wrap(b"".join(parts)))
                        parts.clear()
                    else:
                        emit(wrap(plain[h:end]))
                    size = 0
                    continue
                if parts and ctype == data_type:
                    decode_inner(plain)  # a malformed cell is reported as such first
                    raise CellError("compression flag changed in the middle of a message")
                close = self._other(plain, out, wrap)
                if close is not None:
                    return start + n, count, CLOSE_TYPE, close
                if ctype == REKEY_TYPE:
                    return start + n, count, REKEY_TYPE, None
                reassembling = self._data.pending
        finally:
            self._size = size
        return stop, count, 0, None

    def _other(self, plain: bytes, out: list[Any], wrap: Callable[[bytes], Any]) -> bytes | None:
        kind, flags, body = decode_inner(plain)
        if kind is not CellType.DATA and flags:
            # Control cells carry no flags (§3.3); a CLOSE never spans cells.
            raise UnexpectedCell(f"{kind.name} cell with flags {flags:#x}")
        if kind in (CellType.REKEY, CellType.PADDING, CellType.COVER) and body:
            raise UnexpectedCell(f"{kind.name} cell with a body")
        if kind is CellType.DATA:
            msg = self._data.feed(flags, body)
            if msg is not None:
                out.append(wrap(msg))
        elif kind is CellType.CLOSE:
            return body
        elif kind is CellType.HANDSHAKE:
            raise UnexpectedCell("handshake cell after the handshake")
        elif kind is not CellType.REKEY:
            self.cover_cells += 1  # PADDING and COVER: dropped
        # REKEY: the record layer switched keys.
        return None
