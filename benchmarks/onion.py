"""Node overhead on Tor, measured in one run on a private Tor network.

    .venv/bin/python benchmarks/onion.py [--trials 5] [--pings 200]

Brings up a private network with two client tors (A hosts, B dials), then:

1. publish + first reach: ``TorProvider`` (connect mode on A) started with a fresh
   identity until a stream from B (through another provider's onion endpoint)
   gets an echo back, versus a bare ``ADD_ONION`` sent with txtorcon on A and a
   raw txtorcon SOCKS stream from B. Trials alternate, each with a fresh key.
   The raw side waits for tor's HS_DESC UPLOADED event before dialing (as
   txtorcon's create_onion_service does) and retries every 0.1 s.
2. request/response: 64-byte ping-pongs to one echo service through a node
   connection (``OnionEndpoint``) versus a raw txtorcon stream, interleaved.

Prints medians and the ratios node / raw (target: within 10% on both).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import txtorcon
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol

from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import create, expanded_secret_key, onion_address_from_public_key
from aegis_hidden.testing import TorNetwork, free_ports
from aegis_hidden.tor import TorProvider, add_onion_command, del_onion_command


def no_delay(transport: Any) -> None:
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class Echo(Protocol):
    def connectionMade(self) -> None:
        no_delay(self.transport)

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class Pinger(Protocol):
    """Sends ``size`` bytes and waits for all of them to come back."""

    def __init__(self) -> None:
        self._want = 0
        self._got = 0
        self._done: Deferred[None] | None = None

    def ping(self, size: int = 64) -> Deferred[None]:
        assert self.transport is not None
        self._want, self._got = size, 0
        self._done = Deferred()
        self.transport.write(b"x" * size)
        return self._done

    def dataReceived(self, data: bytes) -> None:
        self._got += len(data)
        if self._done is not None and self._got >= self._want:
            d, self._done = self._done, None
            d.callback(None)


def connect_cfg(control_port: int) -> Any:
    return parse_config({"tor": {"mode": "connect", "control_port": f"127.0.0.1:{control_port}"},
                         "network": {"connection_timeout": 60}})


RAW_FAILURES: list[str] = []


async def raw_connect(reactor: Any, socks_port: int, onion: str, port: int) -> Pinger:
    """A stream to ``onion:port`` with txtorcon alone (no aegis-hidden code)."""
    socks = TCP4ClientEndpoint(reactor, "127.0.0.1", socks_port)
    last: Exception | None = None
    for _ in range(40):
        ep = txtorcon.TorClientEndpoint(onion, port, socks_endpoint=socks)
        try:
            proto = await ep.connect(Factory.forProtocol(Pinger))
            assert isinstance(proto, Pinger)
            no_delay(proto.transport)  # as the node's SOCKS connections do
            return proto
        except Exception as e:  # noqa: BLE001 - descriptor not yet there: retry like a user would
            last = e
            RAW_FAILURES.append(type(e).__name__)
            await task.deferLater(reactor, 0.1, lambda: None)
    raise RuntimeError(f"raw stream to {onion} failed: {last}")


async def main(reactor: Any, trials: int, pings: int) -> int:
    root = Path(tempfile.mkdtemp(prefix="aegis-bench-onion-"))
    net = TorNetwork(root / "net", clients=2)
    net.setup()
    net.start()
    print(f"private network in {root}; waiting for bootstrap ...", flush=True)
    try:
        await reactor_wait(reactor, net)
        host, dialer_tor = net.by_role("client")
        echo_port = free_ports(1)[0]
        listening = reactor.listenTCP(echo_port, Factory.forProtocol(Echo),
                                      interface="127.0.0.1")
        target = f"127.0.0.1:{echo_port}"
        dialer = TorProvider(reactor, connect_cfg(dialer_tor.control_port),
                             create(root / "dialer", time.time()),
                             root / "dialer", EventBus())
        dialer.startService()
        await dialer.when_ready()
        raw_ctl = await txtorcon.connect(
            reactor, TCP4ClientEndpoint(reactor, "127.0.0.1", host.control_port))

        node_times: list[float] = []
        raw_times: list[float] = []
        node_links: list[Pinger] = []
        for i in range(trials):
            # node path: a fresh node identity published by TorProvider, then reached
            ident = create(root / f"node{i}", time.time())
            cfg = parse_config({"tor": {"mode": "connect",
                                        "control_port": f"127.0.0.1:{host.control_port}"},
                                "network": {"listen_address": target}})
            t0 = time.perf_counter()
            node = TorProvider(reactor, cfg, ident, root / f"node{i}", EventBus())
            node.startService()
            await node.when_ready()
            link = await dialer.client_endpoint(ident.onion, 7701, attempts=40).connect(
                Factory.forProtocol(Pinger))
            assert isinstance(link, Pinger)
            await link.ping()
            node_times.append(time.perf_counter() - t0)
            node_links.append(link)
            # raw path: bare ADD_ONION on the same tor, raw SOCKS stream from the same dialer tor
            seed = os.urandom(32)
            onion = onion_address_from_public_key(
                Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw())
            sid = onion.removesuffix(".onion")
            uploaded: Deferred[None] = Deferred()

            def on_desc(line: str, sid: str = sid, uploaded: Deferred[None] = uploaded) -> None:
                words = line.split()
                if words[:1] == ["HS_DESC"]:
                    words = words[1:]
                if words[:2] == ["UPLOADED", sid] and not uploaded.called:
                    uploaded.callback(None)

            raw_ctl.protocol.add_event_listener("HS_DESC", on_desc)
            t0 = time.perf_counter()
            await raw_ctl.protocol.queue_command(
                add_onion_command(expanded_secret_key(seed), 7701, target))
            await uploaded  # the best a bare controller can do: dial once it is uploaded
            raw = await raw_connect(reactor, dialer_tor.socks_port, onion, 7701)
            raw_ctl.protocol.remove_event_listener("HS_DESC", on_desc)
            await raw.ping()
            raw_times.append(time.perf_counter() - t0)
            print(f"trial {i + 1}: node {node_times[-1]:.2f}s  raw {raw_times[-1]:.2f}s "
                  f"(raw retries: {', '.join(RAW_FAILURES) or 'none'})", flush=True)
            RAW_FAILURES.clear()
            if i < trials - 1:
                assert raw.transport is not None
                raw.transport.loseConnection()
                await raw_ctl.protocol.queue_command(del_onion_command(onion))
                assert link.transport is not None
                link.transport.loseConnection()
                await node.stopService()
            else:
                last_node, last_raw = link, raw

        # round trips on one node connection and one raw stream to the same kind of service
        node_rtt: list[float] = []
        raw_rtt: list[float] = []
        for _ in range(10):  # warm both circuits
            await last_node.ping()
            await last_raw.ping()
        for _ in range(pings):
            t0 = time.perf_counter()
            await last_node.ping()
            node_rtt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await last_raw.ping()
            raw_rtt.append(time.perf_counter() - t0)

        pub_node, pub_raw = statistics.median(node_times), statistics.median(raw_times)
        rtt_node, rtt_raw = statistics.median(node_rtt), statistics.median(raw_rtt)
        print()
        print(f"publish + first reach, median of {trials}: node {pub_node:.3f}s, "
              f"bare ADD_ONION {pub_raw:.3f}s, ratio {pub_node / pub_raw:.3f}")
        print(f"request/response 64 B, median of {pings}: node {rtt_node * 1000:.2f} ms, "
              f"raw stream {rtt_raw * 1000:.2f} ms, ratio {rtt_node / rtt_raw:.3f}")
        print(f"(target: both ratios <= 1.10)  "
              f"publish {'OK' if pub_node / pub_raw <= 1.10 else 'ABOVE'}, "
              f"round trip {'OK' if rtt_node / rtt_raw <= 1.10 else 'ABOVE'}")
        await listening.stopListening()
        await dialer.stopService()
        return 0
    finally:
        net.stop()


async def reactor_wait(reactor: Any, net: TorNetwork) -> None:
    """Wait for the network without blocking the reactor (poll the logs)."""
    from aegis_hidden.testing._tornet import bootstrap_percent

    deadline = time.monotonic() + 240
    while any(bootstrap_percent(c.log_file) < 100 for c in net.by_role("client")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the private network did not bootstrap; logs in {net.directory}")
        await task.deferLater(reactor, 0.5, lambda: None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--pings", type=int, default=200)
    opts = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, opts.trials, opts.pings)))
    sys.exit(0)
