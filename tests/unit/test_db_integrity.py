"""A damaged state database stops the node loudly and is never replaced."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.python.failure import Failure

from aegis_hidden import tap
from aegis_hidden.cli._main import main
from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import (
    DB_FILE_NAME,
    DatabaseCorrupt,
    InlineSQLite,
    PeerStore,
    check_database,
)
from aegis_hidden.testing import result_of

PAGE = 4096


def make_database(path: Path, peers: int = 30, queued: int = 200) -> None:
    """A real node database with peers and queued messages, closed cleanly."""
    db = InlineSQLite(str(path))
    store = PeerStore(db, Clock().seconds)
    result_of(store.load())
    for i in range(peers):
        result_of(store.add(onion_address_from_public_key(bytes([i]) * 32)))

    def queue(conn: sqlite3.Connection) -> None:
        for i in range(queued):
            conn.execute("INSERT INTO outbox (msg_id, peer_id, body, created, next_attempt) "
                         "VALUES (?, ?, ?, 0, 0)", (f"m{i}", "p", "x" * 300))

    result_of(db.run(queue))
    result_of(db.close())
    assert not Path(str(path) + "-wal").exists()


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def newer_schema(path: Path) -> None:
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def foreign_tables(path: Path) -> None:
    conn = sqlite3.connect(str(path))
    conn.execute("PRAGMA user_version = 0")
    conn.close()


def damaged_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    assert data[:16] == b"SQLite format 3\x00" and len(data) > 6 * PAGE
    for page in range(1, len(data) // PAGE):  # every page but the header page
        start = page * PAGE + 8
        data[start:start + 64] = os.urandom(64)
    path.write_bytes(bytes(data))


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "garbage bytes": garbage,
    "truncated": truncated,
    "0 bytes": empty,
    "newer schema version": newer_schema,
    "tables without a schema version": foreign_tables,
    "header intact, pages damaged": damaged_pages,
}


@pytest.fixture(params=list(CORRUPTIONS))
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / DB_FILE_NAME
    make_database(path)
    CORRUPTIONS[request.param](path)
    return path, path.read_bytes()


def _unchanged(path: Path, before: bytes) -> None:
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()
                  if p.name.startswith(DB_FILE_NAME + ".")) == []  # nothing renamed / new


def test_check_refuses_and_names_the_file(damaged: tuple[Path, bytes]) -> None:
    path, before = damaged
    with pytest.raises(DatabaseCorrupt) as info:
        check_database(str(path))
    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "aegis-hidden db restore" in str(info.value)
    assert path.read_bytes() == before


def test_the_store_never_opens_or_recreates_it(damaged: tuple[Path, bytes]) -> None:
    path, before = damaged
    with pytest.raises(DatabaseCorrupt):
        InlineSQLite(str(path))
    assert path.read_bytes() == before


def test_twistd_options_refuse_to_start(damaged: tuple[Path, bytes]) -> None:
    path, before = damaged
    with pytest.raises(usage.UsageError) as info:
        tap.Options().parseOptions(["--data-dir", str(path.parent), "--no-api"])
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, DatabaseCorrupt)
    assert path.read_bytes() == before
    assert not (path.parent / "identity").exists()  # refused before anything was created


def test_cli_check_fails_and_changes_nothing(damaged: tuple[Path, bytes],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path, before = damaged
    assert main(["db", "check", "--file", str(path)]) == 1
    assert str(path) in capsys.readouterr().err
    _unchanged(path, before)
    assert main(["db", "backup", "--file", str(path), str(path.parent / "b.db")]) == 1
    assert not (path.parent / "b.db").exists()
    _unchanged(path, before)


def test_a_sound_database_and_a_missing_one_pass(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE_NAME
    assert check_database(str(path)) is None
    make_database(path)
    before = path.read_bytes()
    assert check_database(str(path)) == 4
    assert path.read_bytes() == before
    tap.Options().parseOptions(["--data-dir", str(tmp_path), "--no-api"])


def test_backup_then_restore_over_a_damaged_file(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / DB_FILE_NAME
    make_database(path, peers=7, queued=24)
    backup = tmp_path / "backup.sqlite3"
    assert main(["db", "backup", "--file", str(path), str(backup)]) == 0
    assert backup.stat().st_mode & 0o777 == 0o600
    assert main(["db", "backup", "--file", str(path), str(backup)]) == 1  # never overwrites
    assert main(["db", "check", "--file", str(backup)]) == 0
    assert "7 peers, 24 queued messages" in capsys.readouterr().out
    damaged_pages(path)
    before = path.read_bytes()
    assert main(["db", "restore", "--file", str(path), str(backup)]) == 0
    out = capsys.readouterr().out
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith(DB_FILE_NAME + ".damaged-")
                and not p.name.endswith(("-wal", "-shm"))]
    assert str(aside) in out
    assert aside.read_bytes() == before  # moved aside, not deleted
    assert check_database(str(path)) == 4
    assert main(["db", "check", "--file", str(path)]) == 0
    assert "7 peers, 24 queued messages" in capsys.readouterr().out


def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE_NAME
    make_database(path)
    before = path.read_bytes()
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"")
    assert main(["db", "restore", "--file", str(path), str(bad)]) == 1
    assert path.read_bytes() == before


def test_core_that_cannot_load_its_state_is_fatal(tmp_path: Path) -> None:
    clock = Clock()
    db = InlineSQLite(str(tmp_path / "x.db"))
    result_of(db.close())  # every query now fails
    fatal: list[Failure] = []
    core = NodeCore(Config(), None, str(tmp_path), EventBus(now=clock.seconds), clock, db=db,
                    local_address=onion_address_from_public_key(bytes(32)),
                    on_fatal=fatal.append)
    core.startService()
    assert len(fatal) == 1
    core.when_ready().addErrback(lambda _: None)
