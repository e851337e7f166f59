"""``aegis-hidden dht stats|get|put|crawl``: the running node's DHT, through its API."""

from __future__ import annotations

import argparse
import base64
import json
import re
from typing import Any

from ._api import ApiClient
from ._common import CLIError, add_node_args

_KEY = re.compile(r"^([0-9a-fA-F]{64}|[a-z2-7]{56}\.onion)$")


def _client_args(p: argparse.ArgumentParser) -> None:
    add_node_args(p)
    p.add_argument("--api", help="API address (default: api.listen_address of the config)")
    p.add_argument("--json", action="store_true", help="the API's JSON as is")


def _key(value: str) -> str:
    if not _KEY.match(value):
        raise argparse.ArgumentTypeError("a key is 64 hex digits, or a peer's .onion address "
                                         "(for its identity record)")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("dht", help="the running node's DHT: stats, records, crawl")
    dsub = p.add_subparsers(dest="dht_command", metavar="ACTION")
    dsub.required = True
    stats = dsub.add_parser("stats", help="routing table, records held, lookups ok/failed")
    _client_args(stats)
    stats.set_defaults(func=_stats)
    get = dsub.add_parser("get", help="the record at a key (or a peer's identity record)")
    _client_args(get)
    get.add_argument("key", type=_key, help="64 hex digits, or a peer's .onion")
    get.add_argument("--network", action="store_true",
                     help="look it up in the network even if this node holds a copy")
    get.set_defaults(func=_get)
    put = dsub.add_parser("put", help="sign a record of this node and store it")
    _client_args(put)
    put.add_argument("name", help="the record's name (not 'identity')")
    put.add_argument("value", help="its value, as text (or base64 with --base64)")
    put.add_argument("--base64", action="store_true", help="VALUE is base64")
    put.add_argument("--lifetime", type=float, default=3600.0,
                     help="seconds until it expires (60 to 604800; default 3600)")
    put.set_defaults(func=_put)
    crawl = dsub.add_parser("crawl", help="walk the DHT and count the nodes that answer")
    _client_args(crawl)
    crawl.add_argument("--max-nodes", type=int, default=1000, help="ask at most this many")
    crawl.add_argument("--parallel", type=int, default=8, help="nodes asked at once")
    crawl.set_defaults(func=_crawl)


def _client(args: argparse.Namespace, timeout: float = 300.0) -> ApiClient:
    client = ApiClient.from_args(args)
    client.timeout = timeout  # a lookup over onion services takes seconds
    return client


def _print_json(reply: Any) -> int:
    print(json.dumps(reply, indent=2, sort_keys=True))
    return 0


def _stats(args: argparse.Namespace) -> int:
    reply = _client(args, 30.0).ok("GET", "/api/network/dht")
    if args.json:
        return _print_json(reply)
    table, records, lookups = reply["routing_table"], reply["records"], reply["lookups"]
    print(f"node id     {reply['node_id']}")
    print("parameters  " + ", ".join(f"{k}={v}" for k, v in reply["parameters"].items()))
    print(f"contacts    {table['contacts']} in {len(table['buckets'])} buckets")
    print(f"records     {records['held']} held; own identity record stored at "
          f"{records['own_stored_at']} nodes")
    print(f"lookups     {lookups['ok']} ok, {lookups['failed']} failed")
    if reply["refused"]:
        print("refused     " + ", ".join(f"{k} {v}" for k, v in reply["refused"].items()))
    if reply.get("misbehaviour"):
        print("judged      " + ", ".join(f"{k} {v}" for k, v in reply["misbehaviour"].items())
              + f"; {reply.get('evicted', 0)} contacts evicted")
    pex = reply.get("exchange")
    if pex:
        print(f"exchange    sent {pex['offers_sent']} offers ({pex['records_offered']} records, "
              f"{pex['records_taken']} taken, {pex['offers_refused']} offers refused); "
              f"received {pex['offers_received']} offers: {pex['records_accepted']} records "
              f"accepted, {pex['records_refused']} refused, {pex['offers_over_rate']} offers "
              f"over the rate")
    cand = reply.get("candidates")
    if cand:
        print(f"candidates  {cand['waiting']} waiting, {cand['checking']} being checked; "
              f"{cand['trusted']} trusted after a PING, {cand['checked_by_lookup']} by a "
              f"lookup answer, {cand['unreachable']} unreachable, {cand['dropped']} dropped")
    paths = reply.get("paths")
    if paths:
        print(f"paths       {paths['tor']} queries over Tor, {paths['i2p']} over I2P")
    mail = reply.get("mailbox")
    if mail:
        print(f"mailbox     {mail['letters_held']} letters ({mail['bytes_held']} bytes) held "
              f"for others, {mail['accepted']} accepted; {mail['deposited']} deposited, "
              f"{mail['collected']} collected")
        if mail["refused"]:
            print("  refused   " + ", ".join(f"{k} {v}" for k, v in mail["refused"].items()))
    return 0


def _get(args: argparse.Namespace) -> int:
    path = f"/api/network/dht/records/{args.key}" + ("?source=network" if args.network else "")
    reply = _client(args).ok("GET", path)
    if args.json:
        return _print_json(reply)
    value = base64.b64decode(reply["value"])
    try:
        shown = value.decode("utf-8")
    except UnicodeDecodeError:
        shown = "base64:" + reply["value"]
    print(f"key        {reply['key']}")
    print(f"name       {reply['name']}")
    print(f"publisher  {reply['publisher']}")
    print(f"sequence   {reply['sequence']}, expires {reply['expires']}")
    print(f"value      {shown}")
    return 0


def _put(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "lifetime": args.lifetime}
    if args.base64:
        body["value_base64"] = args.value
    else:
        body["value"] = args.value
    reply = _client(args).ok("POST", "/api/network/dht/records", body)
    if args.json:
        return _print_json(reply)
    print(f"stored at {reply['stored_at']} nodes; key {reply['key']}")
    return 0 if reply["stored_at"] else 2


def _crawl(args: argparse.Namespace) -> int:
    if not 1 <= args.max_nodes <= 100_000 or not 1 <= args.parallel <= 64:
        raise CLIError("--max-nodes is 1 to 100000 and --parallel 1 to 64")
    reply = _client(args, 3600.0).ok("POST", "/api/network/dht/crawl",
                                     {"max_nodes": args.max_nodes, "parallel": args.parallel})
    if args.json:
        return _print_json(reply)
    for node in reply["nodes"]:
        print(node)
    print(f"{reply['reachable']} reachable, {reply['unreachable']} unreachable, "
          f"{reply['seen']} seen, {reply.get('not_asked', 0)} not asked "
          f"({reply['seconds']}s)")
    return 0
