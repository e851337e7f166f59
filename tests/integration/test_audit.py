"""The privacy audit on real traffic: the leak trap, and nodes on the private Tor network.

The leak trap (``aegis-hidden audit sealed``, root): a UDP datagram to
192.0.2.1 and a DNS query are caught and listed (exit 76); ``true`` passes with
0 packets; a command's own failure comes back as its status; traffic on the
trap's loopback is not counted.

The audit: three nodes with the ``balanced`` profile (a -> b -> c -> a) and, as
the positive control, two with ``off`` (d -> e -> d) message one another at a
steady pace (one message every 1.25 s ± 15 % per node, each node with its own
period and phase, each message carrying a random canary)
while tcpdump captures loopback. The capture is restricted to this test's own
ports (the nodes' tor SOCKS and control ports, their listen ports, the private
network's relays) because other programs on a shared machine use loopback too;
that nothing else leaves the machine is the leak trap's job (``make test`` runs
this file inside it). Each node also audits itself through its API
(``POST /api/network/audit``) over the same minute. Then:

- the balanced nodes' part of the capture passes the leak checks (no packet
  off loopback, no DNS, no connection but to tor and the node), the canary
  and the onion names are never in clear, every frame is whole cells,
  departures are Poisson at λ = 2 with no burst, volume is even across links;
  a balanced node's own trace audit (started once the handshakes are over)
  passes every check, correlation included;
- the off nodes' part, judged against the same schedule, fails the timing and
  correlation checks, and so does an off node's own trace audit;
- the HTML report opens in headless Chromium (Debian's), its plots are images
  that loaded, and a screenshot is kept under the pytest temporary directory.

Driven with subprocesses and blocking HTTP (no reactor in this file).
"""

from __future__ import annotations

import io
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import pytest

from aegis_hidden.audit import AuditReport, Topology, render_html, run_audit
from aegis_hidden.testing import (
    NodeProcess,
    TorNetwork,
    free_ports,
    prepare_node,
    start_node,
    wait_for,
)

from .test_dashboard import CHROMEDRIVER, CHROMIUM, chromium_options
from .test_mixing import api_up, call, connected

pytestmark = pytest.mark.integration

AEGIS = str(Path(sys.executable).with_name("aegis-hidden"))
LAMBDA = 2.0  # the balanced profile's λ
EXCHANGE = 80  # seconds of messages once every link is up (80 one-second bins for correlation)
SETTLE = 8.0  # seconds after every link is up before the nodes' own audits start
PERIOD = 1.25  # seconds between one node's messages (each node within 15 % of it)


# -- the leak trap ------------------------------------------------------------

def _sealed(*command: str, tmp_path: Path) -> tuple[int, str, dict[str, Any]]:
    report = tmp_path / "sealed.json"
    report.unlink(missing_ok=True)
    done = subprocess.run([AEGIS, "audit", "sealed", "--json", str(report), "--", *command],
                          capture_output=True, text=True, timeout=120, check=False)
    doc = json.loads(report.read_text()) if report.exists() else {}
    return done.returncode, done.stdout + done.stderr, doc


@pytest.fixture(scope="module")
def trap_allowed() -> None:
    check = subprocess.run([AEGIS, "audit", "sealed", "--check"], capture_output=True,
                           text=True, check=False)
    if check.returncode == 77:
        pytest.skip(f"network namespaces are not allowed here: {check.stderr.strip()}")
    assert check.returncode == 0, check.stderr


LEAKY = """
import socket, struct
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"leak", ("192.0.2.1", 9))
query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(p)]) + p for p in (b"aegis-leak-test", b"example")) + b"\\0"
query += struct.pack("!HH", 1, 1)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(query, ("192.0.2.53", 53))
"""

LOOPBACK_ONLY = """
import socket
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"local", rx.getsockname())
assert rx.recv(10) == b"local"
"""


def test_trap_catches_a_datagram_and_a_dns_query(trap_allowed: None, tmp_path: Path) -> None:
    code, out, doc = _sealed(sys.executable, "-c", LEAKY, tmp_path=tmp_path)
    print(out)
    assert code == 76, out
    assert doc["packets_tried_to_leave"] == 2 and doc["command_status"] == 0
    udp, dns = doc["escapes"]
    assert (udp["protocol"], udp["dst"], udp["dport"]) == ("udp", "192.0.2.1", 9)
    assert dns["dst"] == "192.0.2.53" and dns["dns"] == "A? aegis-leak-test.example."
    assert "2 packets tried to leave" in out and "192.0.2.1:9" in out
    assert "DNS query A? aegis-leak-test.example." in out


