"""The routing table and the records, kept in the node's SQLite database.

Takes the node's database object (anything with ``run(fn) -> Deferred``, the
public API of :mod:`aegis_hidden.peers`; it may be encrypted underneath) and
uses only that. Tables of its own, created if missing: ``dht_contacts``
(one row per contact: key, optional I2P name, whether it was in a bucket or
only a replacement, its order), ``dht_siblings`` (S/Kademlia's sibling list,
closest first: it also holds neighbours whose bucket had no room, which neither
the buckets nor the bounded replacement caches keep), ``dht_records`` (the
signed record bytes and when it is next republished) and ``dht_mail`` (sealed
letters held for other nodes' mailboxes, with their expiry). A database
written before a table existed gets it on :meth:`DhtPersistence.open` (``CREATE
TABLE IF NOT EXISTS``; an empty sibling table loads as no siblings). Loading
re-checks every record (signature, expiry) and drops what no longer verifies:
a record on disk is trusted no more than one from the wire.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..wire import dht_pb2
from ._ids import Contact
from ._mailbox import ENVELOPE_SIZES, MailboxStore
from ._messages import DhtMessageError, _record, _record_pb
from ._records import DhtRecordError, RecordStore, SignedRecord, verify
from ._table import RoutingTable

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS dht_contacts (
    ed25519_public BLOB PRIMARY KEY,
    i2p            TEXT NOT NULL,
    replacement    INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    nonce          INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dht_siblings (
    ed25519_public BLOB PRIMARY KEY,
    i2p            TEXT NOT NULL,
    nonce          INTEGER NOT NULL,
    position       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dht_records (
    record_key   BLOB PRIMARY KEY,
    data         BLOB NOT NULL,
    expires      INTEGER NOT NULL,
    republish_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dht_mail (
    mailbox_key BLOB NOT NULL,
    envelope    BLOB NOT NULL,
    expires     REAL NOT NULL
);
"""


class Database(Protocol):
    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]: ...


def _encode_record(record: SignedRecord) -> bytes:
    return _record_pb(record).SerializeToString()


