"""v3 onion address derivation and parsing (rend-spec-v3 section 6)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.identity import (
    OnionAddressError,
    is_onion_v3,
    onion_address_from_public_key,
    public_key_from_onion_address,
)

keys = st.binary(min_size=32, max_size=32)


def _independent(pub: bytes) -> str:
    """The spec's formula written out again, separately from the code under test."""
    checksum = hashlib.sha3_256(b".onion checksum" + pub + b"\x03").digest()[:2]
    return base64.b32encode(pub + checksum + b"\x03").decode().lower() + ".onion"


@given(keys)
def test_round_trip(pub: bytes) -> None:
    address = onion_address_from_public_key(pub)
    assert len(address) == 62
    assert address == _independent(pub)
    assert public_key_from_onion_address(address) == pub
    assert public_key_from_onion_address(address.upper()) == pub
    assert public_key_from_onion_address(address.removesuffix(".onion")) == pub
    assert public_key_from_onion_address("www." + address) == pub


@given(keys, st.integers(min_value=0, max_value=55), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
def test_any_changed_character_is_rejected(pub: bytes, pos: int, ch: str) -> None:
    address = onion_address_from_public_key(pub)
    if address[pos] == ch:
        return
    mutated = address[:pos] + ch + address[pos + 1 :]
    # A changed character changes the key, checksum or version: never the same key.
    assert not is_onion_v3(mutated) or public_key_from_onion_address(mutated) != pub
    # And a change confined to the key bytes always breaks the checksum.
    if pos < 51:
        with pytest.raises(OnionAddressError):
            public_key_from_onion_address(mutated)


def test_bad_checksum_message() -> None:
    pub = bytes(range(32))
    raw = bytearray(base64.b32decode(onion_address_from_public_key(pub)[:56].upper()))
    raw[32] ^= 1
    bad = base64.b32encode(bytes(raw)).decode().lower() + ".onion"
    with pytest.raises(OnionAddressError, match="checksum"):
        public_key_from_onion_address(bad)


def test_bad_version_message() -> None:
    pub = bytes(range(32))
    checksum = hashlib.sha3_256(b".onion checksum" + pub + b"\x02").digest()[:2]
    v2 = base64.b32encode(pub + checksum + b"\x02").decode().lower() + ".onion"
    with pytest.raises(OnionAddressError, match="version byte is 2"):
        public_key_from_onion_address(v2)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("expyuzz4wqqyqhjn.onion", "56 characters"),  # a v2 address
        ("a" * 57 + ".onion", "56 characters"),
        ("0" * 56 + ".onion", "not base32"),
        ("", "56 characters"),
    ],
)
def test_bad_lengths_and_alphabet(address: str, message: str) -> None:
    with pytest.raises(OnionAddressError, match=message):
        public_key_from_onion_address(address)


def test_key_length_checked() -> None:
    with pytest.raises(OnionAddressError, match="32 bytes"):
        onion_address_from_public_key(b"\x00" * 31)
