"""``aegis-hidden node isolate|resume|throttle|restart-transport|emergency``.

The emergency controls of a running node, through its API (docs/operations.md,
"Emergency procedures"). Blocking one peer is ``aegis-hidden peers block``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._api import ApiClient
from ._common import add_node_args


def _client_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")


def _bytes_per_second(value: str) -> int:
    """argparse type: a whole number of bytes per second, with an optional k/M/G
    suffix (powers of 1000); 0 lifts the cap."""
    text = value.strip()
    scale = {"k": 1000, "m": 1000**2, "g": 1000**3}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale != 1 else text
    if not digits.isascii() or not digits.isdigit():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number of bytes per second (e.g. 50000, 50k, 2M; "
            "0 lifts the cap)")
    return int(digits) * scale


def register(sub: Any) -> None:
    p = sub.add_parser("node", help="emergency controls: isolate, resume, throttle, "
                                    "restart a transport")
    nsub = p.add_subparsers(dest="node_command", metavar="ACTION")
    nsub.required = True
    iso = nsub.add_parser("isolate", help="close every session and refuse new ones both ways; "
                                          "queued messages are kept (survives restarts)")
    _client_args(iso)
    iso.add_argument("--reason", default="", help="kept in the state file and the log")
    iso.set_defaults(func=_isolate)
    res = nsub.add_parser("resume", help="end the isolation; queued messages are sent at once")
    _client_args(res)
    res.set_defaults(func=_resume)
    thr = nsub.add_parser("throttle", help="cap what the node sends, all links together "
                                           "(bytes/s; 0 lifts the cap)")
    _client_args(thr)
    thr.add_argument("bytes_per_second", type=_bytes_per_second,
                     help="e.g. 50000, 50k, 2M; 0 to lift the cap")
    thr.set_defaults(func=_throttle)
    rst = nsub.add_parser("restart-transport", help="restart tor or i2p without restarting "
                                                    "the node (its sessions are redialled)")
    _client_args(rst)
    rst.add_argument("transport", choices=("tor", "i2p"))
    rst.set_defaults(func=_restart)
    st = nsub.add_parser("emergency", help="show isolation and the bandwidth cap")
    _client_args(st)
    st.set_defaults(func=_show)


def _describe(state: dict[str, Any]) -> str:
    cap = (state.get("throttle") or {}).get("bytes_per_second")
    isolated = "isolated" if state.get("isolated") else "not isolated"
    if state.get("isolated") and state.get("isolation_reason"):
        isolated += f" ({state['isolation_reason']})"
    return f"{isolated}; bandwidth cap: " + (f"{cap} bytes/s" if cap else "none")


def _isolate(args: argparse.Namespace) -> int:
    body = {"reason": args.reason} if args.reason else {}
    reply = ApiClient.from_args(args).ok("POST", "/api/node/isolate", body)
    print(("node isolated: " if reply["changed"] else "already isolated: ") + _describe(reply))
    return 0


def _resume(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("POST", "/api/node/resume", {})
    print(("node resumed: " if reply["changed"] else "was not isolated: ") + _describe(reply))
    return 0


def _throttle(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("POST", "/api/node/throttle",
                                         {"bytes_per_second": args.bytes_per_second})
    print(_describe(reply))
    return 0


def _restart(args: argparse.Namespace) -> int:
    ApiClient.from_args(args).ok("POST", f"/api/node/transports/{args.transport}/restart", {})
    print(f"{args.transport} restarting; its sessions were closed and are redialled once it "
          "is ready (`aegis-hidden status` shows its progress)")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(_describe(ApiClient.from_args(args).ok("GET", "/api/node/emergency")))
    return 0
