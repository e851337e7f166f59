"""The SOCKS5 client machine and its Twisted wrapper: every reply code is typed."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from aegis_hidden.tor import (
    SOCKS_REPLY_ERRORS,
    OnionAddress,
    Socks5Client,
    SocksAuthRejected,
    SocksError,
    SocksProtocolError,
    SocksReplyError,
    socks_reply_error,
)
from aegis_hidden.tor import _errors as errors
from aegis_hidden.tor._socks import Connected, SocksProtocol

HOST = "a" * 56 + ".onion"
OK_REPLY = b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00"


def handshake(machine: Socks5Client) -> bytes:
    """Run method and auth; returns the CONNECT request."""
    assert machine.start() == b"\x05\x01\x02"
    auth = machine.feed(b"\x05\x02")
    assert auth == (b"\x01\x04peer\x03pwd", None)
    req, done = machine.feed(b"\x01\x00")
    assert done is None
    return req


def test_happy_path_bytes() -> None:
    m = Socks5Client(HOST, 7701, "peer", "pwd")
    req = handshake(m)
    assert req == b"\x05\x01\x00\x03" + bytes([len(HOST)]) + HOST.encode() + (7701).to_bytes(2, "big")
    assert m.feed(OK_REPLY + b"app") == (b"", Connected(b"app"))


def test_byte_by_byte() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    out = [m.feed(bytes([b])) for b in b"\x05\x02"]
    assert out == [(b"", None), (b"\x01\x04peer\x03pwd", None)]
    assert m.feed(b"\x01") == (b"", None)
    assert m.feed(b"\x00")[0].startswith(b"\x05\x01\x00\x03")
    reply = b"\x05\x00\x00\x03\x05hello\x00\x50"
    results = [m.feed(bytes([b])) for b in reply]
    assert results[:-1] == [(b"", None)] * (len(reply) - 1)
    assert results[-1] == (b"", Connected(b""))


def test_whole_conversation_in_one_chunk() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    out, done = m.feed(b"\x05\x02\x01\x00" + OK_REPLY + b"x")
    assert out.startswith(b"\x01\x04peer\x03pwd\x05\x01\x00\x03")
    assert done == Connected(b"x")


def test_ipv6_bound_address() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    handshake(m)
    assert m.feed(b"\x05\x00\x00\x04" + bytes(16) + b"\x00\x01") == (b"", Connected(b""))


# Every code tor (with ExtendedErrors) or RFC 1928 defines, and its class.
EXPECTED = {
    0x01: errors.GeneralFailure, 0x02: errors.ConnectionNotAllowed,
    0x03: errors.NetworkUnreachable, 0x04: errors.HostUnreachable,
    0x05: errors.ConnectionRefused, 0x06: errors.TtlExpired,
    0x07: errors.CommandNotSupported, 0x08: errors.AddressTypeNotSupported,
    0xF0: errors.OnionDescriptorNotFound, 0xF1: errors.OnionDescriptorInvalid,
    0xF2: errors.OnionIntroFailed, 0xF3: errors.OnionRendezvousFailed,
    0xF4: errors.OnionClientAuthMissing, 0xF5: errors.OnionClientAuthWrong,
    0xF6: errors.OnionAddressInvalid, 0xF7: errors.OnionIntroTimeout,
}
NOT_RETRYABLE = {0x02, 0x07, 0x08, 0xF4, 0xF5, 0xF6}


def test_table_is_complete() -> None:
    assert SOCKS_REPLY_ERRORS == EXPECTED


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_every_reply_code(code: int) -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    handshake(m)
    with pytest.raises(EXPECTED[code]) as info:
        m.feed(bytes([5, code, 0, 1]) + bytes(6))
    assert info.value.code == code
    assert info.value.retryable == (code not in NOT_RETRYABLE)
    assert f"0x{code:02X}" in str(info.value)


def test_unknown_reply_code() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    handshake(m)
    with pytest.raises(SocksReplyError, match="0x42") as info:
        m.feed(b"\x05\x42\x00\x01" + bytes(6))
    assert type(info.value) is SocksReplyError and info.value.code == 0x42
    assert type(socks_reply_error(0xF4)) is errors.OnionClientAuthMissing


def test_method_rejected() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    with pytest.raises(SocksAuthRejected):
        m.feed(b"\x05\xff")


def test_auth_failed() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    m.feed(b"\x05\x02")
    with pytest.raises(SocksAuthRejected, match="0x01"):
        m.feed(b"\x01\x01")


@pytest.mark.parametrize(("step", "data"), [
    (0, b"\x04\x02"),          # not SOCKS5
    (0, b"\x05\x00"),          # chose "no auth", which we did not offer
    (1, b"\x02\x00"),          # bad auth version
    (2, b"\x06\x00\x00\x01" + bytes(6)),  # bad reply version
    (2, b"\x05\x00\x01\x01" + bytes(6)),  # reserved byte set
    (2, b"\x05\x00\x00\x09" + bytes(6)),  # bad address type
])
def test_protocol_errors(step: int, data: bytes) -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    if step >= 1:
        m.feed(b"\x05\x02")
    if step >= 2:
        m.feed(b"\x01\x00")
    with pytest.raises(SocksProtocolError):
        m.feed(data)


def test_data_after_failure_is_refused() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    with pytest.raises(SocksError):
        m.feed(b"\x05\xff")
    with pytest.raises(SocksProtocolError, match="ended"):
        m.feed(b"\x05\x02")


@pytest.mark.parametrize(("host", "port", "user", "pw"), [
    ("", 80, "u", "p"), ("x" * 256, 80, "u", "p"), (HOST, 0, "u", "p"), (HOST, 80, "", "p"),
    (HOST, 80, "u", "p" * 256),
])
def test_bad_arguments(host: str, port: int, user: str, pw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        Socks5Client(host, port, user, pw)


class Recorder(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


def test_protocol_hands_over_to_the_application() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    proto = SocksProtocol(m, Factory.forProtocol(Recorder), OnionAddress(HOST, 80))
    t = StringTransport()
    proto.makeConnection(t)
    assert t.value() == b"\x05\x01\x02"
    proto.dataReceived(b"\x05\x02\x01\x00")
    proto.dataReceived(OK_REPLY + b"first")
    app: Any = proto.app
    assert isinstance(app, Recorder)
    assert proto.ready.called
    proto.dataReceived(b" second")
    assert app.data == b"first second"
    assert app.transport is not None
    app.transport.write(b"reply")
    assert t.value().endswith(b"reply")
    proto.connectionLost()
    assert app.lost


def test_protocol_failure_closes_and_errbacks() -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    proto = SocksProtocol(m, Factory.forProtocol(Recorder), OnionAddress(HOST, 80))
    t = StringTransport()
    proto.makeConnection(t)
    proto.dataReceived(b"\x05\x02\x01\x00\x05\xf4\x00\x01" + bytes(6))
    failures: list[Failure] = []
    proto.ready.addErrback(failures.append)
    assert failures[0].check(errors.OnionClientAuthMissing)
    assert t.disconnecting


SERVER_BYTES = b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00\x03\x05hello\x1e\x15" + b"app data"


@given(st.lists(st.integers(1, len(SERVER_BYTES)), max_size=8))
def test_any_split_of_the_server_bytes_gives_the_same_result(cuts: list[int]) -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    points = [*sorted(set(cuts)), len(SERVER_BYTES)]
    sent = b""
    app = b""
    done: Connected | None = None
    start = 0
    for p in points:
        chunk = SERVER_BYTES[start:p]
        start = p
        if done is not None:  # after the reply, bytes belong to the application
            app += chunk
            continue
        out, done = m.feed(chunk)
        sent += out
        if done is not None:
            app += done.leftover
    assert done is not None and app == b"app data"
    assert sent == b"\x01\x04peer\x03pwd" + b"\x05\x01\x00\x03" + bytes([len(HOST)]) \
        + HOST.encode() + (80).to_bytes(2, "big")


@given(st.binary(max_size=64))
def test_arbitrary_server_bytes_fail_only_with_socks_errors(data: bytes) -> None:
    m = Socks5Client(HOST, 80, "peer", "pwd")
    m.start()
    with contextlib.suppress(SocksError):
        m.feed(data)
