"""Memory and CPU of a running node and its tor, for the deployment manifests' resources.

    flock /tmp/aegis-tornet.lock nice .venv/bin/python benchmarks/deploy_resources.py \
        [--seconds 120] [--load-seconds 60] [--rate 1] [--size 512]

Brings up a private Tor network on 127.0.0.1 and two nodes (``twistd -n
aegis-hidden``, default configuration apart from joining that network, each
launching its own tor); B has A as its bootstrap peer. Once B has an
authenticated session with A, samples ``/proc`` of node A (the twistd process)
and of its tor every second for ``--seconds``, and prints:

- start-up: CPU seconds used from launch until the session was up, and the peak
  RSS (``VmHWM``) at that point;
- idle with one peer session (the default ``balanced`` mixing profile, so cover
  cells flow): RSS (mean, max), peak RSS since start, CPU in millicores (mean
  over the window, and the busiest 5 s);
- the same under load: A's API accepts ``--rate`` messages per second of
  ``--size`` bytes for B for ``--load-seconds``; and how many B acknowledged.
  The balanced profile sends about 2 cells (~2 kB) per second on a link, so a
  load much above that only queues messages (and their retries cost the peer
  reputation).

Nothing leaves 127.0.0.1: every tor is on the private network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aegis_hidden.testing import NodeProcess, TorNetwork, free_ports, prepare_node, start_node, wait_for

TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def tor_child(pid: int) -> int:
    for child in children(pid):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == "tor":
                return child
        except OSError:
            continue
    raise RuntimeError(f"no tor process under {pid}")


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def api(node: NodeProcess, port: int, method: str, path: str, body: Any = None) -> Any:
    token = (node.data_dir / "api_token").read_text().strip()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        raw = resp.read()
    return raw.decode() if path == "/metrics" else json.loads(raw or b"null")


def sample(pids: dict[str, int], seconds: int, each_second: Any = None
           ) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """RSS (KiB) and CPU seconds of each pid, once a second; ``each_second()`` between."""
    rss: dict[str, list[int]] = {n: [] for n in pids}
    cpu: dict[str, list[float]] = {n: [] for n in pids}
    start = time.monotonic()
    for tick in range(seconds + 1):
        for name, pid in pids.items():
            rss[name].append(memory_kib(pid)[0])
            cpu[name].append(cpu_seconds(pid))
        if tick == seconds:
            break
        if each_second is not None:
            each_second()
        time.sleep(max(0.0, start + tick + 1 - time.monotonic()))
    return rss, cpu


def report(pids: dict[str, int], seconds: int, rss: dict[str, list[int]],
           cpu: dict[str, list[float]]) -> None:
    for name, pid in pids.items():
        used = cpu[name]
        busiest = max(used[i + 5] - used[i] for i in range(len(used) - 5)) / 5
        print(f"  {name}: RSS mean {mib(statistics.fmean(rss[name]))}, "
              f"max {mib(max(rss[name]))}, peak since start {mib(memory_kib(pid)[1])}; "
              f"CPU mean {(used[-1] - used[0]) / seconds * 1000:.1f} millicores, "
              f"busiest 5 s {busiest * 1000:.0f} millicores")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="idle sampling window")
    parser.add_argument("--load-seconds", type=int, default=60, help="load sampling window")
    parser.add_argument("--rate", type=int, default=1, help="messages per second under load")
    parser.add_argument("--size", type=int, default=512, help="bytes of data per message")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aegis-deploy-res-"))
    net = TorNetwork(root / "net")
    net.setup()
    net.start()
    nodes = []
    try:
        print(f"private Tor network bootstrapped in {net.wait_bootstrapped(180):.0f} s")
        port = free_ports(1)[0]
        a = prepare_node(net, "A", root / "a", extra={
            "api": {"enabled": True, "listen_address": f"127.0.0.1:{port}", "onion": False}})
        b = prepare_node(net, "B", root / "b", bootstrap=[a.onion])
        nodes = [a, b]
        launched = time.monotonic()
        start_node(a, api=True)
        start_node(b)
        assert a.proc is not None
        wait_for(lambda: b.peer(a.onion).get("authenticated"), 300,
                 "B's session with A", nodes)
        ready_after = time.monotonic() - launched
        pids = {"node": a.proc.pid, "tor": tor_child(a.proc.pid)}
        print(f"A and B in session {ready_after:.0f} s after launch")
        for name, pid in pids.items():
            print(f"start-up {name}: {cpu_seconds(pid):.2f} CPU s, "
                  f"peak RSS {mib(memory_kib(pid)[1])}")
        print(f"idle, one peer session, {args.seconds} s sampled every second:")
        report(pids, args.seconds, *sample(pids, args.seconds))
        api(a, port, "POST", "/api/network/peers", {"action": "add", "peer_address": b.onion})
        body = {"target": b.onion, "message": {"type": "load", "data": "x" * args.size}}
        sent = 0

        def burst() -> None:
            nonlocal sent
            for _ in range(args.rate):
                api(a, port, "POST", "/api/network/send", body)
                sent += 1

        print(f"load, {args.rate} messages/s of {args.size} bytes for {args.load_seconds} s:")
        report(pids, args.load_seconds, *sample(pids, args.load_seconds, burst))
        wait_for(lambda: api(a, port, "GET", "/api/network/status")["counts"]["outbox"] == 0,
                 120, "the outbox to drain", nodes)
        acked = [line for line in api(a, port, "GET", "/metrics").splitlines()
                 if line.startswith("aegis_messages_acked_total ")]
        print(f"  {sent} messages accepted by the API, {acked[0].split()[1]} acknowledged by B")
    finally:
        for node in nodes:
            node.stop()
        net.stop()
    print(f"logs: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
