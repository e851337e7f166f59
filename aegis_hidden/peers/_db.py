"""SQLite for the node's state (peers, pins, records, outbox, seen ids), off the reactor.

Every statement runs in one dedicated worker thread (:class:`ThreadedSQLite`):
SQLite connections are not shared between threads and one writer at a time is
what SQLite does anyway, so a single thread gives ordering for free. Tests and
short-lived CLI tools use :class:`InlineSQLite`, which runs the same functions
synchronously and returns already-fired Deferreds.

Group commit (:class:`GroupCommit`): the functions handed to ``run()`` within
one flush interval, and those that arrive while a batch is being committed,
share one transaction and so one fsync. Each runs in its own savepoint, so it
is still atomic and a failing one is rolled back alone and fails only its
caller. Every caller's Deferred fires only after the COMMIT returned (the data
is on disk: WAL with ``synchronous = FULL``); if the COMMIT fails, every caller
in that batch gets the error and nothing of the batch is kept. Order is kept:
one queue, one batch in flight, functions in the order they were handed in.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` is
append-only, and each step runs in one transaction.

Encrypted at rest: given a ``key`` (32 bytes, :func:`load_database_key`), the
file is a SQLCipher database (:mod:`aegis_hidden.peers._cipher`); a plain file
met with a key is migrated once, its plain copy kept as a backup.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorFromThreads,
    IReactorThreads,
    IReactorTime,
)
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ._cipher import (
    CipherError,
    DatabaseCorrupt,
    DatabaseError,
    connect_encrypted,
    encrypt_plain_database,
    is_plain_sqlite,
)

T = TypeVar("T")

DB_FILE_NAME = "node.sqlite3"

# Append only: entry i brings the schema from version i to version i + 1.
MIGRATIONS: tuple[str, ...] = (
    # 1: peers, outbox, de-duplication window
    """
    CREATE TABLE peers (
        peer_id         TEXT PRIMARY KEY,
        i2p_destination TEXT,
        record          BLOB,
        status          TEXT NOT NULL DEFAULT 'new',
        added           REAL NOT NULL,
        last_seen       REAL,
        reputation      REAL NOT NULL DEFAULT 0.5,
        blocked_reason  TEXT,
        blocked_until   REAL
    );
    CREATE TABLE outbox (
        msg_id       TEXT PRIMARY KEY,
        peer_id      TEXT NOT NULL,
        body         TEXT NOT NULL,
        created      REAL NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL
    );
    CREATE INDEX outbox_peer ON outbox (peer_id);
    CREATE TABLE seen (
        peer_id  TEXT NOT NULL,
        msg_id   TEXT NOT NULL,
        received REAL NOT NULL,
        PRIMARY KEY (peer_id, msg_id)
    );
    CREATE INDEX seen_received ON seen (received);
    """,
    # 2: counters kept across restarts (churn, auth failures are in-memory only)
    """
    ALTER TABLE peers ADD COLUMN sessions_ok INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE peers ADD COLUMN sessions_failed INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: who added a peer (the I2P binding goes only to operator-added peers), pinned
    # ML-DSA-65 keys, and the record cache (highest record per onion; revocations
    # are kept for ever). Peers from before are of unknown origin: not trusted.
    """
    ALTER TABLE peers ADD COLUMN origin TEXT NOT NULL DEFAULT 'unknown';
    CREATE TABLE mldsa_pins (
        onion        TEXT PRIMARY KEY,
        mldsa_public BLOB NOT NULL,
        first_seen   REAL NOT NULL,
        updated      REAL NOT NULL
    );
    CREATE TABLE records (
        onion    TEXT PRIMARY KEY,
        kind     INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        data     BLOB NOT NULL,
        stored   REAL NOT NULL
    );
    """,
    # 4: the de-duplication window keeps a keyed hash of (peer, message id) and a time
    # rounded to the minute, not who sent what when (no contact log); the hash key is made
    # here, once, and never leaves the database. Ids seen before are forgotten.
    """
    DROP TABLE seen;
    CREATE TABLE seen (
        digest   BLOB PRIMARY KEY,
        received REAL NOT NULL
    );
    CREATE INDEX seen_received ON seen (received);
    CREATE TABLE node_secrets (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    INSERT INTO node_secrets (name, value) VALUES ('seen_key', randomblob(32));
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def _expected_tables(version: int) -> set[str]:
    """Tables and indexes the schema has at ``version`` (migrations applied in memory)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for step in MIGRATIONS[:version]:
            conn.executescript(step)
        return {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND name NOT LIKE 'sqlite_%'")}
    finally:
        conn.close()


def check_database(path: str, key: bytes | None = None) -> int | None:
    """Check the state database at ``path`` without writing to it.

    Returns ``None`` when there is no file (a new node: it will be created), else
    the file's schema version after ``PRAGMA quick_check`` found it sound and its
    tables match that version. With ``key`` an encrypted file is opened with it
    (a plain file is checked as it is: it will be migrated); a key that does not
    open the file raises :class:`DatabaseKeyError`, an encrypted file checked
    without one :class:`DatabaseCorrupt`. Raises :class:`DatabaseCorrupt` for a 0-byte file
    (that is a lost database, not a new one), a file that is not SQLite, a
    damaged or truncated one, and a schema version this program does not know.
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return None
    except OSError as e:
        raise DatabaseCorrupt(path, f"cannot be read ({e.strerror})") from None
    if size == 0:
        raise DatabaseCorrupt(path, "is empty (0 bytes): that is a lost database, not a new one")
    if key is not None and not is_plain_sqlite(path):
        conn = connect_encrypted(path, key, read_only=True)
    else:
        if key is None and not is_plain_sqlite(path):
            raise DatabaseCorrupt(path, "is not a plain SQLite file: encrypted (give the "
                                  "passphrase that opens its key file) or not a database")
        try:
            conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True,
                                   isolation_level=None)
        except sqlite3.Error as e:
            raise DatabaseCorrupt(path, f"cannot be opened ({e})") from None
    try:
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            tables = {name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') "
                "AND name NOT LIKE 'sqlite_%'")}
        except (sqlite3.Error, CipherError) as e:
            raise DatabaseCorrupt(path, f"is damaged ({e})") from None
    finally:
        conn.close()
    if problems != ["ok"]:
        raise DatabaseCorrupt(path, "is damaged (quick_check: " + "; ".join(
            str(p)[:200] for p in problems) + ")")
    if not 0 <= version <= SCHEMA_VERSION:
        raise DatabaseCorrupt(
            path, f"has schema version {version}, which this program (schema "
            f"{SCHEMA_VERSION}) does not know: a newer aegis-hidden, or not this node's file")
    missing = _expected_tables(version) - tables
    if version == 0 and tables:
        raise DatabaseCorrupt(path, "has tables but no schema version: not this node's file")
    if missing:
        raise DatabaseCorrupt(
            path, f"says schema version {version} but lacks {', '.join(sorted(missing))}")
    return int(version)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring ``conn`` to :data:`SCHEMA_VERSION`; returns the version found before."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise DatabaseError(
            f"the state database has schema version {found}, newer than this program's "
            f"{SCHEMA_VERSION}: upgrade aegis-hidden or use another data dir")
    for version in range(found, SCHEMA_VERSION):
        try:
            conn.execute("BEGIN")
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except (sqlite3.Error, CipherError) as e:
            conn.execute("ROLLBACK")
            raise DatabaseError(f"schema migration {version} -> {version + 1} failed: {e}"
                                ) from e
    return int(found)


def _connect(path: str, key: bytes | None = None) -> tuple[sqlite3.Connection, str | None]:
    """The open, migrated connection, and the plain backup's path if one was made now."""
    backup = None
    if path != ":memory:":
        check_database(path, key)  # never open (and so never re-create) a damaged file
        if key is not None and is_plain_sqlite(path):
            backup = str(encrypt_plain_database(path, key))
    try:
        if key is not None:
            conn = connect_encrypted(path, key)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    except (sqlite3.Error, CipherError) as e:
        raise DatabaseError(f"cannot open the state database {path}: {e}") from e
    migrate(conn)
    return conn, backup


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class Database(Protocol):
    """Runs a function on the connection inside one transaction."""

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]: ...

    def close(self) -> Deferred[None]: ...


