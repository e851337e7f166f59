"""The identity on disk: creation, modes, passphrase, corruption, crash safety."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from aegis_hidden import identity as ident
from aegis_hidden.identity import _keyfile
from aegis_hidden.testing import fake_private_key

NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    # The production work factor (2**15) is slow for dozens of tests; the code path
    # is the same.
    monkeypatch.setattr(_keyfile, "SCRYPT_N", 2**10)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_then_load_same_identity(tmp_path: Path) -> None:
    d = tmp_path / "id"
    created = ident.create(d, NOW)
    for name in ("master_key.json", "subkeys.json", "record.bin"):
        assert _mode(d / name) == 0o600
    loaded = ident.load(d, NOW + 60)
    assert loaded.onion == created.onion
    assert loaded.record == created.record
    assert loaded.master_seed == created.master_seed
    assert ident.verify_record(loaded.record.to_bytes(), loaded.onion, NOW)
    assert "master_seed" not in repr(loaded) and created.master_seed.hex() not in repr(loaded)


def test_load_or_create_creates_once(tmp_path: Path) -> None:
    first, made = ident.load_or_create(tmp_path, NOW)
    second, made_again = ident.load_or_create(tmp_path, NOW)
    assert made and not made_again
    assert first.onion == second.onion


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    ident.create(tmp_path, NOW)
    before = (tmp_path / "master_key.json").read_bytes()
    with pytest.raises(ident.IdentityExists, match="refusing to overwrite"):
        ident.create(tmp_path, NOW)
    assert (tmp_path / "master_key.json").read_bytes() == before


def test_passphrase_round_trip_and_errors(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW, passphrase="correct horse")
    raw = (tmp_path / "master_key.json").read_text()
    assert node.master_seed.hex() not in raw
    assert ident.is_encrypted(tmp_path / "master_key.json")
    assert ident.load(tmp_path, NOW, passphrase="correct horse").onion == node.onion
    with pytest.raises(ident.WrongPassphrase, match="wrong passphrase"):
        ident.load(tmp_path, NOW, passphrase="wrong")
    with pytest.raises(ident.PassphraseRequired, match="encrypted"):
        ident.load(tmp_path, NOW)
    # Nothing was replaced by the failed attempts.
    assert (tmp_path / "master_key.json").read_text() == raw


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b"",  # emptied
        lambda b: b.replace(b'"cipher"', b'"cypher"'),  # edited
        lambda b: b"\x00" * len(b),  # zeroed
    ],
    ids=["truncated", "empty", "edited", "zeroed"],
)
def test_corrupted_master_key_is_reported_and_never_replaced(
    tmp_path: Path, damage: object
) -> None:
    ident.create(tmp_path, NOW)
    path = tmp_path / "master_key.json"
    bad = damage(path.read_bytes())  # type: ignore[operator]
    path.write_bytes(bad)
    with pytest.raises(ident.KeyFileError):
        ident.load(tmp_path, NOW)
    with pytest.raises(ident.KeyFileError):
        ident.load_or_create(tmp_path, NOW)  # must not create a fresh key instead
    assert path.read_bytes() == bad


def test_master_key_swapped_for_another_is_detected(tmp_path: Path) -> None:
    ident.create(tmp_path / "a", NOW)
    ident.create(tmp_path / "b", NOW)
    (tmp_path / "a" / "subkeys.json").write_bytes((tmp_path / "b" / "subkeys.json").read_bytes())
    with pytest.raises(ident.KeyFileError, match="belongs to"):
        ident.load(tmp_path / "a", NOW)


def test_encrypted_ciphertext_tampering_detected(tmp_path: Path) -> None:
    ident.create(tmp_path, NOW, passphrase="pw")
    path = tmp_path / "master_key.json"
    doc = json.loads(path.read_text())
    sealed = bytearray(base64.b64decode(doc["secrets"]))
    sealed[0] ^= 1
    doc["secrets"] = base64.b64encode(bytes(sealed)).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(ident.WrongPassphrase):
        ident.load(tmp_path, NOW, passphrase="pw")


def test_interrupted_write_leaves_old_key_intact(tmp_path: Path) -> None:
    path = tmp_path / "key"
    ident.atomic_write(path, b"old key")

    class Crash(Exception):
        pass

    def crash(tmp: Path) -> None:
        assert tmp.read_bytes() == b"new key"  # fully written and synced, not renamed
        raise Crash

    with pytest.raises(Crash):
        ident.atomic_write(path, b"new key", _before_rename=crash)
    assert path.read_bytes() == b"old key"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # no temp file left
    assert _mode(path) == 0o600


def test_atomic_write_mode_under_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ident.atomic_write(tmp_path / "k", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_rotate_keeps_onion_and_raises_sequence(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW)
    rotated = ident.rotate(node, NOW + 10)
    assert rotated.onion == node.onion
    assert rotated.record.sequence == node.record.sequence + 1
    assert rotated.xwing_public != node.xwing_public
    assert rotated.record.mldsa_public != node.record.mldsa_public
    again = ident.load(tmp_path, NOW + 20)
    assert again.record == rotated.record
    cache = ident.RecordCache()
    cache.accept(rotated.record.to_bytes(), node.onion, NOW + 20)
    with pytest.raises(ident.RecordError, match="lower"):
        cache.accept(node.record.to_bytes(), node.onion, NOW + 20)


def test_revoke_makes_identity_unusable(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW)
    rev = ident.revoke(node, NOW + 5, "laptop seized")
    assert ident.verify_record(rev.to_bytes(), node.onion, NOW + 5).reason == "laptop seized"
    with pytest.raises(ident.Revoked):
        ident.load(tmp_path, NOW + 6)


def test_record_refreshed_before_expiry(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW, lifetime=3600)
    later = ident.load(tmp_path, NOW + 1800)
    assert later.record.sequence == node.record.sequence + 1
    assert later.record.expires > node.record.expires


def test_bind_i2p_destination(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW)
    dest = fake_private_key().destination.base64
    bound = ident.bind_i2p_destination(node, dest, NOW)
    assert bound.i2p_binding is not None and bound.i2p_binding.destination == dest
    assert bound.record.sequence == node.record.sequence + 1
    # the record holds only the salted commitment, not the destination
    assert dest.encode() not in bound.record.to_bytes()
    assert bound.record.i2p_commitment == bound.i2p_binding.commitment()
    assert ident.verify_binding(bound.record, bound.i2p_binding) == bound.i2p_binding.b32
    assert _mode(tmp_path / "i2p-binding.bin") == 0o600
    loaded = ident.load(tmp_path, NOW)
    assert loaded.i2p_binding == bound.i2p_binding and loaded.record == bound.record
    assert ident.bind_i2p_destination(bound, dest, NOW) is bound
    assert loaded.summary()["i2p_address"] == bound.i2p_binding.b32


def test_tor_key_file_formats() -> None:
    seed = bytes(range(32))
    secret = ident.tor_secret_key_file(seed)
    assert secret.startswith(b"== ed25519v1-secret: type0 ==\x00\x00\x00") and len(secret) == 96
    expanded = ident.expanded_secret_key(seed)
    assert expanded[0] & 7 == 0 and expanded[31] & 0xC0 == 0x40
