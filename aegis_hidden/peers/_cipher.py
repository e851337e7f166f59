"""The state database encrypted at rest: SQLCipher, its key file, the one-time migration.

The database key is 32 random bytes, used as SQLCipher's raw key (no key
derivation on open: the secret is already random). It lives in
``DATA_DIR/node.sqlite3.key``, an aegis-hidden key file (the format of the
identity's key files, :mod:`aegis_hidden.identity._keyfile`): sealed with the
passphrase that seals the identity keys (scrypt + ChaCha20-Poly1305) when the
node has one, else stored like the unsealed key files (mode 0600: protection
against casual access only). docs/threat-model.md, "Device seized".

Rules: a wrong passphrase is a clear error (:class:`DatabaseKeyError`) and
touches nothing; an encrypted database whose key file is missing is never
re-created; a plain database (from before encryption) is migrated once, with
``sqlcipher_export``, the plain file kept beside it as a backup
(``node.sqlite3.plain-backup-<time>``) until the operator deletes it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any, cast

from sqlcipher3 import dbapi2 as sqlcipher  # type: ignore[import-untyped]

from ..identity import KeyFileError, PassphraseRequired, WrongPassphrase, is_encrypted
from ..identity._keyfile import read_key_file, write_key_file

KEY_FILE_SUFFIX = ".key"
KEY_LABEL = "aegis-hidden state database"
KEY_SIZE = 32
PLAIN_HEADER = b"SQLite format 3\x00"
CipherError: type[Exception] = sqlcipher.Error
"""Base of the errors the SQLCipher module raises (not a subclass of sqlite3.Error)."""


class DatabaseError(Exception):
    """The state database cannot be used (newer schema, corrupt file, wrong key...)."""


RECOVERY_HINT = (
    "the node refuses to start and has not changed the file. Keep it: stop the node, "
    "copy it aside, run 'aegis-hidden db check', then either restore a backup with "
    "'aegis-hidden db restore BACKUP' (the damaged file is moved aside, never deleted) "
    "or follow docs/operations.md, 'Recovering the state database'")


class DatabaseCorrupt(DatabaseError):
    """The state database file exists but is damaged, empty or of an unknown schema.

    ``path`` names the file and ``problem`` says what is wrong; the message adds
    what to do. Nothing ever replaces or re-creates such a file.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"the state database {path} {problem}; {RECOVERY_HINT}")


class DatabaseKeyError(DatabaseError):
    """The database key cannot be had or does not fit: wrong passphrase, key file
    missing or damaged, a key of another database."""


def key_file_path(db_path: str | Path) -> Path:
    return Path(str(db_path) + KEY_FILE_SUFFIX)


