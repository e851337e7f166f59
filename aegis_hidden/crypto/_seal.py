"""One-shot public-key sealing in the shape of HPKE base mode (RFC 9180).

KEM X-Wing (:mod:`.xwing`), KDF HKDF-SHA256, AEAD from :data:`AEADS`. The key
schedule is RFC 9180's (§5.1, mode_base, no PSK, labels "HPKE-v1" + suite id),
with X-Wing's shared secret used as the KEM's: X-Wing already hashes its
ciphertext and the recipient's key into that secret, so there is no separate
ExtractAndExpand step. One message per encapsulation, so the nonce is the base
nonce (sequence 0). The envelope is self-describing::

    u8 version (1) | u8 AEAD wire number | X-Wing ciphertext (1120) | AEAD ciphertext

``info`` binds the sealed message to its context (the caller decides what;
the mailbox binds the recipient's onion and the mailbox key); ``aad`` is
authenticated but not carried. Pure code, no reactor.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag

from . import xwing
from ._aead import AEAD_CLASSES, AEADS, IV_SIZE, KEY_SIZE, hkdf_expand, hkdf_extract

__all__ = [
    "SEAL_OVERHEAD",
    "SEAL_VERSION",
    "SealError",
    "SealFormatError",
    "SealOpenError",
    "open_sealed",
    "seal",
    "seal_derand",
]

SEAL_VERSION = 1
#: X-Wing's codepoint in the HPKE KEM registry (draft-connolly-cfrg-xwing-kem)
KEM_ID = 0x647A
KDF_ID = 0x0001  # HKDF-SHA256
#: our AEAD wire numbers -> RFC 9180 AEAD ids
_HPKE_AEAD_ID = {1: 0x0002, 2: 0x0003}  # AES-256-GCM, ChaCha20-Poly1305
_TAG = 16
_HEADER = 2
#: bytes an envelope adds to the plaintext
SEAL_OVERHEAD = _HEADER + xwing.CIPHERTEXT_SIZE + _TAG
_MODE_BASE = b"\x00"


class SealError(ValueError):
    """A sealed envelope refused; the subclass says why."""


class SealFormatError(SealError):
    """Not an envelope of a version, AEAD or length this code knows, or a bad argument."""


class SealOpenError(SealError):
    """The envelope does not open with this key and context (wrong recipient,
    another ``info``/``aad``, or tampered bytes)."""


def _suite(aead: int) -> bytes:
    return b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, _HPKE_AEAD_ID[aead])


def _labeled_extract(suite: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)


def _labeled_expand(suite: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(prk, struct.pack(">H", length) + b"HPKE-v1" + suite + label + info, length)


def _key_schedule(aead: int, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    suite = _suite(aead)
    psk_id_hash = _labeled_extract(suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite, b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(suite, shared_secret, b"secret", b"")
    return (_labeled_expand(suite, secret, b"key", context, KEY_SIZE),
            _labeled_expand(suite, secret, b"base_nonce", context, IV_SIZE))


def _aead_number(aead: str | int) -> int:
    number = AEADS.get(aead) if isinstance(aead, str) else aead
    if number not in AEAD_CLASSES:
        raise SealFormatError(f"unknown AEAD {aead!r}; one of {sorted(AEADS)}")
    return number


def _bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise SealFormatError(f"{name} must be bytes, got {type(value).__name__}")
    return bytes(value)


def _seal_with(aead: int, shared_secret: bytes, enc: bytes, plaintext: bytes, info: bytes,
               aad: bytes) -> bytes:
    key, nonce = _key_schedule(aead, shared_secret, info)
    sealed = AEAD_CLASSES[aead](key).encrypt(nonce, plaintext, aad)
    return struct.pack(">BB", SEAL_VERSION, aead) + enc + sealed


def seal(recipient_public: bytes, plaintext: bytes, *, info: bytes, aad: bytes = b"",
         aead: str | int = "ChaCha20-Poly1305") -> bytes:
    """``plaintext`` sealed to the X-Wing public key ``recipient_public``."""
    number = _aead_number(aead)
    plaintext, info, aad = (_bytes("plaintext", plaintext), _bytes("info", info),
                            _bytes("aad", aad))
    try:
        shared_secret, enc = xwing.encapsulate(recipient_public)
    except xwing.XWingError as e:
        raise SealFormatError(f"recipient key: {e}") from None
    return _seal_with(number, shared_secret, enc, plaintext, info, aad)


def seal_derand(recipient_public: bytes, plaintext: bytes, eseed: bytes, *, info: bytes,
                aad: bytes = b"", aead: str | int = "ChaCha20-Poly1305") -> bytes:
    """:func:`seal` with a fixed 64-byte encapsulation seed. Known-answer vectors only
    (needs the test extra ``kyber-py``, as :func:`.xwing.encapsulate_derand` does)."""
    number = _aead_number(aead)
    try:
        shared_secret, enc = xwing.encapsulate_derand(recipient_public, eseed)
    except xwing.XWingError as e:
        raise SealFormatError(f"recipient key or seed: {e}") from None
    return _seal_with(number, shared_secret, enc, _bytes("plaintext", plaintext),
                      _bytes("info", info), _bytes("aad", aad))


def open_sealed(recipient_secret: bytes, envelope: bytes, *, info: bytes,
                aad: bytes = b"") -> bytes:
    """The plaintext of ``envelope``, opened with the X-Wing secret key ``recipient_secret``.

    Raises :class:`SealFormatError` for bytes that are no envelope and
    :class:`SealOpenError` when it does not open (wrong key, context or tampering).
    """
    envelope, info, aad = _bytes("envelope", envelope), _bytes("info", info), _bytes("aad", aad)
    if len(envelope) < SEAL_OVERHEAD:
        raise SealFormatError(f"envelope is {len(envelope)} bytes, at least {SEAL_OVERHEAD}")
    version, aead = envelope[0], envelope[1]
    if version != SEAL_VERSION:
        raise SealFormatError(f"envelope version {version}, this code reads {SEAL_VERSION}")
    if aead not in AEAD_CLASSES:
        raise SealFormatError(f"envelope names unknown AEAD {aead}")
    enc = envelope[_HEADER:_HEADER + xwing.CIPHERTEXT_SIZE]
    try:
        shared_secret = xwing.decapsulate(enc, recipient_secret)
    except xwing.XWingError as e:
        if len(recipient_secret) != xwing.SECRET_KEY_SIZE:
            raise SealFormatError(f"recipient secret: {e}") from None
        raise SealOpenError(f"KEM ciphertext refused: {e}") from None
    key, nonce = _key_schedule(aead, shared_secret, info)
    try:
        return AEAD_CLASSES[aead](key).decrypt(nonce, envelope[_HEADER + xwing.CIPHERTEXT_SIZE:],
                                               aad)
    except InvalidTag:
        raise SealOpenError("envelope does not open: wrong recipient, context or "
                            "tampered bytes") from None
