"""Deterministic in-process networks on a virtual clock that drive the real cores.

- :func:`simulate` / :class:`MixnetScenario`: senders through forwarding
  nodes with the real Poisson link schedulers and mix pools; sender anonymity
  (entropy, effective anonymity set) of forwarded messages as a global
  passive adversary sees it (``benchmarks/mixsim.py`` prints it per profile).
- :func:`simulate_lookups` / :func:`simulate_values` / :class:`DhtNetwork` /
  :class:`DhtScenario`: Kademlia node and value lookups over a network of real
  DHT cores with onion-like delays, loss and adversaries that drop, lie,
  eclipse, forge or replay (``benchmarks/dht_sim.py``, docs/dht.md).
- :func:`simulate_pubsub` / :class:`PubSubScenario`: topic pub/sub over real
  pub/sub cores (gossipsub with scores, the mesh without, flooding) under
  cold boot, covert flash and eclipse attacks; :func:`simulate_anonymity` /
  :class:`AnonymityScenario`: the first-spy estimator against plain gossip and
  anonymous topics (``benchmarks/pubsub_sim.py``, docs/pubsub.md).
"""

from ._dht import DhtNetwork, DhtResult, DhtScenario, ValueResult, simulate_lookups, simulate_values
from ._dht import fingerprint as dht_fingerprint
from ._mixnet import MixnetResult, MixnetScenario, describe, simulate
from ._pubsub import (
    ATTACKS,
    PROTOCOLS,
    AnonymityResult,
    AnonymityScenario,
    PubSubResult,
    PubSubScenario,
    simulate_anonymity,
    simulate_pubsub,
)
from ._pubsub import fingerprint as pubsub_fingerprint

__all__ = [
    "ATTACKS",
    "PROTOCOLS",
    "AnonymityResult",
    "AnonymityScenario",
    "DhtNetwork",
    "DhtResult",
    "DhtScenario",
    "MixnetResult",
    "MixnetScenario",
    "PubSubResult",
    "PubSubScenario",
    "ValueResult",
    "describe",
    "dht_fingerprint",
    "pubsub_fingerprint",
    "simulate",
    "simulate_anonymity",
    "simulate_lookups",
    "simulate_pubsub",
    "simulate_values",
]
