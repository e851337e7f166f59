"""Deterministic in-process networks on a virtual clock that drive the real cores.

- :func:`simulate` / :class:`MixnetScenario`: senders through forwarding
  nodes with the real Poisson link schedulers and mix pools; sender anonymity
  (entropy, effective anonymity set) of forwarded messages as a global
  passive adversary sees it (``benchmarks/mixsim.py`` prints it per profile).
- :func:`simulate_lookups` / :class:`DhtNetwork` / :class:`DhtScenario`: Kademlia
  lookups over a network of real DHT cores with onion-like delays, loss and
  adversaries that drop or lie (``benchmarks/dht_sim.py``, docs/dht.md).
"""

from ._dht import DhtNetwork, DhtResult, DhtScenario, simulate_lookups
from ._dht import fingerprint as dht_fingerprint
from ._mixnet import MixnetResult, MixnetScenario, describe, simulate

__all__ = [
    "DhtNetwork",
    "DhtResult",
    "DhtScenario",
    "MixnetResult",
    "MixnetScenario",
    "describe",
    "dht_fingerprint",
    "simulate",
    "simulate_lookups",
]
