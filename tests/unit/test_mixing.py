"""The mixing layer on task.Clock: Poisson slots, one timer, mix delays, loops, profiles, traces."""

from __future__ import annotations

import io
import itertools
import json
import random
from collections import deque
from collections.abc import Callable

import pytest
from scipy import stats
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from aegis_hidden.config import ConfigError, parse_config
from aegis_hidden.interfaces import ICellLink, ICellScheduler, ITraceSink
from aegis_hidden.mixing import (
    PROFILES,
    QUEUE_DELAY_BUCKETS,
    ImmediateScheduler,
    JsonLinesTraceSink,
    LoopCover,
    LoopMonitor,
    LostLoop,
    MixPool,
    PoissonScheduler,
    metrics_snapshot,
    mix_pool_from_config,
    profile_from_config,
    read_trace,
    resolve_profile,
    scheduler_from_config,
)

P_MIN = 0.01
N_CELLS = 10_000


@implementer(ICellLink)
class FakeLink:
    """Records every write: (time, real cell numbers, cover count)."""

    def __init__(self, clock: Clock, link_id: str = "link-1") -> None:
        self.clock = clock
        self.link_id = link_id
        self.closed = False
        self.cells: deque[int] = deque()
        self.writes: list[tuple[float, list[int], int]] = []
        self.sent = 0  # real cells written
        self._next = 0

    def queue(self, n: int = 1) -> None:
        for _ in range(n):
            self.cells.append(self._next)
            self._next += 1

    def queued(self) -> int:
        return len(self.cells)

    def emit(self, count: int, cover: int = 0) -> int:
        taken = [self.cells.popleft() for _ in range(min(count, len(self.cells)))]
        self.writes.append((self.clock.seconds(), taken, cover))
        self.sent += len(taken)
        return len(taken)

    def real(self) -> list[int]:
        return [c for _, cells, _ in self.writes for c in cells]

    def gaps(self) -> list[float]:
        times = [t for t, _, _ in self.writes]
        return [b - a for a, b in itertools.pairwise(times)]


def step_until(clock: Clock, done: Callable[[], bool], limit: float = 1e7) -> None:
    """Advance the clock to each pending call in turn (never past one), until ``done()``."""
    while not done():
        calls = clock.getDelayedCalls()
        assert calls, "nothing scheduled"
        when = min(c.getTime() for c in calls)
        assert when < limit, "ran past the time limit"
        clock.advance(max(0.0, when - clock.seconds()))


def poisson_arrivals(clock: Clock, rng: random.Random, rate: float,
                     on_arrival: Callable[[], None]) -> None:
    """Call ``on_arrival`` at Poisson times (one chained DelayedCall: the workload, not the scheduler)."""

    def fire() -> None:
        on_arrival()
        clock.callLater(rng.expovariate(rate), fire)

    clock.callLater(rng.expovariate(rate), fire)


def ks_exp(gaps: list[float], rate: float) -> float:
    return float(stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue)


# -- PoissonScheduler ------------------------------------------------------------------

def test_poisson_scheduler_provides_the_interface() -> None:
    clock = Clock()
    sched = PoissonScheduler(clock, random.Random(1), 2.0)
    assert verifyObject(ICellScheduler, sched)
    assert verifyObject(ICellLink, FakeLink(clock))
    assert verifyObject(ICellScheduler, ImmediateScheduler())


def test_idle_link_departures_pass_ks_against_exp_lambda() -> None:
    clock, lam = Clock(), 2.0
    link = FakeLink(clock)
    sched = PoissonScheduler(clock, random.Random(11), lam)
    sched.register(link)
    step_until(clock, lambda: len(link.writes) > N_CELLS)
    assert all(cover == 1 and not cells for _, cells, cover in link.writes)
    assert ks_exp(link.gaps(), lam) >= P_MIN
    assert sched.stats.cover_cells == len(link.writes)


