"""Channels above the session: every message a session carries is one ``Frame``.

A :class:`~aegis_hidden.wire.frame_pb2.Frame` is ``{channel, payload}``. The
node core routes each frame it receives to the handler registered for its
channel (:class:`ChannelRouter`):

* ``messaging`` (1): the reliable path, JSON envelopes with outbox and acks
  (:mod:`._messaging`);
* ``rpc`` (2): unreliable request/response with timeouts and no outbox, for the
  DHT (:class:`RpcChannel`);
* ``pubsub`` (3): a hook for topic pub/sub (:class:`PubSubChannel`);
* ``control`` (4): node-to-node control messages, the record push (:mod:`._control`);
* ``stream`` (5): ordered byte streams with credit windows (:mod:`._streams`,
  :mod:`aegis_hidden.streams`); their DATA goes in the session's bulk class.

A frame for a channel this node does not know is counted
(``frames_unknown_channel``) and ignored, never held against the peer: newer
nodes must be able to talk to older ones. A message that is not a frame at all
is a protocol violation (reputation, ``protocol_errors``), as a malformed
envelope always was.

The pool hands out each session as a :class:`ChannelLink`: its ``send_message``
sends on the messaging channel, so the messaging layer is unchanged; other
layers send with :meth:`ChannelRouter.send` or :func:`send_frame`.
"""

from __future__ import annotations

import enum
import random
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from google.protobuf.message import DecodeError
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..events import EventBus
from ..interfaces import IPeerLink
from ..peers import Behaviour, PeerStore
from ..wire import frame_pb2
from ._metrics import Metrics


class Channel(enum.IntEnum):
    """The channels this version knows (the ``Channel`` enum of ``frame.proto``)."""

    MESSAGING = frame_pb2.MESSAGING
    RPC = frame_pb2.RPC
    PUBSUB = frame_pb2.PUBSUB
    CONTROL = frame_pb2.CONTROL
    STREAM = frame_pb2.STREAM


MAX_CHANNEL = 2**31 - 1  # a protobuf enum is an int32


class FrameError(ValueError):
    """Bytes from a session that are not a frame (a protocol violation)."""


def encode_frame(channel: int, payload: bytes) -> bytes:
    if not 0 < channel <= MAX_CHANNEL:
        raise ValueError(f"channel {channel} is not a channel number (1 to 2**31-1)")
    return frame_pb2.Frame(channel=channel, payload=payload).SerializeToString()  # type: ignore[arg-type]


def decode_frame(data: bytes) -> tuple[int, bytes]:
    """``(channel, payload)``; the channel may be one this node does not know."""
    frame = frame_pb2.Frame()
    try:
        frame.ParseFromString(data)
    except DecodeError as e:
        raise FrameError(f"not a frame: {e}") from None
    if frame.channel <= frame_pb2.CHANNEL_UNSPECIFIED:  # 0: absent; negative: never valid
        raise FrameError(f"frame without a valid channel ({frame.channel})")
    return int(frame.channel), bytes(frame.payload)


@implementer(IPeerLink)
class ChannelLink:
    """A session as the layers above the pool see it.

    ``send_message`` sends on ``channel`` (the messaging channel by default, so
    the messaging layer speaks plain messages); :meth:`send_frame` sends on any.
    Receiving is the router's: every frame of the session reaches
    :meth:`ChannelRouter.receive`, so :meth:`set_receiver` is refused. Other
    attributes (``closed``...) are the underlying link's.
    """

    def __init__(self, raw: IPeerLink, channel: int = Channel.MESSAGING) -> None:
        self.raw = raw
        self.channel = channel

    @property
    def peer(self) -> Any:
        return self.raw.peer

    @property
    def record(self) -> Any:
        return getattr(self.raw, "record", None)

    @property
    def transport_name(self) -> Any:
        return self.raw.transport_name

    def send_message(self, data: bytes) -> None:
        self.raw.send_message(encode_frame(self.channel, data))

    def send_frame(self, channel: int, payload: bytes) -> None:
        self.raw.send_message(encode_frame(channel, payload))

    def set_receiver(self, callback: Callable[[bytes], None]) -> None:
        raise RuntimeError("the channel router receives this session's frames; "
                           "register a channel handler instead")

    def close(self, reason: str) -> None:
        self.raw.close(reason)

    def when_closed(self) -> Deferred[str]:
        return self.raw.when_closed()

    def __getattr__(self, name: str) -> Any:
        if name == "raw":  # not set yet (copy, unpickling): no endless recursion
            raise AttributeError(name)
        return getattr(self.raw, name)


