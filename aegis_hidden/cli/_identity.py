"""``aegis-hidden identity init|show|rotate|revoke|export``."""

from __future__ import annotations

import argparse
import base64
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from .. import identity as ident
from .._secrets import PassphraseSourceError, read_passphrase
from ._common import CLIError, add_node_args, node_config


def register(sub: Any) -> None:
    p = sub.add_parser("identity", help="create and inspect the node identity")
    isub = p.add_subparsers(dest="identity_command", metavar="ACTION")
    isub.required = True

    init = isub.add_parser("init", help="create a new identity (never overwrites one)")
    _common(init)
    init.add_argument("--encrypt", action="store_true",
                      help="seal the key files with a passphrase (asked, or from "
                           "--passphrase-file / AEGIS_HIDDEN_PASSPHRASE)")
    init.set_defaults(func=_init)

    show = isub.add_parser("show", help="print the identity (public facts only)")
    _common(show)
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=_show)

    rotate = isub.add_parser("rotate", help="new X-Wing / ML-DSA subkeys, same onion")
    _common(rotate)
    rotate.set_defaults(func=_rotate)

    revoke = isub.add_parser("revoke", help="sign a revocation of this identity")
    _common(revoke)
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    revoke.set_defaults(func=_revoke)

    export = isub.add_parser("export", help="write the signed public record")
    _common(export)
    export.add_argument("--output", "-o", help="file to write (default: stdout, base64)")
    export.set_defaults(func=_export)


def _common(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--passphrase-file", help="file with the key-file passphrase")


def _identity_dir(args: argparse.Namespace) -> Path:
    cfg, data_dir = node_config(args)
    return cfg.identity_dir(data_dir)


def _passphrase(args: argparse.Namespace, *, ask: bool, confirm: bool = False) -> str | None:
    try:
        value = read_passphrase(args.passphrase_file)
    except PassphraseSourceError as e:
        raise CLIError(str(e)) from None
    if value is None and ask:
        if not sys.stdin.isatty():
            raise CLIError("a passphrase is needed: use --passphrase-file or "
                           "AEGIS_HIDDEN_PASSPHRASE")
        value = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("again: ") != value:
            raise CLIError("the two passphrases differ")
    return value


def _load(args: argparse.Namespace) -> ident.NodeIdentity:
    directory = _identity_dir(args)
    master = directory / "master_key.json"
    passphrase = _passphrase(args, ask=ident.is_encrypted(master))
    try:
        return ident.load(directory, time.time(), passphrase=passphrase)
    except (ident.IdentityError, ident.KeyFileError) as e:
        raise CLIError(str(e)) from None


def _init(args: argparse.Namespace) -> int:
    directory = _identity_dir(args)
    passphrase = _passphrase(args, ask=args.encrypt, confirm=True) if args.encrypt else None
    try:
        node = ident.create(directory, time.time(), passphrase=passphrase)
    except ident.IdentityError as e:
        raise CLIError(str(e)) from None
    print(f"created identity {node.onion} in {directory}")
    return 0


def _show(args: argparse.Namespace) -> int:
    node = _load(args)
    summary = node.summary()
    summary["sealed"] = ident.is_encrypted(node.directory / "master_key.json")
    summary["directory"] = str(node.directory)
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"onion:           {node.onion}")
    print(f"ed25519 public:  {summary['ed25519_public']}")
    print(f"sequence:        {node.record.sequence}")
    print(f"created:         {_when(node.record.created)}")
    print(f"expires:         {_when(node.record.expires)}")
    print(f"x-wing public:   {node.xwing_public[:16].hex()}... ({len(node.xwing_public)} bytes)")
    mldsa = node.record.mldsa_public
    print(f"ml-dsa-65:       {mldsa[:16].hex()}... ({len(mldsa)} bytes)")
    if node.record.rotated_from:
        print(f"ml-dsa rotated:  from {node.record.rotated_from[:16].hex()}...")
    binding = node.i2p_binding
    print(f"i2p address:     {binding.b32 if binding else 'none'}"
          + (" (committed in the record; revealed only to chosen peers)" if binding else ""))
    sealed = "sealed with a passphrase" if summary["sealed"] else "not encrypted (mode 0600)"
    print(f"key files:       {sealed}")
    return 0


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _rotate(args: argparse.Namespace) -> int:
    node = _load(args)
    directory = node.directory
    passphrase = _passphrase(args, ask=ident.is_encrypted(directory / "master_key.json"))
    new = ident.rotate(node, time.time(), passphrase=passphrase)
    print(f"rotated subkeys of {new.onion}: record sequence {new.record.sequence}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    node = _load(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise CLIError("revoking is final: pass --yes to confirm")
        if input(f"revoke {node.onion} for good? type 'revoke': ").strip() != "revoke":
            raise CLIError("not revoked")
    rec = ident.revoke(node, time.time(), args.reason)
    print(f"revoked {node.onion} (sequence {rec.sequence}); publish "
          f"{node.directory / 'revocation.bin'} to your peers")
    return 0


def _export(args: argparse.Namespace) -> int:
    node = _load(args)
    data = node.record.to_bytes()
    if args.output:
        ident.atomic_write(Path(args.output), data, mode=0o644)
        print(f"wrote the signed record of {node.onion} to {args.output} ({len(data)} bytes)")
    else:
        print(base64.b64encode(data).decode())
    return 0
