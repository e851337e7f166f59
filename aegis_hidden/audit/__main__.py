"""``python -m aegis_hidden.audit transport CAPTURE.pcap [--port PORT ...] [--json]``.

Prints one line per TCP connection of the capture: tls, obfs4 or unknown, with
the first bytes and the entropy each verdict rests on. Exit status 0; 2 if the
file cannot be read as a pcap. ``--expect obfs4`` (or tls) exits 1 unless every
judged connection looks like that: a check an operator can script. The same
command is ``aegis-hidden audit transport``.
"""

from __future__ import annotations

import argparse
import sys

from ._transport_cli import add_transport_args, run_transport


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aegis_hidden.audit")
    sub = parser.add_subparsers(dest="check", required=True)
    add_transport_args(sub.add_parser(
        "transport", help="which transport a capture's tor connections look like"))
    args = parser.parse_args(argv)
    return run_transport(args)


if __name__ == "__main__":
    sys.exit(main())
