"""The pub/sub codec (wire/pubsub.proto): round trips, and every bad input a typed error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aegis_hidden.pubsub import (
    ID_BYTES,
    MAX_DATA,
    MAX_RPC,
    MAX_TOPIC,
    NONCE_BYTES,
    Ack,
    CatchUp,
    CatchUpAnswer,
    Graft,
    IDontWant,
    IHave,
    IWant,
    Message,
    PeerInfo,
    Prune,
    PubSubMessageError,
    Rpc,
    Subscription,
    decode,
    encode,
    message_id,
)
from aegis_hidden.wire import pubsub_pb2

FAST = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

topics = st.text(min_size=1, max_size=40).filter(lambda t: 0 < len(t.encode()) <= MAX_TOPIC)
ids = st.binary(min_size=ID_BYTES, max_size=ID_BYTES)
blobs = st.binary(min_size=1, max_size=100)


@st.composite
def messages(draw: st.DrawFn, topic: str | None = None) -> Message:
    anonymous = draw(st.booleans())
    key = draw(st.binary(min_size=32, max_size=32)) if anonymous else draw(blobs)
    return Message(topic if topic is not None else draw(topics), draw(st.binary(max_size=200)),
                   draw(st.binary(min_size=NONCE_BYTES, max_size=NONCE_BYTES)), anonymous, key,
                   draw(blobs), tuple(draw(st.lists(blobs, max_size=3))))


@st.composite
def answers(draw: st.DrawFn) -> CatchUpAnswer:
    topic = draw(topics)
    return CatchUpAnswer(topic, tuple(draw(st.lists(messages(topic), max_size=3))),
                         draw(st.booleans()))


rpcs = st.builds(
    Rpc,
    subscriptions=st.lists(st.builds(Subscription, topics, st.booleans()), max_size=3).map(tuple),
    publish=st.lists(messages(), max_size=3).map(tuple),
    ihave=st.lists(st.builds(IHave, topics, st.lists(ids, max_size=4).map(tuple)),
                   max_size=2).map(tuple),
    iwant=st.lists(st.builds(IWant, st.lists(ids, max_size=4).map(tuple)), max_size=2).map(tuple),
    graft=st.lists(st.builds(Graft, topics), max_size=2).map(tuple),
    prune=st.lists(st.builds(Prune, topics, st.lists(st.builds(
        PeerInfo, st.text(min_size=1, max_size=60), st.binary(max_size=50)), max_size=3).map(tuple),
        st.integers(0, 2**32 - 1)), max_size=2).map(tuple),
    idontwant=st.lists(st.builds(IDontWant, st.lists(ids, max_size=4).map(tuple)),
                       max_size=2).map(tuple),
    stem=st.lists(messages(), max_size=2).map(tuple),
    acks=st.lists(st.builds(Ack, ids, blobs, blobs), max_size=2).map(tuple),
    catch_up=st.one_of(st.none(), st.builds(CatchUp, topics, st.integers(0, 2**32 - 1))),
    catch_up_answer=st.one_of(st.none(), answers()),
)


@FAST
@given(rpcs)
def test_every_rpc_round_trips(rpc: Rpc) -> None:
    assert decode(encode(rpc)) == rpc


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    with contextlib.suppress(PubSubMessageError):
        decode(data)


def test_the_id_names_no_signer_and_depends_on_topic_nonce_and_payload() -> None:
    a = Message("t", b"hello", bytes(16), False, b"alice", b"sig-a")
    b = Message("t", b"hello", bytes(16), True, bytes(32), b"sig-b")
    assert a.id == b.id == message_id("t", bytes(16), b"hello")
    assert len(a.id) == ID_BYTES
    assert message_id("t", bytes(15) + b"\x01", b"hello") != a.id
    assert message_id("u", bytes(16), b"hello") != a.id
    assert message_id("t", bytes(16), b"hellO") != a.id
    # the topic is length-prefixed: moving bytes between topic and payload changes the id
    assert message_id("ab", bytes(16), b"c") != message_id("a", bytes(16), b"bc")


def _raw(**fields: object) -> bytes:
    m = pubsub_pb2.PubSubRpc()
    x = m.publish.add()
    x.topic, x.data, x.nonce, x.key, x.signature = "t", b"d", bytes(16), b"k", b"s"
    for name, value in fields.items():
        setattr(x, name, value)
    return m.SerializeToString()


@pytest.mark.parametrize(("fields", "words"), [
    ({"topic": ""}, "topic is empty"),
    ({"topic": "x" * (MAX_TOPIC + 1)}, "longer than"),
    ({"nonce": bytes(15)}, "nonce is 15 bytes"),
    ({"data": bytes(MAX_DATA + 1)}, "data is"),
    ({"key": b""}, "key is 0 bytes"),
    ({"anonymous": True}, "ephemeral key is 1 bytes"),
    ({"signature": b""}, "signature is 0 bytes"),
])
def test_a_bad_message_field_is_named(fields: dict[str, object], words: str) -> None:
    with pytest.raises(PubSubMessageError, match=words):
        decode(_raw(**fields))


def test_size_limits_and_bad_ids_are_refused() -> None:
    with pytest.raises(PubSubMessageError, match="at most"):
        decode(bytes(MAX_RPC + 1))
    with pytest.raises(PubSubMessageError, match="not a pub/sub RPC"):
        decode(b"\xff\xff\xff")
    m = pubsub_pb2.PubSubRpc()
    m.control.iwant.add().ids.append(bytes(19))
    with pytest.raises(PubSubMessageError, match="IWANT 0 id 0 is 19 bytes"):
        decode(m.SerializeToString())
    m = pubsub_pb2.PubSubRpc()
    prune = m.control.prune.add()
    prune.topic = "t"
    for n in range(17):
        prune.peers.add(peer=f"p{n}")
    with pytest.raises(PubSubMessageError, match="17 peers in PRUNE"):
        decode(m.SerializeToString())
    m = pubsub_pb2.PubSubRpc()
    m.catch_up_answer.topic = "t"
    x = m.catch_up_answer.messages.add()
    x.topic, x.nonce, x.key, x.signature = "u", bytes(16), b"k", b"s"
    with pytest.raises(PubSubMessageError, match="another topic"):
        decode(m.SerializeToString())
    m = pubsub_pb2.PubSubRpc()
    m.acks.add(id=bytes(20), subscriber=b"", signature=b"s")
    with pytest.raises(PubSubMessageError, match="ack 0 subscriber"):
        decode(m.SerializeToString())
    with pytest.raises(PubSubMessageError, match="is bytes"):
        decode("text")  # type: ignore[arg-type]
