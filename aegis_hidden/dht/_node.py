"""The DHT core over the node's ``rpc`` channel (the Twisted side; the core stays sans-I/O).

:class:`DhtNode` answers DHT requests that arrive on the rpc channel (the
session already proved who asks: the contact is the session's onion) and runs
lookups by sending the queries the :class:`~._lookup.Lookup` machine hands out,
each with a timeout on the injected clock, and feeding back what comes (an
answer, or any rpc failure: timeout, closed or unreachable session, remote
error). Bucket refresh and record republish run from one ``LoopingCall`` on the
same clock, asking the core what is due.

The node runs it through :class:`aegis_hidden.node.DhtService` (built by
``tap.py`` from the ``dht.*`` settings; docs/dht.md).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._core import DhtCore
from ._ids import Contact
from ._lookup import Lookup, LookupResult
from ._mailbox import MAX_DELETE, MailboxAuth, entry_id
from ._messages import (
    Collect,
    Deposit,
    DhtMessageError,
    Mail,
    Nodes,
    Offer,
    Offered,
    PexEntry,
    Ping,
    Pong,
    Response,
    Store,
    Stored,
    decode_response,
)
from ._persist import DhtPersistence
from ._records import SignedRecord
from ._table import PingOldest

RpcHandler = Callable[[str, bytes], "bytes | Deferred[bytes] | Coroutine[Any, Any, bytes]"]
#: signs a collect for one mailbox key, covering the entry ids to delete
AuthSigner = Callable[[tuple[bytes, ...]], MailboxAuth]
#: takes letters collected; the holders delete them only once it returned
LetterSink = Callable[[list[bytes]], Coroutine[Any, Any, None]]
#: collect rounds with one holder (each deletes what the last one returned)
MAX_COLLECT_ROUNDS = 16

DEFAULT_TIMEOUT = 10.0
MAINTENANCE_INTERVAL = 60.0


class RpcTransport(Protocol):
    """What the node's ``RpcChannel`` offers (node/_channels.py)."""

    def request(self, peer: str, payload: bytes, timeout: float) -> Deferred[bytes]: ...

    def on_request(self, handler: RpcHandler) -> None: ...


