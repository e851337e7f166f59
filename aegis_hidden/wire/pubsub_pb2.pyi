from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PubSubMessage(_message.Message):
    __slots__ = ("topic", "data", "nonce", "anonymous", "key", "signature", "ack_from")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ACK_FROM_FIELD_NUMBER: _ClassVar[int]
    topic: str
    data: bytes
    nonce: bytes
    anonymous: bool
    key: bytes
    signature: bytes
    ack_from: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, topic: _Optional[str] = ..., data: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., anonymous: _Optional[bool] = ..., key: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., ack_from: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PubSubSubscription(_message.Message):
    __slots__ = ("topic", "subscribe")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    subscribe: bool
    def __init__(self, topic: _Optional[str] = ..., subscribe: _Optional[bool] = ...) -> None: ...

class PubSubIHave(_message.Message):
    __slots__ = ("topic", "ids")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, topic: _Optional[str] = ..., ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PubSubIWant(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PubSubIDontWant(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PubSubGraft(_message.Message):
    __slots__ = ("topic",)
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    topic: str
    def __init__(self, topic: _Optional[str] = ...) -> None: ...

class PubSubPeerInfo(_message.Message):
    __slots__ = ("peer", "record")
    PEER_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    peer: str
    record: bytes
    def __init__(self, peer: _Optional[str] = ..., record: _Optional[bytes] = ...) -> None: ...

class PubSubPrune(_message.Message):
    __slots__ = ("topic", "peers", "backoff")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    topic: str
    peers: _containers.RepeatedCompositeFieldContainer[PubSubPeerInfo]
    backoff: int
    def __init__(self, topic: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[PubSubPeerInfo, _Mapping]]] = ..., backoff: _Optional[int] = ...) -> None: ...

class PubSubControl(_message.Message):
    __slots__ = ("ihave", "iwant", "graft", "prune", "idontwant")
    IHAVE_FIELD_NUMBER: _ClassVar[int]
    IWANT_FIELD_NUMBER: _ClassVar[int]
    GRAFT_FIELD_NUMBER: _ClassVar[int]
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    IDONTWANT_FIELD_NUMBER: _ClassVar[int]
    ihave: _containers.RepeatedCompositeFieldContainer[PubSubIHave]
    iwant: _containers.RepeatedCompositeFieldContainer[PubSubIWant]
    graft: _containers.RepeatedCompositeFieldContainer[PubSubGraft]
    prune: _containers.RepeatedCompositeFieldContainer[PubSubPrune]
    idontwant: _containers.RepeatedCompositeFieldContainer[PubSubIDontWant]
    def __init__(self, ihave: _Optional[_Iterable[_Union[PubSubIHave, _Mapping]]] = ..., iwant: _Optional[_Iterable[_Union[PubSubIWant, _Mapping]]] = ..., graft: _Optional[_Iterable[_Union[PubSubGraft, _Mapping]]] = ..., prune: _Optional[_Iterable[_Union[PubSubPrune, _Mapping]]] = ..., idontwant: _Optional[_Iterable[_Union[PubSubIDontWant, _Mapping]]] = ...) -> None: ...

class PubSubAck(_message.Message):
    __slots__ = ("id", "subscriber", "signature")
    ID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    subscriber: bytes
    signature: bytes
    def __init__(self, id: _Optional[bytes] = ..., subscriber: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PubSubCatchUp(_message.Message):
    __slots__ = ("topic", "within")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    WITHIN_FIELD_NUMBER: _ClassVar[int]
    topic: str
    within: int
    def __init__(self, topic: _Optional[str] = ..., within: _Optional[int] = ...) -> None: ...

class PubSubCatchUpAnswer(_message.Message):
    __slots__ = ("topic", "messages", "more")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    messages: _containers.RepeatedCompositeFieldContainer[PubSubMessage]
    more: bool
    def __init__(self, topic: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[PubSubMessage, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class PubSubRpc(_message.Message):
    __slots__ = ("subscriptions", "publish", "control", "stem", "acks", "catch_up", "catch_up_answer")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    STEM_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_ANSWER_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[PubSubSubscription]
    publish: _containers.RepeatedCompositeFieldContainer[PubSubMessage]
    control: PubSubControl
    stem: _containers.RepeatedCompositeFieldContainer[PubSubMessage]
    acks: _containers.RepeatedCompositeFieldContainer[PubSubAck]
    catch_up: PubSubCatchUp
    catch_up_answer: PubSubCatchUpAnswer
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[PubSubSubscription, _Mapping]]] = ..., publish: _Optional[_Iterable[_Union[PubSubMessage, _Mapping]]] = ..., control: _Optional[_Union[PubSubControl, _Mapping]] = ..., stem: _Optional[_Iterable[_Union[PubSubMessage, _Mapping]]] = ..., acks: _Optional[_Iterable[_Union[PubSubAck, _Mapping]]] = ..., catch_up: _Optional[_Union[PubSubCatchUp, _Mapping]] = ..., catch_up_answer: _Optional[_Union[PubSubCatchUpAnswer, _Mapping]] = ...) -> None: ...
