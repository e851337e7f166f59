"""A mix network in one process, on a virtual clock, driving the real mixing cores.

Loopix's end-to-end evaluation setup (Piotrowska et al., USENIX Security 2017,
§4.3): ``senders`` clients send through a stratified network of forwarding
nodes (``layers`` x ``width``), each message along a random path of one node
per layer. Here every hop is a link run by the real
:class:`~aegis_hidden.mixing.PoissonScheduler` (or the ``off`` profile's
:class:`~aegis_hidden.mixing.ImmediateScheduler`), and every forwarding node
holds what it relays in the real :class:`~aegis_hidden.mixing.MixPool`. Nothing
of the mixing is written a second time here.

The adversary is Loopix's conservative one: it watches every link, is told
which cells are real (cover never helps it or hurts it here), and follows
each message with a probability distribution over the senders. A message
leaving a sender's link is that sender's for sure; at a node, a departing
message gets the average of the distributions of the messages that entered
the node and have not left (Loopix Theorem 1: with exponential delays each
message inside is equally likely to be the next out; link queues count as
inside, an approximation that favours neither side much when queues are
short). The sender anonymity of a message leaving the last layer is the
Shannon entropy H of its distribution; 2^H is its effective anonymity set.
Loopix's own metric, the likelihood ratio ε = |ln(p0/p1)| between two
challenge senders, is reported beside it.

Deterministic: one seed gives the same figures (all randomness flows from
``random.Random(seed)``, the clock is a ``task.Clock``).
"""

from __future__ import annotations

import json
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from twisted.internet.task import Clock
from zope.interface import implementer

from ..interfaces import ICellLink, ICellScheduler
from ..mixing import ImmediateScheduler, MixingProfile, MixPool, PoissonScheduler


@dataclass(frozen=True)
class MixnetScenario:
    profile: MixingProfile
    senders: int = 100
    layers: int = 3
    width: int = 3
    message_rate: float = 1.0  # real messages per second per sender (one cell each)
    burn_in: float = 100.0  # seconds before messages are measured
    measure: float = 200.0  # seconds of measured sending
    drain: float = 60.0  # seconds to let measured messages leave
    #: λ of the links between forwarding nodes (None: the profile's). Such a link
    #: carries the sum of what its node forwards; Loopix's mixes forward with no
    #: link schedule at all, so its evaluation point needs a rate above the load.
    node_link_rate: float | None = None


@dataclass
class MixnetResult:
    scenario: MixnetScenario
    measured: int  # messages whose exit was measured
    entropy_mean: float  # bits
    entropy_p10: float
    entropy_median: float
    latency_mean: float  # seconds from send() to leaving the last layer
    latency_p90: float
    epsilon_median: float  # Loopix's |ln(p0/p1)| for the two challenge senders' messages
    linked: float  # share of challenge messages for which the adversary rules one of the two out
    cells_per_link_per_second: float
    real_share: float  # real cells / all cells on the links

    @property
    def anonymity_set(self) -> float:
        return float(2 ** self.entropy_mean)


@dataclass(eq=False)
class _Message:
    sender: int
    path: list[int]  # node index per layer
    sent_at: float
    measured: bool
    dist: list[float] = field(default_factory=list)
    hop: int = 0  # index into path of the node it is heading for / inside


@implementer(ICellLink)
class _SimLink:
    """One direction of one hop: a queue of messages, delivered when the scheduler emits them."""

    def __init__(self, net: _Net, link_id: str, source: int | None, target: int | None) -> None:
        self.link_id = link_id
        self.closed = False
        self._net = net
        self.source = source  # node index, or None for a sender's link
        self.target = target  # node index, or None for a last-layer exit link
        self.cells: deque[_Message] = deque()
        self.scheduler: ICellScheduler | None = None

    def queued(self) -> int:
        return len(self.cells)

    def emit(self, count: int, cover: int = 0) -> int:
        n = min(count, len(self.cells))
        self._net.cells += n + cover
        self._net.real_cells += n
        for _ in range(n):
            self._net.depart(self, self.cells.popleft())
        return n


