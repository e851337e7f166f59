"""A Kademlia network in one process, on a virtual clock, driving the real DHT core.

Every node is a :class:`~aegis_hidden.dht.DhtCore` with its real
:class:`~aegis_hidden.dht.RoutingTable`; every lookup is the real
:class:`~aegis_hidden.dht.Lookup` state machine, fed through
:meth:`DhtCore.feed` with answers encoded and decoded by the real codec
(``wire/dht.proto``). Nothing of the protocol is written a second time here
(STYLE.md #15). What the simulation adds is the network: each request and each
answer crosses a link with a log-normal one-way delay (an onion-service round
trip is seconds, not milliseconds) and an independent loss probability; an
answer that has not arrived after ``timeout`` is a timeout for the lookup.

Routing tables are filled before the lookups from the whole population, each
bucket with up to k contacts drawn at random from the part of the id space it
covers, through :meth:`RoutingTable.observe` (what a converged network's tables
look like; joining, churn and refresh are not simulated yet). Ids are SHA-256
of random 32-byte strings standing for onion keys.

Adversaries are a random fraction of the nodes (ids are hashes of keys, so
they cannot choose their place without a puzzle, see docs/dht.md). They either
``drop`` every request (a timeout for the asker), ``lie`` (answer at once with
the k adversaries closest to the target: collusion without choosing ids), or
``eclipse``: answer with k Sybil contacts whose keys were ground until their
ids lie closer to the target than the k-th closest honest node (cheap without
S/Kademlia's puzzle: about 2^bits hashes each, see :meth:`DhtNetwork.sybils`);
the Sybils answer every query with one another. A lookup for
an honest node's id succeeds when an answer named that node's contact (what
the asker needs to dial it; a contact is the node's key, so nobody else can
pass for it).

Deterministic: all randomness flows from ``random.Random(seed)``, time is virtual.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ..dht import Contact, DhtCore, Lookup, Nodes, SignedRecord, decode_request, encode

BEHAVIOURS = ("drop", "lie", "eclipse")


@dataclass(frozen=True)
class DhtScenario:
    adversaries: float = 0.0  # fraction of all nodes
    behaviour: str = "drop"  # "drop", "lie" or "eclipse"
    paths: int = 1  # d: 1 is plain Kademlia, more is S/Kademlia's disjoint lookup
    alpha: int = 3  # parallel queries per path
    lookups: int = 200
    latency_median: float = 0.6  # one-way seconds
    latency_sigma: float = 0.5  # of the log-normal
    loss: float = 0.01  # per message
    timeout: float = 10.0  # seconds until a request counts as failed

    def label(self) -> str:
        adv = f"{self.adversaries * 100:.0f}% {self.behaviour}" if self.adversaries else "none"
        return f"adversaries {adv:<12} d={self.paths}"


@dataclass(frozen=True)
class DhtResult:
    scenario: DhtScenario
    lookups: int
    success: float  # share of lookups that reached the target
    rounds_median: float
    rounds_p95: float
    messages_mean: float
    messages_p95: float
    timeouts_mean: float
    seconds_median: float  # virtual time from start to done
    seconds_p95: float


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class VirtualClock:
    """Time that only moves when the simulation says so: a heap of pending calls."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, fn))

    def run(self) -> None:
        while self._heap:
            self.now, _, fn = heapq.heappop(self._heap)
            fn()


class DhtNetwork:
    """``size`` nodes with converged routing tables (see the module docstring)."""

    def __init__(self, size: int, seed: int, *, k: int = 20) -> None:
        rng = random.Random(seed)
        self.k = k
        #: leading bits a Sybil shares with its target: 2 more than the k-th honest node's
        self.sybil_bits = max(1, round(math.log2(max(2, size) / k)) + 2)
        self._sybils: dict[bytes, list[Contact]] = {}
        contacts = sorted((Contact(rng.randbytes(32)) for _ in range(size)),
                          key=lambda c: c.id)
        self.contacts = contacts
        self.cores = {c.id: DhtCore(c, k=k) for c in contacts}
        ints = [int.from_bytes(c.id, "big") for c in contacts]
        for n, c in enumerate(contacts):
            table = self.cores[c.id].table
            x = ints[n]
            for i in range(255, -1, -1):
                # bucket i: ids sharing the bits above i with x and differing at bit i
                low = ((x >> i) ^ 1) << i
                lo = bisect.bisect_left(ints, low)
                hi = bisect.bisect_left(ints, low + (1 << i))
                if hi > lo:
                    for j in rng.sample(range(lo, hi), min(k, hi - lo)):
                        table.observe(contacts[j], 0.0)
                # the subtree of x below bit i: stop once x is alone in it
                sub = (x >> i) << i
                if bisect.bisect_left(ints, sub + (1 << i)) - bisect.bisect_left(ints, sub) <= 1:
                    break


    def sybils(self, target: bytes) -> list[Contact]:
        """k keys ground until their ids share ``sybil_bits`` leading bits with ``target``.

        What an adversary without a puzzle to solve does to eclipse a target:
        about 2^bits SHA-256 per Sybil (the bits are set so the Sybils are
        closer to the target than the k-th closest honest node). Cached per
        target, so paired scenarios grind once.
        """
        found = self._sybils.get(target)
        if found is not None:
            return found
        bits = self.sybil_bits
        want = int.from_bytes(target, "big") >> (256 - bits)
        base = hashlib.sha256(b"sybil" + target).digest()[:24]
        out: list[Contact] = []
        counter = 0
        while len(out) < self.k:
            counter += 1
            key = base + counter.to_bytes(8, "big")
            if int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> (64 - bits) == want:
                out.append(Contact(key))
        self._sybils[target] = out
        return out


