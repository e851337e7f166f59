"""aegis_hidden.addresses: the one parser of .onion, .b32.i2p and host:port."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden import addresses as a
from aegis_hidden import i2p, identity, peers, session

ONION = a.onion_address_from_public_key(bytes(range(32)))
B32 = a.b32_i2p_address(b"a destination")


def test_the_old_homes_re_export_the_same_objects() -> None:
    """One parser: the packages that export address helpers hand out the leaf's."""
    assert identity.canonical_address is a.canonical_address
    assert identity.is_canonical_address is a.is_canonical_address
    assert identity.OnionAddressError is a.OnionAddressError
    assert session.is_canonical_address is a.is_canonical_address
    assert peers.is_b32_i2p is a.is_b32_i2p
    assert i2p.b32_address(b"a destination") == B32
    assert i2p.is_b32_address(B32.upper()) and not i2p.is_b32_address(ONION)
    assert identity.b32_address_of_destination("A" * 516).endswith(a.B32_I2P_SUFFIX)


def test_b32_of_raw_destination() -> None:
    digest = hashlib.sha256(b"a destination").digest()
    expected = base64.b32encode(digest).decode().rstrip("=").lower() + ".b32.i2p"
    assert expected == B32
    assert a.is_b32_i2p(B32) and a.is_canonical_address(B32)
    assert not a.is_b32_i2p(B32.upper()) and a.is_b32_i2p_name(B32.upper())
    assert not a.is_b32_i2p(ONION) and not a.is_b32_i2p_name(ONION)
    extended = "b" * 56 + ".b32.i2p"  # encrypted LeaseSet: I2P resolves it, no peer is named so
    assert a.is_b32_i2p_name(extended) and not a.is_b32_i2p(extended)


def test_onion_service_id() -> None:
    assert a.onion_service_id(ONION.upper()) == ONION[:-6]
    with pytest.raises(a.OnionAddressError):
        a.onion_service_id("a" * 56 + ".onion")


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9050", ("127.0.0.1", 9050)),
    ("[::1]:7701", ("::1", 7701)),
    ("unix:/run/tor/control", ("unix:/run/tor/control", 0)),
    ("localhost:0", ("localhost", 0)),
])
def test_split_host_port(value: str, expected: tuple[str, int]) -> None:
    assert a.split_host_port(value) == expected


@pytest.mark.parametrize(("value", "allow_unix", "message"), [
    ("", True, 'expected "HOST:PORT" or "unix:/path/to/socket"'),
    (None, False, 'expected "HOST:PORT"'),
    ("unix:relative", True, "unix:/absolute/path"),
    ("unix:/abs", False, "unix:/absolute/path"),
    ("127.0.0.1", True, "e.g."),
    (":80", True, "e.g."),
    ("host:http", True, "e.g."),
    ("host:65536", True, "from 0 to 65535"),
])
def test_split_host_port_refuses(value: object, allow_unix: bool, message: str) -> None:
    with pytest.raises(a.HostPortError, match=message.replace("(", r"\(")):
        a.split_host_port(value, allow_unix=allow_unix)


def test_optional_port_on_a_peer_name() -> None:
    assert a.split_optional_port(ONION + ":80") == (ONION, "80")
    assert a.split_optional_port(ONION) == (ONION, "")
    assert a.strip_port(B32 + ":0") == B32
    assert a.strip_port("[::1]:80") == "[::1]:80"  # not a peer name: left for the caller to refuse


@given(st.text(max_size=80))
def test_parsers_raise_only_their_own_errors(text: str) -> None:
    for parse, error in ((a.canonical_address, a.OnionAddressError),
                         (a.public_key_from_onion_address, a.OnionAddressError),
                         (a.split_host_port, a.HostPortError)):
        with contextlib.suppress(error):
            parse(text)
    a.is_canonical_address(text)
    a.is_b32_i2p_name(text)
    a.strip_port(text)
