"""Pub/sub simulation: gossipsub with scores vs the mesh without vs flooding, under attack.

    .venv/bin/python benchmarks/pubsub_sim.py [--seed N] [--nodes N] [--publishers N]
                                              [--sybils N] [--codec] [--quick]

Drives the real sans-I/O pub/sub core (aegis_hidden.pubsub: meshes, gossip,
scores, stem/fluff) for every node, honest or Sybil, over an in-memory network
on a virtual clock (aegis_hidden.sim._pubsub; the clock and the onion-like
latency, log-normal with median 0.6 s one way, are the DHT simulation's).
One topic, every honest node subscribed; each honest node dials 8 others.
20 s of background traffic (1 message/s) let meshes and scores form, then
every publisher publishes once within 15 s, then 15 s drain.

Attacks (the gossipsub v1.1 evaluation's): Sybils are real cores that keep
everyone in their mesh and, once attacking, forward nothing (no message, no
IWANT answer) while they GRAFT and gossip. cold boot: 100 Sybils dialing 50
honest nodes each, attacking from the start; covert flash: the same Sybils
behave during the warm-up, then all stop forwarding when publishing starts;
eclipse: every Sybil dials each of 10 victims, attacking from the start.

Columns: delivery (share of message x honest subscriber pairs delivered),
victims (the same for the eclipse victims), latency p50/p99 from publish to
delivery (virtual seconds), duplicates (extra copies received per delivered
message per node), mesh (honest nodes' mean mesh size at the end; 0 when
flooding), RPCs sent per honest node, the share of honest mesh slots
Sybils hold at the end, the sessions honest nodes opened to peers offered on
PRUNE (peer exchange), and the CPU seconds of the row (not part of the
figures or the fingerprint). The second table is the first-spy estimator:
10 % of the honest nodes are spies that name the peer they first heard a
message from as its publisher. Same seed, same figures (fingerprint line).
By default RPCs are handed over as objects; --codec sends every RPC through
the protobuf codec both ways (slower; the --quick unit test does).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis_hidden.sim import (
    ATTACKS,
    PROTOCOLS,
    AnonymityResult,
    AnonymityScenario,
    PubSubResult,
    PubSubScenario,
    pubsub_fingerprint,
    simulate_anonymity,
    simulate_pubsub,
)

HEADER = (f"   {'attack':<13} {'protocol':<10} {'delivery':>9} {'victims':>8} {'p50 s':>6} "
          f"{'p99 s':>6} {'p99/none':>8} {'dup/msg':>7} {'mesh':>5} {'RPCs/node':>9} "
          f"{'Sybil slots':>11} {'PX dials':>8} {'cpu s':>6}")


def row(r: PubSubResult, baseline: float, cpu: float) -> str:
    victims = f"{r.victim_delivery * 100:7.2f}%" if r.scenario.attack == "eclipse" else "       -"
    return (f"   {r.scenario.label()} {r.delivery * 100:8.2f}% {victims} {r.latency_p50:6.2f} "
            f"{r.latency_p99:6.2f} {r.latency_p99 / baseline:7.2f}x {r.duplicates:7.2f} "
            f"{r.mesh_degree:5.1f} {r.rpcs_per_node:9.0f} {r.sybils_in_mesh * 100:10.1f}% "
            f"{r.px_dials:8d} {cpu:6.0f}")


ANON_HEADER = (f"   {'topic':<40} {'first spy names publisher':>26} {'delivery':>9} "
               f"{'p50 s':>6} {'p99 s':>6} {'cpu s':>6}")


def anon_row(a: AnonymityResult, cpu: float) -> str:
    return (f"   {a.scenario.label():<40} {a.first_spy * 100:25.1f}% {a.delivery * 100:8.2f}% "
            f"{a.latency_p50:6.2f} {a.latency_p99:6.2f} {cpu:6.0f}")


def scenarios(args: argparse.Namespace) -> tuple[list[PubSubScenario], list[AnonymityScenario]]:
    base = PubSubScenario(honest=args.nodes, publishers=args.publishers, sybils=args.sybils,
                          sybil_degree=args.sybil_degree, victims=args.victims, codec=args.codec)
    if args.quick:
        base = dataclasses.replace(base, warmup=8.0, window=4.0, drain=8.0)
    runs = [dataclasses.replace(base, attack=a, protocol=p) for a in ATTACKS for p in PROTOCOLS]
    anon = AnonymityScenario(honest=args.nodes, spies=args.spies, messages=args.publishers,
                             codec=args.codec)
    if args.quick:
        anon = dataclasses.replace(anon, warmup=8.0, window=4.0, drain=20.0)
    anons = [dataclasses.replace(anon, anonymous=False), anon,
             dataclasses.replace(anon, mix_delay=args.mix_delay)]
    return runs, anons


def _cpu() -> float:
    """CPU seconds of this process and of the worker processes it waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


