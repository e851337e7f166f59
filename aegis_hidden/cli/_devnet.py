"""``aegis-hidden devnet up|status|down``: the private Tor network as a command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..testing._tornet import TorNetwork, TorNetworkError
from ._common import CLIError


def register(sub: Any) -> None:
    p = sub.add_parser("devnet", help="a private Tor network on 127.0.0.1 for tests and demos")
    dsub = p.add_subparsers(dest="devnet_command", metavar="ACTION")
    dsub.required = True

    up = dsub.add_parser("up", help="create and start the network, wait until it works")
    _dir(up)
    up.add_argument("--relays", type=int, default=2, help="relays besides the 3 authorities")
    up.add_argument("--clients", type=int, default=1, help="client instances (SOCKS + control)")
    up.add_argument("--timeout", type=float, default=180.0,
                    help="seconds to wait for the clients to bootstrap")
    up.add_argument("--no-wait", action="store_true", help="return once the processes start")
    up.set_defaults(func=_up)

    status = dsub.add_parser("status", help="show the processes, ports and DirAuthority lines")
    _dir(status)
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(func=_status)

    down = dsub.add_parser("down", help="stop every process of the network (logs are kept)")
    _dir(down)
    down.set_defaults(func=_down)


def _dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="devnet",
                   help="state directory of the network (default: ./devnet)")


def describe(net: TorNetwork) -> str:
    """What a node needs to join ``net``: DirAuthority lines, client ports, a config snippet."""
    out = ["DirAuthority lines:"]
    out += [f"  DirAuthority {line}" for line in net.dir_authority_lines()]
    for c in net.by_role("client"):
        out.append(f"{c.name}: SOCKS 127.0.0.1:{c.socks_port}  control 127.0.0.1:{c.control_port}"
                   f"  (cookie {c.data_dir}/control_auth_cookie)")
    out.append("node config (own tor joining this network):")
    out.append("  tor:\n    testing_network: true\n    dir_authorities:")
    out += [f"      - \"{line}\"" for line in net.dir_authority_lines()]
    return "\n".join(out)


def _up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        old = TorNetwork.load(directory)
    except TorNetworkError:
        old = None
    if old is not None and any(old.is_running(i) for i in old.instances):
        raise CLIError(f"a network is already running in {directory}: "
                       "'aegis-hidden devnet down' first")
    net = TorNetwork(directory, relays=args.relays, clients=args.clients)
    try:
        net.setup()
        net.start()
        print(f"started {len(net.instances)} tor processes in {net.directory}")
        if not args.no_wait:
            seconds = net.wait_bootstrapped(args.timeout)
            print(f"bootstrapped in {seconds:.1f}s")
    except TorNetworkError as e:
        net.stop()
        raise CLIError(str(e)) from None
    print(describe(net))
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        net = TorNetwork.load(Path(args.dir))
    except TorNetworkError as e:
        raise CLIError(str(e)) from None
    rows = net.status()
    if args.json:
        print(json.dumps({"instances": rows, "dir_authorities": net.dir_authority_lines(),
                          "clients": [{"name": c.name, "socks_port": c.socks_port,
                                       "control_port": c.control_port}
                                      for c in net.by_role("client")]}, indent=2))
        return 0
    for r in rows:
        state = "running" if r["running"] else "stopped"
        print(f"{r['name']:8} {r['role']:9} pid {r['pid']:<7} {state:8} "
              f"bootstrapped {r['bootstrap']}%")
    print(describe(net))
    return 0 if all(r["running"] for r in rows) else 3


def _down(args: argparse.Namespace) -> int:
    try:
        net = TorNetwork.load(Path(args.dir))
    except TorNetworkError as e:
        raise CLIError(str(e)) from None
    net.stop()
    print(f"stopped the network in {net.directory} (logs kept)")
    return 0
