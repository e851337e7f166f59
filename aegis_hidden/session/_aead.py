"""The AEAD record layer: one sealing state per direction, counter nonces, rekey.

The ciphers and HKDF live in :mod:`aegis_hidden.crypto`.

Pure code. docs/protocol.md §4 is the specification.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from ..crypto import AEAD_CLASSES as _AEAD_CLASSES
from ..crypto import IV_SIZE, KEY_SIZE, hkdf_expand
from ._errors import CloseReason, SessionError

__all__ = ["Direction"]

_MAX_COUNTER = 2**64 - 1


class Direction:
    """Seals (or opens) the cells of one direction of a session.

    The nonce of cell *n* under a key is ``iv XOR n`` (96 bits): each key is
    used for a strictly increasing counter, so a replayed, dropped or
    reordered cell is opened with the wrong nonce and fails authentication.
    :meth:`rekey` replaces the secret by ``HKDF-Expand(secret, "rekey")`` and
    restarts the counter; the old secret is forgotten.
    """

    __slots__ = ("_aead", "_label", "_secret", "aead_id", "count", "decrypt", "encrypt", "generation",
                 "iv", "since")

    def __init__(self, aead_id: int, secret: bytes, label: bytes, now: float) -> None:
        if aead_id not in _AEAD_CLASSES:
            raise SessionError(CloseReason.PROTOCOL_ERROR, f"unknown AEAD number {aead_id}")
        self.aead_id = aead_id
        self._label = label
        self.generation = 0
        self._install(secret, now)

    def _install(self, secret: bytes, now: float) -> None:
        self._secret = secret
        okm = hkdf_expand(secret, self._label + b" key+iv", KEY_SIZE + IV_SIZE)
        self._aead = _AEAD_CLASSES[self.aead_id](okm[:KEY_SIZE])
        # Public so the session's hot loops can use them as locals (§4: nonce = iv XOR n).
        self.encrypt = self._aead.encrypt
        self.decrypt = self._aead.decrypt
        self.iv = int.from_bytes(okm[KEY_SIZE:], "big")
        self.count = 0
        self.since = now

    def rekey(self, now: float) -> None:
        self.generation += 1
        self._install(hkdf_expand(self._secret, self._label + b" rekey"), now)

    def seal(self, plain: bytes) -> bytes:
        n = self.count
        if n >= _MAX_COUNTER:  # pragma: no cover - rekeying happens long before
            raise SessionError(CloseReason.PROTOCOL_ERROR, "cell counter exhausted")
        self.count = n + 1
        return self.encrypt((self.iv ^ n).to_bytes(IV_SIZE, "big"), plain, None)

    def open(self, cell: bytes) -> bytes:
        n = self.count
        self.count = n + 1
        try:
            return self.decrypt((self.iv ^ n).to_bytes(IV_SIZE, "big"), cell, None)
        except InvalidTag:
            raise SessionError(
                CloseReason.TAMPERED,
                f"cell {n} (key generation {self.generation}) failed "
                "authentication: tampered, replayed, reordered or dropped",
            ) from None
