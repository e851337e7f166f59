"""A JSON-lines :class:`ITraceSink`: one line per cell, for tests, benchmarks and the audit.

Each line is ``{"t": seconds since the sink was opened, "link": salted hash,
"dir": "out"|"in", "size": bytes, "kind": "real"|"cover"|"loop"}``. The
link id is hashed with a salt drawn once per run from the injected random
source and never written, so traces of two runs cannot be joined on links and
a trace never names a peer. Nothing of a message is recorded. Times are
relative to the sink's start, so a trace does not carry the host's clock.
The ``kind`` is local knowledge (a cover cell looks like any other on the
wire): a trace is as sensitive as the node's own view and stays local.
"""

from __future__ import annotations

import hashlib
import json
import math
from random import Random
from typing import IO

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..interfaces import ITraceSink

DIRECTIONS = ("out", "in")
KINDS = ("real", "cover", "loop")


@implementer(ITraceSink)
class JsonLinesTraceSink:
    """Writes one JSON object per cell to ``stream`` (a text file opened by the caller)."""

    def __init__(self, stream: IO[str], clock: IReactorTime, random: Random) -> None:
        self._stream = stream
        self._start = clock.seconds()
        self._salt = random.getrandbits(256).to_bytes(32, "big")
        self._names: dict[str, str] = {}
        self.records = 0

    def link_hash(self, link: str) -> str:
        name = self._names.get(link)
        if name is None:
            name = hashlib.blake2b(link.encode("utf-8"), digest_size=8, key=self._salt).hexdigest()
            self._names[link] = name
        return name

    def record(self, at: float, link: str, direction: str, size: int, kind: str) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"trace direction must be one of {DIRECTIONS}, not {direction!r}")
        if kind not in KINDS:
            raise ValueError(f"trace kind must be one of {KINDS}, not {kind!r}")
        if not math.isfinite(at):
            raise ValueError(f"trace time must be finite, not {at!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"trace size must be a non-negative int, not {size!r}")
        line = json.dumps({"t": round(float(at) - self._start, 6), "link": self.link_hash(link),
                           "dir": direction, "size": size, "kind": kind},
                          allow_nan=False, separators=(",", ":"))
        self._stream.write(line + "\n")
        self.records += 1

    def flush(self) -> None:
        self._stream.flush()


def read_trace(stream: IO[str]) -> list[dict[str, object]]:
    """Parse a trace written by :class:`JsonLinesTraceSink` (strict JSON, one object a line)."""

    def no_constants(value: str) -> object:
        raise ValueError(f"non-finite number {value} in trace")

    out: list[dict[str, object]] = []
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        obj = json.loads(line, parse_constant=no_constants)
        if not isinstance(obj, dict):
            raise ValueError(f"trace line {n}: expected an object")
        out.append(obj)
    return out
