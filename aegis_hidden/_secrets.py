"""Where passphrases come from (a file given by the user, or the environment), and
reading the API bearer token file.

A leaf module (nothing of the node above it) so that the command line's API client
reads the token without importing the API server (``aegis_hidden.api``, which
re-exports :func:`read_token` and :class:`TokenFileError` and writes the file).
"""

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


class TokenFileError(Exception):
    """The token file is unreadable, empty, or readable by others."""


def read_token(path: Path) -> str:
    """The API bearer token in ``path`` (created 0600 by the node)."""
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise TokenFileError(f"{path} does not exist (start the node once, or run "
                             "'aegis-hidden api token --rotate')") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read {path}: {e}") from None
    if st.st_mode & 0o077:
        raise TokenFileError(f"{path} is readable by other users (mode "
                             f"{st.st_mode & 0o777:o}); run chmod 600 on it")
    if len(text) < 16:
        raise TokenFileError(f"{path} holds no usable token (too short)")
    return text
