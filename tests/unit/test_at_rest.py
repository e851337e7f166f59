"""What a seized, powered-off disk reveals: the state database is a
SQLCipher file whose key is sealed with the passphrase; a wrong passphrase is a
clear error; a plain database is migrated once, every row kept, with a backup.

The end-to-end check runs two real NodeCores over the in-memory fake network,
each on a real threaded SQLite (SQLCipher) file, then reads every byte of the
data directories like ``strings`` would.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorThreads
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import directlyProvides

from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import create, onion_address_from_public_key
from aegis_hidden.node import NodeCore
from aegis_hidden.node._peering import PeeringService
from aegis_hidden.peers import (
    DB_FILE_NAME,
    DatabaseCorrupt,
    DatabaseKeyError,
    InlineSQLite,
    ThreadedSQLite,
    check_database,
    is_plain_sqlite,
    key_file_path,
    load_database_key,
)
from aegis_hidden.testing import FakeNetwork, result_of

PASSPHRASE = "correct horse battery staple"


class _Call:
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
    """The SQLite worker's side of a reactor: calls from the thread are queued and run
    when the test drains them (the node itself runs on a ``task.Clock``)."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Any, tuple[Any, ...]]] = queue.Queue()
        directlyProvides(self, IReactorThreads, IReactorFromThreads)

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.calls.put((f, args))

    def callLater(self, delay: float, f: Any, *args: Any) -> _Call:
        call = _Call(f, args)
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


def raw_bytes(directory: Path) -> bytes:
    """Every byte of every file under ``directory`` (what ``strings -r`` reads)."""
    return b"\n".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_a_passphrase_set_data_dir_shows_no_peer_message_or_id(tmp_path: Path) -> None:
    clock, threads, net = Clock(), ThreadReactor(), FakeNetwork()
    nodes = []
    for name in ("a", "b"):
        data = tmp_path / name
        data.mkdir()
        address = create(data / "identity", time.time(), passphrase=PASSPHRASE).onion
        path = str(data / DB_FILE_NAME)
        db = ThreadedSQLite(threads, path, key=load_database_key(path, PASSPHRASE))
        threads.drain_until(db.open())
        core = NodeCore(Config(), None, str(data), EventBus(now=clock.seconds), clock,
                        db=db, local_address=address)
        core.attach_session_factory(net.node(address))
        core.startService()
        threads.drain_until(core.when_ready())
        nodes.append((core, db, data))
    (a, a_db, a_dir), (b, b_db, b_dir) = nodes
    threads.drain_until(Deferred.fromCoroutine(a.store.add(b.local_address)))
    bodies, ids = [], []
    for i in range(5):
        body = f"meet at the north gate {i} {os.urandom(6).hex()}"
        msg_id, _ = threads.drain_until(Deferred.fromCoroutine(
            a.send(b.local_address, {"type": "chat", "data": body})))
        bodies.append(body)
        ids.append(msg_id)
    for _ in range(50):  # acknowledgements and their deletes reach the disk
        clock.advance(1)
        threads.drain_until(a_db._group.drain())
        threads.drain_until(b_db._group.drain())
    assert a.messenger.outbox_size() == 0
    PeeringService(a, [b.local_address], a_dir, clock).write_status()
    PeeringService(b, [], b_dir, clock).write_status()
    for core, db, _ in nodes:
        core.stopService()
        threads.drain_until(db.close())
    for directory, peer in ((a_dir, b.local_address), (b_dir, a.local_address)):
        assert not is_plain_sqlite(directory / DB_FILE_NAME)
        raw = raw_bytes(directory)
        for secret in (peer, peer.removesuffix(".onion"), *bodies, *ids):
            for form in (secret.encode(), secret.encode("utf-16-le")):
                assert form not in raw, (directory.name, secret)
        assert b"north gate" not in raw
    # and the right passphrase opens it all again
    again = InlineSQLite(str(a_dir / DB_FILE_NAME),
                         key=load_database_key(a_dir / DB_FILE_NAME, PASSPHRASE))
    peers = result_of(again.run(lambda c: [r[0] for r in c.execute("SELECT peer_id FROM peers")]))
    assert peers == [b.local_address]
    result_of(again.close())


