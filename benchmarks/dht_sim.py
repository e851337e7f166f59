"""DHT simulation: lookups over 10,000 nodes with and without adversaries, d=1 and d=4.

    .venv/bin/python benchmarks/dht_sim.py [--seed N] [--nodes N] [--lookups N] [--join [--refresh N]]

Drives the real sans-I/O Kademlia core (aegis_hidden.dht: routing tables,
the lookup state machine, the protobuf codec) over an in-memory network on a
virtual clock (aegis_hidden.sim._dht): one-way delay log-normal with median
0.6 s (an onion-service hop; not yet measured on the private Tor network),
1 % loss per message, 10 s timeout, k = 20, α = 3 per path. Adversaries are a
random share of the nodes that drop every request, lie (answer with the k
adversaries closest to the target) or eclipse (answer with k Sybils whose
keys were ground to sit closer to the target than the k-th honest node, and
which answer with one another). Success: the target's contact was learnt.
Rounds: the longest chain of queries; messages: requests sent per lookup;
seconds: virtual time per lookup. The second table looks up signed records
(real Ed25519 + ML-DSA-65 signatures, verified by the asker's core) held by
the k closest nodes, some of them adversaries serving forgeries or replays.
Same seed, same figures (the fingerprint line shows it at a glance).
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

HEADER = (f"   {'scenario':<32} {'success':>8} {'rounds':>7} {'r p95':>6} {'msgs':>7} "
          f"{'m p95':>6} {'timeouts':>8} {'sec med':>8} {'sec p95':>8}")


def row(r: DhtResult) -> str:
    return (f"   {r.scenario.label():<32} {r.success * 100:7.1f}% {r.rounds_median:7.1f} "
            f"{r.rounds_p95:6.0f} {r.messages_mean:7.1f} {r.messages_p95:6.0f} "
            f"{r.timeouts_mean:8.1f} {r.seconds_median:8.1f} {r.seconds_p95:8.1f}")


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
    ap.add_argument("--join", action="store_true",
                    help="build the tables by joining (each node knows one, looks up its own "
                         "id and --refresh random ids) instead of drawing converged tables")
    ap.add_argument("--refresh", type=int, default=2,
                    help="random lookups each node makes when it joins (with --join)")
    args = ap.parse_args()
    started = time.perf_counter()
    network = DhtNetwork(args.nodes, args.seed, join=args.join, refresh=args.refresh)
    built = time.perf_counter() - started
    how = (f"joined one by one, {args.refresh} refresh lookups, "
           f"{network.join_messages / args.nodes:.0f} requests per join"
           if args.join else "converged tables")
    print(f"DHT simulation: {args.nodes} nodes ({how}), {args.lookups} lookups per scenario, "
          f"seed {args.seed} (tables built in {built:.1f}s)")
    print(HEADER)
    results = []
    for n, (fraction, behaviour) in enumerate([(0.0, "drop"), (0.1, "drop"), (0.2, "drop"),
                                               (0.3, "drop"), (0.1, "lie"), (0.2, "lie"),
                                               (0.3, "lie"), (0.5, "lie"), (0.1, "eclipse"),
                                               (0.2, "eclipse"), (0.3, "eclipse")]):
        for paths in (1, 4):
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
            (0.2, "forge", 1, 1), (0.2, "forge", 1, 3), (0.2, "replay", 1, 1),
            (0.2, "replay", 1, 3), (0.3, "replay", 1, 3), (0.3, "replay", 4, 3)]):
        scenario = DhtScenario(fraction, behaviour, paths, lookups=args.lookups)
        v = simulate_values(network, scenario, args.seed * 2000 + n, quorum=quorum)
        values.append(v)
        print(value_row(v), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fingerprint {dht_fingerprint(results)}/{dht_fingerprint(values)}; "
          f"wall {time.perf_counter() - started:.0f}s, peak memory {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
