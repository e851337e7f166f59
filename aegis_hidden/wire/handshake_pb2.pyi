from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ClientHello(_message.Message):
    __slots__ = ("version", "versions", "cell_size", "ephemeral_public", "nonce", "dialed", "aead")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CELL_SIZE_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    DIALED_FIELD_NUMBER: _ClassVar[int]
    AEAD_FIELD_NUMBER: _ClassVar[int]
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    cell_size: int
    ephemeral_public: bytes
    nonce: bytes
    dialed: bytes
    aead: int
    def __init__(self, version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., cell_size: _Optional[int] = ..., ephemeral_public: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., dialed: _Optional[bytes] = ..., aead: _Optional[int] = ...) -> None: ...

class ServerHello(_message.Message):
    __slots__ = ("version", "ciphertext", "nonce", "aead")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    AEAD_FIELD_NUMBER: _ClassVar[int]
    version: int
    ciphertext: bytes
    nonce: bytes
    aead: int
    def __init__(self, version: _Optional[int] = ..., ciphertext: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., aead: _Optional[int] = ...) -> None: ...

class Auth(_message.Message):
    __slots__ = ("version", "record", "address", "ed25519_signature", "mldsa_signature", "mac", "i2p_binding")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ED25519_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MLDSA_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    I2P_BINDING_FIELD_NUMBER: _ClassVar[int]
    version: int
    record: bytes
    address: str
    ed25519_signature: bytes
    mldsa_signature: bytes
    mac: bytes
    i2p_binding: bytes
    def __init__(self, version: _Optional[int] = ..., record: _Optional[bytes] = ..., address: _Optional[str] = ..., ed25519_signature: _Optional[bytes] = ..., mldsa_signature: _Optional[bytes] = ..., mac: _Optional[bytes] = ..., i2p_binding: _Optional[bytes] = ...) -> None: ...

class Finished(_message.Message):
    __slots__ = ("version", "mac")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    version: int
    mac: bytes
    def __init__(self, version: _Optional[int] = ..., mac: _Optional[bytes] = ...) -> None: ...

class Close(_message.Message):
    __slots__ = ("version", "reason", "detail")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    version: int
    reason: int
    detail: str
    def __init__(self, version: _Optional[int] = ..., reason: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
