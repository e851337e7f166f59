"""``aegis-hidden config check PATH``, ``config migrate SEED.yaml`` and ``config defaults``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ..config import (
    Config,
    ConfigError,
    describe,
    load_config,
    migrate,
    parse_config,
    read_yaml,
)
from ._common import CLIError


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="validate or print configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    check = csub.add_parser("check", help="validate a configuration file")
    check.add_argument("path")
    check.set_defaults(func=_check)
    migrate = csub.add_parser(
        "migrate", help="write the nearest safe configuration to one written for the seed "
        "spec, with a comment on each changed line")
    migrate.add_argument("path", help="the configuration to migrate (read only)")
    migrate.add_argument("-o", "--output", help="write here (default: print it)")
    migrate.add_argument("--force", action="store_true",
                         help="replace the output file if it exists")
    migrate.set_defaults(func=_migrate)
    defaults = csub.add_parser("defaults", help="print every setting with its default")
    fmt = defaults.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object")
    fmt.add_argument("--markdown", action="store_true",
                     help="the key table of docs/configuration.md")
    fmt.add_argument("--example", action="store_true",
                     help="an annotated YAML file (docs/aegis-hidden.example.yaml)")
    defaults.set_defaults(func=_defaults)


def _check(args: argparse.Namespace) -> int:
    try:
        load_config(Path(args.path))
    except ConfigError as e:  # every problem of the file, each with its fix
        raise CLIError(str(e), 3 if e.privacy else 2) from None
    print(f"{args.path}: OK")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    try:
        migration = migrate(read_yaml(Path(args.path)))
    except ConfigError as e:
        raise CLIError(str(e), 2) from None
    text = migration.to_yaml(args.path)
    parse_config(yaml.safe_load(text))  # what is written passes config check
    if args.output is None:
        print(text, end="")
        return 0
    out = Path(args.output)
    if out.resolve() == Path(args.path).resolve():
        raise CLIError(f"{out}: the output would replace the configuration it came from; "
                       "write it elsewhere and compare", 1)
    try:
        write_new_file(out, text, force=args.force)
    except FileExistsError:
        raise CLIError(f"{out} exists; pass --force to replace it", 1) from None
    except OSError as e:
        raise CLIError(f"{out}: cannot write it: {e}", 1) from None
    print(f"{out}: written, {migration.changed} change(s); "
          f"check it with: aegis-hidden config check {out}", file=sys.stderr)
    return 0


def write_new_file(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file in the same
    directory, linked or renamed into place); an existing file is kept unless ``force``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: never replaced by accident
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _defaults(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({k: v for k, v, _ in describe()}, indent=2))
    elif args.markdown:
        print(markdown_table())
    elif args.example:
        print(example_yaml(), end="")
    else:
        print(yaml.safe_dump(Config().to_dict(), sort_keys=False), end="")
    return 0


def markdown_table() -> str:
    """Every key with its default and meaning, as a Markdown table."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, doc in describe():
        shown = json.dumps(default)
        meaning = doc.replace("|", "\\|")
        lines.append(f"| `{key}` | `{shown}` | {meaning} |")
    return "\n".join(lines)


def _yaml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


def example_yaml() -> str:
    """Every key at its default, each with its meaning as a comment."""
    out = [
        "# aegis-hidden example configuration: every key, set to its default.",
        "# Copy it, change what you need, and check it with: aegis-hidden config check FILE",
        "# Every key is optional; an absent key takes the default shown here.",
        "# Generated by: aegis-hidden config defaults --example",
        "",
    ]
    section = None
    for key, default, doc in describe():
        if "." in key:
            sec, name = key.split(".", 1)
            if sec != section:
                out += ["", f"{sec}:"]
                section = sec
            out += [f"  # {line}" for line in textwrap.wrap(doc, 84)]
            out.append(f"  {name}: {_yaml_value(default)}")
        else:
            out += [f"# {line}" for line in textwrap.wrap(doc, 86)]
            out.append(f"{key}: {_yaml_value(default)}")
    return "\n".join(out) + "\n"
