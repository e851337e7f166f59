"""Mixing benchmark: what the Poisson link schedule costs, in one run.

    .venv/bin/python benchmarks/mixing.py [--seconds S] [--idle-seconds S]

1. Throughput: cells sealed + opened per second through the PoissonScheduler
   and the session's record layer (one slot after another on a virtual clock
   with the reactor's own timed calls, each slot one write; burst 1 and the
   default profile's burst, 4 at balanced) against the raw record layer
   writing the same number of cells per write (the same one-cell messages,
   ``burst`` of them sealed by one ``data_to_send``, then opened), and in
   64-cell writes beside (context), interleaved in one run. Target: >= 80 %
   at the same write size; the exit status is the default profile's burst,
   and the burst 1 line says whether it meets the target too.
2. Idle cost: 100 established sessions with nothing to send, scheduled by one
   PoissonScheduler on the real reactor for ``--idle-seconds`` per profile;
   every cover cell is sealed and opened by the peer session in this process
   (the node's own sends and, as many again, what its peers' cover costs it to
   open). CPU is this process's user+system time over wall time. Socket
   writes are not included (they go to the local tor, whose cost is tor's).
   Beside: the reactor alone waking as often, the scheduler on links that seal
   nothing, and one cell sealed hot and right after a 5 ms sleep.
   Target: < 2 % of one core at balanced (the default profile).
3. Added latency: one-cell messages arriving at Poisson times at 10 %, 50 %
   and 90 % of λ on one link, per profile (virtual clock, 20,000 messages):
   time from queueing to the write that carries the message.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.base import DelayedCall
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from zope.interface import implementer

from aegis_hidden.interfaces import ICellLink
from aegis_hidden.mixing import (
    DEFAULT_PROFILE,
    PROFILES,
    ImmediateScheduler,
    PoissonScheduler,
    resolve_profile,
)
from aegis_hidden.session import MessageReceived, Session, SessionParams
from aegis_hidden.testing._sessions import memory_identity
from aegis_hidden.wire import inner_body_capacity

NOW = time.time()
BATCH = 64  # one-cell messages per round of the throughput measurement
TARGET_THROUGHPUT = 0.8  # of the raw record layer at the same write size
TARGET_IDLE = 0.02  # of one core, 100 idle links at the default profile


def session_pair(params: SessionParams) -> tuple[Session, Session]:
    alice, bob = memory_identity(NOW), memory_identity(NOW)
    i = Session(alice, params, initiator=True, clock=time.time, peer_address=bob.onion)
    r = Session(bob, params, initiator=False, clock=time.time)
    i.start()
    for _ in range(3):
        r.receive_data(i.data_to_send())
        i.receive_data(r.data_to_send())
    assert i.established and r.established
    i.events()
    r.events()
    return i, r


@implementer(ICellLink)
class SessionLink:
    """A session as a cell scheduler sees it; its writes go to ``peer.receive_data``.

    ``emit`` does what the node's link (``SessionProtocol.emit``, no trace)
    does: the closed / established / closing checks, ``seal_slot`` (the cells
    sealed, and how many were queued ones), one write. Cells are counted by the
    scheduler's stats, not here (the node's link counts nothing).
    """

    def __init__(self, session: Session, peer: Session, link_id: str) -> None:
        self.session = session
        self.peer = peer
        self.link_id = link_id
        self.closed = False
        self.close_pending: str | None = None

    def send(self, message: bytes) -> None:
        self.session.send_message(message)

    def queued(self) -> int:
        return self.session.queued()

    def emit(self, count: int, cover: int = 0) -> int:
        s = self.session
        if self.closed or not s.established:
            return 0
        if self.close_pending is not None:
            raise AssertionError("the benchmark never closes a link")
        data, sent = s.seal_slot(count, cover)
        if data:
            self.peer.receive_data(data)
        return sent


@implementer(IReactorTime)
class ReactorClock:
    """A virtual clock with the reactor's own timed-call machinery.

    ``callLater`` makes the same :class:`twisted.internet.base.DelayedCall`
    the reactor makes and keeps it in a heap, as ``ReactorBase`` does
    (``_pendingTimedCalls``, cancelled calls dropped lazily, a call reset to
    later re-queued when it comes up); :meth:`run_next` moves time to the
    earliest call and runs it, as the reactor's ``runUntilCurrent`` does once
    that time has come. task.Clock instead re-sorts its whole list on every
    ``callLater`` and ``advance``, a cost no running node pays: the
    throughput figures are measured on this clock (and on task.Clock beside).
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.heap: list[DelayedCall] = []

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, callable: Any, *args: object,
                  **kw: object) -> DelayedCall:
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        call = DelayedCall(self.now + delay, callable, args, kw, self._cancelled,
                           self._sooner, seconds=self.seconds)
        heapq.heappush(self.heap, call)
        return call

    def getDelayedCalls(self) -> list[DelayedCall]:
        return [c for c in self.heap if not c.cancelled]

    def _cancelled(self, call: DelayedCall) -> None:
        """Dropped when it reaches the top of the heap."""

    def _sooner(self, call: DelayedCall) -> None:
        heapq.heapify(self.heap)

    def run_next(self) -> None:
        """Move time to the earliest pending call and run it."""
        heap = self.heap
        while heap:
            call = heapq.heappop(heap)
            if call.cancelled:
                continue
            if call.delayed_time > 0.0:
                call.activate_delay()
                heapq.heappush(heap, call)
                continue
            self.now = max(self.now, call.time)
            call.called = 1
            call.func(*call.args, **call.kw)
            return


