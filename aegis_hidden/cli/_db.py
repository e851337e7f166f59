"""``aegis-hidden db check|backup|restore``: the node's state database (docs/operations.md).

``check`` only reads. ``backup`` copies a sound database with SQLite's online
backup (safe while the node runs) to a new file, never over an existing one.
``restore`` needs the node stopped: it checks the backup, moves the current file
(damaged or not) aside under a timestamped name, never deleting it, and puts a
copy of the backup in its place.

The database is SQLCipher (encrypted at rest): each command opens its key file
(``node.sqlite3.key`` beside it) with the passphrase that seals the identity
(``--passphrase-file``, ``AEGIS_HIDDEN_PASSPHRASE``, asked on a terminal). A
backup is encrypted with the same key, so it needs that key file to be
restored or read: back up the key file too (it is sealed with the passphrase).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from .._secrets import PassphraseSourceError, read_passphrase
from ..identity import is_encrypted
from ..peers import (
    DB_FILE_NAME,
    CipherError,
    DatabaseError,
    check_database,
    connect_encrypted,
    is_plain_sqlite,
    key_file_path,
    load_database_key,
)
from ._common import CLIError, add_node_args, node_config

_SIDE_FILES = ("-wal", "-shm")


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="check, back up or restore the node's state database")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dsub.required = True
    check = dsub.add_parser("check", help="integrity and schema check (read only)")
    _target_args(check)
    check.set_defaults(func=_check)
    backup = dsub.add_parser("backup", help="copy the database to a new file (node may run)")
    _target_args(backup)
    backup.add_argument("dest", help="the backup file to create (must not exist)")
    backup.set_defaults(func=_backup)
    restore = dsub.add_parser(
        "restore", help="replace the database with a backup (node stopped; the current "
        "file is moved aside, never deleted)")
    _target_args(restore)
    restore.add_argument("backup", help="a file written by 'aegis-hidden db backup'")
    restore.set_defaults(func=_restore)


def _target_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--file", help=f"the database file (default: DATA_DIR/{DB_FILE_NAME})")
    p.add_argument("--key-file", help="its key file (default: the database file + .key)")
    p.add_argument("--passphrase-file", help="file with the passphrase (or set "
                   "AEGIS_HIDDEN_PASSPHRASE; asked on a terminal)")


def database_key(args: argparse.Namespace, path: Path) -> bytes | None:
    """The key of the database at ``path`` (``None``: a plain database, no key file)."""
    key_path = Path(args.key_file) if getattr(args, "key_file", None) else key_file_path(path)
    if not key_path.exists():
        if path.exists() and not is_plain_sqlite(path):
            raise CLIError(f"{path} is encrypted and its key file {key_path} is missing "
                           "(give it with --key-file)")
        return None
    try:
        passphrase = read_passphrase(getattr(args, "passphrase_file", None))
    except PassphraseSourceError as e:
        raise CLIError(str(e)) from None
    if passphrase is None and is_encrypted(key_path):
        if not sys.stdin.isatty():
            raise CLIError("the database key is sealed: use --passphrase-file or "
                           "AEGIS_HIDDEN_PASSPHRASE")
        passphrase = getpass.getpass("passphrase: ")
    # the key file beside the database, or the one named: read, never created or re-sealed
    tmp_db = key_path.with_name(key_path.name.removesuffix(".key"))
    if key_path != key_file_path(tmp_db):
        raise CLIError(f"{key_path}: a key file's name ends in .key")
    try:
        return load_database_key(tmp_db, None if not is_encrypted(key_path) else passphrase)
    except DatabaseError as e:
        raise CLIError(str(e)) from None


def _open(path: Path, key: bytes | None) -> sqlite3.Connection:
    if key is not None and not is_plain_sqlite(path):
        return connect_encrypted(str(path), key, read_only=True)
    return sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)


def database_path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    _, data_dir = node_config(args)
    return data_dir / DB_FILE_NAME


def _checked(path: Path, key: bytes | None) -> int:
    try:
        version = check_database(str(path), key)
    except DatabaseError as e:
        raise CLIError(str(e)) from None
    if version is None:
        raise CLIError(f"{path}: no such file (a node creates it on first start)")
    return version


def _summary(path: Path, key: bytes | None) -> str:
    conn = _open(path, key)
    try:
        peers = conn.execute("SELECT count(*) FROM peers").fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    sealed = "encrypted (SQLCipher)" if not is_plain_sqlite(path) else "NOT encrypted"
    return f"{peers} peers, {queued} queued messages, {sealed}"


def _check(args: argparse.Namespace) -> int:
    path = database_path(args)
    key = database_key(args, path)
    version = _checked(path, key)
    print(f"ok: {path} (schema version {version}, {_summary(path, key)})")
    return 0


def _copy(source: Path, dest: Path, key: bytes | None) -> None:
    """SQLite online backup of ``source`` into the new file ``dest`` (0600), checked."""
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        src = _open(source, key)
        try:
            # an encrypted source is copied into a file encrypted with the same key
            out = (connect_encrypted(str(tmp), key) if key is not None
                   and not is_plain_sqlite(source) else sqlite3.connect(str(tmp)))
            try:
                src.backup(out)
                out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            finally:
                out.close()
        finally:
            src.close()
        _checked(tmp, key)
        if dest.exists():
            raise CLIError(f"{dest} already exists: choose a new name (nothing was overwritten)")
        os.replace(tmp, dest)
    finally:
        for suffix in ("", *_SIDE_FILES):
            leftover = Path(str(tmp) + suffix)
            if leftover.exists():
                leftover.unlink()


def _backup(args: argparse.Namespace) -> int:
    path = database_path(args)
    dest = Path(args.dest)
    if dest.exists():
        raise CLIError(f"{dest} already exists: choose a new name (nothing was overwritten)")
    key = database_key(args, path)
    _checked(path, key)
    try:
        _copy(path, dest, key)
    except (OSError, sqlite3.Error, CipherError) as e:
        raise CLIError(f"backup of {path} to {dest} failed: {e}") from None
    print(f"backed up {path} to {dest} ({_summary(dest, key)})")
    if key is not None:
        print(f"the backup is encrypted with the key in {key_file_path(path)}: keep a copy "
              "of that file (sealed with the passphrase) with the backup")
    return 0


def _restore(args: argparse.Namespace) -> int:
    path = database_path(args)
    backup = Path(args.backup)
    key = database_key(args, path)
    _checked(backup, key)
    aside = None
    if path.exists():
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        if aside.exists():
            raise CLIError(f"{aside} already exists: try again in a second")
        try:
            for suffix in ("", *_SIDE_FILES):
                current = Path(str(path) + suffix)
                if current.exists():
                    os.rename(current, Path(str(aside) + suffix))
        except OSError as e:
            raise CLIError(f"cannot move {path} aside: {e}") from None
    try:
        _copy(backup, path, key)
    except (OSError, sqlite3.Error, CipherError) as e:
        raise CLIError(f"restore of {backup} to {path} failed: {e}"
                       + (f" (the previous file is at {aside})" if aside else "")) from None
    print(f"restored {path} from {backup} ({_summary(path, key)})")
    if aside is not None:
        print(f"the previous file was moved to {aside} (not deleted)")
    return 0
