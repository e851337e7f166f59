"""Deterministic in-process networks on a virtual clock that drive the real cores.

- :func:`simulate` / :class:`MixnetScenario`: senders through forwarding
  nodes with the real Poisson link schedulers and mix pools; sender anonymity
  (entropy, effective anonymity set) of forwarded messages as a global
  passive adversary sees it (``benchmarks/mixsim.py`` prints it per profile).
- :func:`simulate_lookups` / :func:`simulate_values` / :class:`DhtNetwork` /
  :class:`DhtScenario`: Kademlia node and value lookups over a network of real
  DHT cores with onion-like delays, loss and adversaries that drop, lie,
  eclipse, forge or replay (``benchmarks/dht_sim.py``, docs/dht.md).
"""

from ._dht import DhtNetwork, DhtResult, DhtScenario, ValueResult, simulate_lookups, simulate_values
from ._dht import fingerprint as dht_fingerprint
from ._mixnet import MixnetResult, MixnetScenario, describe, simulate

__all__ = [
    "DhtNetwork",
    "DhtResult",
    "DhtScenario",
    "MixnetResult",
    "MixnetScenario",
    "ValueResult",
    "describe",
    "dht_fingerprint",
    "simulate",
    "simulate_lookups",
    "simulate_values",
]
