"""Where passphrases come from: a file given by the user, or the environment."""

from __future__ import annotations

import os
from pathlib import Path

ENV_PASSPHRASE = "AEGIS_HIDDEN_PASSPHRASE"  # noqa: S105 (a variable name)


class PassphraseSourceError(Exception):
    """The passphrase file cannot be read."""


def read_passphrase(path: str | None) -> str | None:
    """The passphrase from ``path`` (first line), else the environment, else None."""
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as e:
            raise PassphraseSourceError(f"cannot read passphrase file {path}: {e.strerror}"
                                        ) from None
        line = text.splitlines()[0] if text.strip() else ""
        if not line:
            raise PassphraseSourceError(f"passphrase file {path} is empty")
        return line
    value = os.environ.get(ENV_PASSPHRASE)
    return value or None
