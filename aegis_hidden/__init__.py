"""aegis-hidden: a Tor/I2P-native privacy node.

Sub-packages, bottom up: :mod:`config`, :mod:`identity`, :mod:`tor`, :mod:`i2p`,
:mod:`session`, :mod:`wire`, :mod:`mixing`, :mod:`dht`, :mod:`pubsub`,
:mod:`peers`, :mod:`api`, :mod:`audit`; :mod:`tap` builds the service tree.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
