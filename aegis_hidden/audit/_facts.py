"""What the readers extract from an input, and the checks judge: links, leaks, hits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Link:
    """One direction of one node-to-tor (or node-to-i2pd) stream, or of a traced link.

    ``direction`` is the node's view: ``out`` leaves the node, ``in`` arrives.
    ``times`` are departures (one write / one scheduler slot), ``cells`` how
    many cells each carried. ``sizes`` counts write sizes in bytes (captures) or
    cell sizes (traces); ``kinds`` counts real/cover/loop cells (traces only).
    """

    name: str
    group: str  # the node it belongs to (correlation is judged per node)
    direction: str
    cell_size: int
    times: list[float] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)
    sizes: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def total_cells(self) -> int:
        return sum(self.cells)


@dataclass
class Facts:
    """Everything one input yields; a trace leaves the capture-only parts empty."""

    name: str
    kind: str
    records: int = 0  # packets (capture) or lines (trace)
    start: float | None = None
    end: float | None = None
    links: list[Link] = field(default_factory=list)
    #: Capture only (None: not applicable to this input).
    off_loopback: list[dict[str, Any]] | None = None
    dns: list[dict[str, Any]] | None = None
    connections: list[dict[str, Any]] | None = None  # every loopback flow and its server port
    hits: list[dict[str, Any]] | None = None  # canary/address found where it does not belong
    hits_allowed: int = 0  # addresses found where they belong (SOCKS requests, SAM, control)
    frames_checked: int = 0  # writes on cell streams judged for alignment
    misaligned: list[dict[str, Any]] = field(default_factory=list)
    streams: Counter[str] = field(default_factory=Counter)
    #: Trace only: the adversary's distribution over senders, per exiting message.
    anonymity: list[tuple[float, list[float]]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return self.end - self.start

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "records": self.records,
                "duration": round(self.duration, 6), "links": len(self.links),
                "streams": dict(self.streams)}
