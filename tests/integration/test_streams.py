"""Byte streams on the private Tor network: 50 MB between two ``twistd aegis-hidden`` nodes.

The sender runs ``aegis-hidden stream send`` and the receiver ``aegis-hidden stream
receive`` (the CLI over each node's API WebSocket ``/network/streams/{id}``). The
content's SHA-256 must be equal on both ends, and memory stays bounded on both
nodes: each node's stream high-water mark (``GET /api/network/streams``) is at most
one window plus the send buffer, and the nodes' RSS, sampled during the transfer,
grows by less than half the data. Prints the throughput.

Mixing profile ``off``: with ``balanced`` every cell waits for a Poisson slot
(docs/mixing.md), so 50 MB (about 54,000 cells of 996 bytes) would take far longer
than this test's 3 minutes; :func:`test_stream_balanced_throughput` measures what
``balanced`` gives on 256 KiB instead (one window: the credit goes round once).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aegis_hidden.cli._common import CLIError
from aegis_hidden.testing import TorNetwork, wait_for

from .test_dht import Api, dht_nodes

pytestmark = pytest.mark.integration

SIZE = 50 * 1024 * 1024
#: the node's stream limits (aegis_hidden.streams.Limits defaults)
WINDOW = 256 * 1024
SEND_BUFFER = 256 * 1024


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cli(api: Api, *args: str) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).with_name("aegis-hidden"))
    return subprocess.Popen(
        [exe, "stream", *args, "--config", str(api.node.data_dir / "node.yaml"),
         "--data-dir", str(api.node.data_dir), "--api", api.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _up(api: Api) -> bool:
    try:
        code, _ = api.call("GET", "/api/network/status", timeout=10)
    except (CLIError, OSError):  # no token file yet, API not listening yet
        return False
    return code == 200


def _open_when_reachable(a: Api, b: Api) -> str:
    for api in (a, b):
        wait_for(lambda api=api: _up(api), 240, f"{api.node.name}'s API", [a.node, b.node],
                 interval=2)
    code, body = a.call("POST", "/api/network/peers",
                        {"action": "add", "peer_address": b.node.onion})
    assert code in (200, 201), body
    opened: dict[str, Any] = {}

    def attempt() -> bool:
        try:
            code, body = a.call("POST", "/api/network/streams",
                                {"peer": b.node.onion, "label": "50mb.bin"}, timeout=120)
        except (CLIError, OSError):
            return False
        if code == 201:
            opened.update(body)
        return code == 201

    wait_for(attempt, 240, "a stream to open to the other node", [a.node, b.node], interval=5)
    return str(opened["id"])


def _incoming(b: Api) -> str:
    found: list[str] = []

    def seen() -> bool:
        _code, body = b.call("GET", "/api/network/streams", timeout=10)
        found.extend(s["id"] for s in body["streams"] if not s["outgoing"])
        return bool(found)

    wait_for(seen, 60, "the incoming stream", [b.node], interval=1)
    return found[0]


def _transfer(a: Api, b: Api, size: int, tmp: Path) -> dict[str, Any]:
    src, dst = tmp / "src.bin", tmp / "dst.bin"
    with src.open("wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(size % (1 << 20)))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    sid = _open_when_reachable(a, b)
    rid = _incoming(b)
    pids = {"a": a.node.proc.pid, "b": b.node.proc.pid}  # type: ignore[union-attr]
    base = {k: _rss(p) for k, p in pids.items()}
    peak = dict(base)
    highs = {"a": 0, "b": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for k, p in pids.items():
                peak[k] = max(peak[k], _rss(p))
            for k, api in (("a", a), ("b", b)):
                try:
                    code, body = api.call("GET", "/api/network/streams", timeout=5)
                    if code == 200:
                        highs[k] = max(highs[k], body["high_water"])
                except (CLIError, OSError):
                    pass
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    receiver = _cli(b, "receive", str(dst), "--stream", rid, "--timeout", "900")
    sender = _cli(a, "send", b.node.onion, str(src), "--stream", sid)
    try:
        out_s, err_s = sender.communicate(timeout=900)
        out_r, err_r = receiver.communicate(timeout=120)
    finally:
        done.set()
        sampler.join()
        for p in (sender, receiver):
            if p.poll() is None:
                p.kill()
    seconds = time.monotonic() - started
    assert sender.returncode == 0, (out_s, err_s)
    assert receiver.returncode == 0, (out_r, err_r)
    got = hashlib.sha256(dst.read_bytes()).hexdigest()
    for k, api in (("a", a), ("b", b)):  # the final high-water mark, after the end
        _code, body = api.call("GET", "/api/network/streams", timeout=10)
        highs[k] = max(highs[k], body["high_water"])
    return {"want": want, "got": got, "seconds": seconds, "sender": out_s.decode().strip(),
            "receiver": out_r.decode().strip(), "rss_growth": {k: peak[k] - base[k]
                                                              for k in pids},
            "high_water": highs}


@pytest.fixture(scope="module")
def off_pair(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[list[Api]]:
    with dht_nodes(tor_network, tmp_path_factory.mktemp("streams-off"), "s", 2,
                   mixing="off") as apis:
        yield apis


def test_stream_of_50_mb_with_bounded_memory(off_pair: list[Api], tmp_path: Path) -> None:
    a, b = off_pair
    r = _transfer(a, b, SIZE, tmp_path)
    assert r["got"] == r["want"]
    mbit = SIZE * 8 / r["seconds"] / 1e6
    print(f"\n50 MB stream over the private Tor network (mixing off): {r['seconds']:.1f}s, "
          f"{mbit:.2f} Mbit/s; sender {r['sender']}; receiver {r['receiver']}; "
          f"stream high-water a={r['high_water']['a']} b={r['high_water']['b']} bytes; "
          f"RSS growth a={r['rss_growth']['a'] / 2**20:.1f} MiB "
          f"b={r['rss_growth']['b'] / 2**20:.1f} MiB")
    # the streams never held more than one window plus the send buffer ...
    assert r["high_water"]["a"] <= WINDOW + SEND_BUFFER
    assert r["high_water"]["b"] <= WINDOW + SEND_BUFFER
    # ... and neither node's memory grew with the data (50 MB went through)
    assert r["rss_growth"]["a"] < SIZE // 2, r["rss_growth"]
    assert r["rss_growth"]["b"] < SIZE // 2, r["rss_growth"]


BALANCED_SIZE = 256 * 1024


@pytest.fixture(scope="module")
def balanced_pair(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[list[Api]]:
    with dht_nodes(tor_network, tmp_path_factory.mktemp("streams-balanced"), "sb", 2,
                   mixing="balanced") as apis:
        yield apis


def test_stream_balanced_throughput(balanced_pair: list[Api], tmp_path: Path) -> None:
    """What the ``balanced`` profile's Poisson slots (about 2 per second, 4 cells each)
    leave for stream data: 256 KiB, hash equal, throughput printed."""
    a, b = balanced_pair
    r = _transfer(a, b, BALANCED_SIZE, tmp_path)
    assert r["got"] == r["want"]
    kbit = BALANCED_SIZE * 8 / r["seconds"] / 1e3
    print(f"\n256 KiB stream over the private Tor network (mixing balanced): "
          f"{r['seconds']:.1f}s, {kbit:.1f} kbit/s; sender {r['sender']}; "
          f"stream high-water a={r['high_water']['a']} b={r['high_water']['b']} bytes")
    assert r["high_water"]["a"] <= WINDOW + SEND_BUFFER
    assert r["high_water"]["b"] <= WINDOW + SEND_BUFFER