def send_frame(link: IPeerLink, channel: int, payload: bytes, *, bulk: bool = False) -> None:
    """Send one frame on ``link`` (a session, or a :class:`ChannelLink` of one);
    ``bulk`` (stream data) in the session's low priority class, where it has one."""
    raw = link.raw if isinstance(link, ChannelLink) else link
    if bulk and hasattr(raw, "send_bulk"):
        raw.send_bulk(encode_frame(channel, payload))
    else:
        raw.send_message(encode_frame(channel, payload))


class Links(Protocol):
    """What the router needs of the connection pool."""

    def get(self, peer: str) -> Deferred[IPeerLink]: ...

    def link(self, peer: str) -> IPeerLink | None: ...

    def on_disconnected(self, callback: Callable[[str], None]) -> None: ...


Handler = Callable[[str, bytes], None]
#: Runs a send the node makes on behalf of others: at once (the default), or
#: after a mix delay (the mixing layer's ``forward``: Exp(μ), timed batches).
Forwarder = Callable[[Callable[[], None]], None]


def send_now(send: Callable[[], None]) -> None:
    send()



class NotConnected(ConnectionError):
    """No live session with the peer, and the send was not allowed to dial."""


class ChannelRouter:
    """Routes the frames of every session to the channel registered for them."""

    log = Logger()

    def __init__(self, links: Links, store: PeerStore, events: EventBus,
                 metrics: Metrics) -> None:
        self._links = links
        self._store = store
        self._events = events
        self._metrics = metrics
        self._handlers: dict[int, Handler] = {}

    def register(self, channel: int, handler: Handler) -> None:
        """``handler(peer, payload)`` for every frame of ``channel`` (one per channel)."""
        if channel in self._handlers:
            raise ValueError(f"channel {channel} already has a handler")
        encode_frame(channel, b"")  # refuses a number that is not a channel
        self._handlers[channel] = handler

    def channels(self) -> list[int]:
        return sorted(self._handlers)

    def send(self, peer: str, channel: int, payload: bytes, *, dial: bool = True,
             ) -> Deferred[None]:
        """Send one frame to ``peer``: over its live session, or a new one if ``dial``."""
        return Deferred.fromCoroutine(self._send(peer, channel, payload, dial))

    async def _send(self, peer: str, channel: int, payload: bytes, dial: bool) -> None:
        send_frame(await self.link(peer, dial=dial), channel, payload)

    async def link(self, peer: str, *, dial: bool) -> IPeerLink:
        """``peer``'s live session; if there is none, a new one (``dial``) or NotConnected."""
        if dial:
            return await self._links.get(peer)
        link = self._links.link(peer)
        if link is None:
            raise NotConnected(f"no session with {peer}")
        return link

    def on_disconnected(self, callback: Callable[[str], None]) -> None:
        """``callback(peer)`` when the session with ``peer`` closes."""
        self._links.on_disconnected(callback)

    def receive(self, peer: str, data: bytes) -> None:
        """One message from ``peer``'s session: decode the frame and route it."""
        try:
            channel, payload = decode_frame(data)
        except FrameError as e:
            self.violation(peer, str(e))
            return
        handler = self._handlers.get(channel)
        if handler is None:
            self._metrics.inc("frames_unknown_channel")
            self.log.debug("ignored a frame for unknown channel {channel} from {peer}",
                           channel=channel, peer=peer)
            return
        handler(peer, payload)

    def violation(self, peer: str, detail: str) -> None:
        """``peer`` sent something malformed: counted, reported, held against it."""
        self._metrics.inc("protocol_errors")
        self._events.emit("network_error", peer=peer, error="protocol violation",
                          detail=detail)
        Deferred.fromCoroutine(self._store.observe(peer, Behaviour.PROTOCOL_VIOLATION))


# -- rpc ---------------------------------------------------------------------


class RpcError(Exception):
    """A request that got no answer."""


class RpcTimeout(RpcError):
    """No answer within the request's timeout."""


class RpcLinkClosed(RpcError, ConnectionError):
    """The session closed (or could not be used) before the answer came."""


class RpcUnreachable(RpcError, ConnectionError):
    """No session with the peer could be had (dial failed, blacklisted, unknown...)."""


class RpcRemoteError(RpcError):
    """The peer answered with an error (no handler, or its handler failed)."""


RpcHandler = Callable[[str, bytes], "bytes | Deferred[bytes] | Coroutine[Any, Any, bytes]"]

_Kind = frame_pb2.RpcMessage


class _Pending:
    __slots__ = ("deferred", "timer")

    def __init__(self, deferred: Deferred[bytes], timer: IDelayedCall) -> None:
        self.deferred = deferred
        self.timer = timer


