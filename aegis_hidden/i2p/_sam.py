"""SAM v3 codec, sans I/O: commands as bytes, replies and events from bytes.

Reference: the SAM v3 specification (geti2p.net/en/docs/api/samv3). A message
is one line: a verb, usually a subverb, then ``KEY=VALUE`` options separated by
spaces. Values may be double-quoted (3.2+), with ``\\"`` and ``\\\\`` escapes
inside quotes; a key may appear without ``=`` (value: empty string). Replies
may carry keys this client does not know: they are kept, never an error.

:class:`SAMReader` turns the bytes of one SAM socket into events. A socket
changes mode: after ``STREAM STATUS RESULT=OK`` for a CONNECT the rest is
stream data; for an ACCEPT one more line (the peer's destination) comes first.
A ``DATAGRAM RECEIVED ... SIZE=n`` line is followed by ``n`` payload bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from ._destination import SIGNATURE_TYPE_EDDSA_SHA512_ED25519
from ._errors import SAMProtocolError, result_error

MIN_VERSION = "3.0"
MAX_VERSION = "3.3"
MAX_LINE = 64 * 1024  # longest line accepted from a bridge (destinations are ~0.5-1 KiB)
MAX_DATAGRAM = 64 * 1024

_KEY = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_SESSION_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}\Z")
_B64_DEST = re.compile(r"[A-Za-z0-9~\-]+={0,2}\Z")
_SAFE_VALUE = re.compile(r'[^\s"\\]+\Z')  # i2pd (3.1) knows no quotes: quote only when needed


def version_tuple(version: str) -> tuple[int, int]:
    """``"3.1"`` -> ``(3, 1)``; raises :class:`SAMProtocolError` when malformed."""
    major, dot, minor = version.partition(".")
    if not (major.isdigit() and major.isascii() and (not dot or (minor.isdigit() and minor.isascii()))):
        raise SAMProtocolError(f"malformed SAM version {version!r}")
    return int(major), int(minor or 0)


# ---------------------------------------------------------------- encoding


def quote(value: str) -> str:
    """A value as it must appear on the wire: bare when safe, else double-quoted."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("SAM values cannot contain line breaks or NUL")
    if _SAFE_VALUE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode(verb: str, subverb: str | None = None,
           options: Iterable[tuple[str, str | int | None]] = ()) -> bytes:
    """One command line. Options with value ``None`` are left out."""
    parts = [verb]
    if subverb:
        parts.append(subverb)
    for key, value in options:
        if value is None:
            continue
        if not _KEY.match(key):
            raise ValueError(f"bad SAM option key {key!r}")
        parts.append(f"{key}={quote(str(value))}")
    return (" ".join(parts) + "\n").encode("utf-8")


def _session_id(session_id: str) -> str:
    if not _SESSION_ID.match(session_id):
        raise ValueError(f"session ID {session_id!r} must be 1-64 of A-Z a-z 0-9 _ -")
    return session_id


def _tunnel_options(options: Mapping[str, str | int] | None) -> list[tuple[str, str | int | None]]:
    return sorted((options or {}).items())


def hello(min_version: str = MIN_VERSION, max_version: str = MAX_VERSION) -> bytes:
    return encode("HELLO", "VERSION", [("MIN", min_version), ("MAX", max_version)])


def dest_generate(signature_type: int = SIGNATURE_TYPE_EDDSA_SHA512_ED25519) -> bytes:
    return encode("DEST", "GENERATE", [("SIGNATURE_TYPE", signature_type)])


STYLES = ("STREAM", "DATAGRAM", "RAW", "PRIMARY")


def session_create(style: str, session_id: str, destination: str = "TRANSIENT", *,
                   signature_type: int | None = SIGNATURE_TYPE_EDDSA_SHA512_ED25519,
                   port: int | None = None, host: str | None = None,
                   options: Mapping[str, str | int] | None = None) -> bytes:
    """``SESSION CREATE``; ``destination`` is a private-key blob (base64) or TRANSIENT."""
    if style not in STYLES:
        raise ValueError(f"unknown session style {style!r}")
    opts: list[tuple[str, str | int | None]] = [
        ("STYLE", style), ("ID", _session_id(session_id)), ("DESTINATION", destination),
        ("SIGNATURE_TYPE", signature_type if destination == "TRANSIENT" else None),
        ("PORT", port), ("HOST", host),
    ]
    return encode("SESSION", "CREATE", opts + _tunnel_options(options))


def session_add(style: str, session_id: str, *, port: int | None = None, host: str | None = None,
                from_port: int | None = None, to_port: int | None = None,
                listen_port: int | None = None,
                options: Mapping[str, str | int] | None = None) -> bytes:
    """``SESSION ADD`` (SAM 3.3): a subsession of a PRIMARY session."""
    if style not in ("STREAM", "DATAGRAM", "RAW"):
        raise ValueError(f"subsession style must be STREAM, DATAGRAM or RAW, not {style!r}")
    opts: list[tuple[str, str | int | None]] = [
        ("STYLE", style), ("ID", _session_id(session_id)), ("PORT", port), ("HOST", host),
        ("FROM_PORT", from_port), ("TO_PORT", to_port), ("LISTEN_PORT", listen_port),
    ]
    return encode("SESSION", "ADD", opts + _tunnel_options(options))


