"""The private I2P network, measured in one run: start-up, memory, stream round trips.

    .venv/bin/python benchmarks/i2p.py [--round-trips N]

Starts the 4-router network of aegis_hidden.testing (patched i2pd, built once by
.ci/build-i2pd.sh), times it until a STREAM session is up on every router,
reads the routers' RSS, then opens a stream between two destinations on the two
non-floodfill routers and times round trips of 64 bytes over it, against the
same echo over plain loopback TCP in the same run. Prints the figures and ratios.
Blocking sockets and the sans-I/O SAM codec: no reactor.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from aegis_hidden.i2p import PrivateKey
from aegis_hidden.i2p._sam import hello, parse_line, session_create, stream_accept, stream_connect
from aegis_hidden.testing import I2PNetwork

OPTIONS = {"inbound.length": 1, "outbound.length": 1, "inbound.quantity": 5, "outbound.quantity": 5}
PAYLOAD = b"x" * 63 + b"\n"


def _line(s: socket.socket) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise EOFError("SAM socket closed")
        out += chunk
    return out[:-1]


def _sam(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=180)
    s.sendall(hello())
    parse_line(_line(s)).raise_for_result()
    return s


def _echo(sock: socket.socket) -> None:
    with sock:
        while data := sock.recv(4096):
            sock.sendall(data)


def _round_trips(sock: socket.socket, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        sock.sendall(PAYLOAD)
        got = b""
        while len(got) < len(PAYLOAD):
            chunk = sock.recv(4096)
            if not chunk:
                raise EOFError("stream closed")
            got += chunk
        times.append(time.perf_counter() - start)
    return times


def _tcp_baseline(n: int) -> list[float]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    t = threading.Thread(target=lambda: _echo(server.accept()[0]), daemon=True)
    t.start()
    with socket.create_connection(server.getsockname()) as c:
        return _round_trips(c, n)


def _i2p_round_trips(net: I2PNetwork, n: int) -> tuple[float, list[float]]:
    server_r, client_r = net.client_routers[:2]
    srv = _sam(net.routers[server_r].sam_port)
    cli = _sam(net.routers[client_r].sam_port)
    srv.sendall(session_create("STREAM", "bench-srv", options=OPTIONS))
    cli.sendall(session_create("STREAM", "bench-cli", options=OPTIONS))
    dest = PrivateKey.from_base64(parse_line(_line(srv)).raise_for_result().require("DESTINATION"))
    parse_line(_line(cli)).raise_for_result()
    acc = _sam(net.routers[server_r].sam_port)
    acc.sendall(stream_accept("bench-srv"))
    parse_line(_line(acc)).raise_for_result()
    start = time.monotonic()
    while True:  # CANT_REACH_PEER until the LeaseSet is in the netDb
        c = _sam(net.routers[client_r].sam_port)
        c.sendall(stream_connect("bench-cli", dest.destination.b32))
        if parse_line(_line(c)).get("RESULT") == "OK":
            break
        c.close()
        if time.monotonic() - start > 180:
            raise RuntimeError("CANT_REACH_PEER for 3 minutes")
        time.sleep(2)
    _line(acc)  # the peer's destination
    threading.Thread(target=_echo, args=(acc,), daemon=True).start()
    first = _round_trips(c, 1)[0]  # includes the streaming handshake
    times = _round_trips(c, n)
    c.close()
    srv.close()
    cli.close()
    return time.monotonic() - start + first, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--round-trips", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aegis-i2p-bench-") as tmp:
        net = I2PNetwork(Path(tmp))
        try:
            t0 = time.monotonic()
            net.setup()
            t1 = time.monotonic()
            net.start()
            ready = net.wait_ready(240)
            t2 = time.monotonic()
            rss = net.rss_mib()
            first_stream, i2p_times = _i2p_round_trips(net, args.round_trips)
        finally:
            net.stop()
    tcp_times = _tcp_baseline(args.round_trips)
    i2p_ms = statistics.median(i2p_times) * 1000
    tcp_ms = statistics.median(tcp_times) * 1000
    print(f"routers: {len(net.routers)} ({net.floodfills} floodfills), netid {net.netid}")
    print(f"setup (router.info + reseed zip): {t1 - t0:.1f} s")
    print(f"start to a ready STREAM session on every router: {t2 - t1:.1f} s "
          f"(sessions: {ready:.1f} s)")
    print(f"RSS of the routers: {rss:.0f} MiB ({rss / len(net.routers):.0f} MiB each)")
    print(f"first stream (connect retries + first round trip): {first_stream:.1f} s")
    print(f"round trip of {len(PAYLOAD)} bytes, median of {args.round_trips}: "
          f"I2P {i2p_ms:.1f} ms, loopback TCP {tcp_ms:.3f} ms, ratio {i2p_ms / tcp_ms:.0f}x")


if __name__ == "__main__":
    main()
