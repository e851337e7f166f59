"""The topic endpoints (routed by ``_web.ApiResource``).

* ``GET  /api/network/topics``: the topics this node subscribes to, each with
  its kind (anonymous, private with its key id, the broadcast topic), mesh
  peers and their scores, topic peers, messages in, out, caught up after
  being offline, unreadable and refused, and the delivery confirmations of
  recent messages published with ``confirm_from``; the invitations received
  and not accepted yet; the broadcast topic's name (null: not run);
* ``POST /api/network/topics``: ``{"action": "subscribe", "topic": NAME,
  "anonymous": bool, "private": bool, "key": BASE64}`` (``private``: this
  node's key for the topic, else an invitation's, else a new one; ``key``: a
  group key shared out of band), ``{"action": "unsubscribe", "topic": NAME}``,
  ``{"action": "invite", "topic": NAME, "peer": ONION}`` (the group key, sealed
  to the peer, over the reliable messaging path), ``{"action": "rotate",
  "topic": NAME}`` (a new group key; members must be invited again);
* ``POST /api/network/send`` with ``"target": "topic:NAME"`` publishes on a
  topic (:meth:`TopicEndpoints.publish`, called by the send handler), with
  ``confirm_from`` (onions of subscribers asked to confirm delivery).

No answer ever holds a group key. Errors are the resource's own ``ApiError``
(handed in, so this module does not import ``_web``); 503 when the node runs
no pub/sub (``pubsub.enabled`` false).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.web.server import Request

from ..node import (
    Backpressure,
    MessageTooLarge,
    PeerBlocked,
    TopicError,
    TopicKeyError,
    TopicMessageTooLarge,
    TopicRateLimited,
    check_topic,
)
from ..peers import PeerAddressError, check_peer_address
from ..pubsub import MAX_ACK_FROM

JSON = dict[str, Any]
#: what a ``target`` starts with to name a topic rather than a peer
TOPIC_PREFIX = "topic:"
ACTIONS = ("subscribe", "unsubscribe", "invite", "rotate")
#: the fields each action takes (besides ``action`` and ``topic``)
FIELDS = {"subscribe": {"anonymous", "private", "key"}, "unsubscribe": set(),
          "invite": {"peer"}, "rotate": set()}


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

    def _onion(self, value: object, field: str) -> str:
        if not isinstance(value, str):
            raise self._error(400, f"\"{field}\": expected an onion address", field)
        try:
            onion = check_peer_address(value)
        except PeerAddressError as e:
            raise self._error(400, f"\"{field}\": {e}", field) from None
        if not onion.endswith(".onion"):
            raise self._error(400, f"\"{field}\": an onion address (identities are onions)",
                              field)
        return onion

    async def list(self, request: Request) -> tuple[int, JSON]:
        service = self._pubsub()
        return 200, {"topics": service.topics(), "invitations": service.pending_invitations(),
                     "broadcast": service.broadcast}

    async def change(self, request: Request) -> tuple[int, JSON]:
        body = self._read_body(request)
        extra = sorted(set(body) - {"action", "topic", "anonymous", "private", "key", "peer"})
        if extra:
            raise self._error(400, f"unknown field \"{extra[0]}\"", extra[0])
        action = body.get("action")
        if action not in ACTIONS:
            raise self._error(400, "\"action\" must be subscribe, unsubscribe, invite or "
                              "rotate", "action")
        topic = self._topic(body.get("topic"), "topic")
        wrong = sorted(set(body) - {"action", "topic"} - FIELDS[action])
        if wrong:
            raise self._error(400, f"\"{wrong[0]}\" does not go with {action}", wrong[0])
        for flag in ("anonymous", "private"):
            if flag in body and not isinstance(body[flag], bool):
                raise self._error(400, f"\"{flag}\" must be true or false", flag)
        service = self._pubsub()
        if action == "subscribe":
            return 200, self._subscribe(service, topic, body)
        if action == "unsubscribe":
            changed = service.unsubscribe(topic)
            return 200, {"ok": True, "action": action, "topic": topic, "changed": changed}
        if action == "rotate":
            try:
                kid = service.rotate(topic)
            except TopicError as e:
                raise self._error(409, str(e), "topic") from None
            return 200, {"ok": True, "action": action, "topic": topic, "changed": True,
                         "private": True, "key_id": kid}
        return await self._invite(service, topic, self._onion(body.get("peer"), "peer"),
                                  request)

    def _subscribe(self, service: Any, topic: str, body: JSON) -> JSON:
        key = body.get("key")
        if "key" in body and not isinstance(key, str):
            raise self._error(400, "\"key\": a group key in base64 (32 bytes)", "key")
        if key is not None and body.get("private") is False:
            raise self._error(400, "\"key\" makes the topic private (\"private\" false)",
                              "private")
        try:
            done = service.subscribe(topic, anonymous=body.get("anonymous"),
                                     private=bool(body.get("private", False)), key=key)
        except TopicKeyError as e:
            raise self._error(400, f"\"key\": {e}", "key") from None
        except TopicError as e:
            raise self._error(409, str(e), "topic") from None
        return {"ok": True, "action": "subscribe", "topic": topic, "changed": True, **done}

    async def _invite(self, service: Any, topic: str, peer: str,
                      request: Request) -> tuple[int, JSON]:
        if not await self._core.resolve(peer):
            raise self._error(404, f"unknown peer {peer} (add it first)", "peer")
        try:
            msg_id, state = await service.invite(topic, peer)
        except PeerBlocked as e:
            raise self._error(409, str(e), "peer") from None
        except TopicError as e:
            raise self._error(409, str(e), "topic") from None
        except MessageTooLarge as e:
            raise self._error(413, str(e), "topic") from None
        except Backpressure as e:
            request.setHeader("retry-after", str(e.retry_after))
            raise self._error(503, str(e), "peer") from None
        return 202, {"ok": True, "action": "invite", "topic": topic, "peer": peer,
                     "changed": True, "id": msg_id, "state": state.value}

    def publish(self, target: str, message: JSON, confirm_from: object = None,
                request: Request | None = None) -> tuple[int, JSON]:
        """The send handler's topic branch: ``message`` is already checked."""
        topic = self._topic(target[len(TOPIC_PREFIX):], "target")
        subscribers: list[str] = []
        if confirm_from is not None:
            if (not isinstance(confirm_from, list) or not confirm_from
                    or len(confirm_from) > MAX_ACK_FROM):
                raise self._error(400, f"\"confirm_from\": a list of 1 to {MAX_ACK_FROM} "
                                  "onion addresses", "confirm_from")
            subscribers = [self._onion(x, "confirm_from") for x in confirm_from]
        service = self._pubsub()
        try:
            mid = service.publish(topic, message, confirm_from=subscribers)
        except TopicMessageTooLarge as e:
            raise self._error(413, str(e), "message") from None
        except TopicRateLimited as e:
            if request is not None:
                request.setHeader("retry-after", str(e.retry_after))
            raise self._error(429, str(e), "target") from None
        except TopicError as e:  # e.g. a topic subscribed as anonymous: no signer for it
            raise self._error(409, str(e), "target") from None
        reply: JSON = {"id": mid, "target": target, "state": "published"}
        if subscribers:
            reply["confirm_from"] = subscribers
        return 202, reply
