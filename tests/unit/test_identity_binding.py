"""The record commits to the I2P destination without revealing it."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden import identity as ident
from aegis_hidden.i2p import b64decode
from aegis_hidden.identity import I2PBinding, RecordError, b32_address_of_destination
from aegis_hidden.testing import fake_private_key

NOW = 1_800_000_000.0


def test_b32_matches_the_i2p_package() -> None:
    for _ in range(5):
        dest = fake_private_key().destination
        assert b32_address_of_destination(dest.base64) == dest.b32
        assert b32_address_of_destination(dest.base64.rstrip("=")) == dest.b32
        assert I2PBinding(dest.base64, bytes(32)).b32 == dest.b32


@pytest.mark.parametrize("bad", [
    "", "abc", "A" * 2000, "x" * 515, "+" * 600, "/" * 600, "A" * 599 + "\u212a",
    "A" * 600 + "===",
])
def test_b32_refuses_non_destinations(bad: str) -> None:
    with pytest.raises(RecordError):
        b32_address_of_destination(bad)


def test_commitment_is_salted_and_exact() -> None:
    dest = fake_private_key().destination.base64
    a, b = I2PBinding(dest, bytes(32)), I2PBinding(dest, b"\x01" * 32)
    assert a.commitment() == hashlib.sha256(
        b"aegis-hidden i2p binding\x00" + bytes(32) + dest.encode()).digest()
    assert a.commitment() != b.commitment()  # no dictionary of known destinations
    assert I2PBinding.parse(a.to_bytes()) == a
    assert a.to_bytes() == bytes(32) + dest.encode("ascii")
    with pytest.raises(RecordError, match="salt"):
        I2PBinding(dest, b"short")
    assert dest not in repr(a) and a.b32 not in repr(a)  # never logged by accident


@given(st.binary(max_size=1200))
def test_parse_arbitrary_bytes_raises_only_record_errors(blob: bytes) -> None:
    with contextlib.suppress(RecordError):
        I2PBinding.parse(blob)


def test_verify_binding(tmp_path: Path) -> None:
    key = fake_private_key()
    node = ident.bind_i2p_destination(ident.create(tmp_path, NOW), key.destination.base64, NOW)
    assert node.i2p_binding is not None
    assert ident.verify_binding(node.record, node.i2p_binding) == key.destination.b32
    # another destination, or the right one under another salt, does not open it
    other = I2PBinding(fake_private_key().destination.base64, node.i2p_binding.salt)
    with pytest.raises(RecordError, match="does not match"):
        ident.verify_binding(node.record, other)
    resalted = I2PBinding(key.destination.base64, bytes(32))
    with pytest.raises(RecordError, match="does not match"):
        ident.verify_binding(node.record, resalted)
    unbound = ident.create(tmp_path / "other", NOW)
    with pytest.raises(RecordError, match="commits to no I2P destination"):
        ident.verify_binding(unbound.record, node.i2p_binding)


def test_record_does_not_reveal_the_destination(tmp_path: Path) -> None:
    """Whoever knows the onion gets the record: it must not name the I2P address."""
    key = fake_private_key()
    node = ident.bind_i2p_destination(ident.create(tmp_path, NOW), key.destination.base64, NOW)
    data = node.record.to_bytes()
    raw_dest = b64decode(key.destination.base64)
    for needle in (key.destination.base64.encode(), key.destination.b32.encode(), raw_dest,
                   hashlib.sha256(raw_dest).digest()):
        assert needle not in data
    assert "i2p_destination" not in node.record.to_json()


def test_each_bind_uses_a_fresh_salt(tmp_path: Path) -> None:
    dest = fake_private_key().destination.base64
    a = ident.bind_i2p_destination(ident.create(tmp_path / "a", NOW), dest, NOW)
    b = ident.bind_i2p_destination(ident.create(tmp_path / "b", NOW), dest, NOW)
    assert a.i2p_binding is not None and b.i2p_binding is not None
    assert a.i2p_binding.salt != b.i2p_binding.salt
    assert a.record.i2p_commitment != b.record.i2p_commitment
