"""Ordered byte streams between two peers with credit windows: the sans-I/O core.

- :class:`StreamCore`: every stream of one node; :class:`Limits` (window,
  send buffer, chunk, streams per peer); :class:`Stream` (one stream's state:
  credit, buffered bytes, high-water mark);
- what it returns: :class:`Send` (a STREAM-channel payload; DATA is ``bulk``,
  the session's low priority class) and the events :class:`Opened`,
  :class:`Readable`, :class:`Writable`, :class:`Closed`, :class:`Reset`;
- errors: :class:`LimitsError` (a :class:`Limits` value out of range),
  :class:`StreamError`, :class:`TooManyStreams`, :class:`StreamClosedError` (the
  application's), :class:`StreamProtocolError` (the peer's bytes);
- the codec of ``StreamMessage`` (``wire/frame.proto``): :func:`encode`, :func:`decode`.

docs/streams.md describes the protocol; ``node/_streams.py`` runs this core.
"""

from ._core import (
    MAX_CHUNK,
    MAX_CREDIT,
    MAX_LABEL,
    Closed,
    Limits,
    LimitsError,
    Opened,
    Readable,
    Reset,
    Send,
    Stream,
    StreamClosedError,
    StreamCore,
    StreamError,
    StreamEvent,
    StreamKey,
    StreamProtocolError,
    TooManyStreams,
    Writable,
    decode,
    encode,
)

__all__ = [
    "MAX_CHUNK",
    "MAX_CREDIT",
    "MAX_LABEL",
    "Closed",
    "Limits",
    "LimitsError",
    "Opened",
    "Readable",
    "Reset",
    "Send",
    "Stream",
    "StreamClosedError",
    "StreamCore",
    "StreamError",
    "StreamEvent",
    "StreamKey",
    "StreamProtocolError",
    "TooManyStreams",
    "Writable",
    "decode",
    "encode",
]