def test_a_wrong_or_missing_passphrase_is_a_clear_error_and_changes_nothing(
        tmp_path: Path) -> None:
    path = tmp_path / DB_FILE_NAME
    key = load_database_key(path, PASSPHRASE)
    db = InlineSQLite(str(path), key=key)
    result_of(db.run(lambda c: c.execute("INSERT INTO peers (peer_id, added) VALUES ('p', 1)")))
    result_of(db.close())
    before = (path.read_bytes(), key_file_path(path).read_bytes())
    with pytest.raises(DatabaseKeyError, match="wrong passphrase"):
        load_database_key(path, "not the passphrase")
    with pytest.raises(DatabaseKeyError, match="sealed with a passphrase"):
        load_database_key(path, None)
    assert (path.read_bytes(), key_file_path(path).read_bytes()) == before
    with pytest.raises(DatabaseKeyError, match="does not open"):
        InlineSQLite(str(path), key=os.urandom(32))  # a key of another database
    with pytest.raises(DatabaseCorrupt, match="encrypted"):
        check_database(str(path))  # no key: said so, not "damaged"
    assert check_database(str(path), key) is not None


def test_an_encrypted_database_without_its_key_file_is_never_recreated(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE_NAME
    key = load_database_key(path, None)  # no passphrase: the key file is 0600, unsealed
    assert os.stat(key_file_path(path)).st_mode & 0o777 == 0o600
    result_of(InlineSQLite(str(path), key=key).close())
    key_file_path(path).unlink()
    before = path.read_bytes()
    with pytest.raises(DatabaseCorrupt, match=r"key file .* is\s+missing"):
        load_database_key(path, PASSPHRASE)
    assert path.read_bytes() == before and not key_file_path(path).exists()


def test_an_unsealed_key_file_is_sealed_once_a_passphrase_is_given(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE_NAME
    key = load_database_key(path, None)
    assert b'"cipher": "none"' in key_file_path(path).read_bytes()
    assert load_database_key(path, PASSPHRASE) == key
    assert key.hex().encode() not in key_file_path(path).read_bytes()
    with pytest.raises(DatabaseKeyError, match="sealed"):
        load_database_key(path, None)


def test_a_plain_database_is_migrated_once_with_every_row_and_a_backup(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE_NAME
    plain = InlineSQLite(str(path))

    def fill(conn: sqlite3.Connection) -> None:
        for i in range(300):
            conn.execute("INSERT INTO peers (peer_id, added) VALUES (?, ?)", (f"peer{i}", i))
            conn.execute("INSERT INTO outbox (msg_id, peer_id, body, created, next_attempt) "
                         "VALUES (?, ?, ?, 1, 1)", (f"m{i}", f"peer{i}", f"body {i}"))
        conn.execute("INSERT INTO records (onion, kind, sequence, data, stored) "
                     "VALUES ('o', 1, 7, x'00ff', 1)")

    result_of(plain.run(fill))
    result_of(plain.close())
    leftover = tmp_path / f"{DB_FILE_NAME}.encrypting-1"  # an interrupted migration's copy
    leftover.write_bytes(os.urandom(4096))

    def dump(conn: Any) -> dict[str, list[tuple[Any, ...]]]:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall())  # noqa: S608
                for t in ("peers", "outbox", "records", "mldsa_pins")}

    conn = sqlite3.connect(str(path))
    rows = dump(conn)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    key = load_database_key(path, PASSPHRASE)
    db = InlineSQLite(str(path), key=key)
    assert db.plain_backup is not None
    assert result_of(db.run(dump)) == rows
    assert result_of(db.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])) == version
    result_of(db.close())
    assert not is_plain_sqlite(path) and b"body 1" not in path.read_bytes()
    assert not leftover.exists()
    backups = list(tmp_path.glob(f"{DB_FILE_NAME}.plain-backup-*"))
    assert [str(p) for p in backups] == [db.plain_backup]
    old = sqlite3.connect(str(backups[0]))
    assert dump(old) == rows  # the backup is the untouched plain database
    old.close()
    again = InlineSQLite(str(path), key=key)  # once: the encrypted file is opened as it is
    assert again.plain_backup is None
    assert result_of(again.run(dump)) == rows
    result_of(again.close())
    assert len(list(tmp_path.glob(f"{DB_FILE_NAME}.plain-backup-*"))) == 1