T = TypeVar("T")
R = TypeVar("R")


def _timed(fn: Callable[[T, int], R], item: T, seed: int) -> tuple[R, float]:
    """``fn(item, seed)`` and the CPU seconds it took (not part of the figures)."""
    started = time.process_time()
    result = fn(item, seed)
    return result, time.process_time() - started


def _map(fn: Callable[[T, int], R], items: list[T], seeds: list[int],
         jobs: int) -> Iterator[tuple[R, float]]:
    """``fn(item, seed)`` and its CPU seconds for each item, in order; in ``jobs`` processes
    when above 1."""
    timed = functools.partial(_timed, fn)
    if jobs <= 1:
        yield from map(timed, items, seeds)
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        yield from pool.map(timed, items, seeds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=1000, help="honest nodes")
    ap.add_argument("--publishers", type=int, default=100)
    ap.add_argument("--sybils", type=int, default=100)
    ap.add_argument("--sybil-degree", type=int, default=50,
                    help="honest nodes each Sybil dials (cold boot, covert flash)")
    ap.add_argument("--victims", type=int, default=10, help="eclipse victims")
    ap.add_argument("--spies", type=float, default=0.1, help="share of spies (anonymity)")
    ap.add_argument("--mix-delay", type=float, default=0.5,
                    help="mean mixing delay per anonymous forward in the third anonymity row")
    ap.add_argument("--codec", action="store_true", help="every RPC through the protobuf codec")
    ap.add_argument("--jobs", type=int, default=1,
                    help="run the scenarios in this many processes (same figures, less wall time)")
    ap.add_argument("--part", choices=("all", "attacks", "anonymity"), default="all",
                    help="print both tables (default) or one of them")
    ap.add_argument("--quick", action="store_true",
                    help="40 nodes, 8 publishers, 8 Sybils, shorter phases (the unit test)")
    args = ap.parse_args(argv)
    if args.quick:
        args.nodes, args.publishers, args.sybils = 40, 8, 8
        args.sybil_degree, args.victims = 10, 3
    runs, anons = scenarios(args)
    started = time.perf_counter()
    results: list[PubSubResult] = []
    if args.part in ("all", "attacks"):
        print(f"Pub/sub simulation: {args.nodes} honest nodes, {args.publishers} publishers, "
              f"{args.sybils} Sybils ({args.sybil_degree} honest peers each; eclipse: "
              f"{args.victims} victims), seed {args.seed}, codec {'on' if args.codec else 'off'}")
        print(HEADER)
        baseline: dict[str, float] = {}
        seeds = [args.seed * 1000 + n % len(PROTOCOLS) for n in range(len(runs))]
        for r, cpu in _map(simulate_pubsub, runs, seeds, args.jobs):
            results.append(r)
            if r.scenario.attack == "none":
                baseline[r.scenario.protocol] = r.latency_p99
            print(row(r, baseline[r.scenario.protocol], cpu), flush=True)
        print()
    anon_results: list[AnonymityResult] = []
    if args.part in ("all", "anonymity"):
        print(f"First-spy estimator: {args.nodes} honest nodes, {args.spies * 100:.0f}% of them "
              f"spies; {anons[0].messages} messages from honest publishers, seed {args.seed}")
        print(ANON_HEADER)
        seeds = [args.seed * 2000 + n for n in range(len(anons))]
        for ar, cpu in _map(simulate_anonymity, anons, seeds, args.jobs):
            anon_results.append(ar)
            print(anon_row(ar, cpu), flush=True)
    peak = max(resource.getrusage(who).ru_maxrss
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(f"fingerprint {pubsub_fingerprint(results)}/{pubsub_fingerprint(anon_results)}; "
          f"wall {time.perf_counter() - started:.0f}s, cpu {_cpu():.0f}s, "
          f"peak memory {peak:.0f} MiB (largest process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
