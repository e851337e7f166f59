"""Twisted glue for sessions: protocol, IPeerLink, ISessionFactory, server factory,
and the default cell scheduler.

Kept out of :mod:`aegis_hidden.session` so the pure package imports no Twisted.
"""

from ._scheduler import ImmediateScheduler
from ._twisted import (
    NoTransport,
    PeerLink,
    RevokedPeer,
    ServerFactory,
    SessionFactory,
    SessionProtocol,
    TokenBucket,
)

__all__ = ["ImmediateScheduler", "NoTransport", "PeerLink", "RevokedPeer", "ServerFactory", "SessionFactory",
           "SessionProtocol", "TokenBucket"]
