"""What the node remembers about its peers' identities, across restarts.

* :class:`PinStore`: the ML-DSA-65 public key of each peer, pinned on the first
  verified contact (trust on first use). Sessions are sans-I/O and the
  handshake cannot wait for SQLite, so lookups are served from an in-memory
  mirror loaded at start; a new pin is in the mirror at once and written
  through to the ``mldsa_pins`` table.
* :class:`RecordTable`: the ``records`` table behind the node's shared
  :class:`~aegis_hidden.identity.RecordCache`: the highest record seen per
  onion, and revocations, which are never replaced nor deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ._db import Database

REVOCATION_KIND = 2  # RecordKind.REVOCATION: a row of this kind is permanent


class PinStore:
    """Pinned ML-DSA-65 public keys by onion address."""

    log = Logger()

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now
        self._pins: dict[str, bytes] = {}

    async def load(self) -> None:
        rows = await self._db.run(
            lambda c: c.execute("SELECT onion, mldsa_public FROM mldsa_pins").fetchall())
        self._pins = {str(onion): bytes(pub) for onion, pub in rows}

    def get(self, onion: str) -> bytes | None:
        """The pinned key of ``onion`` (None: never met): the sessions' ``mldsa_pin``."""
        return self._pins.get(onion.lower())

    def __len__(self) -> int:
        return len(self._pins)

    def pin(self, onion: str, mldsa_public: bytes) -> Deferred[None]:
        """Pin (or re-pin, after a verified rotation) ``onion``'s key; memory first."""
        onion = onion.lower()
        mldsa_public = bytes(mldsa_public)
        if not mldsa_public:
            raise ValueError("refusing to pin an empty ML-DSA key")
        self._pins[onion] = mldsa_public
        now = self._now()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO mldsa_pins (onion, mldsa_public, first_seen, updated) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (onion) DO UPDATE SET "
                "mldsa_public = excluded.mldsa_public, updated = excluded.updated",
                (onion, mldsa_public, now, now))

        d = self._db.run(write)
        d.addErrback(lambda f: self.log.failure("storing the ML-DSA pin of {onion} failed",
                                                f, onion=onion))
        return d


    def unpin(self, onion: str) -> Deferred[None]:
        """Forget ``onion``'s key (the operator removed the peer): the next contact is a
        first contact again."""
        onion = onion.lower()
        self._pins.pop(onion, None)

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM mldsa_pins WHERE onion = ?", (onion,))

        d = self._db.run(delete)
        d.addErrback(lambda f: self.log.failure("removing the ML-DSA pin of {onion} failed",
                                                f, onion=onion))
        return d


class RecordTable:
    """The records the node's RecordCache accepted, as raw signed bytes."""

    log = Logger()

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now

    async def load(self) -> list[bytes]:
        """Every stored record (revocations included), to feed ``RecordCache.load``."""
        rows = await self._db.run(lambda c: c.execute("SELECT data FROM records").fetchall())
        return [bytes(data) for (data,) in rows]

    def save(self, onion: str, kind: int, sequence: int, data: bytes) -> Deferred[None]:
        """Keep ``data`` unless a revocation or a higher sequence is already stored."""
        row = (onion.lower(), int(kind), int(sequence), bytes(data), self._now())

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO records (onion, kind, sequence, data, stored) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (onion) DO UPDATE SET kind = excluded.kind, "
                "sequence = excluded.sequence, data = excluded.data, stored = excluded.stored "
                "WHERE records.kind != 2 AND ("  # 2: REVOCATION_KIND, kept for ever
                "excluded.kind = 2 OR excluded.sequence > records.sequence)",
                row)

        d = self._db.run(write)
        d.addErrback(lambda f: self.log.failure("storing the record of {onion} failed",
                                                f, onion=onion))
        return d
