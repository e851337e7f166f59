"""``aegis-hidden wipe``: the emergency wipe of a stopped node's data dir.

It destroys, in this order, the database key, the identity's key files, the API
token, the logs and any plain database backup (overwritten with random bytes,
flushed, deleted), then deletes the encrypted database: without its key it is
noise. On flash storage (SSD, SD cards, phones) an overwrite may land on fresh
cells and leave the old ones readable until the controller erases them; the
passphrase seal and full-disk encryption are what protect those
(docs/threat-model.md, "Device seized"). A running node must be stopped first
(the API's ``POST /api/node/wipe`` stops it and wipes in one step).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from .._secrets import PassphraseSourceError, read_passphrase
from ..identity import is_encrypted
from ..node import set_duress_passphrase, wipe
from ..peers import DB_FILE_NAME, DatabaseError, key_file_path, load_database_key
from ._common import CLIError, add_node_args, node_config


def register(sub: Any) -> None:
    p = sub.add_parser("wipe", help="destroy the node's keys, logs and database (node "
                       "stopped; cannot be undone)")
    add_node_args(p)
    p.add_argument("--log-file", action="append", default=[],
                   help="a node log outside the data dir to destroy too (repeatable)")
    p.add_argument("--yes", action="store_true",
                   help="do not ask; without it, type the data dir's path to confirm")
    p.add_argument("--set-duress", action="store_true",
                   help="wipe nothing now: store a duress passphrase (its hash) that, given "
                   "to the node at start instead of the real one, wipes it")
    p.add_argument("--duress-passphrase-file",
                   help="with --set-duress: file holding the duress passphrase (else asked)")
    p.set_defaults(func=_wipe)


def _set_duress(args: argparse.Namespace, data_dir: Path) -> int:
    try:
        duress = read_passphrase(args.duress_passphrase_file) if args.duress_passphrase_file \
            else None
    except PassphraseSourceError as e:
        raise CLIError(str(e)) from None
    if duress is None:
        if not sys.stdin.isatty():
            raise CLIError("give the duress passphrase with --duress-passphrase-file")
        duress = getpass.getpass("duress passphrase: ")
        if getpass.getpass("again: ") != duress:
            raise CLIError("the two passphrases differ")
    key_file = key_file_path(data_dir / DB_FILE_NAME)
    if not key_file.exists() or not is_encrypted(key_file):
        raise CLIError("a duress passphrase needs a node sealed with a passphrase (start it "
                       "with one first): without one there is nothing to ask for")
    try:
        load_database_key(data_dir / DB_FILE_NAME, duress)
    except DatabaseError:
        pass  # it is not the real passphrase: good
    else:
        raise CLIError("that is the node's real passphrase: choose another")
    try:
        path = set_duress_passphrase(data_dir, duress)
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(f"duress passphrase stored (a salted scrypt hash) in {path}: given to the node at "
          "start, it wipes the node, which then starts as a new, empty one")
    return 0


def _wipe(args: argparse.Namespace) -> int:
    cfg, data_dir = node_config(args)
    if not data_dir.is_dir():
        raise CLIError(f"{data_dir}: no such data dir")
    if args.set_duress:
        return _set_duress(args, data_dir)
    pid = data_dir / "twistd.pid"
    if pid.exists():
        raise CLIError(f"{pid} exists: stop the node first (or wipe through its API, "
                       "POST /api/node/wipe, which stops it)")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CLIError("refusing to wipe without --yes when not on a terminal")
        answer = input(f"this destroys the keys and data of {data_dir}; type its path to "
                       "confirm: ")
        if answer.strip() != str(data_dir):
            raise CLIError("not confirmed: nothing was changed")
    report = wipe(data_dir, cfg.identity_dir(data_dir), [Path(p) for p in args.log_file])
    print(f"wiped {data_dir}: {len(report.overwritten)} files overwritten, "
          f"{len(report.deleted)} deleted")
    for path in report.failed:
        print(f"could not destroy {path}", file=sys.stderr)
    return 1 if report.failed else 0