def test_db_check_and_backup_open_the_encrypted_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aegis_hidden.cli import main

    path = tmp_path / DB_FILE_NAME
    db = InlineSQLite(str(path), key=load_database_key(path, PASSPHRASE))
    result_of(db.run(lambda c: c.execute("INSERT INTO peers (peer_id, added) VALUES ('p', 1)")))
    result_of(db.close())
    monkeypatch.setenv("AEGIS_HIDDEN_PASSPHRASE", PASSPHRASE)
    assert main(["db", "check", "--data-dir", str(tmp_path)]) == 0
    assert "1 peers, 0 queued messages, encrypted (SQLCipher)" in capsys.readouterr().out
    assert main(["db", "backup", "--data-dir", str(tmp_path), str(tmp_path / "b.db")]) == 0
    assert not is_plain_sqlite(tmp_path / "b.db")
    assert main(["db", "restore", "--data-dir", str(tmp_path), str(tmp_path / "b.db")]) == 0
    assert "restored" in capsys.readouterr().out
    again = InlineSQLite(str(path), key=load_database_key(path, PASSPHRASE))
    assert result_of(again.run(lambda c: c.execute("SELECT peer_id FROM peers").fetchall())
                     ) == [("p",)]
    result_of(again.close())
    monkeypatch.setenv("AEGIS_HIDDEN_PASSPHRASE", "wrong")
    assert main(["db", "check", "--data-dir", str(tmp_path)]) != 0
    assert "wrong passphrase" in capsys.readouterr().err


def test_the_dedup_window_keeps_keyed_hashes_and_minutes_not_who_sent_what(
        tmp_path: Path) -> None:
    clock, net = Clock(), FakeNetwork()
    clock.advance(1_000_037.5)
    cores = []
    for name in ("a", "b"):
        address = onion_address_from_public_key(os.urandom(32))
        db = InlineSQLite(str(tmp_path / f"{name}.db"))
        core = NodeCore(Config(), None, str(tmp_path), EventBus(now=clock.seconds), clock,
                        db=db, local_address=address)
        core.attach_session_factory(net.node(address))
        core.startService()
        result_of(core.when_ready())
        cores.append((core, db))
    (a, _), (b, b_db) = cores
    result_of(Deferred.fromCoroutine(a.store.add(b.local_address)))
    msg_id, _ = result_of(Deferred.fromCoroutine(a.send(b.local_address, {"type": "t"})))
    rows = result_of(b_db.run(lambda c: c.execute("SELECT * FROM seen").fetchall()))
    assert len(rows) == 1
    digest, received = rows[0]
    assert len(digest) == 16 and received % 60 == 0 and clock.seconds() - received < 60
    flat = repr(rows).encode()
    assert a.local_address[:20].encode() not in flat and msg_id.encode() not in flat
    # a copy is still recognised after a restart (the hash key is in the database)
    b.stopService()
    b2 = NodeCore(Config(), None, str(tmp_path), EventBus(now=clock.seconds), clock, db=b_db,
                  local_address=b.local_address)
    b2.startService()
    result_of(b2.when_ready())
    assert b2.messenger._seen_digest(a.local_address, msg_id) in b2.messenger._seen


def test_delivery_states_keep_no_peer_no_body_and_minutes_only(tmp_path: Path) -> None:
    from aegis_hidden.api._deliveries import DeliveryLog

    clock = Clock()
    clock.advance(1_000_037.5)
    db = InlineSQLite(str(tmp_path / "d.db"))
    bus = EventBus(now=clock.seconds)
    log = DeliveryLog(db, bus, clock.seconds)
    peer = onion_address_from_public_key(os.urandom(32))
    msg_id = os.urandom(16).hex()
    bus.emit("delivery_state", id=msg_id, peer=peer, state="acknowledged")
    for d in log.writes:
        result_of(d)
    rows = result_of(db.run(lambda c: c.execute("SELECT * FROM api_delivery_states").fetchall()))
    assert rows == [(msg_id, None, "acknowledged", 1_000_020.0)]
    assert result_of(Deferred.fromCoroutine(log.state(msg_id))) == "acknowledged"
