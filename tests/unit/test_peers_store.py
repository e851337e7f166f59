"""The peer store: migrations, add/remove/block, reputation, persistence."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.peers import (
    AUTO_BLOCK_SECONDS,
    SCHEMA_VERSION,
    WEIGHTS,
    Behaviour,
    DatabaseError,
    InlineSQLite,
    PeerAddressError,
    PeerStore,
    PinStore,
    RecordTable,
    UnknownPeer,
    check_peer_address,
    migrate,
    updated_reputation,
)
from aegis_hidden.testing import result_of


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


def make_store(path: str = ":memory:", clock: Clock | None = None) -> tuple[PeerStore, Clock]:
    clock = clock or Clock()
    store = PeerStore(InlineSQLite(path), clock.seconds)
    result_of(store.load())
    return store, clock


def test_migrations_from_empty_and_refuse_newer(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    assert migrate(conn) == 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert migrate(conn) == SCHEMA_VERSION  # idempotent
    cols = {r[1] for r in conn.execute("PRAGMA table_info(peers)")}
    assert {"peer_id", "reputation", "blocked_until", "sessions_ok"} <= cols
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DatabaseError, match="newer than this program"):
        migrate(conn)


def test_migration_from_version_1_keeps_rows(tmp_path: Path) -> None:
    from aegis_hidden.peers._db import MIGRATIONS
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    peer = onion()
    conn.execute("INSERT INTO peers (peer_id, added) VALUES (?, 1.0)", (peer,))
    conn.close()
    store, _ = make_store(str(tmp_path / "old.db"))
    assert store.require(peer).sessions_ok == 0


def test_migration_from_version_2_adds_origin_pins_and_records(tmp_path: Path) -> None:
    """Item 1/2: an existing database gains the pin and record tables, keeps its peers."""
    from aegis_hidden.peers._db import MIGRATIONS
    conn = sqlite3.connect(tmp_path / "v2.db", isolation_level=None)
    for migration in MIGRATIONS[:2]:
        for statement in migration.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    peer = onion()
    conn.execute("INSERT INTO peers (peer_id, added) VALUES (?, 1.0)", (peer,))
    conn.close()
    store, clock = make_store(str(tmp_path / "v2.db"))
    # a peer from before origins were kept is not trusted with the I2P binding
    assert store.require(peer).origin == "unknown"
    assert not store.require(peer).operator_added
    db = InlineSQLite(str(tmp_path / "v2.db"))
    pins = PinStore(db, clock.seconds)
    result_of(pins.load())
    assert pins.get(peer) is None
    result_of(pins.pin(peer, b"k" * 1952))
    table = RecordTable(db, clock.seconds)
    assert result_of(table.load()) == []


def test_pins_survive_a_restart_and_are_replaced_on_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "pins.db")
    clock = Clock()
    pins = PinStore(InlineSQLite(path), clock.seconds)
    result_of(pins.load())
    peer = onion()
    result_of(pins.pin(peer.upper(), b"a" * 1952))
    assert pins.get(peer) == b"a" * 1952  # in memory at once, lower-cased
    clock.advance(5)
    result_of(pins.pin(peer, b"b" * 1952))
    again = PinStore(InlineSQLite(path), clock.seconds)
    result_of(again.load())
    assert again.get(peer) == b"b" * 1952 and len(again) == 1
    with pytest.raises(ValueError, match="empty"):
        pins.pin(peer, b"")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT first_seen, updated FROM mldsa_pins").fetchone() == (0.0, 5.0)


def test_record_table_keeps_highest_sequence_and_revocations_for_ever(tmp_path: Path) -> None:
    table = RecordTable(InlineSQLite(str(tmp_path / "r.db")), Clock().seconds)
    peer = onion()
    result_of(table.save(peer, 1, 5, b"seq5"))
    result_of(table.save(peer, 1, 3, b"seq3"))  # lower: ignored
    assert result_of(table.load()) == [b"seq5"]
    result_of(table.save(peer, 1, 6, b"seq6"))
    result_of(table.save(peer, 2, 7, b"revoked"))
    result_of(table.save(peer, 1, 99, b"seq99"))  # after a revocation: ignored
    assert result_of(table.load()) == [b"revoked"]


def test_origin_operator_or_peer() -> None:
    store, _ = make_store()
    a, b = onion(), onion()
    result_of(store.add(a, origin="peer"))
    result_of(store.add(b))
    assert store.require(a).origin == "peer" and store.require(b).operator_added
    result_of(store.add(b, origin="peer"))  # a session never demotes the operator's peer
    assert store.require(b).operator_added
    result_of(store.add(a))  # the operator adding it makes it operator-added
    assert store.require(a).operator_added
    with pytest.raises(ValueError, match="origin"):
        result_of(store.add(onion(), origin="gossip"))


def test_add_get_remove_and_persistence(tmp_path: Path) -> None:
    path = str(tmp_path / "peers.db")
    store, clock = make_store(path)
    a, b = onion(), onion()
    i2p = "a" * 52 + ".b32.i2p"
    clock.advance(10)
    result_of(store.add(a.upper(), i2p_destination=i2p))
    result_of(store.add(b))
    assert store.require(a).i2p_destination == i2p
    assert store.require(a).addresses() == [a, i2p]
    assert store.require(a).added == 10
    assert [p.peer_id for p in store.all()] == [a, b]
    # idempotent
    again = result_of(store.add(a))
    assert again == store.require(a)
    result_of(store.remove(b))
    with pytest.raises(UnknownPeer):
        store.require(b)
    with pytest.raises(UnknownPeer):
        result_of(store.remove(b))
    reopened, _ = make_store(path)
    assert [p.peer_id for p in reopened.all()] == [a]
    assert reopened.require(a).i2p_destination == i2p


@pytest.mark.parametrize("bad", ["example.com", "127.0.0.1", "", "abc.onion", 7,
                                 "x" * 56 + ".onion", "a" * 40 + ".b32.i2p"])
def test_clearnet_and_malformed_addresses_refused(bad: object) -> None:
    with pytest.raises(PeerAddressError):
        check_peer_address(bad)
    store, _ = make_store()
    with pytest.raises(PeerAddressError):
        result_of(store.add(bad))  # type: ignore[arg-type]
    assert len(store) == 0


def test_block_with_expiry_and_unblock() -> None:
    store, clock = make_store()
    a = onion()
    result_of(store.block(a, "spam", duration=60))
    assert store.is_blocked(a)  # unknown peers can be blocked: they are added
    clock.advance(59)
    assert store.is_blocked(a)
    clock.advance(2)
    assert not store.is_blocked(a)
    result_of(store.block(a, "again"))
    clock.advance(10**9)
    assert store.is_blocked(a)  # no duration: for ever
    result_of(store.unblock(a))
    assert not store.is_blocked(a) and store.require(a).blocked_reason is None


def test_reputation_moves_and_auto_blocks() -> None:
    store, clock = make_store()
    a = onion()
    result_of(store.add(a))
    start = store.require(a).reputation
    result_of(store.observe(a, Behaviour.SESSION_OK))
    assert store.require(a).reputation > start
    assert store.require(a).sessions_ok == 1
    events: list[str] = []
    store.on_change(lambda p, what: events.append(what))
    for _ in range(4):
        result_of(store.observe(a, Behaviour.INVALID_SIGNATURE))
    peer = store.require(a)
    assert peer.reputation < 0.1
    assert store.is_blocked(a) and "invalid_signature" in (peer.blocked_reason or "")
    assert "blocked" in events
    clock.advance(AUTO_BLOCK_SECONDS + 1)
    assert not store.is_blocked(a)
    assert result_of(store.observe(onion(), Behaviour.TIMEOUT)) is None  # unknown: ignored


@given(st.floats(0, 1), st.lists(st.sampled_from(list(Behaviour)), max_size=50))
def test_reputation_stays_in_unit_interval(score: float, seq: list[Behaviour]) -> None:
    for b in seq:
        new = updated_reputation(score, b)
        assert 0.0 <= new <= 1.0
        target = WEIGHTS[b][0]
        assert abs(new - target) <= abs(score - target) + 1e-12  # moves towards the target
        score = new


def test_mean_reputation() -> None:
    store, _ = make_store()
    assert store.mean_reputation() == 0.0
    a, b = onion(), onion()
    result_of(store.add(a))
    result_of(store.add(b))
    result_of(store.observe(a, Behaviour.PROTOCOL_VIOLATION))
    expected = (store.require(a).reputation + store.require(b).reputation) / 2
    assert store.mean_reputation() == pytest.approx(expected)
    assert store.mean_reputation() < 0.5


def test_closed_database_fails_clearly() -> None:
    db = InlineSQLite()
    result_of(db.close())
    with pytest.raises(DatabaseError, match="closed"):
        result_of(db.run(lambda c: None))


def test_examples_in_docs_reputation_md() -> None:
    score = 0.5
    trail = []
    for _ in range(3):
        score = updated_reputation(score, Behaviour.INVALID_SIGNATURE)
        trail.append(score)
    assert trail == [0.25, 0.125, 0.0625]
    score = 0.5
    for _ in range(20):
        score = updated_reputation(score, Behaviour.SESSION_OK)
    assert round(score, 2) == 0.82


class _QueuedCall:
    def __init__(self, f: Any, args: tuple[Any, ...]) -> None:
        self.f, self.args, self.live = f, args, True

    def fire(self) -> None:
        if self.live:
            self.live = False
            self.f(*self.args)

    def active(self) -> bool:
        return self.live

    def cancel(self) -> None:
        self.live = False


class ThreadReactor:
    """Just enough of IReactorThreads/IReactorFromThreads, without the real reactor:
    calls from the worker thread are queued and run when the test drains them."""

    def __init__(self) -> None:
        import queue

        self.calls: queue.Queue[tuple[Any, tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.calls.put((f, args))

    def callLater(self, delay: float, f: Any, *args: Any) -> Any:
        """The group commit's flush timer: due at once, run when drained."""
        call = _QueuedCall(f, args)
        self.calls.put((call.fire, ()))
        return call

    def drain_until(self, d: Deferred[Any]) -> Any:
        box: list[Any] = []
        d.addBoth(box.append)
        while not box:
            f, args = self.calls.get(timeout=10)
            f(*args)
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]


