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

from aegis_hidden.crypto import xwing
from aegis_hidden.identity import (
    MAX_RECORD_LIFETIME,
    IdentityRecord,
    PinMismatch,
    RecordCache,
    RecordError,
    RecordKind,
    RecordRollback,
    RevokedIdentity,
    check_mldsa_change,
    make_rotation_proof,
    onion_address_from_public_key,
    parse_record,
    sign_record,
    verify_record,
)

NOW = 1_800_000_000
DAY = 24 * 3600


@cache
def _keys(seed: int, mldsa_seed: int | None = None
          ) -> tuple[Ed25519PrivateKey, MLDSA65PrivateKey, bytes]:
    master = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    m = seed + 1 if mldsa_seed is None else mldsa_seed
    mldsa = MLDSA65PrivateKey.from_seed_bytes(bytes([m % 256]) * 32)
    _, xpk = xwing.generate_keypair_derand(bytes([seed + 2]) * 32)
    return master, mldsa, xpk


def make_record(
    seed: int = 1,
    *,
    sequence: int = 1,
    created: int = NOW,
    expires: int = NOW + 3600,
    commitment: bytes = b"",
    mldsa_seed: int | None = None,
    rotation_proof: bytes = b"",
) -> IdentityRecord:
    master, mldsa, xpk = _keys(seed, mldsa_seed)
    rec = IdentityRecord(
        kind=RecordKind.IDENTITY,
        ed25519_public=master.public_key().public_bytes_raw(),
        sequence=sequence,
        created=created,
        expires=expires,
        xwing_public=xpk,
        mldsa_public=mldsa.public_key().public_bytes_raw(),
        i2p_commitment=commitment,
        rotation_proof=rotation_proof,
    )
    return sign_record(rec, master, mldsa)


def make_revocation(seed: int = 1, *, sequence: int = 2, reason: str = "key compromised"
                    ) -> IdentityRecord:
    master, mldsa, _ = _keys(seed)
    return sign_record(
        IdentityRecord(kind=RecordKind.REVOCATION,
                       ed25519_public=master.public_key().public_bytes_raw(),
                       sequence=sequence, created=NOW, expires=0,
                       mldsa_public=mldsa.public_key().public_bytes_raw(), reason=reason),
        master, mldsa)


def rotated_record(seed: int = 1, *, sequence: int = 2, from_seed: int = 50, to_seed: int = 60
                   ) -> IdentityRecord:
    """A record whose ML-DSA key went from ``from_seed``'s to ``to_seed``'s, with its proof."""
    master, old, _ = _keys(seed, from_seed)
    _, new, _ = _keys(seed, to_seed)
    proof = make_rotation_proof(old, master.public_key().public_bytes_raw(),
                                new.public_key().public_bytes_raw(), sequence)
    return make_record(seed, sequence=sequence, mldsa_seed=to_seed, rotation_proof=proof)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 200),
    sequence=st.integers(0, 2**64 - 1),
    lifetime=st.integers(1, MAX_RECORD_LIFETIME),
    commitment=st.sampled_from([b"", bytes(32), bytes(range(32))]),
)
def test_sign_verify_round_trip(seed: int, sequence: int, lifetime: int, commitment: bytes
                                ) -> None:
    rec = make_record(seed, sequence=sequence, expires=NOW + lifetime, commitment=commitment)
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


