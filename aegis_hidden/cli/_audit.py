"""``aegis-hidden audit report|transport|...``: privacy audits (docs/audit.md).

``report`` audits captures and traces offline with :func:`aegis_hidden.audit.run_audit`
and writes the JSON and HTML reports; exit status 1 when a check fails, 2
when an input or argument is wrong. ``transport`` tells TLS from obfs4-looking
tor connections in a capture.

More ``audit`` actions (a running node, the leak trap) live in their own
module: if ``aegis_hidden.cli._audit_live`` exists, its ``register_live(actions)``
is called with the ``audit`` sub-parsers object, after ``report`` and
``transport`` are added, to add its own parsers there (each sets ``func``
like any command). The helpers below that turn options into audit arguments
(:func:`add_audit_options`, :func:`audit_arguments`, :func:`write_reports`,
:func:`print_summary`) are for that module too, so ``audit node`` takes the
same thresholds and writes the same reports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..addresses import HostPortError, split_host_port
from ..config import ConfigError, load_config
from ..mixing import DEFAULT_PROFILE, PROFILES, resolve_profile
from ._common import CLIError

if TYPE_CHECKING:
    from ..audit import AuditReport

# aegis_hidden.audit (numpy, scipy, matplotlib, dpkt) is imported when an audit
# runs, not when the command line is built: the other commands start fast.

#: The module that adds more ``audit`` actions, if it exists.
LIVE_MODULE = "_audit_live"


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="privacy audits: leaks, cells, timing, correlation "
                       "(docs/audit.md)")
    actions = p.add_subparsers(dest="audit_command", metavar="ACTION")
    actions.required = True
    report = actions.add_parser(
        "report", help="audit captures (pcap/pcapng) and cell traces (JSON lines)",
        description="Audit captures and the node's cell traces; exit status 1 when a check "
        "fails, 2 when an input cannot be read. Checks and thresholds: docs/audit.md.")
    report.add_argument("inputs", nargs="+", metavar="CAPTURE_OR_TRACE",
                        help="pcap/pcapng capture or JSON-lines trace")
    add_audit_options(report)
    report.set_defaults(func=_report)
    transport = actions.add_parser("transport",
                                   help="which transport a capture's tor connections look like")
    transport.add_argument("capture", type=Path, help="a pcap file (tcpdump -w)")
    transport.add_argument("--port", type=int, action="append", default=[],
                           help="only connections to this server port (repeatable)")
    transport.add_argument("--expect", choices=["tls", "obfs4"],
                           help="exit 1 unless every connection from its start looks like this")
    transport.add_argument("--json", action="store_true", help="one JSON object")
    transport.set_defaults(func=_transport)
    try:
        live = importlib.import_module(f"{__package__}.{LIVE_MODULE}")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.{LIVE_MODULE}":
            raise
    else:
        live.register_live(actions)


def add_audit_options(p: argparse.ArgumentParser) -> None:
    """Thresholds, expectations, topology, needles and report files of an audit."""
    out = p.add_argument_group("reports")
    out.add_argument("--json", metavar="FILE", help="write the JSON report here ('-': stdout)")
    out.add_argument("--html", metavar="FILE", help="write the self-contained HTML report here")
    exp = p.add_argument_group("what the node is configured to do")
    exp.add_argument("--threshold", "-t", action="append", default=[], metavar="NAME=VALUE",
                     help="override one threshold, e.g. timing.alpha=0.001 (repeatable)")
    exp.add_argument("--config", "-c", help="the node's YAML config: mixing profile, rate and "
                     "cell size from it")
    exp.add_argument("--profile", choices=sorted(PROFILES),
                     help=f"mixing profile the node runs (default: the config's, else "
                          f"{DEFAULT_PROFILE}); sets λ, burst and constant-rate")
    exp.add_argument("--rate", type=float, metavar="λ",
                     help="slots per second per link (overrides the profile's)")
    exp.add_argument("--constant", action="store_true", default=None,
                     help="the schedule is constant-rate, not Poisson")
    exp.add_argument("--cell-size", type=int, metavar="BYTES",
                     help="for streams without a hello naming it (default: the config's "
                          "mixing.cell_size)")
    exp.add_argument("--skip-first", type=int, default=3, metavar="N",
                     help="departures per link left out of timing, bursts and correlation "
                          "(the handshake flights; 3)")
    topo = p.add_argument_group("what runs on loopback")
    for name, what in (("socks", "tor's SOCKS port"), ("control", "tor's control port"),
                       ("sam", "i2pd's SAM port"), ("listen", "the node's listen port"),
                       ("api-port", "the node's API port (plaintext by design: not searched "
                        "for canaries)"),
                       ("allow", "another loopback port connections may go to")):
        topo.add_argument(f"--{name}", type=int, action="append", default=[], metavar="PORT",
                          help=f"{what} (repeatable)")
    topo.add_argument("--relay", action="append", default=[], metavar="HOST:PORT",
                      help="an endpoint off loopback that is tor's/i2pd's relay traffic")
    topo.add_argument("--node", action="append", default=[], metavar="PORT,PORT",
                      help="ports that are one node (its SOCKS/SAM port and listen port), for "
                           "the correlation check (repeatable)")
    needles = p.add_argument_group("what must not appear in the clear")
    needles.add_argument("--canary", action="append", default=[], metavar="HEX",
                         help="canary bytes in hex (at least 8 bytes; repeatable)")
    needles.add_argument("--address", action="append", default=[], metavar="NAME",
                         help="the node's or a peer's .onion/.b32.i2p name (repeatable)")


def audit_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of :func:`run_audit` from the options of :func:`add_audit_options`."""
    from ..audit import AuditError, Thresholds, Topology

    profile_name = args.profile
    cell_size = args.cell_size
    mixing_overrides: dict[str, Any] = {}
    try:
        cfg = load_config(Path(args.config) if args.config else None)
    except ConfigError as e:
        raise CLIError(str(e), 2) from None
    cell_size = cell_size or cfg.mixing.cell_size
    if args.config:
        profile_name = profile_name or cfg.mixing.profile
        mixing_overrides = {"cover_rate": cfg.mixing.cover_rate, "burst": cfg.mixing.burst}
    try:
        profile = resolve_profile(profile_name or DEFAULT_PROFILE, **mixing_overrides)
    except ValueError as e:
        raise CLIError(str(e), 2) from None
    rate = args.rate if args.rate is not None else (profile.cover_rate or None)
    if rate is not None and not rate > 0:
        raise CLIError(f"--rate must be > 0, not {rate}", 2)
    items = list(args.threshold)
    if not any(t.split("=", 1)[0].strip() == "bursts.max_cells_per_write" for t in items):
        items.insert(0, f"bursts.max_cells_per_write={profile.burst}")
    try:
        thresholds = Thresholds.parse(items)
        canaries = [bytes.fromhex(c) for c in args.canary]
    except AuditError as e:
        raise CLIError(str(e), 2) from None
    except ValueError as e:
        raise CLIError(f"--canary: not hex bytes ({e})", 2) from None
    relays = []
    for r in args.relay:
        try:
            relays.append(split_host_port(r, allow_unix=False))
        except HostPortError as e:
            raise CLIError(f"--relay {r!r}: {e}", 2) from None
    nodes = []
    for group in args.node:
        try:
            nodes.append([int(x) for x in group.split(",") if x.strip()])
        except ValueError:
            raise CLIError(f"--node {group!r}: expected ports separated by commas", 2) from None
    for name in ("socks", "control", "sam", "listen", "api_port", "allow"):
        for port in getattr(args, name):
            if not 0 < port < 65536:
                raise CLIError(f"--{name.replace('_', '-')} {port}: not a TCP port", 2)
    topology = Topology(socks=args.socks, control=args.control, sam=args.sam,
                        listen=args.listen, api=args.api_port, other=args.allow, relays=relays,
                        nodes=nodes)
    return {"thresholds": thresholds, "canaries": canaries, "node_addresses": args.address,
            "topology": topology, "rate": rate,
            "constant": profile.constant if args.constant is None else args.constant,
            "cell_size": cell_size, "skip_first": args.skip_first}


