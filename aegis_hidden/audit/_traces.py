"""JSON-lines traces: the mixing layer's cell traces and ground-truth anonymity lines.

A *cell line* is what :class:`aegis_hidden.mixing.JsonLinesTraceSink` writes::

    {"t": 12.5, "link": "9f2c...", "dir": "out", "size": 996, "kind": "cover"}

A *ground-truth line* (written by a simulation that knows who sent what) gives,
for one message leaving the observed network, the adversary's probability
distribution over the N possible senders::

    {"t": 130.2, "dist": [0.0, 0.25, 0.25, 0.5]}

Cells of one link with the same ``t`` left in one scheduler slot (one
departure). Each trace is one node's view: the correlation check judges it as
one node. Bad lines are refused with the file and line number.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import IO

from .._json import JSONValueError, loads
from ._facts import Facts, Link
from ._model import AuditError, AuditInput

_DIRECTIONS = ("out", "in")
_KINDS = ("real", "cover", "loop")


def _lines(inp: AuditInput) -> IO[str]:
    if inp.data is not None:
        return io.StringIO(inp.data.decode("utf-8", errors="strict"))
    assert inp.path is not None
    return inp.path.open("r", encoding="utf-8")


def read_trace(inp: AuditInput, cell_size: int) -> Facts:
    facts = Facts(inp.name, "trace")
    links: dict[tuple[str, str], Link] = {}
    try:
        with _lines(inp) as lines:
            _parse(inp.name, lines, facts, links, cell_size)
    except UnicodeDecodeError as e:
        raise AuditError(f"{inp.name}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise AuditError(f"{inp.name}: cannot read: {e.strerror or e}") from None
    for rec in facts.links:
        if sorted(rec.times) != rec.times:  # lines written out of order: sort departures
            pairs = sorted(zip(rec.times, rec.cells, strict=True))
            rec.times = [p[0] for p in pairs]
            rec.cells = [p[1] for p in pairs]
    facts.streams["traced link directions"] = len(facts.links)
    facts.streams["ground-truth messages"] = len(facts.anonymity)
    return facts


def _parse(name: str, lines: Iterable[str], facts: Facts, links: dict[tuple[str, str], Link],
           cell_size: int) -> None:
    last: dict[tuple[str, str], float] = {}  # per link: the time of the departure being filled
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        facts.records += 1
        try:
            obj = loads(line)
        except (JSONValueError, ValueError) as e:
            raise AuditError(f"{name} line {n}: not strict JSON: {e}") from None
        if not isinstance(obj, dict):
            raise AuditError(f"{name} line {n}: expected an object")
        t = obj.get("t")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise AuditError(f"{name} line {n}: 't' must be a number of seconds")
        t = float(t)
        facts.start = t if facts.start is None else min(facts.start, t)
        facts.end = t if facts.end is None else max(facts.end, t)
        if "dist" in obj:
            facts.anonymity.append((t, _dist(obj["dist"], name, n)))
            continue
        link, direction, size, kind = (obj.get("link"), obj.get("dir"), obj.get("size"),
                                       obj.get("kind"))
        if not isinstance(link, str) or not link:
            raise AuditError(f"{name} line {n}: 'link' must be a non-empty string")
        if direction not in _DIRECTIONS:
            raise AuditError(f"{name} line {n}: 'dir' must be one of {_DIRECTIONS}")
        if kind not in _KINDS:
            raise AuditError(f"{name} line {n}: 'kind' must be one of {_KINDS}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise AuditError(f"{name} line {n}: 'size' must be a byte count")
        key = (link, str(direction))
        rec = links.get(key)
        if rec is None:
            rec = links[key] = Link(f"{link} {direction}", name, str(direction),
                                    cell_size)
            facts.links.append(rec)
        rec.sizes[size] += 1
        rec.kinds[str(kind)] += 1
        if last.get(key) == t:
            rec.cells[-1] += 1
        else:
            last[key] = t
            rec.times.append(t)
            rec.cells.append(1)


def _dist(value: object, name: str, n: int) -> list[float]:
    if not isinstance(value, list) or len(value) < 1:
        raise AuditError(f"{name} line {n}: 'dist' must be a non-empty list of probabilities")
    out = []
    for p in value:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise AuditError(f"{name} line {n}: 'dist' holds {p!r}, not a probability")
        out.append(float(p))
    total = sum(out)
    if not 0.999 <= total <= 1.001:
        raise AuditError(f"{name} line {n}: 'dist' sums to {total:.6g}, not 1")
    return out
