"""Group commit: writes of one flush interval share one transaction, and nobody is
answered before the transaction holding their write has committed.

The SQLite "thread" is a :class:`ManualWorker` the test runs step by step, the
flush timer a ``task.Clock``, and the connection a real SQLite file whose
``execute`` counts (and, on demand, fails) COMMITs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import DeliveryState, NodeCore
from aegis_hidden.peers import GroupCommit, commit_batch, migrate
from aegis_hidden.testing import FakeNetwork

INTERVAL = 0.002


class CountingConnection(sqlite3.Connection):
    """A real connection that counts COMMITs and can be told to fail the next ones."""

    commits = 0
    fail_commits = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.strip().upper() == "COMMIT":
            if self.fail_commits:
                self.fail_commits -= 1
                raise sqlite3.OperationalError("disk I/O error (injected)")
            self.commits += 1
        return super().execute(sql, *args)


def connect(path: Path) -> CountingConnection:
    conn = sqlite3.connect(str(path), isolation_level=None, factory=CountingConnection)
    assert isinstance(conn, CountingConnection)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL)")
    conn.commits = 0
    return conn


class ManualWorker:
    """The SQLite thread, under the test's control: work runs when the test says."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, Deferred[Any]]] = []

    def __call__(self, work: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.jobs.append((work, d))
        return d

    def run_next(self) -> None:
        work, d = self.jobs.pop(0)
        try:
            result = work()
        except Exception as e:  # noqa: BLE001 - delivered like deferToThreadPool does
            d.errback(Failure(e))
        else:
            d.callback(result)

    def run_all(self) -> None:
        while self.jobs:
            self.run_next()


class Harness:
    def __init__(self, tmp_path: Path, **options: Any) -> None:
        self.path = tmp_path / "gc.db"
        self.conn = connect(self.path)
        self.clock = Clock()
        self.worker = ManualWorker()
        self.group = GroupCommit(self.clock, self.worker, lambda: self.conn,
                                 flush_interval=INTERVAL, **options)

    def insert(self, n: int) -> Deferred[int]:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
            return n

        return self.group.run(write)

    def on_disk(self) -> list[int]:
        """What another connection (another process after a crash) would find."""
        other = sqlite3.connect(str(self.path))
        try:
            return [n for (n,) in other.execute("SELECT n FROM t ORDER BY rowid")]
        finally:
            other.close()


def outcomes(ds: list[Deferred[Any]]) -> list[Any]:
    out: list[Any] = []
    for d in ds:
        d.addBoth(out.append)
    return out


def test_writes_within_one_flush_interval_share_one_commit(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ds = [h.insert(i) for i in range(5)]
    h.clock.advance(INTERVAL / 2)
    ds += [h.insert(i) for i in range(5, 8)]
    assert h.worker.jobs == []  # the interval has not passed: nothing handed over yet
    h.clock.advance(INTERVAL / 2)
    assert len(h.worker.jobs) == 1
    h.worker.run_all()
    assert h.conn.commits == 1
    assert outcomes(ds) == list(range(8))
    assert h.on_disk() == list(range(8))
    assert h.group.batches == 1


def test_each_caller_fires_only_after_the_commit(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    commits_seen: list[int] = []
    ds = [h.insert(i) for i in range(3)]
    for d in ds:
        d.addCallback(lambda _: commits_seen.append(h.conn.commits))
    h.clock.advance(INTERVAL)
    assert commits_seen == [] and h.on_disk() == []  # handed over, not yet committed
    h.worker.run_all()
    assert commits_seen == [1, 1, 1]  # every answer came after the one COMMIT


def test_crash_before_commit_means_nobody_was_answered(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ds = [h.insert(i) for i in range(3)]
    h.clock.advance(INTERVAL)
    # the process dies here: the worker never ran the batch
    h.worker.jobs.clear()
    h.conn.close()
    assert outcomes(ds) == []
    assert h.on_disk() == []


def test_a_failing_batch_fails_its_callers_and_the_next_batch_works(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.conn.fail_commits = 1
    first = outcomes([h.insert(i) for i in range(3)])
    h.clock.advance(INTERVAL)
    h.worker.run_all()
    assert len(first) == 3
    assert all(isinstance(f, Failure) and f.check(sqlite3.OperationalError) for f in first)
    assert h.on_disk() == []  # the failed batch left nothing behind
    second = outcomes([h.insert(i) for i in (10, 11)])
    h.clock.advance(INTERVAL)
    h.worker.run_all()
    assert second == [10, 11]
    assert h.on_disk() == [10, 11]
    assert h.group.batches == 2


def test_writes_queued_behind_a_failing_batch_are_not_lost(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.conn.fail_commits = 1
    first = outcomes([h.insert(1), h.insert(2)])
    h.clock.advance(INTERVAL)
    behind = outcomes([h.insert(3), h.insert(4)])  # arrive while batch 1 is in flight
    h.worker.run_next()  # batch 1: its COMMIT fails
    assert all(isinstance(f, Failure) for f in first) and behind == []
    assert len(h.worker.jobs) == 1  # the writes behind it went on, in their own batch
    h.worker.run_next()
    assert behind == [3, 4]
    assert h.on_disk() == [3, 4]


def test_a_failing_function_fails_only_its_caller(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (n) VALUES (99)")
        raise ValueError("this caller's write is refused")

    ds: list[Deferred[Any]] = [h.insert(1), h.group.run(boom), h.insert(2)]
    h.clock.advance(INTERVAL)
    h.worker.run_all()
    got = outcomes(ds)
    assert got[0] == 1 and got[2] == 2
    assert isinstance(got[1], Failure) and got[1].check(ValueError)
    assert h.on_disk() == [1, 2]  # 99 rolled back to its savepoint, the others kept
    assert h.conn.commits == 1


def test_writes_during_a_commit_go_together_in_the_next_one_in_order(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    fired: list[int] = []
    for i in range(3):
        h.insert(i).addCallback(fired.append)
    h.clock.advance(INTERVAL)
    assert len(h.worker.jobs) == 1  # batch 1 in flight
    for i in range(3, 10):
        h.insert(i).addCallback(fired.append)
    h.clock.advance(10 * INTERVAL)
    assert len(h.worker.jobs) == 1  # one batch in flight at a time: the rest wait
    h.worker.run_next()
    assert fired == [0, 1, 2]
    assert len(h.worker.jobs) == 1  # the waiting writes went at once, as one batch
    h.worker.run_next()
    assert fired == list(range(10))
    assert h.on_disk() == list(range(10))
    assert h.conn.commits == 2


def test_answers_keep_their_order_with_a_synchronous_worker(tmp_path: Path) -> None:
    """Callers' callbacks that write again go in the next batch, after every answer
    of the first: nothing is answered out of order even when the worker is inline."""
    conn = connect(tmp_path / "s.db")
    clock = Clock()

    def inline(work: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.callback(work())
        return d

    group = GroupCommit(clock, inline, lambda: conn, flush_interval=INTERVAL)
    answered: list[str] = []

    def write(tag: str) -> Deferred[Any]:
        return group.run(lambda c: c.execute("INSERT INTO t (n) VALUES (1)")).addCallback(
            lambda _: answered.append(tag))

    write("a").addCallback(lambda _: write("a2"))  # a's caller writes again at once
    write("b")
    clock.advance(INTERVAL)
    assert answered == ["a", "b", "a2"]
    assert conn.commits == 2


def test_batches_are_capped(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_batch=4)
    ds = [h.insert(i) for i in range(10)]
    assert len(h.worker.jobs) == 1  # a full batch goes without waiting for the timer
    h.worker.run_all()
    assert outcomes(ds) == list(range(10))
    assert h.conn.commits == 3  # 4 + 4 + 2
    assert h.on_disk() == list(range(10))


def test_drain_commits_what_is_queued(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    ds = [h.insert(i) for i in range(2)]
    idle = outcomes([h.group.drain()])
    assert len(h.worker.jobs) == 1  # no waiting for the interval
    h.worker.run_all()
    assert outcomes(ds) == [0, 1] and idle == [None]


def test_commit_batch_rolls_back_everything_when_commit_fails(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    conn.fail_commits = 1
    with pytest.raises(sqlite3.OperationalError):
        commit_batch(conn, [lambda c: c.execute("INSERT INTO t (n) VALUES (1)")])
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0


class GroupDB:
    """A Database over GroupCommit with the manual worker, for a whole node."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.conn: CountingConnection | None = connect(path)
        self.worker = ManualWorker()
        self.group = GroupCommit(clock, self.worker, lambda: self.conn, flush_interval=INTERVAL)

    def run(self, fn: Any) -> Deferred[Any]:
        return self.group.run(fn)

    def close(self) -> Deferred[None]:
        d = self.group.drain()
        self.worker.run_all()
        return d


def test_the_api_send_is_answered_only_once_the_message_is_on_disk(tmp_path: Path) -> None:
    clock = Clock()
    db = GroupDB(tmp_path / "a.db", clock)

    def settle() -> None:
        for _ in range(20):
            clock.advance(INTERVAL)
            db.worker.run_all()

    core = NodeCore(Config(), None, str(tmp_path), EventBus(), clock, db=db,
                    local_address=onion_address_from_public_key(b"\x01" * 32))
    core.attach_session_factory(FakeNetwork().node(core.local_address))
    core.startService()
    settle()
    ready = outcomes([core.when_ready()])
    assert ready == [None]
    peer = onion_address_from_public_key(b"\x02" * 32)
    added = outcomes([Deferred.fromCoroutine(core.store.add(peer))])
    settle()
    assert len(added) == 1
    assert db.conn is not None
    before = db.conn.commits
    sends = outcomes([Deferred.fromCoroutine(core.send(peer, {"type": "t", "data": i}))
                      for i in range(5)])
    clock.advance(INTERVAL)
    assert sends == []  # the batch is with the worker, not committed: no answer yet
    other = sqlite3.connect(str(tmp_path / "a.db"))
    assert other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    db.worker.run_next()
    assert db.conn.commits == before + 1  # five messages, one transaction
    assert len(sends) == 5 and all(state is DeliveryState.QUEUED for _, state in sends)
    ids = [msg_id for msg_id, _ in sends]
    rows = [m for (m,) in other.execute("SELECT msg_id FROM outbox ORDER BY rowid")]
    assert rows == ids  # on disk, in the order they were sent
    other.close()
    core.stopService()
