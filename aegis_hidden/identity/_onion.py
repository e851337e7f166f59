"""Moved to :mod:`aegis_hidden.addresses`; this re-export goes once session/ imports it from there."""

from ..addresses import *  # noqa: F403
