"""The topic endpoints (routed by ``_web.ApiResource``).

* ``GET  /api/network/topics``: the topics this node subscribes to, each with
  its kind, mesh peers and their scores, topic peers, messages in and out;
* ``POST /api/network/topics``: ``{"action": "subscribe" | "unsubscribe",
  "topic": NAME, "anonymous": bool}``;
* ``POST /api/network/send`` with ``"target": "topic:NAME"`` publishes on a
  topic (:meth:`TopicEndpoints.publish`, called by the send handler).

Errors are the resource's own ``ApiError`` (handed in, so this module does not
import ``_web``); 503 when the node runs no pub/sub (``pubsub.enabled`` false).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.web.server import Request

from ..node import TopicError, TopicMessageTooLarge, check_topic

JSON = dict[str, Any]
#: what a ``target`` starts with to name a topic rather than a peer
TOPIC_PREFIX = "topic:"


def is_topic_target(target: object) -> bool:
    return isinstance(target, str) and target.startswith(TOPIC_PREFIX)


class TopicEndpoints:
    def __init__(self, core: Any, read_body: Callable[[Request], JSON],
                 error: Callable[..., Exception]) -> None:
        self._core = core
        self._read_body = read_body
        self._error = error

    def _pubsub(self) -> Any:
        service = getattr(self._core, "topics", None)
        if service is None:
            raise self._error(503, "topic pub/sub is not running on this node "
                              "(pubsub.enabled)")
        return service

    def _topic(self, value: object, field: str) -> str:
        try:
            return check_topic(value)
        except TopicError as e:
            raise self._error(400, f"\"{field}\": {e}", field) from None

    async def list(self, request: Request) -> tuple[int, JSON]:
        return 200, {"topics": self._pubsub().topics()}

    async def change(self, request: Request) -> tuple[int, JSON]:
        body = self._read_body(request)
        extra = sorted(set(body) - {"action", "topic", "anonymous"})
        if extra:
            raise self._error(400, f"unknown field \"{extra[0]}\"", extra[0])
        action = body.get("action")
        if action not in ("subscribe", "unsubscribe"):
            raise self._error(400, "\"action\" must be subscribe or unsubscribe", "action")
        topic = self._topic(body.get("topic"), "topic")
        anonymous = body.get("anonymous", False)
        if not isinstance(anonymous, bool):
            raise self._error(400, "\"anonymous\" must be true or false", "anonymous")
        if action == "unsubscribe" and "anonymous" in body:
            raise self._error(400, "\"anonymous\" goes with subscribe only", "anonymous")
        service = self._pubsub()
        if action == "subscribe":
            try:
                service.subscribe(topic, anonymous=anonymous)
            except TopicError as e:
                raise self._error(409, str(e), "topic") from None
            return 200, {"ok": True, "action": action, "topic": topic, "anonymous": anonymous,
                         "changed": True}
        changed = service.unsubscribe(topic)
        return 200, {"ok": True, "action": action, "topic": topic, "changed": changed}

    def publish(self, target: str, message: JSON) -> tuple[int, JSON]:
        """The send handler's topic branch: ``message`` is already checked."""
        topic = self._topic(target[len(TOPIC_PREFIX):], "target")
        service = self._pubsub()
        try:
            mid = service.publish(topic, message)
        except TopicMessageTooLarge as e:
            raise self._error(413, str(e), "message") from None
        except TopicError as e:  # e.g. a topic subscribed as anonymous: no signer for it
            raise self._error(409, str(e), "target") from None
        return 202, {"id": mid, "target": target, "state": "published"}
