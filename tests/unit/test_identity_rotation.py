"""Crash-safe rotation, subkeys checked at load, re-signing in time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from aegis_hidden import identity as ident
from aegis_hidden.crypto import xwing
from aegis_hidden.identity import _keyfile, _node
from aegis_hidden.testing import fake_private_key

NOW = 1_800_000_000.0
DAY = 24 * 3600


@pytest.fixture(autouse=True)
def _fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_keyfile, "SCRYPT_N", 2**10)


class Crash(Exception):
    """The process died here."""


class CrashAfter:
    """Let ``n`` file writes (atomic writes and renames) through, then crash on the next."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
        self.n = n
        self.done: list[str] = []
        for module, name in ((_node, "atomic_write"), (_keyfile, "atomic_write"),
                             (_node, "atomic_rename")):
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name)))

    def _wrap(self, real: Callable[..., None]) -> Callable[..., None]:
        def step(*args: Any, **kwargs: Any) -> None:
            if len(self.done) >= self.n:
                raise Crash(f"crash before write {len(self.done) + 1}")
            real(*args, **kwargs)
            self.done.append(Path(args[-1] if real.__name__ == "atomic_rename"
                                  else args[0]).name)
        return step


def _consistent(node: ident.NodeIdentity) -> None:
    """Every subkey the identity will use is the one its record lists."""
    assert node.record.xwing_public == xwing.public_key_from_secret(node.xwing_secret)
    assert node.record.mldsa_public == (
        MLDSA65PrivateKey.from_seed_bytes(node.mldsa_seed).public_key().public_bytes_raw())
    ident.verify_record(node.record, node.onion, NOW + 60)
    if node.record.i2p_commitment and node.i2p_binding is not None:
        ident.verify_binding(node.record, node.i2p_binding)


def _rotation_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    node = ident.create(tmp_path / "probe", NOW)
    with monkeypatch.context() as m:
        counter = CrashAfter(m, 10**6)
        ident.rotate(node, NOW + 10)
    assert counter.done == ["subkeys.next.json", "record.bin", "subkeys.json"]
    return len(counter.done)


@pytest.mark.parametrize("passphrase", [None, "pw"])
def test_crash_at_each_write_of_rotate_leaves_a_loadable_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passphrase: str | None
) -> None:
    steps = _rotation_steps(tmp_path, monkeypatch)
    for crash_at in range(steps + 1):
        d = tmp_path / f"crash{crash_at}"
        old = ident.create(d, NOW, passphrase=passphrase)
        with monkeypatch.context() as m:
            CrashAfter(m, crash_at)
            if crash_at < steps:
                with pytest.raises(Crash):
                    ident.rotate(old, NOW + 10, passphrase=passphrase)
            else:
                ident.rotate(old, NOW + 10, passphrase=passphrase)
        loaded = ident.load(d, NOW + 20, passphrase=passphrase)
        _consistent(loaded)
        assert loaded.onion == old.onion
        if crash_at < 2:  # the record (the commit point) was not replaced: old identity
            assert loaded.record == old.record
            assert loaded.xwing_secret == old.xwing_secret
        else:  # the record was replaced: the new subkeys are put in place
            assert loaded.record.sequence == old.record.sequence + 1
            assert loaded.xwing_secret != old.xwing_secret
            ident.check_mldsa_change(old.mldsa_public, loaded.record)
        assert not (d / "subkeys.next.json").exists()
        # and it stays loadable, and can rotate again
        again = ident.load(d, NOW + 30, passphrase=passphrase)
        assert again.record == loaded.record
        _consistent(ident.rotate(again, NOW + 40, passphrase=passphrase))
        _consistent(ident.load(d, NOW + 50, passphrase=passphrase))


def test_crash_at_each_write_of_bind_leaves_a_loadable_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fake_private_key().destination.base64
    second = fake_private_key().destination.base64
    for crash_at in range(3):
        d = tmp_path / f"crash{crash_at}"
        bound = ident.bind_i2p_destination(ident.create(d, NOW), first, NOW)
        with monkeypatch.context() as m:
            counter = CrashAfter(m, crash_at)
            if crash_at < 2:
                with pytest.raises(Crash):
                    ident.bind_i2p_destination(bound, second, NOW + 10)
            else:
                ident.bind_i2p_destination(bound, second, NOW + 10)
                # the binding is on disk before the record that commits to it
                assert counter.done == ["i2p-binding.bin", "record.bin"]
        loaded = ident.load(d, NOW + 20)
        _consistent(loaded)
        if crash_at == 0:
            assert loaded.record == bound.record and loaded.i2p_binding == bound.i2p_binding
        elif crash_at == 1:  # new binding file, old record: it cannot open the commitment
            assert loaded.record == bound.record and loaded.i2p_binding is None
            rebound = ident.bind_i2p_destination(loaded, second, NOW + 30)  # provider rebinds
            _consistent(ident.load(d, NOW + 40))
            assert ident.load(d, NOW + 40).i2p_binding == rebound.i2p_binding
        else:
            assert loaded.i2p_binding is not None and loaded.i2p_binding.destination == second


