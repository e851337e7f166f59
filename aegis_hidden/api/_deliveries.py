"""Delivery states of settled messages, kept across restarts for ``GET /api/network/messages/{id}``.

The messenger forgets a message once it is acknowledged (or expired) and its
in-memory state map does not survive a restart. The API listens to the
``delivery_state`` events on the node's bus and writes each final state
(``acknowledged``, ``expired``) to a table of its own in the node's state
database, ``api_delivery_states``; rows older than ``keep`` seconds (default
:data:`KEEP_SECONDS`, 7 days) are deleted as new ones are written and are never
served. The table is created on first use (``CREATE TABLE IF NOT EXISTS``): it
is not part of the peer store's versioned schema, and dropping it loses only
this history.

Kept: the id, the state and the time rounded down to the minute; never the
message, and not the peer (the ``peer_id`` column stays empty; rows written
by older versions are emptied on first use), so the table is no contact log.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..events import EventBus
from ..peers import Database

KEEP_SECONDS = 7 * 86400
FINAL_STATES = ("acknowledged", "expired")
_ID = re.compile(r"^[0-9a-f]{32}$")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS api_delivery_states (msg_id TEXT PRIMARY KEY, "
    "peer_id TEXT, state TEXT NOT NULL, updated REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS api_delivery_states_updated "
    "ON api_delivery_states (updated)",
    "UPDATE api_delivery_states SET peer_id = NULL WHERE peer_id IS NOT NULL",
)
GRANULARITY = 60.0
"""Seconds: stored times are rounded down to this."""


class DeliveryLog:
    """Writes final delivery states from the bus; answers :meth:`state` for one id."""

    log = Logger()

    def __init__(self, db: Database, bus: EventBus, now: Callable[[], float],
                 keep: float = KEEP_SECONDS) -> None:
        self._db = db
        self._now = now
        self.keep = keep
        self._created = False
        self.writes: list[Deferred[None]] = []  # the last few, for tests to wait on
        bus.subscribe(self._event)

    def _ensure(self, conn: sqlite3.Connection) -> None:
        if not self._created:
            for statement in _SCHEMA:
                conn.execute(statement)
            self._created = True

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("type") != "delivery_state" or event.get("state") not in FINAL_STATES:
            return
        msg_id = event.get("id")
        if not isinstance(msg_id, str) or not _ID.match(msg_id):
            return
        now = self._now()
        row = (msg_id, None, str(event["state"]), now - now % GRANULARITY)
        cutoff = now - self.keep

        def write(conn: sqlite3.Connection) -> None:
            self._ensure(conn)
            conn.execute("INSERT OR REPLACE INTO api_delivery_states "
                         "(msg_id, peer_id, state, updated) VALUES (?, ?, ?, ?)", row)
            conn.execute("DELETE FROM api_delivery_states WHERE updated < ?", (cutoff,))

        d = self._db.run(write)
        d.addErrback(lambda f: self.log.failure("cannot store the delivery state of a "
                                                "message", f))
        self.writes = [*self.writes[-9:], d]

    async def state(self, msg_id: str) -> str | None:
        """The stored final state of ``msg_id`` if it settled less than ``keep`` ago."""
        if not _ID.match(msg_id):
            return None
        cutoff = self._now() - self.keep

        def read(conn: sqlite3.Connection) -> str | None:
            self._ensure(conn)
            found = conn.execute("SELECT state FROM api_delivery_states WHERE msg_id = ? "
                                 "AND updated >= ?", (msg_id, cutoff)).fetchone()
            return None if found is None else str(found[0])

        result: str | None = await self._db.run(read)
        return result