def test_trap_passes_a_quiet_command_and_keeps_its_status(trap_allowed: None,
                                                          tmp_path: Path) -> None:
    code, out, doc = _sealed("true", tmp_path=tmp_path)
    assert code == 0, out
    assert "0 packets tried to leave" in out and doc["escapes"] == []
    code, out, _ = _sealed("sh", "-c", "exit 3", tmp_path=tmp_path)
    assert code == 3 and "0 packets tried to leave" in out
    code, out, doc = _sealed(sys.executable, "-c", LOOPBACK_ONLY, tmp_path=tmp_path)
    assert code == 0 and doc["packets_tried_to_leave"] == 0, out


# -- the nodes --------------------------------------------------------------

class Tcpdump:
    """tcpdump on lo into a pcap, only TCP to or from the given ports."""

    def __init__(self, path: Path, ports: set[int]) -> None:
        self.path = path
        self.stats = ""  # tcpdump's closing counts (captured, dropped by kernel)
        expr = "tcp and (" + " or ".join(f"port {p}" for p in sorted(ports)) + ")"
        # -B: a 64 MiB kernel buffer, so a busy machine drops no packet of the streams
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "--immediate-mode", "-U", "-B", "65536", "-s", "0",
             "-Z", "root", "-w", str(path), expr],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline().decode(errors="replace")
        if "listening on" not in first:
            self.proc.kill()
            raise RuntimeError(f"tcpdump did not start: {first}")

    def stop(self) -> bytes:
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        self.stats = err.decode(errors="replace").strip().replace("\n", "; ")
        return self.path.read_bytes()


def _port(text: str) -> int:
    return int(str(text).rsplit(":", 1)[1])


def _api_port(node: NodeProcess) -> int:
    import yaml

    cfg = yaml.safe_load((node.data_dir / "node.yaml").read_text())
    return _port(cfg["api"]["listen_address"])


class Ports:
    """One node's loopback ports: its tor's SOCKS and control ports, its listen port."""

    def __init__(self, node: NodeProcess) -> None:
        self.socks = _port(node.tor_state()["socks"])
        control = (node.data_dir / "tor" / "control_port").read_text().strip()
        self.control = _port(control)
        self.listen = node.listen_port

    @property
    def all(self) -> set[int]:
        return {self.socks, self.control, self.listen}


def relay_ports(net: TorNetwork) -> set[int]:
    return {p for i in net.instances if i.role in ("authority", "relay")
            for p in (i.or_port, i.dir_port) if p}


def _node(net: TorNetwork, name: str, root: Path, profile: str) -> NodeProcess:
    return prepare_node(net, name, root / name, extra={
        "api": {"enabled": True, "listen_address": f"127.0.0.1:{free_ports(1)[0]}"},
        "mixing": {"profile": profile, "trace_file": "cells.jsonl"}})


def _split(capture: bytes, keep: Any) -> bytes:
    """The packets of ``capture`` whose (sport, dport) ``keep`` accepts, as a pcap."""
    reader = dpkt.pcap.Reader(io.BytesIO(capture))
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, linktype=reader.datalink(), snaplen=262144)
    for ts, frame in reader:
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        tcp = getattr(ip, "data", None)
        if isinstance(tcp, dpkt.tcp.TCP) and keep(tcp.sport, tcp.dport):
            writer.writepkt(frame, ts=ts)
    return out.getvalue()


def _audit(pcap: bytes, name: str, groups: list[Ports], other: set[int], *,
           canary: bytes, names: list[str], tmp: Path) -> AuditReport:
    path = tmp / f"{name}.pcap"
    path.write_bytes(pcap)
    topology = Topology(socks=[g.socks for g in groups], control=[g.control for g in groups],
                        listen=[g.listen for g in groups], other=sorted(other),
                        nodes=[[g.socks, g.listen] for g in groups])
    report = run_audit([path], topology=topology, rate=LAMBDA, canaries=[canary],
                       node_addresses=names)
    (tmp / f"{name}.json").write_text(json.dumps(report.to_json(), indent=2))
    (tmp / f"{name}.html").write_text(render_html(report), encoding="utf-8")
    print(f"\n{name} capture ({len(pcap)} bytes, {path}):")
    for c in report.checks:
        print(f"  {c.status.upper():8} {c.name:18} {c.summary}")
    return report


