"""Pub/sub RPCs and their protobuf codec (``wire/pubsub.proto``; pure).

:func:`decode` checks everything the core relies on and raises
:class:`PubSubMessageError` (one type, naming the field) for any bad input:
not protobuf, a message over a size limit, a topic that is empty or too long,
an id or nonce of the wrong length, too many ids, peers or acknowledgers.
Signatures are not checked here (the core does, and holds a bad one against
the peer that sent it).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from ..wire import pubsub_pb2

#: one RPC on the wire, at most (a catch-up answer is cut to fit)
MAX_RPC = 512 * 1024
#: a message's payload, at most (what one messaging envelope may carry)
MAX_DATA = 64 * 1024
MAX_TOPIC = 128
NONCE_BYTES = 16
ID_BYTES = 20
#: an identity key or signature blob (a hybrid identity record and ML-DSA-65 signature fit)
MAX_KEY = 8192
MAX_SIGNATURE = 8192
MAX_ACK_FROM = 16
#: ids in one IHAVE / IWANT / IDONTWANT
MAX_IDS = 5000
MAX_PEER_NAME = 128
MAX_PEER_RECORD = 16 * 1024
#: peers offered on one PRUNE
MAX_PX = 16
#: messages (published or stemmed) and control entries in one RPC
MAX_ENTRIES = 1000
EPHEMERAL_KEY_BYTES = 32

_ID_DOMAIN = b"aegis-hidden pubsub id\x00"


class PubSubMessageError(ValueError):
    """Bytes that are not a valid pub/sub RPC."""


@dataclass(frozen=True)
class Message:
    topic: str
    data: bytes
    nonce: bytes
    anonymous: bool
    key: bytes
    signature: bytes
    ack_from: tuple[bytes, ...] = ()

    @functools.cached_property
    def id(self) -> bytes:
        # computed once per object (a relay asks for it at every step); not a field, so
        # equality, hashing and the codec do not see it
        return message_id(self.topic, self.nonce, self.data)


def message_id(topic: str, nonce: bytes, data: bytes) -> bytes:
    """SHA-256 over the topic, the nonce and the payload, cut to :data:`ID_BYTES`.

    Nothing of the signer or the sender goes in: the same message relayed by
    anyone has the same id, and the id names no one.
    """
    t = topic.encode()
    h = hashlib.sha256(_ID_DOMAIN)
    h.update(len(t).to_bytes(2, "big") + t + nonce + data)
    return h.digest()[:ID_BYTES]


@dataclass(frozen=True)
class Subscription:
    topic: str
    subscribe: bool


@dataclass(frozen=True)
class IHave:
    topic: str
    ids: tuple[bytes, ...]


@dataclass(frozen=True)
class IWant:
    ids: tuple[bytes, ...]


@dataclass(frozen=True)
class IDontWant:
    ids: tuple[bytes, ...]


@dataclass(frozen=True)
class Graft:
    topic: str


@dataclass(frozen=True)
class PeerInfo:
    """A peer offered on PRUNE: its name and its signed record (opaque here)."""

    peer: str
    record: bytes = b""


@dataclass(frozen=True)
class Prune:
    topic: str
    peers: tuple[PeerInfo, ...] = ()
    backoff: int = 0


@dataclass(frozen=True)
class Ack:
    id: bytes
    subscriber: bytes
    signature: bytes


@dataclass(frozen=True)
class CatchUp:
    topic: str
    within: int


@dataclass(frozen=True)
class CatchUpAnswer:
    topic: str
    messages: tuple[Message, ...]
    more: bool = False


@dataclass(frozen=True)
class Rpc:
    subscriptions: tuple[Subscription, ...] = ()
    publish: tuple[Message, ...] = ()
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    idontwant: tuple[IDontWant, ...] = ()
    stem: tuple[Message, ...] = ()
    acks: tuple[Ack, ...] = ()
    catch_up: CatchUp | None = None
    catch_up_answer: CatchUpAnswer | None = field(default=None)

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.publish or self.ihave or self.iwant
                    or self.graft or self.prune or self.idontwant or self.stem or self.acks
                    or self.catch_up is not None or self.catch_up_answer is not None)


# -- encoding -------------------------------------------------------------------
def _message_pb(m: Message) -> pubsub_pb2.PubSubMessage:
    return pubsub_pb2.PubSubMessage(topic=m.topic, data=m.data, nonce=m.nonce,
                                    anonymous=m.anonymous, key=m.key, signature=m.signature,
                                    ack_from=list(m.ack_from))


def encode_message(m: Message) -> bytes:
    """One message alone (what a signature or a size budget is computed over)."""
    return _message_pb(m).SerializeToString()


def encode(rpc: Rpc) -> bytes:
    m = pubsub_pb2.PubSubRpc()
    m.subscriptions.extend(pubsub_pb2.PubSubSubscription(topic=s.topic, subscribe=s.subscribe)
                           for s in rpc.subscriptions)
    m.publish.extend(_message_pb(x) for x in rpc.publish)
    m.stem.extend(_message_pb(x) for x in rpc.stem)
    if rpc.ihave or rpc.iwant or rpc.graft or rpc.prune or rpc.idontwant:
        c = m.control
        c.ihave.extend(pubsub_pb2.PubSubIHave(topic=i.topic, ids=list(i.ids)) for i in rpc.ihave)
        c.iwant.extend(pubsub_pb2.PubSubIWant(ids=list(i.ids)) for i in rpc.iwant)
        c.graft.extend(pubsub_pb2.PubSubGraft(topic=g.topic) for g in rpc.graft)
        c.prune.extend(pubsub_pb2.PubSubPrune(
            topic=p.topic, backoff=p.backoff,
            peers=[pubsub_pb2.PubSubPeerInfo(peer=i.peer, record=i.record) for i in p.peers])
            for p in rpc.prune)
        c.idontwant.extend(pubsub_pb2.PubSubIDontWant(ids=list(i.ids)) for i in rpc.idontwant)
    m.acks.extend(pubsub_pb2.PubSubAck(id=a.id, subscriber=a.subscriber, signature=a.signature)
                  for a in rpc.acks)
    if rpc.catch_up is not None:
        m.catch_up.topic = rpc.catch_up.topic
        m.catch_up.within = rpc.catch_up.within
    if rpc.catch_up_answer is not None:
        a = rpc.catch_up_answer
        m.catch_up_answer.topic = a.topic
        m.catch_up_answer.more = a.more
        m.catch_up_answer.messages.extend(_message_pb(x) for x in a.messages)
    return m.SerializeToString()


# -- decoding -------------------------------------------------------------------
def _count(items: Sequence[object], limit: int, what: str) -> None:
    if len(items) > limit:
        raise PubSubMessageError(f"{len(items)} {what}, at most {limit}")


def _topic(value: str, what: str = "topic") -> str:
    if not value:
        raise PubSubMessageError(f"{what} is empty")
    if len(value.encode()) > MAX_TOPIC:
        raise PubSubMessageError(f"{what} is longer than {MAX_TOPIC} bytes")
    return value


def _ids(values: Sequence[bytes], what: str) -> tuple[bytes, ...]:
    _count(values, MAX_IDS, f"ids in {what}")
    for n, v in enumerate(values):
        if len(v) != ID_BYTES:
            raise PubSubMessageError(f"{what} id {n} is {len(v)} bytes, not {ID_BYTES}")
    return tuple(bytes(v) for v in values)


def _message(m: pubsub_pb2.PubSubMessage, where: str) -> Message:
    topic = _topic(m.topic, f"{where} topic")
    if len(m.data) > MAX_DATA:
        raise PubSubMessageError(f"{where} data is {len(m.data)} bytes, at most {MAX_DATA}")
    if len(m.nonce) != NONCE_BYTES:
        raise PubSubMessageError(f"{where} nonce is {len(m.nonce)} bytes, not {NONCE_BYTES}")
    if m.anonymous and len(m.key) != EPHEMERAL_KEY_BYTES:
        raise PubSubMessageError(f"{where} ephemeral key is {len(m.key)} bytes, "
                                 f"not {EPHEMERAL_KEY_BYTES}")
    if not m.key or len(m.key) > MAX_KEY:
        raise PubSubMessageError(f"{where} key is {len(m.key)} bytes (1 to {MAX_KEY})")
    if not m.signature or len(m.signature) > MAX_SIGNATURE:
        raise PubSubMessageError(f"{where} signature is {len(m.signature)} bytes "
                                 f"(1 to {MAX_SIGNATURE})")
    _count(m.ack_from, MAX_ACK_FROM, f"acknowledgers in {where}")
    for n, a in enumerate(m.ack_from):
        if not a or len(a) > MAX_KEY:
            raise PubSubMessageError(f"{where} acknowledger {n} is {len(a)} bytes (1 to {MAX_KEY})")
    return Message(topic, bytes(m.data), bytes(m.nonce), m.anonymous, bytes(m.key),
                   bytes(m.signature), tuple(bytes(a) for a in m.ack_from))


def _prune(p: pubsub_pb2.PubSubPrune) -> Prune:
    topic = _topic(p.topic, "PRUNE topic")
    _count(p.peers, MAX_PX, "peers in PRUNE")
    peers = []
    for n, info in enumerate(p.peers):
        if not info.peer or len(info.peer) > MAX_PEER_NAME:
            raise PubSubMessageError(f"PRUNE peer {n}: name of {len(info.peer)} characters "
                                     f"(1 to {MAX_PEER_NAME})")
        if len(info.record) > MAX_PEER_RECORD:
            raise PubSubMessageError(f"PRUNE peer {n}: record of {len(info.record)} bytes, "
                                     f"at most {MAX_PEER_RECORD}")
        peers.append(PeerInfo(info.peer, bytes(info.record)))
    return Prune(topic, tuple(peers), p.backoff)


def decode(data: bytes) -> Rpc:
    """The RPC in ``data``, or :class:`PubSubMessageError` naming what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PubSubMessageError("a pub/sub RPC is bytes")
    if len(data) > MAX_RPC:
        raise PubSubMessageError(f"RPC is {len(data)} bytes, at most {MAX_RPC}")
    m = pubsub_pb2.PubSubRpc()
    try:
        m.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise PubSubMessageError(f"not a pub/sub RPC: {e}") from None
    subscriptions: tuple[Subscription, ...] = ()
    if m.subscriptions:
        _count(m.subscriptions, MAX_ENTRIES, "subscriptions")
        subscriptions = tuple(Subscription(_topic(s.topic, f"subscription {n} topic"),
                                           s.subscribe) for n, s in enumerate(m.subscriptions))
    publish: tuple[Message, ...] = ()
    if m.publish:
        _count(m.publish, MAX_ENTRIES, "published messages")
        publish = tuple(_message(x, f"message {n}") for n, x in enumerate(m.publish))
    stem: tuple[Message, ...] = ()
    if m.stem:
        _count(m.stem, MAX_ENTRIES, "stem messages")
        stem = tuple(_message(x, f"stem message {n}") for n, x in enumerate(m.stem))
    ihave: tuple[IHave, ...] = ()
    iwant: tuple[IWant, ...] = ()
    graft: tuple[Graft, ...] = ()
    prune: tuple[Prune, ...] = ()
    idontwant: tuple[IDontWant, ...] = ()
    if m.HasField("control"):
        c = m.control
        for items, what in ((c.ihave, "IHAVEs"), (c.iwant, "IWANTs"), (c.graft, "GRAFTs"),
                            (c.prune, "PRUNEs"), (c.idontwant, "IDONTWANTs")):
            _count(items, MAX_ENTRIES, what)
        ihave = tuple(IHave(_topic(i.topic, f"IHAVE {n} topic"), _ids(i.ids, f"IHAVE {n}"))
                      for n, i in enumerate(c.ihave))
        iwant = tuple(IWant(_ids(i.ids, f"IWANT {n}")) for n, i in enumerate(c.iwant))
        graft = tuple(Graft(_topic(g.topic, f"GRAFT {n} topic")) for n, g in enumerate(c.graft))
        prune = tuple(_prune(p) for p in c.prune)
        idontwant = tuple(IDontWant(_ids(i.ids, f"IDONTWANT {n}"))
                          for n, i in enumerate(c.idontwant))
    acks = []
    if m.acks:
        _count(m.acks, MAX_ENTRIES, "acks")
    for n, ack in enumerate(m.acks):
        if len(ack.id) != ID_BYTES:
            raise PubSubMessageError(f"ack {n} id is {len(ack.id)} bytes, not {ID_BYTES}")
        if not ack.subscriber or len(ack.subscriber) > MAX_KEY:
            raise PubSubMessageError(f"ack {n} subscriber is {len(ack.subscriber)} bytes "
                                     f"(1 to {MAX_KEY})")
        if not ack.signature or len(ack.signature) > MAX_SIGNATURE:
            raise PubSubMessageError(f"ack {n} signature is {len(ack.signature)} bytes "
                                     f"(1 to {MAX_SIGNATURE})")
        acks.append(Ack(bytes(ack.id), bytes(ack.subscriber), bytes(ack.signature)))
    catch_up = None
    if m.HasField("catch_up"):
        catch_up = CatchUp(_topic(m.catch_up.topic, "catch-up topic"), m.catch_up.within)
    answer = None
    if m.HasField("catch_up_answer"):
        a = m.catch_up_answer
        _count(a.messages, MAX_ENTRIES, "messages in a catch-up answer")
        answer = CatchUpAnswer(_topic(a.topic, "catch-up answer topic"),
                               tuple(_message(x, f"catch-up message {n}")
                                     for n, x in enumerate(a.messages)), a.more)
        if any(x.topic != answer.topic for x in answer.messages):
            raise PubSubMessageError("a catch-up answer holds a message of another topic")
    return Rpc(subscriptions, publish, ihave, iwant, graft, prune, idontwant, stem, tuple(acks),
               catch_up, answer)