def test_half_load_departures_pass_ks_and_every_real_cell_goes_once_in_order() -> None:
    clock, lam = Clock(), 2.0
    link = FakeLink(clock)
    sched = PoissonScheduler(clock, random.Random(12), lam, burst=1)
    sched.register(link)

    def arrive() -> None:
        link.queue()
        sched.notify(link)

    poisson_arrivals(clock, random.Random(13), lam / 2, arrive)
    step_until(clock, lambda: len(link.writes) > N_CELLS)
    real = link.real()
    assert 0.4 < len(real) / len(link.writes) < 0.6  # about 50 % of slots carry real cells
    assert real == list(range(len(real)))  # each once, in order
    assert len(real) + link.queued() == link._next  # none lost
    assert all(len(cells) + cover == 1 for _, cells, cover in link.writes)
    assert ks_exp(link.gaps(), lam) >= P_MIN


def test_immediate_off_profile_fails_the_same_ks_test() -> None:
    """Positive control: without a schedule, writes follow the application and fail KS."""
    clock, lam = Clock(), 2.0
    link = FakeLink(clock)
    cfg = parse_config({"mixing": {"profile": "off"}})
    sched = scheduler_from_config(cfg, clock, random.Random(14))
    assert isinstance(sched, ImmediateScheduler)
    sched.register(link)
    rng = random.Random(15)

    def arrive() -> None:  # messages of 1 to 4 cells, on average 50 % of λ in cells
        link.queue(rng.randint(1, 4))
        sched.notify(link)

    poisson_arrivals(clock, random.Random(16), lam / 2 / 2.5, arrive)
    step_until(clock, lambda: link.sent > N_CELLS)
    assert link.real() == list(range(len(link.real())))
    assert ks_exp(link.gaps(), lam) < P_MIN
    # Idle, it sends nothing at all: an idle link and a busy one look different.
    idle = FakeLink(clock, "idle")
    sched.register(idle)
    clock.advance(100)
    assert idle.writes == []


def test_schedule_does_not_depend_on_load_never_faster() -> None:
    """Same seed, idle and with a deep backlog: the write times are identical."""
    def run(backlog: int) -> list[float]:
        clock = Clock()
        link = FakeLink(clock)
        link.queue(backlog)
        sched = PoissonScheduler(clock, random.Random(21), 2.0, burst=1)
        sched.register(link)
        step_until(clock, lambda: len(link.writes) >= 500)
        return [t for t, _, _ in link.writes]

    assert run(0) == run(10_000)


def test_burst_is_bounded_per_slot() -> None:
    clock = Clock()
    link = FakeLink(clock)
    sched = PoissonScheduler(clock, random.Random(22), 2.0, burst=4)
    sched.register(link)
    link.queue(10)
    step_until(clock, lambda: len(link.writes) >= 4)
    assert [len(cells) for _, cells, _ in link.writes[:4]] == [4, 4, 2, 0]
    assert link.writes[3][2] == 1  # the backlog gone, the next slot is cover
    assert sched.stats.burst_slots == 3


def test_a_slot_spent_on_a_control_cell_is_one_write() -> None:
    """The record layer may spend a slot on a REKEY (emit returns 0): no cover follows it."""
    clock = Clock()
    link = FakeLink(clock)
    rekey_due = [True]
    real_emit = link.emit

    def emit(count: int, cover: int = 0) -> int:
        if rekey_due[0] and count:
            rekey_due[0] = False
            link.writes.append((clock.seconds(), [], 0))  # the REKEY cell
            return 0
        return real_emit(count, cover)

    link.emit = emit  # type: ignore[method-assign]
    sched = PoissonScheduler(clock, random.Random(26), 2.0)
    sched.register(link)
    link.queue(1)
    step_until(clock, lambda: len(link.writes) >= 3)
    times = [t for t, _, _ in link.writes]
    assert len(set(times)) == len(times)  # one write per slot
    assert link.writes[1][1] == [0]