class _NodeView:
    """What the adversary believes about the messages inside one node."""

    __slots__ = ("count", "total")

    def __init__(self, senders: int) -> None:
        self.total = [0.0] * senders
        self.count = 0


class _Net:
    def __init__(self, sc: MixnetScenario, seed: int,
                 ground_truth: Callable[[float, list[float]], None] | None = None) -> None:
        self.sc = sc
        self.ground_truth = ground_truth
        master = random.Random(seed)
        self.clock = Clock()
        self.rng = random.Random(master.getrandbits(64))
        prof = sc.profile
        sched_rng = random.Random(master.getrandbits(64))
        self.scheduler: ICellScheduler
        if prof.cover_rate > 0:
            self.scheduler = PoissonScheduler(self.clock, sched_rng, prof.cover_rate,
                                              burst=prof.burst, constant=prof.constant)
        else:
            self.scheduler = ImmediateScheduler(batch_size=prof.burst)
        self.node_scheduler = self.scheduler
        if sc.node_link_rate is not None and sc.node_link_rate != prof.cover_rate:
            self.node_scheduler = PoissonScheduler(
                self.clock, random.Random(master.getrandbits(64)), sc.node_link_rate,
                burst=prof.burst, constant=prof.constant)
        n_nodes = sc.layers * sc.width
        self.views = [_NodeView(sc.senders) for _ in range(n_nodes)]
        self.pools: list[MixPool[_Message]] = [
            MixPool(self.clock, random.Random(master.getrandbits(64)), prof.mix_rate,
                    self._released) for _ in range(n_nodes)]
        self.sender_links = [[self._link(f"s{s}-n{j}", None, j) for j in range(sc.width)]
                             for s in range(sc.senders)]
        self.node_links: list[list[_SimLink]] = []
        for layer in range(sc.layers):
            for j in range(sc.width):
                node = layer * sc.width + j
                if layer + 1 < sc.layers:
                    nxt = [(layer + 1) * sc.width + k for k in range(sc.width)]
                    self.node_links.append([self._link(f"n{node}-n{t}", node, t) for t in nxt])
                else:
                    self.node_links.append([self._link(f"n{node}-exit", node, None)])
        self.workload_rng = random.Random(master.getrandbits(64))
        self.cells = 0
        self.real_cells = 0
        self.entropies: list[float] = []
        self.latencies: list[float] = []
        self.epsilons: list[float] = []
        self.linked = 0
        self.challenge = 0
        self.all_links = [lk for row in self.sender_links for lk in row] + [
            lk for row in self.node_links for lk in row]

    def _link(self, name: str, source: int | None, target: int | None) -> _SimLink:
        link = _SimLink(self, name, source, target)
        link.scheduler = self.scheduler if source is None else self.node_scheduler
        link.scheduler.register(link)
        return link

    # -- traffic -----------------------------------------------------------
    def start_workload(self) -> None:
        sc = self.sc
        rate = sc.message_rate * sc.senders
        rng = self.workload_rng
        stop = sc.burn_in + sc.measure

        def send() -> None:
            now = self.clock.seconds()
            if now >= stop:
                return
            sender = rng.randrange(sc.senders)
            path = [layer * sc.width + rng.randrange(sc.width) for layer in range(sc.layers)]
            dist = [0.0] * sc.senders
            dist[sender] = 1.0
            msg = _Message(sender, path, now, now >= sc.burn_in, dist)
            link = self.sender_links[sender][path[0] % sc.width]
            link.cells.append(msg)
            self.scheduler.notify(link)
            self.clock.callLater(rng.expovariate(rate), send)

        self.clock.callLater(rng.expovariate(rate), send)

    def depart(self, link: _SimLink, msg: _Message) -> None:
        if link.source is not None:
            view = self.views[link.source]
            out = [t / view.count for t in view.total]
            view.total = [t - o for t, o in zip(view.total, out, strict=True)]
            view.count -= 1
            msg.dist = out
        if link.target is None:
            self._exit(msg)
            return
        view = self.views[link.target]
        view.total = [t + d for t, d in zip(view.total, msg.dist, strict=True)]
        view.count += 1
        self.pools[link.target].add(msg)

    def _released(self, msg: _Message) -> None:
        node = msg.path[msg.hop]
        msg.hop += 1
        row = self.node_links[node]
        link = row[msg.path[msg.hop] % self.sc.width] if msg.hop < len(msg.path) else row[0]
        link.cells.append(msg)
        self.node_scheduler.notify(link)

    def _exit(self, msg: _Message) -> None:
        if not msg.measured:
            return
        self.entropies.append(-sum(p * math.log2(p) for p in msg.dist if p > 0))
        if self.ground_truth is not None:
            self.ground_truth(self.clock.seconds(), msg.dist)
        self.latencies.append(self.clock.seconds() - msg.sent_at)
        if msg.sender in (0, 1):
            self.challenge += 1
            p0, p1 = msg.dist[0], msg.dist[1]
            if p0 <= 0 or p1 <= 0:
                self.linked += 1
            else:
                self.epsilons.append(abs(math.log(p0 / p1)))

    def run(self) -> None:
        self.start_workload()
        end = self.sc.burn_in + self.sc.measure + self.sc.drain
        clock = self.clock
        while True:
            calls = clock.getDelayedCalls()
            if not calls:
                break
            when = min(c.getTime() for c in calls)
            if when > end:
                break
            clock.advance(max(0.0, when - clock.seconds()))


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def simulate(scenario: MixnetScenario, seed: int = 1, *,
             ground_truth: IO[str] | None = None) -> MixnetResult:
    """Run ``scenario`` once; the same seed gives the same result.

    ``ground_truth``: a text stream that gets one JSON line per measured message
    leaving the last layer, ``{"t": seconds, "dist": [...]}`` (the adversary's
    distribution over the senders): the ground-truth lines the privacy audit's
    anonymity check reads (``aegis-hidden audit report``, docs/audit.md).
    """
    sink = None
    if ground_truth is not None:
        out = ground_truth

        def sink(t: float, dist: list[float]) -> None:
            out.write(json.dumps({"t": round(t, 6), "dist": [round(p, 12) for p in dist]},
                                 allow_nan=False, separators=(",", ":")) + "\n")

    net = _Net(scenario, seed, sink)
    net.run()
    duration = net.clock.seconds()
    n_links = len(net.all_links)
    return MixnetResult(
        scenario=scenario,
        measured=len(net.entropies),
        entropy_mean=sum(net.entropies) / len(net.entropies) if net.entropies else math.nan,
        entropy_p10=_quantile(net.entropies, 0.1),
        entropy_median=_quantile(net.entropies, 0.5),
        latency_mean=sum(net.latencies) / len(net.latencies) if net.latencies else math.nan,
        latency_p90=_quantile(net.latencies, 0.9),
        epsilon_median=_quantile(net.epsilons, 0.5),
        linked=net.linked / net.challenge if net.challenge else math.nan,
        cells_per_link_per_second=net.cells / n_links / duration if duration else 0.0,
        real_share=net.real_cells / net.cells if net.cells else 0.0,
    )


def describe(result: MixnetResult) -> dict[str, Any]:
    """The figures of one run as a plain dict (for printing and docs)."""
    return {
        "profile": result.scenario.profile.name,
        "measured": result.measured,
        "H": round(result.entropy_mean, 3) + 0.0,
        "2^H": round(result.anonymity_set, 1),
        "H_p10": round(result.entropy_p10, 3) + 0.0,
        "latency_mean": round(result.latency_mean, 3),
        "latency_p90": round(result.latency_p90, 3),
        "epsilon_median": round(result.epsilon_median, 3),
        "linked": round(result.linked, 3),
    }