class DhtNode:
    log = Logger()

    def __init__(self, core: DhtCore, rpc: RpcTransport, clock: IReactorTime,
                 rng: random.Random, *, timeout: float = DEFAULT_TIMEOUT,
                 persistence: DhtPersistence | None = None) -> None:
        self.core = core
        self.persistence = persistence
        self._rpc = rpc
        self._clock = clock
        self._rng = rng
        self.timeout = timeout
        self.stats: Counter[str] = Counter()
        self._loop: LoopingCall | None = None
        #: told of every lookup's end: (target, value lookup?, result, seconds it took)
        self.on_lookup: Callable[[bytes, bool, LookupResult[SignedRecord], float], None] | None \
            = None
        self.last_lookup_seconds: float | None = None
        self._saved_records: frozenset[tuple[bytes, int, float | None]] | None = None
        self._saved_mail: frozenset[tuple[bytes, bytes]] = frozenset()
        rpc.on_request(self._on_request)

    # -- answering -------------------------------------------------------------
    def _on_request(self, peer: str, body: bytes) -> bytes:
        contact = Contact.of_onion(peer)
        handled = self.core.handle(contact, body, self._clock.seconds())
        self.stats["requests_answered"] += 1
        if handled.ping is not None:
            self._ping_oldest(handled.ping)
        return handled.answer

    def _ping_oldest(self, event: PingOldest) -> None:
        def answered(ok: bool) -> None:
            if ok:
                self.core.table.ping_answered(event.oldest, self._clock.seconds())
            else:
                self.core.table.ping_failed(event.oldest)

        self.ping(event.oldest).addCallback(answered)

    # -- asking ------------------------------------------------------------------
    def _ask(self, contact: Contact, payload: bytes) -> Deferred[bytes | None]:
        """The answer's bytes, or None for any failure of the rpc (counted)."""
        d = self._rpc.request(contact.onion, payload, self.timeout)

        def failed(f: Failure) -> None:
            self.stats["rpc_failures"] += 1
            self.log.debug("dht request failed: {error}", error=f.type.__name__ if f.type else "?")
            return None

        return d.addErrback(failed)

    def ping(self, contact: Contact) -> Deferred[bool]:
        def check(answer: bytes | None) -> bool:
            return answer is not None and isinstance(decoded(answer), Pong)

        return self._ask(contact, self.core.request(Ping())).addCallback(check)

    def ask_nodes(self, contact: Contact, target: bytes) -> Deferred[list[Contact] | None]:
        """Ask ``contact`` alone for the contacts it knows closest to ``target`` (a crawl
        step); None if it did not answer, or answered something else."""
        def contacts(answer: bytes | None) -> list[Contact] | None:
            response = None if answer is None else decoded(answer)
            if not isinstance(response, Nodes):
                return None
            self.core.checked(contact, self._clock.seconds())
            return list(response.contacts)

        return self._ask(contact, self.core.find_node(target)).addCallback(contacts)

    def lookup(self, target: bytes, *, value: bool = False, paths: int | None = None,
               quorum: int = 1, until_found: bool = False,
               seeds: Iterable[Contact] | None = None) -> Deferred[LookupResult[SignedRecord]]:
        """Run a lookup of ``target`` (FIND_VALUE if ``value``) to its end
        (``until_found``: a node lookup that ends once an answer names the target;
        ``seeds``: start from these contacts, not the table's closest)."""
        lookup = self.core.lookup(target, paths=paths, quorum=quorum, until_found=until_found,
                                  seeds=seeds)
        payload = self.core.find_value(target) if value else self.core.find_node(target)
        started = self._clock.seconds()
        self.core.table.touch(target, started)
        result: Deferred[LookupResult[SignedRecord]] = Deferred()

        def pump() -> None:
            if result.called:
                return
            if not lookup.done:
                for q in lookup.next_queries():
                    self._ask(q.contact, payload).addCallback(arrived, lookup, q.contact)
            if lookup.done and not result.called:  # answers may come back synchronously
                self.stats["lookups"] += 1
                found = lookup.result()
                seconds = self.last_lookup_seconds = self._clock.seconds() - started
                ok = found.value is not None if value else bool(found.closest)
                self.stats["lookups_ok" if ok else "lookups_failed"] += 1
                if self.on_lookup is not None:
                    self.on_lookup(target, value, found, seconds)
                result.callback(found)

        def arrived(answer: bytes | None, lk: Lookup[SignedRecord], contact: Contact) -> None:
            if result.called:
                return  # answers after the end (a value came first) are dropped
            now = self._clock.seconds()
            if not self.core.feed(lk, contact, answer, now):  # no answer, or a bad one
                self.core.table.failed(contact)
            else:  # it answered through a session: reachability checked
                ping = self.core.checked(contact, now)
                if ping is not None:
                    self._ping_oldest(ping)
            pump()

        pump()
        return result

    def get(self, key: bytes, *, quorum: int = 1) -> Deferred[SignedRecord | None]:
        """The newest verified record at ``key`` among ``quorum`` holders' answers, or None."""
        return self.lookup(key, value=True, quorum=quorum).addCallback(
            lambda r: self.core.newest(r.values))

    def put(self, record: SignedRecord) -> Deferred[int]:
        """STORE ``record`` (this node holds it too) at the k closest; how many took it."""
        self.core.store.put(record, self._clock.seconds())
        return self._publish(record)

    def _publish(self, record: SignedRecord) -> Deferred[int]:
        def store(found: LookupResult[SignedRecord]) -> Deferred[int]:
            return self._store_at(record, found.closest)

        return self.lookup(record.key).addCallback(store)

    def _store_at(self, record: SignedRecord, contacts: Iterable[Contact]) -> Deferred[int]:
        return self._stored_at(self.core.request(Store(record)), contacts)

    def _stored_at(self, payload: bytes, contacts: Iterable[Contact]) -> Deferred[int]:
        asks = [self._ask(c, payload) for c in contacts]

        def count(results: list[tuple[bool, bytes | None]]) -> int:
            return sum(1 for ok, answer in results
                       if ok and answer is not None and isinstance(decoded(answer), Stored))

        return DeferredList(asks, consumeErrors=True).addCallback(count)

    # -- mailboxes ----------------------------------------------------------------
    def deposit(self, key: bytes, envelope: bytes) -> Deferred[int]:
        """Leave the sealed letter ``envelope`` at the k nodes closest to the mailbox
        ``key``; how many took it."""
        payload = self.core.request(Deposit(key, envelope))
        return self.lookup(key).addCallback(lambda found: self._stored_at(payload,
                                                                          found.closest))

    def collect(self, key: bytes, auth: AuthSigner, sink: LetterSink) -> Deferred[int]:
        """Collect the mailbox ``key`` from the k nodes closest to it: each letter
        goes to ``sink`` once (held twice, it is passed on once), and a holder is
        asked to delete a letter only after ``sink`` returned for it. The number
        of letters passed on."""
        return Deferred.fromCoroutine(self._collect(key, auth, sink))

    async def _collect(self, key: bytes, auth: AuthSigner, sink: LetterSink) -> int:
        found = await self.lookup(key)
        passed: set[bytes] = set()

        async def drain(contact: Contact) -> None:
            delete: tuple[bytes, ...] = ()
            for _ in range(MAX_COLLECT_ROUNDS):
                answer = await self._ask(contact, self.core.request(Collect(auth(delete), delete)))
                mail = decoded(answer) if answer is not None else None
                if not isinstance(mail, Mail) or not mail.envelopes:
                    return
                fresh = {entry_id(e): e for e in mail.envelopes}
                new = [e for i, e in fresh.items() if i not in passed]
                if new:
                    await sink(new)  # raises: nothing of this answer is deleted here
                    self.stats["letters_collected"] += sum(
                        1 for i in fresh if i not in passed)
                passed.update(fresh)
                delete = tuple(fresh)[:MAX_DELETE]

        await DeferredList([Deferred.fromCoroutine(drain(c)) for c in found.closest],
                           consumeErrors=True)
        return len(passed)

    def bootstrap(self, contacts: Iterable[Contact]) -> Deferred[LookupResult[SignedRecord]]:
        """Fill the table by a lookup of one's own id starting from ``contacts`` (and
        the table's closest). With a candidate queue the contacts enter the table
        only if they answer; without one (Kademlia's rule) they enter at once."""
        contacts = list(contacts)
        own = self.core.own.id
        if self.core.candidates is None:
            now = self._clock.seconds()
            for c in contacts:
                self.core.table.observe(c, now)
            return self.lookup(own)
        seeds = {c.id: c for c in self.core.table.closest(own)}
        seeds.update((c.id, c) for c in contacts)
        return self.lookup(own, seeds=list(seeds.values()))

    # -- reachability checks and peer exchange ------------------------------------------
    def check_candidates(self, n: int | None = None) -> Deferred[int]:
        """PING up to ``n`` (default the queue's per-tick limit) candidates; those that
        answer enter the table. How many answered."""
        candidates = self.core.candidates
        if candidates is None:
            return succeed(0)
        batch = candidates.take(n)

        def outcome(ok: bool, contact: Contact) -> bool:
            now = self._clock.seconds()
            if ok:
                candidates.answered(contact)
                ping = self.core.checked(contact, now)
                if ping is not None:
                    self._ping_oldest(ping)
                self.stats["candidates_trusted"] += 1
            else:
                candidates.failed(contact, now)
                self.stats["candidates_unreachable"] += 1
            return ok

        asks = [self.ping(c).addCallback(outcome, c) for c in batch]
        return DeferredList(asks, consumeErrors=True).addCallback(
            lambda results: sum(1 for ok, answered in results if ok and answered))

    def offer(self, contact: Contact, entries: Iterable[PexEntry]) -> Deferred[Offered | None]:
        """Offer ``contact`` (a peer with a session) the ``entries``; its answer (how many
        it took), or None if it refused the offer or did not answer."""
        entries = tuple(entries)
        self.stats["offers_sent"] += 1
        self.stats["records_offered"] += len(entries)

        def answered(answer: bytes | None) -> Offered | None:
            response = None if answer is None else decoded(answer)
            if not isinstance(response, Offered):
                self.stats["offers_refused"] += 1
                return None
            self.stats["offers_taken"] += 1
            self.stats["records_taken"] += response.accepted
            # an answer through the session: the peer is reachable
            ping = self.core.checked(contact, self._clock.seconds())
            if ping is not None:
                self._ping_oldest(ping)
            return response

        return self._ask(contact, self.core.request(Offer(entries))).addCallback(answered)

    # -- maintenance -------------------------------------------------------------
    def maintain(self) -> Deferred[None]:
        """Refresh the buckets and republish the records due now, then save (if persisting)."""
        now = self._clock.seconds()
        work: list[Deferred[Any]] = [self.lookup(t) for t in self.core.due_refresh(now, self._rng)]
        work += [self._publish(record) for record in self.core.due_republish(now)]
        done = DeferredList(work, consumeErrors=True)
        return done.addCallback(lambda _: self.save())

    def load(self) -> Deferred[tuple[int, int, int]]:
        """Restore the table and the records from the database: (contacts, records, dropped)."""
        return Deferred.fromCoroutine(self._load())

    async def _load(self) -> tuple[int, int, int]:
        if self.persistence is None:
            return (0, 0, 0)
        now = self._clock.seconds()
        await self.persistence.open()
        contacts = await self.persistence.load_table(self.core.table, now)
        records, dropped = await self.persistence.load_records(self.core.store, now)
        self.stats["letters_loaded"] += await self.persistence.load_mail(self.core.mailboxes, now)
        self._saved_mail = self._mail_held()
        return contacts, records, dropped

    def _mail_held(self) -> frozenset[tuple[bytes, bytes]]:
        return frozenset((key, entry_id(envelope))
                         for key, envelope, _ in self.core.mailboxes.entries())

    def save(self) -> Deferred[None]:
        """Write the table and the records to the database (nothing without persistence)."""
        return Deferred.fromCoroutine(self._save())

    async def _save(self) -> None:
        if self.persistence is None:
            return
        await self.persistence.open()  # at once when already open
        # Both writes are queued on the database now, in this call: a save at stop
        # must be queued before the node core closes the database.
        writes = [Deferred.fromCoroutine(self.persistence.save_table(self.core.table))]
        # records are large (~15 KiB each): written again only when what is held changed
        held = frozenset((r.key, r.sequence, self.core.store.republish_at(r.key))
                         for r in self.core.store.records())
        if held != self._saved_records:
            writes.append(Deferred.fromCoroutine(self.persistence.save_records(self.core.store)))
            self._saved_records = held
            self.stats["records_saved"] += 1
        mail = self._mail_held()
        if mail != self._saved_mail:
            writes.append(Deferred.fromCoroutine(self.persistence.save_mail(self.core.mailboxes)))
            self._saved_mail = mail
        for write in writes:
            await write

    def start(self, interval: float = MAINTENANCE_INTERVAL) -> None:
        loop = self._loop = LoopingCall(self.maintain)
        loop.clock = self._clock
        loop.start(interval, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


def decoded(answer: bytes) -> Response | None:
    """The answer decoded, or None if it is not a DHT answer."""
    try:
        return decode_response(answer)
    except DhtMessageError:
        return None
