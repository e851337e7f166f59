"""Protobuf wire messages: versioned, and the committed modules match the .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis_hidden.wire import handshake_pb2

WIRE = Path(__file__).resolve().parents[2] / "aegis_hidden" / "wire"
MESSAGES: list[type[Message]] = [handshake_pb2.ClientHello, handshake_pb2.ServerHello, handshake_pb2.Auth,
            handshake_pb2.Finished, handshake_pb2.Close]


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_every_message_has_a_version_field_first(cls: type[Message]) -> None:
    field = cls.DESCRIPTOR.fields_by_number[1]
    assert field.name == "version"


def test_generated_modules_are_current(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{WIRE}", f"--python_out={tmp_path}",
           f"--pyi_out={tmp_path}", str(WIRE / "handshake.proto")]
    subprocess.run(cmd, check=True, capture_output=True)
    for name in ("handshake_pb2.py", "handshake_pb2.pyi"):
        assert (tmp_path / name).read_text() == (WIRE / name).read_text(), (
            f"{name} is stale: run `make proto`")


def test_round_trip() -> None:
    hello = handshake_pb2.ClientHello(version=1, versions=[2, 1], cell_size=996,
                                      ephemeral_public=b"k" * 1216, nonce=b"n" * 32,
                                      dialed=b"d" * 32, aead=1)
    data = hello.SerializeToString(deterministic=True)
    back = handshake_pb2.ClientHello()
    back.ParseFromString(data)
    assert back == hello and list(back.versions) == [2, 1]


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=2000))
def test_parsing_arbitrary_bytes_raises_only_decode_error(blob: bytes) -> None:
    """Any other exception fails the test; what does parse is a whole, consistent message."""
    for cls in MESSAGES:
        msg = cls()
        try:
            msg.ParseFromString(blob)
        except DecodeError:
            continue
        # It re-encodes to exactly its declared size, and that encoding parses back to
        # the same message (unknown fields included): nothing half-parsed survives.
        again = msg.SerializeToString()
        assert msg.ByteSize() == len(again)
        back = cls()
        back.ParseFromString(again)
        assert back == msg
        assert back.SerializeToString() == again


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("blob", [b"\x0a\x05ab", b"\x08", b"\x08\xff\xff", b"\x0f"],
                         ids=["short-bytes", "no-varint", "cut-varint", "bad-wire-type"])
def test_malformed_bytes_are_a_decode_error(cls: type[Message], blob: bytes) -> None:
    """The DecodeError branch above is real: malformed input does raise it."""
    with pytest.raises(DecodeError):
        cls().ParseFromString(blob)
