"""The DHT simulation (aegis_hidden.sim._dht) on 200 nodes: it runs the real core, deterministically.

The 10,000-node figures come from ``benchmarks/dht_sim.py`` (docs/dht.md).
"""

from __future__ import annotations

import pytest

from aegis_hidden.config import DhtConfig
from aegis_hidden.sim import DhtNetwork, DhtScenario, dht_fingerprint, simulate_lookups


@pytest.fixture(scope="module")
def network() -> DhtNetwork:
    return DhtNetwork(200, seed=3)


def test_tables_are_filled_through_the_real_routing_table(network: DhtNetwork) -> None:
    sizes = [len(core.table) for core in network.cores.values()]
    assert min(sizes) >= 20
    assert max(len(b.contacts) for core in network.cores.values()
               for b in core.table.buckets.values()) <= 20


def test_every_lookup_succeeds_without_adversaries(network: DhtNetwork) -> None:
    r = simulate_lookups(network, DhtScenario(lookups=40, loss=0.0), seed=1)
    assert r.lookups == 40 and r.success == 1.0
    assert r.rounds_median <= 4
    # a node lookup ends once an answer names the target, before the k closest answered
    assert r.messages_mean < 20
    assert r.timeouts_mean == 0.0


def test_same_seed_same_figures(network: DhtNetwork) -> None:
    scenario = DhtScenario(0.2, "lie", 2, lookups=20)
    a = simulate_lookups(network, scenario, seed=5)
    b = simulate_lookups(DhtNetwork(200, seed=3), scenario, seed=5)
    assert a == b and dht_fingerprint([a]) == dht_fingerprint([b])
    assert simulate_lookups(network, scenario, seed=6) != a


def test_dropping_adversaries_cost_timeouts_and_disjoint_paths_cost_messages(
        network: DhtNetwork) -> None:
    none = simulate_lookups(network, DhtScenario(0.0, "drop", 1, lookups=30), seed=2)
    drop = simulate_lookups(network, DhtScenario(0.3, "drop", 1, lookups=30), seed=2)
    assert drop.success == 1.0
    assert drop.seconds_p95 > none.seconds_p95  # a dropper is waited on until the timeout
    plain = simulate_lookups(network, DhtScenario(0.2, "lie", 1, lookups=30), seed=2)
    disjoint = simulate_lookups(network, DhtScenario(0.2, "lie", 4, lookups=30), seed=2)
    assert disjoint.messages_mean > plain.messages_mean
    assert disjoint.success >= 0.9


def test_a_request_times_out_after_the_nodes_own_request_timeout(network: DhtNetwork) -> None:
    assert DhtScenario().timeout == DhtConfig().request_timeout == 30.0
    # 90 % droppers: the same lookups see the same drops, and each is waited out
    short = simulate_lookups(network, DhtScenario(0.9, "drop", 1, lookups=10, timeout=5.0), seed=4)
    long = simulate_lookups(network, DhtScenario(0.9, "drop", 1, lookups=10, timeout=30.0), seed=4)
    assert short.timeouts_mean == long.timeouts_mean > 0
    assert long.seconds_p95 == pytest.approx(6 * short.seconds_p95)


def test_eclipse_sybils_are_ground_near_the_target_and_disjoint_paths_resist_them(
        network: DhtNetwork) -> None:
    target = network.contacts[0].id
    sybils = network.sybils(target)
    assert len(sybils) == network.k and network.sybils(target) is sybils  # cached
    bits = network.sybil_bits
    assert all(c.id[0] >> (8 - min(bits, 8)) == target[0] >> (8 - min(bits, 8)) for c in sybils)
    plain = simulate_lookups(network, DhtScenario(0.3, "eclipse", 1, lookups=40), seed=4)
    disjoint = simulate_lookups(network, DhtScenario(0.3, "eclipse", 4, lookups=40), seed=4)
    assert disjoint.success >= plain.success
    assert disjoint.success >= 0.95


def test_signed_values_forgeries_and_replays_are_refused(network: DhtNetwork) -> None:
    from aegis_hidden.sim import simulate_values

    forge = simulate_values(network, DhtScenario(0.3, "forge", 1, lookups=20), seed=8,
                            publishers=2)
    assert forge.current == 1.0
    assert forge.forged_seen > 0 and forge.forged_refused == forge.forged_seen
    assert forge.replays_refused == 2 * network.k and forge.replays_accepted == 0
    replay1 = simulate_values(network, DhtScenario(0.3, "replay", 1, lookups=20), seed=8,
                              publishers=2, quorum=1)
    replay3 = simulate_values(network, DhtScenario(0.3, "replay", 1, lookups=20), seed=8,
                              publishers=2, quorum=3)
    assert replay3.current >= replay1.current and replay3.stale <= replay1.stale
    # the network is left as it was: the same run again gives the same figures
    assert simulate_values(network, DhtScenario(0.3, "replay", 1, lookups=20), seed=8,
                           publishers=2, quorum=1) == replay1


def test_a_network_built_by_joining_finds_its_nodes() -> None:
    joined = DhtNetwork(150, seed=9, join=True)
    assert joined.join_messages > 0
    assert min(len(core.table) for core in joined.cores.values()) >= 10
    r = simulate_lookups(joined, DhtScenario(lookups=30, loss=0.0), seed=1)
    assert r.success == 1.0
    assert DhtNetwork(150, seed=9, join=True).join_messages == joined.join_messages


