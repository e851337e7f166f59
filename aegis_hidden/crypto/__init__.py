"""Shared cryptography: the X-Wing hybrid KEM, the session AEADs and HKDF.

A leaf package: everything in aegis_hidden may import it, it imports nothing
of aegis_hidden (checked by the import-linter contracts in setup.cfg). Pure
code, no reactor. :mod:`aegis_hidden.crypto.xwing` is imported as a module
(``from aegis_hidden.crypto import xwing``; ``xwing.encapsulate(pk)``).
"""

from . import xwing
from ._aead import AEAD_CLASSES, AEADS, IV_SIZE, KEY_SIZE, hkdf_expand, hkdf_extract

__all__ = ["AEADS", "AEAD_CLASSES", "IV_SIZE", "KEY_SIZE", "hkdf_expand", "hkdf_extract", "xwing"]
