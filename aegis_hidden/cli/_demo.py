"""``aegis-hidden demo``: a private Tor network and three nodes that find each other.

What ``make demo`` runs. It brings up the devnet (3 authorities, 2 relays, a
client), creates three nodes under ``./.demo/`` (each a ``twistd -n
aegis-hidden`` process whose own tor joins the devnet), shows their onion
addresses, lets each dial the others by onion address, prints who reached whom,
and tears everything down on Ctrl-C or after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ..testing import (
    NodeProcess,
    TorNetwork,
    TorNetworkError,
    prepare_node,
    set_bootstrap,
    start_node,
)
from ..tor import progress_bar
from ._common import CLIError


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="devnet + three nodes connecting over onion services")
    p.add_argument("--dir", default=".demo", help="where the demo keeps its state (./.demo)")
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (2-6, default 3)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds to run the nodes before tearing down (default 60)")
    p.add_argument("--timeout", type=float, default=240.0,
                   help="seconds to wait for the private network to bootstrap")
    p.set_defaults(func=run)


class _Stop(Exception):
    """SIGTERM: tear down like Ctrl-C."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def say(text: str) -> None:
    print(text, flush=True)


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
                reached.append(f"{m.name} ({info.get('last_direction')}, "
                               f"{info.get('rtt', 0):.2f}s)")
            else:
                complete = False
        lines.append(f"  {n.name} reached: {', '.join(reached) if reached else '(nobody yet)'}")
    return lines, complete


def run(args: argparse.Namespace) -> int:
    if not 2 <= args.nodes <= 6:
        raise CLIError("--nodes must be from 2 to 6")
    root = Path(args.dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    try:
        old = TorNetwork.load(root / "devnet")
    except TorNetworkError:
        old = None
    if old is not None and any(old.is_running(i) for i in old.instances):
        raise CLIError(f"a demo network is already running in {root}; stop it with "
                       f"'aegis-hidden devnet down --dir {root / 'devnet'}'")
    previous = signal.signal(signal.SIGTERM, _on_term)
    net = TorNetwork(root / "devnet")
    nodes: list[NodeProcess] = []
    ok = False
    try:
        say(f"[demo] starting a private Tor network in {net.directory} ...")
        net.setup()
        net.start()
        try:
            seconds = net.wait_bootstrapped(args.timeout)
        except TorNetworkError as e:
            # A fresh private network rarely never bootstraps its client (stuck at 95%,
            # no relays in its consensus): one fresh network is tried again.
            say(f"[demo] the network did not bootstrap ({str(e).splitlines()[0]}); "
                "starting a fresh one")
            net.stop()
            shutil.rmtree(net.directory, ignore_errors=True)
            net = TorNetwork(root / "devnet")
            net.setup()
            net.start()
            seconds = net.wait_bootstrapped(args.timeout)
        say(f"[demo] network up: 3 authorities, 2 relays, 1 client; bootstrapped in "
            f"{seconds:.0f}s")
        for i in range(args.nodes):
            name = f"node-{chr(ord('a') + i)}"
            shutil.rmtree(root / name, ignore_errors=True)
            nodes.append(prepare_node(net, name, root / name))
        for n in nodes:
            set_bootstrap(n, [m.onion for m in nodes if m is not n])
        for n in nodes:
            say(f"[demo] {n.name}: {n.onion}")
        for n in nodes:
            start_node(n)
        say(f"[demo] {len(nodes)} twistd nodes started; each dials the others by onion "
            f"address (running {args.duration:.0f}s, Ctrl-C to stop)")
        started = time.monotonic()
        shown_ready: set[str] = set()
        shown_bars: dict[str, str] = {}
        shown_pairs: set[tuple[str, str]] = set()
        all_reached_at: float | None = None
        while time.monotonic() - started < args.duration:
            for n in nodes:
                if not n.alive():
                    raise TorNetworkError(f"{n.name} exited; its log:\n{n.log_tail()}")
                tor = n.tor_state()
                bar = progress_bar(tor.get("bootstrap"))
                if not tor.get("ready") and tor.get("bootstrap") and shown_bars.get(n.name) != bar:
                    shown_bars[n.name] = bar
                    say(f"[demo] {n.name}: tor {bar}")
                if tor.get("ready") and n.name not in shown_ready:
                    shown_ready.add(n.name)
                    say(f"[demo] {n.name}: tor bootstrapped, onion service published "
                        f"({tor.get('published_service_id')}.onion)")
                for m in nodes:
                    info = n.peer(m.onion)
                    if m is not n and info.get("reachable") and "rtt" in info \
                            and (n.name, m.name) not in shown_pairs:
                        shown_pairs.add((n.name, m.name))
                        say(f"[demo] {n.name} reached {m.name}: X-Wing session authenticated "
                            f"{m.name}'s onion key, ping round trip {info['rtt']:.2f}s")
            if all_reached_at is None and len(shown_pairs) == len(nodes) * (len(nodes) - 1):
                all_reached_at = time.monotonic() - started
                say(f"[demo] every node reached every other one "
                    f"{all_reached_at:.1f}s after start")
            time.sleep(0.5)
        lines, ok = _matrix(nodes)
        say("[demo] who reached whom:")
        for line in lines:
            say(line)
        if not ok:
            say("[demo] not every pair connected within --duration; node logs kept in "
                f"{root}")
    except (KeyboardInterrupt, _Stop):
        say("\n[demo] interrupted")
        lines, ok = _matrix(nodes) if nodes else ([], False)
        for line in lines:
            say(line)
        ok = True  # an interrupted demo that tore down cleanly is a success
    except TorNetworkError as e:
        say(f"[demo] failed: {e}")
        ok = False
    finally:
        signal.signal(signal.SIGTERM, _on_term)  # a second TERM during teardown is ignored
        say("[demo] stopping nodes and the network ...")
        for n in nodes:
            try:
                n.stop()
            except (KeyboardInterrupt, _Stop):
                n.stop(timeout=5)
        net.stop()
        signal.signal(signal.SIGTERM, previous)
        clean = ["clean" if n.stopped_cleanly() else f"exit {n.proc.returncode if n.proc else '?'}"
                 for n in nodes]
        say(f"[demo] stopped: nodes {', '.join(clean) or '-'}, network down; state and logs "
            f"in {root}")
        if ok and not all(n.stopped_cleanly() for n in nodes):
            say("[demo] a node did not shut down cleanly; see its node.log")
            ok = False
        if ok:
            say("[demo] done")
    return 0 if ok else 1

