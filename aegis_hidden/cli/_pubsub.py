"""``aegis-hidden pubsub sub|unsub|pub|topics``: the running node's topics, through its API.

Messages of subscribed topics arrive as ``message_received`` events with a
``topic``: follow them with ``aegis-hidden events``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._api import ApiClient
from ._common import add_node_args


def _client_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")


def register(sub: Any) -> None:
    p = sub.add_parser("pubsub", help="topic pub/sub: subscribe, publish, list topics")
    psub = p.add_subparsers(dest="pubsub_command", metavar="ACTION")
    psub.required = True
    s = psub.add_parser("sub", help="subscribe to a topic (its messages: aegis-hidden events)")
    _client_args(s)
    s.add_argument("topic")
    s.add_argument("--anonymous", action="store_true",
                   help="an anonymous topic: no author, stem before the spread")
    s.set_defaults(func=_sub)
    u = psub.add_parser("unsub", help="unsubscribe from a topic")
    _client_args(u)
    u.add_argument("topic")
    u.set_defaults(func=_unsub)
    pub = psub.add_parser("pub", help="publish a message on a topic")
    _client_args(pub)
    pub.add_argument("topic")
    pub.add_argument("message", help='JSON: {"type": ..., "data": ...}, or plain text '
                                     '(sent as {"type": "text", "data": TEXT})')
    pub.set_defaults(func=_pub)
    t = psub.add_parser("topics", help="subscribed topics: mesh peers, scores, messages")
    _client_args(t)
    t.add_argument("--json", action="store_true", help="the API's JSON as is")
    t.set_defaults(func=_topics)


def _sub(args: argparse.Namespace) -> int:
    body = {"action": "subscribe", "topic": args.topic, "anonymous": args.anonymous}
    ApiClient.from_args(args).ok("POST", "/api/network/topics", body)
    print(f"subscribed to {args.topic}" + (" (anonymous)" if args.anonymous else ""))
    return 0


def _unsub(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("POST", "/api/network/topics",
                                         {"action": "unsubscribe", "topic": args.topic})
    print(f"unsubscribed from {args.topic}" if reply["changed"]
          else f"was not subscribed to {args.topic}")
    return 0


def _pub(args: argparse.Namespace) -> int:
    try:
        message = json.loads(args.message)
    except ValueError:
        message = {"type": "text", "data": args.message}
    if not isinstance(message, dict):
        message = {"type": "text", "data": message}
    reply = ApiClient.from_args(args).ok("POST", "/api/network/send",
                                         {"target": f"topic:{args.topic}", "message": message})
    print(f"message {reply['id']}: {reply['state']}")
    return 0


def _topics(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("GET", "/api/network/topics")
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return 0
    if not reply["topics"]:
        print("no topics")
    for t in reply["topics"]:
        kind = "anonymous" if t["anonymous"] else "normal"
        print(f"{t['topic']} ({kind}): {len(t['mesh'])} in the mesh of {t['peers']} topic "
              f"peers; {t['messages_in']} in, {t['messages_out']} out")
        for m in t["mesh"]:
            print(f"  {m['peer']}  score {m['score']:.2f}")
    return 0
