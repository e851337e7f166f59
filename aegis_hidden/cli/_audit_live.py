"""``aegis-hidden audit sealed`` and ``aegis-hidden audit node``: the audits of live things.

The ``audit`` command (``_audit.py``) adds these two to its sub-parsers by
calling :func:`register_live`:

- ``audit sealed [--pcap FILE] [--json FILE] -- COMMAND...``: runs COMMAND in
  the leak trap (:mod:`aegis_hidden.audit._sealed`) and reports every packet
  that tried to leave the network namespace; exit status: COMMAND's own when
  nothing tried, 76 when something did, 77 when the trap cannot be built here
  (COMMAND is then not run). ``audit sealed --check`` only says whether the
  trap can be built (0 or 77), so a Makefile can choose.
- ``audit node [--seconds N] [--html FILE] [--json FILE]``: asks the running
  node's API (``POST /api/network/audit``) to record its own cell traces for N
  seconds and audit them with the default thresholds, waits for the report,
  prints one line per check, and exits 1 when a check failed. (Other
  thresholds: record with ``mixing.trace_file`` and run ``audit report`` on it.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ._api import ApiClient
from ._audit import _write
from ._common import CLIError, add_node_args

#: The trap's exit statuses (aegis_hidden.audit._sealed; imported lazily with the
#: audit package, so the other commands do not load its analysis libraries).
EXIT_LEAKED = 76
EXIT_UNAVAILABLE = 77
#: ``audit node --seconds``: the API's own bounds (aegis_hidden.api: 1..600).
DEFAULT_SECONDS = 60
MAX_SECONDS = 600
#: How long the analysis may take after the recording before the CLI gives up.
ANALYSIS_TIMEOUT = 300.0
POLL_INTERVAL = 1.0


def register_live(asub: Any) -> None:
    """Add ``sealed`` and ``node`` to the ``audit`` command's sub-parsers."""
    s = asub.add_parser(
        "sealed", help="run a command in a network namespace and report every packet that "
        "tries to leave it (root)",
        description="Runs COMMAND in a new network namespace whose only way out (a veth "
        "pair) is captured with tcpdump; loopback works as usual. Exit status: COMMAND's "
        f"own when nothing tried to leave, {EXIT_LEAKED} when something did, {EXIT_UNAVAILABLE} when "
        "the trap cannot be built here (COMMAND is then not run).")
    s.add_argument("--pcap", type=Path, help="keep the capture of the way out in this file")
    s.add_argument("--json", type=Path, dest="json_out",
                   help="write every packet that tried to leave as JSON to this file")
    s.add_argument("--check", action="store_true",
                   help=f"only say whether the trap can be built here (exit 0 or "
                   f"{EXIT_UNAVAILABLE}); runs nothing")
    s.add_argument("command", nargs=argparse.REMAINDER,
                   help="the command and its arguments, after --")
    s.set_defaults(func=_sealed)

    n = asub.add_parser(
        "node", help="record the running node's cell traces for N seconds and audit them "
        "(through the API)")
    add_node_args(n)
    n.add_argument("--api", help="API address (default: api.listen_address of the config)")
    n.add_argument("--seconds", type=int, default=DEFAULT_SECONDS,
                   help=f"how long to record (1..{MAX_SECONDS}, default {DEFAULT_SECONDS})")
    n.add_argument("--html", type=Path, help="write the HTML report to this file")
    n.add_argument("--json", type=Path, dest="json_out",
                   help="write the JSON report to this file")
    n.set_defaults(func=_node)


def _sealed(args: argparse.Namespace) -> int:
    from ..audit._sealed import SealUnavailable, main_sealed, probe

    if args.check:
        try:
            probe()
        except SealUnavailable as e:
            print(f"leak trap unavailable: {e}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print("leak trap available: network namespaces can be created here")
        return 0
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CLIError("audit sealed: no command given (usage: aegis-hidden audit sealed -- "
                       "COMMAND...)", 2)
    return main_sealed(command, pcap=args.pcap, json_out=args.json_out)


def check_lines(report: dict[str, Any]) -> list[str]:
    """One line per check of a JSON report, then the verdict (as ``audit report`` prints)."""
    lines = []
    for check in report.get("checks", []):
        lines.append(f"{str(check.get('status', '?')).upper():8} {check.get('name', '?'):18} "
                     f"{check.get('summary', '')}")
    failed = report.get("failed") or []
    lines.append("audit PASSED" if report.get("passed") else
                 "audit FAILED: " + ", ".join(str(f) for f in failed))
    return lines


def _node(args: argparse.Namespace) -> int:
    if not 1 <= args.seconds <= MAX_SECONDS:
        raise CLIError(f"--seconds must be from 1 to {MAX_SECONDS}", 2)
    client = ApiClient.from_args(args)
    started = client.ok("POST", "/api/network/audit", {"seconds": args.seconds})
    audit_id = str(started["id"])
    print(f"recording the node's cell traces for {args.seconds} s (audit {audit_id})",
          file=sys.stderr)
    deadline = time.monotonic() + args.seconds + ANALYSIS_TIMEOUT
    while True:
        state = client.ok("GET", f"/api/network/audit/{audit_id}")
        if state.get("state") == "done":
            break
        if state.get("state") == "failed":
            raise CLIError(f"the node could not audit its traces: {state.get('error')}")
        if time.monotonic() > deadline:
            raise CLIError(f"audit {audit_id} still {state.get('state')} after "
                           f"{args.seconds + ANALYSIS_TIMEOUT:.0f} s; ask again with GET "
                           f"/api/network/audit/{audit_id}")
        time.sleep(POLL_INTERVAL)
    report = state["report"]
    if args.json_out is not None:
        _write(str(args.json_out), json.dumps(report, allow_nan=False, indent=2) + "\n")
    if args.html is not None:
        code, html = client.call("GET", f"/api/network/audit/{audit_id}/report.html")
        if code != 200 or not isinstance(html, str):
            raise CLIError(f"the HTML report: API said {code}")
        _write(str(args.html), html)
    print("\n".join(check_lines(report)))
    return 0 if report.get("passed") else 1
