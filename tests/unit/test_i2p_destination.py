"""Destinations, private-key blobs, I2P base64 and the .b32.i2p address."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.i2p import (
    Destination,
    DestinationError,
    PrivateKey,
    b32_address,
    b64decode,
    b64encode,
    is_b32_address,
    is_i2p_name,
)
from aegis_hidden.testing import fake_private_key


def _dest_bytes(sig_type: int = 7, excess: bytes = b"") -> bytes:
    cert = bytes([5]) + (4 + len(excess)).to_bytes(2, "big") + sig_type.to_bytes(2, "big") + bytes(2)
    return bytes(range(256)) + bytes(96) + b"\x01" * 32 + cert + excess


def test_i2p_base64_uses_dash_and_tilde() -> None:
    data = bytes([0xFB, 0xFF, 0xBF])  # '+/+' ... in standard base64: "+/+/"
    assert base64.b64encode(data) == b"+/+/"
    assert b64encode(data) == "-~-~"
    assert b64decode("-~-~") == data


def test_base64_padding_is_optional_and_standard_alphabet_refused() -> None:
    assert b64decode("YQ") == b"a" == b64decode("YQ==")
    with pytest.raises(DestinationError, match="alphabet"):
        b64decode("+/+/")
    with pytest.raises(DestinationError, match="length"):
        b64decode("Y")
    with pytest.raises(DestinationError, match="ASCII"):
        b64decode("ÿÿÿÿ")


def test_type7_destination_parses_and_its_b32_is_sha256_base32() -> None:
    raw = _dest_bytes()
    dest = Destination.from_bytes(raw)
    assert (dest.signature_type, dest.crypto_type, len(dest.raw)) == (7, 0, 391)
    expected = base64.b32encode(hashlib.sha256(raw).digest()).decode().rstrip("=").lower()
    assert dest.b32 == expected + ".b32.i2p"
    assert len(dest.b32) == 52 + len(".b32.i2p")
    assert Destination.from_base64(dest.base64) == dest


def test_key_certificate_must_carry_exactly_the_excess_key_bytes() -> None:
    # P-521 (type 3): 132-byte public key, 4 bytes beyond the 128-byte field
    assert Destination.from_bytes(_dest_bytes(3, b"\x00" * 4)).signature_type == 3
    with pytest.raises(DestinationError, match="excess"):
        Destination.from_bytes(_dest_bytes(3))
    with pytest.raises(DestinationError, match="unknown signature type"):
        Destination.from_bytes(_dest_bytes(99))


def test_null_certificate_destination_is_dsa() -> None:
    raw = bytes(384) + b"\x00\x00\x00"
    assert Destination.from_bytes(raw).signature_type == 0


@pytest.mark.parametrize(("raw", "match"), [
    (b"", "at least"),
    (bytes(384) + b"\x05\x00\x10", "runs past"),
    (bytes(384) + b"\x05\x00\x02\x00\x07", "needs 4"),
    (bytes(384) + b"\x00\x00\x01\x00", "NULL certificate"),
    (_dest_bytes() + b"x", "after the destination"),
])
def test_malformed_destinations(raw: bytes, match: str) -> None:
    with pytest.raises(DestinationError, match=match):
        Destination.from_bytes(raw)


def test_private_key_blob_parses_and_hides_secrets_in_repr() -> None:
    key = fake_private_key()
    assert len(key.raw) == 391 + 256 + 32
    again = PrivateKey.from_base64(key.base64)
    assert again == key and again.destination.signature_type == 7
    assert key.base64 not in repr(key) and key.destination.b32 in repr(key)


def test_private_key_blob_length_and_offline_keys_refused() -> None:
    key = fake_private_key()
    with pytest.raises(DestinationError, match="must be"):
        PrivateKey.from_bytes(key.raw[:-1])
    with pytest.raises(DestinationError, match="offline"):
        PrivateKey.from_bytes(key.raw[:-32] + bytes(32))


def test_i2p_names() -> None:
    b32 = b32_address(b"x")
    assert is_b32_address(b32) and is_b32_address(b32.upper())
    assert is_i2p_name(b32) and is_i2p_name("stats.i2p") and is_i2p_name("a.b.i2p")
    for name in ["example.com", "127.0.0.1", "i2p", ".i2p", "x..i2p", "short.b32.i2p",
                 "a b.i2p", "x.onion", "ex\u00e4mple.i2p"]:
        assert not is_i2p_name(name), name


@given(st.binary(max_size=600))
def test_base64_round_trip(data: bytes) -> None:
    assert b64decode(b64encode(data)) == data


@given(st.binary(max_size=800))
def test_arbitrary_blobs_raise_only_destination_errors(data: bytes) -> None:
    for parse in (Destination.from_bytes, PrivateKey.from_bytes):
        with contextlib.suppress(DestinationError):
            parse(data)


@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_destination_errors(text: str) -> None:
    with contextlib.suppress(DestinationError):
        Destination.from_base64(text)