def _silent(silent: bool) -> str:
    return "true" if silent else "false"


def stream_connect(session_id: str, destination: str, *, silent: bool = False,
                   from_port: int | None = None, to_port: int | None = None) -> bytes:
    return encode("STREAM", "CONNECT", [
        ("ID", _session_id(session_id)), ("DESTINATION", destination),
        ("SILENT", _silent(silent)), ("FROM_PORT", from_port), ("TO_PORT", to_port)])


def stream_accept(session_id: str, *, silent: bool = False) -> bytes:
    return encode("STREAM", "ACCEPT", [("ID", _session_id(session_id)), ("SILENT", _silent(silent))])


def stream_forward(session_id: str, port: int, host: str | None = None, *,
                   silent: bool = False) -> bytes:
    return encode("STREAM", "FORWARD", [
        ("ID", _session_id(session_id)), ("PORT", port), ("HOST", host),
        ("SILENT", _silent(silent))])


def naming_lookup(name: str) -> bytes:
    return encode("NAMING", "LOOKUP", [("NAME", name)])


def ping(text: str = "") -> bytes:
    if "\n" in text or "\r" in text:
        raise ValueError("PING text cannot contain line breaks")
    return f"PING {text}".rstrip(" ").encode("utf-8") + b"\n"


def pong(text: str = "") -> bytes:
    if "\n" in text or "\r" in text:
        raise ValueError("PONG text cannot contain line breaks")
    return f"PONG {text}".rstrip(" ").encode("utf-8") + b"\n"


def quit_() -> bytes:
    return b"QUIT\n"


def datagram_send(destination: str, payload: bytes, *, raw: bool = False) -> bytes:
    """``DATAGRAM SEND`` (or ``RAW SEND``) on a session's control socket."""
    if len(payload) > MAX_DATAGRAM:
        raise ValueError(f"datagram of {len(payload)} bytes (at most {MAX_DATAGRAM})")
    return encode("RAW" if raw else "DATAGRAM", "SEND",
                  [("DESTINATION", destination), ("SIZE", len(payload))]) + payload


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Reply:
    """One message from the bridge: ``verb``, ``subverb`` (may be empty), options."""

    verb: str
    subverb: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    text: str = ""  # the rest of a PING/PONG line

    @property
    def name(self) -> str:
        return f"{self.verb} {self.subverb}".strip()

    def get(self, key: str, default: str = "") -> str:
        return self.options.get(key, default)

    def require(self, key: str) -> str:
        if key not in self.options:
            raise SAMProtocolError(f"{self.name} without {key}=")
        return self.options[key]

    def raise_for_result(self) -> Reply:
        """Return self when ``RESULT`` is OK (or absent), else raise the typed error."""
        result = self.options.get("RESULT")
        if result is not None and result != "OK":
            raise result_error(result, self.options.get("MESSAGE", ""), self.name)
        return self


def _tokenize(text: str) -> list[tuple[str, str | None]]:
    """Split into (token, value) pairs; value None for a token without ``=``."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in " \t=":
            if text[i] == '"':
                raise SAMProtocolError(f"quote inside a key at column {i}")
            i += 1
        key = text[start:i]
        if i < n and text[i] == "=":
            if not key:
                raise SAMProtocolError(f"'=' without a key at column {i}")
            i += 1
            if i < n and text[i] == '"':
                i += 1
                chars: list[str] = []
                while True:
                    if i >= n:
                        raise SAMProtocolError(f"unterminated quoted value for {key}")
                    ch = text[i]
                    if ch == "\\":
                        if i + 1 >= n:
                            raise SAMProtocolError(f"dangling backslash in value of {key}")
                        chars.append(text[i + 1])
                        i += 2
                        continue
                    if ch == '"':
                        i += 1
                        break
                    chars.append(ch)
                    i += 1
                if i < n and text[i] not in " \t":
                    raise SAMProtocolError(f"text right after the quoted value of {key}")
                out.append((key, "".join(chars)))
            else:
                vstart = i
                while i < n and text[i] not in " \t":
                    if text[i] == '"':
                        raise SAMProtocolError(f"stray quote in value of {key}")
                    i += 1
                out.append((key, text[vstart:i]))
        else:
            out.append((key, None))
    return out


def _decode_line(line: bytes) -> str:
    if line.endswith(b"\r"):
        line = line[:-1]
    if b"\0" in line or b"\r" in line:
        raise SAMProtocolError("control characters in a SAM line")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SAMProtocolError(f"SAM line is not UTF-8: {e}") from None


def parse_line(line: bytes) -> Reply:
    """Parse one line (without its ``\\n``) into a :class:`Reply`."""
    text = _decode_line(line)
    stripped = text.strip(" \t")
    if not stripped:
        raise SAMProtocolError("empty SAM line")
    head, _, rest = stripped.partition(" ")
    if head in ("PING", "PONG"):
        return Reply(head, text=rest.strip(" \t"))
    tokens = _tokenize(stripped)
    verb, value = tokens[0]
    if value is not None or not verb.isupper():
        raise SAMProtocolError(f"SAM line does not start with a verb: {stripped[:40]!r}")
    subverb = ""
    index = 1
    if len(tokens) > 1 and tokens[1][1] is None and tokens[1][0].isupper():
        subverb = tokens[1][0]
        index = 2
    options: dict[str, str] = {}
    for key, val in tokens[index:]:
        options[key] = "" if val is None else val
    return Reply(verb, subverb, options)


# ---------------------------------------------------------------- reader


@dataclass(frozen=True)
class DatagramReceived:
    """A repliable datagram that arrived on a DATAGRAM session's control socket."""

    destination: str  # base64 of the sender's destination (verified by the router)
    payload: bytes
    from_port: int = 0
    to_port: int = 0