def test_one_timer_for_a_hundred_links() -> None:
    clock = Clock()
    sched = PoissonScheduler(clock, random.Random(23), 2.0)
    links = [FakeLink(clock, f"l{i}") for i in range(100)]
    for link in links:
        sched.register(link)
    assert len(clock.getDelayedCalls()) == 1
    step_until(clock, lambda: clock.seconds() > 50)
    assert len(clock.getDelayedCalls()) == 1
    per_link = [len(link.writes) for link in links]
    assert min(per_link) > 50 and sum(per_link) == sched.stats.slots  # ~100 each at λ = 2
    for link in links[:50]:
        sched.unregister(link)
    links[50].closed = True
    before = [len(link.writes) for link in links]
    step_until(clock, lambda: clock.seconds() > 100)
    after = [len(link.writes) for link in links]
    assert before[:51] == after[:51]  # unregistered and closed links get no more slots
    assert all(a > b for a, b in zip(after[51:], before[51:], strict=True))
    assert sched.links == 49
    sched.stop()
    assert clock.getDelayedCalls() == []


def test_a_late_reactor_skips_missed_slots_instead_of_a_clump() -> None:
    clock = Clock()
    link = FakeLink(clock)
    sched = PoissonScheduler(clock, random.Random(24), 2.0)
    sched.register(link)
    clock.advance(1000.0)  # a stall of 2000 mean gaps
    assert len(link.writes) == 1
    assert sched.stats.late_slots == 1
    step_until(clock, lambda: len(link.writes) >= 3)
    assert link.writes[1][0] > 1000.0


def test_constant_rate_slots() -> None:
    clock = Clock()
    link = FakeLink(clock)
    sched = PoissonScheduler(clock, random.Random(25), 10.0, constant=True)
    sched.register(link)
    step_until(clock, lambda: len(link.writes) >= 100)
    assert all(abs(g - 0.1) < 1e-9 for g in link.gaps())


def test_timer_resolution_rounds_slots_up_never_early() -> None:
    exact, coarse = Clock(), Clock()
    a, b = FakeLink(exact), FakeLink(coarse)
    PoissonScheduler(exact, random.Random(28), 2.0).register(a)
    PoissonScheduler(coarse, random.Random(28), 2.0, resolution=0.01).register(b)
    step_until(exact, lambda: len(a.writes) >= 200)
    step_until(coarse, lambda: len(b.writes) >= 200)
    for (t_exact, _, _), (t_coarse, _, _) in zip(a.writes, b.writes, strict=False):
        assert t_exact - 1e-9 <= t_coarse < t_exact + 0.01 + 1e-9
        assert abs(t_coarse / 0.01 - round(t_coarse / 0.01)) < 1e-6


def test_queue_delay_histogram_and_metrics_snapshot() -> None:
    clock = Clock()
    link = FakeLink(clock)
    sched = PoissonScheduler(clock, random.Random(29), 2.0, burst=1)
    sched.register(link)
    queued_at: deque[float] = deque()

    def arrive() -> None:
        link.queue()
        queued_at.append(clock.seconds())
        sched.notify(link)

    poisson_arrivals(clock, random.Random(30), 1.0, arrive)
    step_until(clock, lambda: link.sent >= 2000)
    waits = [t - queued_at.popleft() for t, cells, _ in link.writes for _ in cells]
    st = sched.stats
    assert sum(st.queue_delay_counts) == len(waits) == st.real_cells
    assert abs(st.queue_delay_sum - sum(waits)) < 1e-6
    expected = [0] * (len(QUEUE_DELAY_BUCKETS) + 1)
    for w in waits:
        expected[sum(1 for b in QUEUE_DELAY_BUCKETS if w > b)] += 1
    assert st.queue_delay_counts == expected

    # Cells queued without a notify are counted from the slot that finds them.
    quiet = FakeLink(clock, "quiet")
    sched.register(quiet)
    quiet.queue(3)
    before = st.real_cells
    step_until(clock, lambda: quiet.queued() == 0)
    assert sum(st.queue_delay_counts) == st.real_cells >= before + 3

    mon = LoopMonitor(clock, random.Random(31), timeout=5.0)
    loop = mon.create("path-x")
    clock.advance(1.0)
    mon.returned(loop)
    pool: MixPool[int] = MixPool(clock, random.Random(32), 1.0, lambda i: None)
    pool.add(1)
    snap = metrics_snapshot(PROFILES["balanced"], scheduler=sched, loops=mon, pool=pool)
    assert snap["profile"] == "balanced" and snap["cover_rate"] == 2.0
    assert snap["cover_cells_sent"] == st.cover_cells
    assert snap["queue_delay_buckets"][-1] == (float("inf"), st.real_cells)
    assert snap["loops_returned"] == 1 and snap["loop_rtt_mean"] == 1.0
    assert snap["pool_waiting"] == 1 and snap["links"] == 2
    assert "path-x" not in json.dumps(snap) and "quiet" not in json.dumps(snap)


