"""Signed identity records: sign/verify, corruption, expiry, sequence, revocation."""

from __future__ import annotations

import contextlib
import os
from functools import cache

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.identity import (
    IdentityRecord,
    RecordCache,
    RecordError,
    RecordKind,
    onion_address_from_public_key,
    parse_record,
    sign_record,
    verify_record,
)
from aegis_hidden.session import xwing

NOW = 1_800_000_000


@cache
def _keys(seed: int, with_mldsa: bool) -> tuple[Ed25519PrivateKey, MLDSA65PrivateKey | None, bytes]:
    master = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    mldsa = MLDSA65PrivateKey.from_seed_bytes(bytes([seed + 1]) * 32) if with_mldsa else None
    _, xpk = xwing.generate_keypair_derand(bytes([seed + 2]) * 32)
    return master, mldsa, xpk


def make_record(
    seed: int = 1,
    *,
    with_mldsa: bool = True,
    sequence: int = 1,
    created: int = NOW,
    expires: int = NOW + 3600,
    i2p: str = "",
) -> IdentityRecord:
    master, mldsa, xpk = _keys(seed, with_mldsa)
    rec = IdentityRecord(
        kind=RecordKind.IDENTITY,
        ed25519_public=master.public_key().public_bytes_raw(),
        sequence=sequence,
        created=created,
        expires=expires,
        xwing_public=xpk,
        mldsa_public=mldsa.public_key().public_bytes_raw() if mldsa else b"",
        i2p_destination=i2p,
    )
    return sign_record(rec, master, mldsa)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 200),
    with_mldsa=st.booleans(),
    sequence=st.integers(0, 2**64 - 1),
    lifetime=st.integers(1, 10**8),
    i2p=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~",
                max_size=600),
)
def test_sign_verify_round_trip(
    seed: int, with_mldsa: bool, sequence: int, lifetime: int, i2p: str
) -> None:
    rec = make_record(seed, with_mldsa=with_mldsa, sequence=sequence, expires=NOW + lifetime,
                      i2p=i2p)
    data = rec.to_bytes()
    assert parse_record(data) == rec
    assert verify_record(data, rec.onion, now=NOW) == rec


def _every_single_byte_corruption(data: bytes, onion: str) -> int:
    rejected = 0
    for pos in range(len(data)):
        for delta in (0x01, 0x80):
            bad = bytearray(data)
            bad[pos] ^= delta
            with pytest.raises(RecordError):
                verify_record(bytes(bad), onion, now=NOW)
            rejected += 1
    return rejected


def test_every_single_byte_corruption_is_rejected_ed25519_only() -> None:
    rec = make_record(with_mldsa=False, i2p="abc-~")
    data = rec.to_bytes()
    assert _every_single_byte_corruption(data, rec.onion) == 2 * len(data)


def test_every_single_byte_corruption_is_rejected_hybrid() -> None:
    rec = make_record(with_mldsa=True)
    data = rec.to_bytes()
    assert _every_single_byte_corruption(data, rec.onion) == 2 * len(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_corruption_of_any_byte_value(data: st.DataObject) -> None:
    rec = make_record(with_mldsa=data.draw(st.booleans()))
    raw = bytearray(rec.to_bytes())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    with pytest.raises(RecordError):
        verify_record(bytes(raw), rec.onion, now=NOW)


@given(st.binary(max_size=4000))
def test_parsing_arbitrary_bytes_raises_only_record_errors(blob: bytes) -> None:
    with contextlib.suppress(RecordError):
        parse_record(blob)


def test_truncation_at_every_length_is_rejected() -> None:
    rec = make_record(with_mldsa=False)
    data = rec.to_bytes()
    for n in range(len(data)):
        with pytest.raises(RecordError):
            parse_record(data[:n])
    with pytest.raises(RecordError, match="unexpected bytes"):
        parse_record(data + b"\x00")


def test_record_signed_by_another_key() -> None:
    rec = make_record(seed=1)
    other = onion_address_from_public_key(_keys(9, False)[0].public_key().public_bytes_raw())
    with pytest.raises(RecordError, match="another key"):
        verify_record(rec.to_bytes(), other, now=NOW)


def test_forged_record_with_swapped_key() -> None:
    """A record whose key was replaced by an attacker's fails against the real onion."""
    real = make_record(seed=1)
    forged = make_record(seed=5)
    with pytest.raises(RecordError, match="another key"):
        verify_record(forged.to_bytes(), real.onion, now=NOW)


def test_expired_and_future_records() -> None:
    rec = make_record(expires=NOW + 10)
    with pytest.raises(RecordError, match="expired"):
        verify_record(rec.to_bytes(), rec.onion, now=NOW + 11)
    with pytest.raises(RecordError, match="future"):
        verify_record(rec.to_bytes(), rec.onion, now=NOW - 3600)


def test_lower_sequence_rejected_by_cache() -> None:
    cache_ = RecordCache()
    newer = make_record(sequence=5)
    older = make_record(sequence=4)
    cache_.accept(newer.to_bytes(), newer.onion, now=NOW)
    with pytest.raises(RecordError, match="lower than 5"):
        cache_.accept(older.to_bytes(), older.onion, now=NOW)
    assert cache_.get(newer.onion) == newer
    cache_.accept(make_record(sequence=6).to_bytes(), newer.onion, now=NOW)
    assert cache_.get(newer.onion) is not None and cache_.get(newer.onion).sequence == 6  # type: ignore[union-attr]


def test_revocation_blocks_later_records() -> None:
    master, _, _ = _keys(1, False)
    rec = make_record(sequence=3, with_mldsa=False)
    revocation = sign_record(
        IdentityRecord(kind=RecordKind.REVOCATION, ed25519_public=rec.ed25519_public,
                       sequence=4, created=NOW, expires=0, reason="key compromised"),
        master,
    )
    cache_ = RecordCache()
    cache_.accept(rec.to_bytes(), rec.onion, now=NOW)
    cache_.accept(revocation.to_bytes(), rec.onion, now=NOW)
    assert cache_.is_revoked(rec.onion)
    with pytest.raises(RecordError, match="revoked"):
        cache_.accept(make_record(sequence=9, with_mldsa=False).to_bytes(), rec.onion, now=NOW)


def test_sign_refuses_wrong_keys() -> None:
    rec = make_record(with_mldsa=True)
    with pytest.raises(RecordError, match="not the record's master key"):
        sign_record(rec, Ed25519PrivateKey.generate())
    master, _, _ = _keys(1, True)
    with pytest.raises(RecordError, match="ML-DSA"):
        sign_record(rec, master, MLDSA65PrivateKey.from_seed_bytes(os.urandom(32)))
