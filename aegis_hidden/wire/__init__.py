"""Wire formats: protobuf handshake messages and the fixed-size cell codec (pure).

The protobuf modules (``handshake_pb2``) are generated from ``handshake.proto``
by ``make proto`` and committed.
"""

from . import handshake_pb2
from ._cells import (
    CLEAR_HEADER_SIZE,
    INNER_HEADER_SIZE,
    MAGIC,
    MAX_CELL_SIZE,
    MIN_CELL_SIZE,
    TAG_SIZE,
    CellError,
    CellType,
    Flags,
    MessageTooLarge,
    Reassembler,
    clear_body_capacity,
    decode_clear,
    decode_inner,
    encode_clear,
    encode_inner,
    fragment,
    inner_body_capacity,
    prepare_message,
)

__all__ = [
    "CLEAR_HEADER_SIZE",
    "INNER_HEADER_SIZE",
    "MAGIC",
    "MAX_CELL_SIZE",
    "MIN_CELL_SIZE",
    "TAG_SIZE",
    "CellError",
    "CellType",
    "Flags",
    "MessageTooLarge",
    "Reassembler",
    "clear_body_capacity",
    "decode_clear",
    "decode_inner",
    "encode_clear",
    "encode_inner",
    "fragment",
    "handshake_pb2",
    "inner_body_capacity",
    "prepare_message",
]