class InlineSQLite:
    """Synchronous: for unit tests (``":memory:"``) and short CLI commands."""

    def __init__(self, path: str = ":memory:", *, key: bytes | None = None) -> None:
        self._conn: sqlite3.Connection | None
        self._conn, self.plain_backup = _connect(path, key)

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        if self._conn is None:
            return fail(DatabaseError("the database is closed"))
        try:
            return succeed(_transaction(self._conn, fn))
        except Exception as e:  # noqa: BLE001 - handed to the caller as a failure
            return fail(e)

    def close(self) -> Deferred[None]:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return succeed(None)


DEFAULT_FLUSH_INTERVAL = 0.002
"""Seconds a first write waits for company before its batch is committed."""

DEFAULT_MAX_BATCH = 1000
"""At most this many functions share one transaction."""


def _savepoint(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any]
               ) -> tuple[bool, Any]:
    """``fn`` in its own savepoint: ``(True, result)``, or ``(False, exception)``."""
    conn.execute("SAVEPOINT one_caller")
    try:
        result = fn(conn)
    except Exception as e:  # noqa: BLE001 - handed to that caller alone
        conn.execute("ROLLBACK TO one_caller")
        conn.execute("RELEASE one_caller")
        return False, e
    conn.execute("RELEASE one_caller")
    return True, result


