"""Fakes of every interface, and harnesses for private Tor and I2P networks.

Each module adds its exports below.
"""

from ._tornet import TorNetwork as TorNetwork  # private Tor network harness
from ._tornet import TorNetworkError as TorNetworkError
