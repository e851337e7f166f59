"""``aegis-hidden demo``: a private Tor network and three nodes, and what the node is for.

What ``make demo`` runs. It brings up the devnet (3 authorities, 2 relays, a
client), creates three nodes under ``./.demo/`` (each a ``twistd -n
aegis-hidden`` process whose own tor joins the devnet, its API on loopback),
and shows, one line each:

* the nodes reaching each other by onion address (the first knows nobody, the
  others know only the first);
* a message sent through A's REST API arriving at a WebSocket client of C's
  event stream, in this process;
* C finding B through the DHT (C was configured with A only) and its message to
  B acknowledged;
* every node subscribing to a topic and A's message on it reaching them all
  (C's WebSocket client among them), when the node has topics;
* the mixing profile's cover traffic and loop round trips (``/metrics``);
* A's privacy audit of its own traffic during the demo (``POST
  /api/network/audit``), with the path of its HTML report, kept in ``./.demo/``;
* what it does not show (offline mailboxes; topics when the node has none),
  asked of the node.

It tears everything down when done, on Ctrl-C or SIGTERM (exit 130), and on a
failed step (exit 1).
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from ..addresses import split_host_port
from ..testing import (
    NodeProcess,
    TorNetwork,
    TorNetworkError,
    free_ports,
    prepare_node,
    set_bootstrap,
    start_node,
)
from ..tor import progress_bar
from ._api import ApiClient
from ._common import CLIError

#: λ_L of the demo's nodes: the balanced profile's 1/30 s would show one or two
#: loops in a demo's minutes; the other rates are the profile's own.
DEMO_LOOP_RATE = 0.2
#: seconds after the links are up before A's audit starts (the handshake flights
#: are written at once, outside the schedule)
SETTLE = 8.0
#: the topic every node subscribes to
DEMO_TOPIC = "demo"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="devnet + three nodes: messages, DHT, cover traffic, audit")
    p.add_argument("--dir", default=".demo", help="where the demo keeps its state (./.demo)")
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (3-6, default 3)")
    p.add_argument("--audit-seconds", type=int, default=45,
                   help="seconds of node A's traffic its own privacy audit records (default 45)")
    p.add_argument("--timeout", type=float, default=240.0,
                   help="seconds to wait for the private network to bootstrap, and for the "
                        "nodes to reach each other")
    p.set_defaults(func=run)


class _Stop(Exception):
    """SIGTERM: tear down like Ctrl-C."""


class StepFailed(Exception):
    """A step of the demo did not show what it should (the demo exits 1)."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def say(text: str) -> None:
    print(text, flush=True)


# -- the pieces (in memory: tests/unit/test_demo.py) --------------------------------------

def bootstrap_plan(names: list[str]) -> dict[str, list[str]]:
    """Whom each node is configured with: the first nobody, every other the first only.

    The others find each other through the DHT (the first is their way in).
    """
    return {name: ([] if i == 0 else [names[0]]) for i, name in enumerate(names)}


