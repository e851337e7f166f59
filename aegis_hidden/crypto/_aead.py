"""The AEADs a session may use, and HKDF with SHA-256 (RFC 5869).

Pure code on ``cryptography``. The sealing state of one direction of a
session (counters, nonces, rekey) is the record layer's
(:mod:`aegis_hidden.session`); this module only names the ciphers and derives
keys. docs/protocol.md §4 is the specification.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = ["AEADS", "AEAD_CLASSES", "IV_SIZE", "KEY_SIZE", "hkdf_expand", "hkdf_extract"]

#: ``security.encryption`` names and their wire numbers (ClientHello.aead).
AEADS: dict[str, int] = {"AES-256-GCM": 1, "ChaCha20-Poly1305": 2}
#: Wire number -> the ``cryptography`` class, built from a :data:`KEY_SIZE` key.
AEAD_CLASSES: dict[int, Callable[[bytes], AESGCM | ChaCha20Poly1305]] = {
    1: AESGCM,
    2: ChaCha20Poly1305,
}
KEY_SIZE = 32
IV_SIZE = 12


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869): HMAC(salt, ikm)."""
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, label: bytes, length: int = 32) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869), ``label`` as the info string."""
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=label).derive(prk)
