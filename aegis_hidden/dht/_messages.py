"""DHT requests and answers, and their protobuf codec (``wire/dht.proto``; pure).

Decoders check everything a handler relies on and raise :class:`DhtMessageError`
(one type, a message naming the field) for any bad input: not protobuf, the
wrong kind for the direction, ids of the wrong size, too many contacts, a key
that is no Ed25519 key length, an I2P name that is not a ``.b32.i2p`` address.
Record signatures are not checked here (:func:`~._records.verify` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from ..wire import dht_pb2
from ._ids import ID_BYTES, Contact
from ._mailbox import ENTRY_ID_SIZE, MAX_DELETE, MailboxAuth
from ._puzzle import MAX_NONCE
from ._records import MAX_NAME, MAX_VALUE, SignedRecord

#: at most this many contacts in one answer (k)
MAX_CONTACTS = 20
#: a DHT message never needs more (a record with its publisher's record, ~15 KiB)
MAX_MESSAGE = 32 * 1024


class DhtMessageError(ValueError):
    """Bytes that are not a valid DHT message for this direction."""


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class FindNode:
    target: bytes


@dataclass(frozen=True)
class FindValue:
    key: bytes


@dataclass(frozen=True)
class Store:
    record: SignedRecord


@dataclass(frozen=True)
class Deposit:
    """A sealed letter for the mailbox at ``key``."""

    key: bytes
    envelope: bytes


@dataclass(frozen=True)
class Collect:
    """The owner collects its mailbox, deleting ``delete`` first."""

    auth: MailboxAuth
    delete: tuple[bytes, ...] = ()


#: at most this many entries in one peer-exchange offer (each record is ~7 KiB)
MAX_OFFER = 3
#: a peer-exchange entry's identity record is at most this large
MAX_PEX_RECORD = 8192
#: and its I2P binding (salt and destination) at most this large
MAX_PEX_BINDING = 1024


@dataclass(frozen=True)
class PexEntry:
    """A contact offered by peer exchange: its signed identity record, its puzzle
    nonce, and the I2P binding its owner offered by peer exchange (or empty)."""

    record: bytes
    nonce: int = 0
    i2p_binding: bytes = b""


@dataclass(frozen=True)
class Offer:
    """Peer exchange: identity records of contacts the asker vouches it reached."""

    entries: tuple[PexEntry, ...]


@dataclass(frozen=True)
class Pong:
    pass


@dataclass(frozen=True)
class Nodes:
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class Value:
    record: SignedRecord | None
    contacts: tuple[Contact, ...] = ()


@dataclass(frozen=True)
class Stored:
    pass


@dataclass(frozen=True)
class Mail:
    envelopes: tuple[bytes, ...]
    more: bool = False
    deleted: int = 0


@dataclass(frozen=True)
class Refused:
    """The request was refused; ``reason`` is short and names no secret."""

    reason: str


@dataclass(frozen=True)
class Offered:
    """An offer's entries taken as candidates, and refused."""

    accepted: int = 0
    refused: int = 0


MAX_REASON = 100

Request = Ping | FindNode | FindValue | Store | Deposit | Collect | Offer
Response = Pong | Nodes | Value | Stored | Refused | Mail | Offered


def _contacts_pb(contacts: Sequence[Contact]) -> list[dht_pb2.DhtContact]:
    return [dht_pb2.DhtContact(ed25519_public=c.ed25519_public, i2p=c.i2p, nonce=c.nonce)
            for c in contacts]


def _record_pb(r: SignedRecord) -> dht_pb2.DhtRecord:
    return dht_pb2.DhtRecord(name=r.name, value=r.value, sequence=r.sequence, expires=r.expires,
                             publisher_record=r.publisher_record, signature=r.signature,
                             mldsa_signature=r.mldsa_signature)


