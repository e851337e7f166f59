"""The messaging envelope codec: round trips, and every malformed input is an EnvelopeError."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis_hidden.node import EnvelopeError
from aegis_hidden.node._envelope import CLOCK_GRANULARITY, Ack, Message, coarse_time, decode

ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20)
bodies = st.fixed_dictionaries({"type": st.text(min_size=1, max_size=200)},
                               optional={"data": json_values})


@given(ids, st.floats(0, 4e9), bodies, st.booleans(), st.none() | ids)
def test_message_round_trip(msg_id: str, created: float, body: dict[str, Any], request: bool,
                            reply_to: str | None) -> None:
    message = Message(msg_id, created, body, request, reply_to)
    hour = float(coarse_time(created))
    assert decode(message.encode(), 1 << 20) == replace(message, created=hour)


@given(st.floats(0, 4e9))
def test_the_wire_carries_the_hour_never_the_exact_clock(created: float) -> None:
    """An exact sender clock in every envelope is a skew fingerprint."""
    wire = json.loads(Message("a" * 32, created, {"type": "x"}).encode())
    assert isinstance(wire["t"], int) and wire["t"] % CLOCK_GRANULARITY == 0
    assert 0 <= created - wire["t"] < CLOCK_GRANULARITY
    assert CLOCK_GRANULARITY == 3600


def test_two_senders_an_hour_apart_skewed_by_seconds_look_the_same() -> None:
    a = Message("a" * 32, 1_800_000_000.0 + 17.25, {"type": "x"}).encode()
    b = Message("a" * 32, 1_800_000_000.0 + 1234.5, {"type": "x"}).encode()
    assert a == b


@given(ids)
def test_ack_round_trip(msg_id: str) -> None:
    assert decode(Ack(msg_id).encode(), 1 << 20) == Ack(msg_id)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_fail_only_with_envelope_error(data: bytes) -> None:
    try:
        out = decode(data, 1 << 20)
    except EnvelopeError:
        return
    assert isinstance(out, Message | Ack)


@given(json_values)
def test_arbitrary_json_fails_only_with_envelope_error(value: Any) -> None:
    try:
        out = decode(json.dumps(value).encode(), 1 << 20)
    except EnvelopeError:
        return
    assert isinstance(out, Message | Ack)


GOOD = {"k": "msg", "id": "a" * 32, "t": 1.0, "body": {"type": "x"}}


@pytest.mark.parametrize(("change", "fragment"), [
    ({"k": "nope"}, "envelope.k"), ({"id": "A" * 32}, "envelope.id"), ({"id": 5}, "envelope.id"),
    ({"t": "now"}, "envelope.t"), ({"t": True}, "envelope.t"),
    ({"t": float("nan")}, "envelope.t"), ({"t": float("inf")}, "envelope.t"), ({"body": []}, "envelope.body"),
    ({"body": {"type": ""}}, "envelope.body.type"),
    ({"body": {"type": "x", "more": 1}}, "unknown field"), ({"rq": "yes"}, "envelope.rq"),
    ({"re": "zz"}, "envelope.re")])
def test_each_field_checked(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(EnvelopeError, match=fragment.replace(".", r"\.")):
        decode(json.dumps(GOOD | change).encode(), 1 << 20)


def test_size_limit() -> None:
    data = json.dumps(GOOD).encode()
    assert isinstance(decode(data, len(data)), Message)
    with pytest.raises(EnvelopeError, match="exceeds"):
        decode(data, len(data) - 1)
