"""``aegis-hidden devnet up|status|down``: the private Tor (and I2P) network as a command.

``up --i2p`` also brings up a private I2P network of patched i2pd routers in
``<dir>/i2p`` (``--i2p-only``: that one alone); ``status`` and ``down`` handle
whichever of the two is there.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..testing import STATE_FILE, I2PNetwork, I2PNetworkError, TorNetwork, TorNetworkError, find_patched_i2pd
from ._common import CLIError

I2P_SUBDIR = "i2p"


def register(sub: Any) -> None:
    p = sub.add_parser("devnet", help="a private Tor network on 127.0.0.1 for tests and demos")
    dsub = p.add_subparsers(dest="devnet_command", metavar="ACTION")
    dsub.required = True

    up = dsub.add_parser("up", help="create and start the network, wait until it works")
    _dir(up)
    up.add_argument("--relays", type=int, default=2, help="relays besides the 3 authorities")
    up.add_argument("--clients", type=int, default=1, help="client instances (SOCKS + control)")
    up.add_argument("--timeout", type=float, default=180.0,
                    help="seconds to wait for the clients to bootstrap (and the I2P routers "
                         "to build tunnels)")
    up.add_argument("--no-wait", action="store_true", help="return once the processes start")
    up.add_argument("--bridge", action="store_true",
                    help="also an obfs4 bridge (needs obfs4proxy) and print its bridge line")
    which = up.add_mutually_exclusive_group()
    which.add_argument("--i2p", action="store_true",
                       help="also a private I2P network (4 patched i2pd routers) in DIR/i2p")
    which.add_argument("--i2p-only", action="store_true",
                       help="only the private I2P network in DIR/i2p (no tor)")
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


def describe(net: TorNetwork, bridge_lines: list[str] | None = None) -> str:
    """What a node needs to join ``net``: DirAuthority lines, client ports, a config snippet.

    ``bridge_lines`` (of the running bridges): printed, with the config of a node that
    reaches the network only through the first one.
    """
    out = ["DirAuthority lines:"]
    out += [f"  DirAuthority {line}" for line in net.dir_authority_lines()]
    for c in net.by_role("client"):
        out.append(f"{c.name}: SOCKS 127.0.0.1:{c.socks_port}  control 127.0.0.1:{c.control_port}"
                   f"  (cookie {c.data_dir}/control_auth_cookie)")
    for line in bridge_lines or []:
        out.append(f"bridge line: {line}")
    out.append("node config (own tor joining this network):")
    out.append("  tor:\n    testing_network: true\n    dir_authorities:")
    out += [f"      - \"{line}\"" for line in net.dir_authority_lines()]
    if bridge_lines:
        out.append("    # only through the bridge (obfs4):")
        out.append(f"    bridges:\n      - \"{bridge_lines[0]}\"")
        out.append(f"    transports:\n      - \"obfs4={net.obfs4proxy}\"")
    return "\n".join(out)


def _bridge_lines(net: TorNetwork, timeout: float) -> list[str]:
    bridges = [b for b in net.by_role("bridge") if net.is_running(b)]
    try:
        return [net.bridge_line(b, timeout) for b in bridges]
    except TorNetworkError as e:
        raise CLIError(str(e).splitlines()[0]) from None


# -- I2P ----------------------------------------------------------------------------------

def i2p_node_config(net: I2PNetwork, index: int | None = None) -> dict[str, Any]:
    """The ``i2p:`` section of a node on router ``index`` (default: the first non-floodfill).

    1-hop tunnels and 5 per direction: what the integration tests measured to work
    on this 4-router network (docs/i2p.md).
    """
    if index is None:
        index = net.client_routers[0]
    return {"enabled": True, "sam_address": net.routers[index].sam_address,
            "tunnel_length": 1, "tunnel_quantity": 5}


def describe_i2p(net: I2PNetwork) -> str:
    """What a node needs to join the I2P network: each router's SAM address, a config snippet."""
    clients = net.client_routers
    out = [f"I2P routers (netid {net.netid}, logs in {net.directory}/routerN/i2pd.log):"]
    for r in net.routers:
        role = "floodfill" if r.index not in clients else "for nodes"
        out.append(f"  router{r.index}: SAM {r.sam_address}  ({role})")
    names = ", ".join(f"router{i}" for i in clients)
    out.append(f"node config (one node per router that is not a floodfill: {names}; "
               f"here router{clients[0]}):")
    out.append("  i2p:")
    out += [f"    {key}: {str(value).lower() if isinstance(value, bool) else value}"
            for key, value in i2p_node_config(net).items()]
    return "\n".join(out)


