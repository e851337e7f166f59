"""The node core service (peers, outbox and events grow here with later layers)."""

from __future__ import annotations

from twisted.application.service import MultiService
from twisted.logger import Logger

from ..config import Config
from ..events import EventBus
from ..identity import NodeIdentity


class NodeService(MultiService):
    """Root of a node's service tree; transports, core and API are its children."""

    log = Logger()

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

    def startService(self) -> None:
        self.log.info(
            "aegis-hidden node {onion} starting (data dir {data_dir}, record sequence "
            "{sequence})",
            onion=self.identity.onion,
            data_dir=self.data_dir,
            sequence=self.identity.record.sequence,
        )
        super().startService()