def simulate_lookups(network: DhtNetwork, scenario: DhtScenario, seed: int) -> DhtResult:
    rng = random.Random(seed)
    ids = [c.id for c in network.contacts]
    bad = set(rng.sample(ids, round(scenario.adversaries * len(ids))))
    honest = [i for i in ids if i not in bad]
    bad_contacts = [network.cores[i].own for i in sorted(bad)]
    clock = VirtualClock()
    links = random.Random(rng.getrandbits(64))  # delays and losses
    mu = math.log(scenario.latency_median)
    outcomes: list[tuple[bool, int, int, int, float]] = []

    def delay() -> float:
        return links.lognormvariate(mu, scenario.latency_sigma)

    def one_lookup(start: DhtCore, target: bytes) -> None:
        began = clock.now
        lookup: Lookup[SignedRecord] = start.lookup(target, paths=scenario.paths)
        lookup.alpha = scenario.alpha
        request = start.find_node(target)
        liars: list[Contact] | None = None
        sybils = network.sybils(target) if scenario.behaviour == "eclipse" else []
        sybil_ids = {c.id for c in sybils}
        finished = False

        def lie() -> bytes:
            nonlocal liars
            if liars is None:
                t = int.from_bytes(target, "big")
                liars = sorted(bad_contacts, key=lambda c: int.from_bytes(c.id, "big") ^ t)
                liars = liars[: network.k]
            return encode(Nodes(tuple(liars)))

        def answer_of(contact: Contact) -> bytes | None:
            if scenario.behaviour == "eclipse" and (contact.id in bad or contact.id in sybil_ids):
                return encode(Nodes(tuple(sybils)))
            if contact.id in bad:
                return lie() if scenario.behaviour == "lie" else None
            core = network.cores[contact.id]
            return encode(core.answer(decode_request(request), clock.now))

        def step() -> None:
            nonlocal finished
            if finished:
                return
            if not lookup.done:
                for q in lookup.next_queries():
                    send(q.contact)
            if lookup.done:
                finished = True
                r = lookup.result()
                outcomes.append((r.target_seen, r.rounds, r.messages, r.failures,
                                 clock.now - began))

        def send(contact: Contact) -> None:
            lost = links.random() < scenario.loss or links.random() < scenario.loss
            rtt = delay() + delay()
            answer = None if lost else answer_of(contact)
            if answer is None or rtt >= scenario.timeout:
                clock.call_later(scenario.timeout, lambda: deliver(contact, None))
            else:
                clock.call_later(rtt, lambda: deliver(contact, answer))

        def deliver(contact: Contact, answer: bytes | None) -> None:
            start.feed(lookup, contact, answer, clock.now)
            step()

        step()

    # the same adversaries and the same lookups for every d: the comparison is paired
    pairs = [rng.sample(honest, 2) for _ in range(scenario.lookups)]
    for a, b in pairs:
        one_lookup(network.cores[a], b)
        clock.run()

    ok = [o for o in outcomes if o[0]]
    rounds = [float(o[1]) for o in outcomes]
    messages = [float(o[2]) for o in outcomes]
    seconds = [o[4] for o in outcomes]
    return DhtResult(
        scenario=scenario,
        lookups=len(outcomes),
        success=len(ok) / len(outcomes),
        rounds_median=statistics.median(rounds),
        rounds_p95=_p(rounds, 0.95),
        messages_mean=statistics.fmean(messages),
        messages_p95=_p(messages, 0.95),
        timeouts_mean=statistics.fmean(float(o[3]) for o in outcomes),
        seconds_median=statistics.median(seconds),
        seconds_p95=_p(seconds, 0.95),
    )


def fingerprint(results: list[DhtResult]) -> str:
    """A short hash of the figures (two runs with one seed print the same)."""
    text = repr([(r.success, r.rounds_median, r.messages_mean, r.seconds_median) for r in results])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
