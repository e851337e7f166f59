"""aegis-hidden: a Tor/I2P-native privacy node.

Sub-packages, bottom up: the leaves :mod:`crypto` and :mod:`addresses`; the pure
:mod:`wire`, :mod:`identity` and :mod:`config`; :mod:`interfaces` and :mod:`events`;
:mod:`peers`, :mod:`session`, :mod:`mixing`, :mod:`tor` and :mod:`i2p` (independent
of each other); the node core :mod:`node`; :mod:`api`; the tools :mod:`testing`,
:mod:`sim` and :mod:`audit`; :mod:`cli`; and :mod:`tap`, which builds the service
tree. docs/architecture.md draws it; the import-linter contracts in setup.cfg
check it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