def test_threaded_sqlite_runs_off_the_calling_thread(tmp_path: Path) -> None:
    import threading

    from zope.interface import directlyProvides

    from aegis_hidden.peers import ThreadedSQLite

    reactor = ThreadReactor()
    directlyProvides(reactor, IReactorThreads, IReactorFromThreads)
    db = ThreadedSQLite(reactor, str(tmp_path / "t.db"))
    reactor.drain_until(db.open())
    caller = threading.get_ident()
    seen: list[int] = []

    def work(conn: sqlite3.Connection) -> int:
        seen.append(threading.get_ident())
        conn.execute("INSERT INTO peers (peer_id, added) VALUES ('x', 1)")
        return int(conn.execute("SELECT COUNT(*) FROM peers").fetchone()[0])

    assert reactor.drain_until(db.run(work)) == 1
    assert seen and seen[0] != caller

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO peers (peer_id, added) VALUES ('y', 1)")
        raise ValueError("rolled back")

    with pytest.raises(ValueError, match="rolled back"):
        reactor.drain_until(db.run(boom))
    count = reactor.drain_until(db.run(
        lambda c: c.execute("SELECT COUNT(*) FROM peers").fetchone()[0]))
    assert count == 1  # the failed transaction left nothing behind
    reactor.drain_until(db.close())
    with pytest.raises(DatabaseError, match="closed"):
        result_of(db.run(work))