def test_scheduler_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate"):
        PoissonScheduler(Clock(), random.Random(), 0.0)
    with pytest.raises(ValueError, match="burst"):
        PoissonScheduler(Clock(), random.Random(), 1.0, burst=0)


def test_scheduler_traces_each_cell() -> None:
    clock = Clock()
    out = io.StringIO()
    sink = JsonLinesTraceSink(out, clock, random.Random(26))
    link = FakeLink(clock, "secret-peer-link")
    sched = PoissonScheduler(clock, random.Random(27), 2.0, trace=sink)
    sched.register(link)
    link.queue(2)
    step_until(clock, lambda: len(link.writes) >= 5)
    lines = read_trace(io.StringIO(out.getvalue()))
    assert [r["kind"] for r in lines] == ["real", "real", "cover", "cover", "cover"]
    assert all(r["dir"] == "out" and r["size"] == 996 for r in lines)
    assert "secret" not in out.getvalue()



@implementer(ITraceSink)
class _CountingSink:
    def __init__(self) -> None:
        self.records = 0

    def record(self, at: float, link: str, direction: str, size: int, kind: str) -> None:
        self.records += 1


class _OrderedLink(FakeLink):
    """A FakeLink that also notes, in one list for all links, which link wrote when."""

    def __init__(self, clock: Clock, link_id: str, order: list[tuple[float, str]]) -> None:
        super().__init__(clock, link_id)
        self.order = order

    def emit(self, count: int, cover: int = 0) -> int:
        self.order.append((self.clock.seconds(), self.link_id))
        return super().emit(count, cover)


@pytest.mark.parametrize("constant", [False, True])
def test_inline_slots_and_traced_slots_keep_one_schedule(constant: bool) -> None:
    """The inline path (no trace, no cap) and the per-slot path (a trace) write at the
    same times, the same cells, for the same seed: many links, arrivals with and
    without a notify, a link that closes, a reactor that stalls (constant gaps: the
    re-anchored links then tie, and keep the order they were re-anchored in)."""

    def run(traced: bool) -> tuple[object, ...]:
        clock = Clock()
        sink = _CountingSink()
        sched = PoissonScheduler(clock, random.Random(41), 5.0, burst=3, constant=constant,
                                 trace=sink if traced else None)
        order: list[tuple[float, str]] = []
        links = [_OrderedLink(clock, f"l{k}", order) for k in range(12)]
        for link in links:
            sched.register(link)
        rng = random.Random(42)
        for n in range(3000):
            clock.advance(rng.expovariate(40.0) + (30.0 if n % 700 == 699 else 0.0))
            link = rng.choice(links)
            link.queue(rng.randint(1, 4))
            if rng.random() < 0.7:
                sched.notify(link)
            if n == 1500:
                links[3].closed = True
        clock.advance(60.0)
        st = sched.stats
        assert st.late_slots > 0 and st.burst_slots > 0 and st.cover_cells > 0
        assert not traced or sink.records == st.real_cells + st.cover_cells
        return (order, [link.writes for link in links], st.slots, st.real_cells,
                st.cover_cells, st.burst_slots, st.late_slots, st.queue_delay_counts)

    inline, traced = run(False), run(True)
    assert inline == traced


# -- MixPool ---------------------------------------------------------------------------

def test_mix_pool_delays_are_exp_mu() -> None:
    clock, mu = Clock(), 1.0
    released: list[tuple[int, float]] = []
    pool: MixPool[int] = MixPool(clock, random.Random(31), mu,
                                 lambda item: released.append((item, clock.seconds())))
    added: dict[int, float] = {}
    n = [0]

    def arrive() -> None:
        added[n[0]] = clock.seconds()
        pool.add(n[0])
        n[0] += 1

    poisson_arrivals(clock, random.Random(32), 5.0, arrive)
    step_until(clock, lambda: len(released) >= N_CELLS)
    assert len(clock.getDelayedCalls()) <= 2  # the pool's one timer + the workload's
    assert len({item for item, _ in released}) == len(released)  # each once
    delays = [t - added[item] for item, t in released]
    assert ks_exp(delays, mu) >= P_MIN
    # Reordered: stop-and-go does not keep arrival order.
    assert [item for item, _ in released] != sorted(item for item, _ in released)


