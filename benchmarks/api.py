"""Management API throughput and latency, measured in one run: `python benchmarks/api.py`.

A real node core (SQLite through its worker thread, on the real reactor) serves
the real web tree on 127.0.0.1; a second node is joined to it through the
in-memory fake session network, so ``POST /api/network/send`` goes through the
whole reliable path (outbox insert, delivery, the peer's de-duplication insert,
ack, outbox delete) with no Tor in the way. Every write is durable (fsynced)
before it is acted on; the database group-commits them, and the send phase
reports how many transactions the two nodes committed per message.

The HTTP load generator is a separate process (asyncio, keep-alive
connections), so it does not share the server's event loop. Prints requests
per second and p50/p99 latency for ``GET /api/network/peers`` and
``POST /api/network/send``, and for the WebSocket: the latency from an event's
emission to its arrival at each of 100 clients (p50/p99) and deliveries per
second. Options: ``--seconds N`` per HTTP phase, ``--concurrency N``.

The durable send rate is measured twice in the same run: on plain SQLite files
and on SQLCipher files (the state database encrypted at rest; key
from ``load_database_key``), and their ratio printed (``--no-sqlcipher`` skips
the second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue

from aegis_hidden.api import TokenChecker, build_site, load_or_create_token
from aegis_hidden.config import Config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import onion_address_from_public_key
from aegis_hidden.node import NodeCore
from aegis_hidden.peers import DB_FILE_NAME, DEFAULT_FLUSH_INTERVAL, ThreadedSQLite, load_database_key
from aegis_hidden.testing import FakeNetwork

reactor: Any = global_reactor

LOADGEN = r'''
import asyncio, json, sys, time
host, port, method, path, token, seconds, conc = sys.argv[1:8]
port, seconds, conc = int(port), float(seconds), int(conc)
body = sys.stdin.buffer.read()
head = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
lat, codes = [], {}

async def worker(deadline):
    r, w = await asyncio.open_connection(host, port)
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        w.write(head + body)
        await w.drain()
        status = await r.readuntil(b"\r\n\r\n")
        code = int(status.split(b" ", 2)[1])
        length = None
        for line in status.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length is None:
            raise SystemExit("response without Content-Length")
        await r.readexactly(length)
        lat.append(time.perf_counter() - t)
        codes[code] = codes.get(code, 0) + 1
    w.close()

async def main():
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + seconds) for _ in range(conc)))
    elapsed = time.perf_counter() - start
    print(json.dumps({"n": len(lat), "elapsed": elapsed, "codes": codes, "lat": lat}))

asyncio.run(main())
'''


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def transactions(core: NodeCore) -> int:
    """Transactions the core's database has committed (or tried) so far."""
    db = core.db
    assert isinstance(db, ThreadedSQLite)
    return db.batches


def onion() -> str:
    return onion_address_from_public_key(os.urandom(32))


