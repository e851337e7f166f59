"""Helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config, ConfigError, load_config


class CLIError(Exception):
    """An error to print as one line, with an exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_node_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="YAML configuration file")
    parser.add_argument("--data-dir", "-d", help="the node's data directory")


def node_config(args: argparse.Namespace) -> tuple[Config, Path]:
    try:
        cfg = load_config(Path(args.config) if args.config else None)
    except ConfigError as e:
        raise CLIError(str(e), 2) from None
    return cfg, cfg.resolve_data_dir(args.data_dir)