def stepper(clock: Clock | ReactorClock) -> Callable[[], None]:
    """What runs the clock's next pending call (task.Clock keeps its calls sorted)."""
    if isinstance(clock, ReactorClock):
        return clock.run_next

    def advance() -> None:
        clock.advance(max(0.0, clock.calls[0].getTime() - clock.seconds()))
    return advance


def step(clock: Clock | ReactorClock) -> None:
    """Run the next pending call."""
    stepper(clock)()


# -- 1. throughput ---------------------------------------------------------------------

@dataclasses.dataclass
class Throughput:
    """Seconds per cell (sealed and opened), each the best of 5 interleaved rounds."""

    sched: float  # scheduler + record layer, on the reactor's timed calls (ReactorClock)
    task: float  # the same on a task.Clock
    raw_same: float  # raw record layer, ``burst`` cells per write
    raw_bulk: float  # raw record layer, 64 cells per write


def throughput(params: SessionParams, seconds: float, burst: int) -> Throughput:
    """One-cell messages, ``BATCH`` per round, through each path; the same work on every
    side: the same messages queued by the same session, sealed by the same record layer
    and opened by the peer session, and the same check of what arrived."""
    i, r = session_pair(params)
    payload = os.urandom(inner_body_capacity(params.cell_size))
    batch = BATCH
    assert batch % burst == 0

    def arrived() -> None:
        assert sum(isinstance(e, MessageReceived) for e in r.events()) == batch

    def raw_in(cells: int) -> Any:
        send, seal, open_ = i.send_message, i.data_to_send, r.receive_data

        def raw() -> None:
            for _ in range(batch // cells):
                for _ in range(cells):
                    send(payload)
                open_(seal())
            arrived()
        return raw

    def on(clock: Clock | ReactorClock) -> Any:
        link = SessionLink(i, r, "bench")
        sched = PoissonScheduler(clock, random.Random(1), 1000.0, burst=burst)
        sched.register(link)
        run_next, slots, send = stepper(clock), batch // burst, i.send_message

        def scheduled() -> None:
            for _ in range(batch):
                send(payload)  # queued as on the raw side; the slots find them
            for _ in range(slots):  # each slot takes `burst` cells
                run_next()
            while link.queued():  # a slot went to a REKEY: rare
                run_next()
            arrived()
        return scheduled

    paths = {"sched": on(ReactorClock(NOW)), "task": on(Clock()),
             "raw_same": raw_in(burst), "raw_bulk": raw_in(batch)}

    def per_cell(fn: Any, budget: float) -> float:
        fn()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < budget:
            fn()
            n += 1
        return (time.perf_counter() - start) / (n * batch)

    best = dict.fromkeys(paths, float("inf"))
    for _ in range(5):
        for name, fn in paths.items():
            best[name] = min(best[name], per_cell(fn, seconds / 20))
    return Throughput(**best)


@implementer(ICellLink)
class NullLink:
    """A link with ``queued`` cells always queued (1: a real cell in every slot; 0: a cover
    cell) and nothing to seal: the scheduler's own cost."""

    closed = False

    def __init__(self, link_id: str = "null", queued: int = 1) -> None:
        self.link_id = link_id
        self._queued = queued

    def queued(self) -> int:
        return self._queued

    def emit(self, count: int, cover: int = 0) -> int:
        return count


def slot_overhead(seconds: float) -> tuple[float, float, float, float]:
    """Seconds per slot, with a link that seals nothing: PoissonScheduler on the
    reactor's timed calls (ReactorClock), those timed calls alone (one callLater
    and one run per slot), the same two on a task.Clock."""

    def nothing() -> None:
        return None

    def on(clock: Clock | ReactorClock) -> tuple[Any, Any]:
        sched = PoissonScheduler(clock, random.Random(1), 1000.0, burst=1)
        sched.register(NullLink())
        bare = type(clock)()

        run_next, run_bare = stepper(clock), stepper(bare)

        def scheduled(n: int) -> None:
            for _ in range(n):
                run_next()

        def clock_only(n: int) -> None:
            for _ in range(n):
                bare.callLater(0.001, nothing)
                run_bare()
        return scheduled, clock_only

    scheduled, clock_only = on(ReactorClock())
    task_scheduled, task_clock_only = on(Clock())

    def per_slot(fn: Any) -> float:
        best = float("inf")
        for _ in range(5):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 10:
                fn(1000)
                n += 1000
            best = min(best, (time.perf_counter() - start) / n)
        return best

    return (per_slot(scheduled), per_slot(clock_only), per_slot(task_scheduled),
            per_slot(task_clock_only))


# -- 2. idle CPU -----------------------------------------------------------------------

def idle_cpu(params: SessionParams, seconds: float, links: int = 100
             ) -> dict[str, tuple[float, int]]:
    """CPU share and cells per profile. Two more rows beside the default profile, run just
    before and after it: "floor", the reactor alone waking up as often as its scheduler
    does (100 x λ times a second, gaps from a seeded Random: no system call per tick),
    doing nothing; "unsealed", its scheduler on links that seal nothing (the reactor's
    wakeups and the scheduler without the record layer)."""
    from twisted.internet import reactor  # the benchmark is an entry point

    pairs = [session_pair(params) for _ in range(links)]
    results: dict[str, tuple[float, int]] = {}
    first = ["floor", DEFAULT_PROFILE, "unsealed"]
    names = first + [name for name in PROFILES if name not in first]

    def run_profile(k: int) -> None:
        if k == len(names):
            reactor.stop()
            return
        name = names[k]
        sched: Any = None
        rng = random.SystemRandom()
        stopped = [False]
        if name == "floor":
            rate, gaps = links * PROFILES[DEFAULT_PROFILE].cover_rate, random.Random(0)

            def tick() -> None:
                if not stopped[0]:
                    reactor.callLater(gaps.expovariate(rate), tick)

            tick()
        else:
            prof = PROFILES[DEFAULT_PROFILE if name == "unsealed" else name]
            if prof.cover_rate > 0:
                sched = PoissonScheduler(reactor, rng, prof.cover_rate,
                                         burst=prof.burst, constant=prof.constant,
                                         resolution=prof.resolution)
            else:
                sched = ImmediateScheduler(batch_size=prof.burst)
            for n, (a, b) in enumerate(pairs):
                sched.register(NullLink(f"l{n}", 0) if name == "unsealed"
                               else SessionLink(a, b, f"l{n}"))
        cpu0, wall0 = time.process_time(), time.perf_counter()

        def done() -> None:
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            stopped[0] = True
            if isinstance(sched, PoissonScheduler):
                sched.stop()
            for _, b in pairs:
                b.events()
            cells = sched.stats.real_cells + sched.stats.cover_cells if sched else 0
            results[name] = (cpu / wall, cells)
            run_profile(k + 1)

        reactor.callLater(seconds, done)

    reactor.callWhenRunning(run_profile, 0)
    reactor.run()
    return results


def after_sleep(params: SessionParams, rounds: int = 300) -> tuple[float, float]:
    """Seconds to seal one cell with the session's AEAD, hot (back to back) and right
    after a 5 ms sleep (what a slot's seal costs when the process wakes for it)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    plain = os.urandom(params.cell_size - 16)
    hot = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            aead.encrypt(nonce, plain, None)
        hot = min(hot, (time.perf_counter() - start) / rounds)
    total = 0.0
    for _ in range(rounds):
        time.sleep(0.005)
        start = time.perf_counter()
        aead.encrypt(nonce, plain, None)
        total += time.perf_counter() - start
    return hot, total / rounds


# -- 3. latency ------------------------------------------------------------------------

@implementer(ICellLink)
class QueueLink:
    def __init__(self, clock: Clock) -> None:
        self.link_id = "latency"
        self.closed = False
        self.clock = clock
        self.q: deque[float] = deque()
        self.delays: list[float] = []

    def queued(self) -> int:
        return len(self.q)

    def emit(self, count: int, cover: int = 0) -> int:
        n = min(count, len(self.q))
        now = self.clock.seconds()
        for _ in range(n):
            self.delays.append(now - self.q.popleft())
        return n


def latency(profile_name: str, load: float, messages: int = 20_000, seed: int = 1) -> list[float]:
    prof = PROFILES[profile_name]
    clock = Clock()
    link = QueueLink(clock)
    sched = PoissonScheduler(clock, random.Random(seed), prof.cover_rate, burst=prof.burst,
                             constant=prof.constant)
    sched.register(link)
    rng = random.Random(seed + 1)
    rate = load * prof.cover_rate
    left = [messages]

    def arrive() -> None:
        link.q.append(clock.seconds())
        left[0] -= 1
        if left[0] > 0:
            clock.callLater(rng.expovariate(rate), arrive)

    clock.callLater(rng.expovariate(rate), arrive)
    while len(link.delays) < messages:
        step(clock)
    sched.stop()
    return sorted(link.delays)


def q(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="time per throughput measurement")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="time per profile, idle CPU")
    args = ap.parse_args()
    params = dataclasses.replace(SessionParams(), compression_threshold=SessionParams().max_message_size)
    print(f"aegis-hidden mixing benchmark (cell size {params.cell_size}, {params.encryption}, "
          f"Python {sys.version.split()[0]})\n")

    default = resolve_profile(DEFAULT_PROFILE)
    target = TARGET_THROUGHPUT * 100
    print("1. throughput: one-cell messages, sealed and opened (cells/s, one core); the "
          "scheduler\n   on a virtual clock with the reactor's timed calls (ReactorClock), "
          "task.Clock in brackets;\n   against the raw record layer writing as many cells per "
          f"write as a slot carries (target >= {target:.0f} %),\n   and in {BATCH}-cell "
          "writes beside (context: what small writes cost, whoever schedules them)")
    ok = True
    met: dict[int, bool] = {}
    for burst in sorted({1, default.burst}):
        t = throughput(params, args.seconds, burst)
        share, task_share = t.raw_same / t.sched, t.raw_same / t.task
        met[burst] = share >= TARGET_THROUGHPUT
        whose = f"{DEFAULT_PROFILE}'s burst" if burst == default.burst else "strict"
        print(f"   burst {burst} ({whose}): scheduler + record layer {1 / t.sched:7.0f} "
              f"({1 / t.task:.0f}); raw in {burst}-cell writes {1 / t.raw_same:7.0f} -> "
              f"{share * 100:5.1f} % ({task_share * 100:.1f} %) "
              f"[target >= {target:.0f} %: {'met' if met[burst] else 'NOT met'}]; "
              f"raw in {BATCH}-cell writes {1 / t.raw_bulk:7.0f} -> "
              f"{t.raw_bulk / t.sched * 100:5.1f} %")
    ok = ok and met[default.burst]
    t_slot, t_clock, t_task_slot, t_task_clock = slot_overhead(args.seconds)
    print(f"   per slot, nothing sealed: scheduler + timed calls {t_slot * 1e6:.2f} µs, of which "
          f"the timed calls alone (callLater + run) {t_clock * 1e6:.2f} µs;\n   on task.Clock "
          f"{t_task_slot * 1e6:.2f} µs, of which task.Clock alone {t_task_clock * 1e6:.2f} µs\n")

    print(f"2. idle CPU, 100 links, {args.idle_seconds:g} s per profile, real reactor")
    results = idle_cpu(params, args.idle_seconds)
    floor, unsealed = results.pop("floor")[0], results.pop("unsealed")[0]
    for name in PROFILES:
        share, cells = results[name]
        prof = PROFILES[name]
        print(f"   {name:<9} λ={prof.cover_rate:<4g} {share * 100:6.2f} % of a core "
              f"({cells / args.idle_seconds:7.1f} cover cells/s sealed+opened, "
              f"{prof.cover_rate * params.cell_size / 1000:5.2f} kB/s per link, "
              f"{prof.cover_rate * params.cell_size * 100 / 1000:6.1f} kB/s per 100 links)")
    print(f"   (the reactor alone, waking {100 * PROFILES[DEFAULT_PROFILE].cover_rate:g} times a "
          f"second and doing nothing: {floor * 100:.2f} % of a core; {DEFAULT_PROFILE}'s "
          f"scheduler on links that seal nothing:\n   {unsealed * 100:.2f} %; load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    hot, cold = after_sleep(params)
    print(f"   one cell sealed (AES-GCM) back to back {hot * 1e6:.2f} µs, right after a 5 ms "
          f"sleep {cold * 1e6:.2f} µs (mean of 300)")
    idle_met = results[DEFAULT_PROFILE][0] < TARGET_IDLE
    ok = ok and idle_met
    print(f"   target: < {TARGET_IDLE * 100:g} % at {DEFAULT_PROFILE}: "
          f"{'met' if idle_met else 'NOT met'}\n")

    print("3. latency added per one-cell message (seconds), Poisson arrivals at a share of λ")
    print(f"   {'profile':<9} {'load':>5} {'mean':>7} {'p50':>7} {'p90':>7} {'p99':>7}")
    for name, prof in PROFILES.items():
        if prof.cover_rate <= 0:
            print(f"   {name:<9}  (no schedule: 0 added)")
            continue
        for load in (0.1, 0.5, 0.9):
            d = latency(name, load)
            print(f"   {name:<9} {load * 100:4.0f}% {sum(d) / len(d):7.3f} {q(d, 0.5):7.3f} "
                  f"{q(d, 0.9):7.3f} {q(d, 0.99):7.3f}")
    print(f"\nthroughput at {DEFAULT_PROFILE}'s burst {default.burst}: "
          f"{'met' if met[default.burst] else 'NOT MET'}; at burst 1: "
          f"{'met' if met[1] else 'NOT met'} (not part of the exit status); idle CPU at "
          f"{DEFAULT_PROFILE}: {'met' if idle_met else 'NOT MET'}")
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
