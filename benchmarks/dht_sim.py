"""DHT simulation: lookups over 10,000 nodes, d = 1 against d = 4, adversaries and churn.

    nice .venv/bin/python benchmarks/dht_sim.py [--seed N] [--nodes N] [--lookups N] [--paths D]
        [--converged | --join-buckets] [--refresh N] [--join-spacing S]

Drives the real sans-I/O Kademlia core (aegis_hidden.dht: routing tables with
sibling lists, the lookup state machine, the protobuf codec) over an in-memory
network on a virtual clock (aegis_hidden.sim._dht), each core built as the
node's DhtService builds it (the node's DHT settings at their defaults, with the
candidate queue: a node that asked enters a table only once it answered that
node's check, a PING at one of its 60 s maintenance ticks, 4 at most per tick;
at each tick it also offers 2 peers it holds a session with 3 of its table
contacts, peer exchange, unless --no-exchange).
The routing tables are built by joining (a node every --join-spacing virtual
seconds, by default all within an hour, each knowing one node already in,
which seeds the lookup of its own id, then --refresh random ids; --join-buckets
adds Kademlia's refresh of every bucket farther than its closest neighbour; every node joined ticks: buckets
due for refresh, then candidate checks; the ticks go on for an hour after the
last join; --converged draws converged tables instead). Links: a request over
a warm session takes a log-normal round trip of median 0.111 s, one to a peer
without a session adds a dial of median 1.2 s
(both measured per request on the private Tor network, see
aegis_hidden/sim/_dht.py), each node keeps 50 sessions; 1 % loss per message,
30 s timeout (dht.request_timeout), k = 20, alpha = 3 per path. Node lookups end once an answer names
the target (a FIND_NODE for one node). Adversaries are a random share of the
nodes that drop every request, lie (answer with the k adversaries closest to
the target) or eclipse (answer with k Sybils ground to sit closer to the
target than the k-th honest node, which answer with one another). Success: the
target's contact was learnt. Rounds: the deepest query sent (the longest chain
of queries); msgs: requests per lookup; dials: those that needed a new session;
sec: virtual seconds per lookup. Then signed records (real Ed25519 + ML-DSA-65
signatures) with forged and replayed copies, and last 30 % churn per hour with
bucket refresh on the nodes' clocks. Same seed, same figures.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis_hidden.sim import (
    DhtNetwork,
    DhtResult,
    DhtScenario,
    ValueResult,
    dht_fingerprint,
    simulate_lookups,
    simulate_values,
)
from aegis_hidden.sim._dht import simulate_churn

HEADER = (f"   {'scenario':<32} {'success':>8} {'rounds':>7} {'r p95':>6} {'msgs':>7} "
          f"{'m p95':>6} {'dials':>6} {'timeouts':>8} {'sec med':>8} {'sec p95':>8}")


def row(r: DhtResult) -> str:
    return (f"   {r.scenario.label():<32} {r.success * 100:7.1f}% {r.rounds_median:7.1f} "
            f"{r.rounds_p95:6.0f} {r.messages_mean:7.1f} {r.messages_p95:6.0f} "
            f"{r.dials_mean:6.1f} {r.timeouts_mean:8.1f} {r.seconds_median:8.2f} "
            f"{r.seconds_p95:8.2f}")


VALUE_HEADER = (f"   {'scenario':<32} {'q':>2} {'newest':>7} {'stale':>6} {'none':>6} "
                f"{'forged refused':>15} {'replays refused':>16} {'msgs':>6} {'rounds':>6}")


def value_row(v: ValueResult) -> str:
    return (f"   {v.scenario.label():<32} {v.quorum:>2} {v.current * 100:6.1f}% "
            f"{v.stale * 100:5.1f}% {v.missing * 100:5.1f}% "
            f"{v.forged_refused:>7}/{v.forged_seen:<7} "
            f"{v.replays_refused:>8}/{v.replays_refused + v.replays_accepted:<7} "
            f"{v.messages_mean:6.1f} {v.rounds_median:6.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=300, help="lookups per scenario")
    ap.add_argument("--paths", type=int, default=4, help="the chosen d, against d = 1")
    ap.add_argument("--converged", action="store_true",
                    help="draw converged tables instead of building them by joining")
    ap.add_argument("--join-buckets", action="store_true",
                    help="joining nodes also refresh every bucket farther than their "
                         "closest neighbour (Kademlia's join; slower to build)")
    ap.add_argument("--refresh", type=int, default=2,
                    help="random lookups each node makes when it joins")
    ap.add_argument("--join-spacing", type=float, default=None,
                    help="virtual seconds between two nodes joining (default: the whole "
                         "network joins within an hour)")
    ap.add_argument("--no-exchange", action="store_true",
                    help="without peer exchange at the nodes' ticks (the node runs it)")
    ap.add_argument("--churn-window", type=float, default=600.0,
                    help="virtual seconds of churn measured")
    args = ap.parse_args()
    started = time.perf_counter()
    cpu0 = time.process_time()
    network = DhtNetwork(args.nodes, args.seed, join=not args.converged, refresh=args.refresh,
                         join_buckets=args.join_buckets, join_spacing=args.join_spacing,
                         exchange=not args.no_exchange)
    built = time.perf_counter() - started
    how = ("converged tables" if args.converged else
           f"joined one by one: own id{', non-full buckets' if args.join_buckets else ''}"
           f" and {args.refresh} random lookups, "
           f"{network.join_messages / args.nodes:.0f} requests per node, one every "
           f"{network.join_spacing:.3g} s, then an hour of ticks: {network.checks} candidate checks, "
           f"{network.refreshes} refresh lookups, peer exchange "
           + (f"{network.offers} offers ({network.offers_refused} over the receiver's rate), "
              f"{network.offered} contacts offered" if network.exchange else "off"))
    print(f"DHT simulation: {args.nodes} nodes ({how}), {args.lookups} lookups per scenario, "
          f"seed {args.seed} (tables built in {built:.1f}s)")
    sibs = sorted(len(c.table.siblings()) for c in network.cores.values())
    sizes = sorted(len(c.table) for c in network.cores.values())
    waiting = sum(len(c.candidates or ()) for c in network.cores.values())
    print(f"routing tables: median {sizes[len(sizes) // 2]} contacts (min {sizes[0]}); "
          f"sibling lists: median {sibs[len(sibs) // 2]} (min {sibs[0]}); "
          f"candidates waiting {waiting}")
    print(HEADER)
    results = []
    plan = [(0.0, "drop")] + [(f, b) for b in ("drop", "lie", "eclipse") for f in (0.1, 0.2, 0.3)]
    for n, (fraction, behaviour) in enumerate(plan):
        for paths in (1, args.paths):
            scenario = DhtScenario(fraction, behaviour, paths, lookups=args.lookups)
            r = simulate_lookups(network, scenario, args.seed * 1000 + n)
            results.append(r)
            print(row(r), flush=True)
    print()
    print("Signed records: 10 publishers each STORE sequence 1, then 2, then 1 again at the k")
    print("closest; adversaries among the holders serve a forgery (value changed after signing)")
    print("or the old record; askers verify and keep the newest of q answers.")
    print(VALUE_HEADER)
    values = []
    for n, (fraction, behaviour, paths, quorum) in enumerate([
            (0.2, "forge", 1, 1), (0.2, "forge", 1, 3), (0.3, "forge", args.paths, 3),
            (0.2, "replay", 1, 1), (0.2, "replay", 1, 3), (0.3, "replay", 1, 3),
            (0.3, "replay", args.paths, 3)]):
        scenario = DhtScenario(fraction, behaviour, paths, lookups=args.lookups)
        v = simulate_values(network, scenario, args.seed * 2000 + n, quorum=quorum)
        values.append(v)
        print(value_row(v), flush=True)
    forged = sum(v.forged_seen for v in values)
    forged_refused = sum(v.forged_refused for v in values)
    replays = sum(v.replays_refused + v.replays_accepted for v in values)
    replays_refused = sum(v.replays_refused for v in values)
    print(f"   refused: forged {forged_refused}/{forged} "
          f"({100 * forged_refused / max(1, forged):.0f}%), replayed lower-sequence STOREs "
          f"{replays_refused}/{replays} ({100 * replays_refused / max(1, replays):.0f}%)")
    print()
    print(f"Churn: 30% of the nodes leave per hour and come back after 30 min on average "
          f"(steady state), {args.churn_window:.0f} virtual seconds; every node refreshes its")
    print("stale buckets at its own phase of the hour; returning nodes look up their own id.")
    print(HEADER)
    report = simulate_churn(network, [DhtScenario(paths=p, churn=0.3, lookups=args.lookups)
                                      for p in (1, args.paths)], args.seed * 3000,
                            window=args.churn_window)
    for r in report.results:
        results.append(r)
        print(row(r), flush=True)
    print(f"   {report.offline_start} away at the start, {report.left} left, "
          f"{report.returned} came back, {report.refresh_lookups} refresh lookups, "
          f"{report.checks} candidate checks, {report.maintenance_messages} maintenance "
          f"requests")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fingerprint {dht_fingerprint(results)}/{dht_fingerprint(values)}; "
          f"wall {time.perf_counter() - started:.0f}s, CPU {time.process_time() - cpu0:.0f}s, "
          f"peak memory {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
