"""``aegis-hidden peers list|add|remove|block|unblock``, ``send PEER JSON``, ``events``.

Each talks to a running node through its API (see ``aegis-hidden api token``).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from ..addresses import split_host_port
from ..peers import PeerAddressError, check_peer_address
from ._api import ApiClient
from ._common import add_node_args


def _client_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")


def peer_address(value: str) -> str:
    """argparse type: the canonical form of a peer address, or a clear refusal."""
    try:
        return check_peer_address(value)
    except PeerAddressError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: Any) -> None:
    p = sub.add_parser("peers", help="list and manage the running node's peers")
    psub = p.add_subparsers(dest="peers_command", metavar="ACTION")
    psub.required = True
    ls = psub.add_parser("list", help="known peers, status and reputation")
    _client_args(ls)
    ls.add_argument("--json", action="store_true", help="the API's JSON as is")
    ls.set_defaults(func=_list)
    add = psub.add_parser("add", help="add a peer by .onion (or .b32.i2p) address")
    _client_args(add)
    add.add_argument("address", type=peer_address)
    add.add_argument("--i2p", type=peer_address, help="the peer's .b32.i2p address, for failover")
    add.set_defaults(func=_action, action="add")
    for name, helptext in (("remove", "forget a peer (its queued messages expire)"),
                           ("unblock", "lift a blacklisting")):
        q = psub.add_parser(name, help=helptext)
        _client_args(q)
        q.add_argument("address", type=peer_address)
        if name == "remove":
            q.add_argument("--keep-messages", action="store_true",
                           help="keep its queued messages (no retries) until it is added again")
        q.set_defaults(func=_action, action=name)
    block = psub.add_parser("block", help="blacklist a peer (refused at dial and accept)")
    _client_args(block)
    block.add_argument("address", type=peer_address)
    block.add_argument("--reason", default="blocked by the operator")
    block.add_argument("--duration", type=float, help="seconds (default: for ever)")
    block.set_defaults(func=_action, action="block")

    send = sub.add_parser("send", help="send a message to a peer (reliable, acknowledged)")
    _client_args(send)
    send.add_argument("peer", type=peer_address)
    send.add_argument("message", help='JSON: {"type": ..., "data": ...}, or plain text '
                                      '(sent as {"type": "text", "data": TEXT})')
    send.set_defaults(func=_send)

    events = sub.add_parser("events", help="follow the node's live events (WebSocket)")
    _client_args(events)
    events.add_argument("--count", type=int, help="exit after this many events")
    events.set_defaults(func=_events)


def _list(args: argparse.Namespace) -> int:
    # The API answers in pages (limit/cursor): follow next_cursor to the end, so
    # the list is complete however many peers the node knows.
    client = ApiClient.from_args(args)
    peers: list[dict[str, Any]] = []
    path = "/api/network/peers"
    while True:
        reply = client.ok("GET", path)
        peers.extend(reply["peers"])
        cursor = reply.get("next_cursor")
        if not cursor:
            break
        path = "/api/network/peers?" + urllib.parse.urlencode({"cursor": cursor})
    if args.json:
        print(json.dumps({**reply, "peers": peers, "next_cursor": None}))
        return 0
    if not peers:
        print("no peers (add one with 'aegis-hidden peers add ADDRESS')")
    for peer in peers:
        seen = "never" if peer["last_seen"] is None else f"{peer['last_seen']:.0f}"
        print(f"{peer['id']}  {peer['status']:<12} reputation {peer['reputation']:.2f}  "
              f"last seen {seen}")
    return 0


def _action(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"action": args.action, "peer_address": args.address}
    if args.action == "add" and args.i2p:
        body["i2p_destination"] = args.i2p
    if args.action == "remove" and args.keep_messages:
        body["keep_messages"] = True
    if args.action == "block":
        body["reason"] = args.reason
        if args.duration is not None:
            body["duration"] = args.duration
    reply = ApiClient.from_args(args).ok("POST", "/api/network/peers", body)
    print(f"{args.action}: {reply['peer']['id']} ({reply['peer']['status']})")
    return 0


def _send(args: argparse.Namespace) -> int:
    try:
        message = json.loads(args.message)
    except ValueError:
        message = {"type": "text", "data": args.message}
    if not isinstance(message, dict):
        message = {"type": "text", "data": message}
    reply = ApiClient.from_args(args).ok("POST", "/api/network/send",
                                         {"target": args.peer, "message": message})
    print(f"message {reply['id']}: {reply['state']}")
    return 0


def _events(args: argparse.Namespace) -> int:
    """Follow /network with autobahn on the global reactor (this is an entry point)."""
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
    from twisted.internet import reactor as global_reactor

    reactor: Any = global_reactor

    client = ApiClient.from_args(args)
    state: dict[str, Any] = {"seen": 0, "error": None}
    limit = args.count

    class Follower(WebSocketClientProtocol):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            event = json.loads(payload)
            if event.get("type") == "hello":
                return
            print(json.dumps(event), flush=True)
            state["seen"] += 1
            if limit is not None and state["seen"] >= limit:
                self.sendClose()

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            if code not in (1000, None) or (code is None and not wasClean):
                state["error"] = reason or f"connection closed (code {code})"
            if reactor.running:
                reactor.stop()

    class FollowerFactory(WebSocketClientFactory):
        def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
            state["error"] = (f"cannot reach the node's API at {client.listen_address} "
                              f"({reason.getErrorMessage()}); is the node running?")
            reactor.stop()

    address = client.listen_address
    host, port = ("localhost", 80)
    if not address.startswith("unix:"):
        host, port = split_host_port(address, allow_unix=False)
    factory = FollowerFactory(f"ws://{host}:{port}/network",
                                     headers={"Authorization": f"Bearer {client.token}"},
                                     reactor=reactor)
    factory.protocol = Follower
    if address.startswith("unix:"):
        reactor.connectUNIX(address[5:], factory)
    else:
        reactor.connectTCP(host, port, factory)
    try:
        reactor.run()
    except KeyboardInterrupt:
        return 130
    if state["error"] is not None:
        print(f"aegis-hidden: events: {state['error']}", file=sys.stderr)
        return 1
    return 0
