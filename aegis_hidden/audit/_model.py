"""The audit's inputs, thresholds and report: plain data, no analysis.

Everything a report holds is JSON-safe: numbers that cannot be computed are
``None``, never NaN or Infinity (:meth:`AuditReport.to_json` checks).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: The node's default ``mixing.cell_size`` (aegis_hidden.config), used for a
#: capture whose streams do not start with a clear hello cell naming the size.
DEFAULT_CELL_SIZE = 996

#: Every check, in report order.
CHECK_NAMES = ("leak_off_loopback", "leak_dns", "leak_connections", "canary", "cells",
               "timing", "bursts", "correlation", "volume", "anonymity")

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"

#: ``check.threshold`` -> (default, what it means). ``None``: not judged unless set.
THRESHOLDS: dict[str, tuple[float | None, str]] = {
    "leak_off_loopback.max_packets": (0, "packets with a non-loopback address (relays "
                                      "excepted) before the check fails"),
    "leak_dns.max_queries": (0, "DNS/mDNS/LLMNR queries before the check fails"),
    "leak_connections.max_connections": (0, "loopback connections to a port not allowed"),
    "canary.max_hits": (0, "canary or address occurrences outside where they belong"),
    "cells.max_misaligned": (0, "frames (writes) on a cell stream that do not end on a "
                             "cell boundary, or trace cells of another size"),
    "timing.alpha": (0.01, "KS significance level per check (Bonferroni over links): a "
                     "link fails when p < alpha / links"),
    "timing.min_intervals": (30, "inter-departure times a link needs to be tested"),
    "timing.constant_max_cv": (0.1, "constant-rate schedule: most std/mean of the intervals"),
    "timing.constant_max_rate_error": (0.1, "constant-rate schedule: most relative error of "
                                       "the mean interval against 1/λ"),
    "bursts.max_cells_per_write": (4, "real+cover cells one departure may carry (the "
                                   "profile's burst)"),
    "bursts.max_dispersion": (2.0, "variance/mean of departures per bin (Poisson: 1)"),
    "bursts.bin": (1.0, "seconds per bin for the dispersion"),
    "correlation.bin": (1.0, "seconds per time bin of the cell counts"),
    "correlation.max_lag": (5, "bins of lag tried either way"),
    "correlation.r_max": (0.3, "largest |Pearson r| between in and out counts"),
    "correlation.alpha": (0.01, "a correlation above r_max (Bonferroni over lags) or an MI "
                          "above mi_max (shuffle test) fails only if significant at this level"),
    "correlation.mi_max": (0.1, "mutual information in bits (bias-corrected) between in and "
                           "out counts"),
    "correlation.min_bins": (30, "bins needed to judge"),
    "volume.max_rate_cv": (0.5, "coefficient of variation of the cell rate across links"),
    "volume.min_seconds": (30.0, "a link must last this long to enter the volume check"),
    "volume.max_cover_overhead": (None, "(cover+loop)/real cells on the wire; None: figure "
                                  "only"),
    "anonymity.min_degree": (0.5, "mean degree of anonymity H / log2 N"),
    "anonymity.min_set": (2.0, "mean effective anonymity set 2^H"),
}


class AuditError(ValueError):
    """An input the audit cannot read, or a threshold it does not know; says which and why."""


class Thresholds:
    """Per-check thresholds by dotted name (``timing.alpha``); see :data:`THRESHOLDS`."""

    def __init__(self, values: Mapping[str, float | None] | None = None) -> None:
        self._values: dict[str, float | None] = {k: v for k, (v, _) in THRESHOLDS.items()}
        for name, value in (values or {}).items():
            self._set(name, value)

    def _set(self, name: str, value: float | None) -> None:
        if name not in THRESHOLDS:
            raise AuditError(f"unknown threshold {name!r}; known: " + ", ".join(THRESHOLDS))
        if value is None:
            if THRESHOLDS[name][0] is not None:
                raise AuditError(f"threshold {name} cannot be cleared (default "
                                 f"{THRESHOLDS[name][0]})")
        elif isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise AuditError(f"threshold {name} must be a finite number >= 0, not {value!r}")
        elif name.endswith(".bin") and value <= 0:
            raise AuditError(f"threshold {name} is a bin width in seconds: it must be > 0")
        elif name.endswith("alpha") and not 0 < value <= 1:
            raise AuditError(f"threshold {name} is a significance level: 0 < alpha <= 1")
        self._values[name] = value

    @classmethod
    def parse(cls, items: Iterable[str]) -> Thresholds:
        """From ``NAME=VALUE`` strings (``none`` clears an optional one)."""
        values: dict[str, float | None] = {}
        for item in items:
            name, sep, text = item.partition("=")
            if not sep:
                raise AuditError(f"threshold {item!r}: expected NAME=VALUE")
            name = name.strip()
            text = text.strip()
            if text.lower() == "none":
                values[name] = None
                continue
            try:
                values[name] = float(text)
            except ValueError:
                raise AuditError(f"threshold {name}: {text!r} is not a number") from None
        return cls(values)

    def __getitem__(self, name: str) -> float | None:
        return self._values[name]

    def get(self, name: str) -> float:
        """A threshold that always has a value."""
        value = self._values[name]
        if value is None:
            raise AuditError(f"threshold {name} needs a value")
        return value

    def of(self, check: str) -> dict[str, float | None]:
        prefix = check + "."
        return {k[len(prefix):]: v for k, v in self._values.items() if k.startswith(prefix)}

    def to_json(self) -> dict[str, float | None]:
        return dict(self._values)


@dataclass(frozen=True)
class Topology:
    """What the audited machine runs on loopback (all optional).

    ``socks``, ``control``, ``sam``: tor's SOCKS and control ports and i2pd's SAM
    port; ``listen``: the node's own listen ports (where tor/i2pd deliver incoming
    streams); ``api``: the node's own API ports (plain HTTP on loopback: they
    carry messages and addresses in the clear by design, so the canary search
    skips them); ``other``: any further port a loopback connection may go to (a
    private test network's relays). With no port given at all the
    connections check is skipped. ``relays``: ``(ip, port)`` endpoints off
    loopback that are the local tor's/i2pd's own relay traffic (a guard, an
    I2P peer): packets to or from them are not leaks. ``nodes``: groups of ports
    (SOCKS/SAM port the node dials through, its listen port) that are one node,
    for the correlation check; a port in no group is a node of its own.
    """

    socks: Sequence[int] = ()
    control: Sequence[int] = ()
    sam: Sequence[int] = ()
    listen: Sequence[int] = ()
    api: Sequence[int] = ()
    other: Sequence[int] = ()
    relays: Sequence[tuple[str, int]] = ()
    nodes: Sequence[Sequence[int]] = ()

    @property
    def allowed_ports(self) -> frozenset[int]:
        return frozenset((*self.socks, *self.control, *self.sam, *self.listen, *self.api,
                          *self.other))

    def node_of(self, port: int) -> str:
        for group in self.nodes:
            if port in group:
                return "node " + "+".join(str(p) for p in group)
        return f"port {port}"

    def to_json(self) -> dict[str, Any]:
        return {"socks": list(self.socks), "control": list(self.control), "sam": list(self.sam),
                "listen": list(self.listen), "api": list(self.api), "other": list(self.other),
                "relays": [f"{h}:{p}" for h, p in self.relays],
                "nodes": [list(g) for g in self.nodes]}


InputKind = Literal["capture", "trace"]


@dataclass(frozen=True)
class AuditInput:
    """One file to audit: a capture (pcap/pcapng) or a JSON-lines trace.

    Build it with :func:`aegis_hidden.audit.load_input` (from a path) or
    :meth:`from_bytes`. A capture given by path is streamed, never read whole.
    """

    name: str
    kind: InputKind
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> AuditInput:
        return cls(name, sniff_kind(data[:8], name), data=data)

    @classmethod
    def from_path(cls, path: str | Path) -> AuditInput:
        p = Path(path)
        try:
            with p.open("rb") as f:
                head = f.read(8)
        except OSError as e:
            raise AuditError(f"{p}: cannot read: {e.strerror or e}") from None
        return cls(str(p), sniff_kind(head, str(p)), path=p)


PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def sniff_kind(head: bytes, name: str) -> InputKind:
    if head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC:
        return "capture"
    if head.lstrip()[:1] in (b"{", b""):
        return "trace"
    raise AuditError(f"{name}: neither a pcap/pcapng capture nor a JSON-lines trace "
                     f"(starts with {head[:4].hex(' ')})")


@dataclass
class CheckResult:
    """One check: its verdict, the figures it rests on, the thresholds it used."""

    name: str
    status: str  # PASS, FAIL or SKIPPED
    summary: str
    thresholds: dict[str, float | None]
    figures: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    #: Data for the report's plots (histograms, matrices, series); in the JSON too.
    plots: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "passed": self.passed,
                "summary": self.summary, "thresholds": self.thresholds,
                "figures": self.figures, "findings": self.findings, "plots": self.plots}


#: Findings kept per check in a report (the figures count all of them).
MAX_FINDINGS = 50


@dataclass
class AuditReport:
    """Every check's result; ``passed`` is False when any check failed."""

    checks: list[CheckResult]
    inputs: list[dict[str, Any]]
    parameters: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == FAIL]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        out = {"version": 1, "passed": self.passed, "failed": self.failed,
               "inputs": self.inputs, "parameters": self.parameters,
               "checks": [c.to_json() for c in self.checks]}
        clean = finite(out)
        json.dumps(clean, allow_nan=False)  # a NaN that slipped through is a bug: fail here
        return clean  # type: ignore[no-any-return]


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
