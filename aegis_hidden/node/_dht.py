"""The DHT as the running node uses it: one :class:`DhtService` per node.

It runs :class:`aegis_hidden.dht.DhtNode` over the core's ``rpc`` channel,
with the routing table and the records kept in the node's state database
(SQLCipher underneath; :class:`aegis_hidden.dht.DhtPersistence` uses only its
``run()``), and:

* **bootstraps** from ``network.bootstrap_nodes`` (their onion keys are the
  seeds) by a lookup of its own id, and again on the maintenance tick
  until some contact answered (a bootstrap node that was not up yet), or
  whenever the table became empty;
* **trusts a contact only once it answered**: a contact enters the routing
  table after it answered a request of this node through a session (a lookup
  query, a PING); contacts offered by peer exchange and requesters not in the
  table are candidates (:class:`~aegis_hidden.dht.Candidates`), a few PINGed
  at each tick (:meth:`check_candidates`);
* **exchanges peers** (:meth:`exchange`): at each tick it offers up to
  :data:`PEX_PEERS` contacts it has a session with the signed identity records
  of a few good contacts (with its own I2P binding when ``dht.exchange_i2p``
  allows, and bindings learnt that way); an offer received is checked entry by
  entry (:func:`~aegis_hidden.dht.check_entry`, then the record keeper),
  limited per peer, and a forged entry costs the offerer reputation; a
  contact learnt so gives the peer store its record and ``.b32.i2p``;
* **publishes this node's identity record** under a key anyone can compute
  from the onion address alone (:func:`identity_key`): a signed DHT record
  named ``identity`` whose publisher record *is* the node's current identity
  record (its value is empty). It is re-signed when the identity record
  changes, at half its ``dht.record_lifetime``, and when contacts closer to
  its key than its holders entered the table since. Once the node holds a
  revocation of its own (``identity revoke`` wrote ``revocation.bin``), it
  publishes the revocation record (:func:`~aegis_hidden.dht._records.revocation_record`)
  at that key instead: it replaces the identity record at every holder and
  never expires;
* **stores and serves revocations it learns** of other nodes (from a record
  push, or a lookup): the record cache tells it, and it holds the revocation
  record at that identity's key and STOREs it at the k closest, so nodes that
  were offline learn it by lookup;
* **resolves** a peer known by nothing but its onion address
  (:meth:`resolve`): the identity record found is checked by the
  :class:`~._records.RecordKeeper` (signatures, pin, rollback; a revocation
  closes sessions and is kept for good) and the peer is added to the peer
  store (origin ``peer``), so the pool can dial it and messages can be sent;
* lets the rpc channel **dial contacts learnt through the DHT**: before a
  request to a contact the peer store does not know, the contact is added to
  it (origin ``peer``); the pool keeps at most ``network.max_connections``
  sessions, closing the least recently used;
* **refreshes** buckets and **republishes** records on the reactor clock (one
  ``LoopingCall``, every ``dht.maintenance_interval``), saving the table and
  records at every tick;
* counts lookups (ok / failed) and refused records (``/metrics``) and emits
  ``dht_lookup_failed`` and ``dht_record_refused`` events;
* **judges contacts** (docs/reputation.md): an RPC that times out, an answer
  that does not decode or does not fit the request, contacts that fail the
  puzzle, a forged or invalid record, a refusal without a reason each cost
  the contact reputation in the peer store; a contact below
  :data:`MIN_REPUTATION` (or blacklisted) is evicted from the routing table,
  never asked and its requests are refused;
* **spreads the d disjoint paths over Tor and I2P** where the node runs both
  and a contact's owner gave it the contact's I2P destination: a query on an
  odd path to a contact with no live session is sent over I2P (to its
  ``.b32.i2p``), on an even path over Tor (:func:`path_network`);
* **crawls** (:meth:`crawl`): asks every contact it can reach for its
  neighbours until no new contact appears, and counts who answered;
* runs **offline mailboxes**: holds letters for other nodes (``dht.mailbox_ttl``,
  ``dht.mailbox_quota``), leaves a message the messenger could not deliver
  within ``dht.mailbox_after`` in its peer's mailbox (:meth:`deposit_message`),
  and collects this node's own mailboxes at start-up and every tick
  (:meth:`collect_mail`), handing the letters to the messenger.
"""

from __future__ import annotations

import hashlib
import math
import random
import secrets
import statistics
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..addresses import (
    OnionAddressError,
    onion_address_from_public_key,
    public_key_from_onion_address,
    strip_port,
)
from ..config import DhtConfig
from ..dht import (
    MAX_OFFER,
    OFFER_RATE,
    PEX_PEERS,
    Candidates,
    CheckedEntry,
    Collect,
    Contact,
    Deposit,
    DhtCore,
    DhtMessageError,
    DhtNode,
    DhtPersistence,
    DhtRecordError,
    FindNode,
    FindValue,
    Lookup,
    LookupResult,
    Mail,
    MailboxError,
    MailboxStore,
    Nodes,
    Offer,
    Offered,
    PexEntry,
    Ping,
    Pong,
    Query,
    RecordStore,
    Refused,
    RoutingTable,
    SignedRecord,
    Store,
    Stored,
    StoreLimiter,
    Value,
    check_puzzle,
    decode_request,
    decode_response,
    encode,
    mailbox_key,
    open_letter,
    record_key,
    seal_letter,
    sign_auth,
    sign_record,
    solve_puzzle,
    utc_day,
)
from ..dht._records import IDENTITY_NAME as IDENTITY_NAME  # re-exported: the name of that record
from ..dht._records import revocation_record
from ..identity import IdentityRecord, NodeIdentity, RecordError, RecordKind, parse_record
from ..interfaces import IDHT
from ..peers import ORIGIN_PEER, Behaviour, PeerInfo
from ._channels import RpcHandler, RpcRemoteError, RpcTimeout, RpcUnreachable
from ._identity_service import IdentityService
from ._metrics import Histogram
from ._pool import link_onion

if TYPE_CHECKING:
    from ._core import NodeCore

#: a contact whose reputation is below this is evicted from the routing table and
#: never asked (docs/reputation.md); below 0.1 the peer store blacklists it as well
MIN_REPUTATION = 0.2

