"""The API's own client-authorized onion service (``api.onion: true``).

It has its own Ed25519 key (``api_onion_key`` in the data dir, 0600), never the
node identity's: the management onion must not be linkable to the node's public
address. It is published through the Tor provider with ``ClientAuthV3`` for
every key of :func:`authorized_client_keys`, and refused when there is none
(an onion without client authorization is reachable by anyone who learns it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..config import Config, PrivacyError
from ..identity import atomic_write, expanded_secret_key, onion_address_from_public_key
from ._clients import authorized_client_keys

API_ONION_KEY_FILE = "api_onion_key"


class OnionPublisher(Protocol):
    """What the API needs of the Tor provider (``aegis_hidden.tor.TorProvider`` has it)."""

    def when_ready(self) -> Deferred[None]: ...

    async def add_onion(self, expanded_key: bytes, virtual_port: int, target: str, *,
                        client_auth: Sequence[str] = (), detach: bool = False) -> str: ...

    async def remove_onion(self, onion: str) -> None: ...


def load_or_create_api_onion_key(data_dir: Path) -> bytes:
    path = data_dir / API_ONION_KEY_FILE
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} is not a 32-byte key; delete it to make a new API onion")
        return seed
    seed = os.urandom(32)
    atomic_write(path, seed, mode=0o600)
    return seed


def api_onion_address(seed: bytes) -> str:
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    return onion_address_from_public_key(public)


class ApiOnionService(Service):
    """Publishes the API listener as a client-authorized onion once tor is ready."""

    log = Logger()
    name = "api-onion"

    def __init__(self, tor: OnionPublisher, config: Config, data_dir: Path) -> None:
        self.tor = tor
        self.config = config
        self.data_dir = data_dir
        self.onion: str | None = None
        self._published: Deferred[None] | None = None

    def client_keys(self) -> list[str]:
        keys = authorized_client_keys(self.config, self.data_dir)
        if not keys:
            raise PrivacyError(
                "api.authorized_clients", [],
                "is empty while api.onion is true: the API onion would be reachable by "
                "anyone who learns its address",
                "add an operator key with 'aegis-hidden api client-key add NAME' (or list "
                "keys in api.authorized_clients), or set api.onion: false")
        return keys

    def startService(self) -> None:
        super().startService()
        self._published = Deferred.fromCoroutine(self._publish())
        self._published.addErrback(
            lambda f: self.log.failure("publishing the API onion failed", f))

    def when_published(self) -> Deferred[None]:
        return self._published if self._published is not None else succeed(None)

    async def _publish(self) -> None:
        keys = self.client_keys()
        seed = load_or_create_api_onion_key(self.data_dir)
        await self.tor.when_ready()
        await self.tor.add_onion(expanded_secret_key(seed), self.config.api.onion_virtual_port,
                                 self.config.api.listen_address, client_auth=keys)
        self.onion = api_onion_address(seed)
        self.log.info("API onion {onion} published for {n} authorized clients",
                      onion=self.onion, n=len(keys))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.onion is None:
            return succeed(None)
        onion, self.onion = self.onion, None
        d = Deferred.fromCoroutine(self.tor.remove_onion(onion))
        d.addErrback(lambda f: self.log.failure("removing the API onion failed", f))
        return d