def encode(message: Request | Response, sender_nonce: int = 0) -> bytes:
    """``message`` as bytes; a request carries the asker's puzzle nonce."""
    m = dht_pb2.DhtMessage()
    if sender_nonce:
        m.sender_nonce = sender_nonce
    if isinstance(message, Ping):
        m.ping.SetInParent()
    elif isinstance(message, FindNode):
        m.find_node.target = message.target
    elif isinstance(message, FindValue):
        m.find_value.key = message.key
    elif isinstance(message, Store):
        m.store.record.CopyFrom(_record_pb(message.record))
    elif isinstance(message, Deposit):
        m.deposit.key = message.key
        m.deposit.envelope = message.envelope
    elif isinstance(message, Collect):
        a = message.auth
        m.collect.CopyFrom(dht_pb2.DhtCollect(
            key=a.key, day=a.day, time=a.time, publisher_record=a.publisher_record,
            signature=a.signature, mldsa_signature=a.mldsa_signature, delete=message.delete))
    elif isinstance(message, Offer):
        m.offer.SetInParent()
        m.offer.entries.extend(dht_pb2.DhtPexEntry(record=e.record, nonce=e.nonce,
                                                   i2p_binding=e.i2p_binding)
                               for e in message.entries)
    elif isinstance(message, Offered):
        m.offered.SetInParent()
        m.offered.accepted = message.accepted
        m.offered.refused = message.refused
    elif isinstance(message, Mail):
        m.mail.SetInParent()
        m.mail.envelopes.extend(message.envelopes)
        m.mail.more = message.more
        m.mail.deleted = message.deleted
    elif isinstance(message, Pong):
        m.pong.SetInParent()
    elif isinstance(message, Nodes):
        m.nodes.contacts.extend(_contacts_pb(message.contacts))
    elif isinstance(message, Value):
        if message.record is not None:
            m.value.record.CopyFrom(_record_pb(message.record))
        else:
            m.value.SetInParent()
        m.value.contacts.extend(_contacts_pb(message.contacts))
    elif isinstance(message, Stored):
        m.stored.SetInParent()
    elif isinstance(message, Refused):
        m.refused.reason = message.reason[:MAX_REASON]
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"not a DHT message: {message!r}")
    return m.SerializeToString()


def _parse(data: bytes) -> tuple[str, dht_pb2.DhtMessage]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DhtMessageError("a DHT message is bytes")
    if len(data) > MAX_MESSAGE:
        raise DhtMessageError(f"message is {len(data)} bytes, at most {MAX_MESSAGE}")
    m = dht_pb2.DhtMessage()
    try:
        m.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise DhtMessageError(f"not a DHT message: {e}") from None
    kind = m.WhichOneof("body")
    if kind is None:
        raise DhtMessageError("message has no body")
    return kind, m


def _id(value: bytes, what: str) -> bytes:
    if len(value) != ID_BYTES:
        raise DhtMessageError(f"{what} is {len(value)} bytes, not {ID_BYTES}")
    return bytes(value)


def _contacts(items: Sequence[dht_pb2.DhtContact]) -> tuple[Contact, ...]:
    if len(items) > MAX_CONTACTS:
        raise DhtMessageError(f"{len(items)} contacts, at most {MAX_CONTACTS}")
    out = []
    for n, item in enumerate(items):
        try:
            if item.nonce > MAX_NONCE:
                raise ValueError(f"nonce above {MAX_NONCE}")
            out.append(Contact(bytes(item.ed25519_public), item.i2p, item.nonce))
        except ValueError as e:
            raise DhtMessageError(f"contact {n}: {e}") from None
    return tuple(out)


def _record(r: dht_pb2.DhtRecord) -> SignedRecord:
    if len(r.name) > MAX_NAME:
        raise DhtMessageError(f"record name is {len(r.name)} bytes, at most {MAX_NAME}")
    if len(r.value) > MAX_VALUE:
        raise DhtMessageError(f"record value is {len(r.value)} bytes, at most {MAX_VALUE}")
    return SignedRecord(bytes(r.name), bytes(r.value), r.sequence, r.expires,
                        bytes(r.publisher_record), bytes(r.signature), bytes(r.mldsa_signature))


