"""Kademlia over onion/I2P sessions: the sans-I/O core (no reactor, no sockets).

- ids and contacts (:func:`node_id`: SHA-256 of the onion key; :class:`Contact`),
- the routing table (:class:`RoutingTable`: k-buckets, replacement caches,
  ping-the-oldest, refresh due at a time),
- iterative lookups (:class:`Lookup`: α parallel queries, d disjoint paths),
- signed records (:class:`SignedRecord`, :func:`sign_record`, :func:`verify_record`,
  :class:`RecordStore` with typed refusals, quotas, expiry and republish),
- S/Kademlia's puzzle (:func:`solve_puzzle`, :func:`check_puzzle`): a contact
  enters a table only with a nonce that makes its place in the id space cost work,
- the message codec (``wire/dht.proto``) and :class:`DhtCore`, which answers
  requests and feeds answers into lookups.

The Twisted side: :class:`DhtNode` runs the core over the node's ``rpc``
channel on an injected clock; :class:`DhtPersistence` keeps the routing table
and records in the node's database; the node runs them through
``aegis_hidden.node.DhtService`` (docs/dht.md).
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
    decode_request_nonce,
    decode_response,
    encode,
)
from ._node import DhtNode, RpcTransport
from ._persist import DhtPersistence
from ._puzzle import MAX_NONCE, check_puzzle, solve_puzzle
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
    "MAX_NONCE",
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
    "check_puzzle",
    "decode_request",
    "decode_request_nonce",
    "decode_response",
    "distance",
    "encode",
    "node_id",
    "node_id_of_onion",
    "record_key",
    "sign_record",
    "solve_puzzle",
    "verify_record",
]
