"""``aegis-hidden config check PATH`` and ``config defaults``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, ConfigError, PrivacyError, describe, load_config
from ._common import CLIError


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="validate or print configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    check = csub.add_parser("check", help="validate a configuration file")
    check.add_argument("path")
    check.set_defaults(func=_check)
    defaults = csub.add_parser("defaults", help="print every setting with its default")
    fmt = defaults.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object")
    fmt.add_argument("--markdown", action="store_true",
                     help="the key table of docs/configuration.md")
    defaults.set_defaults(func=_defaults)


def _check(args: argparse.Namespace) -> int:
    try:
        load_config(Path(args.path))
    except PrivacyError as e:
        raise CLIError(str(e), 3) from None
    except ConfigError as e:
        raise CLIError(str(e), 2) from None
    print(f"{args.path}: OK")
    return 0


def _defaults(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({k: v for k, v, _ in describe()}, indent=2))
    elif args.markdown:
        print(markdown_table())
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
