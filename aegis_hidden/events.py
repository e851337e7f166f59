"""A small in-process event bus: layers emit, the API's WebSocket fans out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from .interfaces import IEventSink


@implementer(IEventSink)
class EventBus:
    """Delivers each event, a dict with ``type`` and ``time``, to every subscriber.

    A subscriber that raises is logged and kept; one bad listener must not stop
    the others or the layer that emitted.
    """

    log = Logger()

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._now = now

    def emit(self, event_type: str, **fields: Any) -> None:
        event: dict[str, Any] = {"type": event_type, "time": self._now(), **fields}
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not spread
                self.log.failure("event subscriber failed on {event_type}",
                                 event_type=event_type)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe
