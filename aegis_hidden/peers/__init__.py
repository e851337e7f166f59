"""Peers: the SQLite peer store, reputation and blacklist (docs/reputation.md)."""

from ._db import (
    DB_FILE_NAME,
    RECOVERY_HINT,
    SCHEMA_VERSION,
    Database,
    DatabaseCorrupt,
    DatabaseError,
    InlineSQLite,
    ThreadedSQLite,
    check_database,
    migrate,
)
from ._reputation import (
    AUTO_BLOCK_BELOW,
    AUTO_BLOCK_SECONDS,
    INITIAL_REPUTATION,
    WEIGHTS,
    Behaviour,
    updated_reputation,
)
from ._store import (
    ORIGIN_OPERATOR,
    ORIGIN_PEER,
    PeerAddressError,
    PeerInfo,
    PeerStore,
    UnknownPeer,
    check_peer_address,
    is_b32_i2p,
)
from ._trust import PinStore, RecordTable

__all__ = [
    "AUTO_BLOCK_BELOW",
    "AUTO_BLOCK_SECONDS",
    "DB_FILE_NAME",
    "INITIAL_REPUTATION",
    "ORIGIN_OPERATOR",
    "ORIGIN_PEER",
    "RECOVERY_HINT",
    "SCHEMA_VERSION",
    "WEIGHTS",
    "Behaviour",
    "Database",
    "DatabaseCorrupt",
    "DatabaseError",
    "InlineSQLite",
    "PeerAddressError",
    "PeerInfo",
    "PeerStore",
    "PinStore",
    "RecordTable",
    "ThreadedSQLite",
    "UnknownPeer",
    "check_database",
    "check_peer_address",
    "is_b32_i2p",
    "migrate",
    "updated_reputation",
]
