"""A Kademlia network in one process, on a virtual clock, driving the real DHT core.

Every node is a :class:`~aegis_hidden.dht.DhtCore` with its real
:class:`~aegis_hidden.dht.RoutingTable`; every lookup is the real
:class:`~aegis_hidden.dht.Lookup` state machine, fed through
:meth:`DhtCore.feed` with answers encoded and decoded by the real codec
(``wire/dht.proto``). Nothing of the protocol is written a second time here:
the simulation measures the code that runs. What it adds is the network: each
request and each answer crosses a link with a log-normal one-way delay (an
onion-service round trip is seconds, not milliseconds) and an independent loss
probability; an answer that has not arrived after ``timeout`` is a timeout for
the lookup.

Every core is built as the node's ``DhtService`` builds it (:func:`node_core`:
k, alpha and the refresh interval from ``DhtConfig``'s defaults, and a
:class:`~aegis_hidden.dht.Candidates` queue with its defaults): a node that
asked is not put in the asked node's table but queued as a candidate, and it
enters only once it answered that node's check, a PING at one of its
maintenance ticks (every ``DhtConfig.maintenance_interval`` on the virtual
clock, at most ``CHECKS_PER_TICK`` candidates each, :meth:`DhtNetwork.tick`);
a contact that answered one of a node's own queries enters at once
(``DhtCore.checked``). Bootstrap contacts seed the first lookup, as
``DhtNode.bootstrap`` does with a candidate queue. Peer exchange runs at each
tick after the checks (``DhtService.exchange``): up to ``PEX_PEERS`` table
contacts the node holds a session with are offered ``MAX_OFFER`` of its other
table contacts; the receiver takes an offer through the core's own rule (its
per-sender rate, then ``DhtCore.consider``: a candidate until it answered a
check). The simulated contacts are bare ids with no signed records, so the
entries' signature and puzzle checks are not run here (unit-tested in
tests/unit/test_dht_exchange.py).

Routing tables are filled before the lookups, either from the whole
population, each bucket with up to k contacts drawn at random from the part of
the id space it covers (what a converged network's tables look like), or by
joining: nodes arrive one by one, ``join_spacing`` virtual seconds apart,
knowing one node, and fill their tables with real lookups while every node
joined ticks (:class:`DhtNetwork`). Ids are SHA-256 of random 32-byte strings
standing for onion keys.

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
import dataclasses
import functools
import hashlib
import heapq
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from ..config import DhtConfig
from ..dht import (
    MAX_OFFER,
    PEX_PEERS,
    Candidates,
    Contact,
    DhtCore,
    DhtRequestRefused,
    Lookup,
    LookupResult,
    Nodes,
    RecordStore,
    RoutingTable,
    SignedRecord,
    Store,
    StoreLimiter,
    Value,
    decode_request,
    encode,
    sign_record,
)
from ..dht._ids import bucket_index
from ..identity import MAX_RECORD_LIFETIME, IdentityRecord, RecordKind
from ..identity import sign_record as sign_identity_record

BEHAVIOURS = ("drop", "lie", "eclipse")

#: the node's DHT settings at their defaults: the one place the simulated cores take
#: their parameters from, as ``DhtService`` takes them from the node's ``DhtConfig``
NODE_CONFIG = DhtConfig()
#: a node's maintenance tick (its candidate checks), virtual seconds
TICK = NODE_CONFIG.maintenance_interval


def node_core(own: Contact, k: int = NODE_CONFIG.k, now: float = 0.0) -> DhtCore:
    """A core as ``DhtService`` builds one (node/_dht.py): k, alpha and the refresh
    interval of the node's settings, and a candidate queue with its defaults. The
    puzzle is left out (``puzzle_bits`` 0: the simulated contacts carry no nonce;
    docs/dht.md, "Not simulated")."""
    table = RoutingTable(own, k=k, refresh_interval=NODE_CONFIG.refresh_interval, now=now)
    return DhtCore(own, k=k, alpha=NODE_CONFIG.alpha, table=table, now=now,
                   candidates=Candidates())

#: Link latencies, measured per request on the private Tor network (8 nodes, client
#: tor shared, 2026-11-30): ``flock /tmp/aegis-tornet.lock .venv/bin/pytest
#: tests/integration/test_dht.py -m integration -s`` prints the round trips the nodes
#: timed (GET /api/network/dht ``rpc_seconds``, docs/dht.md "On the private Tor
#: network"). Over a session already open, 3661 requests: median 0.116 s, p95 0.210 s,
#: log-normal fit median 0.111 s, sigma 0.432. Requests that dialled first, 46: median
#: 1.099 s, p95 4.966 s, fit median 1.314 s, sigma 0.549; the dial (descriptor,
#: rendezvous circuit, post-quantum handshake) is taken as that fit less the warm
#: round trip, median 1.2 s, with the cold fit's sigma (the dial dominates the sum).
WARM_RTT = 0.111
WARM_SIGMA = 0.432
COLD_DIAL = 1.2
COLD_SIGMA = 0.549
#: sessions a node keeps open (``network.max_connections``' default), least recently used
#: closed first
MAX_SESSIONS = 50


@dataclass(frozen=True)
class DhtScenario:
    adversaries: float = 0.0  # fraction of all nodes
    behaviour: str = "drop"  # "drop", "lie" or "eclipse"
    paths: int = 1  # d: 1 is plain Kademlia, more is S/Kademlia's disjoint lookup
    alpha: int = NODE_CONFIG.alpha  # parallel queries per path
    lookups: int = 200
    #: round trip of one request over a warm session (log-normal median, sigma), seconds
    warm_rtt: float = WARM_RTT
    warm_sigma: float = WARM_SIGMA
    #: what dialling a peer without a session adds (rendezvous circuit + handshake)
    cold_dial: float = COLD_DIAL
    cold_sigma: float = COLD_SIGMA
    loss: float = 0.01  # per message
    #: seconds until a request counts as failed: the node's ``dht.request_timeout``
    timeout: float = NODE_CONFIG.request_timeout
    churn: float = 0.0  # share of the nodes that leave (and come back) per hour

    def label(self) -> str:
        if self.churn:
            return f"churn {self.churn * 100:.0f}%/h{'':<15} d={self.paths}"
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
    dials_mean: float = 0.0  # requests per lookup that had to dial (no session yet)


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
    """``size`` nodes, their routing tables converged or built by joining.

    ``join=False``: every bucket holds up to k contacts drawn from the part of
    the id space it covers (a converged network). ``join=True``: the nodes
    join one by one in a random order, ``join_spacing`` virtual seconds apart
    (by default the whole network within one refresh interval, an hour),
    each knowing only one node already in: it looks up its own id from that
    node (the lookup's seed) and then ``refresh`` random ids, through the real
    lookup machine and the real request handler (the newcomer takes in every
    node that answered it; the nodes it asked queue it as a candidate and take
    it in once it answered their check). Every node joined ticks every
    ``TICK`` seconds from its arrival as a node's maintenance does
    (:meth:`tick`: the buckets due for refresh, then the candidates' checks);
    the ticks go on ``settle`` seconds after the last join (by default one
    refresh interval: the network is an hour old). Full buckets ping their
    oldest, who answers: nobody has left. :attr:`now` is the virtual time the
    build ended.
    """

    def __init__(self, size: int, seed: int, *, k: int = NODE_CONFIG.k, join: bool = False,
                 refresh: int = 2, join_buckets: bool = False,
                 join_spacing: float | None = None,
                 settle: float = NODE_CONFIG.refresh_interval, exchange: bool = True) -> None:
        rng = random.Random(seed)
        self.k = k
        #: leading bits a Sybil shares with its target: 2 more than the k-th honest node's
        self.sybil_bits = max(1, round(math.log2(max(2, size) / k)) + 2)
        self._sybils: dict[bytes, list[Contact]] = {}
        contacts = sorted((Contact(rng.randbytes(32)) for _ in range(size)),
                          key=lambda c: c.id)
        self.contacts = contacts
        self.cores = {c.id: node_core(c, k) for c in contacts}
        self.join_messages = 0
        #: reachability checks (PINGs of candidates) made at the nodes' ticks
        self.checks = 0
        self.now = 0.0
        #: sessions the joining traffic opened (a request opens one at both ends)
        self.sessions = Sessions()
        self._rng = rng
        #: virtual seconds between two arrivals when joining
        self.join_spacing = (join_spacing if join_spacing is not None
                             else NODE_CONFIG.refresh_interval / size)
        #: refresh lookups run at the nodes' ticks
        self.refreshes = 0
        #: peer exchange at the ticks (``DhtService.exchange``): offers sent, offers the
        #: receiver refused for its rate, contacts offered
        self.exchange = exchange
        self.offers = 0
        self.offers_refused = 0
        self.offered = 0
        if join:
            self._join_all(rng, refresh, join_buckets, self.join_spacing, settle)
            return
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

    def _join_all(self, rng: random.Random, refresh: int, buckets: bool, spacing: float,
                  settle: float) -> None:
        order = list(self.contacts)
        rng.shuffle(order)
        joined: list[Contact] = [order[0]]
        # the nodes' ticks: (time, arrival index, core); a node ticks from its arrival on
        ticks: list[tuple[float, int, DhtCore]] = [(0.0, 0, self.cores[order[0].id])]
        for n, newcomer in enumerate(order[1:], start=1):
            arrival = n * spacing
            while ticks and ticks[0][0] <= arrival:
                self._next_tick(ticks)
            self.now = arrival
            core = self.cores[newcomer.id]
            self.join(core, rng.choice(joined), rng, refresh, buckets, now=arrival)
            joined.append(newcomer)
            heapq.heappush(ticks, (arrival, n, core))
        end = self.now + settle
        while ticks and ticks[0][0] <= end:
            self._next_tick(ticks)

    def _next_tick(self, ticks: list[tuple[float, int, DhtCore]]) -> None:
        at, n, core = heapq.heappop(ticks)
        self.now = at
        self.tick(core, at, refresh=True)
        heapq.heappush(ticks, (at + TICK, n, core))

    def tick(self, core: DhtCore, now: float,
             offline: Callable[[bytes], bool] | None = None, refresh: bool = False) -> int:
        """One maintenance tick of ``core`` (``DhtService.tick``): with ``refresh``, a
        lookup of each bucket due (``DhtNode.maintain``); then the reachability checks
        (``DhtNode.check_candidates``): PING the candidates due (at most
        ``CHECKS_PER_TICK``, oldest first); one that answers enters the table, one
        ``offline`` does not. How many answered."""
        if refresh:
            for target in core.due_refresh(now, self._rng):
                self.refreshes += 1
                self._lookup_now(core, target, self._rng, offline, now)
        candidates = core.candidates
        if candidates is None:
            return 0
        answered = 0
        for contact in candidates.take():
            self.checks += 1
            self.join_messages += 1
            self.sessions.use(core.own.id, contact.id)
            if offline is not None and offline(contact.id):
                candidates.failed(contact, now)
                continue
            answered += 1
            candidates.answered(contact)
            ping = core.checked(contact, now)
            if ping is not None:
                self._ping(core, ping.oldest, offline, now)
        if self.exchange:
            self._offer(core, now, offline)
        return answered

    def _offer(self, core: DhtCore, now: float,
               offline: Callable[[bytes], bool] | None) -> None:
        """Peer exchange at one tick of ``core`` (``DhtService.exchange``; the tick is
        the pacing, one offer per peer per minute): up to ``PEX_PEERS`` table contacts
        it holds a session with, each offered up to ``MAX_OFFER`` of its other table
        contacts at random. The receiver takes the offer as ``DhtCore._offered`` does
        once the entries passed their checks: over its rate for that sender
        (``DhtCore.offer_allowed``) it is refused, else every entry is considered (a
        candidate, checked at the receiver's next ticks). An offline peer gets nothing."""
        own = core.own.id
        contacts = core.table.contacts()
        open_to = self.sessions.peers(own)
        peers = [c for c in contacts if c.id in open_to
                 and (offline is None or not offline(c.id))]
        for peer in self._rng.sample(peers, min(PEX_PEERS, len(peers))):
            others = [c for c in self._rng.sample(contacts, min(MAX_OFFER + 1, len(contacts)))
                      if c.id != peer.id][:MAX_OFFER]
            if not others:
                continue
            receiver = self.cores[peer.id]
            self.offers += 1
            self.join_messages += 1
            self.sessions.use(own, peer.id)
            if not receiver.offer_allowed(core.own, now):
                self.offers_refused += 1
                continue
            for contact in others:
                self.offered += 1
                ping = receiver.consider(contact, now)
                if ping is not None:
                    self._ping(receiver, ping.oldest, offline, now)

    def join(self, core: DhtCore, bootstrap: Contact, rng: random.Random, refresh: int = 0,
             buckets: bool = False, offline: Callable[[bytes], bool] | None = None,
             now: float = 0.0) -> None:
        """``core`` joins the way a node does: it knows ``bootstrap`` and looks up its own
        id from it (``DhtNode.bootstrap``: with a candidate queue the bootstrap contact
        seeds the lookup, beside the table's closest, and enters the table by answering;
        without one it enters at once); with ``buckets``, it then refreshes every bucket
        farther than its closest neighbour that is not full (Kademlia §2.3; a lookup of
        a random id in it); then it looks up ``refresh`` random ids."""
        own = core.own.id
        if core.candidates is None:
            core.table.observe(bootstrap, now)
            self._lookup_now(core, own, rng, offline, now)
        else:
            seeds = {c.id: c for c in core.table.closest(own)}
            seeds[bootstrap.id] = bootstrap
            self._lookup_now(core, own, rng, offline, now, seeds=list(seeds.values()))
        near = core.table.closest(own, 1)
        if near and buckets:
            first = bucket_index(own, near[0].id) + 1
            for i in range(first, 256):
                bucket = core.table.buckets.get(i)
                if bucket is None or len(bucket.contacts) < core.table.k:
                    self._lookup_now(core, core.table.refresh_target(i, rng), rng, offline,
                                     now)
        for _ in range(refresh):
            self._lookup_now(core, rng.randbytes(32), rng, offline, now)

    def _lookup_now(self, asker: DhtCore, target: bytes, rng: random.Random,
                    offline: Callable[[bytes], bool] | None = None, now: float = 0.0,
                    seeds: Sequence[Contact] | None = None) -> None:
        """A lookup with instant, lossless answers (joining is not what is measured).

        Both sides learn as the node does: the asked node considers the asker
        (``DhtCore.handle``: a candidate until it answered a check, or seen again
        if in the table already), the asker takes in each node that answered
        (``DhtCore.checked``); a full bucket pings its oldest, who answers unless
        it is ``offline``. A node ``offline`` does not answer (a failure, counted
        against it by the asker).
        """
        lookup = asker.lookup(target, seeds=seeds)
        request = asker.find_node(target)
        asker.table.touch(target, now)
        while not lookup.done:
            queries = lookup.next_queries()
            if not queries:
                break
            for q in queries:
                self.join_messages += 1
                self.sessions.use(asker.own.id, q.contact.id)
                if offline is not None and offline(q.contact.id):
                    asker.feed(lookup, q.contact, None, now)
                    self._failed(asker, q.contact)
                    continue
                peer = self.cores[q.contact.id]
                handled = peer.handle(asker.own, request, now)
                if handled.ping is not None:
                    self._ping(peer, handled.ping.oldest, offline, now)
                if asker.feed(lookup, q.contact, handled.answer, now):
                    ping = asker.checked(q.contact, now)
                    if ping is not None:
                        self._ping(asker, ping.oldest, offline, now)

    def _ping(self, core: DhtCore, oldest: Contact, offline: Callable[[bytes], bool] | None,
              now: float) -> None:
        self.join_messages += 1
        if offline is not None and offline(oldest.id):
            core.table.ping_failed(oldest)
        else:
            core.table.ping_answered(oldest, now)

    @staticmethod
    def _failed(core: DhtCore, contact: Contact) -> None:
        core.table.failed(contact)

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


class _Links:
    """Requests and answers crossing simulated onion links, on the virtual clock.

    Each request: lost with probability ``loss`` each way, else answered after
    a warm-session round trip (log-normal), plus a dial when the asker has no
    session with the contact (``sessions``: the peers it has one with, at most
    ``MAX_SESSIONS``, least recently used closed first; a request opens one);
    no answer within ``timeout`` is a failure fed to the lookup at the timeout.
    With ``learn``, the asker's table learns as a node's does (``DhtNode``): a
    contact that answered well is checked (``DhtCore.checked``: into the table),
    a failure counted against the contact.
    """

    def __init__(self, clock: VirtualClock, rng: random.Random, scenario: DhtScenario,
                 sessions: Sessions | None = None) -> None:
        self.clock = clock
        self.rng = rng
        self.scenario = scenario
        self.sessions = sessions if sessions is not None else Sessions()
        self.warm_mu = math.log(scenario.warm_rtt)
        self.cold_mu = math.log(scenario.cold_dial)
        self.cold = 0  # requests that needed a dial

    def rtt(self, asker: bytes, peer: bytes) -> float:
        sc = self.scenario
        rtt = self.rng.lognormvariate(self.warm_mu, sc.warm_sigma)
        if not self.sessions.use(asker, peer):
            self.cold += 1
            rtt += self.rng.lognormvariate(self.cold_mu, sc.cold_sigma)
        return rtt

    def run(self, asker: DhtCore, lookup: Lookup[SignedRecord],
            answer_of: Callable[[Contact], bytes | None], epoch: float,
            done: Callable[[LookupResult[SignedRecord], float, int], None],
            learn: bool = False) -> None:
        """Drive ``lookup`` from ``asker`` to its end; ``done(result, seconds, dials)``."""
        clock, scenario = self.clock, self.scenario
        began = clock.now
        finished = False
        dials = 0

        def step() -> None:
            nonlocal finished
            if finished:
                return
            if not lookup.done:
                for q in lookup.next_queries():
                    send(q.contact)
            if lookup.done:
                finished = True
                done(lookup.result(), clock.now - began, dials)

        def send(contact: Contact) -> None:
            nonlocal dials
            lost = self.rng.random() < scenario.loss or self.rng.random() < scenario.loss
            cold = self.cold
            rtt = self.rtt(asker.own.id, contact.id)
            dials += self.cold - cold
            answer = None if lost else answer_of(contact)
            if answer is None or rtt >= scenario.timeout:
                clock.call_later(scenario.timeout, lambda: deliver(contact, None))
            else:
                clock.call_later(rtt, lambda: deliver(contact, answer))

        def deliver(contact: Contact, answer: bytes | None) -> None:
            if finished:
                return
            good = asker.feed(lookup, contact, answer, epoch + clock.now)
            if learn:
                if good:  # it answered through a session: checked (DhtNode.lookup)
                    ping = asker.checked(contact, epoch + clock.now)
                    if ping is not None:  # the oldest is pinged at once (no wait modelled)
                        asker.table.ping_answered(ping.oldest, epoch + clock.now)
                else:
                    asker.table.failed(contact)
            step()

        step()


class Sessions:
    """Which nodes hold a session with which (``MAX_SESSIONS`` each, LRU)."""

    def __init__(self, base: Sessions | None = None) -> None:
        self._open: dict[bytes, dict[bytes, None]] = {}
        #: read-only sessions underneath (a scenario's overlay leaves the network's as it was)
        self._base = base

    def use(self, a: bytes, b: bytes) -> bool:
        """``a`` sends to ``b``: whether a session was open; both ends hold one after."""
        warm = self._has(a, b)
        self._touch(a, b)
        self._touch(b, a)
        return warm

    def peers(self, a: bytes) -> set[bytes]:
        """The nodes ``a`` holds a session with."""
        mine = set(self._open.get(a, ()))
        return mine | self._base.peers(a) if self._base is not None else mine

    def _has(self, a: bytes, b: bytes) -> bool:
        mine = self._open.get(a)
        if mine is not None and b in mine:
            return True
        return self._base is not None and self._base._has(a, b)

    def _touch(self, a: bytes, b: bytes) -> None:
        mine = self._open.setdefault(a, {})
        mine.pop(b, None)
        mine[b] = None
        if len(mine) > MAX_SESSIONS:
            del mine[next(iter(mine))]

    def drop(self, a: bytes) -> None:
        """``a`` went offline: its sessions closed, at both ends."""
        self._open.pop(a, None)
        for mine in self._open.values():
            mine.pop(a, None)


def simulate_lookups(network: DhtNetwork, scenario: DhtScenario, seed: int) -> DhtResult:
    """Node lookups (FIND_NODE for an honest node's id) under ``scenario``."""
    rng = random.Random(seed)
    ids = [c.id for c in network.contacts]
    bad = set(rng.sample(ids, round(scenario.adversaries * len(ids))))
    honest = [i for i in ids if i not in bad]
    bad_contacts = [network.cores[i].own for i in sorted(bad)]
    clock = VirtualClock()
    links = _Links(clock, random.Random(rng.getrandbits(64)), scenario,
                   Sessions(network.sessions))
    outcomes: list[tuple[bool, int, int, int, float, int]] = []

    def one_lookup(start: DhtCore, target: bytes) -> None:
        lookup: Lookup[SignedRecord] = start.lookup(target, paths=scenario.paths,
                                                    until_found=True)
        lookup.alpha = scenario.alpha
        request = start.find_node(target)
        liars: list[Contact] | None = None
        sybils = network.sybils(target) if scenario.behaviour == "eclipse" else []
        sybil_ids = {c.id for c in sybils}

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

        def done(r: LookupResult[SignedRecord], seconds: float, dials: int) -> None:
            outcomes.append((r.target_seen, r.rounds, r.messages, r.failures, seconds, dials))

        links.run(start, lookup, answer_of, 0.0, done)

    # the same adversaries and the same lookups for every d: the comparison is paired
    pairs = [rng.sample(honest, 2) for _ in range(scenario.lookups)]
    for a, b in pairs:
        one_lookup(network.cores[a], b)
        clock.run()

    return _summary(scenario, outcomes)


def _summary(scenario: DhtScenario,
             outcomes: list[tuple[bool, int, int, int, float, int]]) -> DhtResult:
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
        dials_mean=statistics.fmean(float(o[5]) for o in outcomes),
    )


@dataclass(frozen=True)
class ChurnReport:
    results: tuple[DhtResult, ...]  # one per d, the same lookups
    left: int  # departures during the window
    returned: int  # nodes that came back (each looked up its own id)
    offline_start: int  # nodes away when the window opened
    refresh_lookups: int  # bucket-refresh lookups run on the nodes' clocks
    maintenance_messages: int  # requests of rejoins, refreshes and checks
    checks: int = 0  # reachability checks of candidates (PINGs) at the nodes' ticks


def simulate_churn(network: DhtNetwork, scenarios: Sequence[DhtScenario], seed: int, *,
                   window: float = 600.0, away_mean: float = 1800.0,
                   refresh_interval: float = 3600.0) -> ChurnReport:
    """Node lookups while ``scenarios[0].churn`` of the nodes leave per hour and come back.

    The process: nodes leave at random (Poisson, ``churn * size`` an hour) and
    come back after an exponential time of mean ``away_mean``; the window
    opens in that process's steady state (``churn * size * away_mean / 1h``
    nodes away, their contacts still in the others' tables). A node away
    answers nothing (a timeout for whoever asks it); one that comes back looks
    up its own id with the table it had. Every node refreshes its stale
    buckets on its own clock (``DhtCore.due_refresh``: the buckets no lookup
    touched for ``refresh_interval``, each node at a random phase of it; those
    whose turn falls in the window refresh in it), and checks its candidates
    at every tick (``TICK``, each node at a random phase; :meth:`DhtNetwork.tick`:
    one away does not answer). Lookups: ``lookups`` pairs
    of nodes online at the time, spread over the window, each looked up once
    per scenario (d) at the same moment; the askers' tables learn from them as
    a node's do (``_Links``, ``learn``), the asked nodes queue the askers as
    candidates (``DhtCore.handle``). Maintenance traffic (rejoins, refreshes,
    checks) is instant and lossless; only the measured lookups cross the latency
    model. The window opens ``refresh_interval`` after the network was built
    (:attr:`DhtNetwork.now`).
    """
    rng = random.Random(seed)
    first = scenarios[0]
    ids = [c.id for c in network.contacts]
    size = len(ids)
    clock = VirtualClock()
    # the tables were built by network.now: every untouched bucket is due in the window
    t0 = network.now + refresh_interval
    sessions = network.sessions
    links = {sc.paths: _Links(clock, random.Random(rng.getrandbits(64)), sc, sessions)
             for sc in scenarios}
    away: set[bytes] = set()
    counts = {"left": 0, "returned": 0, "refresh": 0}
    before = network.join_messages

    def offline(i: bytes) -> bool:
        return i in away

    def come_back(i: bytes) -> None:
        away.discard(i)
        counts["returned"] += 1
        network._lookup_now(network.cores[i], i, rng, offline, now=t0 + clock.now)

    def leave_later(i: bytes, after: float) -> None:
        if after < window:
            clock.call_later(after, lambda: come_back(i))

    def leave() -> None:
        i = rng.choice(ids)
        if i not in away:
            away.add(i)
            sessions.drop(i)
            counts["left"] += 1
            leave_later(i, rng.expovariate(1.0 / away_mean))

    def refresh(core: DhtCore) -> None:
        if core.own.id in away:
            return
        for target in core.due_refresh(t0 + clock.now, rng):
            counts["refresh"] += 1
            network._lookup_now(core, target, rng, offline, now=t0 + clock.now)

    for i in rng.sample(ids, round(first.churn * size * away_mean / 3600.0)):
        away.add(i)
        sessions.drop(i)
        leave_later(i, rng.expovariate(1.0 / away_mean))
    offline_start = len(away)
    t = rng.expovariate(first.churn * size / 3600.0)
    while t < window:
        clock.call_later(t, leave)
        t += rng.expovariate(first.churn * size / 3600.0)
    for i in ids:
        phase = rng.uniform(0.0, refresh_interval)
        if phase < window:
            clock.call_later(phase, functools.partial(refresh, network.cores[i]))
    checks_before = network.checks

    def tick(core: DhtCore) -> None:
        if core.own.id not in away:
            network.tick(core, t0 + clock.now, offline)
        if clock.now + TICK < window:
            clock.call_later(TICK, functools.partial(tick, core))

    for i in ids:
        phase = rng.uniform(0.0, TICK)
        if phase < window:
            clock.call_later(phase, functools.partial(tick, network.cores[i]))

    outcomes: dict[int, list[tuple[bool, int, int, int, float, int]]] = {
        sc.paths: [] for sc in scenarios}

    def one(start: DhtCore, target: bytes, sc: DhtScenario) -> None:
        lookup = start.lookup(target, paths=sc.paths, until_found=True)
        lookup.alpha = sc.alpha
        request = start.find_node(target)
        lk = links[sc.paths]

        def answer_of(contact: Contact) -> bytes | None:
            if contact.id in away:
                return None
            peer = network.cores[contact.id]
            handled = peer.handle(start.own, request, t0 + clock.now)
            if handled.ping is not None:
                network._ping(peer, handled.ping.oldest, offline, t0 + clock.now)
            return handled.answer

        def done(r: LookupResult[SignedRecord], seconds: float, dials: int) -> None:
            outcomes[sc.paths].append((r.target_seen, r.rounds, r.messages, r.failures,
                                       seconds, dials))

        lk.run(start, lookup, answer_of, t0, done, learn=True)

    def lookup_pair() -> None:
        online = [i for i in rng.sample(ids, 8) if i not in away][:2]
        if len(online) < 2:
            return
        for sc in scenarios:
            one(network.cores[online[0]], online[1], sc)

    for _ in range(first.lookups):
        clock.call_later(rng.uniform(0.0, window), lookup_pair)
    clock.run()
    return ChurnReport(tuple(_summary(sc, outcomes[sc.paths]) for sc in scenarios),
                       counts["left"], counts["returned"], offline_start, counts["refresh"],
                       network.join_messages - before, network.checks - checks_before)


#: unix time the value simulation's virtual clock starts at (records carry real times)
EPOCH = 1_800_000_000
XWING_PUBLIC_SIZE = 1216  # an identity record's X-Wing key length


@dataclass(frozen=True)
class ValueResult:
    scenario: DhtScenario
    quorum: int
    lookups: int
    current: float  # share of lookups that returned the newest record
    stale: float  # share that returned an older (replayed) one
    missing: float  # share that returned none
    forged_seen: int  # forged records that reached an asker
    forged_refused: int  # of those, refused by the asker's verification
    replays_refused: int  # STOREs of the old record offered after the new one, refused
    replays_accepted: int  # ... accepted (must be 0)
    stores_refused: int  # first STOREs refused (rate, not among the k closest)
    messages_mean: float
    rounds_median: float


def _publisher(rng: random.Random, now: int) -> tuple[Ed25519PrivateKey, MLDSA65PrivateKey, bytes]:
    """A signing identity made from ``rng`` (its X-Wing key is random bytes: never used here)."""
    master = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    mldsa = MLDSA65PrivateKey.from_seed_bytes(rng.randbytes(32))
    record = IdentityRecord(RecordKind.IDENTITY, master.public_key().public_bytes_raw(), 1,
                            now - 60, now + MAX_RECORD_LIFETIME - 60,
                            xwing_public=rng.randbytes(XWING_PUBLIC_SIZE),
                            mldsa_public=mldsa.public_key().public_bytes_raw())
    return master, mldsa, sign_identity_record(record, master, mldsa).to_bytes()


def simulate_values(network: DhtNetwork, scenario: DhtScenario, seed: int, *,
                    quorum: int = 1, publishers: int = 10) -> ValueResult:
    """Value lookups of signed records under ``scenario`` (behaviour "forge" or "replay").

    Each publisher signs sequence 1, then sequence 2 of one record and STOREs
    both, in that order, at the k nodes closest to its key (through the real
    ``DhtCore.answer``: verification, limits, the k-closest check). Honest
    holders serve what they hold; adversaries among them serve a forgery
    ("forge": sequence 2 with its value changed after signing) or the old
    record ("replay": validly signed, sequence 1). Askers verify every value
    (``DhtCore.feed``) and take the newest of ``quorum`` answers.
    """
    rng = random.Random(seed)
    ids = [c.id for c in network.contacts]
    bad = set(rng.sample(ids, round(scenario.adversaries * len(ids))))
    honest = [i for i in ids if i not in bad]
    clock = VirtualClock()
    links = _Links(clock, random.Random(rng.getrandbits(64)), scenario,
                   Sessions(network.sessions))
    records: list[tuple[SignedRecord, SignedRecord]] = []
    touched: list[DhtCore] = []
    stores_refused = replays_refused = replays_accepted = 0
    for _ in range(publishers):
        master, mldsa, ident = _publisher(rng, EPOCH)
        old = sign_record(master, mldsa, ident, b"record", b"first", 1, EPOCH + 86_400)
        new = sign_record(master, mldsa, ident, b"record", b"second", 2, EPOCH + 86_400)
        records.append((old, new))
        publisher = Contact(master.public_key().public_bytes_raw())
        t = int.from_bytes(new.key, "big")
        holders = sorted(ids, key=lambda i: int.from_bytes(i, "big") ^ t)[: network.k]
        for holder in holders:
            touched.append(network.cores[holder])
            for n, rec in enumerate((old, new, old)):  # the last: the old record replayed
                try:
                    # answer(), not handle(): the publisher is not a node of this network,
                    # so the holders' tables must not learn it
                    network.cores[holder].answer(decode_request(encode(Store(rec))), EPOCH,
                                                 publisher)
                except DhtRequestRefused:
                    if n == 2:
                        replays_refused += 1
                    else:
                        stores_refused += 1
                else:
                    if n == 2:
                        replays_accepted += 1
    forged_seen = 0
    forged_refused = 0
    outcomes: list[tuple[str, int, int]] = []

    def one_lookup(start: DhtCore, old: SignedRecord, new: SignedRecord) -> None:
        lookup = start.lookup(new.key, paths=scenario.paths, quorum=quorum)
        lookup.alpha = scenario.alpha
        request = start.find_value(new.key)
        forged = dataclasses.replace(new, value=b"forged")
        refused_before = start.refused["BadRecordSignature"]

        def answer_of(contact: Contact) -> bytes | None:
            core = network.cores[contact.id]
            answer = core.answer(decode_request(request), EPOCH + clock.now)
            if contact.id in bad and isinstance(answer, Value) and answer.record is not None:
                return encode(Value(forged if scenario.behaviour == "forge" else old))
            return encode(answer)

        def done(r: LookupResult[SignedRecord], seconds: float, dials: int) -> None:
            nonlocal forged_seen, forged_refused
            got = start.newest(r.values)
            kind = "none" if got is None else "current" if got.sequence == 2 else "stale"
            outcomes.append((kind, r.messages, r.rounds))
            refused = start.refused["BadRecordSignature"] - refused_before
            forged_refused += refused
            forged_seen += refused + sum(1 for v in r.values if v.value == b"forged")

        links.run(start, lookup, answer_of, EPOCH, done)

    plan = [(rng.choice(honest), rng.randrange(publishers)) for _ in range(scenario.lookups)]
    for asker, which in plan:
        one_lookup(network.cores[asker], *records[which])
        clock.run()
    for core in touched:  # leave the network as it was: scenarios stay independent
        core.store = RecordStore()
        core.limiter = StoreLimiter()
    n = len(outcomes)
    return ValueResult(
        scenario=scenario, quorum=quorum, lookups=n,
        current=sum(1 for o in outcomes if o[0] == "current") / n,
        stale=sum(1 for o in outcomes if o[0] == "stale") / n,
        missing=sum(1 for o in outcomes if o[0] == "none") / n,
        forged_seen=forged_seen, forged_refused=forged_refused,
        replays_refused=replays_refused, replays_accepted=replays_accepted,
        stores_refused=stores_refused,
        messages_mean=statistics.fmean(float(o[1]) for o in outcomes),
        rounds_median=statistics.median(float(o[2]) for o in outcomes),
    )


def fingerprint(results: Sequence[DhtResult | ValueResult]) -> str:
    """A short hash of the figures (two runs with one seed print the same)."""
    text = repr([dataclasses.astuple(r) for r in results])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
