"""The record layer (docs/protocol.md §4): seals cells at send time, opens them, rekeys.

Pure code, and the one hot path. The session queues every message it wants
sent after the handshake in :attr:`RecordLayer.cells` (wire's
:class:`~aegis_hidden.wire.CellQueue`, which cuts a cell only as it is sealed);
nothing is sealed until :meth:`RecordLayer.seal_queued` is called (by a cell scheduler,
through the session), so a cover cell sealed in a slot and a data cell sealed
in the same slot look the same, and nonces are consumed in the order cells
leave. Handshake cells and the final CLOSE are sealed at once with
:meth:`RecordLayer.seal_now`, after everything sealed before them.

Cell layouts are :mod:`aegis_hidden.wire`'s. On the receiving side wire's
:class:`~aegis_hidden.wire.CellReader` opens each cell with this layer's key
and reads it in the same loop, and stops after a REKEY cell (this switches
keys, then lets it go on), after a CLOSE cell, or at a cell that does not open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag

from ..crypto import IV_SIZE
from ..wire import CLOSE_TYPE, REKEY_TYPE, CellQueue, CellReader, CellType, encode_inner
from ._aead import Direction
from ._errors import CloseReason, SessionError

__all__ = ["RecordLayer"]


class RecordLayer:
    """Both directions of one session: a queue of cells out, sealed bytes out,
    opened plaintexts in.

    Rekeying (§4): before a cell is sealed under a key that has sealed
    ``rekey_cells`` cells, or that is ``rekey_seconds`` old, a REKEY cell is
    sealed under it and the next key takes over. The age is checked once per
    :meth:`seal_queued` call, the count before every cell.
    """

    def __init__(self, cell_size: int, rekey_cells: int, rekey_seconds: float,
                 clock: Callable[[], float]) -> None:
        self._n = cell_size
        self._rekey_cells = rekey_cells
        self._rekey_seconds = rekey_seconds
        self._clock = clock
        self.tx: Direction | None = None
        self.rx: Direction | None = None
        #: The messages' cells waiting to be sealed, in order.
        self.cells = CellQueue(cell_size)
        self._out: list[bytes] = []
        self._rekey_plain = encode_inner(cell_size, CellType.REKEY, 0, b"")
        self._cover_plain = encode_inner(cell_size, CellType.COVER, 0, b"")

    def install(self, tx: Direction, rx: Direction) -> None:
        self.tx, self.rx = tx, rx

    def forget(self) -> None:
        """The session is over: drop the keys and whatever is still queued."""
        self.tx = self.rx = None
        self.cells.clear()

    # -- sending ------------------------------------------------------------
    def seal_now(self, plain: bytes) -> None:
        """Seal one cell at once (handshake, CLOSE): after everything sealed before it,
        with no rekey check (a CLOSE never follows a REKEY it caused)."""
        tx = self.tx
        assert tx is not None
        self._out.append(tx.seal(plain))

    def seal_queued(self, count: int | None = None, cover: int = 0) -> int:
        """Seal up to ``count`` queued cells (None: all), then ``cover`` COVER cells.

        Returns how many queued cells were sealed. A REKEY cell due before one
        of them is sealed first; when ``count`` is given it takes one of the
        slots (a cover slot if any, else a queued cell's, which then waits for
        the next call), so a call never seals more than ``count + cover`` cells.
        """
        cells = self.cells
        queued = cells.queued
        reals = queued if count is None else max(0, min(count, queued))
        covers = max(0, cover)
        if not reals and not covers:
            return 0
        tx = self.tx
        assert tx is not None
        out = self._out
        limit = self._rekey_cells
        due = self._clock() >= tx.since + self._rekey_seconds
        sent = 0
        while reals or covers:
            n = tx.count
            if due or n >= limit:
                due = False
                out.append(tx.seal(self._rekey_plain))
                tx.rekey(self._clock())
                if count is not None:
                    if covers:
                        covers -= 1
                    else:
                        reals -= 1
                continue
            # A run of cells under one key, with key, IV and counter in locals.
            encrypt, iv = tx.encrypt, tx.iv
            run = min(reals, limit - n)
            if run:
                cells.seal(run, encrypt, iv, n, IV_SIZE, out)
                tx.count = n + run
                reals -= run
                sent += run
                continue
            run = min(covers, limit - n)
            plain = self._cover_plain
            out.extend([encrypt((iv ^ k).to_bytes(IV_SIZE), plain, None)
                        for k in range(n, n + run)])
            tx.count = n + run
            covers -= run
        return sent

    def take(self) -> bytes:
        """Everything sealed so far, in order, and forget it."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    # -- receiving ----------------------------------------------------------
    def open_cells(self, buf: bytes, pos: int, reader: CellReader, out: list[Any],
                   wrap: Callable[[bytes], Any]) -> tuple[int, bytes | None, SessionError | None]:
        """Open and read the whole cells of ``buf`` from ``pos`` with the traffic key.

        ``reader`` (wire's framing) opens each cell with this key and reads it
        in one loop, appending ``wrap(message)`` to ``out``; this switches keys
        after a REKEY cell. Returns ``(end, close, error)``: where reading
        stopped, the body of the CLOSE cell that stopped it, if any, and the
        authentication failure that stopped it (to be raised once the messages
        before it are handled), if any.
        """
        rx = self.rx
        assert rx is not None
        view = memoryview(buf)  # cells are opened in place, not copied out first
        stop = pos + (len(buf) - pos) // self._n * self._n
        while pos < stop:
            pos, count, stopped, close = reader.open_read(
                rx.decrypt, InvalidTag, rx.iv, rx.count, IV_SIZE, view, pos, stop, out, wrap)
            rx.count = count
            if stopped == REKEY_TYPE:
                rx.rekey(self._clock())
            elif stopped == CLOSE_TYPE:
                return pos, close, None
            elif stopped:
                rx.count = count + 1
                return pos + self._n, None, SessionError(
                    CloseReason.TAMPERED,
                    f"cell {count} (key generation {rx.generation}) failed authentication: "
                    "tampered, replayed, reordered or dropped")
        return pos, None, None
