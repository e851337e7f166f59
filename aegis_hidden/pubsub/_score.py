"""Peer scores without IP addresses (pure; time is read from the injected clock).

The shape is gossipsub v1.1's (libp2p/specs, pubsub/gossipsub): per topic,
P1 time in the mesh, P2 first deliveries, P3 the mesh delivery deficit and
P3b its sticky form after a prune, P4 invalid messages; for the peer, P7 the
behaviour penalty. P3's threshold is never more than the messages the topic
carried lately (first deliveries from any peer, decayed as a peer's mesh
deliveries are): on a quiet topic no peer owes a delivery, while a peer that
withholds what others deliver still falls short. Behind Tor every peer "comes from" 127.0.0.1, so the IP
colocation term P6 is meaningless; in its place an identity term: the caller
says how old a peer's identity is and how hard a puzzle it solved
(:class:`IdentityCost`), and older, costlier identities score higher, up to
``identity_weight``. Counters decay every ``decay_interval`` (the heartbeat).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class IdentityCost:
    """What the caller knows of a peer's identity: age in seconds, puzzle difficulty in bits."""

    age: float
    difficulty: int


@dataclass(frozen=True)
class TopicScoreParams:
    topic_weight: float = 1.0
    # P1: time in the mesh (positive, capped)
    time_in_mesh_weight: float = 0.01
    time_in_mesh_quantum: float = 1.0
    time_in_mesh_cap: float = 300.0
    # P2: first deliveries (positive, capped, decaying)
    first_deliveries_weight: float = 1.0
    first_deliveries_decay: float = 0.98
    first_deliveries_cap: float = 50.0
    # P3: mesh delivery deficit (negative weight; the deficit is squared)
    mesh_deliveries_weight: float = -1.0
    mesh_deliveries_decay: float = 0.97
    #: deliveries a mesh peer should have made (decayed); set from the topic's expected rate.
    #: It is capped by the messages the topic carried (first deliveries from anyone, decayed
    #: alike): a window in which nothing was published owes nothing
    mesh_deliveries_threshold: float = 1.0
    mesh_deliveries_cap: float = 20.0
    #: seconds in the mesh before P3 counts (time to learn what a topic carries)
    mesh_deliveries_activation: float = 30.0
    #: a duplicate this soon after the first copy still counts as a mesh delivery
    mesh_deliveries_window: float = 3.0
    # P3b: the deficit at prune time, kept after the peer left the mesh
    mesh_failure_penalty_weight: float = -1.0
    mesh_failure_penalty_decay: float = 0.99
    # P4: invalid messages (negative weight; squared)
    invalid_weight: float = -20.0
    invalid_decay: float = 0.99


@dataclass(frozen=True)
class ScoreParams:
    topics: dict[str, TopicScoreParams] = field(default_factory=dict)
    #: used for a topic not in ``topics``
    default_topic: TopicScoreParams = TopicScoreParams()
    topic_score_cap: float = 50.0
    # the identity term in place of IP colocation: weight x (age share + difficulty share) / 2
    identity_weight: float = 2.0
    identity_age_full: float = 7 * 86400.0
    identity_difficulty_min: int = 0
    identity_difficulty_full: int = 24
    identity_refresh: float = 60.0  # seconds between two questions about one peer's identity
    # P7: behaviour penalty (negative weight; the excess over the threshold, squared)
    behaviour_penalty_weight: float = -10.0
    behaviour_penalty_threshold: float = 1.0
    behaviour_penalty_decay: float = 0.98
    decay_interval: float = 1.0
    decay_to_zero: float = 0.01
    #: how long a disconnected peer's (negative) score is remembered
    retain_score: float = 3600.0

    def for_topic(self, topic: str) -> TopicScoreParams:
        return self.topics.get(topic, self.default_topic)


