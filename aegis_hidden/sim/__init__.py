"""Deterministic in-process networks on a virtual clock that drive the real cores.

- :func:`simulate` / :class:`MixnetScenario`: senders through forwarding
  nodes with the real Poisson link schedulers and mix pools; sender anonymity
  (entropy, effective anonymity set) of forwarded messages as a global
  passive adversary sees it (``benchmarks/mixsim.py`` prints it per profile).
"""

from ._mixnet import MixnetResult, MixnetScenario, describe, simulate

__all__ = ["MixnetResult", "MixnetScenario", "describe", "simulate"]
