"""The peer store: known peers, their identity records, reputation and blacklist.

Reads are served from an in-memory mirror loaded at start (the API lists peers
without touching the disk); every change is written through to SQLite, and the
mirror is updated only once the write has committed, so what the API shows is
always on disk.

Changes are computed from the newest value handed to the database, committed
or not: with group commit several writes to one peer wait in the same
transaction, and each must build on the one before it (two reputation updates
in one batch are two steps, not one lost). A change to a peer whose row is still
queued (the database worker has not taken it yet) rides on that write instead
of adding one: the row is written once, with the newest value, and every caller
is answered after that commit.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..identity import OnionAddressError, canonical_address, is_canonical_address
from ._db import Database
from ._reputation import (
    AUTO_BLOCK_BELOW,
    AUTO_BLOCK_SECONDS,
    INITIAL_REPUTATION,
    Behaviour,
    is_good,
    updated_reputation,
)

_COLUMNS = ("peer_id", "i2p_destination", "record", "status", "added", "last_seen",
            "reputation", "blocked_reason", "blocked_until", "sessions_ok", "sessions_failed",
            "origin")
# Built from the constant column names above, never from input.
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM peers"  # noqa: S608
_UPSERT = (f"INSERT OR REPLACE INTO peers ({', '.join(_COLUMNS)}) "  # noqa: S608
           f"VALUES ({', '.join('?' for _ in _COLUMNS)})")


ORIGIN_OPERATOR = "operator"
ORIGIN_PEER = "peer"


class PeerAddressError(ValueError):
    """Not a v3 onion or .b32.i2p address."""


class UnknownPeer(KeyError):
    """The peer is not in the store."""

    def __str__(self) -> str:
        return f"unknown peer {self.args[0]}"


def check_peer_address(address: object) -> str:
    """``address`` in its one canonical form, or :class:`PeerAddressError` saying why.

    Every entry point (API, config, CLI, peer store) goes through this, so one
    peer has one name: see :func:`aegis_hidden.identity.canonical_address`.
    """
    try:
        return canonical_address(address)
    except OnionAddressError as e:
        raise PeerAddressError(str(e)) from None


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    i2p_destination: str | None = None
    record: bytes | None = None
    status: str = "new"
    added: float = 0.0
    last_seen: float | None = None
    reputation: float = INITIAL_REPUTATION
    blocked_reason: str | None = None
    blocked_until: float | None = None
    sessions_ok: int = 0
    sessions_failed: int = 0
    # "operator": added by the operator (API, CLI, bootstrap_nodes); "peer": learnt
    # from a session the peer opened; "unknown": stored before origins were kept.
    origin: str = ORIGIN_OPERATOR

    @property
    def operator_added(self) -> bool:
        return self.origin == ORIGIN_OPERATOR

    def blocked(self, now: float) -> bool:
        if self.blocked_reason is None:
            return False
        return self.blocked_until is None or self.blocked_until > now

    def addresses(self) -> list[str]:
        """Where to dial, in order: the onion address, then the I2P destination."""
        out = [self.peer_id]
        if self.i2p_destination and self.i2p_destination != self.peer_id:
            out.append(self.i2p_destination)
        return out

    def to_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, c) for c in _COLUMNS)


class _Removing:
    """Marks a peer whose deletion is on its way to the disk."""


class _RowWrite:
    """One peer's row on its way to the disk.

    The database worker :meth:`take` s the value when the write runs (in its
    thread); until then the reactor may :meth:`amend` it with a newer value, and
    the amending caller waits for the same commit.
    """

    def __init__(self, peer_id: str, value: PeerInfo | _Removing) -> None:
        self.peer_id = peer_id
        self._value = value
        self._taken = False
        self._lock = threading.Lock()
        self._waiters: list[Deferred[None]] = []

    @property
    def value(self) -> PeerInfo | _Removing:
        return self._value

    def amend(self, value: PeerInfo | _Removing) -> bool:
        """Replace the value unless the worker has taken it; True if replaced."""
        with self._lock:
            if self._taken:
                return False
            self._value = value
            return True

    def take(self) -> PeerInfo | _Removing:
        with self._lock:
            self._taken = True
            return self._value

    def write(self, conn: sqlite3.Connection) -> None:
        value = self.take()
        if isinstance(value, _Removing):
            conn.execute("DELETE FROM peers WHERE peer_id = ?", (self.peer_id,))
        else:
            conn.execute(_UPSERT, value.to_row())

    def wait(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def finished(self, result: object) -> None:
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)


class PeerStore:
    """Peers by id (their onion address, or .b32.i2p address for I2P-only peers)."""

    log = Logger()

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self._db = db
        self._now = now
        self._peers: dict[str, PeerInfo] = {}
        # the newest value of each peer handed to the database and not yet committed
        self._writing: dict[str, _RowWrite] = {}
        self._listeners: list[Callable[[PeerInfo, str], None]] = []

    async def load(self) -> None:
        def read(conn: sqlite3.Connection) -> list[PeerInfo]:
            rows = conn.execute(_SELECT).fetchall()
            return [PeerInfo(*row) for row in rows]

        peers = await self._db.run(read)
        self._peers = {}
        for p in peers:
            if not is_canonical_address(p.peer_id):
                # Stored by an older version that took aliases; left on disk untouched.
                self.log.warn("ignoring stored peer {peer!r}: not a canonical address",
                              peer=p.peer_id[:100])
                continue
            self._peers[p.peer_id] = p

    def on_change(self, callback: Callable[[PeerInfo, str], None]) -> None:
        """``callback(peer, what)`` after each committed change (what: added, removed...)."""
        self._listeners.append(callback)

    # -- reads (memory) -----------------------------------------------------
    def get(self, peer_id: str) -> PeerInfo | None:
        peer = self._peers.get(peer_id)
        if peer is None and peer_id.isascii():  # never str.lower() a non-ASCII alias
            peer = self._peers.get(peer_id.lower())
        return peer

    def _latest(self, peer_id: str) -> PeerInfo | None:
        """The newest value of the peer, committed or on its way: what a change builds on."""
        keys = (peer_id, peer_id.lower()) if peer_id.isascii() else (peer_id,)
        for key in keys:
            if key in self._writing:
                latest = self._writing[key].value
                return None if isinstance(latest, _Removing) else latest
            if key in self._peers:
                return self._peers[key]
        return None

    def require(self, peer_id: str) -> PeerInfo:
        peer = self.get(peer_id)
        if peer is None:
            raise UnknownPeer(peer_id)
        return peer

    def all(self) -> list[PeerInfo]:
        return sorted(self._peers.values(), key=lambda p: p.added)

    def __len__(self) -> int:
        return len(self._peers)

    def is_blocked(self, peer_id: str) -> bool:
        peer = self.get(peer_id)
        return peer is not None and peer.blocked(self._now())

    def mean_reputation(self) -> float:
        if not self._peers:
            return 0.0
        return sum(p.reputation for p in self._peers.values()) / len(self._peers)

    # -- writes -------------------------------------------------------------
    async def _put(self, peer: PeerInfo, what: str) -> PeerInfo:
        await self._written(peer.peer_id, peer)
        self._peers[peer.peer_id] = peer
        self._notify(peer, what)
        return peer

    async def _written(self, peer_id: str, latest: PeerInfo | _Removing) -> None:
        """Write ``latest`` (a row, or the peer's deletion); returns once committed.

        Until then ``latest`` is what changes build on. If the write fails, a
        later change already built on it still carries it (and commits it with
        its own write); if none did, the peer is back to its committed value.
        """
        queued = self._writing.get(peer_id)
        if queued is not None and queued.amend(latest):
            await queued.wait()  # rides on the queued write
            return
        row = _RowWrite(peer_id, latest)
        self._writing[peer_id] = row
        done = row.wait()
        self._db.run(row.write).addBoth(row.finished)
        try:
            await done
        finally:
            if self._writing.get(peer_id) is row:
                del self._writing[peer_id]

    def _notify(self, peer: PeerInfo, what: str) -> None:
        for callback in list(self._listeners):
            callback(peer, what)

    async def add(self, peer_id: str, i2p_destination: str | None = None,
                  record: bytes | None = None, *, origin: str = ORIGIN_OPERATOR) -> PeerInfo:
        """Add a peer (or update its I2P destination / record); idempotent.

        ``origin`` is who asks: the operator (the default: API, CLI, bootstrap
        list) or ``"peer"`` when the node learns a peer from a session the peer
        opened. An operator's add of a known peer makes it operator-added; a
        peer's never changes an existing entry's origin.
        """
        if origin not in (ORIGIN_OPERATOR, ORIGIN_PEER):
            raise ValueError(f"unknown peer origin {origin!r}")
        peer_id = check_peer_address(peer_id)
        if i2p_destination is not None:
            i2p_destination = check_peer_address(i2p_destination)
        old = self._latest(peer_id)
        if old is None:
            return await self._put(PeerInfo(peer_id, i2p_destination, record,
                                            added=self._now(), origin=origin), "added")
        changes: dict[str, object] = {}
        if origin == ORIGIN_OPERATOR and old.origin != ORIGIN_OPERATOR:
            changes["origin"] = ORIGIN_OPERATOR
        if i2p_destination is not None and i2p_destination != old.i2p_destination:
            changes["i2p_destination"] = i2p_destination
        if record is not None and record != old.record:
            changes["record"] = record
        if not changes:
            return old
        return await self._put(dataclasses.replace(old, **changes), "updated")  # type: ignore[arg-type]

    async def remove(self, peer_id: str) -> PeerInfo:
        peer = self._latest(peer_id)
        if peer is None:
            raise UnknownPeer(peer_id)

        await self._written(peer.peer_id, _Removing())
        self._peers.pop(peer.peer_id, None)
        self._notify(peer, "removed")
        return peer

    async def block(self, peer_id: str, reason: str, duration: float | None = None
                    ) -> PeerInfo:
        """Blacklist a peer (added if unknown) for ``duration`` seconds, or for ever."""
        peer_id = check_peer_address(peer_id)
        peer = self._latest(peer_id) or PeerInfo(peer_id, added=self._now())
        until = None if duration is None else self._now() + duration
        return await self._put(
            dataclasses.replace(peer, blocked_reason=reason or "blocked", blocked_until=until),
            "blocked")

    async def unblock(self, peer_id: str) -> PeerInfo:
        peer = self._latest(peer_id)
        if peer is None:
            raise UnknownPeer(peer_id)
        return await self._put(
            dataclasses.replace(peer, blocked_reason=None, blocked_until=None), "unblocked")

    async def set_status(self, peer_id: str, status: str) -> PeerInfo | None:
        peer = self._latest(peer_id)
        if peer is None:
            return None
        return await self._put(
            dataclasses.replace(peer, status=status, last_seen=self._now()), "status")

    async def observe(self, peer_id: str, behaviour: Behaviour) -> PeerInfo | None:
        """Record one observation; may blacklist the peer (docs/reputation.md)."""
        peer = self._latest(peer_id)
        if peer is None:
            return None
        score = updated_reputation(peer.reputation, behaviour)
        changes: dict[str, object] = {"reputation": score}
        if behaviour is Behaviour.SESSION_OK:
            changes["sessions_ok"] = peer.sessions_ok + 1
        elif behaviour is Behaviour.HANDSHAKE_FAILED:
            changes["sessions_failed"] = peer.sessions_failed + 1
        what = "reputation"
        if (not is_good(behaviour) and score < AUTO_BLOCK_BELOW
                and not peer.blocked(self._now())):
            changes["blocked_reason"] = f"reputation {score:.3f} after {behaviour.value}"
            changes["blocked_until"] = self._now() + AUTO_BLOCK_SECONDS
            what = "blocked"
            self.log.warn("peer {peer} blacklisted for {seconds:.0f}s (reputation {score:.3f})",
                          peer=peer.peer_id, seconds=AUTO_BLOCK_SECONDS, score=score)
        return await self._put(dataclasses.replace(peer, **changes), what)  # type: ignore[arg-type]

    async def add_many(self, peer_ids: Iterable[str]) -> None:
        for peer_id in peer_ids:
            await self.add(peer_id)
