"""``aegis-hidden db check|backup|restore``: the node's state database (docs/operations.md).

``check`` only reads. ``backup`` copies a sound database with SQLite's online
backup (safe while the node runs) to a new file, never over an existing one.
``restore`` needs the node stopped: it checks the backup, moves the current file
(damaged or not) aside under a timestamped name, never deleting it, and puts a
copy of the backup in its place.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

from ..peers import DB_FILE_NAME, DatabaseError, check_database
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


def database_path(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    _, data_dir = node_config(args)
    return data_dir / DB_FILE_NAME


def _checked(path: Path) -> int:
    try:
        version = check_database(str(path))
    except DatabaseError as e:
        raise CLIError(str(e)) from None
    if version is None:
        raise CLIError(f"{path}: no such file (a node creates it on first start)")
    return version


def _summary(path: Path) -> str:
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True)
    try:
        peers = conn.execute("SELECT count(*) FROM peers").fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()
    return f"{peers} peers, {queued} queued messages"


def _check(args: argparse.Namespace) -> int:
    path = database_path(args)
    version = _checked(path)
    print(f"ok: {path} (schema version {version}, {_summary(path)})")
    return 0


def _copy(source: Path, dest: Path) -> None:
    """SQLite online backup of ``source`` into the new file ``dest`` (0600), checked."""
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{urllib.parse.quote(str(source))}?mode=ro", uri=True)
        try:
            out = sqlite3.connect(str(tmp))
            try:
                src.backup(out)
                out.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            finally:
                out.close()
        finally:
            src.close()
        _checked(tmp)
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
    _checked(path)
    try:
        _copy(path, dest)
    except (OSError, sqlite3.Error) as e:
        raise CLIError(f"backup of {path} to {dest} failed: {e}") from None
    print(f"backed up {path} to {dest} ({_summary(dest)})")
    return 0


def _restore(args: argparse.Namespace) -> int:
    path = database_path(args)
    backup = Path(args.backup)
    _checked(backup)
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
        _copy(backup, path)
    except (OSError, sqlite3.Error) as e:
        raise CLIError(f"restore of {backup} to {path} failed: {e}"
                       + (f" (the previous file is at {aside})" if aside else "")) from None
    print(f"restored {path} from {backup} ({_summary(path)})")
    if aside is not None:
        print(f"the previous file was moved to {aside} (not deleted)")
    return 0
