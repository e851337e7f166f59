"""The cost of S/Kademlia's dynamic puzzle on this machine, by difficulty.

    .venv/bin/python benchmarks/dht_puzzle.py [--seed N] [--ids N] [--bits 8,12,16,18,20]

For each difficulty, solves the puzzle (aegis_hidden.dht.solve_puzzle: the
first nonce whose SHA-256 with the id starts with that many zero bits) for
``--ids`` random node ids drawn from a seeded source, and prints the hashes
tried and the seconds per id (median, p90, mean), and the seconds one check
takes. The work is geometric: a node pays it once per start (and an attacker
once per id it places), a checker pays one hash. Seeded: the same ids, so the
same hash counts; the seconds are this machine's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis_hidden.dht import check_puzzle, solve_puzzle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ids", type=int, default=20)
    parser.add_argument("--bits", default="8,12,16,18,20")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    ids = [rng.randbytes(32) for _ in range(args.ids)]
    print(f"S/Kademlia puzzle cost, {args.ids} ids per difficulty, seed {args.seed}")
    print(f"{'bits':>5} {'hashes mean':>12} {'sec median':>11} {'sec p90':>9} {'sec mean':>9}")
    for bits in (int(b) for b in args.bits.split(",")):
        seconds, hashes = [], []
        for node_id in ids:
            t0 = time.perf_counter()
            nonce = solve_puzzle(node_id, bits)
            seconds.append(time.perf_counter() - t0)
            hashes.append(nonce + 1)
        seconds.sort()
        p90 = seconds[min(len(seconds) - 1, int(0.9 * len(seconds)))]
        print(f"{bits:>5} {statistics.mean(hashes):>12.0f} {statistics.median(seconds):>11.3f} "
              f"{p90:>9.3f} {statistics.mean(seconds):>9.3f}")
    t0 = time.perf_counter()
    for node_id in ids * 500:
        check_puzzle(node_id, 0, 16)
    check = (time.perf_counter() - t0) / (len(ids) * 500)
    print(f"one check: {check * 1e6:.1f} µs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