@dataclass
class Exchange:
    """What one run of the five nodes left: the two capture audits, the nodes' own."""

    balanced: AuditReport
    off: AuditReport
    own: dict[str, dict[str, Any]]  # node name -> GET /api/network/audit/{id}
    html: dict[str, tuple[int, str]]  # node name -> (status, report.html of its own audit)
    directory: Path


def _ring(group: list[NodeProcess]) -> list[tuple[NodeProcess, NodeProcess]]:
    return [(group[k], group[(k + 1) % len(group)]) for k in range(len(group))]


def _finished(node: NodeProcess, audit_id: str) -> dict[str, Any]:
    status, state = call(node, "GET", f"/api/network/audit/{audit_id}")
    assert status == 200, state
    return state if state["state"] in ("done", "failed") else {}


@pytest.fixture(scope="module")
def exchange(tor_network: TorNetwork, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exchange]:
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        pytest.skip("the capture needs tcpdump and root (apt-get install tcpdump)")
    root = tmp_path_factory.mktemp("audit")
    balanced = [_node(tor_network, n, root, "balanced") for n in ("a", "b", "c")]
    off = [_node(tor_network, n, root, "off") for n in ("d", "e")]
    everyone = balanced + off
    for n in everyone:  # all at once: their tors bootstrap side by side
        start_node(n, api=True)
    try:
        for n in everyone:
            wait_for(lambda n=n: n.tor_state().get("ready") and api_up(n), 240,
                     f"{n.name} ready", everyone)
        yield _run_exchange(tor_network, balanced, off, root)
    finally:
        for n in everyone:
            n.stop()


def _run_exchange(tor_network: TorNetwork, balanced: list[NodeProcess],
                  off: list[NodeProcess], root: Path) -> Exchange:
    everyone = balanced + off
    started = time.monotonic()
    ports = {n.name: Ports(n) for n in everyone}
    relays = relay_ports(tor_network)
    dump = Tcpdump(root / "lo.pcap", relays.union(*(p.all for p in ports.values())))
    canary = secrets.token_bytes(16)
    pairs = _ring(balanced) + _ring(off)
    try:
        for me, peer in pairs:
            status, body = call(me, "POST", "/api/network/peers",
                                {"action": "add", "peer_address": peer.onion})
            assert status in (200, 201), body
            status, sent = call(me, "POST", "/api/network/send",
                                {"target": peer.onion, "message": {"type": "chat",
                                                                   "data": canary.hex()}})
            assert status == 202, sent
        wait_for(lambda: all(connected(me, peer) for me, peer in pairs), 240,
                 "every link established", everyone)
        print(f"\nevery link up {time.monotonic() - started:.0f} s after the capture began")
        # The nodes' own audits start once the handshake flights are over (they are
        # written at once, outside the schedule, on every link at the same moment).
        time.sleep(SETTLE)
        audits = {}
        for n in (balanced[0], off[0]):
            status, body = call(n, "POST", "/api/network/audit", {"seconds": EXCHANGE - 5})
            assert status == 202, body
            audits[n.name] = (n, body["id"])

        # Each node messages the next one at a steady pace of its own: a period within
        # 15 % of PERIOD and a random phase. A steady pace is what `off` must give away
        # (its writes follow it); one tick shared by every node would instead put a
        # node's incoming and outgoing messages in the same second by the test's doing,
        # which the correlation check rightly reads as matched counts.
        pace = random.Random(secrets.randbits(64))
        now = time.monotonic()
        end = now + EXCHANGE
        period = {me.name: PERIOD * pace.uniform(0.85, 1.15) for me, _ in pairs}
        due = {me.name: now + pace.uniform(0, period[me.name]) for me, _ in pairs}
        sent_count = 0
        while time.monotonic() < end:
            me, peer = min(pairs, key=lambda pair: due[pair[0].name])
            time.sleep(max(0.0, due[me.name] - time.monotonic()))
            status, body = call(me, "POST", "/api/network/send", {
                "target": peer.onion,
                "message": {"type": "chat", "data": f"{canary.hex()} {sent_count}"}})
            assert status == 202, body
            sent_count += 1
            due[me.name] += period[me.name]
    finally:
        capture = dump.stop()
    print(f"{sent_count} messages sent; capture {len(capture)} bytes ({dump.stats})")

    names = [n.onion for n in everyone]
    off_ports = set().union(*(ports[n.name].all for n in off))
    balanced_part = _split(capture, lambda s, d: s not in off_ports and d not in off_ports)
    off_streams = {p for n in off for p in (ports[n.name].socks, ports[n.name].listen)}
    off_part = _split(capture, lambda s, d: s in off_streams or d in off_streams)
    good = _audit(balanced_part, "balanced", [ports[n.name] for n in balanced], relays,
                  canary=canary, names=names, tmp=root)
    bad = _audit(off_part, "off", [ports[n.name] for n in off], relays,
                 canary=canary, names=names, tmp=root)

    own: dict[str, dict[str, Any]] = {}
    html: dict[str, tuple[int, str]] = {}
    for name, (n, audit_id) in audits.items():
        state = wait_for(lambda n=n, i=audit_id: _finished(n, i), 60, f"{name}'s own audit",
                         everyone)
        own[name] = state
        (root / f"own-{name}.json").write_text(json.dumps(state, indent=2))
        report = state.get("report") or {}
        print(f"{name}'s own audit ({state.get('cells')} cells, {state['state']}):")
        for c in report.get("checks", []):
            print(f"  {c['status'].upper():8} {c['name']:18} {c['summary']}")
        html[name] = _request_html(n, audit_id)
    print(f"the exchange and its audits took {time.monotonic() - started:.0f} s")
    return Exchange(good, bad, own, html, root)