def test_links_dial_once_then_reuse_the_session_and_keep_at_most_max_sessions() -> None:
    from aegis_hidden.sim._dht import MAX_SESSIONS, Sessions

    base = Sessions()
    a, b = b"a" * 32, b"b" * 32
    assert base.use(a, b) is False  # a dial
    assert base.use(a, b) is True and base.use(b, a) is True  # both ends hold it
    overlay = Sessions(base)
    assert overlay.use(a, b) is True  # read through, never written below
    c = b"c" * 32
    assert overlay.use(a, c) is False and base.use(a, c) is False
    for n in range(MAX_SESSIONS):
        base.use(a, n.to_bytes(32, "big"))
    assert base.use(a, b) is False  # least recently used, closed
    base.drop(a)
    assert base.use(c, a) is False  # gone with its node, at both ends


def test_churn_with_refresh_on_the_nodes_clocks() -> None:
    from aegis_hidden.sim._dht import ChurnReport, simulate_churn

    def run() -> tuple[ChurnReport]:
        joined = DhtNetwork(300, seed=12, join=True, refresh=1)
        sizes = [len(core.table.siblings()) for core in joined.cores.values()]
        assert min(sizes) >= 20  # every node knows its neighbours
        report = simulate_churn(joined, [DhtScenario(paths=p, churn=0.3, lookups=40)
                                         for p in (1, 4)], seed=3, window=900.0)
        return (report,)

    (report,) = first = run()
    assert report.offline_start == round(0.3 * 300 * 1800 / 3600)  # the steady state
    assert report.left > 0 and report.returned > 0 and report.refresh_lookups > 0
    plain, disjoint = report.results
    assert plain.lookups == disjoint.lookups >= 30
    assert plain.success >= 0.95 and disjoint.success >= 0.95
    assert disjoint.messages_mean > plain.messages_mean
    assert plain.dials_mean <= plain.messages_mean
    assert run() == first  # deterministic


def test_cores_are_built_as_the_node_builds_them_with_the_candidate_queue() -> None:
    """The engine's cores take the node's settings and its candidate queue: a node
    that asked enters a table only once it answered that node's check (at a tick);
    a bootstrap contact seeds the lookup and enters only by answering."""
    import random

    from aegis_hidden.config import DhtConfig
    from aegis_hidden.dht import CHECKS_PER_TICK, MAX_CANDIDATES, Contact
    from aegis_hidden.sim._dht import TICK, node_core

    defaults = DhtConfig()
    assert defaults.maintenance_interval == TICK
    network = DhtNetwork(60, seed=21)
    for core in network.cores.values():
        assert core.candidates is not None
        assert (core.candidates.max_size, core.candidates.per_tick) == (MAX_CANDIDATES,
                                                                        CHECKS_PER_TICK)
        assert (core.k, core.alpha) == (defaults.k, defaults.alpha)
        assert core.table.refresh_interval == defaults.refresh_interval

    rng = random.Random(1)
    bootstrap = network.cores[network.contacts[0].id]
    newcomer = node_core(Contact(rng.randbytes(32)))
    network.cores[newcomer.own.id] = newcomer
    # the bootstrap node does not answer: the newcomer's table stays empty
    network.join(newcomer, bootstrap.own, rng, offline=lambda i: i == bootstrap.own.id)
    assert len(newcomer.table) == 0
    network.join(newcomer, bootstrap.own, rng, now=1.0)
    assert newcomer.table.knows(bootstrap.own)  # it answered
    queue = bootstrap.candidates
    assert queue is not None
    assert newcomer.own in queue and not bootstrap.table.knows(newcomer.own)
    asked = [c for c in network.cores.values() if c.candidates and newcomer.own in c.candidates]
    assert asked
    # a tick checks at most CHECKS_PER_TICK: the bootstrap's queue holds only the newcomer
    assert network.tick(bootstrap, 1.0 + TICK) == 1
    assert bootstrap.table.knows(newcomer.own) and newcomer.own not in queue
    # one that does not answer its check stays out
    other = next(c for c in asked if c is not bootstrap)
    while other.candidates is not None and newcomer.own in other.candidates:
        network.tick(other, 1.0 + TICK, offline=lambda i: i == newcomer.own.id)
    assert not other.table.knows(newcomer.own)


def test_peer_exchange_runs_at_the_ticks_as_the_node_runs_it() -> None:
    """At each tick a node offers up to PEX_PEERS peers it holds a session with up to
    MAX_OFFER of its table contacts; the receiver queues them as candidates (its
    per-sender rate never exceeded at one offer a tick) and they enter its table
    only by answering its checks: the tables come out fuller than without it."""
    from aegis_hidden.dht import MAX_OFFER, PEX_PEERS

    without = DhtNetwork(150, seed=9, join=True, exchange=False)
    assert without.offers == 0
    with_pex = DhtNetwork(150, seed=9, join=True)
    assert with_pex.exchange and with_pex.offers > 0 and with_pex.offers_refused == 0
    assert with_pex.offered <= MAX_OFFER * with_pex.offers
    ticks = 150 * (with_pex.now / 60.0)  # an upper bound on the ticks run
    assert with_pex.offers <= PEX_PEERS * ticks
    # the offered contacts were checked (PINGs) before they were trusted
    assert with_pex.checks > without.checks
    assert (sum(len(c.table) for c in with_pex.cores.values())
            > sum(len(c.table) for c in without.cores.values()))
    r = simulate_lookups(with_pex, DhtScenario(lookups=30, loss=0.0), seed=1)
    assert r.success == 1.0
