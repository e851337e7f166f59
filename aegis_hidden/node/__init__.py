"""The node core: the service that owns the identity and wires the layers together."""

from ._service import NodeService

__all__ = ["NodeService"]