def test_every_single_byte_corruption_is_rejected() -> None:
    rec = make_record(commitment=bytes(range(32)))
    data = rec.to_bytes()
    assert _every_single_byte_corruption(data, rec.onion) == 2 * len(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_corruption_of_any_byte_value(data: st.DataObject) -> None:
    rec = data.draw(st.sampled_from([make_record(), rotated_record(), make_revocation()]))
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
    rec = make_revocation()
    data = rec.to_bytes()
    for n in range(len(data)):
        with pytest.raises(RecordError):
            parse_record(data[:n])
    with pytest.raises(RecordError, match="unexpected bytes"):
        parse_record(data + b"\x00")


def test_record_signed_by_another_key() -> None:
    rec = make_record(seed=1)
    other = onion_address_from_public_key(_keys(9)[0].public_key().public_bytes_raw())
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
    with pytest.raises(RecordRollback, match="lower than 5"):
        cache_.accept(older.to_bytes(), older.onion, now=NOW)
    assert cache_.get(newer.onion) == newer
    cache_.accept(make_record(sequence=6).to_bytes(), newer.onion, now=NOW)
    assert cache_.get(newer.onion) is not None and cache_.get(newer.onion).sequence == 6  # type: ignore[union-attr]


def test_cache_same_sequence_different_record_refused_identical_accepted() -> None:
    cache_ = RecordCache()
    rec = make_record(sequence=3)
    stored: list[IdentityRecord] = []
    cache_.add_listener(stored.append)
    cache_.accept(rec, rec.onion, now=NOW)
    assert cache_.accept(rec.to_bytes(), rec.onion, now=NOW) == rec  # a repeat is fine
    twin = make_record(sequence=3, expires=NOW + 7200)
    with pytest.raises(RecordError, match="two different records with sequence 3"):
        cache_.accept(twin, rec.onion, now=NOW)
    assert stored == [rec]  # listeners see each newly stored record once


def test_revocation_blocks_later_records() -> None:
    rec = make_record(sequence=3)
    revocation = make_revocation(sequence=4)
    cache_ = RecordCache()
    stored: list[IdentityRecord] = []
    cache_.add_listener(stored.append)
    cache_.accept(rec.to_bytes(), rec.onion, now=NOW)
    cache_.accept(revocation.to_bytes(), rec.onion, now=NOW + 10 * 365 * DAY)  # never expires
    assert cache_.is_revoked(rec.onion)
    assert cache_.revocation(rec.onion) == revocation
    assert cache_.get(rec.onion) is None
    assert stored == [rec, revocation]
    with pytest.raises(RevokedIdentity, match="revoked"):
        cache_.accept(make_record(sequence=9).to_bytes(), rec.onion, now=NOW)
    assert isinstance(RevokedIdentity("x"), RecordError)


def test_cache_load_restores_revocations_and_sequences_without_time_checks() -> None:
    rec = make_record(seed=1, sequence=7, expires=NOW + 60)
    other = make_record(seed=3, sequence=2)
    revocation = make_revocation(seed=3, sequence=3)
    cache_ = RecordCache()
    stored: list[IdentityRecord] = []
    cache_.add_listener(stored.append)
    cache_.load([rec, make_record(seed=1, sequence=5), other, revocation])
    assert stored == []  # restoring is not news
    later = NOW + 400 * DAY  # rec has long expired; the revocation is permanent
    assert cache_.get(rec.onion) == rec
    assert cache_.is_revoked(other.onion) and cache_.revocation(other.onion) == revocation
    with pytest.raises(RecordRollback):
        cache_.accept(make_record(seed=1, sequence=6, created=int(later),
                                  expires=int(later) + 3600), rec.onion, now=later)
    with pytest.raises(RevokedIdentity):
        cache_.accept(make_record(seed=3, sequence=9, created=int(later),
                                  expires=int(later) + 3600), other.onion, now=later)
    forged = IdentityRecord(**{**rec.__dict__, "sequence": 99})
    with pytest.raises(RecordError, match="signature"):
        cache_.load([forged])


def _strip_mldsa(rec: IdentityRecord) -> bytes:
    """``rec`` re-encoded with no ML-DSA key and no ML-DSA signature, re-signed by Ed25519."""
    master, _, _ = _keys(1)
    body = b"".join([
        rec.body()[:66],
        b"".join(len(f).to_bytes(2, "big") + f for f in
                 (rec.xwing_public, b"", rec.i2p_commitment, rec.reason.encode(), b"")),
    ])
    from aegis_hidden.identity._record import DOMAIN
    return body + master.sign(DOMAIN + body) + b"\x00\x00"


def test_record_without_mldsa_is_refused() -> None:
    """Item 1: whoever forges Ed25519 alone cannot drop the ML-DSA key from a record."""
    rec = make_record()
    with pytest.raises(RecordError, match="ML-DSA-65"):
        verify_record(_strip_mldsa(rec), rec.onion, now=NOW)
    master, mldsa, _ = _keys(1)
    no_key = IdentityRecord(**{**rec.__dict__, "mldsa_public": b""})
    with pytest.raises(RecordError, match="ML-DSA-65 public key is mandatory"):
        sign_record(no_key, master, mldsa)
    for bad_sig in (b"", bytes(3309)):
        with pytest.raises(RecordError, match="ML-DSA-65 signature"):
            verify_record(IdentityRecord(**{**rec.__dict__, "mldsa_signature": bad_sig}),
                          rec.onion, now=NOW)


@pytest.mark.parametrize(("created", "expires", "ok"), [
    (NOW, 0, False),                                  # "never expires" is gone
    (NOW, NOW, False),                                # expires == created
    (NOW, NOW - 1, False),
    (NOW, NOW + MAX_RECORD_LIFETIME, True),           # exactly 30 days
    (NOW, NOW + MAX_RECORD_LIFETIME + 1, False),      # a day longer than allowed
    (NOW, NOW + 1, True),
])
def test_identity_record_lifetime_rule(created: int, expires: int, ok: bool) -> None:
    master, mldsa, xpk = _keys(1)
    rec = IdentityRecord(kind=RecordKind.IDENTITY,
                         ed25519_public=master.public_key().public_bytes_raw(), sequence=1,
                         created=created, expires=expires, xwing_public=xpk,
                         mldsa_public=mldsa.public_key().public_bytes_raw())
    if ok:
        assert verify_record(sign_record(rec, master, mldsa).to_bytes(), rec.onion, now=NOW)
    else:
        with pytest.raises(RecordError, match="created < expires"):
            sign_record(rec, master, mldsa)
        # and a record carrying such times, signed by hand, does not parse
        good = make_record()
        raw = bytearray(good.to_bytes())
        raw[50:58] = created.to_bytes(8, "big")
        raw[58:66] = expires.to_bytes(8, "big")
        with pytest.raises(RecordError, match="created < expires"):
            parse_record(bytes(raw))


def test_revocation_must_be_permanent() -> None:
    master, mldsa, _ = _keys(1)
    rev = make_revocation()
    with pytest.raises(RecordError, match="permanent"):
        sign_record(IdentityRecord(**{**rev.__dict__, "expires": NOW + 10}), master, mldsa)
    assert verify_record(rev.to_bytes(), rev.onion, now=NOW + 10**9).kind is RecordKind.REVOCATION


def test_check_mldsa_change() -> None:
    """Item 1: a changed ML-DSA key is accepted only with a proof from the pinned key."""
    _, old, _ = _keys(1, 50)
    _, other, _ = _keys(1, 70)
    pinned = old.public_key().public_bytes_raw()
    same = make_record(mldsa_seed=50)
    check_mldsa_change(pinned, same)
    rotated = rotated_record(from_seed=50, to_seed=60)
    assert rotated.rotated_from == pinned and rotated.rotation_sequence == 2
    verify_record(rotated.to_bytes(), rotated.onion, now=NOW)
    check_mldsa_change(pinned, rotated)
    # A refreshed record keeps the proof: still accepted by a peer pinned to the old key.
    master, new, _ = _keys(1, 60)
    refreshed = make_record(sequence=3, mldsa_seed=60, rotation_proof=rotated.rotation_proof)
    check_mldsa_change(pinned, refreshed)
    # Ed25519 forger with its own ML-DSA key and no proof: refused.
    forged = make_record(mldsa_seed=70)
    verify_record(forged.to_bytes(), forged.onion, now=NOW)  # a valid record in itself...
    with pytest.raises(PinMismatch, match="without a rotation proof"):
        check_mldsa_change(pinned, forged)  # ...but not for a peer that pinned the old key
    # A proof from some other key (not the pinned one): refused.
    from_other = rotated_record(from_seed=70, to_seed=60)
    with pytest.raises(PinMismatch, match="another key"):
        check_mldsa_change(pinned, from_other)
    # A proof naming the pinned key with a bad signature (the forger cannot sign with it).
    bad = bytearray(rotated.rotation_proof)
    bad[-1] ^= 1
    forged_proof = IdentityRecord(**{**rotated.__dict__, "rotation_proof": bytes(bad)})
    with pytest.raises(PinMismatch, match="does not verify"):
        check_mldsa_change(pinned, forged_proof)
    # A proof for another master key (replayed from another node): refused.
    m2, _, _ = _keys(2, 50)
    stolen = make_rotation_proof(old, m2.public_key().public_bytes_raw(),
                                 new.public_key().public_bytes_raw(), 2)
    with pytest.raises(PinMismatch, match="does not verify"):
        check_mldsa_change(pinned, IdentityRecord(**{**rotated.__dict__,
                                                     "rotation_proof": stolen}))
    assert issubclass(PinMismatch, RecordError)
    del master, other


def test_rotation_proof_checked_by_verify_record() -> None:
    rotated = rotated_record()
    master, new, _ = _keys(1, 60)
    bad = bytearray(rotated.rotation_proof)
    bad[-1] ^= 1
    resigned = sign_record(IdentityRecord(**{**rotated.__dict__, "rotation_proof": bytes(bad)}),
                           master, new)
    with pytest.raises(RecordError, match="rotation proof does not verify"):
        verify_record(resigned.to_bytes(), rotated.onion, now=NOW)
    with pytest.raises(RecordError, match="rotation proof must be empty or"):
        sign_record(IdentityRecord(**{**rotated.__dict__, "rotation_proof": b"x"}), master, new)
    _, old, _ = _keys(1, 50)
    late = make_rotation_proof(old, master.public_key().public_bytes_raw(),
                               new.public_key().public_bytes_raw(), 9)
    with pytest.raises(RecordError, match="above the record"):
        sign_record(IdentityRecord(**{**rotated.__dict__, "rotation_proof": late}), master, new)


def test_sign_refuses_wrong_keys() -> None:
    rec = make_record()
    master, mldsa, _ = _keys(1)
    with pytest.raises(RecordError, match="not the record's master key"):
        sign_record(rec, Ed25519PrivateKey.generate(), mldsa)
    with pytest.raises(RecordError, match="ML-DSA"):
        sign_record(rec, master, MLDSA65PrivateKey.from_seed_bytes(os.urandom(32)))