@dataclass(frozen=True)
class RawReceived:
    payload: bytes
    from_port: int = 0
    to_port: int = 0
    protocol: int = 0


@dataclass(frozen=True)
class PeerAccepted:
    """The line after an accepted stream: the connecting peer's destination."""

    destination: str
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamData:
    data: bytes


Event = Reply | DatagramReceived | RawReceived | PeerAccepted | StreamData


class Mode(Enum):
    COMMAND = "command"  # lines
    PEER_LINE = "peer-line"  # one destination line, then DATA
    DATA = "data"  # raw stream bytes


def _port(reply: Reply, key: str) -> int:
    value = reply.get(key, "0") or "0"
    if not value.isdigit() or not value.isascii() or int(value) > 65535:
        raise SAMProtocolError(f"{reply.name}: {key}={value!r} is not a port")
    return int(value)


class SAMReader:
    """Bytes of one SAM socket in, events out.

    ``stream_pending(kind)`` tells the reader that a ``STREAM CONNECT`` or
    ``STREAM ACCEPT`` is in flight (when ``silent`` is false), so that after its
    ``RESULT=OK`` the reader stops parsing lines and hands out data.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        self.mode = Mode.COMMAND
        self._pending: str | None = None
        self._datagram: Reply | None = None

    def stream_pending(self, kind: str, *, silent: bool = False) -> None:
        if kind not in ("CONNECT", "ACCEPT"):
            raise ValueError(f"unknown stream command {kind!r}")
        self._pending = "CONNECT" if silent else kind

    def feed(self, data: bytes) -> list[Event]:
        if self.mode is Mode.DATA:
            return [StreamData(bytes(data))] if data else []
        self._buffer += data
        events: list[Event] = []
        while True:
            if self.mode is Mode.DATA:
                if self._buffer:
                    events.append(StreamData(bytes(self._buffer)))
                    self._buffer.clear()
                return events
            if self._datagram is not None:
                size = int(self._datagram.options["SIZE"])
                if len(self._buffer) < size:
                    return events
                payload = bytes(self._buffer[:size])
                del self._buffer[:size]
                events.append(self._payload_event(self._datagram, payload))
                self._datagram = None
                continue
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > self._max_line:
                    raise SAMProtocolError(f"SAM line longer than {self._max_line} bytes")
                return events
            if newline > self._max_line:
                raise SAMProtocolError(f"SAM line longer than {self._max_line} bytes")
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if self.mode is Mode.PEER_LINE:
                events.append(self._peer_line(line))
                self.mode = Mode.DATA
                continue
            reply = parse_line(line)
            if reply.verb in ("DATAGRAM", "RAW") and reply.subverb == "RECEIVED":
                size_text = reply.require("SIZE")
                if (not size_text.isdigit() or not size_text.isascii()
                        or int(size_text) > MAX_DATAGRAM):
                    raise SAMProtocolError(f"{reply.name}: bad SIZE={size_text!r}")
                if reply.verb == "DATAGRAM":
                    reply.require("DESTINATION")
                self._datagram = reply
                continue
            if reply.verb == "STREAM" and reply.subverb == "STATUS" and self._pending:
                if reply.get("RESULT") == "OK":
                    self.mode = Mode.DATA if self._pending == "CONNECT" else Mode.PEER_LINE
                self._pending = None
            events.append(reply)

    def _payload_event(self, header: Reply, payload: bytes) -> Event:
        if header.verb == "DATAGRAM":
            return DatagramReceived(header.options["DESTINATION"], payload,
                                    _port(header, "FROM_PORT"), _port(header, "TO_PORT"))
        return RawReceived(payload, _port(header, "FROM_PORT"), _port(header, "TO_PORT"),
                           _port(header, "PROTOCOL"))

    def _peer_line(self, line: bytes) -> PeerAccepted:
        text = _decode_line(line).strip(" \t")
        if not text:
            raise SAMProtocolError("empty peer destination line after STREAM ACCEPT")
        dest, _, rest = text.partition(" ")
        if not _B64_DEST.match(dest):
            raise SAMProtocolError("peer line after STREAM ACCEPT does not start with a "
                                   "base64 destination")
        options = {k: ("" if v is None else v) for k, v in _tokenize(rest)}
        return PeerAccepted(dest, options)