#: the answers that fit each request (a REFUSED with a reason fits any)
_EXPECTED: dict[type, tuple[type, ...]] = {
    Ping: (Pong,), FindNode: (Nodes,), FindValue: (Value,), Store: (Stored,),
    Deposit: (Stored,), Collect: (Mail,), Offer: (Offered,),
}
#: record refusals that say the peer forged something (not a race or a clock)
_FORGED = frozenset({"BadRecordSignature", "UnsignedRecord", "DhtRecordError",
                     "BadMailboxAuth", "ForgedEntry", "BadI2PBinding"})
#: refusals of peer-exchange entries and offers (counted in dht_exchange_refused)
_PEX_REFUSALS = frozenset({"ForgedEntry", "BadI2PBinding", "UnsolvedEntry", "RevokedEntry",
                           "RecordKeeperRefused"})
#: contacts learnt by peer exchange whose record (and I2P binding) are remembered
PEX_REMEMBERED = 1024
#: buckets (seconds) of ``aegis_dht_request_seconds``: warm round trips are tenths of
#: a second on Tor, a dial (descriptor, rendezvous, handshake) adds seconds
RPC_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
                                  30.0)
#: round trips kept per kind for ``rpc_seconds`` in the stats (the newest)
RPC_SAMPLES = 512


def rpc_summary(count: int, samples: Sequence[float]) -> dict[str, Any]:
    """``count`` answered requests of a kind, and of the ``samples`` kept (seconds):
    median, 95th percentile, the mean and standard deviation of their logarithms (a
    log-normal fit: median exp(ln_mean), sigma ln_sd) and the samples themselves
    (ms precision), so several nodes' samples can be pooled."""
    xs = sorted(samples)
    if not xs:
        return {"count": count, "p50": None, "p95": None, "ln_mean": None, "ln_sd": None,
                "samples": []}
    logs = [math.log(max(x, 1e-6)) for x in xs]
    return {"count": count, "p50": round(statistics.median(xs), 4),
            "p95": round(xs[min(len(xs) - 1, math.ceil(0.95 * len(xs)) - 1)], 4),
            "ln_mean": round(statistics.fmean(logs), 4),
            "ln_sd": round(statistics.pstdev(logs), 4) if len(logs) > 1 else 0.0,
            "samples": [round(x, 3) for x in samples]}


def path_network(path: int | None, networks: Iterable[str], i2p: str | None) -> str:
    """The network a lookup query on disjoint path ``path`` goes over: ``"i2p"`` for an
    odd path when the node runs both Tor and I2P and the contact's I2P destination
    is known (its owner gave it: record push with the binding), else ``"tor"``."""
    have = set(networks)
    if path is not None and path % 2 == 1 and i2p and {"tor", "i2p"} <= have:
        return "i2p"
    return "tor"


class _PathLookup(Lookup[SignedRecord]):
    """A lookup that tells the service each query's path as it hands it out (the
    driver sends the query right after: :meth:`DhtService.route` reads it)."""

    note: Callable[[Query], None] | None = None

    def next_queries(self) -> list[Query]:
        out = super().next_queries()
        if self.note is not None:
            for q in out:
                self.note(q)
        return out


class _NodeDhtCore(DhtCore):
    """The core whose lookups note their queries' paths (for the Tor/I2P spread)."""

    note_query: Callable[[Query], None] | None = None

    def lookup(self, target: bytes, **options: Any) -> Lookup[SignedRecord]:
        found = super().lookup(target, **options)
        found.__class__ = _PathLookup
        cast(_PathLookup, found).note = self.note_query
        return found


def identity_key(onion: str) -> bytes:
    """The DHT key of ``onion``'s identity record (raises ValueError on a bad address)."""
    try:
        return record_key(public_key_from_onion_address(onion), IDENTITY_NAME)
    except OnionAddressError as e:
        raise ValueError(str(e)) from None


def record_json(record: SignedRecord) -> dict[str, Any]:
    """A record as the API shows it (the value as base64, the publisher as its onion)."""
    import base64

    from ..addresses import onion_address_from_public_key

    return {
        "key": record.key.hex(),
        "name": record.name.decode("utf-8", "backslashreplace"),
        "value": base64.b64encode(record.value).decode("ascii"),
        "sequence": record.sequence,
        "expires": record.expires,
        "publisher": onion_address_from_public_key(record.publisher),
    }


class _DialingRpc:
    """The core's rpc channel, adding a contact the peer store does not know before
    asking it (the pool dials only peers in the store); the service judges every
    answer (reputation), refuses to ask shunned contacts and picks the network."""

    def __init__(self, core: NodeCore, service: DhtService) -> None:
        self._core = core
        self._service = service

    def on_request(self, handler: RpcHandler) -> None:
        def by_onion(peer: str, body: bytes) -> Any:
            # The DHT names a contact by its onion key: a session that came over I2P
            # is named by the onion its verified record proves.
            if not peer.endswith(".onion"):
                link = self._core.pool.link(peer)
                onion = link_onion(link) if link is not None else None
                if onion is None:
                    return encode(Refused("no onion identity for this session"))
                peer = onion
            if self._service.shunned(peer) is not None:
                return encode(Refused("reputation too low"))
            answer = handler(peer, body)
            if isinstance(answer, bytes):
                self._service.count_mail(body, answer)
                self._service.count_offer(body, answer)
            return answer

        self._core.rpc.on_request(by_onion)

    def request(self, peer: str, payload: bytes, timeout: float) -> Deferred[bytes]:
        service = self._service
        why = service.shunned(peer)
        if why is not None:
            service.forget_path(peer)
            service.evict(peer, why)
            return fail(RpcUnreachable(f"not asking {peer}: {why}"))
        name = service.route(peer)
        # warm: over a session already open; cold: the pool dials first
        warm = self._core.pool.connected(name)
        started = service.now()
        d = self._send(name, payload, timeout)
        d.addCallback(service.timed, warm, started)
        d.addCallbacks(service.judge_answer, service.judge_failure,
                       callbackArgs=(peer, payload), errbackArgs=(peer,))
        return d

    def _send(self, peer: str, payload: bytes, timeout: float) -> Deferred[bytes]:
        store = self._core.store
        if store.get(peer) is not None:
            return self._core.rpc.request(peer, payload, timeout)
        # a contact learnt by peer exchange comes with its record (and its I2P name)
        learnt = self._service.learnt_by_exchange(peer)
        record, i2p = learnt if learnt is not None else (None, None)
        added = Deferred.fromCoroutine(store.add(peer, origin=ORIGIN_PEER, record=record,
                                                 i2p_destination=i2p))
        return added.addCallback(lambda _: self._core.rpc.request(peer, payload, timeout))


