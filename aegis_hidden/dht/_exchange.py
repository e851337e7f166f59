"""Peer exchange and the reachability check of contacts (pure; ``now`` is passed in).

**Peer exchange.** A node offers a peer it already has a session with the
signed identity records of a few good routing-table contacts (an
:class:`~._messages.Offer`). The receiver checks every entry as a record
learnt by lookup is checked (:func:`check_entry`: the record's two
signatures against the onion its key encodes, its expiry, its size; the
puzzle of the contact's id; an I2P binding against the record's
commitment) and refuses each bad one with a typed error; the driver then
hands it to the record keeper (pin, rollback, revocation). Offers are
limited per peer by a token bucket (:class:`~._core.StoreLimiter` with the
offer rate).

**Candidates.** A contact learnt from somebody else (a peer-exchange offer)
or one that asked this node but is not in its table yet is a *candidate*
(:class:`Candidates`): it enters the routing table only once it answered a
request of this node through a real session (a PING, or any valid answer
during a lookup). The queue is bounded (the oldest goes first when full), a
tick checks at most a few, and a contact that did not answer is not queued
again for a while.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..addresses import onion_address_from_public_key
from ..identity import (
    I2PBinding,
    IdentityRecord,
    RecordError,
    RecordKind,
    parse_record,
    verify_binding,
    verify_record,
)
from ._ids import Contact
from ._messages import PexEntry
from ._puzzle import check_puzzle

#: offers a peer may make: this many per second on average, ``OFFER_BURST`` at once
OFFER_RATE = 1 / 60
OFFER_BURST = 3
#: peers a node offers records to at each maintenance tick, at most
PEX_PEERS = 2
#: candidates waiting for their check, at most
MAX_CANDIDATES = 256
#: candidates checked (pinged) per maintenance tick, at most
CHECKS_PER_TICK = 4
#: a candidate that did not answer is not queued again for this long (seconds)
RETRY_AFTER = 3600.0
_MAX_FAILED = 4096


class PexEntryError(ValueError):
    """A peer-exchange entry refused; the subclass names the reason."""


class ForgedEntry(PexEntryError):
    """The record does not parse, its signatures do not verify, or it expired."""


class RevokedEntry(PexEntryError):
    """The record is a revocation: its owner is no contact to trust."""


class UnsolvedEntry(PexEntryError):
    """The nonce does not solve the contact id's puzzle."""


class BadI2PBinding(PexEntryError):
    """The I2P binding does not open the record's commitment."""


@dataclass(frozen=True)
class CheckedEntry:
    contact: Contact
    record: IdentityRecord
    #: the ``.b32.i2p`` the binding proves for the contact (None: no binding)
    i2p: str | None
    #: the binding that proved it (salt and destination; empty: none)
    binding: bytes = b""


def check_entry(entry: PexEntry, now: float, puzzle_bits: int) -> CheckedEntry:
    """``entry`` checked as a record learnt by lookup is (raises a :class:`PexEntryError`)."""
    try:
        record = parse_record(entry.record)
        onion = onion_address_from_public_key(record.ed25519_public)
        verify_record(record, onion, now)
    except (RecordError, ValueError) as e:
        raise ForgedEntry(f"identity record refused: {e}") from None
    if record.kind is RecordKind.REVOCATION:
        raise RevokedEntry("the record is a revocation")
    contact = Contact(record.ed25519_public, nonce=entry.nonce)
    if not check_puzzle(contact.id, entry.nonce, puzzle_bits):
        raise UnsolvedEntry("nonce does not solve the contact's puzzle")
    i2p = None
    if entry.i2p_binding:
        try:
            i2p = verify_binding(record, I2PBinding.parse(entry.i2p_binding))
        except RecordError as e:
            raise BadI2PBinding(f"I2P binding refused: {e}") from None
    return CheckedEntry(contact, record, i2p, entry.i2p_binding if i2p else b"")


class Candidates:
    """Contacts waiting for a reachability check (pure: the driver pings them).

    :meth:`add` queues a contact (the table's driver decides it is not trusted
    yet); :meth:`take` hands out at most ``n`` to check, oldest first;
    :meth:`answered` / :meth:`failed` report the outcome. Counts in
    :attr:`counts`: ``queued``, ``dropped`` (queue full, the oldest went),
    ``trusted`` (answered a check), ``unreachable`` (did not), ``checked_by_lookup``
    (answered a lookup's query while waiting).
    """

    def __init__(self, max_size: int = MAX_CANDIDATES, per_tick: int = CHECKS_PER_TICK,
                 retry_after: float = RETRY_AFTER) -> None:
        if max_size < 1 or per_tick < 1:
            raise ValueError("a candidate queue holds at least one and checks at least one")
        self.max_size = max_size
        self.per_tick = per_tick
        self.retry_after = retry_after
        self._queue: dict[bytes, Contact] = {}  # oldest first
        self._checking: dict[bytes, Contact] = {}
        self._failed: dict[bytes, float] = {}  # id -> when it did not answer
        self.counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, contact: object) -> bool:
        return isinstance(contact, Contact) and (
            contact.id in self._queue or contact.id in self._checking)

    @property
    def checking(self) -> int:
        return len(self._checking)

    def add(self, contact: Contact, now: float) -> bool:
        """Queue ``contact`` for a check; False if it is queued or checked already, or
        did not answer a check within ``retry_after``."""
        if contact.id in self._checking:
            return False
        if contact.id in self._queue:
            self._queue[contact.id] = contact  # the newest (nonce) wins, its place stays
            return False
        failed = self._failed.get(contact.id)
        if failed is not None and now - failed < self.retry_after:
            return False
        self._failed.pop(contact.id, None)
        self._queue[contact.id] = contact
        self.counts["queued"] += 1
        if len(self._queue) > self.max_size:
            del self._queue[next(iter(self._queue))]
            self.counts["dropped"] += 1
        return True

    def take(self, n: int | None = None) -> list[Contact]:
        """Up to ``n`` (default ``per_tick``) candidates to check now, oldest first."""
        n = self.per_tick if n is None else n
        out: list[Contact] = []
        while self._queue and len(out) < n:
            cid = next(iter(self._queue))
            contact = self._queue.pop(cid)
            self._checking[cid] = contact
            out.append(contact)
        return out

    def answered(self, contact: Contact) -> None:
        """``contact`` answered its check: the driver puts it in the table."""
        if self._checking.pop(contact.id, None) is not None:
            self.counts["trusted"] += 1

    def failed(self, contact: Contact, now: float) -> None:
        """``contact`` did not answer its check: not trusted, not queued again for a while."""
        if self._checking.pop(contact.id, None) is None:
            return
        self.counts["unreachable"] += 1
        self._failed[contact.id] = now
        if len(self._failed) > _MAX_FAILED:
            del self._failed[next(iter(self._failed))]

    def discard(self, contact: Contact) -> None:
        """``contact`` answered a lookup's query while it waited: checked that way."""
        if self._queue.pop(contact.id, None) is not None:
            self.counts["checked_by_lookup"] += 1