def decode_request(data: bytes) -> Request:
    return decode_request_nonce(data)[0]


def decode_request_nonce(data: bytes) -> tuple[Request, int]:
    """The request and the asker's puzzle nonce (0 when absent)."""
    kind, m = _parse(data)
    if m.sender_nonce > MAX_NONCE:
        raise DhtMessageError(f"sender nonce above {MAX_NONCE}")
    return _request(kind, m), int(m.sender_nonce)


def _request(kind: str, m: dht_pb2.DhtMessage) -> Request:
    if kind == "ping":
        return Ping()
    if kind == "find_node":
        return FindNode(_id(m.find_node.target, "target"))
    if kind == "find_value":
        return FindValue(_id(m.find_value.key, "key"))
    if kind == "store":
        if not m.store.HasField("record"):
            raise DhtMessageError("STORE without a record")
        return Store(_record(m.store.record))
    if kind == "deposit":
        return Deposit(_id(m.deposit.key, "mailbox key"), bytes(m.deposit.envelope))
    if kind == "collect":
        c = m.collect
        if len(c.delete) > MAX_DELETE:
            raise DhtMessageError(f"{len(c.delete)} ids to delete, at most {MAX_DELETE}")
        if any(len(i) != ENTRY_ID_SIZE for i in c.delete):
            raise DhtMessageError(f"an id to delete is not {ENTRY_ID_SIZE} bytes")
        if c.time >= 2**63:
            raise DhtMessageError("collect time out of range")
        auth = MailboxAuth(_id(c.key, "mailbox key"), c.day, c.time, bytes(c.publisher_record),
                           bytes(c.signature), bytes(c.mldsa_signature))
        return Collect(auth, tuple(bytes(i) for i in c.delete))
    if kind == "offer":
        return Offer(_entries(m.offer.entries))
    raise DhtMessageError(f"{kind} is an answer, not a request")


def _entries(items: Sequence[dht_pb2.DhtPexEntry]) -> tuple[PexEntry, ...]:
    if len(items) > MAX_OFFER:
        raise DhtMessageError(f"{len(items)} entries offered, at most {MAX_OFFER}")
    out = []
    for n, e in enumerate(items):
        if not e.record or len(e.record) > MAX_PEX_RECORD:
            raise DhtMessageError(f"entry {n}: record of {len(e.record)} bytes, 1 to "
                                  f"{MAX_PEX_RECORD}")
        if len(e.i2p_binding) > MAX_PEX_BINDING:
            raise DhtMessageError(f"entry {n}: I2P binding of {len(e.i2p_binding)} bytes, at "
                                  f"most {MAX_PEX_BINDING}")
        if e.nonce > MAX_NONCE:
            raise DhtMessageError(f"entry {n}: nonce above {MAX_NONCE}")
        out.append(PexEntry(bytes(e.record), int(e.nonce), bytes(e.i2p_binding)))
    return tuple(out)


def decode_response(data: bytes) -> Response:
    kind, m = _parse(data)
    if kind == "pong":
        return Pong()
    if kind == "nodes":
        return Nodes(_contacts(m.nodes.contacts))
    if kind == "value":
        record = _record(m.value.record) if m.value.HasField("record") else None
        return Value(record, _contacts(m.value.contacts))
    if kind == "stored":
        return Stored()
    if kind == "offered":
        return Offered(m.offered.accepted, m.offered.refused)
    if kind == "mail":
        return Mail(tuple(bytes(e) for e in m.mail.envelopes), m.mail.more, m.mail.deleted)
    if kind == "refused":
        if len(m.refused.reason) > MAX_REASON:
            raise DhtMessageError(f"refusal reason longer than {MAX_REASON} characters")
        return Refused(m.refused.reason)
    raise DhtMessageError(f"{kind} is a request, not an answer")