@dataclass(frozen=True)
class Thresholds:
    """Scores below which a peer loses something (each lower than the one before)."""

    gossip: float = -10.0  # no IHAVE/IWANT to or from it
    publish: float = -50.0  # not flood-published to
    graylist: float = -80.0  # its RPCs are ignored
    accept_px: float = 5.0  # peers it offers on PRUNE are taken
    opportunistic_graft: float = 3.0  # below this median, better peers are grafted

    def __post_init__(self) -> None:
        if not (0 >= self.gossip >= self.publish >= self.graylist):
            raise ValueError("thresholds must satisfy 0 >= gossip >= publish >= graylist")
        if self.accept_px < 0 or self.opportunistic_graft < 0:
            raise ValueError("accept_px and opportunistic_graft thresholds are not negative")


@dataclass
class _TopicStats:
    in_mesh: bool = False
    grafted_at: float = 0.0
    mesh_time: float = 0.0
    first_deliveries: float = 0.0
    mesh_deliveries: float = 0.0
    mesh_active: bool = False
    mesh_failure: float = 0.0
    invalid: float = 0.0


@dataclass
class _PeerStats:
    topics: dict[str, _TopicStats] = field(default_factory=dict)
    behaviour: float = 0.0
    connected: bool = True
    forget_at: float = 0.0

    def topic(self, topic: str) -> _TopicStats:
        t = self.topics.get(topic)
        if t is None:
            t = self.topics[topic] = _TopicStats()
        return t


