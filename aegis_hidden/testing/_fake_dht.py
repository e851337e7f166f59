"""An in-memory IDHT: records by key, counters the tests set, no network."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from ..dht import SignedRecord, record_key
from ..interfaces import IDHT

# an identity record starts with magic, version and kind (10 bytes), then the key
_HEADER = bytes(10)


@implementer(IDHT)
class FakeDHT:
    """Holds what :meth:`put` was given (unsigned) and what a test :meth:`add`-ed.

    ``publisher`` is the Ed25519 key the fake publishes under; ``resolved``
    maps onion addresses to what :meth:`resolve` answers; ``crawled`` is what
    :meth:`crawl` answers. Every call is recorded in ``calls``.
    """

    def __init__(self, publisher: bytes = bytes(range(32)), now: float = 1_800_000_000) -> None:
        self.publisher = publisher
        self.now = now
        self.records: dict[bytes, SignedRecord] = {}
        self.contact_list: list[str] = []
        self.lookups_ok = 0
        self.lookups_failed = 0
        self.resolved: dict[str, Any] = {}
        self.crawled: dict[str, Any] = {"reachable": 0, "unreachable": 0, "seen": 0,
                                        "not_asked": 0, "seconds": 0.0, "nodes": []}
        self.calls: list[tuple[str, Any]] = []

    def add(self, record: SignedRecord) -> None:
        self.records[record.key] = record

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": True, "node_id": "00" * 32,
            "parameters": {"k": 20, "alpha": 3, "disjoint_paths": 4, "quorum": 3},
            "routing_table": {"contacts": len(self.contact_list), "buckets": []},
            "records": {"held": len(self.records), "own_key": None, "own_sequence": None,
                        "own_stored_at": 0},
            "lookups": {"ok": self.lookups_ok, "failed": self.lookups_failed,
                        "last_seconds": None},
            "requests_answered": 0, "rpc_failures": 0, "refused": {},
            "contacts": list(self.contact_list),
        }

    def contacts(self) -> list[str]:
        return list(self.contact_list)

    def get(self, key: bytes, *, local: bool = True) -> Deferred[Any]:
        self.calls.append(("get", key) if local else ("get-network", key))
        found = self.records.get(key)
        if found is None:
            self.lookups_failed += 1
        else:
            self.lookups_ok += 1
        return succeed(found)

    def put(self, name: bytes, value: bytes, lifetime: float) -> Deferred[int]:
        self.calls.append(("put", (name, value, lifetime)))
        if name == b"identity":
            return fail(ValueError("the name \"identity\" is the node's own identity record"))
        key = record_key(self.publisher, name)
        held = self.records.get(key)
        record = SignedRecord(name, value, held.sequence + 1 if held else 1,
                              int(self.now + lifetime), _HEADER + self.publisher)
        self.records[key] = record
        return succeed(1)

    def resolve(self, onion: str) -> Deferred[Any]:
        self.calls.append(("resolve", onion))
        return succeed(self.resolved.get(onion))

    def crawl(self, max_nodes: int, parallel: int) -> Deferred[dict[str, Any]]:
        self.calls.append(("crawl", (max_nodes, parallel)))
        return succeed(dict(self.crawled))
