"""The fuzz campaign: every target in :mod:`fuzz.targets`, N inputs each.

``python -m fuzz.run [--runs N] [--seed S] [--jobs J] [--engine atheris|random] [TARGET ...]``

Each target runs in its own process (atheris/libFuzzer owns the process it runs
in). The engine is atheris (coverage-guided libFuzzer, the package's modules
instrumented) when it imports, else a seeded ``random.Random`` mutator over the
same seeds (byte flips, inserts, deletions, truncation, splicing, interesting
bytes). A crash (anything but the decoder's typed errors) is counted, the
smallest input per distinct error is written to ``--out`` and the campaign goes
on. One line per target: inputs, seconds, crashes. Exit status 1 if any crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DEFAULT_RUNS = 1_000_000
_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, ord("\n"), ord('"'), ord("["), ord("{"), ord("\\")]


class _Recorder:
    """Counts inputs, keeps the smallest reproducer per distinct crash."""

    def __init__(self, name: str, run: Callable[[bytes], None], runs: int, out: Path,
                 report: Path) -> None:
        self.name, self.run, self.runs, self.out, self.report = name, run, runs, out, report
        self.inputs = 0
        self.crashes = 0
        self.smallest: dict[str, bytes] = {}
        self.started = time.monotonic()

    def __call__(self, data: bytes) -> None:
        self.inputs += 1
        try:
            self.run(data)
        except Exception as e:  # noqa: BLE001 - anything but the typed errors is a crash
            self.crashes += 1
            tb = traceback.extract_tb(e.__traceback__)
            where = tb[-1] if tb else None
            key = f"{type(e).__name__}@{where.filename}:{where.lineno}" if where else type(e).__name__
            best = self.smallest.get(key)
            if best is None or len(data) < len(best):
                self.smallest[key] = data
                self.out.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256(data).hexdigest()[:16]
                (self.out / f"{self.name}-{digest}.bin").write_bytes(data)
                (self.out / f"{self.name}-{digest}.txt").write_text(
                    f"{key}\n{data!r}\n\n" + "".join(traceback.format_exception(e)))
        if self.inputs >= self.runs:
            self.finish()

    def finish(self) -> None:
        self.report.write_text(json.dumps({
            "target": self.name, "inputs": self.inputs, "crashes": self.crashes,
            "seconds": round(time.monotonic() - self.started, 1),
            "distinct": {k: v.hex() for k, v in self.smallest.items()}}))
        sys.stdout.flush()
        os._exit(0)


def _mutate(rng: random.Random, data: bytes, corpus: list[bytes], max_len: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start:start + rng.randint(1, 64)]
        else:
            buf[pos:pos] = bytes([rng.choice(_INTERESTING)]) * rng.randint(1, 4)
    return bytes(buf[:max_len])


def _child(name: str, runs: int, seed: int, engine: str, out: Path, report: Path) -> None:
    if engine == "atheris":
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

        with atheris.instrument_imports(include=["aegis_hidden"]):
            from fuzz.targets import TARGETS
    else:
        from fuzz.targets import TARGETS
    target = TARGETS[name]
    seeds = target.seeds()
    recorder = _Recorder(name, target.run, runs, out, report)
    if engine == "atheris":
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

        corpus = Path(tempfile.mkdtemp(prefix=f"aegis-fuzz-{name}-"))
        for i, s in enumerate(seeds):
            (corpus / f"seed{i}").write_bytes(s)
        atheris.Setup([sys.argv[0], f"-seed={seed}", f"-runs={runs * 2 + 1000}",
                       f"-max_len={target.max_len}", "-print_final_stats=0",
                       "-close_fd_mask=0", str(corpus)], recorder)
        atheris.Fuzz()
        recorder.finish()  # libFuzzer stopped early (should not happen)
    rng = random.Random(f"{seed}:{name}")
    corpus_list = list(seeds)
    for s in seeds:
        recorder(s)
    while True:
        if rng.random() < 0.05:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            data = _mutate(rng, rng.choice(corpus_list), corpus_list, target.max_len)
        recorder(data)


def _run_target(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        report = Path(f.name)
    cmd = [sys.executable, "-m", "fuzz.run", "--child", name, "--runs", str(args.runs),
           "--seed", str(args.seed), "--engine", args.engine, "--out", str(out),
           "--report", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        result: dict[str, Any] = json.loads(report.read_text())
    except (OSError, ValueError):
        result = {"target": name, "inputs": 0, "crashes": 1, "seconds": 0.0,
                  "distinct": {f"process exited {proc.returncode}": ""},
                  "stderr": proc.stderr[-2000:]}
    report.unlink(missing_ok=True)
    return result


def _engine_default() -> str:
    try:
        import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return "random"
    return "atheris"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    p.add_argument("targets", nargs="*", help="target names (default: all)")
    p.add_argument("--runs", type=int, default=int(os.environ.get("FUZZ_RUNS", DEFAULT_RUNS)))
    p.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 1)))
    p.add_argument("--jobs", type=int, default=int(os.environ.get("FUZZ_JOBS", 1)))
    p.add_argument("--engine", choices=["atheris", "random"],
                   default=os.environ.get("FUZZ_ENGINE") or _engine_default())
    p.add_argument("--out", type=Path, default=Path(os.environ.get("FUZZ_OUT", "fuzz/crashes")))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.runs, args.seed, args.engine, args.out, args.report)
        return 0
    from fuzz.targets import TARGETS

    names = args.targets or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        p.error(f"unknown target(s) {', '.join(unknown)}; one of {', '.join(TARGETS)}")
    print(f"fuzz: engine {args.engine}, {args.runs:,} inputs per target, seed {args.seed}, "
          f"{args.jobs} job(s)", flush=True)
    print(f"{'target':20s} {'inputs':>11s} {'seconds':>9s} {'crashes':>8s}", flush=True)
    failed = False
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for r in pool.map(lambda n: _run_target(n, args, args.out), names):
            print(f"{r['target']:20s} {r['inputs']:>11,d} {r['seconds']:>9.1f} {r['crashes']:>8d}",
                  flush=True)
            for key, hexdata in r["distinct"].items():
                print(f"    crash {key}: {bytes.fromhex(hexdata)[:200]!r}", flush=True)
            if r.get("stderr"):
                print("    " + r["stderr"].replace("\n", "\n    "), flush=True)
            failed = failed or r["crashes"] > 0
    print(f"fuzz: {len(names)} targets in {time.monotonic() - started:.0f}s, "
          f"{'CRASHES (reproducers in ' + str(args.out) + ')' if failed else 'no crashes'}",
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
