"""What travels inside a session for the messaging layer: small JSON envelopes.

``{"k": "msg", "id": ..., "t": hour, "body": {"type": ..., "data": ...}}``
carries an application message (``"rq": true`` asks for a response, ``"re": id``
answers a request); ``{"k": "ack", "id": ...}`` acknowledges one. Anything else
is a :class:`EnvelopeError` naming what was wrong, including JSON that is not
strict (:mod:`aegis_hidden._json`: NaN, Infinity, 1e400, lone surrogates, nesting
deeper than 64), which a peer's application could not parse or store.

``"t"`` is the sender's clock rounded down to the hour (:data:`CLOCK_GRANULARITY`),
never the exact time: an exact wall clock in every message is a clock-skew
fingerprint that follows a node across identities and networks. The receiver
only uses it to drop copies older than its de-duplication window (two days by
default, an hour of rounding does not matter there).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .. import _json as strict_json

_ID = re.compile(r"^[0-9a-f]{32}$")
CLOCK_GRANULARITY = 3600  # seconds: "t" on the wire is a whole hour


def coarse_time(seconds: float) -> int:
    """``seconds`` rounded down to :data:`CLOCK_GRANULARITY` (what ``"t"`` carries)."""
    return int(seconds // CLOCK_GRANULARITY) * CLOCK_GRANULARITY


class EnvelopeError(ValueError):
    """A peer sent bytes that are not a valid envelope."""


@dataclass(frozen=True)
class Message:
    msg_id: str
    created: float  # the sender's exact clock locally; the hour on the wire
    body: dict[str, Any]
    request: bool = False
    reply_to: str | None = None

    def encode(self) -> bytes:
        out: dict[str, Any] = {"k": "msg", "id": self.msg_id, "t": coarse_time(self.created),
                               "body": self.body}
        if self.request:
            out["rq"] = True
        if self.reply_to is not None:
            out["re"] = self.reply_to
        try:
            return strict_json.dumps(out, separators=(",", ":")).encode()
        except ValueError as e:  # NaN / Infinity: JSON cannot carry them
            raise EnvelopeError(f"message: {e} (NaN and Infinity cannot be sent)") from None


@dataclass(frozen=True)
class Ack:
    msg_id: str

    def encode(self) -> bytes:
        return json.dumps({"k": "ack", "id": self.msg_id}, separators=(",", ":")).encode()


def check_body(body: Any, where: str = "message") -> dict[str, Any]:
    """An application message: an object with a string ``type`` and any JSON ``data``."""
    if not isinstance(body, dict):
        raise EnvelopeError(f"{where}: expected an object with \"type\" and \"data\"")
    kind = body.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > 200:
        raise EnvelopeError(f"{where}.type: expected a non-empty string of at most 200 chars")
    unknown = set(body) - {"type", "data"}
    if unknown:
        raise EnvelopeError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    return body


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise EnvelopeError(f"{where}: expected 32 lowercase hex digits")
    return value


def decode(data: bytes, max_size: int) -> Message | Ack:
    if len(data) > max_size:
        raise EnvelopeError(f"envelope of {len(data)} bytes exceeds the {max_size}-byte limit")
    try:
        obj = strict_json.loads(data)
    except strict_json.JSONValueError as e:
        if e.path is None:
            raise EnvelopeError(f"not a JSON envelope: {e.message}") from None
        raise EnvelopeError(f"envelope.{e.path}: {e.message}") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("envelope: expected a JSON object")
    kind = obj.get("k")
    msg_id = _check_id(obj.get("id"), "envelope.id")
    if kind == "ack":
        return Ack(msg_id)
    if kind != "msg":
        raise EnvelopeError(f"envelope.k: expected \"msg\" or \"ack\", got {kind!r}")
    created = obj.get("t")
    if (not isinstance(created, int | float) or isinstance(created, bool)
            or not math.isfinite(created)):
        raise EnvelopeError("envelope.t: expected a finite number (seconds)")
    body = check_body(obj.get("body"), "envelope.body")
    request = obj.get("rq", False)
    if not isinstance(request, bool):
        raise EnvelopeError("envelope.rq: expected a boolean")
    reply_to = obj.get("re")
    if reply_to is not None:
        reply_to = _check_id(reply_to, "envelope.re")
    return Message(msg_id, float(created), body, request, reply_to)
