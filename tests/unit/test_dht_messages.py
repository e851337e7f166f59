"""The DHT message codec (wire/dht.proto): round trips, and every bad input a typed error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_hidden.dht import (
    MAX_CONTACTS,
    Collect,
    Contact,
    Deposit,
    DhtMessageError,
    FindNode,
    FindValue,
    Mail,
    MailboxAuth,
    Nodes,
    Ping,
    Pong,
    Refused,
    SignedRecord,
    Store,
    Stored,
    Value,
    decode_request,
    decode_response,
    encode,
)
from aegis_hidden.wire import dht_pb2

contacts = st.builds(Contact, st.binary(min_size=32, max_size=32))
records = st.builds(SignedRecord, st.binary(max_size=64), st.binary(max_size=200),
                    st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=100),
                    st.binary(max_size=64), st.binary(max_size=100))
ids = st.binary(min_size=32, max_size=32)
auths = st.builds(MailboxAuth, ids, st.integers(0, 2**32 - 1), st.integers(0, 2**63 - 1),
                  st.binary(max_size=100), st.binary(max_size=64), st.binary(max_size=100))
entry_ids = st.lists(st.binary(min_size=16, max_size=16), max_size=64).map(tuple)
requests = st.one_of(st.just(Ping()), st.builds(FindNode, ids), st.builds(FindValue, ids),
                     st.builds(Store, records), st.builds(Deposit, ids, st.binary(max_size=300)),
                     st.builds(Collect, auths, entry_ids))
responses = st.one_of(
    st.just(Pong()), st.just(Stored()), st.builds(Refused, st.text(max_size=100)),
    st.builds(Mail, st.lists(st.binary(max_size=100), max_size=5).map(tuple), st.booleans(),
              st.integers(0, 2**32 - 1)),
    st.builds(Nodes, st.lists(contacts, max_size=MAX_CONTACTS).map(tuple)),
    st.builds(Value, st.one_of(st.none(), records),
              st.lists(contacts, max_size=MAX_CONTACTS).map(tuple)),
)
FAST = settings(max_examples=200, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(requests)
def test_requests_round_trip(message: object) -> None:
    assert decode_request(encode(message)) == message  # type: ignore[arg-type]


@FAST
@given(responses)
def test_responses_round_trip(message: object) -> None:
    assert decode_response(encode(message)) == message  # type: ignore[arg-type]


def _decode_or_refuse(decoder: object, data: bytes) -> None:
    with contextlib.suppress(DhtMessageError):
        decoder(data)  # type: ignore[operator]


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    _decode_or_refuse(decode_request, data)
    _decode_or_refuse(decode_response, data)


@FAST
@given(st.one_of(requests, responses), st.data())
def test_mutated_messages_decode_or_raise_the_typed_error(message: object, data: st.DataObject) -> None:
    raw = bytearray(encode(message))  # type: ignore[arg-type]
    for _ in range(data.draw(st.integers(1, 4))):
        if raw and data.draw(st.booleans()):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:
            raw.insert(data.draw(st.integers(0, len(raw))), data.draw(st.integers(0, 255)))
    _decode_or_refuse(decode_request, bytes(raw))
    _decode_or_refuse(decode_response, bytes(raw))


def test_each_refusal_names_the_problem() -> None:
    with pytest.raises(DhtMessageError, match="no body"):
        decode_request(b"")
    with pytest.raises(DhtMessageError, match="target is 5 bytes"):
        decode_request(dht_pb2.DhtMessage(find_node=dht_pb2.DhtFindNode(target=b"short")).SerializeToString())
    with pytest.raises(DhtMessageError, match="is an answer"):
        decode_request(encode(Pong()))
    with pytest.raises(DhtMessageError, match="is a request"):
        decode_response(encode(Ping()))
    with pytest.raises(DhtMessageError, match="STORE without a record"):
        decode_request(dht_pb2.DhtMessage(store=dht_pb2.DhtStore()).SerializeToString())
    many = dht_pb2.DhtMessage()
    many.nodes.contacts.extend([dht_pb2.DhtContact(ed25519_public=bytes(32))] * 21)
    with pytest.raises(DhtMessageError, match="21 contacts"):
        decode_response(many.SerializeToString())
    bad_key = dht_pb2.DhtMessage()
    bad_key.nodes.contacts.extend([dht_pb2.DhtContact(ed25519_public=bytes(31))])
    with pytest.raises(DhtMessageError, match="contact 0"):
        decode_response(bad_key.SerializeToString())
    bad_i2p = dht_pb2.DhtMessage()
    bad_i2p.nodes.contacts.extend([dht_pb2.DhtContact(ed25519_public=bytes(32), i2p="x.i2p")])
    with pytest.raises(DhtMessageError, match="contact 0"):
        decode_response(bad_i2p.SerializeToString())
    big = dht_pb2.DhtMessage()
    big.value.record.value = bytes(9000)
    with pytest.raises(DhtMessageError, match="value is 9000"):
        decode_response(big.SerializeToString())
    with pytest.raises(DhtMessageError, match="at most"):
        decode_response(bytes(40_000))
    long_reason = dht_pb2.DhtMessage(refused=dht_pb2.DhtRefused(reason="x" * 101))
    with pytest.raises(DhtMessageError, match="refusal reason"):
        decode_response(long_reason.SerializeToString())
    with pytest.raises(DhtMessageError, match="is an answer"):
        decode_request(encode(Refused("no")))
    with pytest.raises(DhtMessageError):
        decode_request("text")  # type: ignore[arg-type]


def test_mailbox_refusals_name_the_problem() -> None:
    short_key = dht_pb2.DhtMessage(deposit=dht_pb2.DhtDeposit(key=b"k", envelope=b"x"))
    with pytest.raises(DhtMessageError, match="mailbox key is 1 bytes"):
        decode_request(short_key.SerializeToString())
    many = dht_pb2.DhtMessage(collect=dht_pb2.DhtCollect(key=bytes(32), delete=[bytes(16)] * 65))
    with pytest.raises(DhtMessageError, match="65 ids to delete"):
        decode_request(many.SerializeToString())
    odd = dht_pb2.DhtMessage(collect=dht_pb2.DhtCollect(key=bytes(32), delete=[bytes(15)]))
    with pytest.raises(DhtMessageError, match="not 16 bytes"):
        decode_request(odd.SerializeToString())
    late = dht_pb2.DhtMessage(collect=dht_pb2.DhtCollect(key=bytes(32), time=2**63))
    with pytest.raises(DhtMessageError, match="time out of range"):
        decode_request(late.SerializeToString())
    with pytest.raises(DhtMessageError, match="is a request"):
        decode_response(encode(Deposit(bytes(32), b"x")))
    with pytest.raises(DhtMessageError, match="is an answer"):
        decode_request(encode(Mail((b"x",))))
