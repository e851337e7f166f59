"""The API bearer token: created at first start, stored 0600, rotatable from the CLI.

The running node re-reads the file when it changes, so ``aegis-hidden api token
--rotate`` takes effect at once, without a restart. Reading the file is
:func:`aegis_hidden._secrets.read_token` (re-exported here), so that the CLI's
API client reads it without importing the API server.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from .._secrets import TokenFileError, read_token
from ..identity import atomic_write

__all__ = ["TOKEN_BYTES", "TokenChecker", "TokenFileError", "load_or_create_token",
           "new_token", "read_token", "rotate_token"]

TOKEN_BYTES = 32


def _write(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, (token + "\n").encode("ascii"), mode=0o600)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token in ``path``; a new one is written (0600) if there is none."""
    if path.exists():
        return read_token(path), False
    token = new_token()
    _write(path, token)
    return token, True


def rotate_token(path: Path) -> str:
    token = new_token()
    _write(path, token)
    return token


class TokenChecker:
    """Checks presented tokens against the file, re-reading it when it changes."""

    def __init__(self, path: Path | None = None, token: str | None = None) -> None:
        if path is None and token is None:
            raise ValueError("a token file or a token is needed")
        self._path = path
        self._token = token or ""
        self._stamp: tuple[int, int, int] | None = None
        if path is not None:
            self._reload()

    def _reload(self) -> None:
        assert self._path is not None
        st = os.stat(self._path)
        stamp = (st.st_mtime_ns, st.st_ino, st.st_mode)
        if stamp != self._stamp:
            self._token = read_token(self._path)
            self._stamp = stamp

    def check(self, presented: str | None) -> bool:
        if presented is None:
            return False
        if self._path is not None:
            try:
                self._reload()
            except (OSError, TokenFileError):
                return False  # a broken token file locks the API rather than opening it
        return hmac.compare_digest(presented.encode(), self._token.encode())