def test_rotation_cut_short_before_its_record_is_discarded(tmp_path: Path) -> None:
    """New subkeys written, record not: the old identity stands, the leftover is removed."""
    old = ident.create(tmp_path, NOW)
    new_xwing, _ = xwing.generate_keypair()
    _keyfile.write_key_file(tmp_path / "subkeys.next.json",
                            {"xwing": new_xwing, "mldsa65": bytes(32)}, old.onion)
    loaded = ident.load(tmp_path, NOW + 5)  # a rotation that never reached its record
    assert loaded.record == old.record and loaded.xwing_secret == old.xwing_secret
    assert not (tmp_path / "subkeys.next.json").exists()


@pytest.mark.parametrize("which", ["xwing", "mldsa65"])
def test_every_subkey_is_checked_against_the_record(tmp_path: Path, which: str) -> None:
    node = ident.create(tmp_path, NOW)
    secrets = {"xwing": node.xwing_secret, "mldsa65": node.mldsa_seed}
    secrets[which] = bytes(32)
    _keyfile.write_key_file(tmp_path / "subkeys.json", secrets, node.onion)
    with pytest.raises(ident.IdentityError, match="does not match"):
        ident.load(tmp_path, NOW)


def test_subkeys_without_mldsa_are_refused(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW)
    _keyfile.write_key_file(tmp_path / "subkeys.json", {"xwing": node.xwing_secret}, node.onion)
    with pytest.raises(ident.KeyFileError, match="ML-DSA-65 is mandatory"):
        ident.load(tmp_path, NOW)


def test_rotate_refuses_to_write_unsealed_keys_of_a_sealed_identity(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW, passphrase="pw")
    with pytest.raises(ident.IdentityError, match="passphrase"):
        ident.rotate(node, NOW)
    assert ident.load(tmp_path, NOW, passphrase="pw").record == node.record


def _steps(start: float, days: int, step: float) -> Iterator[float]:
    t = start
    while t <= start + days * DAY:
        yield t
        t += step


def test_records_never_lapse_over_60_days(tmp_path: Path) -> None:
    """Item 3 (pure part): re-signed once half the lifetime has passed, never expired."""
    node = ident.create(tmp_path, NOW)
    node = ident.bind_i2p_destination(node, fake_private_key().destination.base64, NOW)
    node = ident.rotate(node, NOW)
    binding, proof = node.i2p_binding, node.record.rotation_proof
    assert binding is not None and proof
    refreshed_at: list[float] = []
    for now in _steps(NOW, 60, 3600.0):
        if ident.refresh_due(node, now):
            before = node.record
            node = ident.refresh(node, now)
            refreshed_at.append(now)
            assert node.record.sequence == before.sequence + 1
            assert now - before.created >= (before.expires - before.created) / 2
        # at every hour a peer accepts the current record
        ident.verify_record(node.record.to_bytes(), node.onion, now)
        assert node.record.expires - now >= ident.MAX_RECORD_LIFETIME / 2 - 3600
        assert node.i2p_binding == binding and node.record.rotation_proof == proof
        assert ident.verify_binding(node.record, binding) == binding.b32
    # every 15 days (half of 30): 4 re-signatures in 60 days
    assert [round((t - NOW) / DAY) for t in refreshed_at] == [15, 30, 45, 60]
    loaded = ident.load(tmp_path, NOW + 60 * DAY)
    assert loaded.record == node.record and loaded.i2p_binding == binding


def test_refresh_due_is_half_the_lifetime(tmp_path: Path) -> None:
    node = ident.create(tmp_path, NOW, lifetime=1000)
    assert not ident.refresh_due(node, NOW + 499)
    assert ident.refresh_due(node, NOW + 500)
    # load re-signs when due (a node that was down for a while)
    later = ident.load(tmp_path, NOW + 600)
    assert later.record.sequence == 2 and later.record.created == int(NOW + 600)
    assert ident.load(tmp_path, NOW + 601).record == later.record


def test_revocation_is_signed_by_both_keys(tmp_path: Path) -> None:
    node = ident.rotate(ident.create(tmp_path, NOW), NOW)
    rev = ident.revoke(node, NOW + 5, "laptop seized")
    assert rev.expires == 0 and rev.mldsa_public == node.mldsa_public
    assert rev.rotation_proof == node.record.rotation_proof  # peers pinned to the old key
    checked = ident.verify_record(rev.to_bytes(), node.onion, NOW + 10**8)
    assert checked.kind is ident.RecordKind.REVOCATION and checked.reason == "laptop seized"
    stripped = ident.IdentityRecord(**{**rev.__dict__, "mldsa_signature": b""})
    with pytest.raises(ident.RecordError, match="ML-DSA"):
        ident.verify_record(stripped, node.onion, NOW)
    forged = ident.IdentityRecord(**{**rev.__dict__, "mldsa_signature": bytes(3309)})
    with pytest.raises(ident.RecordError, match="ML-DSA-65 signature does not verify"):
        ident.verify_record(forged, node.onion, NOW)
