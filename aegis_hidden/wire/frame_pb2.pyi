from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    MESSAGING: _ClassVar[Channel]
    RPC: _ClassVar[Channel]
    PUBSUB: _ClassVar[Channel]
    CONTROL: _ClassVar[Channel]
    STREAM: _ClassVar[Channel]
CHANNEL_UNSPECIFIED: Channel
MESSAGING: Channel
RPC: Channel
PUBSUB: Channel
CONTROL: Channel
STREAM: Channel

class Frame(_message.Message):
    __slots__ = ("channel", "payload")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    payload: bytes
    def __init__(self, channel: _Optional[_Union[Channel, str]] = ..., payload: _Optional[bytes] = ...) -> None: ...

class RpcMessage(_message.Message):
    __slots__ = ("id", "kind", "body", "error")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[RpcMessage.Kind]
        REQUEST: _ClassVar[RpcMessage.Kind]
        RESPONSE: _ClassVar[RpcMessage.Kind]
        ERROR: _ClassVar[RpcMessage.Kind]
    KIND_UNSPECIFIED: RpcMessage.Kind
    REQUEST: RpcMessage.Kind
    RESPONSE: RpcMessage.Kind
    ERROR: RpcMessage.Kind
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: RpcMessage.Kind
    body: bytes
    error: str
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[_Union[RpcMessage.Kind, str]] = ..., body: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class StreamMessage(_message.Message):
    __slots__ = ("kind", "id", "opener", "data", "credit", "label", "error")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[StreamMessage.Kind]
        OPEN: _ClassVar[StreamMessage.Kind]
        DATA: _ClassVar[StreamMessage.Kind]
        CREDIT: _ClassVar[StreamMessage.Kind]
        CLOSE: _ClassVar[StreamMessage.Kind]
        RESET: _ClassVar[StreamMessage.Kind]
    KIND_UNSPECIFIED: StreamMessage.Kind
    OPEN: StreamMessage.Kind
    DATA: StreamMessage.Kind
    CREDIT: StreamMessage.Kind
    CLOSE: StreamMessage.Kind
    RESET: StreamMessage.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    OPENER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: StreamMessage.Kind
    id: int
    opener: bool
    data: bytes
    credit: int
    label: str
    error: str
    def __init__(self, kind: _Optional[_Union[StreamMessage.Kind, str]] = ..., id: _Optional[int] = ..., opener: _Optional[bool] = ..., data: _Optional[bytes] = ..., credit: _Optional[int] = ..., label: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
