"""``aegis-hidden``: sub-commands, each registered by its own module.

A sub-command module has ``register(subparsers)``; it adds its parser and sets
``func`` to a callable taking the parsed namespace and returning the exit code.
Errors a user can act on are raised as :class:`CLIError` and printed as one line.

Only the module of the command given is imported when it is named after it
(``status`` -> ``_status``): the others pull in the node, the API server, the test
harness..., and a short command such as ``status`` (a readiness probe may run it
every few seconds) should not pay for them. Any other command line (``--help``,
a command registered by a module of another name) imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence

from ._common import CLIError

# Each name is a module of this package with a register(subparsers) function.
COMMAND_MODULES = ["_identity", "_config", "_devnet", "_demo", "_api", "_peers", "_status", "_db",
                   "_wipe", "_doctor", "_dht", "_audit", "_emergency", "_pubsub", "_stream"]


def _parser(modules: Sequence[str]) -> tuple[argparse.ArgumentParser, Collection[str]]:
    parser = argparse.ArgumentParser(
        prog="aegis-hidden",
        description="A Tor/I2P-native privacy node. Run the node itself with "
        "'twistd -n aegis-hidden'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in modules:
        module = importlib.import_module(f"{__package__}.{name}")
        module.register(sub)
    return parser, sub.choices


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command; with ``command``, of that one alone if the
    module ``_<command>`` registers it (the other modules are not imported)."""
    if command is not None and f"_{command}" in COMMAND_MODULES:
        parser, commands = _parser([f"_{command}"])
        if command in commands:
            return parser
    return _parser(COMMAND_MODULES)[0]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except CLIError as e:
        print(f"aegis-hidden: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return int(code or 0)
