"""Privacy audit: packets per second through the pcap analysis, and a 10-minute node trace.

    .venv/bin/python benchmarks/audit.py [--packets N] [--links N] [--keep FILE]

1. A loopback capture is generated (not timed): ``--links`` node-to-tor SOCKS
   streams, each opening with the SOCKS5 exchange and clear hello cells, then
   996-byte cells at Poisson times (λ = 2) in both directions, every data
   segment followed by the peer's ACK, as on a real loopback; one canary and
   two onion addresses are searched for. The whole audit (``run_audit``:
   reading with dpkt, reassembly, needle search, all checks) is timed on one
   core; the target is 1,000,000 packets in under 60 s.
2. A 10-minute trace of one node (written by the mixing layer's own
   ``JsonLinesTraceSink``): ``--links`` links at λ = 2 each way, plus 2,000
   ground-truth lines, audited the same way.

Same seed, same capture; the figures printed are wall-clock times of one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from random import Random

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dpkt
from dpkt.pcap import DLT_EN10MB
from twisted.internet.task import Clock

from aegis_hidden.audit import AuditInput, Topology, run_audit
from aegis_hidden.mixing import JsonLinesTraceSink
from aegis_hidden.testing import link_frame, poisson_times, tcp_packet

CELL = 996
RATE = 2.0
SOCKS, CONTROL = 19150, 19151
PEER = "b" * 52 + "qd.onion"
CANARY = bytes.fromhex("8f3e2a91c4d07b65e1f29a3c5d7e8b10")
_ACK, _PSH = 0x10, 0x08


def write_capture(path: Path, packets: int, links: int, seed: int = 1) -> int:
    """A capture of about ``packets`` packets; returns the exact count."""
    rng = Random(seed)
    cells = [rng.randbytes(CELL) for _ in range(512)]
    per_link = packets // links
    # data segments (each with its ACK) per link and direction to reach the count
    seconds = per_link / 2 / 2 / RATE
    events: list[tuple[float, int, bool, bytes]] = []
    for i in range(links):
        host = PEER.encode()
        t0 = 0.01 * i
        pre = [(t0 + 0.001, True, b"\x05\x01\x00"), (t0 + 0.002, False, b"\x05\x00"),
               (t0 + 0.003, True, b"\x05\x01\x00\x03" + bytes([len(host)]) + host + b"\x23\x28"),
               (t0 + 0.004, False, b"\x05\x00\x00\x01" + bytes(6)),
               (t0 + 0.005, True, b"AH" + CELL.to_bytes(2, "big") + bytes(CELL - 4)),
               (t0 + 0.006, False, b"AH" + CELL.to_bytes(2, "big") + bytes(CELL - 4))]
        events += [(t, i, up, data) for t, up, data in pre]
        for up in (True, False):
            for t in poisson_times(rng, RATE, t0 + 0.01, t0 + 0.01 + seconds):
                events.append((t, i, up, cells[rng.randrange(len(cells))]))
    events.sort(key=lambda e: e[0])
    seq = {(i, up): 1000 if up else 7_000_000 for i in range(links) for up in (True, False)}
    count = 0
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f, linktype=DLT_EN10MB)
        for t, i, up, data in events:
            client, server = ("127.0.0.1", 40000 + i), ("127.0.0.1", SOCKS)
            src, dst = (client, server) if up else (server, client)
            ip, v6 = tcp_packet(src, dst, seq[(i, up)], _ACK | _PSH, data, ack=seq[(i, not up)])
            seq[(i, up)] += len(data)
            w.writepkt(link_frame(DLT_EN10MB, ip, v6), ts=t)
            ip, v6 = tcp_packet(dst, src, seq[(i, not up)], _ACK, ack=seq[(i, up)])
            w.writepkt(link_frame(DLT_EN10MB, ip, v6), ts=t + 0.0001)
            count += 2
    return count


def node_trace(links: int, seconds: float = 600.0, seed: int = 2) -> bytes:
    rng = Random(seed)
    clock = Clock()
    out = io.StringIO()
    sink = JsonLinesTraceSink(out, clock, Random(seed))
    events = []
    for i in range(links):
        for direction in ("out", "in"):
            for t in poisson_times(rng, RATE, 0.0, seconds):
                kind = "real" if rng.random() < 0.2 else "cover"
                events.append((t, f"peer-{i}", direction, kind))
    events.sort()
    for t, link, direction, kind in events:
        clock.advance(t - clock.seconds())
        sink.record(clock.seconds(), link, direction, CELL, kind)
    for k in range(2000):
        w = [rng.random() for _ in range(50)]
        s = sum(w)
        out.write(json.dumps({"t": k * seconds / 2000, "dist": [x / s for x in w]}) + "\n")
    return out.getvalue().encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--links", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="keep the generated capture in this file")
    args = ap.parse_args()

    topology = Topology(socks=[SOCKS], control=[CONTROL])
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.pcap"
        t = time.perf_counter()
        n = write_capture(path, args.packets, args.links)
        gen = time.perf_counter() - t
        size = os.path.getsize(path)
        print(f"capture: {n:,} packets, {size / 1e6:,.0f} MB, {args.links} SOCKS streams "
              f"(generated in {gen:.1f} s, not timed)")
        cpu = time.process_time()
        t = time.perf_counter()
        report = run_audit([path], topology=topology, rate=RATE, canaries=[CANARY],
                           node_addresses=[PEER])
        wall = time.perf_counter() - t
        cpu = time.process_time() - cpu
        print(f"  audit of the capture: {wall:.2f} s wall, {cpu:.2f} s CPU -> "
              f"{n / wall:,.0f} packets/s ({size / 1e6 / wall:,.0f} MB/s); "
              f"target 1,000,000 packets < 60 s: {'met' if n / wall * 60 >= 1e6 else 'MISSED'}")
        print(f"  verdict: {'passed' if report.passed else 'failed ' + str(report.failed)}; "
              f"frames judged {report.check('cells').figures.get('frames')}, "
              f"links timed {report.check('timing').figures.get('links_tested')}")

    data = node_trace(args.links)
    lines = data.count(b"\n")
    cpu = time.process_time()
    t = time.perf_counter()
    report = run_audit([AuditInput.from_bytes("node.trace", data)], rate=RATE)
    wall = time.perf_counter() - t
    cpu = time.process_time() - cpu
    print(f"10-minute node trace: {lines:,} lines ({args.links} links at λ = {RATE:g} each way, "
          f"2,000 ground-truth lines), audited in {wall:.2f} s wall, {cpu:.2f} s CPU; "
          f"verdict: {'passed' if report.passed else 'failed ' + str(report.failed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
