"""The one-shot seal (RFC 9180 base mode, KEM X-Wing): round trips, refusals, vector."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from aegis_hidden.crypto import (
    SEAL_OVERHEAD,
    SealFormatError,
    SealOpenError,
    open_sealed,
    seal,
    seal_derand,
    xwing,
)

VECTOR = Path(__file__).parents[2] / "docs" / "vectors" / "seal.json"
SK, PK = xwing.generate_keypair_derand(bytes(range(32)))
INFO = b"aegis-hidden mailbox v1\x00example" + bytes(32)


@pytest.mark.parametrize("aead", ["AES-256-GCM", "ChaCha20-Poly1305"])
def test_round_trip(aead: str) -> None:
    envelope = seal(PK, b"hello", info=INFO, aad=b"ctx", aead=aead)
    assert len(envelope) == len(b"hello") + SEAL_OVERHEAD
    assert open_sealed(SK, envelope, info=INFO, aad=b"ctx") == b"hello"
    # fresh encapsulation every time
    assert seal(PK, b"hello", info=INFO, aead=aead) != seal(PK, b"hello", info=INFO, aead=aead)


def test_wrong_recipient_fails() -> None:
    other_sk, _ = xwing.generate_keypair()
    envelope = seal(PK, b"secret", info=INFO)
    with pytest.raises(SealOpenError):
        open_sealed(other_sk, envelope, info=INFO)


def test_other_context_fails() -> None:
    envelope = seal(PK, b"secret", info=INFO, aad=b"a")
    with pytest.raises(SealOpenError):
        open_sealed(SK, envelope, info=INFO + b"x", aad=b"a")
    with pytest.raises(SealOpenError):
        open_sealed(SK, envelope, info=INFO, aad=b"b")


@pytest.mark.parametrize("where", [2, 2 + 1119, 2 + 1120, -1])
def test_tampered_fails(where: int) -> None:
    envelope = bytearray(seal(PK, b"secret message", info=INFO))
    envelope[where] ^= 0x01
    with pytest.raises(SealOpenError):
        open_sealed(SK, bytes(envelope), info=INFO)


def test_typed_format_errors() -> None:
    envelope = seal(PK, b"x", info=INFO)
    with pytest.raises(SealFormatError, match="at least"):
        open_sealed(SK, envelope[:SEAL_OVERHEAD - 1], info=INFO)
    with pytest.raises(SealFormatError, match="version"):
        open_sealed(SK, b"\x02" + envelope[1:], info=INFO)
    with pytest.raises(SealFormatError, match="AEAD"):
        open_sealed(SK, envelope[:1] + b"\x09" + envelope[2:], info=INFO)
    with pytest.raises(SealFormatError, match="recipient secret"):
        open_sealed(SK[:31], envelope, info=INFO)
    with pytest.raises(SealFormatError, match="recipient key"):
        seal(PK[:-1], b"x", info=INFO)
    with pytest.raises(SealFormatError, match="unknown AEAD"):
        seal(PK, b"x", info=INFO, aead="DES")
    with pytest.raises(SealFormatError, match="bytes"):
        seal(PK, "text", info=INFO)  # type: ignore[arg-type]
    assert issubclass(SealOpenError, ValueError)


def _by_hand(shared: bytes, aead_id: int, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 §5.1 key schedule for mode_base, written out from the RFC."""
    suite = b"HPKE" + struct.pack(">HHH", 0x647A, 0x0001, aead_id)

    def extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return hmac.new(salt or bytes(32), b"HPKE-v1" + suite + label + ikm,
                        hashlib.sha256).digest()

    def expand(prk: bytes, label: bytes, ctx: bytes, n: int) -> bytes:
        t = hmac.new(prk, struct.pack(">H", n) + b"HPKE-v1" + suite + label + ctx + b"\x01",
                     hashlib.sha256).digest()
        return t[:n]

    ctx = b"\x00" + extract(b"", b"psk_id_hash", b"") + extract(b"", b"info_hash", info)
    secret = extract(shared, b"secret", b"")
    return expand(secret, b"key", ctx, 32), expand(secret, b"base_nonce", ctx, 12)


def test_known_answer_vector() -> None:
    v = json.loads(VECTOR.read_text())
    ins = {k: bytes.fromhex(v[k]) for k in ("recipient_seed", "eseed", "info", "aad", "plaintext")}
    sk, pk = xwing.generate_keypair_derand(ins["recipient_seed"])
    assert pk.hex() == v["recipient_public"]
    for aead, hex_env in v["envelopes"].items():
        envelope = bytes.fromhex(hex_env)
        assert open_sealed(sk, envelope, info=ins["info"], aad=ins["aad"]) == ins["plaintext"]
        assert seal_derand(pk, ins["plaintext"], ins["eseed"], info=ins["info"],
                           aad=ins["aad"], aead=aead) == envelope
        # the key schedule, independently of the code
        enc = envelope[2:2 + 1120]
        shared = xwing.decapsulate(enc, sk)
        cls, aead_id = (AESGCM, 2) if aead == "AES-256-GCM" else (ChaCha20Poly1305, 3)
        key, nonce = _by_hand(shared, aead_id, ins["info"])
        assert cls(key).decrypt(nonce, envelope[2 + 1120:], ins["aad"]) == ins["plaintext"]
