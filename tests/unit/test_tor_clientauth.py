"""v3 client authorization keys and their file / control-port formats."""

from __future__ import annotations

import base64
import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.tor import (
    ClientAuthError,
    ClientAuthKey,
    parse_auth_private,
    parse_public_key,
)

ONION = onion_address_from_public_key(bytes(range(32)))
SID = ONION.removesuffix(".onion")
PRIV = bytes(range(100, 132))


def b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def test_public_key_matches_x25519() -> None:
    key = ClientAuthKey(PRIV)
    expected = X25519PrivateKey.from_private_bytes(PRIV).public_key().public_bytes_raw()
    assert key.public.raw == expected
    assert key.public.descriptor_line() == "descriptor:x25519:" + b32(expected)
    assert len(key.public.base32()) == 52 and "=" not in key.public.base32()


def test_auth_private_line() -> None:
    line = ClientAuthKey(PRIV).auth_private_line(ONION)
    assert line == f"{SID}:descriptor:x25519:{b32(PRIV)}"
    assert ClientAuthKey(PRIV).auth_private_line(SID) == line
    onion, key = parse_auth_private(line + "\n")
    assert onion == ONION and key.private == PRIV


def test_client_auth_add_command() -> None:
    key = ClientAuthKey(PRIV)
    assert key.client_auth_add_command(ONION) == (
        f"ONION_CLIENT_AUTH_ADD {SID} x25519:{base64.b64encode(PRIV).decode()}")
    assert key.client_auth_add_command(ONION, name="ops1", permanent=True).endswith(
        " ClientName=ops1 Flags=Permanent")
    with pytest.raises(ClientAuthError):
        key.client_auth_add_command(ONION, name="not ok")


def test_generate_is_random_and_repr_hides_secret() -> None:
    a, b = ClientAuthKey.generate(), ClientAuthKey.generate()
    assert a.private != b.private and len(a.private) == 32
    assert b32(a.private) not in repr(a) and a.public.base32() in repr(a)


def test_parse_public_key_forms() -> None:
    pub = ClientAuthKey(PRIV).public
    assert parse_public_key(pub.descriptor_line()) == pub
    assert parse_public_key(pub.base32().lower()) == pub


@pytest.mark.parametrize("text", [
    "descriptor:x25519:!!!!",
    "descriptor:x25519:" + b32(bytes(16)),
    "descriptor:ed25519:" + b32(bytes(32)),
])
def test_bad_public_keys(text: str) -> None:
    with pytest.raises(ClientAuthError):
        parse_public_key(text)


@pytest.mark.parametrize("text", [
    "nothing here",
    f"{SID}:x25519:{b32(PRIV)}",
    f"{'a' * 56}:descriptor:x25519:{b32(PRIV)}",
    f"{SID}:descriptor:x25519:{b32(PRIV[:20])}",
])
def test_bad_auth_private(text: str) -> None:
    with pytest.raises(ClientAuthError):
        parse_auth_private(text)


def test_bad_onion_for_auth_line() -> None:
    with pytest.raises(ClientAuthError, match="v3 onion"):
        ClientAuthKey(PRIV).auth_private_line("example.com")


@given(st.text(max_size=200))
def test_arbitrary_text_fails_only_with_client_auth_errors(text: str) -> None:
    for parse in (parse_auth_private, parse_public_key):
        with contextlib.suppress(ClientAuthError):
            parse(text)
