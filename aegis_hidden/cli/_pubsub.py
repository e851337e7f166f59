"""``aegis-hidden pubsub sub|unsub|pub|broadcast|invite|rotate|topics``: the running
node's topics, through its API.

Messages of subscribed topics arrive as ``message_received`` events with a
``topic``: follow them with ``aegis-hidden events`` (invitations to private
topics as ``topic_invitation``, confirmations as ``delivery_state``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._api import ApiClient
from ._common import add_node_args


def _client_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")


def register(sub: Any) -> None:
    p = sub.add_parser("pubsub", help="topic pub/sub: subscribe, publish, broadcast, private "
                                      "topics, list topics")
    psub = p.add_subparsers(dest="pubsub_command", metavar="ACTION")
    psub.required = True
    s = psub.add_parser("sub", help="subscribe to a topic (its messages: aegis-hidden events)")
    _client_args(s)
    s.add_argument("topic")
    s.add_argument("--anonymous", action="store_true",
                   help="an anonymous topic: no author, stem before the spread")
    s.add_argument("--private", action="store_true",
                   help="a private topic: this node's key for it, else an invitation's "
                        "(accepting it), else a new key")
    s.add_argument("--key", help="a private topic's group key shared out of band (base64, "
                                 "32 bytes)")
    s.set_defaults(func=_sub)
    i = psub.add_parser("invite", help="send a private topic's key to a peer (sealed to it, "
                                       "over the reliable messaging path)")
    _client_args(i)
    i.add_argument("topic")
    i.add_argument("peer", help="the peer's onion address")
    i.set_defaults(func=_invite)
    r = psub.add_parser("rotate", help="a new key for a private topic (invite members again)")
    _client_args(r)
    r.add_argument("topic")
    r.set_defaults(func=_rotate)
    u = psub.add_parser("unsub", help="unsubscribe from a topic")
    _client_args(u)
    u.add_argument("topic")
    u.set_defaults(func=_unsub)
    pub = psub.add_parser("pub", help="publish a message on a topic")
    _client_args(pub)
    pub.add_argument("topic")
    pub.add_argument("message", help='JSON: {"type": ..., "data": ...}, or plain text '
                                     '(sent as {"type": "text", "data": TEXT})')
    pub.add_argument("--confirm-from", action="append", default=[], metavar="ONION",
                     help="a subscriber asked to confirm delivery (delivery_state events; "
                          "repeat for more)")
    pub.set_defaults(func=_pub)
    b = psub.add_parser("broadcast", help="publish on the network-wide broadcast topic "
                                          "(rate-limited: pubsub.broadcast_rate)")
    _client_args(b)
    b.add_argument("message", help="JSON, or plain text (as for pub)")
    b.set_defaults(func=_broadcast)
    t = psub.add_parser("topics", help="subscribed topics: mesh peers, scores, messages")
    _client_args(t)
    t.add_argument("--json", action="store_true", help="the API's JSON as is")
    t.set_defaults(func=_topics)


def _sub(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"action": "subscribe", "topic": args.topic,
                            "anonymous": args.anonymous}
    if args.private:
        body["private"] = True
    if args.key is not None:
        body["key"] = args.key
    reply = ApiClient.from_args(args).ok("POST", "/api/network/topics", body)
    kind = [k for k in ("anonymous", "private") if reply.get(k)]
    line = f"subscribed to {args.topic}" + (f" ({', '.join(kind)})" if kind else "")
    if reply.get("private"):
        how = ("invitation accepted, " if reply.get("accepted")
               else "new key, " if reply.get("created") else "")
        line += f"; {how}key id {reply['key_id']}"
    print(line)
    return 0


def _invite(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("POST", "/api/network/topics", {
        "action": "invite", "topic": args.topic, "peer": args.peer})
    print(f"invitation {reply['id']} to {args.peer}: {reply['state']}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("POST", "/api/network/topics",
                                         {"action": "rotate", "topic": args.topic})
    print(f"{args.topic}: new key id {reply['key_id']} (invite the members again)")
    return 0


def _unsub(args: argparse.Namespace) -> int:
    reply = ApiClient.from_args(args).ok("POST", "/api/network/topics",
                                         {"action": "unsubscribe", "topic": args.topic})
    print(f"unsubscribed from {args.topic}" if reply["changed"]
          else f"was not subscribed to {args.topic}")
    return 0


def _message(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError:
        message = {"type": "text", "data": text}
    if not isinstance(message, dict):
        message = {"type": "text", "data": message}
    return message


def _pub(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"target": f"topic:{args.topic}", "message": _message(args.message)}
    if args.confirm_from:
        body["confirm_from"] = args.confirm_from
    reply = ApiClient.from_args(args).ok("POST", "/api/network/send", body)
    print(f"message {reply['id']}: {reply['state']}")
    return 0


def _broadcast(args: argparse.Namespace) -> int:
    client = ApiClient.from_args(args)
    topic = client.ok("GET", "/api/network/topics").get("broadcast")
    if not topic:
        print("this node runs no broadcast topic (pubsub.broadcast)", file=sys.stderr)
        return 1
    reply = client.ok("POST", "/api/network/send",
                      {"target": f"topic:{topic}", "message": _message(args.message)})
    print(f"broadcast {reply['id']}: {reply['state']}")
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
        if t.get("private"):
            kind += f", private, key id {t['key_id']}"
        if t.get("broadcast"):
            kind += ", broadcast"
        extra = "".join(f", {t[k]} {k.replace('_', ' ')}" for k in ("caught_up", "unreadable",
                                                                     "refused") if t.get(k))
        print(f"{t['topic']} ({kind}): {len(t['mesh'])} in the mesh of {t['peers']} topic "
              f"peers; {t['messages_in']} in, {t['messages_out']} out{extra}")
        for m in t["mesh"]:
            print(f"  {m['peer']}  score {m['score']:.2f}")
        for c in t.get("confirmations", []):
            states = ", ".join(f"{p}: {s}" for p, s in sorted(c["subscribers"].items()))
            print(f"  message {c['id']}: {states}")
    for inv in reply.get("invitations", []):
        kind = "anonymous" if inv["anonymous"] else "normal"
        print(f"invitation to {inv['topic']} ({kind}, key id {inv['key_id']}) from "
              f"{inv['peer']}: accept with pubsub sub --private {inv['topic']}")
    return 0