class PeerScore:
    """Every peer's counters and score; ``clock()`` gives the time in seconds."""

    def __init__(self, params: ScoreParams, clock: Callable[[], float],
                 identity: Callable[[str], IdentityCost | None] | None = None) -> None:
        self.params = params
        self._clock = clock
        self._identity = identity
        self._peers: dict[str, _PeerStats] = {}
        #: scores computed since the last change of the peer's counters or the last decay
        #: (time in the mesh moves them too: they are refreshed at every heartbeat)
        self._cached: dict[str, float] = {}
        self._identity_cached: dict[str, tuple[float, float]] = {}  # peer -> (term, until)
        #: the score when last computed, kept until something could have lowered it: first
        #: deliveries only raise a score, so they leave it (``at_least`` answers from it)
        self._floor: dict[str, float] = {}
        #: per topic, first deliveries from any peer (capped and decayed as a peer's mesh
        #: deliveries): what P3 and P3b may expect a mesh peer to have delivered
        self._carried: dict[str, float] = {}

    def expected(self, topic: str) -> float:
        """P3's threshold for ``topic`` now: the configured one, at most what the topic carried."""
        p = self.params.for_topic(topic)
        return min(p.mesh_deliveries_threshold, self._carried.get(topic, 0.0))

    # -- membership ---------------------------------------------------------
    def add_peer(self, peer: str) -> None:
        self._forget_score(peer)
        stats = self._peers.get(peer)
        if stats is None:
            self._peers[peer] = _PeerStats()
        else:  # a peer coming back finds its retained (negative) score
            stats.connected = True

    def remove_peer(self, peer: str) -> None:
        stats = self._peers.get(peer)
        if stats is None:
            return
        positive = self.score(peer) > 0
        self._forget_score(peer)
        if positive:
            del self._peers[peer]  # nothing worth remembering
            self._identity_cached.pop(peer, None)
            return
        stats.connected = False
        stats.forget_at = self._clock() + self.params.retain_score
        for topic, t in stats.topics.items():
            if t.in_mesh:
                self.prune(peer, topic)
            t.first_deliveries = 0.0  # keep only what counts against it

    def graft(self, peer: str, topic: str) -> None:
        self._forget_score(peer)
        stats = self._peers.get(peer)
        if stats is None:
            return
        t = stats.topic(topic)
        t.in_mesh, t.grafted_at, t.mesh_time, t.mesh_active = True, self._clock(), 0.0, False

    def prune(self, peer: str, topic: str) -> None:
        self._forget_score(peer)
        stats = self._peers.get(peer)
        if stats is None:
            return
        t = stats.topic(topic)
        expected = self.expected(topic)
        if t.mesh_active and t.mesh_deliveries < expected:
            deficit = expected - t.mesh_deliveries
            t.mesh_failure += deficit * deficit
        t.in_mesh = False

    def _forget_score(self, peer: str) -> None:
        self._cached.pop(peer, None)
        self._floor.pop(peer, None)

    # -- events -------------------------------------------------------------
    def first_delivery(self, peer: str, topic: str) -> None:
        p = self.params.for_topic(topic)
        carried = self._carried.get(topic, 0.0)
        self._carried[topic] = min(p.mesh_deliveries_cap, carried + 1)
        if carried < p.mesh_deliveries_threshold:
            # the topic now owes more: other mesh peers' scores may be lower
            self._cached.clear()
            self._floor.clear()
        self._cached.pop(peer, None)  # raises the score: the floor stays
        stats = self._peers.get(peer)
        if stats is None:
            return
        t = stats.topic(topic)
        t.first_deliveries = min(p.first_deliveries_cap, t.first_deliveries + 1)
        if t.in_mesh:
            t.mesh_deliveries = min(p.mesh_deliveries_cap, t.mesh_deliveries + 1)

    def near_first_delivery(self, peer: str, topic: str, first_seen: float) -> None:
        """A duplicate: it counts for P3 when it came within the window after the first copy."""
        stats = self._peers.get(peer)
        if stats is None:
            return
        t = stats.topics.get(topic)
        if t is None or not t.in_mesh:
            return
        p = self.params.topics.get(topic, self.params.default_topic)
        if self._clock() - first_seen <= p.mesh_deliveries_window:
            t.mesh_deliveries = min(p.mesh_deliveries_cap, t.mesh_deliveries + 1)
            self._cached.pop(peer, None)  # only a change moves the score

    def invalid(self, peer: str, topic: str) -> None:
        self._forget_score(peer)
        stats = self._peers.get(peer)
        if stats is not None:
            stats.topic(topic).invalid += 1

    def penalty(self, peer: str, count: float = 1.0) -> None:
        self._forget_score(peer)
        stats = self._peers.get(peer)
        if stats is not None:
            stats.behaviour += count

    # -- the score ----------------------------------------------------------
    def identity_term(self, peer: str) -> float:
        """``identity_weight`` x the mean of the age share and the difficulty share (0..1 each).

        Asked of the caller at most once per ``identity_refresh`` seconds per peer.
        """
        if self._identity is None:
            return 0.0
        now = self._clock()
        held = self._identity_cached.get(peer)
        if held is not None and held[1] > now:
            return held[0]
        cost = self._identity(peer)
        value = 0.0
        if cost is not None:
            p = self.params
            age = min(1.0, max(0.0, cost.age) / p.identity_age_full)
            span = max(1, p.identity_difficulty_full - p.identity_difficulty_min)
            difficulty = min(1.0, max(0.0, (cost.difficulty - p.identity_difficulty_min) / span))
            value = p.identity_weight * (age + difficulty) / 2
        self._identity_cached[peer] = (value, now + self.params.identity_refresh)
        return value

    def score(self, peer: str) -> float:
        held = self._cached.get(peer)
        if held is not None:
            return held
        stats = self._peers.get(peer)
        if stats is None:
            return 0.0
        now = self._clock()
        total = 0.0
        topics = self.params.topics
        default = self.params.default_topic
        for topic, t in stats.topics.items():
            p = topics.get(topic, default)
            s = 0.0
            if t.in_mesh:
                mesh_time = now - t.grafted_at
                s += p.time_in_mesh_weight * min(mesh_time / p.time_in_mesh_quantum,
                                                 p.time_in_mesh_cap)
                expected = self.expected(topic)
                if t.mesh_active and t.mesh_deliveries < expected:
                    deficit = expected - t.mesh_deliveries
                    s += p.mesh_deliveries_weight * deficit * deficit
            s += p.first_deliveries_weight * t.first_deliveries
            s += p.mesh_failure_penalty_weight * t.mesh_failure
            s += p.invalid_weight * t.invalid * t.invalid
            total += p.topic_weight * s
        total = min(total, self.params.topic_score_cap)
        if self._identity is not None:
            held_identity = self._identity_cached.get(peer)
            total += (held_identity[0] if held_identity is not None and held_identity[1] > now
                      else self.identity_term(peer))
        excess = stats.behaviour - self.params.behaviour_penalty_threshold
        if excess > 0:
            total += self.params.behaviour_penalty_weight * excess * excess
        self._cached[peer] = self._floor[peer] = total
        return total

    def at_least(self, peer: str, threshold: float) -> bool:
        """``score(peer) >= threshold``, from the floor when it settles the question."""
        floor = self._floor.get(peer)
        if floor is not None and floor >= threshold:
            return True
        return self.score(peer) >= threshold

    def decay(self) -> None:
        """One decay step (at every heartbeat); forgets disconnected peers whose time is up.

        A peer's floor (``at_least``) is carried over, lowered by whatever the decay takes
        from its score: the exact change of P2, P3, P3b and P4, when negative (P1 only grows
        with time, P7 only shrinks). It is dropped when the identity term is due for a
        refresh, so that term is asked again at the next computation.
        """
        now = self._clock()
        self._cached.clear()
        floors, self._floor = self._floor, {}
        zero = self.params.decay_to_zero
        topics = self.params.topics
        default = self.params.default_topic
        identity = self._identity is not None
        held_identity = self._identity_cached
        before_carried = dict(self._carried)
        for topic, carried in before_carried.items():
            v = carried * topics.get(topic, default).mesh_deliveries_decay
            if v >= zero:
                self._carried[topic] = v
            else:
                del self._carried[topic]
        gone = []
        for peer, stats in self._peers.items():
            if not stats.connected and now >= stats.forget_at:
                gone.append(peer)
                continue
            floor = floors.get(peer)
            if floor is not None and identity:
                held = held_identity.get(peer)
                if held is None or held[1] <= now:
                    floor = None
            change = 0.0
            for topic, t in stats.topics.items():
                p = topics.get(topic, default)
                was_active = t.mesh_active
                if t.in_mesh and not was_active and (
                        now - t.grafted_at >= p.mesh_deliveries_activation):
                    t.mesh_active = True
                if not (t.first_deliveries or t.mesh_deliveries or t.mesh_failure or t.invalid
                        or t.mesh_active != was_active or (t.in_mesh and t.mesh_active
                                                           and topic in before_carried)):
                    continue
                fd, md, mf, bad = t.first_deliveries, t.mesh_deliveries, t.mesh_failure, t.invalid
                if fd:
                    v = fd * p.first_deliveries_decay
                    t.first_deliveries = v if v >= zero or v <= -zero else 0.0
                if md:
                    v = md * p.mesh_deliveries_decay
                    t.mesh_deliveries = v if v >= zero or v <= -zero else 0.0
                if mf:
                    t.mesh_failure = _decayed(mf, p.mesh_failure_penalty_decay, zero)
                if bad:
                    t.invalid = _decayed(bad, p.invalid_decay, zero)
                if floor is None:
                    continue
                d = (p.first_deliveries_weight * (t.first_deliveries - fd)
                     + p.mesh_failure_penalty_weight * (t.mesh_failure - mf)
                     + p.invalid_weight * (t.invalid * t.invalid - bad * bad))
                if t.in_mesh and t.mesh_active:
                    was = min(p.mesh_deliveries_threshold, before_carried.get(topic, 0.0))
                    threshold = self.expected(topic)
                    before = was - md if was_active and md < was else 0.0
                    after = threshold - t.mesh_deliveries if t.mesh_deliveries < threshold else 0.0
                    d += p.mesh_deliveries_weight * (after * after - before * before)
                change += p.topic_weight * d
            if floor is not None:
                self._floor[peer] = floor + min(change, 0.0)
            if stats.behaviour:
                stats.behaviour = _decayed(stats.behaviour, self.params.behaviour_penalty_decay,
                                           zero)
        for peer in gone:
            del self._peers[peer]
            self._identity_cached.pop(peer, None)

    def known(self) -> int:
        return len(self._peers)


def _decayed(value: float, decay: float, zero: float) -> float:
    value *= decay
    return 0.0 if math.fabs(value) < zero else value
