"""v3 client authorization on the private network (pytest-twisted, real tors).

A node-style provider (launch mode, its own tor) publishes a client-authorized
onion service; the network's client tor, driven through a connect-mode
provider, is refused (descriptor cannot be decrypted: SOCKS 0xF4) until the key
is added with ONION_CLIENT_AUTH_ADD, and then reaches it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from aegis_hidden.config import parse_config
from aegis_hidden.events import EventBus
from aegis_hidden.identity import create, expanded_secret_key, onion_address_from_public_key
from aegis_hidden.testing import TorNetwork, free_ports
from aegis_hidden.tor import ClientAuthKey, OnionClientAuthMissing, TorProvider

pytestmark = pytest.mark.integration


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"echo:" + data)


class Ask(Protocol):
    def __init__(self) -> None:
        self.answer: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"ping")

    def dataReceived(self, data: bytes) -> None:
        if not self.answer.called:
            self.answer.callback(data)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest_twisted.ensureDeferred  # type: ignore[untyped-decorator]
async def test_client_authorized_onion(tor_network: TorNetwork, tmp_path: Path) -> None:
    reactor = _reactor()
    port = free_ports(1)[0]
    listening = reactor.listenTCP(port, Factory.forProtocol(Echo), interface="127.0.0.1")
    service_cfg = parse_config({"network": {"listen_address": f"127.0.0.1:{free_ports(1)[0]}"},
                                "tor": {**tor_network.node_tor_config(),
                                        "bootstrap_timeout": 240}})
    client = tor_network.client
    client_cfg = parse_config({"tor": {"mode": "connect",
                                       "control_port": f"127.0.0.1:{client.control_port}"},
                               "network": {"connection_timeout": 60}})
    service = TorProvider(reactor, service_cfg, create(tmp_path / "s", time.time()),
                          tmp_path / "s", EventBus())
    dialer = TorProvider(reactor, client_cfg, create(tmp_path / "c", time.time()),
                         tmp_path / "c", EventBus())
    service.startService()
    dialer.startService()
    try:
        await service.when_ready()
        await dialer.when_ready()
        seed = os.urandom(32)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        onion = onion_address_from_public_key(
            Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw())
        key = ClientAuthKey.generate()
        sid = await service.add_onion(expanded_secret_key(seed), 80, f"127.0.0.1:{port}",
                                      client_auth=[key.public.descriptor_line()])
        assert sid + ".onion" == onion

        # without the key: refused once the descriptor is found (not decryptable)
        with pytest.raises(OnionClientAuthMissing):
            await dialer.client_endpoint(onion, 80, attempts=10).connect(
                Factory.forProtocol(Ask))

        # with the key: served
        await dialer.add_client_auth(onion, key)
        proto = await dialer.client_endpoint(onion, 80, attempts=10).connect(
            Factory.forProtocol(Ask))
        assert isinstance(proto, Ask)
        assert await proto.answer == b"echo:ping"
        await service.remove_onion(onion)
    finally:
        await dialer.stopService()
        await service.stopService()
        await listening.stopListening()