def parse_metrics(text: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text page (``/metrics``)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        name, _, value = line.partition(" ")
        try:
            out[name] = float(value.split()[0])
        except (ValueError, IndexError):
            continue
    return out


def mixing_line(name: str, mixing: dict[str, Any], metrics: dict[str, float],
                links: int) -> str:
    """One line: the profile, its cover cells per link and its loops' round trips."""
    sent = metrics.get("aegis_mixing_cells_sent_total", 0.0)
    cover = metrics.get("aegis_mixing_cover_cells_sent_total", 0.0)
    share = f"{100 * cover / sent:.0f}% of {sent:.0f} cells" if sent else "no cells yet"
    per_link = f"{cover / links:.0f}" if links else "-"
    returned = metrics.get("aegis_mixing_loops_returned_total", 0.0)
    rtt_sum = metrics.get("aegis_mixing_loop_rtt_seconds_sum", 0.0)
    rtt = f", mean round trip {rtt_sum / returned:.2f}s" if returned else ""
    return (f"{name}: profile {mixing.get('profile', '?')} (λ {mixing.get('cover_rate', 0):g} "
            f"cells/s per link, {mixing.get('bytes_per_second_per_link', 0):g} B/s): "
            f"{cover:.0f} cover cells sent ({share}), {per_link} per link on {links} links; "
            f"loops {metrics.get('aegis_mixing_loops_sent_total', 0):.0f} sent, "
            f"{returned:.0f} back, {metrics.get('aegis_mixing_loops_lost_total', 0):.0f} lost"
            f"{rtt}")


def audit_line(name: str, state: dict[str, Any], report_path: Path) -> str:
    """One line: the audit's verdict, its checks by status, where its HTML report is."""
    report = state.get("report") or {}
    by_status: dict[str, list[str]] = {}
    for check in report.get("checks", []):
        by_status.setdefault(str(check.get("status")), []).append(str(check.get("name")))
    checks = "; ".join(f"{status}: {', '.join(names)}" for status, names in by_status.items())
    verdict = "PASSED" if report.get("passed") else \
        "FAILED (" + ", ".join(str(f) for f in report.get("failed") or []) + ")"
    return (f"privacy audit of {name}'s own traffic ({state.get('cells', 0)} cells in "
            f"{state.get('seconds', '?')}s): {verdict} ({checks}); report: {report_path}")


def not_shown_line(topics_code: int, metric_names: Iterable[str]) -> str:
    """What the demo does not show, asked of the running node: topics when its
    ``/api/network/topics`` does not answer 200 (404: not in the node; else, not
    running), and offline mailboxes (in the node when it has a ``mailbox`` metric)."""
    missing = []
    there = []
    if topics_code == 404:
        missing.append("topics (pub/sub)")
    elif topics_code != 200:
        there.append("topics (pub/sub, off in this configuration)")
    if any("mailbox" in m for m in metric_names):
        there.append("offline mailboxes")
    else:
        missing.append("offline mailboxes")
    parts = []
    if missing:
        parts.append(f"{' and '.join(missing)}: not in the node yet (a message to a node "
                     "that is away waits in the sender's outbox and is retried)")
    if there:
        parts.append(f"{' and '.join(there)}: in the node, not shown by this demo yet")
    return "; ".join(parts)


def follower_factory(url: str, token: str, sink: queue.Queue[dict[str, Any]],
                     reactor: Any) -> Any:
    """An autobahn client factory of a node's event stream: each event into ``sink``.

    The connection's end is put in as ``{"type": "closed", ...}``.
    """
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol

    class Follower(WebSocketClientProtocol):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            try:
                event = json.loads(payload)
            except ValueError:
                event = {"type": "unreadable", "size": len(payload)}
            sink.put(event if isinstance(event, dict) else {"type": "unreadable"})

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            sink.put({"type": "closed", "code": code, "reason": reason})

    factory = WebSocketClientFactory(url, headers={"Authorization": f"Bearer {token}"},
                                     reactor=reactor)
    factory.protocol = Follower
    return factory


class EventStream:
    """A WebSocket client of one node's ``/network`` events, in the demo's process.

    The demo is a blocking program: autobahn runs on the global reactor in a
    thread of its own, and the events arrive in a queue.
    """

    def __init__(self) -> None:
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reactor: Any = None
        self._thread: threading.Thread | None = None

    def start(self, api_address: str, token: str) -> None:
        from twisted.internet import reactor as global_reactor

        reactor: Any = global_reactor
        host, port = split_host_port(api_address, allow_unix=False)
        factory = follower_factory(f"ws://{host}:{port}/network", token, self.queue, reactor)
        reactor.callWhenRunning(reactor.connectTCP, host, port, factory)
        self._reactor = reactor
        self._thread = threading.Thread(target=reactor.run, name="demo-websocket",
                                        kwargs={"installSignalHandlers": False}, daemon=True)
        self._thread.start()

    def wait(self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str
             ) -> dict[str, Any]:
        """The first event (seen or to come) ``match`` accepts; :class:`StepFailed` if none."""
        for event in self.seen:
            if match(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(f"no {what} on the WebSocket after {timeout:.0f}s")
            try:
                event = self.queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            self.seen.append(event)
            if match(event):
                return event
            if event.get("type") == "closed":
                raise StepFailed(f"the WebSocket closed before {what} ({event.get('reason')})")

    def stop(self) -> None:
        if self._reactor is not None and self._reactor.running:
            self._reactor.callFromThread(self._reactor.stop)
        if self._thread is not None:
            self._thread.join(5)


# -- the nodes -----------------------------------------------------------------------------

class DemoNode:
    """A node process and its API on loopback."""

    def __init__(self, proc: NodeProcess, api_port: int) -> None:
        self.proc = proc
        self.api_address = f"127.0.0.1:{api_port}"

    @property
    def name(self) -> str:
        return self.proc.name

    @property
    def onion(self) -> str:
        return self.proc.onion

    @property
    def token(self) -> str:
        return (self.proc.data_dir / "api_token").read_text(encoding="utf-8").strip()

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60.0
             ) -> tuple[int, Any]:
        return ApiClient(self.api_address, self.token, timeout).call(method, path, body)

    def ok(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        code, reply = self.call(method, path, body, timeout)
        if not 200 <= code < 300:
            raise StepFailed(f"{self.name}: {method} {path}: API said {code}: {reply}")
        return reply

    def api_up(self) -> bool:
        try:
            return self.call("GET", "/api/network/status", timeout=5)[0] == 200
        except (OSError, CLIError):  # not listening yet, or no token file yet
            return False

    def metrics(self) -> dict[str, float]:
        text = self.ok("GET", "/metrics")
        return parse_metrics(text if isinstance(text, str) else "")

    def connected_peers(self) -> int:
        peers = self.ok("GET", "/api/network/peers")["peers"]
        return sum(1 for p in peers if p.get("status") == "connected")


def _poll(predicate: Callable[[], Any], timeout: float, what: str,
          nodes: list[DemoNode], interval: float = 1.0) -> Any:
    """``predicate()`` once truthy; :class:`StepFailed` after ``timeout`` or if a node died."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for n in nodes:
            if not n.proc.alive():
                raise StepFailed(f"{n.name} exited while waiting for {what}; its log:\n"
                                 f"{n.proc.log_tail()}")
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)


def _matrix(nodes: list[NodeProcess]) -> tuple[list[str], bool]:
    lines = []
    complete = True
    for n in nodes:
        reached = []
        for m in nodes:
            if m is n:
                continue
            info = n.peer(m.onion)
            if info.get("reachable"):
                # a ping round trip is measured on the sessions the node dialled
                rtt = f", ping {info['rtt']:.2f}s" if "rtt" in info else ""
                reached.append(f"{m.name} ({info.get('last_direction') or 'it dialled'}{rtt})")
            else:
                complete = False
        lines.append(f"  {n.name} reached: {', '.join(reached) if reached else '(nobody yet)'}")
    return lines, complete


def _watch_until_linked(nodes: list[DemoNode], timeout: float) -> float:
    """Print bootstrap progress and each pair reached until every node reached its
    bootstrap node and its API answers; the seconds it took."""
    started = time.monotonic()
    first = nodes[0]
    shown_ready: set[str] = set()
    shown_bars: dict[str, str] = {}
    shown_pairs: set[tuple[str, str]] = set()
    while True:
        for n in nodes:
            if not n.proc.alive():
                raise StepFailed(f"{n.name} exited; its log:\n{n.proc.log_tail()}")
            tor = n.proc.tor_state()
            bar = progress_bar(tor.get("bootstrap"))
            if not tor.get("ready") and tor.get("bootstrap") and shown_bars.get(n.name) != bar:
                shown_bars[n.name] = bar
                say(f"[demo] {n.name}: tor {bar}")
            if tor.get("ready") and n.name not in shown_ready:
                shown_ready.add(n.name)
                say(f"[demo] {n.name}: tor bootstrapped, onion service published "
                    f"({tor.get('published_service_id')}.onion)")
            for m in nodes:
                info = n.proc.peer(m.onion)
                if m is not n and info.get("reachable") and "rtt" in info \
                        and (n.name, m.name) not in shown_pairs:
                    shown_pairs.add((n.name, m.name))
                    say(f"[demo] {n.name} reached {m.name}: X-Wing session authenticated "
                        f"{m.name}'s onion key, ping round trip {info['rtt']:.2f}s")
        linked = all(n.proc.peer(first.onion).get("reachable") and
                     first.proc.peer(n.onion).get("reachable") for n in nodes[1:])
        if linked and all(n.api_up() for n in nodes):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise StepFailed(f"the nodes did not reach {first.name} within {timeout:.0f}s; "
                             "node logs are kept")
        time.sleep(0.5)


# -- the steps -----------------------------------------------------------------------------

def _step_websocket(a: DemoNode, c: DemoNode, stream: EventStream) -> None:
    stream.start(c.api_address, c.token)
    stream.wait(lambda e: e.get("type") == "hello", 30, "hello from the event stream")
    message = {"type": "chat", "data": f"hello {c.name}, from {a.name}, over an onion"}
    t0 = time.monotonic()
    sent = a.ok("POST", "/api/network/send", {"target": c.onion, "message": message})
    got = stream.wait(lambda e: e.get("type") == "message_received" and e.get("id") == sent["id"],
                      180, f"message {sent['id']}")
    if got.get("message") != message or got.get("peer") != a.onion:
        raise StepFailed(f"{c.name}'s WebSocket client got {got}, not what {a.name} sent")
    say(f"[demo] message: sent through {a.name}'s REST API (POST /api/network/send), "
        f"arrived at {c.name}'s WebSocket client {time.monotonic() - t0:.1f}s later: "
        f"{json.dumps(got['message'])}")


def _published(n: DemoNode) -> bool:
    try:
        code, stats = n.call("GET", "/api/network/dht", timeout=10)
    except CLIError:
        return False
    return code == 200 and stats["records"]["own_stored_at"] >= 1


def _step_dht(a: DemoNode, b: DemoNode, c: DemoNode, nodes: list[DemoNode]) -> None:
    _poll(lambda: _published(b) and _published(c), 180,
          "the identity records of the nodes in the DHT", nodes, interval=2)
    t0 = time.monotonic()
    code, record = c.call("GET", f"/api/network/dht/records/{b.onion}?source=network",
                          timeout=180)
    lookup = time.monotonic() - t0
    if code != 200 or record.get("publisher") != b.onion:
        raise StepFailed(f"{c.name} could not find {b.name}'s record in the DHT: {code} {record}")
    contacts = c.ok("GET", "/api/network/dht")["routing_table"]["contacts"]
    t0 = time.monotonic()
    sent = c.ok("POST", "/api/network/send", {
        "target": b.onion, "message": {"type": "chat", "data": "found you through the DHT"}})

    def acknowledged() -> bool:
        state = c.ok("GET", f"/api/network/messages/{sent['id']}", timeout=10)
        return bool(state["state"] == "acknowledged")

    _poll(acknowledged, 180, f"{b.name} to acknowledge {c.name}'s message", nodes)
    say(f"[demo] DHT: {c.name} (configured with {a.name} only, {contacts} contacts in its "
        f"routing table) found {b.name}'s identity record in the DHT in {lookup:.1f}s; "
        f"its message to {b.name} was acknowledged {time.monotonic() - t0:.1f}s later")


def _topic(n: DemoNode, name: str) -> dict[str, Any]:
    for t in n.ok("GET", "/api/network/topics", timeout=10)["topics"]:
        if t.get("topic") == name:
            return dict(t)
    return {}


def _meshed(n: DemoNode) -> bool:
    return bool(_topic(n, DEMO_TOPIC).get("mesh"))


def _step_topic(a: DemoNode, nodes: list[DemoNode], stream: EventStream) -> None:
    """Every node subscribes to a topic; A publishes; C's WebSocket client gets it, and
    every other subscriber's topic counter shows it."""
    for n in nodes:
        n.ok("POST", "/api/network/topics", {"action": "subscribe", "topic": DEMO_TOPIC})
    t0 = time.monotonic()
    for n in nodes:
        _poll(partial(_meshed, n), 180, f"{n.name}'s mesh of topic {DEMO_TOPIC}", nodes)
    meshes = ", ".join(f"{n.name} {len(_topic(n, DEMO_TOPIC)['mesh'])}" for n in nodes)
    formed = time.monotonic() - t0
    others = [n for n in nodes if n is not a]
    before = {n.name: _topic(n, DEMO_TOPIC).get("messages_in", 0) for n in others}
    message = {"type": "chat", "data": f"to everyone on {DEMO_TOPIC}, from {a.name}"}
    t0 = time.monotonic()
    sent = a.ok("POST", "/api/network/send", {"target": f"topic:{DEMO_TOPIC}",
                                              "message": message})
    got = stream.wait(lambda e: e.get("type") == "message_received"
                      and e.get("topic") == DEMO_TOPIC and e.get("message") == message,
                      180, f"topic message {sent['id']}")
    _poll(lambda: all(_topic(n, DEMO_TOPIC).get("messages_in", 0) > before[n.name]
                      for n in others), 180, "the topic message at every subscriber", nodes,
          interval=0.2)
    say(f"[demo] topic {DEMO_TOPIC!r}: meshes formed in {formed:.1f}s ({meshes} peers); "
        f"{a.name} published, every subscriber had it {time.monotonic() - t0:.1f}s later "
        f"({', '.join(n.name for n in others)}; {nodes[-1].name}'s WebSocket client got "
        f"{json.dumps(got['message'])})")


def _step_audit(a: DemoNode, started: dict[str, Any], root: Path, seconds: int,
                nodes: list[DemoNode]) -> bool:
    audit_id = started["id"]

    def finished() -> dict[str, Any]:
        state: dict[str, Any] = a.ok("GET", f"/api/network/audit/{audit_id}")
        return state if state["state"] in ("done", "failed") else {}

    state = _poll(finished, seconds + 120, f"{a.name}'s audit", nodes)
    if state["state"] == "failed":
        raise StepFailed(f"{a.name} could not audit its traces: {state.get('error')}")
    code, html = a.call("GET", f"/api/network/audit/{audit_id}/report.html")
    if code != 200 or not isinstance(html, str):
        raise StepFailed(f"{a.name}'s audit report: API said {code}")
    path = root / f"audit-{a.name}.html"
    path.write_text(html, encoding="utf-8")
    (root / f"audit-{a.name}.json").write_text(json.dumps(state, indent=2, allow_nan=False),
                                              encoding="utf-8")
    say(f"[demo] {audit_line(a.name, state, path)}")
    return bool(state["report"]["passed"])


def _step_cover(nodes: list[DemoNode]) -> bool:
    """A line per node on its cover traffic; False unless every node sent cover cells
    and loops came back."""
    figures = [(n, n.metrics()) for n in nodes]
    for n, metrics in figures:
        line = mixing_line(n.name, n.proc.status().get("mixing", {}), metrics,
                           n.connected_peers())
        say(f"[demo] cover traffic {line}")
    covered = all(m.get("aegis_mixing_cover_cells_sent_total", 0) > 0 for _, m in figures)
    looped = sum(m.get("aegis_mixing_loops_returned_total", 0) for _, m in figures) > 0
    if not (covered and looped):
        say("[demo] cover traffic: a node sent no cover cells, or no loop came back")
    return covered and looped


def _start_network(root: Path, timeout: float, started: list[TorNetwork]) -> float:
    """Start the private network (each one started is appended to ``started``, for the
    teardown, before anything can fail); the seconds it took to bootstrap."""
    net = TorNetwork(root / "devnet")
    started.append(net)
    net.setup()
    net.start()
    try:
        return net.wait_bootstrapped(timeout)
    except TorNetworkError as e:
        # A fresh private network rarely never bootstraps its client (stuck at 95%,
        # no relays in its consensus): one fresh network is tried again.
        say(f"[demo] the network did not bootstrap ({str(e).splitlines()[0]}); "
            "starting a fresh one")
        net.stop()
        shutil.rmtree(net.directory, ignore_errors=True)
        net = TorNetwork(root / "devnet")
        started.append(net)
        net.setup()
        net.start()
        return net.wait_bootstrapped(timeout)


def run(args: argparse.Namespace) -> int:
    if not 3 <= args.nodes <= 6:
        raise CLIError("--nodes must be from 3 to 6")
    if not 10 <= args.audit_seconds <= 600:
        raise CLIError("--audit-seconds must be from 10 to 600")
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        old = TorNetwork.load(root / "devnet")
    except TorNetworkError:
        old = None
    if old is not None and any(old.is_running(i) for i in old.instances):
        raise CLIError(f"a demo network is already running in {root}; stop it with "
                       f"'aegis-hidden devnet down --dir {root / 'devnet'}'")
    began = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _on_term)
    nets: list[TorNetwork] = []
    nodes: list[DemoNode] = []
    stream = EventStream()
    ok = False
    interrupted = False
    try:
        say(f"[demo] starting a private Tor network in {root / 'devnet'} ...")
        seconds = _start_network(root, args.timeout, nets)
        net = nets[-1]
        say(f"[demo] network up: 3 authorities, 2 relays, 1 client; bootstrapped in "
            f"{seconds:.0f}s")
        names = [f"node-{chr(ord('a') + i)}" for i in range(args.nodes)]
        ports = free_ports(args.nodes)
        for name, port in zip(names, ports, strict=True):
            shutil.rmtree(root / name, ignore_errors=True)
            proc = prepare_node(net, name, root / name, extra={
                "api": {"enabled": True, "listen_address": f"127.0.0.1:{port}"},
                "mixing": {"profile": "balanced", "loop_rate": DEMO_LOOP_RATE},
                "dht": {"maintenance_interval": 5, "request_timeout": 30}})
            nodes.append(DemoNode(proc, port))
        by_name = {n.name: n for n in nodes}
        for n, known in zip(nodes, bootstrap_plan(names).values(), strict=True):
            set_bootstrap(n.proc, [by_name[k].onion for k in known])
        for n in nodes:
            say(f"[demo] {n.name}: {n.onion} (API {n.api_address})")
        for n in nodes:
            start_node(n.proc, api=True)
        a, b, c = nodes[0], nodes[1], nodes[-1]
        say(f"[demo] {len(nodes)} twistd nodes started, mixing profile balanced (λ_L "
            f"{DEMO_LOOP_RATE:g} loops/s for the demo); {a.name} knows nobody, the others "
            f"know only {a.name} (Ctrl-C to stop)")
        linked = _watch_until_linked(nodes, args.timeout)
        say(f"[demo] every node reached {a.name} {linked:.1f}s after start")
        time.sleep(SETTLE)
        audit = a.ok("POST", "/api/network/audit", {"seconds": args.audit_seconds})
        say(f"[demo] {a.name} records its own cell traces for {args.audit_seconds}s "
            "for a privacy audit (POST /api/network/audit)")
        _step_websocket(a, c, stream)
        _step_dht(a, b, c, nodes)
        topics_code = a.call("GET", "/api/network/topics")[0]
        if topics_code == 200:
            _step_topic(a, nodes, stream)
        say(f"[demo] {not_shown_line(topics_code, a.metrics())}")
        passed = _step_audit(a, audit, root, args.audit_seconds, nodes)
        covered = _step_cover(nodes)
        lines, _ = _matrix([n.proc for n in nodes])
        say("[demo] who reached whom:")
        for line in lines:
            say(line)
        ok = passed and covered
    except (KeyboardInterrupt, _Stop):
        say("\n[demo] interrupted")
        interrupted = True
    except (TorNetworkError, StepFailed, CLIError, OSError, KeyError, TypeError,
            ValueError) as e:  # the last three: an API reply not as documented
        say(f"[demo] failed: {type(e).__name__}: {e}" if isinstance(
            e, KeyError | TypeError | ValueError) else f"[demo] failed: {e}")
        ok = False
    finally:
        signal.signal(signal.SIGTERM, _on_term)  # a second TERM during teardown is ignored
        say("[demo] stopping the WebSocket client, the nodes and the network ...")
        stream.stop()
        for n in nodes:
            try:
                n.proc.stop()
            except (KeyboardInterrupt, _Stop):
                n.proc.stop(timeout=5)
        for started in nets:
            started.stop()
        signal.signal(signal.SIGTERM, previous)
        clean = ["clean" if n.proc.stopped_cleanly()
                 else f"exit {n.proc.proc.returncode if n.proc.proc else '?'}" for n in nodes]
        say(f"[demo] stopped: nodes {', '.join(clean) or '-'}, network down; state, logs "
            f"and the audit report in {root}")
        if ok and not all(n.proc.stopped_cleanly() for n in nodes):
            say("[demo] a node did not shut down cleanly; see its node.log")
            ok = False
        verdict = "done" if ok else "interrupted" if interrupted else "FAILED"
        say(f"[demo] {verdict} in {time.monotonic() - began:.0f}s")
    return 0 if ok else 130 if interrupted else 1
