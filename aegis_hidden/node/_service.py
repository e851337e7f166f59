"""The node core service (peers, outbox and events grow here with later layers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import IServiceCollection, MultiService
from twisted.logger import ILogObserver, Logger

from ..config import Config
from ..events import EventBus
from ..identity import NodeIdentity


class NodeService(MultiService):
    """Root of a node's service tree; transports, core and API are its children."""

    log = Logger()
    # Set by tap.makeService: handed to the twistd application as its ILogObserver.
    log_observer: ILogObserver | None = None

    def __init__(
        self,
        config: Config,
        identity: NodeIdentity,
        data_dir: str,
        events: EventBus | None = None,
    ) -> None:
        super().__init__()
        self.setName("aegis-hidden")
        self.config = config
        self.identity = identity
        self.data_dir = data_dir
        self.events = events if events is not None else EventBus()
        self._identity_listeners: list[Callable[[NodeIdentity], None]] = []

    def setServiceParent(self, parent: IServiceCollection) -> None:
        """Also give a twistd application the node's log observer (see tap.py)."""
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            cast(Any, parent).setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def on_identity(self, callback: Callable[[NodeIdentity], None]) -> None:
        """Call ``callback`` whenever the identity record changes (e.g. an I2P bind)."""
        self._identity_listeners.append(callback)

    def set_identity(self, identity: NodeIdentity) -> None:
        """Adopt a re-signed identity (same master key) and tell every layer."""
        if identity.onion != self.identity.onion:
            raise ValueError("the node's master key cannot change while it runs")
        self.identity = identity
        for callback in list(self._identity_listeners):
            callback(identity)

    def startService(self) -> None:
        self.log.info(
            "aegis-hidden node {onion} starting (data dir {data_dir}, record sequence "
            "{sequence})",
            onion=self.identity.onion,
            data_dir=self.data_dir,
            sequence=self.identity.record.sequence,
        )
        super().startService()
