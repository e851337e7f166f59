"""The routing table: k-buckets with replacement caches (pure; ``now`` is passed in).

Bucket ``i`` holds contacts whose XOR distance from the own id has bit length
``i + 1``, least recently seen first. A full bucket does not evict on sight:
the newcomer waits in the bucket's replacement cache and the table asks the
driver to ping the least recently seen contact (Kademlia's rule: old contacts
that still answer are the ones most likely to stay). If the ping fails the
oldest is dropped and the freshest replacement takes its place; a contact that
fails ``max_failures`` requests in a row is dropped the same way.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._ids import ID_BITS, Contact, bucket_index, distance
from ._puzzle import check_puzzle

K = 20
REFRESH_INTERVAL = 3600.0
MAX_FAILURES = 3


@dataclass(frozen=True)
class PingOldest:
    """Ask the driver to ping ``oldest``; ``newcomer`` waits in the replacement cache."""

    oldest: Contact
    newcomer: Contact


@dataclass
class Bucket:
    contacts: list[Contact] = field(default_factory=list)  # least recently seen first
    replacements: list[Contact] = field(default_factory=list)  # freshest last
    touched: float = 0.0
    pinging: bytes | None = None  # id of the oldest being pinged


class RoutingTable:
    def __init__(self, own: Contact, *, k: int = K, refresh_interval: float = REFRESH_INTERVAL,
                 max_failures: int = MAX_FAILURES, now: float = 0.0,
                 puzzle_bits: int = 0) -> None:
        self.own = own
        #: contacts whose nonce does not solve their id's puzzle at this difficulty
        #: never enter the table (0: no puzzle)
        self.puzzle_bits = puzzle_bits
        self.puzzle_refused = 0
        self.k = k
        self.refresh_interval = refresh_interval
        self.max_failures = max_failures
        self._created = now
        #: bucket index -> bucket, created when first used (most of 256 stay empty)
        self.buckets: dict[int, Bucket] = {}
        self._failures: dict[bytes, int] = {}
        self._index: dict[bytes, Contact] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, contact: object) -> bool:
        return isinstance(contact, Contact) and contact.id in self._index

    def contacts(self) -> list[Contact]:
        return [c for _, b in sorted(self.buckets.items()) for c in b.contacts]

    def bucket(self, index: int) -> Bucket:
        found = self.buckets.get(index)
        if found is None:
            found = self.buckets[index] = Bucket(touched=self._created)
        return found

    def observe(self, contact: Contact, now: float) -> PingOldest | None:
        """``contact`` answered or asked: keep it, or say whom to ping to make room."""
        if contact.id == self.own.id:
            return None
        if not check_puzzle(contact.id, contact.nonce, self.puzzle_bits):
            self.puzzle_refused += 1
            return None
        bucket = self.bucket(bucket_index(self.own.id, contact.id))
        bucket.touched = now
        self._failures.pop(contact.id, None)
        if contact.id in self._index:
            bucket.contacts = [c for c in bucket.contacts if c.id != contact.id]
            bucket.contacts.append(contact)
            self._index[contact.id] = contact
            return None
        if len(bucket.contacts) < self.k:
            bucket.contacts.append(contact)
            self._index[contact.id] = contact
            return None
        bucket.replacements = [c for c in bucket.replacements if c.id != contact.id]
        bucket.replacements.append(contact)
        del bucket.replacements[:-self.k]
        if bucket.pinging is not None:
            return None
        oldest = bucket.contacts[0]
        bucket.pinging = oldest.id
        return PingOldest(oldest, contact)

    def ping_answered(self, oldest: Contact, now: float) -> None:
        """The oldest answered the ping: it stays, moved to the fresh end."""
        bucket = self.bucket(bucket_index(self.own.id, oldest.id))
        bucket.pinging = None
        if oldest.id in self._index:
            self.observe(oldest, now)

    def ping_failed(self, oldest: Contact) -> Contact | None:
        """The oldest did not answer: dropped, the freshest replacement promoted (returned)."""
        bucket = self.bucket(bucket_index(self.own.id, oldest.id))
        bucket.pinging = None
        return self.remove(oldest)

    def failed(self, contact: Contact) -> Contact | None:
        """A request to ``contact`` failed; after ``max_failures`` in a row it is dropped."""
        if contact.id not in self._index:
            return None
        n = self._failures.get(contact.id, 0) + 1
        self._failures[contact.id] = n
        if n < self.max_failures:
            return None
        return self.remove(contact)

    def remove(self, contact: Contact) -> Contact | None:
        """Drop ``contact``; the replacement promoted in its place, if any."""
        if contact.id not in self._index:
            return None
        bucket = self.bucket(bucket_index(self.own.id, contact.id))
        bucket.contacts = [c for c in bucket.contacts if c.id != contact.id]
        del self._index[contact.id]
        self._failures.pop(contact.id, None)
        if bucket.pinging == contact.id:
            bucket.pinging = None
        if bucket.replacements:
            promoted = bucket.replacements.pop()
            bucket.contacts.append(promoted)
            self._index[promoted.id] = promoted
            return promoted
        return None

    def closest(self, target: bytes, n: int | None = None,
                exclude: bytes | None = None) -> list[Contact]:
        """The ``n`` (default k) known contacts closest to ``target``."""
        n = self.k if n is None else n
        t = int.from_bytes(target, "big")
        found = [c for c in self._index.values() if c.id != exclude]
        found.sort(key=lambda c: int.from_bytes(c.id, "big") ^ t)
        return found[:n]

    def touch(self, target: bytes, now: float) -> None:
        """A lookup for ``target`` ran: its bucket counts as refreshed."""
        i = bucket_index(self.own.id, target)
        if i >= 0:
            self.bucket(i).touched = now

    def due_refresh(self, now: float) -> list[int]:
        """Bucket indices due for a refresh lookup at ``now``.

        A bucket is due when nothing touched it for ``refresh_interval``; only
        buckets up to one past the farthest-from-empty are considered (the
        deeper ones cover parts of the space too small to hold anybody yet).
        """
        deepest = min((i for i, b in self.buckets.items() if b.contacts), default=ID_BITS)
        start = max(0, deepest - 1)
        due = []
        for i in range(start, ID_BITS):
            b = self.buckets.get(i)
            touched = self._created if b is None else b.touched
            if touched + self.refresh_interval <= now:
                due.append(i)
        return due

    def refresh_target(self, index: int, rng: random.Random) -> bytes:
        """A random id that falls in bucket ``index`` (to look up when refreshing it)."""
        own = int.from_bytes(self.own.id, "big")
        offset = (1 << index) | rng.getrandbits(index) if index else 1
        return (own ^ offset).to_bytes(32, "big")

    def load(self, contacts: Iterable[Contact], now: float) -> None:
        """Restore contacts (from disk): each observed, overflow kept as replacements."""
        for c in contacts:
            self.observe(c, now)
        for b in self.buckets.values():
            b.pinging = None


def sort_by_distance(contacts: Iterable[Contact], target: bytes) -> list[Contact]:
    return sorted(contacts, key=lambda c: distance(c.id, target))
