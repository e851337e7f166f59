"""Session-layer test helpers and fakes.

* :func:`memory_identity`: a :class:`NodeIdentity` held in memory (nothing on disk).
* :class:`MemoryTransportProvider`: an :class:`ITransportProvider` whose client
  endpoints connect, in memory (``twisted.internet.testing``), to the server
  factory registered for an address, so the *real* :class:`SessionFactory`
  runs end to end without Tor or I2P. Bytes move when :meth:`flush` is called.

Layers above sessions that only need links carrying messages use the
cryptography-free fakes in :mod:`aegis_hidden.testing._fake_sessions`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.test.iosim import FakeTransport, connect
from zope.interface import implementer

from ..crypto import xwing
from ..identity import I2PBinding, IdentityRecord, NodeIdentity, RecordKind, sign_record
from ..interfaces import ITransportProvider

__all__ = ["MemoryTransportProvider", "memory_identity"]


def memory_identity(now: float, *, i2p_destination: str = "",
                    lifetime: int = 30 * 24 * 3600, seed: bytes | None = None,
                    mldsa_seed: bytes | None = None, sequence: int = 1) -> NodeIdentity:
    """A fresh identity (master, X-Wing, ML-DSA-65, signed record) in memory.

    With ``i2p_destination`` (I2P base64) the record commits to it under a random
    salt and the identity holds the :class:`I2PBinding` that opens the commitment.
    """
    master_seed = seed if seed is not None else os.urandom(32)
    master = Ed25519PrivateKey.from_private_bytes(master_seed)
    xwing_secret, xwing_public = xwing.generate_keypair()
    mldsa_seed = mldsa_seed if mldsa_seed is not None else os.urandom(32)
    mldsa = MLDSA65PrivateKey.from_seed_bytes(mldsa_seed)
    binding = I2PBinding(i2p_destination, os.urandom(32)) if i2p_destination else None
    record = sign_record(IdentityRecord(
        kind=RecordKind.IDENTITY, ed25519_public=master.public_key().public_bytes_raw(),
        sequence=sequence, created=int(now), expires=int(now) + lifetime,
        xwing_public=xwing_public, mldsa_public=mldsa.public_key().public_bytes_raw(),
        i2p_commitment=binding.commitment() if binding else b""), master, mldsa)
    return NodeIdentity(Path("/nonexistent/in-memory-identity"), master_seed, xwing_secret,
                        mldsa_seed, record, binding)


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    def __init__(self, provider: MemoryTransportProvider, address: str, port: int) -> None:
        self._provider = provider
        self._address = address
        self._port = port

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        server = self._provider.servers.get((self._address, self._port))
        if server is None:
            return fail(ConnectionRefusedError(f"nothing listens at {self._address}:{self._port}"))
        client_proto = protocolFactory.buildProtocol(None)  # type: ignore[arg-type]
        server_proto = server.buildProtocol(None)  # type: ignore[arg-type]
        if client_proto is None or server_proto is None:
            return fail(ConnectionRefusedError("factory built no protocol"))
        client_t = FakeTransport(client_proto, isServer=False)
        server_t = FakeTransport(server_proto, isServer=True)
        pump = connect(server_proto, server_t, client_proto, client_t, greet=False)
        self._provider.pumps.append(pump)
        self._provider.connections.append((client_t, server_t))
        pump.flush()
        return succeed(client_proto)


@implementer(ITransportProvider)
class MemoryTransportProvider:
    """Dials ``<address>:<port>`` to whatever server factory was registered there."""

    def __init__(self, name: str = "tor", suffix: str = ".onion", *,
                 local_address: str | None = None, port: int = 7701) -> None:
        self.name = name
        self._suffix = suffix
        #: Where :meth:`serve` listens (one memory network carries many nodes).
        self.local_address = local_address
        self.port = port
        self.servers: dict[tuple[str, int], IProtocolFactory] = {}
        self.pumps: list[Any] = []
        self.connections: list[tuple[FakeTransport, FakeTransport]] = []

    def listen(self, address: str, port: int, factory: IProtocolFactory) -> None:
        self.servers[(address.lower(), port)] = factory

    def flush(self) -> None:
        """Move bytes both ways until every in-memory connection is idle."""
        for pump in list(self.pumps):
            pump.flush()

    def handles(self, address: str) -> bool:
        return address.lower().endswith(self._suffix)

    def client_endpoint(self, address: str, port: int) -> IStreamClientEndpoint:
        if not self.handles(address):
            raise ValueError(f"{address} is not a {self._suffix} address")
        return _MemoryEndpoint(self, address.lower(), port)

    def when_ready(self) -> Deferred[None]:
        return succeed(None)

    def serve(self, factory: IProtocolFactory) -> IService:
        """Listen at ``local_address:port`` (ITransportProvider: the provider's own
        listener) while the returned service runs."""
        if self.local_address is None:
            raise ValueError("MemoryTransportProvider.serve needs local_address")
        key = (self.local_address.lower(), self.port)
        provider = self

        class _Listener(Service):
            def startService(self) -> None:
                super().startService()
                provider.servers[key] = factory

            def stopService(self) -> None:
                super().stopService()
                provider.servers.pop(key, None)

        listener = _Listener()
        listener.setName("listener")
        return listener

    def state(self) -> Mapping[str, Any]:
        return {"name": self.name, "listening": sorted(f"{a}:{p}" for a, p in self.servers)}