def test_mix_pool_without_delay_fails_ks() -> None:
    clock = Clock()
    released: list[int] = []
    pool: MixPool[int] = MixPool(clock, random.Random(33), 0.0, released.append)
    for i in range(100):
        pool.add(i)
    assert released == list(range(100)) and clock.getDelayedCalls() == []


def test_mix_pool_timed_batches() -> None:
    clock = Clock()
    released: list[tuple[int, float]] = []
    pool: MixPool[int] = MixPool(clock, random.Random(34), 2.0,
                                 lambda item: released.append((item, clock.seconds())),
                                 batch_size=1000, batch_interval=0.5)
    for i in range(200):
        pool.add(i)
    step_until(clock, lambda: len(released) == 200)
    times = {t for _, t in released}
    assert all(abs(t / 0.5 - round(t / 0.5)) < 1e-6 for t in times)  # only on ticks
    assert pool.stats.batches == len(times) and pool.stats.batches < 200
    assert sorted(i for i, _ in released) == list(range(200))
    assert len(clock.getDelayedCalls()) == 0  # idle: no timer at all


def test_mix_pool_batch_leaves_when_full() -> None:
    clock = Clock()
    released: list[int] = []
    pool: MixPool[int] = MixPool(clock, random.Random(35), 0.0, released.append,
                                 batch_size=3, batch_interval=10.0)
    pool.add(1)
    pool.add(2)
    clock.advance(0)
    assert released == []
    pool.add(3)
    clock.advance(0)
    assert sorted(released) == [1, 2, 3] and clock.seconds() == 0


# -- loops -----------------------------------------------------------------------------

def test_a_dropped_loop_is_detected_and_a_returned_one_measured() -> None:
    clock = Clock()
    mon = LoopMonitor(clock, random.Random(41), timeout=10.0)
    lost: list[LostLoop] = []
    rtts: list[tuple[str, float]] = []
    mon.add_lost_listener(lost.append)
    mon.add_return_listener(lambda path, rtt: rtts.append((path, rtt)))
    good, bad = mon.create("path-a"), mon.create("path-b")
    assert good != bad and len(good) == 16
    clock.advance(2.5)
    assert mon.returned(good) == 2.5
    clock.advance(7.5)
    assert mon.expire() == []  # exactly at the deadline is still in time
    clock.advance(0.1)
    assert [x.path for x in mon.expire()] == ["path-b"]
    assert [x.loop_id for x in lost] == [bad] and rtts == [("path-a", 2.5)]
    assert mon.returned(bad) is None and mon.path_stats("path-b").late == 1
    assert mon.returned(b"\x00" * 16) is None and mon.unknown == 1
    a, b = mon.path_stats("path-a"), mon.path_stats("path-b")
    assert (a.sent, a.returned, a.lost) == (1, 1, 0)
    assert (b.sent, b.returned, b.lost) == (1, 0, 1)
    assert mon.totals().rtt_mean == 2.5 and mon.outstanding == 0


def test_loop_cover_finds_the_path_that_drops() -> None:
    clock = Clock()
    rng = random.Random(42)
    mon = LoopMonitor(clock, rng, timeout=5.0)
    lost: dict[str, int] = {}
    mon.add_lost_listener(lambda x: lost.__setitem__(x.path, lost.get(x.path, 0) + 1))
    paths = ["p0", "p1", "dropper"]

    def send(path: str, loop_id: bytes) -> None:
        if path != "dropper":
            clock.callLater(rng.uniform(0.5, 2.0), mon.returned, loop_id)

    cover = LoopCover(clock, rng, mon, 1.0, lambda: rng.choice(paths), send)
    cover.start()
    step_until(clock, lambda: clock.seconds() > 600)
    cover.stop()
    assert set(lost) == {"dropper"} and lost["dropper"] > 100
    for p in ("p0", "p1"):
        s = mon.path_stats(p)
        assert s.lost == 0 and s.sent - s.returned <= mon.outstanding
        q50 = s.quantile(0.5)
        assert s.rtt_mean is not None and q50 is not None and 0.5 <= q50 <= 2.0
    sent = sum(mon.path_stats(p).sent for p in paths)
    assert 500 < sent < 700  # λ_L = 1 per second over 600 s


