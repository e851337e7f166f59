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
CHANNEL_UNSPECIFIED: Channel
MESSAGING: Channel
RPC: Channel
PUBSUB: Channel
CONTROL: Channel

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
