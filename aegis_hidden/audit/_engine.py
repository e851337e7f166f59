"""run_audit: read every input once, run every check, return the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._capture import canary_needles, read_capture
from ._checks import (
    Expectations,
    check_anonymity,
    check_bursts,
    check_canary,
    check_cells,
    check_connections,
    check_correlation,
    check_dns,
    check_off_loopback,
    check_timing,
    check_volume,
)
from ._facts import Facts
from ._model import DEFAULT_CELL_SIZE, AuditError, AuditInput, AuditReport, Thresholds, Topology
from ._traces import read_trace


def load_input(path: str | Path) -> AuditInput:
    """An input from a file: a pcap/pcapng capture or a JSON-lines trace (by its first bytes)."""
    return AuditInput.from_path(path)


def read_facts(inp: AuditInput, *, topology: Topology | None = None,
               canaries: Sequence[bytes] = (), node_addresses: Sequence[str] = (),
               cell_size: int = DEFAULT_CELL_SIZE) -> Facts:
    if inp.kind == "capture":
        return read_capture(inp, topology, canary_needles(canaries, node_addresses), cell_size)
    return read_trace(inp, cell_size)


def run_audit(inputs: Sequence[AuditInput | str | Path], thresholds: Thresholds | None = None,
              *, canaries: Sequence[bytes] = (), node_addresses: Sequence[str] = (),
              topology: Topology | None = None, rate: float | None = None,
              constant: bool = False, cell_size: int = DEFAULT_CELL_SIZE,
              skip_first: int = 3) -> AuditReport:
    """Audit captures and traces together; see the package docstring for every argument."""
    if not inputs:
        raise AuditError("nothing to audit: give at least one capture or trace")
    if rate is not None and not rate > 0:
        raise AuditError(f"rate must be > 0 slots per second, not {rate!r}")
    if skip_first < 0:
        raise AuditError("skip_first must be >= 0")
    th = thresholds or Thresholds()
    needles = canary_needles(canaries, node_addresses)  # refuses a too-short canary early
    facts = []
    for item in inputs:
        inp = item if isinstance(item, AuditInput) else load_input(item)
        facts.append(read_facts(inp, topology=topology, canaries=canaries,
                                node_addresses=node_addresses, cell_size=cell_size))
    exp = Expectations(rate=rate, constant=constant, skip_first=skip_first)
    checks = [
        check_off_loopback(facts, th),
        check_dns(facts, th),
        check_connections(facts, th, topology),
        check_canary(facts, th, len(needles)),
        check_cells(facts, th),
        check_timing(facts, th, exp),
        check_bursts(facts, th, exp),
        check_correlation(facts, th, exp),
        check_volume(facts, th),
        check_anonymity(facts, th),
    ]
    parameters = {"rate": rate, "schedule": "constant" if constant else "poisson",
                  "cell_size": cell_size, "skip_first": skip_first,
                  "canaries": len(canaries), "addresses": len(node_addresses),
                  "topology": (topology or Topology()).to_json()}
    return AuditReport(checks, [f.summary() for f in facts], parameters)