def is_plain_sqlite(path: str | Path) -> bool:
    """True when ``path`` starts with SQLite's clear-text header (not encrypted)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(PLAIN_HEADER)) == PLAIN_HEADER
    except OSError:
        return False


def load_database_key(db_path: str | Path, passphrase: str | None) -> bytes:
    """The key of the database at ``db_path``: unsealed, or made on first use.

    A new key is made (and its file written, sealed with ``passphrase`` when one
    is given) only when there is no key file and no encrypted database: a new
    node, or a plain database about to be migrated. An unsealed key file met
    with a passphrase is re-sealed with it (the operator sealed the identity
    later).
    """
    db_path = Path(db_path)
    key_path = key_file_path(db_path)
    if key_path.exists():
        try:
            _, secrets = read_key_file(key_path, passphrase)
        except WrongPassphrase:
            raise DatabaseKeyError(
                f"wrong passphrase: it does not open the database key {key_path} (the "
                "passphrase that seals the identity keys opens it too); nothing was "
                "changed") from None
        except PassphraseRequired:
            raise DatabaseKeyError(
                f"the database key {key_path} is sealed with a passphrase: give it "
                "(--passphrase-file, security.key_passphrase_file or "
                "AEGIS_HIDDEN_PASSPHRASE)") from None
        except KeyFileError as e:
            raise DatabaseKeyError(f"the database key cannot be read: {e}") from None
        key = secrets.get("sqlcipher", b"")
        if len(key) != KEY_SIZE:
            raise DatabaseKeyError(f"{key_path}: no {KEY_SIZE}-byte database key in it "
                                   "(damaged, or not a database key file)")
        if passphrase is not None and not is_encrypted(key_path):
            write_key_file(key_path, {"sqlcipher": key}, KEY_LABEL, passphrase)
        return key
    if db_path.exists() and db_path.stat().st_size > 0 and not is_plain_sqlite(db_path):
        raise DatabaseCorrupt(
            str(db_path), f"is not a plain SQLite file and its key file {key_path} is "
            "missing: an encrypted database whose key file was lost (restore the key file "
            "from a backup: without it the database cannot be opened) or a damaged file")
    key = os.urandom(KEY_SIZE)
    write_key_file(key_path, {"sqlcipher": key}, KEY_LABEL, passphrase)
    return key


def _key_pragma(key: bytes) -> str:
    if len(key) != KEY_SIZE:
        raise ValueError(f"the database key must be {KEY_SIZE} bytes")
    return f"PRAGMA key = \"x'{key.hex()}'\""


def connect_encrypted(path: str, key: bytes, *, read_only: bool = False) -> sqlite3.Connection:
    """A SQLCipher connection keyed with ``key`` (the sqlite3 API; its own error classes).

    Raises :class:`DatabaseKeyError` when the key does not open the file.
    Temporary tables and sorts stay in memory, never in a clear-text temp file.
    """
    target = f"file:{urllib.parse.quote(path)}?mode=ro" if read_only else path
    conn: Any = sqlcipher.connect(target, uri=read_only, isolation_level=None,
                                  check_same_thread=False)
    try:
        conn.execute(_key_pragma(key))
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher.DatabaseError as e:
        conn.close()
        raise DatabaseKeyError(
            f"the database key does not open {path} ({e}): the key file belongs to "
            "another database, or the file is damaged. Nothing was changed") from None
    return cast(sqlite3.Connection, conn)


def _tables(conn: Any) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]


def encrypt_plain_database(path: str, key: bytes, *, now: float | None = None) -> Path:
    """Migrate the plain database at ``path`` to SQLCipher under ``key``, once.

    The encrypted copy is written beside it with ``sqlcipher_export``, every
    table's row count compared, then the plain file (with its WAL folded in) is
    linked (or copied) to ``<path>.plain-backup-<time>`` and the copy renamed
    over ``path``. Returns the backup's path. At every moment ``path`` holds the
    plain or the encrypted database: a crash before the last rename leaves the
    plain file where it was (the next start migrates again).
    """
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    backup = Path(f"{path}.plain-backup-{stamp}")
    tmp = Path(f"{path}.encrypting-{os.getpid()}")
    for leftover in Path(path).parent.glob(f"{Path(path).name}.encrypting-*"):
        leftover.unlink()  # an earlier, interrupted migration's (encrypted) copy
    if backup.exists():
        raise DatabaseKeyError(f"{backup} already exists: try again in a second")
    plain: Any = sqlcipher.connect(path, isolation_level=None)
    try:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        plain.execute("PRAGMA journal_mode = DELETE")  # the backup is one self-contained file
        (version,) = plain.execute("PRAGMA user_version").fetchone()
        counts = {t: plain.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: S608
                  for t in _tables(plain)}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        plain.execute("ATTACH DATABASE ? AS encrypted KEY \"x'" + key.hex() + "'\"",
                      (str(tmp),))
        plain.execute("SELECT sqlcipher_export('encrypted')")
        plain.execute(f"PRAGMA encrypted.user_version = {int(version)}")
        plain.execute("DETACH DATABASE encrypted")
    finally:
        plain.close()
    check = connect_encrypted(str(tmp), key)
    try:
        copied = {t: check.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # noqa: S608
                  for t in _tables(check)}
    finally:
        check.close()
    if copied != counts:
        tmp.unlink()
        raise DatabaseKeyError(f"encrypting {path} lost rows ({counts} became {copied}); "
                               "the plain file was left as it was")
    os.chmod(path, 0o600)
    try:
        os.link(path, backup)
    except OSError:  # no hard links here: a copy, on disk before the swap
        shutil.copyfile(path, backup)
        os.chmod(backup, 0o600)
        with open(backup, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return backup