def commit_batch(conn: sqlite3.Connection,
                 fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
    """Run ``fns`` in order in one transaction and commit it; one outcome per function.

    A function that raises is rolled back to its savepoint (the others' writes
    stay) and its outcome is ``(False, exception)``. Anything that breaks the
    transaction itself (the savepoint machinery, the COMMIT: a full disk, an I/O
    error) rolls the whole batch back and is raised: no caller of the batch has
    anything on disk.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_savepoint(conn, fn) for fn in fns]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


Worker = Callable[[Callable[[], Any]], "Deferred[Any]"]


class GroupCommit:
    """Batches ``run()`` calls into shared transactions, on the injected clock.

    ``worker(work)`` runs ``work()`` where the connection lives (the SQLite
    thread) and returns a Deferred of its result on the reactor thread;
    ``connection()`` is the open connection (``None`` once closed). A batch
    starts ``flush_interval`` seconds after the first call that finds nothing
    queued; calls that arrive while a batch is in flight wait for it and go in
    the next one, which starts as soon as the first is done.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, worker: Worker,
                 connection: Callable[[], sqlite3.Connection | None], *,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if flush_interval < 0 or max_batch < 1:
            raise ValueError("flush_interval must be >= 0 and max_batch >= 1")
        self._clock = clock
        self._worker = worker
        self._connection = connection
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]] = []
        self._timer: IDelayedCall | None = None
        self._in_flight = False
        self._idle_waiters: list[Deferred[None]] = []
        self.batches = 0  # transactions committed or attempted, for tests and metrics

    def __len__(self) -> int:
        """Calls queued and not yet handed to the worker."""
        return len(self._queue)

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self._queue.append((fn, d))
        if len(self._queue) >= self.max_batch and not self._in_flight:
            self.flush()
        elif self._timer is None and not self._in_flight:
            self._timer = self._clock.callLater(self.flush_interval, self.flush)
        return d

    def flush(self) -> None:
        """Hand the queued calls to the worker now (unless a batch is already in flight)."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self._in_flight or not self._queue:
            if not self._in_flight:
                self._wake_idle()
            return
        batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
        fns = [fn for fn, _ in batch]
        self._in_flight = True
        self.batches += 1

        def work() -> list[tuple[bool, Any]]:
            conn = self._connection()
            if conn is None:
                raise DatabaseError("the database is closed")
            return commit_batch(conn, fns)

        try:
            d = self._worker(work)
        except Exception as e:  # noqa: BLE001 - e.g. the thread pool is gone
            d = fail(e)
        d.addCallbacks(self._committed, self._failed,
                       callbackArgs=(batch,), errbackArgs=(batch,))

    # The callers of a batch are answered before the next batch starts: what their
    # callbacks write joins the queue (a batch is still in flight, so no timer) and
    # goes in the next batch, and answers never overtake each other.
    def _committed(self, outcomes: list[tuple[bool, Any]],
                   batch: list[tuple[Any, Deferred[Any]]]) -> None:
        for (ok, value), (_, d) in zip(outcomes, batch, strict=True):
            if ok:
                d.callback(value)
            else:
                d.errback(value)
        self._done()

    def _failed(self, failure: Any, batch: list[tuple[Any, Deferred[Any]]]) -> None:
        self.log.warn("a transaction of {count} writes failed and was rolled back: {error}",
                      count=len(batch), error=failure.getErrorMessage())
        for _, d in batch:
            d.errback(failure)
        self._done()

    def _done(self) -> None:
        self._in_flight = False
        if self._queue:  # these waited for the batch in flight: go at once
            self.flush()
        else:
            self._wake_idle()

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for w in waiters:
            w.callback(None)

    def drain(self) -> Deferred[None]:
        """Commit everything queued now; fires once nothing is queued or in flight."""
        d: Deferred[None] = Deferred()
        if not self._queue and not self._in_flight:
            d.callback(None)
            return d
        self._idle_waiters.append(d)
        self.flush()
        return d


class ThreadedSQLite:
    """One connection used by one worker thread; the reactor thread never blocks on it.

    Calls are group-committed (:class:`GroupCommit`): ``flush_interval`` is how
    long the first write of a batch waits for others (0: those of the same
    reactor turn only).
    """

    log = Logger()

    def __init__(self, reactor: Any, path: str, *, key: bytes | None = None,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._reactor: Any = reactor
        assert IReactorThreads.providedBy(reactor) and IReactorFromThreads.providedBy(reactor)
        self._path = path
        self._key = key  # SQLCipher's key: dropped once the file is open
        self.plain_backup: str | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="aegis-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._started = False
        self._group = GroupCommit(self._reactor, self._in_thread, lambda: self._conn,
                                  flush_interval=flush_interval, max_batch=max_batch)

    @property
    def batches(self) -> int:
        """Transactions committed (or attempted) so far."""
        return self._group.batches

    def _in_thread(self, work: Callable[[], T]) -> Deferred[T]:
        d: Deferred[T] = deferToThreadPool(self._reactor, self._pool, work)
        return d

    def open(self) -> Deferred[None]:
        """Start the worker thread, open the file and migrate the schema."""
        self._pool.start()
        self._started = True

        def opener() -> None:
            self._conn, self.plain_backup = _connect(self._path, self._key)
            self._key = None

        d = self._in_thread(opener)

        def migrated(result: None) -> None:
            if self.plain_backup is not None:
                self.log.warn(
                    "the state database was encrypted (SQLCipher); its plain copy is at "
                    "{backup}: check the node, then destroy it (shred -u; "
                    "docs/operations.md)", backup=self.plain_backup)

        d.addCallback(migrated)
        return d

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> Deferred[T]:
        if not self._started:
            return fail(DatabaseError("the database is closed (or was never opened)"))
        return self._group.run(fn)

    def close(self) -> Deferred[None]:
        if not self._started:
            return succeed(None)
        self._started = False  # later runs fail at once; queued ones still complete

        def closer() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        d = self._group.drain()
        d.addCallback(lambda _: self._in_thread(closer))

        def stop(result: None) -> None:
            self._pool.stop()
            return result

        d.addBoth(stop)
        return d