class RpcChannel:
    """Unreliable request/response on the ``rpc`` channel (for the DHT).

    No outbox, no retries: a request is sent once, over the peer's session (dialled
    if needed), and its Deferred fires with the answer's bytes or fails with
    :class:`RpcTimeout`, :class:`RpcLinkClosed`, :class:`RpcUnreachable` or
    :class:`RpcRemoteError`. Request ids are 64-bit random numbers from the
    injected ``rng``; an answer counts only from the peer that was asked. Answers
    nobody waits for (late, after a timeout) are counted and dropped. A peer has at
    most ``max_inbound`` requests being answered at once; more are answered
    ``busy`` (``rpc_busy``).

    Answers are traffic served for others: each leaves through ``forwarder``
    (the node's mix pool: an Exp(μ) delay), so the time an answer leaves does
    not tell when its request came. Requests (this node's own) leave at once.
    """

    log = Logger()

    def __init__(self, router: ChannelRouter, clock: IReactorTime, metrics: Metrics, *,
                 rng: random.Random | None = None, max_inbound: int = 64) -> None:
        self._router = router
        self._clock = clock
        self._metrics = metrics
        self._rng = rng if rng is not None else secrets.SystemRandom()
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._handler: RpcHandler | None = None
        self.max_inbound = max_inbound
        self._inbound: dict[str, int] = {}  # per peer: requests being answered
        self.forwarder: Forwarder = send_now
        router.register(Channel.RPC, self._receive)
        router.on_disconnected(self._disconnected)

    def on_request(self, handler: RpcHandler) -> None:
        """``handler(peer, body)`` answers each request: bytes, a Deferred or a coroutine of them."""
        self._handler = handler

    def pending(self) -> int:
        return len(self._pending)

    def request(self, peer: str, payload: bytes, timeout: float) -> Deferred[bytes]:
        """Ask ``peer``; the answer's body, or a typed :class:`RpcError` after ``timeout``."""
        while True:
            request_id = self._rng.getrandbits(64) or 1
            if (peer, request_id) not in self._pending:
                break
        key = (peer, request_id)

        def cancel(_: Deferred[bytes]) -> None:
            self._forget(key)

        d: Deferred[bytes] = Deferred(cancel)
        timer = self._clock.callLater(timeout, self._timed_out, key, timeout)
        self._pending[key] = _Pending(d, timer)
        self._metrics.inc("rpc_requests_sent")
        message = _Kind(id=request_id, kind=_Kind.REQUEST, body=payload).SerializeToString()
        Deferred.fromCoroutine(self._send_request(key, message))
        return d

    async def _send_request(self, key: tuple[str, int], message: bytes) -> None:
        peer = key[0]
        try:
            link = await self._router.link(peer, dial=True)
        except Exception as e:  # noqa: BLE001 - any dial failure: the typed RpcUnreachable
            if key in self._pending:
                unreachable = RpcUnreachable(f"no session with {peer}: "
                                             f"{e.__class__.__name__}: {e}")
                unreachable.__cause__ = e
                self._fail(key, unreachable)
            return
        if key not in self._pending:  # timed out or cancelled while dialling
            return
        try:
            send_frame(link, Channel.RPC, message)
        except Exception as e:  # noqa: BLE001 - a session that refuses bytes is closed
            closed = RpcLinkClosed(f"the session with {peer} is closed: {e}")
            closed.__cause__ = e
            self._fail(key, closed)

    def _forget(self, key: tuple[str, int]) -> _Pending | None:
        pending = self._pending.pop(key, None)
        if pending is not None and pending.timer.active():
            pending.timer.cancel()
        return pending

    def _fail(self, key: tuple[str, int], error: RpcError) -> None:
        pending = self._forget(key)
        if pending is not None:
            pending.deferred.errback(error)

    def _timed_out(self, key: tuple[str, int], timeout: float) -> None:
        if key in self._pending:
            self._metrics.inc("rpc_timeouts")
            self._fail(key, RpcTimeout(f"no answer from {key[0]} within {timeout:g}s"))

    def _disconnected(self, peer: str) -> None:
        for key in [k for k in self._pending if k[0] == peer]:
            self._fail(key, RpcLinkClosed(f"the session with {peer} closed before it answered"))

    # -- receiving --------------------------------------------------------------
    def _receive(self, peer: str, payload: bytes) -> None:
        message = _Kind()
        try:
            message.ParseFromString(payload)
        except DecodeError as e:
            self._router.violation(peer, f"rpc: not an RpcMessage: {e}")
            return
        if message.kind == _Kind.REQUEST:
            self._answer(peer, message.id, bytes(message.body))
        elif message.kind in (_Kind.RESPONSE, _Kind.ERROR):
            pending = self._forget((peer, message.id))
            if pending is None:
                self._metrics.inc("rpc_unmatched")
                return
            if message.kind == _Kind.RESPONSE:
                pending.deferred.callback(bytes(message.body))
            else:
                pending.deferred.errback(RpcRemoteError(f"{peer}: {message.error[:200]}"))
        else:  # a kind from a newer version: not an error, and nothing to do
            self._metrics.inc("rpc_unmatched")

    def _answer(self, peer: str, request_id: int, body: bytes) -> None:
        self._metrics.inc("rpc_requests_received")
        if self._handler is None:
            self._reply(peer, _Kind(id=request_id, kind=_Kind.ERROR, error="no rpc handler"))
            return
        if self._inbound.get(peer, 0) >= self.max_inbound:
            self._metrics.inc("rpc_busy")
            self._reply(peer, _Kind(id=request_id, kind=_Kind.ERROR, error="busy"))
            return
        self._inbound[peer] = self._inbound.get(peer, 0) + 1
        try:
            result = self._handler(peer, body)
        except Exception as e:  # noqa: BLE001 - the requester gets an error answer
            self._handler_failed(Failure(e), peer, request_id)
            return
        if isinstance(result, bytes):
            self._respond(result, peer, request_id)
            return
        d: Deferred[bytes] = ensureDeferred(result)
        d.addCallbacks(self._respond, self._handler_failed,
                       callbackArgs=(peer, request_id), errbackArgs=(peer, request_id))

    def _answered(self, peer: str) -> None:
        left = self._inbound.get(peer, 0) - 1
        if left > 0:
            self._inbound[peer] = left
        else:
            self._inbound.pop(peer, None)

    def _respond(self, body: bytes, peer: str, request_id: int) -> None:
        self._answered(peer)
        self._reply(peer, _Kind(id=request_id, kind=_Kind.RESPONSE, body=body))

    def _handler_failed(self, failure: Failure, peer: str, request_id: int) -> None:
        self._answered(peer)
        self.log.failure("rpc handler failed for a request from {peer}", failure, peer=peer)
        name = failure.type.__name__ if failure.type is not None else "error"
        self._reply(peer, _Kind(id=request_id, kind=_Kind.ERROR, error=f"handler failed: {name}"))

    def _reply(self, peer: str, message: frame_pb2.RpcMessage) -> None:
        data = message.SerializeToString()
        self.forwarder(lambda: self._send_reply(peer, data))

    def _send_reply(self, peer: str, data: bytes) -> None:
        # Answers never dial: if the session is gone, the requester times out.
        d = self._router.send(peer, Channel.RPC, data, dial=False)
        d.addErrback(lambda f: self.log.info("rpc answer to {peer} not sent: {error}",
                                             peer=peer, error=f.getErrorMessage()))


