"""One node's DHT state and its answers to requests (sans-I/O; ``now`` is passed in).

:class:`DhtCore` holds the routing table and the record store, answers the
requests that arrive (bytes in, bytes out), starts lookups and turns answers
into lookup events. Whoever drives it (the Twisted adapter over the ``rpc``
channel, or the simulation) sends the bytes, runs the timeouts and feeds the
results back; nothing here knows about sessions, reactors or sockets.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._exchange import (
    OFFER_BURST,
    OFFER_RATE,
    Candidates,
    CheckedEntry,
    PexEntryError,
    check_entry,
)
from ._ids import Contact
from ._lookup import Lookup
from ._mailbox import MailboxError, MailboxStore, verify_auth
from ._messages import (
    Collect,
    Deposit,
    DhtMessageError,
    FindNode,
    FindValue,
    Mail,
    Nodes,
    Offer,
    Offered,
    Ping,
    Pong,
    Refused,
    Request,
    Response,
    Store,
    Stored,
    Value,
    decode_request_nonce,
    decode_response,
    encode,
)
from ._puzzle import check_puzzle
from ._records import DhtRecordError, RecordStore, SignedRecord, verify
from ._table import K, PingOldest, RoutingTable

ALPHA = 3
#: STOREs a peer may make: this many per second on average, ``STORE_BURST`` at once
STORE_RATE = 0.2
STORE_BURST = 10
_MAX_LIMITED_PEERS = 4096


class StoreLimiter:
    """Per-peer token buckets for STORE (pure: ``now`` is passed in).

    Holds at most ``max_peers`` buckets; the least recently used is forgotten
    (it comes back full, which costs an attacker nothing it could not get from
    a fresh identity anyway: identities are what the puzzle will make costly).
    """

    def __init__(self, rate: float = STORE_RATE, burst: int = STORE_BURST,
                 max_peers: int = _MAX_LIMITED_PEERS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a STORE rate is positive and its burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_peers = max_peers
        self._buckets: dict[bytes, tuple[float, float]] = {}  # id -> (tokens, stamp)

    def take(self, peer: bytes, now: float) -> bool:
        tokens, stamp = self._buckets.pop(peer, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - stamp) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = (tokens, max(stamp, now))  # most recent last
        if len(self._buckets) > self.max_peers:
            del self._buckets[next(iter(self._buckets))]
        return allowed


class DhtRequestRefused(Exception):
    """A request this node will not answer; ``reason`` is short and safe to send back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Handled:
    answer: bytes
    ping: PingOldest | None  # the table wants the driver to ping this contact's oldest