# -- profiles and config ---------------------------------------------------------------

def test_profiles_and_overrides() -> None:
    assert set(PROFILES) == {"off", "low-data", "balanced", "paranoid"}
    assert PROFILES["low-data"].bytes_per_second_per_link() <= 500
    assert resolve_profile().name == "balanced"
    p = resolve_profile("paranoid", cover_rate=3.0, mix_rate=0.1)
    assert (p.cover_rate, p.mix_rate, p.loop_rate, p.constant) == (3.0, 0.1, 0.2, True)
    with pytest.raises(ValueError, match="unknown mixing profile"):
        resolve_profile("fast")


def test_config_keys_build_the_layer() -> None:
    cfg = parse_config({"mixing": {"profile": "low-data", "cover_rate": 1.5, "burst": 2,
                                   "batch_interval": 0.25, "batch_size": 4}})
    prof = profile_from_config(cfg)
    assert (prof.name, prof.cover_rate, prof.burst, prof.mix_rate) == ("low-data", 1.5, 2, 1.0)
    clock = Clock()
    sched = scheduler_from_config(cfg, clock, random.Random(51))
    assert isinstance(sched, PoissonScheduler) and sched.rate == 1.5 and sched.burst == 2
    pool: MixPool[bytes] = mix_pool_from_config(cfg, clock, random.Random(52), lambda b: None)
    assert (pool.rate, pool.batch_interval, pool.batch_size) == (1.0, 0.25, 4)
    default = parse_config({})
    assert default.mixing.profile == "balanced"
    assert isinstance(scheduler_from_config(default, clock, random.Random(53)), PoissonScheduler)
    zero = parse_config({"mixing": {"cover_rate": 0}})
    assert isinstance(scheduler_from_config(zero, clock, random.Random(54)), ImmediateScheduler)
    with pytest.raises(ConfigError, match=r"mixing\.profile"):
        parse_config({"mixing": {"profile": "fast"}})
    with pytest.raises(ConfigError, match=r"mixing\.burst"):
        parse_config({"mixing": {"burst": 0}})


# -- traces ----------------------------------------------------------------------------

def test_trace_lines_hide_link_names_and_salt_per_run() -> None:
    clock = Clock()
    clock.advance(1_700_000_000.0)
    out1, out2 = io.StringIO(), io.StringIO()
    s1 = JsonLinesTraceSink(out1, clock, random.Random(61))
    s2 = JsonLinesTraceSink(out2, clock, random.Random(62))
    assert verifyObject(ITraceSink, s1)
    for sink in (s1, s2):
        sink.record(clock.seconds() + 1.25, "abc.onion", "out", 996, "cover")
        sink.record(clock.seconds() + 2.0, "abc.onion", "in", 996, "loop")
    r1, r2 = read_trace(io.StringIO(out1.getvalue())), read_trace(io.StringIO(out2.getvalue()))
    assert [r["t"] for r in r1] == [1.25, 2.0]  # relative to the run, not the host clock
    assert r1[0]["link"] == r1[1]["link"] != r2[0]["link"]
    assert "onion" not in out1.getvalue()
    assert set(r1[0]) == {"t", "link", "dir", "size", "kind"}
    with pytest.raises(ValueError, match="kind"):
        s1.record(0.0, "x", "out", 996, "data")
    with pytest.raises(ValueError, match="direction"):
        s1.record(0.0, "x", "sideways", 996, "real")
    with pytest.raises(ValueError, match="finite"):
        s1.record(float("nan"), "x", "out", 996, "real")
    with pytest.raises(ValueError, match="non-finite"):
        read_trace(io.StringIO('{"t": NaN}\n'))
    assert json.loads(out1.getvalue().splitlines()[0])["size"] == 996