# -- pubsub ------------------------------------------------------------------


class PubSubChannel:
    """The ``pubsub`` channel: a place for the pub/sub layer to plug in.

    Until a handler is set, frames on this channel are counted
    (``pubsub_unhandled``) and dropped. :meth:`send` is for the node's own
    messages (they leave at once); :meth:`forward` for what it relays for
    others (through ``forwarder``, the node's mix pool: an Exp(μ) delay).
    """

    def __init__(self, router: ChannelRouter, metrics: Metrics) -> None:
        self._router = router
        self._metrics = metrics
        self._handler: Handler | None = None
        self.forwarder: Forwarder = send_now
        router.register(Channel.PUBSUB, self._receive)

    def on_message(self, handler: Handler) -> None:
        """``handler(peer, payload)`` for every pubsub frame."""
        self._handler = handler

    def send(self, peer: str, payload: bytes, *, dial: bool = False) -> Deferred[None]:
        """Send this node's own message to ``peer`` now (the link schedule only)."""
        return self._router.send(peer, Channel.PUBSUB, payload, dial=dial)

    def forward(self, peer: str, payload: bytes) -> Deferred[None]:
        """Relay a message for others to ``peer`` after its mix delay; fires once
        sent (fails with :class:`NotConnected` if the session is gone by then)."""
        done: Deferred[None] = Deferred()

        def go() -> None:
            self._router.send(peer, Channel.PUBSUB, payload, dial=False).chainDeferred(done)

        self.forwarder(go)
        return done

    def _receive(self, peer: str, payload: bytes) -> None:
        if self._handler is None:
            self._metrics.inc("pubsub_unhandled")
            return
        self._handler(peer, payload)