@implementer(IDHT)
class DhtService(Service):
    """The node's DHT (its ``name`` is ``"dht"``); start it after the core."""

    log = Logger()
    name = "dht"

    def __init__(self, core: NodeCore, config: DhtConfig, identity: IdentityService | NodeIdentity,
                 clock: IReactorTime, *, bootstrap: Sequence[str] = (),
                 rng: random.Random | None = None) -> None:
        self._core = core
        self.config = config
        self._identity = identity
        self._clock = clock
        self._rng = rng if rng is not None else secrets.SystemRandom()
        now = clock.seconds()
        key = self._current().ed25519_public
        # the puzzle of our own id, solved once per start (dht.puzzle_bits: ~2^bits hashes)
        own = Contact(key, nonce=solve_puzzle(Contact(key).id, config.puzzle_bits))
        table = RoutingTable(own, k=config.k, refresh_interval=config.refresh_interval, now=now,
                             puzzle_bits=config.puzzle_bits)
        store = RecordStore(max_records=config.max_records,
                            max_per_publisher=config.max_records_per_publisher,
                            republish_interval=config.republish_interval)
        dht = _NodeDhtCore(own, k=config.k, alpha=config.alpha, paths=config.disjoint_paths,
                      store=store, table=table,
                      limiter=StoreLimiter(config.store_rate, config.store_burst), now=now,
                      mailboxes=MailboxStore(ttl=config.mailbox_ttl, quota=config.mailbox_quota),
                      candidates=Candidates())
        dht.on_record_refused = self._record_refused
        dht.on_offer_entry = self._offer_entry
        #: onion -> (identity record, I2P binding or b"", its .b32.i2p or None) of
        #: contacts learnt by peer exchange (the newest PEX_REMEMBERED)
        self._pex: dict[str, tuple[bytes, bytes, str | None]] = {}
        #: when this node last offered each peer records (it offers a peer no more often
        #: than a peer accepts offers, OFFER_RATE, whatever its maintenance interval)
        self._offered_at: dict[str, float] = {}
        self._candidate_counts: Counter[str] = Counter()
        dht.note_query = self._note_query
        #: onion -> the disjoint path of the query about to be sent to it
        self._path_of: dict[str, int] = {}
        #: queries sent per network (the Tor/I2P spread of the disjoint paths)
        self.path_networks: Counter[str] = Counter()
        #: misbehaviour seen per kind (each cost the contact reputation)
        self.misbehaviour: Counter[str] = Counter()
        self.evicted = 0
        #: letters taken to hold for other nodes, and deposits/collects refused by reason
        self.mail_accepted = 0
        self.mail_refused: Counter[str] = Counter()
        self._revocations_held: set[str] = set()
        #: round trips of answered requests (seconds, newest kept), warm and cold
        self.rpc_count: Counter[str] = Counter()
        self.rpc_samples: dict[str, deque[float]] = {
            kind: deque(maxlen=RPC_SAMPLES) for kind in ("warm", "cold")}
        self._listening = False
        self.node = DhtNode(dht, _DialingRpc(core, self), clock, self._rng,
                            timeout=config.request_timeout,
                            persistence=DhtPersistence(core.db))
        self.node.on_lookup = self._lookup_done
        self.bootstrap_contacts = _contacts(bootstrap, own, config.puzzle_bits)
        self.own_record: SignedRecord | None = None
        self.bootstrapped = False
        #: the last lookups (kind, ok, seconds, rounds), oldest first
        self.recent: deque[dict[str, Any]] = deque(maxlen=32)
        self.own_stored = 0  # holders that took the last publication of our record
        #: ids of the k contacts closest to our record's key when it was last published
        self._own_closest: frozenset[bytes] = frozenset()
        self._loop: LoopingCall | None = None
        self._unsubscribe: Any = None
        self._outcome: bool | BaseException | None = None  # None: starting
        self._waiters: list[Deferred[None]] = []
        metrics = core.metrics
        metrics.gauge("dht_contacts", "Contacts in the DHT routing table.",
                      lambda: len(self.node.core.table))
        metrics.gauge("dht_candidates", "DHT contacts waiting for their reachability check "
                      "(learnt by peer exchange, or asked this node) before they are trusted.",
                      lambda: len(self._candidates()))
        metrics.gauge("dht_records_held", "DHT records this node holds.",
                      lambda: len(self.node.core.store))
        metrics.gauge("dht_mailbox_letters", "Letters this node holds for other nodes' "
                      "mailboxes.", lambda: len(self.node.core.mailboxes))
        metrics.gauge("dht_mailbox_bytes", "Bytes of letters this node holds for other "
                      "nodes' mailboxes.", lambda: self.node.core.mailboxes.size)
        for kind in self.rpc_samples:  # both kinds in /metrics from the start
            self._rpc_histogram(kind)

    @property
    def dht(self) -> DhtCore:
        return self.node.core

    def _candidates(self) -> Candidates:
        candidates = self.dht.candidates
        assert candidates is not None  # made in __init__
        return candidates

    def _current(self) -> NodeIdentity:
        ident = self._identity
        return ident.identity if isinstance(ident, IdentityService) else ident

    # -- lifecycle ------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._core.attach_dht(self)
        messenger = self._core.messenger
        messenger.mailbox = self.deposit_message if self.config.mailbox_after > 0 else None
        messenger.mailbox_after = self.config.mailbox_after
        self._collected_back = False  # the start-up collect (mailbox_days back) not done yet
        if isinstance(self._identity, IdentityService):
            self._unsubscribe = self._identity.subscribe(lambda _: self._republish_own())
        cache = getattr(self._core.records, "cache", None)
        if cache is not None and not self._listening:
            cache.add_listener(self._record_learnt)  # no way to remove: guarded by running
            self._listening = True
        Deferred.fromCoroutine(self._start()).addBoth(self._settle)

    async def _start(self) -> None:
        await self._core.when_ready()
        contacts, records, dropped = await self.node.load()
        own = self.dht.store.get(identity_key(self._current().onion), self._clock.seconds())
        if own is not None:
            self.own_record = own
        self.log.info("DHT: {contacts} contacts and {records} records loaded ({dropped} "
                      "dropped), {bootstrap} bootstrap contacts", contacts=contacts,
                      records=records, dropped=dropped, bootstrap=len(self.bootstrap_contacts))
        loop = self._loop = LoopingCall(self.tick)
        loop.clock = self._clock
        loop.start(self.config.maintenance_interval, now=True)

    def when_ready(self) -> Deferred[None]:
        """Fires once the table and records are loaded and the first tick has begun."""
        d: Deferred[None] = Deferred()
        if self._outcome is True:
            d.callback(None)
        elif isinstance(self._outcome, BaseException):
            d.errback(self._outcome)
        else:
            self._waiters.append(d)
        return d

    def _settle(self, outcome: Any) -> None:
        self._outcome = True if not isinstance(outcome, Failure) else outcome.value
        if isinstance(outcome, Failure):
            self.log.failure("the DHT failed to start", outcome)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if self._outcome is True:
                d.callback(None)
            else:
                d.errback(outcome)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._core.messenger.mailbox == self.deposit_message:
            self._core.messenger.mailbox = None
        self._core.detach_dht(self)
        return self.node.save().addErrback(
            lambda f: self.log.failure("saving the DHT state failed", f))

    # -- maintenance ------------------------------------------------------------
    def tick(self) -> Deferred[None]:
        """Bootstrap if the table is empty, publish our record if due, refresh, republish,
        save. Never fails (a failure is logged): the loop must keep running."""
        return Deferred.fromCoroutine(self._tick()).addErrback(
            lambda f: self.log.failure("DHT maintenance failed", f))

    async def _tick(self) -> None:
        if self.bootstrap_contacts and not (self.bootstrapped and len(self.dht.table)):
            await self.bootstrap()
        if self._own_due():
            await self.publish_own()
        await self.node.maintain()
        await self.check_candidates()
        await self.exchange()
        if len(self.dht.table):
            back = 1 if self._collected_back else self.config.mailbox_days
            await self.collect_mail(back)
            self._collected_back = True

    async def bootstrap(self) -> int:
        """Learn the bootstrap contacts and look up our own id; contacts in the table."""
        result = await self.node.bootstrap(self.bootstrap_contacts)
        self.bootstrapped = bool(result.closest)  # somebody answered: else retry next tick
        self.log.info("DHT bootstrap: {n} contacts answered, table holds {size}",
                      n=len(result.closest), size=len(self.dht.table))
        return len(self.dht.table)

    # -- reachability checks and peer exchange ---------------------------------------
    async def check_candidates(self) -> int:
        """PING the candidates due this tick; how many answered (and are trusted now)."""
        trusted = await self.node.check_candidates()
        counts = self._candidates().counts
        metrics = self._core.metrics
        for kind in ("trusted", "unreachable"):
            new = counts[kind] - self._candidate_counts[kind]
            if new > 0:
                metrics.inc(f"dht_candidates_{kind}", new)
            self._candidate_counts[kind] = counts[kind]
        return trusted

    async def exchange(self) -> int:
        """Offer the identity records of a few good contacts to up to :data:`PEX_PEERS`
        routing-table contacts this node has a session with and has not offered any in
        the last ``1 / OFFER_RATE`` seconds (so a short ``dht.maintenance_interval``
        never makes it exceed the rate its peers accept); how many they took."""
        pool = self._core.pool
        now = self._clock.seconds()
        spacing = 1.0 / OFFER_RATE
        self._offered_at = {k: t for k, t in self._offered_at.items() if now - t < spacing}
        peers = [c for c in self.dht.table.contacts()
                 if pool.connected(c.onion) and self.shunned(c.onion) is None
                 and c.onion not in self._offered_at]
        chosen = self._rng.sample(peers, min(PEX_PEERS, len(peers)))
        offers = []
        for peer in chosen:
            entries = self._entries_for(peer)
            if entries:
                self._offered_at[peer.onion] = now
                offers.append(self.node.offer(peer, entries))
        answers = await DeferredList(offers, consumeErrors=True)
        return sum(a.accepted for ok, a in answers if ok and isinstance(a, Offered))

    def _entries_for(self, peer: Contact) -> list[PexEntry]:
        """Up to :data:`MAX_OFFER` entries for ``peer``: this node's own with its I2P
        binding when ``dht.exchange_i2p`` allows it, then good contacts' records (in
        the table, not shunned, a valid identity record in the peer store)."""
        entries: list[PexEntry] = []
        ident = self._current()
        if self.config.exchange_i2p and ident.i2p_binding is not None:
            entries.append(PexEntry(ident.record.to_bytes(), self.dht.own.nonce,
                                    ident.i2p_binding.to_bytes()))
        now = self._clock.seconds()
        good = [c for c in self.dht.table.contacts()
                if c.id != peer.id and self.shunned(c.onion) is None]
        self._rng.shuffle(good)
        for contact in good:
            if len(entries) >= MAX_OFFER:
                break
            record = self._record_bytes(contact.onion, now)
            if record is not None:
                learnt = self._pex.get(contact.onion)
                entries.append(PexEntry(record, contact.nonce, learnt[1] if learnt else b""))
        return entries

    def _record_bytes(self, onion: str, now: float) -> bytes | None:
        """``onion``'s identity record from the peer store, if it is one and alive for
        a while yet (an expired one would be refused, and held against us)."""
        info = self._core.store.get(onion)
        if info is None or not info.record:
            return None
        try:
            record = parse_record(info.record)
        except RecordError:
            return None
        if record.kind is not RecordKind.IDENTITY or record.expires < now + 600:
            return None
        return bytes(info.record)

    def _offer_entry(self, sender: Contact, checked: CheckedEntry) -> str | None:
        """An offered entry passed its checks: the record keeper checks it as a record
        learnt by lookup (pin, rollback, revocation); the contact's I2P binding is
        remembered and given to the peer store. Why it is refused, or None."""
        onion = checked.contact.onion
        if onion == self._current().onion:
            return None  # our own record offered back: nothing to learn
        ident = self._core.records.learn(onion, checked.record.to_bytes(),
                                         source="peer exchange")
        if ident is None or ident.kind is not RecordKind.IDENTITY:
            return "RecordKeeperRefused"
        self._pex.pop(onion, None)
        self._pex[onion] = (ident.to_bytes(), checked.binding, checked.i2p)
        if len(self._pex) > PEX_REMEMBERED:
            del self._pex[next(iter(self._pex))]
        info = self._core.store.get(onion)
        if info is not None and checked.i2p and info.i2p_destination != checked.i2p:
            Deferred.fromCoroutine(self._core.store.add(onion, i2p_destination=checked.i2p)
                                   ).addErrback(lambda f: self.log.failure(
                                       "storing an I2P destination failed", f))
        return None

    def learnt_by_exchange(self, onion: str) -> tuple[bytes, str | None] | None:
        """The identity record and the ``.b32.i2p`` (or None) peer exchange gave of
        ``onion``, or None."""
        learnt = self._pex.get(onion)
        return None if learnt is None else (learnt[0], learnt[2])

    def _own_due(self) -> bool:
        if not len(self.dht.table):
            return False
        own = self.own_record
        if self._own_revocation() is not None:  # permanent: published until somebody took it
            return own is None or not own.is_revocation or self.own_stored == 0
        if own is None or self.own_stored == 0:
            return True
        now = self._clock.seconds()
        return own.expires - now < self.config.record_lifetime / 2 or (
            own.publisher_record != self._current().record.to_bytes()) or self._own_closer()

    def _own_closer(self) -> bool:
        """Contacts closer to our record's key than its holders entered the table since it
        was published (a contact enters only once it answered, so a young node's table
        fills over a few ticks after its first publication): they should hold it too."""
        if self.own_stored >= self.dht.k:
            return False
        key = identity_key(self._current().onion)
        return any(c.id not in self._own_closest for c in self.dht.table.closest(key))

    def _republish_own(self) -> None:
        if self.running and len(self.dht.table):
            Deferred.fromCoroutine(self.publish_own()).addErrback(
                lambda f: self.log.failure("publishing the identity record failed", f))

    def sign(self, name: bytes, value: bytes, lifetime: float) -> SignedRecord:
        """A record of ours, signed by the node's identity, with a fresh sequence."""
        ident = self._current()
        now = self._clock.seconds()
        key = record_key(ident.ed25519_public, name)
        held = self.dht.store.get(key, now)
        sequence = max(int(now), held.sequence + 1 if held is not None else 0)
        return sign_record(ident.master, ident.mldsa, ident.record.to_bytes(), name, value,
                           sequence, int(now + lifetime))

    def _own_revocation(self) -> IdentityRecord | None:
        revocation = getattr(self._core.records, "revocation", None)
        return revocation if isinstance(revocation, IdentityRecord) else None

    async def publish_own(self) -> int:
        """STORE this node's identity record (signed now), or its revocation record once
        it holds one; how many holders took it."""
        revocation = self._own_revocation()
        if revocation is not None:
            record = revocation_record(revocation.to_bytes())
        else:
            record = self.sign(IDENTITY_NAME, b"", self.config.record_lifetime)
        self.own_record = record
        key = identity_key(self._current().onion)
        self._own_closest = frozenset(c.id for c in self.dht.table.closest(key))
        self.own_stored = await self.node.put(record)
        self.log.info("DHT: identity record (sequence {sequence}) stored at {n} nodes",
                      sequence=record.sequence, n=self.own_stored)
        return self.own_stored

    # -- mailboxes ----------------------------------------------------------------
    def deposit_message(self, peer: str, data: bytes, msg_id: str) -> Deferred[int]:
        """Seal ``data`` (an encoded message) to ``peer`` and leave it in today's mailbox
        of ``peer``; how many holders took it. Fails (MailboxError) when the peer's
        identity record is not known nor found, or the message is too large."""
        return Deferred.fromCoroutine(self._deposit(peer, data))

    async def _deposit(self, peer: str, data: bytes) -> int:
        record = await self._record_of(peer)
        onion = onion_address_from_public_key(record.ed25519_public)
        key = mailbox_key(onion, utc_day(self._clock.seconds()))
        envelope = seal_letter(onion, record.xwing_public, key, self._current().master, data)
        return await self.node.deposit(key, envelope)

    async def _record_of(self, peer: str) -> IdentityRecord:
        info = self._core.store.get(peer)
        if info is not None and info.record:
            try:
                record = parse_record(info.record)
            except RecordError:
                record = None
            if record is not None and record.kind is RecordKind.IDENTITY:
                return record
        if peer.endswith(".onion"):
            found = await self._resolve(peer)
            if found is not None and found.kind is RecordKind.IDENTITY:
                return found
        raise MailboxError(f"no identity record of {peer}: its X-Wing key is not known")

    async def collect_mail(self, days_back: int = 0) -> int:
        """Collect this node's mailboxes of today and ``days_back`` days before; each
        letter goes to the messenger (de-duplicated by message id) before the holders
        delete it. The number of letters delivered as new or duplicate messages."""
        ident = self._current()
        today = utc_day(self._clock.seconds())
        delivered = 0
        # the same letter comes from each of its holders: handed over (and counted) once
        seen: set[tuple[str, bytes]] = set()

        for day in range(today, today - days_back - 1, -1):
            key = mailbox_key(ident.onion, day)

            def auth(delete: tuple[bytes, ...], day: int = day) -> Any:
                return sign_auth(ident.master, ident.mldsa, ident.record.to_bytes(),
                                 ident.onion, day, self._clock.seconds(), delete)

            async def sink(envelopes: list[bytes], key: bytes = key) -> None:
                nonlocal delivered
                for envelope in envelopes:
                    try:
                        letter = open_letter(ident.onion, ident.xwing_secret, key, envelope)
                    except MailboxError as e:
                        # never opens for us (not ours, tampered): deleted like the others
                        self._core.metrics.inc("dht_records_refused")
                        self._core.events.emit("dht_record_refused", reason=type(e).__name__,
                                               peer=None)
                        continue
                    copy = (letter.sender, hashlib.sha256(letter.data).digest())
                    if copy in seen:
                        continue
                    seen.add(copy)
                    if await self._core.messenger.receive_letter(letter.sender, letter.data):
                        delivered += 1
                        self._core.metrics.inc("mailbox_collected")

            await self.node.collect(key, auth, sink)
        if delivered:
            self._core.events.emit("mailbox_collected", letters=delivered)
            self.log.info("DHT: {n} letters collected from this node's mailbox", n=delivered)
        return delivered

    # -- IDHT ------------------------------------------------------------------
    def get(self, key: bytes, *, local: bool = True) -> Deferred[SignedRecord | None]:
        """The newest record at ``key``: held here (unless not ``local``), else found in
        the network."""
        held = self.dht.store.get(key, self._clock.seconds()) if local else None
        if held is not None:
            return Deferred.fromCoroutine(_value(held))
        return self.node.lookup(key, value=True, quorum=self.config.quorum).addCallback(
            lambda found: _newest(found.values))

    def put(self, name: bytes, value: bytes, lifetime: float) -> Deferred[int]:
        """Sign a record of ours called ``name`` and STORE it at the k closest."""
        if name == IDENTITY_NAME:
            return Deferred.fromCoroutine(_refuse(ValueError(
                "the name \"identity\" is the node's own identity record")))
        try:
            record = self.sign(name, value, lifetime)
        except DhtRecordError as e:
            return Deferred.fromCoroutine(_refuse(e))
        return self.node.put(record)

    def resolve(self, onion: str) -> Deferred[IdentityRecord | None]:
        """Find ``onion``'s identity record in the DHT and add the peer to the store."""
        return Deferred.fromCoroutine(self._resolve(onion))

    async def _resolve(self, onion: str) -> IdentityRecord | None:
        onion = strip_port(onion).lower()
        try:
            key = identity_key(onion)
        except ValueError:
            return None
        record = await self.get(key, local=False)
        if record is None:
            return None
        return await self.learn(onion, record)

    async def learn(self, onion: str, record: SignedRecord) -> IdentityRecord | None:
        """Hand the identity record carried by ``record`` to the record keeper; add
        the peer (unless it revoked its identity)."""
        keeper = self._core.records
        ident = keeper.learn(onion, record.publisher_record)
        if ident is None:
            return None
        if record.is_revocation:
            return ident  # the pool refuses to dial it from now on
        if record.value:  # the older form: a revocation as the identity record's value
            revocation = keeper.learn(onion, record.value)
            if revocation is not None and revocation.kind is RecordKind.REVOCATION:
                return revocation
        if ident.kind is RecordKind.REVOCATION:
            return ident
        await self._core.store.add(onion, record=ident.to_bytes(), origin=ORIGIN_PEER)
        return ident

    def contacts(self) -> list[str]:
        return [c.onion for c in self.dht.table.contacts()]

    def stats(self) -> dict[str, Any]:
        table = self.dht.table
        s = self.node.stats
        own = self.own_record
        return {
            "enabled": True,
            "node_id": self.dht.own.id.hex(),
            "parameters": {"k": self.dht.k, "alpha": self.dht.alpha,
                           "disjoint_paths": self.dht.paths, "quorum": self.config.quorum,
                           "puzzle_bits": self.dht.puzzle_bits},
            "routing_table": {
                "contacts": len(table),
                "buckets": [{"index": i, "contacts": len(b.contacts),
                             "replacements": len(b.replacements)}
                            for i, b in sorted(table.buckets.items())
                            if b.contacts or b.replacements],
            },
            "records": {
                "held": len(self.dht.store),
                "own_key": identity_key(self._current().onion).hex(),
                "own_sequence": own.sequence if own is not None else None,
                "own_stored_at": self.own_stored,
            },
            "lookups": {"ok": s["lookups_ok"], "failed": s["lookups_failed"],
                        "last_seconds": self.node.last_lookup_seconds,
                        "recent": list(self.recent)},
            "requests_answered": s["requests_answered"],
            "rpc_failures": s["rpc_failures"],
            "rpc_seconds": {kind: rpc_summary(self.rpc_count[kind], samples)
                            for kind, samples in self.rpc_samples.items()},
            "refused": dict(sorted(self.dht.refused.items())),
            "misbehaviour": dict(sorted(self.misbehaviour.items())),
            "evicted": self.evicted,
            "paths": {"tor": self.path_networks["tor"], "i2p": self.path_networks["i2p"]},
            "exchange": self.exchange_stats(),
            "candidates": self.candidate_stats(),
            "revoked": self.own_record is not None and self.own_record.is_revocation,
            "mailbox": self.mailbox_stats(),
            "contacts": self.contacts(),
        }

    def exchange_stats(self) -> dict[str, Any]:
        """Peer exchange: offers this node sent and how they were taken, offers it
        received, the records it accepted and refused (by reason)."""
        sent = self.node.stats
        got = self.dht.exchange
        reasons = {k: v for k, v in self.dht.refused.items() if k in _PEX_REFUSALS}
        return {"offers_sent": sent["offers_sent"], "records_offered": sent["records_offered"],
                "offers_taken": sent["offers_taken"], "records_taken": sent["records_taken"],
                "offers_refused": sent["offers_refused"],
                "offers_received": got["offers_received"],
                "records_accepted": got["records_accepted"],
                "records_refused": got["records_refused"],
                "offers_over_rate": got["offers_over_rate"],
                "refused": dict(sorted(reasons.items())),
                "i2p_learnt": sum(1 for _, _, i2p in self._pex.values() if i2p)}

    def candidate_stats(self) -> dict[str, Any]:
        """Reachability checks: contacts waiting, being checked, trusted, unreachable."""
        queue = self._candidates()
        counts = queue.counts
        return {"waiting": len(queue), "checking": queue.checking,
                "queued": counts["queued"], "trusted": counts["trusted"],
                "checked_by_lookup": counts["checked_by_lookup"],
                "unreachable": counts["unreachable"], "dropped": counts["dropped"],
                "max": queue.max_size, "checks_per_tick": queue.per_tick}

    def crawl(self, max_nodes: int = 1000, parallel: int = 8) -> Deferred[dict[str, Any]]:
        """Walk the network from our contacts: ask each node reached for the contacts
        closest to itself and to a random id, until nothing new appears (or
        ``max_nodes`` were asked). Counts the nodes that answered."""
        return Deferred.fromCoroutine(self._crawl(max_nodes, parallel))

    async def _crawl(self, max_nodes: int, parallel: int) -> dict[str, Any]:
        started = self._clock.seconds()
        own = self.dht.own.id
        seen: dict[bytes, Contact] = {c.id: c for c in self.dht.table.contacts()}
        queue = list(seen.values())
        reachable: list[str] = []
        unreachable: list[str] = []
        while queue and len(reachable) + len(unreachable) < max_nodes:
            batch = queue[:max(1, min(parallel, max_nodes - len(reachable) - len(unreachable)))]
            del queue[:len(batch)]
            asks = [DeferredList([self.node.ask_nodes(c, c.id),
                                  self.node.ask_nodes(c, self._rng.randbytes(32))])
                    for c in batch]
            answers = await DeferredList(asks)
            for contact, (_, pair) in zip(batch, answers, strict=True):
                found = [r for ok, r in pair if ok and r is not None]
                (reachable if found else unreachable).append(contact.onion)
                for learnt in (c for lst in found for c in lst):
                    if learnt.id != own and learnt.id not in seen:
                        seen[learnt.id] = learnt
                        queue.append(learnt)
        return {"reachable": len(reachable), "unreachable": len(unreachable),
                "seen": len(seen), "not_asked": len(queue),
                "seconds": round(self._clock.seconds() - started, 3),
                "nodes": sorted(reachable)}

    # -- accounting -------------------------------------------------------------
    def _lookup_done(self, target: bytes, value: bool, result: LookupResult[SignedRecord],
                     seconds: float) -> None:
        ok = result.value is not None if value else bool(result.closest)
        self.recent.append({"kind": "value" if value else "node", "ok": ok,
                            "seconds": round(seconds, 3), "rounds": result.rounds})
        metrics = self._core.metrics
        metrics.inc("dht_lookups_ok" if ok else "dht_lookups_failed")
        if not ok:
            self._core.events.emit(
                "dht_lookup_failed", key=target.hex(), kind="value" if value else "node",
                reason="no value found" if value and result.closest else "no contact answered",
                messages=result.messages, failures=result.failures,
                seconds=round(seconds, 3))

    def _record_refused(self, reason: str, peer: Contact | None) -> None:
        self._core.metrics.inc("dht_records_refused")
        self._core.events.emit("dht_record_refused", reason=reason,
                               peer=peer.onion if peer is not None else None)
        if peer is not None and reason in _FORGED:
            self.observe(peer.onion, Behaviour.DHT_BAD_RECORD)
        elif peer is not None and reason == "UnsolvedEntry":
            self.observe(peer.onion, Behaviour.DHT_BAD_CONTACTS)
        if reason in _PEX_REFUSALS:
            self._core.metrics.inc("dht_exchange_refused")

    # -- revocations learnt of other nodes ------------------------------------------
    def _record_learnt(self, record: IdentityRecord) -> None:
        """The record cache accepted ``record``: a revocation is held and served here,
        and stored at the k closest (once per identity and run)."""
        if not self.running or record.kind is not RecordKind.REVOCATION:
            return
        onion = record.onion
        if onion in self._revocations_held or onion == self._current().onion:
            return
        self._revocations_held.add(onion)
        try:
            held = revocation_record(record.to_bytes())
            self.dht.store.put(held, self._clock.seconds())
        except DhtRecordError as e:
            self.log.info("revocation of {onion} not held: {error}", onion=onion, error=str(e))
            return
        self.log.info("DHT: holding the revocation of {onion}", onion=onion)
        if len(self.dht.table):
            self.node.put(held).addErrback(
                lambda f: self.log.failure("storing a revocation failed", f))

    # -- reputation ---------------------------------------------------------------
    def shunned(self, peer: str) -> str | None:
        """Why ``peer`` is not asked nor answered (None: it is)."""
        info = self._core.store.get(peer)
        if info is None:
            return None
        if info.blocked(self._clock.seconds()):
            return "blacklisted"
        if info.reputation < MIN_REPUTATION:
            return f"reputation {info.reputation:.3f} below {MIN_REPUTATION}"
        return None

    def evict(self, peer: str, why: str) -> None:
        """Drop ``peer`` from the routing table (if it is there)."""
        try:
            contact = Contact.of_onion(peer)
        except ValueError:
            return
        table = self.dht.table
        known = table.contacts()
        siblings = getattr(table, "siblings", None)  # S/Kademlia's sibling list, if kept
        if callable(siblings):
            known += siblings()
        if not any(c.id == contact.id for c in known):
            return
        table.remove(contact)
        self.evicted += 1
        self._core.metrics.inc("dht_contacts_evicted")
        self.log.info("DHT: {peer} evicted from the routing table ({why})", peer=peer, why=why)

    def observe(self, peer: str, behaviour: Behaviour) -> Deferred[None]:
        """Hold ``behaviour`` against ``peer`` (peer store); evict it if it fell too low."""
        self.misbehaviour[behaviour.value] += 1
        self._core.metrics.inc("dht_misbehaviour")
        d = Deferred.fromCoroutine(self._core.store.observe(peer, behaviour))

        def judged(info: PeerInfo | None) -> None:
            if info is not None:
                why = self.shunned(peer)
                if why is not None:
                    self.evict(peer, f"{why} after {behaviour.value}")

        return d.addCallback(judged).addErrback(
            lambda f: self.log.failure("reputation update for {peer} failed", f, peer=peer))

    def now(self) -> float:
        return self._clock.seconds()

    def timed(self, answer: bytes, warm: bool, started: float) -> bytes:
        """Count the round trip of an answered request, warm (over a session open
        before it) or cold (the pool dialled first); the answer goes on."""
        kind = "warm" if warm else "cold"
        seconds = max(0.0, self._clock.seconds() - started)
        self.rpc_count[kind] += 1
        self.rpc_samples[kind].append(seconds)
        self._rpc_histogram(kind).observe(seconds)
        return answer

    def _rpc_histogram(self, kind: str) -> Histogram:
        return self._core.metrics.labelled_histogram(
            "dht_request_seconds", "Round trips of answered DHT requests: warm over a "
            "session already open, cold when the pool dialled first.", "kind", kind,
            RPC_BUCKETS)

    def judge_answer(self, answer: bytes, peer: str, payload: bytes) -> bytes:
        """Hold a wrong answer against ``peer``; the answer goes on unchanged."""
        behaviour = self._misbehaviour(payload, answer)
        if behaviour is not None:
            self.observe(peer, behaviour)
        return answer

    def judge_failure(self, failure: Failure, peer: str) -> Failure:
        """An RPC timeout, or an error answer, is held against ``peer`` (a dial that
        failed is judged by the pool already); the failure goes on."""
        if failure.check(RpcTimeout):
            self.observe(peer, Behaviour.DHT_TIMEOUT)
        elif failure.check(RpcRemoteError):
            self.observe(peer, Behaviour.DHT_REFUSED)
        return failure

    def _misbehaviour(self, payload: bytes, answer: bytes) -> Behaviour | None:
        try:
            response = decode_response(answer)
        except DhtMessageError:
            return Behaviour.DHT_BAD_ANSWER
        if isinstance(response, Refused):
            return None if response.reason.strip() else Behaviour.DHT_REFUSED
        try:
            request = decode_request(payload)
        except DhtMessageError:
            return None  # not one of ours: nothing to hold against the peer
        if not isinstance(response, _EXPECTED.get(type(request), ())):
            return Behaviour.DHT_BAD_ANSWER
        bits = self.dht.puzzle_bits
        if bits > 0 and isinstance(response, Nodes | Value) and any(
                not check_puzzle(c.id, c.nonce, bits) for c in response.contacts):
            return Behaviour.DHT_BAD_CONTACTS
        return None

    # -- Tor/I2P spread of the disjoint paths ---------------------------------------
    def _note_query(self, query: Query) -> None:
        self._path_of[query.contact.onion] = query.path

    def forget_path(self, peer: str) -> None:
        """The query noted for ``peer`` is not sent (the contact is shunned)."""
        self._path_of.pop(peer, None)

    def networks(self) -> set[str]:
        """The transports this node runs (``tor``, ``i2p``)."""
        return {str(getattr(p, "name", "")) for p in self._core.transports}

    def route(self, peer: str) -> str:
        """The name to send a request to ``peer`` by: its onion, or its ``.b32.i2p`` for
        a lookup query on an I2P path (see :func:`path_network`) when no session with
        it is live (a live session is used whatever network it runs over)."""
        path = self._path_of.pop(peer, None)
        info = self._core.store.get(peer)
        i2p = info.i2p_destination if info is not None else None
        learnt = self._pex.get(peer)
        if not i2p and learnt is not None:  # its owner offered it by peer exchange
            i2p = learnt[2]
        network = path_network(path, self.networks(), i2p)
        if network == "i2p" and i2p and self._core.pool.link(peer) is None:
            self.path_networks["i2p"] += 1
            return i2p
        self.path_networks["tor"] += 1
        return peer

    def count_offer(self, body: bytes, answer: bytes) -> None:
        """Count the records a peer-exchange offer gave (its answer, Offered), or an
        offer refused for its rate."""
        try:
            if not isinstance(decode_request(body), Offer):
                return
            response = decode_response(answer)
        except DhtMessageError:
            return
        if isinstance(response, Offered) and response.accepted:
            self._core.metrics.inc("dht_exchange_accepted", response.accepted)
        elif isinstance(response, Refused) and response.reason == "offer rate exceeded":
            self._core.metrics.inc("dht_exchange_refused")

    # -- mailbox figures --------------------------------------------------------------
    def count_mail(self, body: bytes, answer: bytes) -> None:
        """Count a deposit taken, or a deposit or collect refused (by reason)."""
        try:
            request = decode_request(body)
        except DhtMessageError:
            return
        if not isinstance(request, Deposit | Collect):
            return
        try:
            response = decode_response(answer)
        except DhtMessageError:
            return
        if isinstance(response, Stored):
            self.mail_accepted += 1
            self._core.metrics.inc("mailbox_accepted")
        elif isinstance(response, Refused):
            reason = response.reason.split(": ", 1)[-1] or "refused"
            self.mail_refused[reason] += 1
            self._core.metrics.inc("mailbox_refused")

    def mailbox_stats(self) -> dict[str, Any]:
        boxes = self.dht.mailboxes
        counters = self._core.metrics.counters
        return {"letters_held": len(boxes), "bytes_held": boxes.size,
                "accepted": self.mail_accepted,
                "deposited": counters.get("mailbox_deposited", 0),
                "collected": counters.get("mailbox_collected", 0),
                "refused": dict(sorted(self.mail_refused.items()))}


def _contacts(addresses: Iterable[str], own: Contact, puzzle_bits: int) -> list[Contact]:
    """Contacts of the onion entries of ``network.bootstrap_nodes`` (an I2P-only entry
    has no onion key to be a contact: it is reached by the peering service only).
    Their puzzle is solved here, as every node solves its own: the first nonce."""
    out: dict[bytes, Contact] = {}
    for address in addresses:
        host = strip_port(address)
        if host.endswith(".onion"):
            contact = Contact.of_onion(host)
            if contact.id != own.id:
                out[contact.id] = Contact(contact.ed25519_public,
                                          nonce=solve_puzzle(contact.id, puzzle_bits))
    return list(out.values())


async def _value(record: SignedRecord) -> SignedRecord | None:
    return record


def _newest(values: Iterable[SignedRecord]) -> SignedRecord | None:
    """A revocation among ``values`` (it overrides any record), else the highest
    sequence (a replayed old one loses)."""
    values = list(values)
    return next((v for v in values if v.is_revocation), None) or DhtCore.newest(values)


async def _refuse(error: Exception) -> int:
    raise error


