"""The node core service (peers, outbox and events grow here with later layers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import IServiceCollection, MultiService
from twisted.logger import ILogObserver, Logger

from ..config import Config
from ..events import EventBus
from ..identity import NodeIdentity
from ._identity_service import IdentityService


class NodeService(MultiService):
    """Root of a node's service tree; transports, core and API are its children."""

    log = Logger()
    # Set by tap.makeService: handed to the twistd application as its ILogObserver.
    log_observer: ILogObserver | None = None

    def __init__(
        self,
        config: Config,
        identity: IdentityService,
        data_dir: str,
        events: EventBus | None = None,
    ) -> None:
        super().__init__()
        self.setName("aegis-hidden")
        self.config = config
        #: The one owner of the identity: a child of this service (its refresh timer
        #: runs while the node runs); layers hold it, never a copy.
        self.identity_service = identity
        identity.setServiceParent(self)
        self.data_dir = data_dir
        self.events = events if events is not None else EventBus()

    def setServiceParent(self, parent: IServiceCollection) -> None:
        """Also give a twistd application the node's log observer (see tap.py)."""
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            cast(Any, parent).setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    @property
    def identity(self) -> NodeIdentity:
        """The node's current identity (the identity service's)."""
        return self.identity_service.identity

    def on_identity(self, callback: Callable[[NodeIdentity], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the identity record changes (refresh, I2P bind)."""
        return self.identity_service.subscribe(callback)

    def startService(self) -> None:
        self.log.info(
            "aegis-hidden node {onion} starting (data dir {data_dir}, record sequence "
            "{sequence})",
            onion=self.identity.onion,
            data_dir=self.data_dir,
            sequence=self.identity.record.sequence,
        )
        super().startService()
