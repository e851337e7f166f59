"""The ``aegis-hidden`` command line."""

from ._main import main

__all__ = ["main"]