def test_threaded_sqlite_group_commits_queued_writes(tmp_path: Path) -> None:
    from zope.interface import directlyProvides

    from aegis_hidden.peers import ThreadedSQLite

    reactor = ThreadReactor()
    directlyProvides(reactor, IReactorThreads, IReactorFromThreads)
    db = ThreadedSQLite(reactor, str(tmp_path / "g.db"))
    reactor.drain_until(db.open())
    writes = [db.run(lambda c, i=i: c.execute(  # type: ignore[misc]
        "INSERT INTO peers (peer_id, added) VALUES (?, 1)", (f"p{i}",)).rowcount)
        for i in range(10)]
    for d in writes:
        assert reactor.drain_until(d) == 1
    assert db.batches == 1  # ten writes, one transaction (one fsync)
    pending = db.run(lambda c: c.execute("INSERT INTO peers (peer_id, added) VALUES ('z', 1)"))
    closed = db.close()  # what is queued still commits before the connection closes
    reactor.drain_until(closed)
    assert pending.called
    again = InlineSQLite(str(tmp_path / "g.db"))
    assert result_of(again.run(lambda c: c.execute("SELECT COUNT(*) FROM peers").fetchone()[0])) == 11


class BatchedDB:
    """Writes wait together until flushed, as in one group-committed transaction."""

    def __init__(self, path: str) -> None:
        self.inner = InlineSQLite(path)
        self.queue: list[tuple[Any, Deferred[Any]]] = []
        self.ran: list[tuple[Deferred[Any], Deferred[Any]]] = []
        self.statements: list[str] = []

    def run(self, fn: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.queue.append((fn, d))
        return d

    def close(self) -> Deferred[None]:
        return self.inner.close()

    def execute(self) -> None:
        """The worker runs the queued functions; their callers are not answered yet."""
        batch, self.queue = self.queue, []
        for fn, d in batch:
            def traced(conn: sqlite3.Connection, fn: Any = fn) -> Any:
                conn.set_trace_callback(self.statements.append)
                try:
                    return fn(conn)
                finally:
                    conn.set_trace_callback(None)

            self.ran.append((self.inner.run(traced), d))

    def answer(self) -> None:
        ran, self.ran = self.ran, []
        for result, d in ran:
            result.chainDeferred(d)

    def flush(self) -> None:
        self.execute()
        self.answer()

    def upserts(self) -> int:
        return sum(1 for s in self.statements if s.startswith("INSERT OR REPLACE INTO peers"))


def test_changes_waiting_in_one_batch_build_on_each_other(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    db = BatchedDB(path)
    clock = Clock()
    store = PeerStore(db, clock.seconds)
    loaded = Deferred.fromCoroutine(store.load())
    db.flush()
    result_of(loaded)
    peer = onion()
    added = Deferred.fromCoroutine(store.add(peer))
    db.flush()
    result_of(added)
    acks = [Deferred.fromCoroutine(store.observe(peer, Behaviour.MESSAGE_ACKED))
            for _ in range(3)]
    ok = Deferred.fromCoroutine(store.observe(peer, Behaviour.SESSION_OK))
    assert store.require(peer).reputation == 0.5  # reads show what is committed
    db.flush()
    for observed in [*acks, ok]:
        result_of(observed)
    expected = 0.5
    for behaviour in [Behaviour.MESSAGE_ACKED] * 3 + [Behaviour.SESSION_OK]:
        expected = updated_reputation(expected, behaviour)
    assert store.require(peer).reputation == pytest.approx(expected)  # no update lost
    assert store.require(peer).sessions_ok == 1
    # a removal on its way is not undone by a change queued behind it
    gone = Deferred.fromCoroutine(store.remove(peer))
    late = Deferred.fromCoroutine(store.observe(peer, Behaviour.MESSAGE_ACKED))
    db.flush()
    result_of(gone)
    assert result_of(late) is None
    assert store.get(peer) is None
    again, _ = make_store(path, clock)
    assert again.get(peer) is None


def test_changes_to_a_queued_row_ride_on_its_write(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    db = BatchedDB(path)
    clock = Clock()
    store = PeerStore(db, clock.seconds)
    loaded = Deferred.fromCoroutine(store.load())
    db.flush()
    result_of(loaded)
    peer = onion()
    changes: list[Deferred[Any]] = [Deferred.fromCoroutine(store.add(peer))]
    changes += [Deferred.fromCoroutine(store.observe(peer, Behaviour.MESSAGE_ACKED))
                for _ in range(3)]
    changes.append(Deferred.fromCoroutine(store.set_status(peer, "connected")))
    assert len(db.queue) == 1  # one row write, amended four times
    db.execute()
    assert db.upserts() == 1
    assert not any(d.called for d in changes)  # nobody answered before the commit
    # taken by the worker but not yet answered: a new change needs its own write
    late = Deferred.fromCoroutine(store.observe(peer, Behaviour.MESSAGE_ACKED))
    assert len(db.queue) == 1
    db.answer()
    assert all(d.called for d in changes) and not late.called
    db.flush()
    result_of(late)
    assert db.upserts() == 2
    expected = 0.5
    for _ in range(4):
        expected = updated_reputation(expected, Behaviour.MESSAGE_ACKED)
    again, _ = make_store(path, clock)
    stored = again.require(peer)
    assert stored.reputation == pytest.approx(expected) == store.require(peer).reputation
    assert stored.status == "connected"
