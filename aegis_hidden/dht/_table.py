"""The routing table: k-buckets with replacement caches (pure; ``now`` is passed in).

Bucket ``i`` holds contacts whose XOR distance from the own id has bit length
``i + 1``, least recently seen first. A full bucket does not evict on sight:
the newcomer waits in the bucket's replacement cache and the table asks the
driver to ping the least recently seen contact (Kademlia's rule: old contacts
that still answer are the ones most likely to stay). If the ping fails the
oldest is dropped and the freshest replacement takes its place; a contact that
fails ``max_failures`` requests in a row is dropped the same way.

Beside the buckets the table keeps S/Kademlia's sibling list (Baumgart & Mies
2007, §4.2): the ``sibling_size`` contacts closest to the own id that it has
seen (5k by default, S/Kademlia's η·s with η = 5, s = k), whether or not
their bucket had room. The buckets near the own id are the ones that fill
up in a large network, so without it a node would not know all the nodes
next to it, and those are whom it shares responsibility for nearby keys
with: :meth:`closest` answers from the buckets and the siblings together,
so lookups and the check of "am I among the k closest to this key" for keys
near the node see every neighbour it knows.
"""

from __future__ import annotations

import bisect
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
                 puzzle_bits: int = 0, sibling_size: int | None = None) -> None:
        self.own = own
        self._own_int = int.from_bytes(own.id, "big")
        #: how many contacts closest to the own id the sibling list keeps
        self.sibling_size = 5 * k if sibling_size is None else sibling_size
        self._siblings: list[tuple[int, Contact]] = []  # (distance to own, contact), closest first
        self._sibling_failures: dict[bytes, int] = {}
        self._extra: dict[bytes, Contact] = {}  # siblings whose bucket had no room
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

    def knows(self, contact: Contact) -> bool:
        """``contact`` is in a bucket or on the sibling list (it answered or asked before)."""
        return contact.id in self._index or contact.id in self._extra

    def contacts(self) -> list[Contact]:
        return [c for _, b in sorted(self.buckets.items()) for c in b.contacts]

    def siblings(self) -> list[Contact]:
        """The sibling list: the contacts known closest to the own id, closest first."""
        return [c for _, c in self._siblings]

    def _add_sibling(self, contact: Contact) -> None:
        if self.sibling_size <= 0:
            return
        d = int.from_bytes(contact.id, "big") ^ self._own_int
        sib = self._siblings
        if len(sib) >= self.sibling_size and d >= sib[-1][0]:
            return
        lo, hi = 0, len(sib)
        while lo < hi:
            mid = (lo + hi) // 2
            if sib[mid][0] < d:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(sib) and sib[lo][0] == d:
            sib[lo] = (d, contact)  # seen again: the newest contact (nonce, I2P name)
        else:
            sib.insert(lo, (d, contact))
            if len(sib) > self.sibling_size:
                for _, gone in sib[self.sibling_size:]:
                    self._extra.pop(gone.id, None)
                del sib[self.sibling_size:]
        if contact.id in self._extra:
            self._extra[contact.id] = contact

    def _drop_sibling(self, contact: Contact) -> None:
        d = int.from_bytes(contact.id, "big") ^ self._own_int
        if self._siblings and d <= self._siblings[-1][0]:
            self._siblings = [(e, c) for e, c in self._siblings if e != d]
        self._sibling_failures.pop(contact.id, None)
        self._extra.pop(contact.id, None)

    def _sibling_only(self) -> list[Contact]:
        return list(self._extra.values())

    def _sync_extra(self, contact: Contact) -> None:
        """``contact`` is a sibling outside the buckets unless a bucket holds it."""
        if contact.id in self._index:
            self._extra.pop(contact.id, None)
            return
        sib = self._siblings
        d = int.from_bytes(contact.id, "big") ^ self._own_int
        if sib and d <= sib[-1][0]:
            i = bisect.bisect_left(sib, (d,))  # sorted by distance: (d,) sorts before (d, c)
            if i < len(sib) and sib[i][0] == d:
                self._extra[contact.id] = contact

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
        self._add_sibling(contact)
        self._sibling_failures.pop(contact.id, None)
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
            self._extra.pop(contact.id, None)
            return None
        self._sync_extra(contact)
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
            if any(c.id == contact.id for c in self._sibling_only()):
                n = self._sibling_failures.get(contact.id, 0) + 1
                self._sibling_failures[contact.id] = n
                if n >= self.max_failures:
                    self._drop_sibling(contact)
            return None
        n = self._failures.get(contact.id, 0) + 1
        self._failures[contact.id] = n
        if n < self.max_failures:
            return None
        return self.remove(contact)

    def remove(self, contact: Contact) -> Contact | None:
        """Drop ``contact`` (from its bucket and the sibling list); the replacement
        promoted in its place, if any."""
        self._drop_sibling(contact)
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
            self._extra.pop(promoted.id, None)
            return promoted
        return None

    def closest(self, target: bytes, n: int | None = None,
                exclude: bytes | None = None) -> list[Contact]:
        """The ``n`` (default k) known contacts closest to ``target`` (buckets and siblings).

        Only the buckets that can hold them are sorted: with ``b`` the bucket
        ``target`` falls in, every contact of bucket b is closer to it than
        any of the buckets below b, and those are closer than any of bucket
        b + 1, b + 2, ... in turn (XOR distance).
        """
        n = self.k if n is None else n
        t = int.from_bytes(target, "big")
        b = (t ^ self._own_int).bit_length() - 1
        found: list[Contact] = []
        if b >= 0 and b in self.buckets:
            found.extend(self.buckets[b].contacts)
        if len(found) < n + 1:
            for i, below in self.buckets.items():
                if i < b:
                    found.extend(below.contacts)
            i = b + 1
            while len(found) < n + 1 and i < ID_BITS:
                above = self.buckets.get(i)
                if above is not None:
                    found.extend(above.contacts)
                i += 1
        found.extend(self._sibling_only())
        found = [c for c in found if c.id != exclude]
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