def _write(path: str, text: str) -> None:
    """Write ``text`` whole or not at all (a temporary file renamed over ``path``)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent or Path("."), prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as e:
        raise CLIError(f"cannot write {path}: {e.strerror or e}", 2) from None


def write_reports(report: AuditReport, json_file: str | None, html_file: str | None) -> None:
    import json

    from ..audit import render_html

    if json_file:
        text = json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"
        if json_file == "-":
            sys.stdout.write(text)
        else:
            _write(json_file, text)
    if html_file:
        _write(html_file, render_html(report))


def print_summary(report: AuditReport, stream: Any = None) -> None:
    out = stream or sys.stdout
    for c in report.checks:
        print(f"{c.status.upper():8} {c.name:18} {c.summary}", file=out)
    verdict = "PASSED" if report.passed else "FAILED: " + ", ".join(report.failed)
    print(f"audit {verdict}", file=out)


def _transport(args: argparse.Namespace) -> int:
    from ..audit import run_transport

    return run_transport(args)


def _report(args: argparse.Namespace) -> int:
    from ..audit import AuditError, run_audit

    kwargs = audit_arguments(args)
    try:
        report = run_audit([Path(p) for p in args.inputs], kwargs.pop("thresholds"), **kwargs)
    except AuditError as e:
        raise CLIError(str(e), 2) from None
    write_reports(report, args.json, args.html)
    print_summary(report, sys.stderr if args.json == "-" else sys.stdout)
    return 0 if report.passed else 1