def test_balanced_capture_passes_every_check(exchange: Exchange) -> None:
    good = exchange.balanced
    assert good.passed, good.failed
    for name in ("leak_off_loopback", "leak_dns", "leak_connections", "canary", "cells",
                 "timing", "bursts", "correlation", "volume"):
        assert good.check(name).status == "pass", good.check(name).to_json()
    assert good.check("canary").figures, "the canary check searched nothing"


def test_off_capture_fails_timing_and_correlation(exchange: Exchange) -> None:
    assert {"timing", "correlation"} <= set(exchange.off.failed), exchange.off.failed
    for name in ("leak_off_loopback", "leak_dns", "leak_connections", "canary", "cells"):
        assert exchange.off.check(name).status == "pass", exchange.off.check(name).to_json()


def test_nodes_audit_their_own_traces_through_the_api(exchange: Exchange) -> None:
    a, d = exchange.own["a"], exchange.own["d"]
    assert a["state"] == "done" and d["state"] == "done", (a, d)
    assert a["cells"] > 100 and not a["truncated"]
    assert a["report"]["passed"], a["report"]["failed"]
    for name in ("cells", "timing", "bursts", "correlation"):
        status = next(c["status"] for c in a["report"]["checks"] if c["name"] == name)
        assert status == "pass", (name, status)
    assert {"timing", "correlation"} <= set(d["report"]["failed"]), d["report"]["failed"]
    for status, page in exchange.html.values():
        assert status == 200 and page.lstrip().lower().startswith("<!doctype html")
        assert "<img" in page


def test_html_report_opens_in_chromium_with_its_plots(exchange: Exchange,
                                                      tmp_path: Path) -> None:
    _open_in_chromium(exchange.directory / "balanced.html", tmp_path)


def _request_html(node: NodeProcess, audit_id: str) -> tuple[int, str]:
    import urllib.request

    token = (node.data_dir / "api_token").read_text().strip()
    req = urllib.request.Request(
        f"http://127.0.0.1:{_api_port(node)}/api/network/audit/{audit_id}/report.html",
        headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback only
        assert resp.headers["content-type"].startswith("text/html")
        return resp.status, resp.read().decode()


def _open_in_chromium(page: Path, tmp_path: Path) -> None:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("Debian's chromium and chromium-driver are needed (make setup installs them)")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=chromium_options(
        tmp_path / "profile", free_ports(1)[0]))
    driver.set_page_load_timeout(30)
    try:
        driver.get(page.as_uri())
        plots = driver.find_elements(By.CSS_SELECTOR, "img, svg")
        assert plots, "no plot in the report"
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        assert loaded and all(loaded), loaded
        shot = tmp_path / "audit-report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"report: {len(plots)} plots, all loaded; screenshot {shot}")
    finally:
        driver.quit()