class DhtPersistence:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._opened = False

    async def open(self) -> None:
        """Create the tables if missing (once; later calls return at once)."""
        if self._opened:
            return

        def create(conn: sqlite3.Connection) -> None:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(dht_contacts)")}
            if "nonce" not in columns:  # a table written before contacts had a nonce
                conn.execute("ALTER TABLE dht_contacts ADD COLUMN nonce INTEGER NOT NULL "
                             "DEFAULT 0")

        await self._db.run(create)
        self._opened = True

    async def save_table(self, table: RoutingTable) -> int:
        """Replace the stored contacts with ``table``'s (buckets, then replacements)
        and the stored sibling list with ``table.siblings()``; how many contact rows."""
        rows: list[tuple[bytes, str, int, int, int]] = []
        for _, bucket in sorted(table.buckets.items()):
            rows += [(c.ed25519_public, c.i2p, 0, len(rows), c.nonce) for c in bucket.contacts]
            rows += [(c.ed25519_public, c.i2p, 1, len(rows), c.nonce)
                     for c in bucket.replacements]
        siblings = [(c.ed25519_public, c.i2p, c.nonce, i)
                    for i, c in enumerate(table.siblings())]

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM dht_contacts")
            conn.executemany("INSERT OR REPLACE INTO dht_contacts (ed25519_public, i2p, "
                             "replacement, position, nonce) VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("DELETE FROM dht_siblings")
            conn.executemany("INSERT OR REPLACE INTO dht_siblings (ed25519_public, i2p, "
                             "nonce, position) VALUES (?, ?, ?, ?)", siblings)
            return len(rows)

        return await self._db.run(write)

    async def load_table(self, table: RoutingTable, now: float) -> int:
        """Put the stored contacts and siblings back into ``table``; how many contact
        rows were usable.

        Order matters: the bucket contacts first, then the siblings no bucket
        holds (their buckets are full by then, so they queue as replacements and
        stay in the sibling list), then the stored replacements, freshest last,
        so that those end up as the replacement caches were when saved.
        """
        def read(conn: sqlite3.Connection
                 ) -> tuple[list[tuple[bytes, str, int, int]], list[tuple[bytes, str, int]]]:
            return (list(conn.execute("SELECT ed25519_public, i2p, replacement, nonce FROM "
                                      "dht_contacts ORDER BY position")),
                    list(conn.execute("SELECT ed25519_public, i2p, nonce FROM dht_siblings "
                                      "ORDER BY position")))

        rows, sibling_rows = await self._db.run(read)
        contacts: list[Contact] = []
        replacements: list[Contact] = []
        for key, i2p, replacement, nonce in rows:
            try:
                c = Contact(bytes(key), str(i2p), int(nonce))
            except ValueError:
                continue  # a damaged row: the next refresh finds better contacts
            (replacements if replacement else contacts).append(c)
        siblings: list[Contact] = []
        for key, i2p, nonce in sibling_rows:
            try:
                siblings.append(Contact(bytes(key), str(i2p), int(nonce)))
            except ValueError:
                continue  # as above: lookups near the own id find it again
        table.load(contacts, now)
        table.load([c for c in siblings if c not in table], now)
        table.load(replacements, now)  # buckets full by now: they queue as replacements
        return len(contacts) + len(replacements)

    async def save_record(self, store: RecordStore, key: bytes) -> None:
        """Write (or delete, if no longer held) the record at ``key``."""
        held = next((r for r in store.records() if r.key == key), None)
        at = store.republish_at(key)

        def write(conn: sqlite3.Connection) -> None:
            if held is None or at is None:
                conn.execute("DELETE FROM dht_records WHERE record_key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO dht_records VALUES (?, ?, ?, ?)",
                             (key, _encode_record(held), held.expires, at))

        await self._db.run(write)

    async def save_records(self, store: RecordStore) -> int:
        """Replace the stored records with everything ``store`` holds."""
        rows = [(r.key, _encode_record(r), r.expires, store.republish_at(r.key) or 0.0)
                for r in store.records()]

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM dht_records")
            conn.executemany("INSERT INTO dht_records VALUES (?, ?, ?, ?)", rows)
            return len(rows)

        return await self._db.run(write)

    async def load_records(self, store: RecordStore, now: float) -> tuple[int, int]:
        """Load the records still valid at ``now`` into ``store``; (loaded, dropped)."""
        def read(conn: sqlite3.Connection) -> list[tuple[bytes, bytes, float]]:
            return list(conn.execute("SELECT record_key, data, republish_at FROM dht_records"))

        loaded, dropped = 0, []
        for key, data, republish_at in await self._db.run(read):
            try:
                pb = dht_pb2.DhtRecord()
                pb.ParseFromString(bytes(data))
                record = verify(_record(pb), now)
                if record.key != bytes(key):
                    raise DhtRecordError("stored under another key")
            except (DhtRecordError, DhtMessageError, ValueError, RuntimeError):
                dropped.append(bytes(key))
                continue
            store.load(record, float(republish_at))
            loaded += 1
        if dropped:
            def delete(conn: sqlite3.Connection) -> None:
                conn.executemany("DELETE FROM dht_records WHERE record_key = ?",
                                 [(k,) for k in dropped])

            await self._db.run(delete)
        return loaded, len(dropped)

    async def save_mail(self, store: MailboxStore) -> int:
        """Replace the stored letters with everything ``store`` holds."""
        rows = store.entries()

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM dht_mail")
            conn.executemany("INSERT INTO dht_mail VALUES (?, ?, ?)", rows)
            return len(rows)

        return await self._db.run(write)

    async def load_mail(self, store: MailboxStore, now: float) -> int:
        """Load the letters not expired at ``now`` into ``store``; how many."""
        def read(conn: sqlite3.Connection) -> list[tuple[bytes, bytes, float]]:
            conn.execute("DELETE FROM dht_mail WHERE expires <= ?", (now,))
            return list(conn.execute("SELECT mailbox_key, envelope, expires FROM dht_mail"))

        loaded = 0
        for key, envelope, expires in await self._db.run(read):
            if len(key) == 32 and len(envelope) in ENVELOPE_SIZES:
                store.load(bytes(key), bytes(envelope), float(expires))
                loaded += 1
        return loaded
