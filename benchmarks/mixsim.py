"""Mixing simulation: sender anonymity of forwarded messages per profile, in one run.

    .venv/bin/python benchmarks/mixsim.py [--seed N] [--measure SECONDS] [--ground-truth FILE]

Loopix's evaluation setup (Piotrowska et al. 2017, §4.3): 100 senders, a
stratified network of 3 layers x 3 forwarding nodes, every hop a link run by
the real PoissonScheduler and every node holding what it forwards in the real
MixPool, on a task.Clock (aegis_hidden.sim). The adversary watches every link
and is told which cells are real (Loopix's conservative choice); H is the
entropy of its distribution over the 100 senders for a message leaving the
last layer, 2^H the effective anonymity set (at most 100, H at most 6.64
bits); ε = |ln(p0/p1)| is Loopix's own metric for two challenge senders
(0 = the adversary cannot tell them apart).

1. Per profile, two workloads: each sender sends a one-cell message every
   20 s on average (0.05 msg/s), then every 5 s (0.2 msg/s). A link between
   two forwarding nodes carries 100 x rate / 9 cells/s (0.56 and 2.2): where
   that exceeds what the profile's link can carry (burst x λ) queues grow and
   the latency column shows it.
2. Loopix's evaluation point: λ = 2 cells/s on each sender's links, each
   sender at 1 msg/s (50 % load, the rate of Loopix's challenge senders), μ
   swept over 0.5, 1, 2 (λ/μ = 4, 2, 1; Loopix's Figure 5 plots ε over the
   same range). Loopix's mixes forward with no link schedule; here the links
   between forwarding nodes run at λ = 20 (their load is 11 cells/s).

Same seed, same figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis_hidden.mixing import PROFILES, resolve_profile
from aegis_hidden.sim import MixnetResult, MixnetScenario, simulate


def row(label: str, r: MixnetResult) -> str:
    return (f"   {label:<22} {r.entropy_mean:6.3f} {r.anonymity_set:7.1f} {r.entropy_p10 + 0.0:7.3f} "
            f"{r.epsilon_median:8.3f} {r.linked * 100:6.1f} % {r.latency_mean:8.2f} "
            f"{r.latency_p90:8.2f} {r.cells_per_link_per_second:7.2f} {r.real_share * 100:6.1f} %"
            f" {r.measured:7d}")


HEADER = (f"   {'':<22} {'H bits':>6} {'2^H':>7} {'H p10':>7} {'ε med':>8} {'ε=∞':>8} "
          f"{'lat mean':>8} {'lat p90':>8} {'cells/s':>7} {'real':>8} {'msgs':>7}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--measure", type=float, default=200.0, help="seconds of measured sending")
    ap.add_argument("--ground-truth", type=Path, metavar="FILE",
                    help="also write the ground truth of the balanced profile at 0.2 msg/s "
                         "(one JSON line per measured message) for 'aegis-hidden audit report'")
    args = ap.parse_args()
    started = time.perf_counter()
    base = MixnetScenario(PROFILES["balanced"], burn_in=100.0, measure=args.measure, drain=60.0)
    print(f"aegis-hidden mixing simulation: {base.senders} senders, {base.layers} layers x "
          f"{base.width} nodes, seed {args.seed}, {base.burn_in:g} s burn-in, "
          f"{args.measure:g} s measured (virtual time)\n")
    for n, rate in enumerate((0.05, 0.2), 1):
        print(f"1.{n} per profile, {rate:g} messages/s per sender")
        print(HEADER)
        for name, prof in PROFILES.items():
            scenario = dataclasses.replace(base, profile=prof, message_rate=rate)
            if args.ground_truth and name == "balanced" and rate == 0.2:
                with args.ground_truth.open("w", encoding="utf-8") as gt:
                    r = simulate(scenario, args.seed, ground_truth=gt)
            else:
                r = simulate(scenario, args.seed)
            print(row(f"{name} (λ={prof.cover_rate:g} μ={prof.mix_rate:g})", r))
        print()
    print("2. Loopix's evaluation point: λ = 2, 1 message/s per sender (50 % load)")
    print(HEADER)
    for mu in (0.5, 1.0, 2.0):
        prof = resolve_profile("balanced", cover_rate=2.0, mix_rate=mu, burst=4)
        r = simulate(dataclasses.replace(base, profile=prof, message_rate=1.0,
                                         node_link_rate=20.0), args.seed)
        print(row(f"μ={mu:g} (λ/μ={2 / mu:g})", r))
    print(f"\n(H: mean over measured messages; 2^H: effective anonymity set; ε med: median over "
          f"the two challenge senders' messages;\n ε=∞: share of those messages for which the "
          f"adversary rules one of the two out; latency: send to leaving the last layer,\n "
          f"seconds; cells/s: per link, real + cover; {time.perf_counter() - started:.0f} s wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
