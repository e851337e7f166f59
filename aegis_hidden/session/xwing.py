"""Moved to :mod:`aegis_hidden.crypto.xwing`; this re-export goes once session/ imports it from there."""

from ..crypto.xwing import *  # noqa: F403
