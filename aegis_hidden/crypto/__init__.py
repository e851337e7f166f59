"""Shared cryptography: the X-Wing hybrid KEM, the session AEADs, HKDF and sealing.

A leaf package: everything in aegis_hidden may import it, it imports nothing
of aegis_hidden (checked by the import-linter contracts in setup.cfg). Pure
code, no reactor. :mod:`aegis_hidden.crypto.xwing` is imported as a module
(``from aegis_hidden.crypto import xwing``; ``xwing.encapsulate(pk)``).
:func:`seal` / :func:`open_sealed` seal one message to an X-Wing public key
(RFC 9180's base mode with X-Wing as the KEM).
"""

from . import xwing
from ._aead import AEAD_CLASSES, AEADS, IV_SIZE, KEY_SIZE, hkdf_expand, hkdf_extract
from ._seal import (
    SEAL_OVERHEAD,
    SealError,
    SealFormatError,
    SealOpenError,
    open_sealed,
    seal,
    seal_derand,
)

__all__ = [
    "AEADS",
    "AEAD_CLASSES",
    "IV_SIZE",
    "KEY_SIZE",
    "SEAL_OVERHEAD",
    "SealError",
    "SealFormatError",
    "SealOpenError",
    "hkdf_expand",
    "hkdf_extract",
    "open_sealed",
    "seal",
    "seal_derand",
    "xwing",
]
