"""The ``transport`` command's arguments and run, shared by ``python -m aegis_hidden.audit``
and ``aegis-hidden audit transport``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._transport import CaptureError, TransportLook, transport_report


def add_transport_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("capture", type=Path, help="a pcap file (tcpdump -w)")
    t.add_argument("--port", type=int, action="append", default=[],
                   help="only connections to this server port (repeatable)")
    t.add_argument("--expect", choices=[x.value for x in TransportLook if x.value != "unknown"],
                   help="exit 1 unless every connection from its start looks like this")
    t.add_argument("--json", action="store_true", help="one JSON object")


def run_transport(args: argparse.Namespace) -> int:
    try:
        reports = transport_report(args.capture.read_bytes(), args.port)
    except (OSError, CaptureError) as e:
        print(f"cannot read {args.capture}: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"connections": [r.to_json() for r in reports]}, allow_nan=False))
    else:
        for r in reports:
            print(r.line())
        if not reports:
            print("no TCP connection in the capture" + (" to those ports" if args.port else ""))
    if args.expect:
        judged = [r for r in reports if "mid-connection" not in r.why]
        if not judged or any(r.look.value != args.expect for r in judged):
            return 1
    return 0