def _one_line(e: Exception, directory: Path) -> str:
    """An I2P harness error (its first line; the log tails that follow stay in the logs)."""
    text = str(e).strip()
    first = text.splitlines()[0].rstrip(":") if text else type(e).__name__
    if "\n" in text:
        first += f" (logs: {directory}/routerN/i2pd.log)"
    return first


def _load_i2p(directory: Path) -> I2PNetwork | None:
    """The I2P network recorded in ``directory`` (None if there is none)."""
    directory = directory.resolve()
    if not (directory / "network.json").exists():
        return None
    try:
        return I2PNetwork.load(directory)
    except I2PNetworkError as e:
        raise CLIError(_one_line(e, directory)) from None


def _i2p_running(net: I2PNetwork) -> bool:
    return any(net.is_running(r.index) for r in net.routers)


def _clear_i2p(directory: Path) -> None:
    """Remove what an earlier network left (router keys and router.info with old ports)."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.is_dir() and re.fullmatch(r"router\d+", entry.name):
            shutil.rmtree(entry)
        elif entry.name in ("network.json", "reseed.zip"):
            entry.unlink()


def _patched_i2pd() -> Path:
    """The patched i2pd, or one line saying how to build it (never built from here)."""
    try:
        binary = find_patched_i2pd(build=False)
    except I2PNetworkError as e:
        message = str(e).splitlines()[0]
        if ".ci/build-i2pd.sh" not in message:
            message += ("; the private I2P network needs the patched i2pd: "
                        "run .ci/build-i2pd.sh or make setup")
        raise CLIError(message) from None
    if not binary.is_file():
        raise CLIError(f"no patched i2pd at {binary} ($AEGIS_I2PD): run .ci/build-i2pd.sh "
                       "(make setup) or fix AEGIS_I2PD")
    return binary


def _i2p_status_rows(net: I2PNetwork) -> list[dict[str, Any]]:
    clients = net.client_routers
    return [{"name": f"router{r.index}", "floodfill": r.index not in clients,
             "pid": r.pid or 0, "running": net.is_running(r.index),
             "sam_address": r.sam_address, "port": r.port} for r in net.routers]


# -- commands -----------------------------------------------------------------------------

def _up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    want_tor = not args.i2p_only
    want_i2p = args.i2p or args.i2p_only
    i2p_dir = (directory / I2P_SUBDIR).resolve()
    if want_tor:
        try:
            old = TorNetwork.load(directory)
        except TorNetworkError:
            old = None
        if old is not None and any(old.is_running(i) for i in old.instances):
            raise CLIError(f"a network is already running in {directory}: "
                           "'aegis-hidden devnet down' first")
    binary: Path | None = None
    if want_i2p:
        try:
            old_i2p = _load_i2p(i2p_dir)
        except CLIError:
            old_i2p = None
        if old_i2p is not None and _i2p_running(old_i2p):
            raise CLIError(f"an I2P network is already running in {i2p_dir}: "
                           f"'aegis-hidden devnet down --dir {directory}' first")
        binary = _patched_i2pd()
    net: TorNetwork | None = None
    i2p: I2PNetwork | None = None
    try:
        if want_tor:
            net = TorNetwork(directory, relays=args.relays, clients=args.clients,
                             bridges=1 if args.bridge else 0)
            try:
                net.setup()
                net.start()
                print(f"started {len(net.instances)} tor processes in {net.directory}")
                if not args.no_wait and not want_i2p:
                    seconds = net.wait_bootstrapped(args.timeout)
                    print(f"bootstrapped in {seconds:.1f}s")
            except TorNetworkError as e:
                net.stop()
                raise CLIError(str(e)) from None
        if want_i2p:
            _clear_i2p(i2p_dir)
            i2p = I2PNetwork(i2p_dir, binary=binary)
            try:
                i2p.setup()
                i2p.start()
                print(f"started {len(i2p.routers)} i2pd routers in {i2p.directory} "
                      "(SAM answers on each)")
                if not args.no_wait and net is not None:
                    try:
                        seconds = net.wait_bootstrapped(args.timeout)
                    except TorNetworkError as e:
                        raise CLIError(str(e)) from None
                    print(f"bootstrapped in {seconds:.1f}s")
                if not args.no_wait:
                    seconds = i2p.wait_ready(args.timeout)
                    print(f"I2P tunnels ready on every router in {seconds:.1f}s")
            except (I2PNetworkError, OSError, ValueError) as e:
                raise CLIError(_one_line(e, i2p_dir)) from None
    except CLIError:
        if i2p is not None:
            i2p.stop()
        if net is not None:
            net.stop()
        raise
    if net is not None:
        try:
            lines = _bridge_lines(net, args.timeout)
        except CLIError:
            if i2p is not None:
                i2p.stop()
            net.stop()
            raise
        print(describe(net, lines))
    if i2p is not None:
        print(describe_i2p(i2p))
    return 0


def _status(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    i2p = _load_i2p(directory / I2P_SUBDIR)
    try:
        net: TorNetwork | None = TorNetwork.load(directory)
    except TorNetworkError as e:
        if i2p is None or (directory / STATE_FILE).exists():
            raise CLIError(str(e)) from None
        net = None  # an I2P network only (devnet up --i2p-only)
    rows = net.status() if net is not None else []
    i2p_rows = _i2p_status_rows(i2p) if i2p is not None else []
    if args.json:
        data: dict[str, Any] = {}
        if net is not None:
            data = {"instances": rows, "dir_authorities": net.dir_authority_lines(),
                    "clients": [{"name": c.name, "socks_port": c.socks_port,
                                 "control_port": c.control_port}
                                for c in net.by_role("client")],
                    "bridges": _bridge_lines(net, 0)}
        if i2p is not None:
            data["i2p"] = {"directory": str(i2p.directory), "netid": i2p.netid,
                           "routers": i2p_rows, "node_config": {"i2p": i2p_node_config(i2p)}}
        print(json.dumps(data, indent=2))
    else:
        if net is not None:
            for r in rows:
                state = "running" if r["running"] else "stopped"
                print(f"{r['name']:8} {r['role']:9} pid {r['pid']:<7} {state:8} "
                      f"bootstrapped {r['bootstrap']}%")
            print(describe(net, _bridge_lines(net, 0)))
        if i2p is not None:
            for r in i2p_rows:
                state = "running" if r["running"] else "stopped"
                role = "floodfill" if r["floodfill"] else "router"
                print(f"{r['name']:8} {role:9} pid {r['pid']:<7} {state:8} "
                      f"SAM {r['sam_address']}")
            print(describe_i2p(i2p))
    return 0 if all(r["running"] for r in rows + i2p_rows) else 3


def _down(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    errors: list[str] = []
    try:
        i2p = _load_i2p(directory / I2P_SUBDIR)
    except CLIError as e:
        i2p = None
        errors.append(str(e))
    try:
        net: TorNetwork | None = TorNetwork.load(directory)
    except TorNetworkError as e:
        net = None
        if (directory / STATE_FILE).exists() or (i2p is None and not errors):
            errors.append(str(e))
    if i2p is not None:
        i2p.stop()
        print(f"stopped the I2P network in {i2p.directory} (logs kept)")
    if net is not None:
        net.stop()
        print(f"stopped the network in {net.directory} (logs kept)")
    if errors:
        raise CLIError("; ".join(errors))
    return 0
