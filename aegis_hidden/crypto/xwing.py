"""X-Wing: the hybrid KEM X25519 + ML-KEM-768 (draft-connolly-cfrg-xwing-kem-10).

Pure code on ``cryptography``'s ML-KEM-768 and X25519; no reactor. Every
function takes and returns byte strings and checks lengths.

``encapsulate_derand`` exists only so the draft's test vectors can be checked:
``cryptography`` has no deterministic ML-KEM encapsulation, so it needs the
test-only pure-Python ML-KEM (``kyber-py``). Production code calls
:func:`encapsulate`, which never touches that module.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.asymmetric.mlkem import (
    MLKEM768PrivateKey,
    MLKEM768PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

__all__ = [
    "CIPHERTEXT_SIZE",
    "PUBLIC_KEY_SIZE",
    "SECRET_KEY_SIZE",
    "SHARED_SECRET_SIZE",
    "XWingError",
    "decapsulate",
    "encapsulate",
    "encapsulate_derand",
    "generate_keypair",
    "generate_keypair_derand",
    "public_key_from_secret",
]

SECRET_KEY_SIZE = 32
PUBLIC_KEY_SIZE = 1216  # ML-KEM-768 encapsulation key (1184) + X25519 (32)
CIPHERTEXT_SIZE = 1120  # ML-KEM-768 ciphertext (1088) + X25519 (32)
SHARED_SECRET_SIZE = 32
_MLKEM_PK = 1184
_MLKEM_CT = 1088
_XWING_LABEL = b"\\.//^\\"


class XWingError(ValueError):
    """A key, ciphertext or seed of the wrong length or form."""


def _check(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise XWingError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != size:
        raise XWingError(f"{name} must be {size} bytes, got {len(value)}")


def _expand(sk: bytes) -> tuple[MLKEM768PrivateKey, X25519PrivateKey, bytes, bytes]:
    expanded = hashlib.shake_256(bytes(sk)).digest(96)
    sk_m = MLKEM768PrivateKey.from_seed_bytes(expanded[0:64])
    sk_x = X25519PrivateKey.from_private_bytes(expanded[64:96])
    pk_m = sk_m.public_key().public_bytes_raw()
    pk_x = sk_x.public_key().public_bytes_raw()
    return sk_m, sk_x, pk_m, pk_x


def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + _XWING_LABEL).digest()


def generate_keypair_derand(seed: bytes) -> tuple[bytes, bytes]:
    """(secret key, public key) from a 32-byte seed; the secret key *is* the seed."""
    _check("seed", seed, SECRET_KEY_SIZE)
    _, _, pk_m, pk_x = _expand(seed)
    return bytes(seed), pk_m + pk_x


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh random (secret key, public key)."""
    return generate_keypair_derand(os.urandom(SECRET_KEY_SIZE))


def public_key_from_secret(sk: bytes) -> bytes:
    """The public key belonging to a 32-byte secret key."""
    return generate_keypair_derand(sk)[1]


def _split_public(pk: bytes) -> tuple[MLKEM768PublicKey, X25519PublicKey, bytes]:
    _check("public key", pk, PUBLIC_KEY_SIZE)
    pk = bytes(pk)
    try:
        pk_m = MLKEM768PublicKey.from_public_bytes(pk[:_MLKEM_PK])
    except ValueError as e:
        raise XWingError(f"ML-KEM-768 part of the public key is invalid: {e}") from None
    pk_x_bytes = pk[_MLKEM_PK:]
    return pk_m, X25519PublicKey.from_public_bytes(pk_x_bytes), pk_x_bytes


def _x25519(sk: X25519PrivateKey, peer: bytes) -> bytes:
    try:
        return sk.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError as e:
        # cryptography refuses an all-zero shared secret (low-order point).
        raise XWingError(f"X25519 exchange failed: {e}") from None


def encapsulate(pk: bytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) for the public key ``pk``."""
    pk_m, _, pk_x = _split_public(pk)
    ek_x = X25519PrivateKey.generate()
    ct_x = ek_x.public_key().public_bytes_raw()
    ss_x = _x25519(ek_x, pk_x)
    ss_m, ct_m = pk_m.encapsulate()
    return _combine(ss_m, ss_x, ct_x, pk_x), ct_m + ct_x


def encapsulate_derand(pk: bytes, eseed: bytes) -> tuple[bytes, bytes]:
    """Deterministic encapsulation from a 64-byte seed. Test vectors only.

    Needs the test extra ``kyber-py`` (a pure-Python ML-KEM) because
    ``cryptography`` offers no derandomised ML-KEM encapsulation.
    """
    _check("encapsulation seed", eseed, 64)
    _split_public(pk)  # validates
    pk = bytes(pk)
    try:
        from kyber_py.ml_kem import ML_KEM_768
    except ImportError as e:  # pragma: no cover - depends on the install
        raise XWingError(
            "encapsulate_derand needs the test extra 'kyber-py'; "
            "production code uses encapsulate()"
        ) from e
    pk_x = pk[_MLKEM_PK:]
    ek_x = X25519PrivateKey.from_private_bytes(bytes(eseed[32:64]))
    ct_x = ek_x.public_key().public_bytes_raw()
    ss_x = _x25519(ek_x, pk_x)
    ss_m, ct_m = ML_KEM_768._encaps_internal(pk[:_MLKEM_PK], bytes(eseed[0:32]))
    return _combine(bytes(ss_m), ss_x, ct_x, pk_x), bytes(ct_m) + ct_x


def decapsulate(ct: bytes, sk: bytes) -> bytes:
    """The shared secret of ciphertext ``ct`` under secret key ``sk``."""
    _check("ciphertext", ct, CIPHERTEXT_SIZE)
    _check("secret key", sk, SECRET_KEY_SIZE)
    ct = bytes(ct)
    sk_m, sk_x, _, pk_x = _expand(sk)
    ct_m, ct_x = ct[:_MLKEM_CT], ct[_MLKEM_CT:]
    try:
        ss_m = sk_m.decapsulate(ct_m)
    except ValueError as e:
        raise XWingError(f"ML-KEM-768 decapsulation failed: {e}") from None
    ss_x = _x25519(sk_x, ct_x)
    return _combine(ss_m, ss_x, ct_x, pk_x)
