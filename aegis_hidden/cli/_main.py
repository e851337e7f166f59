"""``aegis-hidden``: sub-commands, each registered by its own module.

A sub-command module has ``register(subparsers)``; it adds its parser and sets
``func`` to a callable taking the parsed namespace and returning the exit code.
Errors a user can act on are raised as :class:`CLIError` and printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._common import CLIError

# Each name is a module of this package with a register(subparsers) function.
COMMAND_MODULES = ["_identity", "_config", "_devnet", "_demo", "_api", "_peers", "_status", "_db",
                   "_wipe", "_doctor", "_dht", "_audit", "_emergency", "_pubsub", "_stream"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aegis-hidden",
        description="A Tor/I2P-native privacy node. Run the node itself with "
        "'twistd -n aegis-hidden'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except CLIError as e:
        print(f"aegis-hidden: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return int(code or 0)