async def http_phase(port: int, token: str, method: str, path: str, body: bytes,
                     seconds: float, concurrency: int) -> dict[str, Any]:
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-c", LOADGEN, "127.0.0.1", str(port), method, path, token,
                         str(seconds), str(concurrency)],
        env=dict(os.environ), reactor=reactor, stdinBytes=body)
    if code != 0:
        raise SystemExit(f"load generator failed: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


class Listener(WebSocketClientProtocol):
    received: list[float]
    opened: Deferred[None]

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        event = json.loads(payload)
        if event.get("type") == "bench":
            self.received.append(time.perf_counter() - event["t"])


class ListenerFactory(WebSocketClientFactory):
    latencies: list[float]
    opened: list[Deferred[None]]

    def buildProtocol(self, addr: Any) -> Listener:
        proto = Listener()
        proto.factory = self
        proto.received = self.latencies
        proto.opened = Deferred()
        self.opened.append(proto.opened)
        return proto


async def websocket_phase(port: int, token: str, bus: EventBus, clients: int,
                          events: int) -> dict[str, Any]:
    latencies: list[float] = []
    opened: list[Deferred[None]] = []
    for _ in range(clients):
        factory = ListenerFactory(f"ws://127.0.0.1:{port}/network",
                                  headers={"Authorization": f"Bearer {token}"},
                                  reactor=reactor)
        factory.latencies = latencies
        factory.opened = opened
        reactor.connectTCP("127.0.0.1", port, factory)
    while len(opened) < clients:
        await deferLater(reactor, 0.01)
    await gatherResults(opened)
    start = time.perf_counter()
    for i in range(events):
        bus.emit("bench", t=time.perf_counter(), seq=i)
        await deferLater(reactor, 0.005)  # let the frames go out between events
    deadline = time.perf_counter() + 30
    while len(latencies) < clients * events and time.perf_counter() < deadline:
        await deferLater(reactor, 0.01)
    elapsed = time.perf_counter() - start
    return {"deliveries": len(latencies), "expected": clients * events,
            "elapsed": elapsed, "lat": latencies}


async def pair(root: Path, encrypted: bool) -> list[NodeCore]:
    """Two node cores on the fake network, each on its own (SQLCipher if asked) file."""
    net = FakeNetwork()
    cores = []
    for name in ("a", "b"):
        (root / name).mkdir()
        address = onion()
        key = load_database_key(root / name / DB_FILE_NAME, None) if encrypted else None
        core = NodeCore(Config(), None, str(root / name), EventBus(), reactor,
                        local_address=address, db_key=key)
        core.attach_session_factory(net.node(address))
        core.startService()
        await core.when_ready()
        cores.append(core)
    return cores


async def sqlcipher_send_phase(args: argparse.Namespace) -> dict[str, Any]:
    """The send phase again, both nodes on SQLCipher databases."""
    with tempfile.TemporaryDirectory(prefix="aegis-bench-api-enc-") as tmp:
        root = Path(tmp)
        a, b = await pair(root, encrypted=True)
        await a.store.add(b.local_address)
        token, _ = load_or_create_token(root / "a" / "api_token")
        site = build_site(a, TokenChecker(root / "a" / "api_token"), 1 << 20, reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        body = json.dumps({"target": b.local_address,
                           "message": {"type": "bench", "data": "x" * 100}}).encode()
        res = await http_phase(port.getHost().port, token, "POST", "/api/network/send", body,
                               args.seconds, args.concurrency)
        res["acked"] = a.metrics.counters["messages_acked"]
        await port.stopListening()
        for core in (a, b):
            await core.stopService()
        return res


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="aegis-bench-api-") as tmp:
        root = Path(tmp)
        cores = await pair(root, encrypted=False)
        a, b = cores
        await a.store.add(b.local_address)
        for _ in range(49):
            await a.store.add(onion())
        token, _ = load_or_create_token(root / "a" / "api_token")
        site = build_site(a, TokenChecker(root / "a" / "api_token"), 1 << 20, reactor)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        number = port.getHost().port

        get = await http_phase(number, token, "GET", "/api/network/peers", b"",
                               args.seconds, args.concurrency)
        send_body = json.dumps({"target": b.local_address,
                                "message": {"type": "bench", "data": "x" * 100}}).encode()
        batches_before = [transactions(core) for core in cores]
        send = await http_phase(number, token, "POST", "/api/network/send", send_body,
                                args.seconds, args.concurrency)
        acked = a.metrics.counters["messages_acked"]
        commits = [transactions(core) - n for core, n in zip(cores, batches_before, strict=True)]
        ws = await websocket_phase(number, token, a.events, args.clients, args.events)

        print(f"aegis-hidden API benchmark: loopback, load generator in another process, "
              f"{args.concurrency} keep-alive connections, {args.seconds:g}s per phase")
        rates = {}
        for name, res in (("GET  /api/network/peers (50 peers)", get),
                          ("POST /api/network/send (fake transport)", send)):
            rate = res["n"] / res["elapsed"]
            rates[name] = rate
            lat = res["lat"]
            print(f"  {name:42s} {rate:8.0f} req/s   p50 {pct(lat, 50) * 1e3:6.2f} ms   "
                  f"p99 {pct(lat, 99) * 1e3:6.2f} ms   codes {res['codes']}")
        print(f"    messages acknowledged by the peer during the send phase: {acked} "
              f"(outbox left: {a.messenger.outbox_size()})")
        print(f"    SQLite transactions (each fsynced) during the send phase: sender "
              f"{commits[0]}, peer {commits[1]}: {sum(commits) / max(1, send['n']):.3f} per "
              f"message (group commit, flush interval {DEFAULT_FLUSH_INTERVAL * 1e3:g} ms; "
              "without it: 5 per message)")
        get_rate, send_rate = rates.values()
        print(f"  ratio send/get: {send_rate / get_rate:.2f} (target: >= 0.50)")
        lat = ws["lat"]
        print(f"  WebSocket fan-out to {args.clients} clients, {args.events} events: "
              f"{ws['deliveries']}/{ws['expected']} delivered, "
              f"{ws['deliveries'] / ws['elapsed']:.0f} deliveries/s, "
              f"p50 {pct(lat, 50) * 1e3:.2f} ms   p99 {pct(lat, 99) * 1e3:.2f} ms   "
              f"mean {statistics.mean(lat) * 1e3:.2f} ms (emit -> client)")
        await port.stopListening()
        for core in cores:
            await core.stopService()
    if args.sqlcipher:
        enc = await sqlcipher_send_phase(args)
        enc_rate = enc["n"] / enc["elapsed"]
        lat = enc["lat"]
        print(f"  {'POST /api/network/send, SQLCipher database':42s} {enc_rate:8.0f} req/s   "
              f"p50 {pct(lat, 50) * 1e3:6.2f} ms   p99 {pct(lat, 99) * 1e3:6.2f} ms   "
              f"codes {enc['codes']}   acked {enc['acked']}")
        print(f"  durable send rate, SQLCipher / plain SQLite: {enc_rate / send_rate:.2f} "
              f"({enc_rate:.0f} vs {send_rate:.0f} req/s, same run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--no-sqlcipher", dest="sqlcipher", action="store_false",
                        help="skip the send phase on an encrypted (SQLCipher) database")
    args = parser.parse_args()
    failures: list[Any] = []

    def done(result: Any) -> None:
        if result is not None and hasattr(result, "printTraceback"):
            failures.append(result)
            result.printTraceback()
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run(args)).addBoth(done))
    reactor.run()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
