"""The seen cache and the message cache (pure; times are passed in).

:class:`SeenCache` remembers every message id for ``ttl`` seconds after it was
first seen (duplicates are dropped, a duplicate soon after the first copy
still counts for the mesh peer that sent it). :class:`MessageCache` keeps the
messages themselves per topic for ``retain`` seconds (at most ``max_per_topic``
of them): the recent ones are announced in IHAVE and served on IWANT, and all
of them answer a catch-up request from a subscriber that was offline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from ._messages import Message


class SeenCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._first: dict[bytes, float] = {}
        self._order: deque[tuple[float, bytes]] = deque()

    def __contains__(self, mid: bytes) -> bool:
        return mid in self._first

    def __len__(self) -> int:
        return len(self._first)

    def first_seen(self, mid: bytes) -> float | None:
        return self._first.get(mid)

    def add(self, mid: bytes, now: float) -> bool:
        """Remember ``mid``; False when it was already there."""
        if mid in self._first:
            return False
        self._first[mid] = now
        self._order.append((now, mid))
        return True

    def expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] + self.ttl <= now:
            _, mid = order.popleft()
            self._first.pop(mid, None)


@dataclass(frozen=True)
class Cached:
    message: Message
    received: float
    came_from: str | None  # the peer it came from first (None: published here)


class MessageCache:
    def __init__(self, retain: float, max_per_topic: int) -> None:
        if retain <= 0 or max_per_topic < 1:
            raise ValueError("a message cache retains for a positive time, at least one message")
        self.retain = retain
        self.max_per_topic = max_per_topic
        self._by_id: dict[bytes, Cached] = {}
        self._topics: dict[str, deque[tuple[float, bytes]]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, mid: bytes) -> bool:
        return mid in self._by_id

    def get(self, mid: bytes) -> Cached | None:
        return self._by_id.get(mid)

    def put(self, mid: bytes, message: Message, now: float, came_from: str | None) -> None:
        if mid in self._by_id:
            return
        self._by_id[mid] = Cached(message, now, came_from)
        q = self._topics.setdefault(message.topic, deque())
        q.append((now, mid))
        while len(q) > self.max_per_topic:
            self._by_id.pop(q.popleft()[1], None)

    def recent(self, topic: str, since: float) -> list[bytes]:
        """Ids of ``topic`` received at ``since`` or later, newest first."""
        out = []
        for received, mid in reversed(self._topics.get(topic, ())):
            if received < since:
                break
            out.append(mid)
        return out

    def history(self, topic: str, since: float) -> Iterator[Cached]:
        """Messages of ``topic`` received at ``since`` or later, oldest first."""
        q = self._topics.get(topic, ())
        for received, mid in q:
            if received >= since:
                cached = self._by_id.get(mid)
                if cached is not None:
                    yield cached

    def expire(self, now: float) -> None:
        limit = now - self.retain
        for topic in list(self._topics):
            q = self._topics[topic]
            while q and q[0][0] < limit:
                self._by_id.pop(q.popleft()[1], None)
            if not q:
                del self._topics[topic]

    def drop_topic(self, topic: str) -> None:
        for _, mid in self._topics.pop(topic, ()):
            self._by_id.pop(mid, None)


V = TypeVar("V")


class TimedMap(Generic[V]):
    """Keys remembered for ``ttl`` seconds after they were set, with a value each."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[bytes, V] = {}
        self._order: deque[tuple[float, bytes]] = deque()

    def __contains__(self, key: bytes) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: bytes) -> V | None:
        return self._values.get(key)

    def set(self, key: bytes, value: V, now: float) -> None:
        if key not in self._values:
            self._order.append((now, key))
        self._values[key] = value

    def pop(self, key: bytes) -> V | None:
        return self._values.pop(key, None)

    def expire(self, now: float) -> None:
        order = self._order
        while order and order[0][0] + self.ttl <= now:
            _, key = order.popleft()
            self._values.pop(key, None)
