from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DhtContact(_message.Message):
    __slots__ = ("ed25519_public", "i2p", "nonce")
    ED25519_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    I2P_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ed25519_public: bytes
    i2p: str
    nonce: int
    def __init__(self, ed25519_public: _Optional[bytes] = ..., i2p: _Optional[str] = ..., nonce: _Optional[int] = ...) -> None: ...

class DhtRecord(_message.Message):
    __slots__ = ("name", "value", "sequence", "expires", "publisher_record", "signature", "mldsa_signature")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_RECORD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MLDSA_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    value: bytes
    sequence: int
    expires: int
    publisher_record: bytes
    signature: bytes
    mldsa_signature: bytes
    def __init__(self, name: _Optional[bytes] = ..., value: _Optional[bytes] = ..., sequence: _Optional[int] = ..., expires: _Optional[int] = ..., publisher_record: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., mldsa_signature: _Optional[bytes] = ...) -> None: ...

class DhtPing(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DhtFindNode(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    def __init__(self, target: _Optional[bytes] = ...) -> None: ...

class DhtFindValue(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class DhtStore(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: DhtRecord
    def __init__(self, record: _Optional[_Union[DhtRecord, _Mapping]] = ...) -> None: ...

class DhtDeposit(_message.Message):
    __slots__ = ("key", "envelope")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    envelope: bytes
    def __init__(self, key: _Optional[bytes] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class DhtCollect(_message.Message):
    __slots__ = ("key", "day", "time", "publisher_record", "signature", "mldsa_signature", "delete")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_RECORD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MLDSA_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    day: int
    time: int
    publisher_record: bytes
    signature: bytes
    mldsa_signature: bytes
    delete: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, key: _Optional[bytes] = ..., day: _Optional[int] = ..., time: _Optional[int] = ..., publisher_record: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., mldsa_signature: _Optional[bytes] = ..., delete: _Optional[_Iterable[bytes]] = ...) -> None: ...

class DhtPexEntry(_message.Message):
    __slots__ = ("record", "nonce", "i2p_binding")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    I2P_BINDING_FIELD_NUMBER: _ClassVar[int]
    record: bytes
    nonce: int
    i2p_binding: bytes
    def __init__(self, record: _Optional[bytes] = ..., nonce: _Optional[int] = ..., i2p_binding: _Optional[bytes] = ...) -> None: ...

class DhtOffer(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DhtPexEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[DhtPexEntry, _Mapping]]] = ...) -> None: ...

class DhtPong(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DhtNodes(_message.Message):
    __slots__ = ("contacts",)
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    contacts: _containers.RepeatedCompositeFieldContainer[DhtContact]
    def __init__(self, contacts: _Optional[_Iterable[_Union[DhtContact, _Mapping]]] = ...) -> None: ...

class DhtValue(_message.Message):
    __slots__ = ("record", "contacts")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    record: DhtRecord
    contacts: _containers.RepeatedCompositeFieldContainer[DhtContact]
    def __init__(self, record: _Optional[_Union[DhtRecord, _Mapping]] = ..., contacts: _Optional[_Iterable[_Union[DhtContact, _Mapping]]] = ...) -> None: ...

class DhtStored(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DhtMail(_message.Message):
    __slots__ = ("envelopes", "more", "deleted")
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    more: bool
    deleted: int
    def __init__(self, envelopes: _Optional[_Iterable[bytes]] = ..., more: _Optional[bool] = ..., deleted: _Optional[int] = ...) -> None: ...

class DhtRefused(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DhtOffered(_message.Message):
    __slots__ = ("accepted", "refused")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    refused: int
    def __init__(self, accepted: _Optional[int] = ..., refused: _Optional[int] = ...) -> None: ...

class DhtMessage(_message.Message):
    __slots__ = ("sender_nonce", "ping", "find_node", "find_value", "store", "deposit", "collect", "offer", "pong", "nodes", "value", "stored", "refused", "mail", "offered")
    SENDER_NONCE_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    FIND_NODE_FIELD_NUMBER: _ClassVar[int]
    FIND_VALUE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    COLLECT_FIELD_NUMBER: _ClassVar[int]
    OFFER_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    MAIL_FIELD_NUMBER: _ClassVar[int]
    OFFERED_FIELD_NUMBER: _ClassVar[int]
    sender_nonce: int
    ping: DhtPing
    find_node: DhtFindNode
    find_value: DhtFindValue
    store: DhtStore
    deposit: DhtDeposit
    collect: DhtCollect
    offer: DhtOffer
    pong: DhtPong
    nodes: DhtNodes
    value: DhtValue
    stored: DhtStored
    refused: DhtRefused
    mail: DhtMail
    offered: DhtOffered
    def __init__(self, sender_nonce: _Optional[int] = ..., ping: _Optional[_Union[DhtPing, _Mapping]] = ..., find_node: _Optional[_Union[DhtFindNode, _Mapping]] = ..., find_value: _Optional[_Union[DhtFindValue, _Mapping]] = ..., store: _Optional[_Union[DhtStore, _Mapping]] = ..., deposit: _Optional[_Union[DhtDeposit, _Mapping]] = ..., collect: _Optional[_Union[DhtCollect, _Mapping]] = ..., offer: _Optional[_Union[DhtOffer, _Mapping]] = ..., pong: _Optional[_Union[DhtPong, _Mapping]] = ..., nodes: _Optional[_Union[DhtNodes, _Mapping]] = ..., value: _Optional[_Union[DhtValue, _Mapping]] = ..., stored: _Optional[_Union[DhtStored, _Mapping]] = ..., refused: _Optional[_Union[DhtRefused, _Mapping]] = ..., mail: _Optional[_Union[DhtMail, _Mapping]] = ..., offered: _Optional[_Union[DhtOffered, _Mapping]] = ...) -> None: ...
