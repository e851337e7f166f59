"""Kademlia over onion/I2P sessions: the sans-I/O core (no reactor, no sockets).

- ids and contacts (:func:`node_id`: SHA-256 of the onion key; :class:`Contact`),
- the routing table (:class:`RoutingTable`: k-buckets, replacement caches,
  ping-the-oldest, refresh due at a time),
- iterative lookups (:class:`Lookup`: α parallel queries, d disjoint paths),
- signed records (:class:`SignedRecord`, :func:`sign_record`, :func:`verify_record`,
  :class:`RecordStore` with typed refusals, quotas, expiry and republish),
- the message codec (``wire/dht.proto``) and :class:`DhtCore`, which answers
  requests and feeds answers into lookups.

The Twisted side: :class:`DhtNode` runs the core over the node's ``rpc``
channel on an injected clock; :class:`DhtPersistence` keeps the routing table
and records in the node's database. docs/dht.md describes what runs and what
is not wired into the node yet.
"""

from ._core import ALPHA, DhtCore, DhtRequestRefused, Handled, StoreLimiter
from ._ids import ID_BITS, ID_BYTES, Contact, bucket_index, distance, node_id, node_id_of_onion
from ._lookup import Lookup, LookupMisuse, LookupResult, Query
from ._messages import (
    MAX_CONTACTS,
    DhtMessageError,
    FindNode,
    FindValue,
    Nodes,
    Ping,
    Pong,
    Refused,
    Request,
    Response,
    Store,
    Stored,
    Value,
    decode_request,
    decode_response,
    encode,
)
from ._node import DhtNode, RpcTransport
from ._persist import DhtPersistence
from ._records import (
    MAX_LIFETIME,
    MAX_NAME,
    MAX_VALUE,
    BadRecordSignature,
    DhtRecordError,
    ExpiredRecord,
    QuotaExceeded,
    RecordStore,
    RecordTooLarge,
    SignedRecord,
    StaleRecord,
    UnsignedRecord,
    record_key,
)
from ._records import sign as sign_record
from ._records import verify as verify_record
from ._table import K, PingOldest, RoutingTable

__all__ = [
    "ALPHA",
    "ID_BITS",
    "ID_BYTES",
    "MAX_CONTACTS",
    "MAX_LIFETIME",
    "MAX_NAME",
    "MAX_VALUE",
    "BadRecordSignature",
    "Contact",
    "DhtCore",
    "DhtMessageError",
    "DhtNode",
    "DhtPersistence",
    "DhtRecordError",
    "DhtRequestRefused",
    "ExpiredRecord",
    "FindNode",
    "FindValue",
    "Handled",
    "K",
    "Lookup",
    "LookupMisuse",
    "LookupResult",
    "Nodes",
    "Ping",
    "PingOldest",
    "Pong",
    "Query",
    "QuotaExceeded",
    "RecordStore",
    "RecordTooLarge",
    "Refused",
    "Request",
    "Response",
    "RoutingTable",
    "RpcTransport",
    "SignedRecord",
    "StaleRecord",
    "Store",
    "StoreLimiter",
    "Stored",
    "UnsignedRecord",
    "Value",
    "bucket_index",
    "decode_request",
    "decode_response",
    "distance",
    "encode",
    "node_id",
    "node_id_of_onion",
    "record_key",
    "sign_record",
    "verify_record",
]
