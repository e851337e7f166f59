"""Twisted glue for sessions: protocol, IPeerLink, ISessionFactory, server factory.

Kept out of :mod:`aegis_hidden.session` so the pure package imports no Twisted.
"""

from ._twisted import (
    NoTransport,
    PeerLink,
    RevokedPeer,
    ServerFactory,
    SessionFactory,
    SessionProtocol,
    TokenBucket,
)

__all__ = ["NoTransport", "PeerLink", "RevokedPeer", "ServerFactory", "SessionFactory",
           "SessionProtocol", "TokenBucket"]
