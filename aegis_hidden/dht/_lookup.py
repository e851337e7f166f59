"""Iterative lookups as a state machine (pure: the driver sends, times out, feeds back).

Kademlia's node lookup: keep the contacts known closest to the target, ask up
to α of the closest not yet asked, merge what they answer, and stop once the k
closest have all answered. With ``paths = d > 1`` it is S/Kademlia's disjoint
lookup (Baumgart & Mies 2007, §4.4): the k closest starting contacts are dealt
round-robin over d paths, each path runs its own α-parallel lookup, and no
contact is asked by more than one path, so one adversary can sit on at most
one path; the result is the union of what the paths found.

The driver loop::

    for q in lookup.next_queries(): send FIND_NODE/FIND_VALUE to q.contact
    on an answer:  lookup.on_response(contact, contacts, value=...)
    on a timeout or an error: lookup.on_failure(contact)
    ... until lookup.done; then lookup.result()

With ``until_found`` (a node lookup that wants one node, not the k closest
to an id) the lookup ends as soon as an answer names the target's own
contact: a contact is the node's key, so nobody else can pass for it, and
asking on for the k closest would only add rounds (libp2p's FindPeer and
S/Kademlia's evaluation stop there too). Lookups that place or fetch records
keep Kademlia's rule.

A value is fed only after the driver verified it (a bad one is a failure). A
value lookup ends at the first value, or with ``quorum = q`` once q contacts
gave one: a holder that replays an old (validly signed) record is then
outvoted by the newest sequence among the q (the driver picks, see
:meth:`~._core.DhtCore.newest`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ._ids import Contact

V = TypeVar("V")

_WAITING, _PENDING, _ANSWERED, _FAILED = range(4)


@dataclass(frozen=True)
class Query:
    contact: Contact
    path: int
    depth: int  # 1 for a starting contact, n + 1 for one learnt from a depth-n answer


@dataclass(frozen=True)
class LookupResult(Generic[V]):
    closest: list[Contact]  # up to k contacts that answered, closest first
    value: V | None
    messages: int  # queries sent
    failures: int  # queries that timed out or failed
    rounds: int  # depth of the deepest query sent (the length of the longest chain)
    value_depth: int | None  # depth of the query that returned the value
    target_seen: bool = False  # some answer named the target's own contact
    values: tuple[V, ...] = ()  # every value fed, in arrival order (``value`` is the first)
    found_depth: int | None = None  # depth of the first answer that named the target

    def found(self, target: bytes) -> bool:
        """``target`` itself answered (it is among the closest that answered)."""
        return any(c.id == target for c in self.closest)


@dataclass
class _Candidate:
    contact: Contact
    distance: int
    depth: int
    state: int = _WAITING


@dataclass
class _Path:
    index: int
    candidates: list[_Candidate] = field(default_factory=list)  # sorted by distance
    pending: int = 0
    done: bool = False


class LookupMisuse(Exception):
    """Misuse of a lookup (an answer from a contact that was never asked)."""


class Lookup(Generic[V]):
    def __init__(self, target: bytes, seeds: Iterable[Contact], *, k: int = 20, alpha: int = 3,
                 paths: int = 1, own_id: bytes | None = None, quorum: int = 1,
                 until_found: bool = False) -> None:
        if len(target) != 32:
            raise ValueError("a lookup target is 32 bytes")
        if k < 1 or alpha < 1 or paths < 1 or quorum < 1:
            raise ValueError("k, alpha, paths and quorum are at least 1")
        #: a value lookup ends once this many values came (from distinct contacts)
        self.quorum = quorum
        self._values: list[V] = []
        self.target = target
        self.k = k
        self.alpha = alpha
        self._t = int.from_bytes(target, "big")
        self._own = own_id
        self._asked: dict[bytes, int] = {}  # contact id -> path that asked it
        self._candidate_of: dict[tuple[int, bytes], _Candidate] = {}
        self._messages = 0
        self._failures = 0
        self._rounds = 0
        self._value: V | None = None
        self._value_depth: int | None = None
        #: end the lookup once an answer names the target (a node lookup for one node)
        self.until_found = until_found
        self._found_depth: int | None = None
        start = sorted({c.id: c for c in seeds if c.id != own_id}.values(), key=self._dist)[:k]
        n = max(1, min(paths, len(start)))
        self._paths = [_Path(i) for i in range(n)]
        for i, c in enumerate(start):
            self._add(self._paths[i % n], c, 1)
        if any(c.id == target for c in start):
            self._found_depth = 0  # the asker knows the target already
        if not start:
            for p in self._paths:
                p.done = True

    def _dist(self, c: Contact) -> int:
        return int.from_bytes(c.id, "big") ^ self._t

    def _add(self, path: _Path, contact: Contact, depth: int) -> None:
        if contact.id == self._own or (path.index, contact.id) in self._candidate_of:
            return
        if contact.id in self._asked:
            # asked already: by another path (the paths stay disjoint), or by this one
            # and pruned from its list since (it must not be asked twice)
            return
        cand = _Candidate(contact, self._dist(contact), depth)
        self._candidate_of[(path.index, contact.id)] = cand
        cands = path.candidates
        lo, hi = 0, len(cands)
        while lo < hi:
            mid = (lo + hi) // 2
            if cands[mid].distance < cand.distance:
                lo = mid + 1
            else:
                hi = mid
        cands.insert(lo, cand)
        # keep the list short: only the k closest live ones and what is in flight matter
        if len(cands) > 4 * self.k:
            keep = cands[: 3 * self.k] + [c for c in cands[3 * self.k:] if c.state == _PENDING]
            kept = {id(c) for c in keep}
            for c in cands:
                if id(c) not in kept:
                    self._candidate_of.pop((path.index, c.contact.id), None)
            path.candidates = keep

    @property
    def done(self) -> bool:
        return (len(self._values) >= self.quorum or self._found()
                or all(p.done for p in self._paths))

    def _found(self) -> bool:
        return self.until_found and self._found_depth is not None

    def next_queries(self) -> list[Query]:
        """The queries to send now (each contact is handed out once)."""
        if len(self._values) >= self.quorum or self._found():
            return []
        out: list[Query] = []
        for path in self._paths:
            if path.done:
                continue
            live = 0
            for cand in path.candidates:
                if path.pending >= self.alpha or live >= self.k:
                    break
                if cand.state == _FAILED:
                    continue
                owner = self._asked.get(cand.contact.id)
                if owner is not None and owner != path.index:
                    cand.state = _FAILED  # taken by another path meanwhile
                    continue
                live += 1
                if cand.state == _WAITING:
                    cand.state = _PENDING
                    path.pending += 1
                    self._asked[cand.contact.id] = path.index
                    self._messages += 1
                    self._rounds = max(self._rounds, cand.depth)
                    out.append(Query(cand.contact, path.index, cand.depth))
            self._check_done(path)
        return out

    def _check_done(self, path: _Path) -> None:
        if path.pending:
            return
        live = 0
        for cand in path.candidates:
            if cand.state == _FAILED:
                continue
            if cand.state != _ANSWERED:
                return
            live += 1
            if live >= self.k:
                break
        path.done = True

    def _take(self, contact: Contact) -> tuple[_Path, _Candidate]:
        index = self._asked.get(contact.id)
        cand = None if index is None else self._candidate_of.get((index, contact.id))
        if index is None or cand is None or cand.state != _PENDING:
            raise LookupMisuse("an answer from a contact this lookup is not waiting for")
        path = self._paths[index]
        path.pending -= 1
        return path, cand

    def on_response(self, contact: Contact, contacts: Sequence[Contact] = (),
                    value: V | None = None) -> None:
        """``contact`` answered with ``contacts`` (closer ones) and maybe a verified value."""
        path, cand = self._take(contact)
        cand.state = _ANSWERED
        if value is not None:
            self._values.append(value)
            if self._value is None:
                self._value = value
                self._value_depth = cand.depth
        for c in contacts[: self.k]:
            if c.id == self.target and self._found_depth is None:
                self._found_depth = cand.depth
            self._add(path, c, cand.depth + 1)
        self._check_done(path)

    def on_failure(self, contact: Contact) -> None:
        """The query to ``contact`` timed out, failed, or answered something invalid."""
        path, cand = self._take(contact)
        cand.state = _FAILED
        self._failures += 1
        self._check_done(path)

    def result(self) -> LookupResult[V]:
        answered = {c.contact.id: c.contact for p in self._paths for c in p.candidates
                    if c.state == _ANSWERED}
        closest = sorted(answered.values(), key=self._dist)[: self.k]
        seen = any((p.index, self.target) in self._candidate_of for p in self._paths)
        return LookupResult(closest, self._value, self._messages, self._failures, self._rounds,
                            self._value_depth, seen, tuple(self._values), self._found_depth)
