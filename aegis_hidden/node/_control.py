"""Node-to-node control messages, kept apart from application messages.

Control messages travel on their own channel (``control``, 4: see
:mod:`._channels`), so they never reach the messaging layer or the
application. The payload of a control frame is a one-byte kind and its body::

    kind u8 ‖ payload

Kind 1, *record push*, carries this node's current signed record (identity or
revocation) and, optionally, its I2P binding (salt ‖ destination)::

    payload = u32 record length ‖ record ‖ u16 binding length ‖ binding

Kinds 2 and 3, *loop* and *loop return*, carry a 16-byte loop id chosen at
random by the node that sends the loop; the peer answers a loop at once with a
loop return of the same id (loop cover, :mod:`._loops`)::

    payload = loop id (16 bytes)

All integers are big-endian. A receiver ignores (and counts) kinds it does not
know, so new kinds can be added without breaking older nodes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

MAX_RECORD = 64 * 1024
MAX_BINDING = 4096


class ControlError(ValueError):
    """A control message that cannot be decoded."""


class ControlKind(enum.IntEnum):
    RECORD_PUSH = 1
    LOOP = 2
    LOOP_RETURN = 3


@dataclass(frozen=True)
class RecordPush:
    """A peer's own record (identity or revocation) and maybe its I2P binding."""

    record: bytes
    binding: bytes = b""

    def encode(self) -> bytes:
        if len(self.record) > MAX_RECORD or len(self.binding) > MAX_BINDING:
            raise ControlError("record push too large")
        return (bytes([ControlKind.RECORD_PUSH])
                + struct.pack(">I", len(self.record)) + self.record
                + struct.pack(">H", len(self.binding)) + self.binding)


def decode_control(data: bytes) -> tuple[int, bytes]:
    """``(kind, payload)`` of a control frame's payload; the kind may be unknown."""
    if not data:
        raise ControlError("empty control message")
    return data[0], data[1:]


def parse_record_push(payload: bytes) -> RecordPush:
    if len(payload) < 4:
        raise ControlError("record push is truncated")
    (n,) = struct.unpack_from(">I", payload)
    if n == 0 or n > MAX_RECORD:
        raise ControlError(f"record push carries a record of {n} bytes")
    pos = 4 + n
    if pos + 2 > len(payload):
        raise ControlError("record push is truncated")
    record = payload[4:pos]
    (m,) = struct.unpack_from(">H", payload, pos)
    pos += 2
    if m > MAX_BINDING or pos + m != len(payload):
        raise ControlError("record push binding has the wrong length")
    return RecordPush(bytes(record), bytes(payload[pos:]))
