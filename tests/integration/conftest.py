"""Fixtures for integration tests: real tor / i2pd processes on 127.0.0.1."""

import os
from collections.abc import Iterator

import pytest

from aegis_hidden.testing import I2PNetwork, TorNetwork


@pytest.fixture(scope="session")
def tor_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorNetwork]:
    """One private Tor network (3 authorities, 2 relays, 1 client) for the whole run.

    Started once, bootstrapped before the first test uses it, stopped at the end;
    the instances' notice logs stay under the pytest temporary directory.
    """
    net = TorNetwork(tmp_path_factory.mktemp("tornet"))
    net.setup()
    net.start()
    try:
        net.wait_bootstrapped(240)
        yield net
    finally:
        net.stop()
        print(f"\nprivate Tor network logs: {net.directory}")


@pytest.fixture(scope="session")
def i2p_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[I2PNetwork]:
    """One private I2P network (4 patched i2pd routers on 127.0.0.1) for the whole run.

    Builds the patched i2pd once per machine if it is missing (.ci/build-i2pd.sh),
    waits until every router can build tunnels, stops all routers at the end; the
    routers' logs stay under the pytest temporary directory.
    """
    net = I2PNetwork(tmp_path_factory.mktemp("i2pnet"),
                     loglevel=os.environ.get("AEGIS_I2PD_LOGLEVEL", "info"))
    try:
        net.setup()
        net.start()
        net.wait_ready(240)
        yield net
    finally:
        net.stop()
        print(f"\nprivate I2P network logs: {net.directory}")