class DhtCore:
    def __init__(self, own: Contact, *, k: int = K, alpha: int = ALPHA, paths: int = 1,
                 store: RecordStore | None = None, table: RoutingTable | None = None,
                 limiter: StoreLimiter | None = None, now: float = 0.0,
                 puzzle_bits: int = 0, mailboxes: MailboxStore | None = None,
                 candidates: Candidates | None = None,
                 offer_limiter: StoreLimiter | None = None) -> None:
        self.own = own
        self.k = k
        self.alpha = alpha
        self.paths = paths
        self.table = table if table is not None else RoutingTable(own, k=k, now=now,
                                                                  puzzle_bits=puzzle_bits)
        #: contacts must solve their id's puzzle at this difficulty (the table's)
        self.puzzle_bits = self.table.puzzle_bits
        self.store = store if store is not None else RecordStore()
        self.limiter = limiter if limiter is not None else StoreLimiter()
        #: letters this node holds for other nodes' mailboxes
        self.mailboxes = mailboxes if mailboxes is not None else MailboxStore()
        self.refused: Counter[str] = Counter()
        #: called with (reason, peer) for each record refused: a STORE this node
        #: would not take, or a value an answer carried that did not verify
        self.on_record_refused: Callable[[str, Contact | None], None] | None = None
        #: with a candidate queue, a contact enters the table only once it answered
        #: this node (a requester not in the table and every contact offered by peer
        #: exchange wait there for a check); None: Kademlia's rule, a requester
        #: enters at once, and peer exchange is not run
        self.candidates = candidates
        self.offer_limiter = offer_limiter if offer_limiter is not None else StoreLimiter(
            OFFER_RATE, OFFER_BURST)
        #: peer exchange received: offers, records accepted, offers over the rate
        self.exchange: Counter[str] = Counter()
        #: told of each offered entry that passed :func:`check_entry`; returns why it is
        #: refused after all (the record keeper's pin, rollback, revocation) or None
        self.on_offer_entry: Callable[[Contact, CheckedEntry], str | None] | None = None

    def _record_refused(self, reason: str, peer: Contact | None) -> None:
        self.refused[reason] += 1
        if self.on_record_refused is not None:
            self.on_record_refused(reason, peer)

    # -- answering ---------------------------------------------------------
    def responsible_for(self, key: bytes) -> bool:
        """True unless this node knows k contacts closer to ``key`` than itself."""
        own = int.from_bytes(self.own.id, "big") ^ int.from_bytes(key, "big")
        closer = self.table.closest(key, self.k)
        return len(closer) < self.k or any(
            (int.from_bytes(c.id, "big") ^ int.from_bytes(key, "big")) > own for c in closer)

    def answer(self, request: Request, now: float, sender: Contact | None = None) -> Response:
        """The answer to ``request``; a STORE is checked (rate per ``sender``, place, record)."""
        if isinstance(request, Ping):
            return Pong()
        if isinstance(request, FindNode):
            return Nodes(tuple(self.table.closest(request.target, self.k)))
        if isinstance(request, FindValue):
            held = self.store.get(request.key, now)
            if held is not None:
                return Value(held)
            return Value(None, tuple(self.table.closest(request.key, self.k)))
        if isinstance(request, Collect):
            return self._collect(request, now, sender)
        if isinstance(request, Offer):
            return self._offered(request, now, sender)
        if sender is not None and not self.limiter.take(sender.id, now):
            self._record_refused("store rate", sender)
            raise DhtRequestRefused("store rate exceeded")
        key = request.key if isinstance(request, Deposit) else request.record.key
        if not self.responsible_for(key):
            self._record_refused("not responsible", sender)
            raise DhtRequestRefused("not among the k closest to that key")
        if isinstance(request, Deposit):
            try:
                self.mailboxes.put(request.key, request.envelope, now)
            except MailboxError as e:
                self._record_refused(type(e).__name__, sender)
                raise DhtRequestRefused(f"letter refused: {type(e).__name__}") from e
            return Stored()
        try:
            self.store.put(request.record, now)
        except DhtRecordError as e:
            self._record_refused(type(e).__name__, sender)
            raise DhtRequestRefused(f"record refused: {type(e).__name__}") from e
        return Stored()

    def _collect(self, request: Collect, now: float, sender: Contact | None) -> Mail:
        """The owner's letters under the key, after deleting those it names."""
        try:
            owner = verify_auth(request.auth, request.delete, now)
        except MailboxError as e:
            self._record_refused(type(e).__name__, sender)
            raise DhtRequestRefused(f"collect refused: {type(e).__name__}") from e
        if sender is not None and sender.onion != owner:
            # only the owner's own session may collect: a relayed proof is refused
            self._record_refused("BadMailboxAuth", sender)
            raise DhtRequestRefused("collect refused: BadMailboxAuth")
        key = request.auth.key
        deleted = self.mailboxes.delete(key, request.delete)
        envelopes, more = self.mailboxes.collect(key, now)
        return Mail(tuple(envelopes), more, deleted)

    def _offered(self, offer: Offer, now: float, sender: Contact | None) -> Offered:
        """Check each entry of a peer-exchange ``offer``; the good ones become candidates."""
        if self.candidates is None:
            raise DhtRequestRefused("peer exchange not run here")
        if sender is None:
            raise DhtRequestRefused("an offer comes over a session")
        if not self.offer_allowed(sender, now):
            raise DhtRequestRefused("offer rate exceeded")
        accepted = refused = 0
        for entry in offer.entries:
            try:
                checked = check_entry(entry, now, self.puzzle_bits)
            except PexEntryError as e:
                refused += 1
                self.exchange["records_refused"] += 1
                self._record_refused(type(e).__name__, sender)
                continue
            why = self.on_offer_entry(sender, checked) if self.on_offer_entry else None
            if why is not None:
                refused += 1
                self.exchange["records_refused"] += 1
                self._record_refused(why, sender)
                continue
            accepted += 1
            self.exchange["records_accepted"] += 1
            self.consider(checked.contact, now)
        return Offered(accepted, refused)

    def offer_allowed(self, sender: Contact, now: float) -> bool:
        """Whether an offer from ``sender`` is within the rate this node takes offers at
        (``offer_limiter``); counted as received, or as over the rate."""
        if not self.offer_limiter.take(sender.id, now):
            self.exchange["offers_over_rate"] += 1
            self.refused["offer rate"] += 1
            return False
        self.exchange["offers_received"] += 1
        return True

    def consider(self, contact: Contact, now: float) -> PingOldest | None:
        """A contact this node has not heard answer yet: kept if the table holds it
        already (seen again), else a candidate for a check (Kademlia's rule without
        a candidate queue: it enters the table)."""
        if contact.id == self.own.id:
            return None
        if self.candidates is None or self.table.knows(contact):
            return self.table.observe(contact, now)
        if check_puzzle(contact.id, contact.nonce, self.puzzle_bits):
            self.candidates.add(contact, now)
        return None

    def checked(self, contact: Contact, now: float) -> PingOldest | None:
        """``contact`` answered a request of this node through a session: it is
        trusted (into the table; no longer a candidate)."""
        if self.candidates is not None:
            self.candidates.discard(contact)
        return self.table.observe(contact, now)

    def handle(self, sender: Contact, data: bytes, now: float) -> Handled:
        """Answer the request bytes ``data`` from ``sender`` (whom the session proved).

        A malformed request or a refused STORE is answered with a REFUSED
        naming the reason (counted in :attr:`refused`); a malformed request
        teaches the table nothing about its sender.
        """
        try:
            request, nonce = decode_request_nonce(data)
        except DhtMessageError:
            self.refused["malformed"] += 1
            return Handled(encode(Refused("malformed request")), None)
        sender = Contact(sender.ed25519_public, sender.i2p, nonce)
        if not check_puzzle(sender.id, nonce, self.puzzle_bits):
            # Lookups are answered (it may be a newcomer), but the sender never
            # enters the table and may not STORE: its place in the id space is unpaid.
            if isinstance(request, Store | Deposit | Offer):
                self._record_refused("puzzle", sender)
                return Handled(encode(Refused("puzzle not solved")), None)
            self.refused["puzzle"] += 1
        try:
            answer = encode(self.answer(request, now, sender))
        except DhtRequestRefused as e:
            answer = encode(Refused(e.reason))
        return Handled(answer, self.consider(sender, now))

    # -- asking --------------------------------------------------------------
    def lookup(self, target: bytes, *, paths: int | None = None,
               seeds: Iterable[Contact] | None = None, quorum: int = 1,
               until_found: bool = False) -> Lookup[SignedRecord]:
        """A lookup of ``target`` from this node's closest contacts (or ``seeds``);
        ``until_found``: a node lookup that ends once an answer names the target."""
        start = list(seeds) if seeds is not None else self.table.closest(target, self.k)
        return Lookup(target, start, k=self.k, alpha=self.alpha,
                      paths=self.paths if paths is None else paths, own_id=self.own.id,
                      quorum=quorum, until_found=until_found)

    @staticmethod
    def newest(values: Iterable[SignedRecord]) -> SignedRecord | None:
        """The highest-sequence record among verified ``values`` (a replayed old one loses)."""
        return max(values, key=lambda r: r.sequence, default=None)

    def find_node(self, target: bytes) -> bytes:
        return self.request(FindNode(target))

    def find_value(self, key: bytes) -> bytes:
        return self.request(FindValue(key))

    def feed(self, lookup: Lookup[SignedRecord], contact: Contact, answer: bytes | None,
             now: float) -> bool:
        """Feed ``contact``'s answer bytes (None: timeout or error) into ``lookup``.

        An answer that does not decode, is not an answer to a lookup, or holds
        a value that does not verify or is not for the key asked, counts as a
        failure of that contact. Returns whether the answer was good (the
        driver holds a bad one against the contact, as it does a timeout).
        """
        if answer is None:
            lookup.on_failure(contact)
            return False
        try:
            response = decode_response(answer)
        except DhtMessageError:
            self.refused["malformed answer"] += 1
            lookup.on_failure(contact)
            return False
        if isinstance(response, Nodes):
            lookup.on_response(contact, self._solved(response.contacts))
            return True
        if isinstance(response, Value):
            record = response.record
            if record is not None:
                try:
                    if record.key != lookup.target:
                        raise DhtRecordError("value for another key")
                    verify(record, now)
                except DhtRecordError as e:
                    self._record_refused(type(e).__name__, contact)
                    lookup.on_failure(contact)
                    return False
            lookup.on_response(contact, self._solved(response.contacts), record)
            return True
        self.refused["wrong answer"] += 1
        lookup.on_failure(contact)
        return False

    def _solved(self, contacts: Iterable[Contact]) -> tuple[Contact, ...]:
        """The contacts whose nonce solves their puzzle (the others are not asked)."""
        if self.puzzle_bits <= 0:
            return tuple(contacts)
        given = tuple(contacts)
        ok = tuple(c for c in given if check_puzzle(c.id, c.nonce, self.puzzle_bits))
        if len(ok) < len(given):
            self.refused["puzzle"] += len(given) - len(ok)
        return ok

    # -- asking with our nonce ----------------------------------------------------
    def request(self, message: Request) -> bytes:
        """``message`` encoded with this node's puzzle nonce."""
        return encode(message, self.own.nonce)

    # -- maintenance ---------------------------------------------------------
    def due_refresh(self, now: float, rng: random.Random) -> list[bytes]:
        """Targets to look up now so that stale buckets are refreshed."""
        return [self.table.refresh_target(i, rng) for i in self.table.due_refresh(now)]

    def due_republish(self, now: float) -> list[SignedRecord]:
        """Records to STORE again at the k closest nodes now (expired ones and
        letters past their time are dropped)."""
        self.store.expire(now)
        self.mailboxes.expire(now)
        return self.store.due_republish(now)
