"""``aegis-hidden status``: a running node's state, with tor's bootstrap progress bar.

Asks the node's API (``/api/network/status``); when the API is disabled or not
answering, reads ``status.json`` in the data dir, which the node rewrites every
few seconds. ``--watch`` redraws until tor has bootstrapped. ``--ready`` (for
readiness probes) exits with status 3 while a transport is not ready.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ._api import ApiClient
from ._common import CLIError, add_node_args, node_config


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="a running node's state and tor bootstrap progress")
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")
    p.add_argument("--json", action="store_true", help="the raw state as one JSON object")
    p.add_argument("--watch", action="store_true",
                   help="redraw every second until tor has bootstrapped (Ctrl-C to stop)")
    p.add_argument("--ready", action="store_true",
                   help=f"exit status {NOT_READY} unless every transport (tor, i2p) is ready "
                        "(a readiness probe; status 1: no running node found)")
    p.set_defaults(func=_status)


#: Exit status of ``status --ready`` when the node runs but a transport is not ready.
NOT_READY = 3


def fetch(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(source, state): from the API if it answers, else from status.json."""
    cfg, data_dir = node_config(args)
    api_error = "the API is disabled (api.enabled: false)"
    if cfg.api.enabled:
        try:
            code, reply = ApiClient.from_args(args).call("GET", "/api/network/status")
        except CLIError as e:
            api_error = str(e)
        else:
            if code == 200 and isinstance(reply, dict):
                return "api", reply
            api_error = f"the API answered {code}"
    path = Path(data_dir) / "status.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"no running node found: {api_error}, and {path} does not exist") \
            from None
    except (OSError, ValueError) as e:
        raise CLIError(f"{path} cannot be read ({e})") from None
    if not isinstance(doc, dict):
        raise CLIError(f"{path} is not a JSON object")
    return "status.json", doc


def render(source: str, state: dict[str, Any]) -> list[str]:
    # here, not at the top: the tor package's import (twisted.internet, txtorcon's
    # helpers) is most of what a status call that finds no node would cost
    from ..tor import progress_bar

    onion = state.get("identity", {}).get("onion") or state.get("onion", "?")
    lines = [f"node:  {onion}  (from {source})"]
    for name, t in sorted(state.get("transports", {}).items()):
        if name == "tor":
            ready = "ready" if t.get("ready") else "not ready"
            lines.append(f"tor:   {progress_bar(t.get('bootstrap'))}  {ready}"
                         + (f", restarts {t['restarts']}" if t.get("restarts") else ""))
            bridges = t.get("bridges")
            if isinstance(bridges, dict):
                lines.append(f"       {bridge_text(bridges)}")
        elif name == "i2p":
            lines.append(f"i2p:   {t.get('state', '?')}  {t.get('address') or ''}".rstrip()
                         + (f"  ({t['error']})" if t.get("error") else ""))
        else:
            lines.append(f"{name}: {json.dumps(t)}")
    mixing = state.get("mixing")
    if isinstance(mixing, dict):
        lines.append(f"mix:   {mixing_text(mixing)}")
    counts = state.get("counts")
    if isinstance(counts, dict):
        lines.append("peers: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    peers = state.get("peers")
    if isinstance(peers, dict):
        reached = sum(1 for p in peers.values() if isinstance(p, dict) and p.get("reachable"))
        lines.append(f"peers: {len(peers)} known, {reached} reached")
    return lines


def mixing_text(mixing: dict[str, Any]) -> str:
    """``balanced: Poisson cover 2 cells/s per link (~2.0 kB/s each way), burst 4;
    loops 0.0333/s through peers; forwarded traffic waits Exp(1/s), mean 1 s``."""
    profile = mixing.get("profile", "?")
    if not mixing.get("cover_traffic"):
        text = f"{profile}: no cover traffic, cells leave at once"
    else:
        kind = "constant" if mixing.get("constant_rate") else "Poisson"
        text = (f"{profile}: {kind} cover {mixing.get('cover_rate', 0):g} cells/s per link "
                f"(~{mixing.get('bytes_per_second_per_link', 0) / 1000:.1f} kB/s each way), "
                f"burst {mixing.get('burst')}")
    if mixing.get("loop_cover"):
        text += f"; loops {mixing.get('loop_rate', 0):g}/s through peers"
    else:
        text += "; no loop cover"
    if mixing.get("mix_pool"):
        rate = mixing.get("mix_rate") or 0
        text += (f"; forwarded traffic waits Exp({rate:g}/s), mean {1 / rate:g} s"
                 if rate else "; forwarded traffic is not delayed")
        if mixing.get("batch_interval"):
            text += (f", in batches every {mixing['batch_interval']:g} s "
                     f"(or of {mixing.get('batch_size')})")
    else:
        text += "; no mix delays"
    if mixing.get("trace"):
        text += "; cell trace ON"
    return text


def bridge_text(bridges: dict[str, Any]) -> str:
    """``bridges: obfs4 (2)`` / ``bridges: none (direct to the Tor network)`` + warning."""
    if bridges.get("in_use"):
        names = ", ".join(bridges.get("transports") or []) or "?"
        text = f"bridges: {names} ({bridges.get('count', 0)})"
    else:
        text = "bridges: none (tor connects to the Tor network directly)"
    if bridges.get("warning"):
        text += f"\n       warning: {bridges['warning']}"
    return text


def _bootstrapped(state: dict[str, Any]) -> bool:
    tor = state.get("transports", {}).get("tor")
    return tor is None or bool(tor.get("ready"))


def not_ready(state: dict[str, Any]) -> list[str]:
    """Names of the transports that are not ready (none reported: ``["transports"]``)."""
    transports = state.get("transports")
    if not isinstance(transports, dict) or not transports:
        return ["transports"]
    return sorted(name for name, t in transports.items()
                  if not (isinstance(t, dict) and t.get("ready") is True))


def _status(args: argparse.Namespace) -> int:
    source, state = fetch(args)
    if args.json:
        print(json.dumps(state))
    else:
        while True:
            print("\n".join(render(source, state)), flush=True)
            if not args.watch or _bootstrapped(state):
                break
            time.sleep(1)
            source, state = fetch(args)
    if args.ready and (waiting := not_ready(state)):
        print(f"not ready: {', '.join(waiting)}", file=sys.stderr)
        return NOT_READY
    return 0
