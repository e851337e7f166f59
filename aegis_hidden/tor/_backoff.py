"""The shared retry policy, re-exported where tor's dialer and provider find it."""

from __future__ import annotations

from .._backoff import Backoff

__all__ = ["Backoff"]
