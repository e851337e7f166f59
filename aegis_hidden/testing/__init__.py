"""Fakes of every interface, and harnesses for private Tor and I2P networks.

Each module adds its exports below.
"""

from ._captures import SyntheticCapture as SyntheticCapture  # pcap files for the audit
from ._captures import dns_query as dns_query
from ._captures import link_frame as link_frame
from ._captures import poisson_times as poisson_times
from ._captures import tcp_packet as tcp_packet
from ._fake_dht import FakeDHT as FakeDHT  # an in-memory IDHT
from ._fake_sessions import FakeHandshakeFailed as FakeHandshakeFailed  # in-memory sessions
from ._fake_sessions import FakeLinkClosed as FakeLinkClosed
from ._fake_sessions import FakeNetwork as FakeNetwork
from ._fake_sessions import FakePeerLink as FakePeerLink
from ._fake_sessions import FakeSessionFactory as FakeSessionFactory
from ._fake_sessions import FakeUnreachable as FakeUnreachable
from ._fake_sessions import result_of as result_of
from ._i2pnet import I2PNetwork as I2PNetwork  # private I2P network harness
from ._i2pnet import I2PNetworkError as I2PNetworkError
from ._i2pnet import find_patched_i2pd as find_patched_i2pd
from ._sam_fake import FakeI2PNetwork as FakeI2PNetwork  # in-memory SAM v3 bridge
from ._sam_fake import FakeSAMBridge as FakeSAMBridge
from ._sam_fake import fake_private_key as fake_private_key
from ._sessions import MemoryTransportProvider as MemoryTransportProvider  # real sessions, in memory
from ._sessions import memory_identity as memory_identity
from ._tornet import STATE_FILE as STATE_FILE  # where a running private Tor network is described
from ._tornet import FakeTorControl as FakeTorControl  # in-memory tor control port
from ._tornet import FakeTorProcess as FakeTorProcess
from ._tornet import NodeProcess as NodeProcess  # node processes on a private network
from ._tornet import TorNetwork as TorNetwork  # private Tor network harness
from ._tornet import TorNetworkError as TorNetworkError
from ._tornet import free_ports as free_ports
from ._tornet import prepare_node as prepare_node
from ._tornet import set_bootstrap as set_bootstrap
from ._tornet import start_node as start_node
from ._tornet import wait_for as wait_for
