"""Privacy audits of captures and traces: leaks, cells, timing, correlation, anonymity.

The engine is pure (standard library, dpkt, numpy/scipy, matplotlib and the
cell constants of :mod:`aegis_hidden.wire`): no reactor, no socket, no API or
node import, so the CLI and the API can both drive it. docs/audit.md explains
every check, its threshold and what passing does and does not prove.

Entry point::

    report = run_audit(inputs, thresholds=None, *, canaries=(), node_addresses=(),
                       topology=None, rate=None, constant=False, cell_size=996,
                       skip_first=3)

- ``inputs``: :class:`AuditInput` objects (:func:`load_input` for a path, or
  ``AuditInput.from_bytes(name, data)``) or plain paths. A capture is a pcap
  or pcapng file (Ethernet, loopback DLT_NULL, Linux cooked SLL/SLL2, raw IP),
  streamed from disk; a trace is JSON lines (the mixing layer's
  ``JsonLinesTraceSink`` cell lines, and/or ground-truth ``{"t", "dist"}``
  lines from a simulation). Each trace is judged as one node.
- ``thresholds``: :class:`Thresholds` (defaults in :data:`THRESHOLDS`;
  ``Thresholds.parse(["timing.alpha=0.05"])`` from ``NAME=VALUE`` strings).
- ``canaries``: random byte strings (>= 8 bytes) the node was made to send;
  found anywhere in a capture (raw, hex or base64) they fail the canary check.
- ``node_addresses``: the node's and its peers' ``.onion`` / ``.b32.i2p``
  names; allowed only in SOCKS CONNECT requests, SAM commands and tor's
  control connection, a failure anywhere else.
- ``topology``: :class:`Topology`: tor SOCKS/control ports, i2pd SAM port,
  the node's listen ports, its API ports (plaintext by design: not searched),
  other allowed loopback ports, relay endpoints off loopback, and which ports
  form one node (for the correlation check; otherwise each local port is a
  node of its own). Without ports the connections check is skipped.
- ``rate``: λ, the configured slots per second per link (the mixing
  profile's ``cover_rate``); None fits the rate per link (a weaker test).
  ``constant``: the profile sends at a constant rate (``paranoid``).
- ``cell_size``: for streams that do not open with a clear hello naming it.
- ``skip_first``: departures per link left out of the timing, burst and
  correlation checks (the handshake flights are written at once by design).

Raises :class:`AuditError` (a ``ValueError``) for an unreadable input, a bad
trace line (file and line named), an unknown threshold or a bad argument.

:class:`AuditReport`: ``passed`` (no check failed; a skipped check does not
fail), ``failed`` (names), ``checks`` (:class:`CheckResult`: ``name``,
``status`` "pass"/"fail"/"skipped", ``summary``, ``thresholds``, ``figures``,
``findings``, ``plots``), ``check(name)``, ``to_json()`` (a dict with no NaN
or Infinity). :func:`render_html` turns a report into one self-contained HTML
page (plots inlined as PNG, no script, no external URL).

``transport``: which transport a capture's tor connections look like (Tor's
TLS, or obfs4's uniformly random bytes), ``python -m aegis_hidden.audit
transport CAPTURE.pcap`` or ``aegis-hidden audit transport``.
"""

from ._checks import mutual_information, sender_entropy
from ._engine import load_input, read_facts, run_audit
from ._html import render_html
from ._model import (
    CHECK_NAMES,
    DEFAULT_CELL_SIZE,
    THRESHOLDS,
    AuditError,
    AuditInput,
    AuditReport,
    CheckResult,
    Thresholds,
    Topology,
)
from ._transport import (
    ENTROPY_WINDOW,
    OBFS4_MIN_ENTROPY,
    CaptureError,
    Connection,
    ConnectionReport,
    TransportLook,
    classify,
    read_pcap,
    shannon_entropy,
    tcp_connections,
    transport_report,
)
from ._transport_cli import add_transport_args, run_transport

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_CELL_SIZE",
    "ENTROPY_WINDOW",
    "OBFS4_MIN_ENTROPY",
    "THRESHOLDS",
    "AuditError",
    "AuditInput",
    "AuditReport",
    "CaptureError",
    "CheckResult",
    "Connection",
    "ConnectionReport",
    "Thresholds",
    "Topology",
    "TransportLook",
    "add_transport_args",
    "classify",
    "load_input",
    "mutual_information",
    "read_facts",
    "read_pcap",
    "render_html",
    "run_audit",
    "run_transport",
    "sender_entropy",
    "shannon_entropy",
    "tcp_connections",
    "transport_report",
]
