"""Loop cover through connected peers, on the control channel.

At rate λ_L the mixing layer's :class:`~aegis_hidden.mixing.LoopCover` asks
for a path; :class:`PeerLoops` picks a connected peer at random and sends it
a *loop* control message (kind 2, a 16-byte random id). Every node answers a
loop at once with a *loop return* of the same id (kind 3), whatever its own
profile. The :class:`~aegis_hidden.mixing.LoopMonitor` matches returns to
loops (from the peer they went to only) and measures the round trip; a loop
not back within the profile's ``loop_timeout`` is lost: it counts against the
peer (``loop_lost`` in its reputation, docs/reputation.md) and is reported as
a ``network_error`` event ("loop lost"). Loops outstanding when the peer's
session closes are forgotten, not counted lost.

A loop is a control frame like any other: padded into cells and sealed by
the session, one cell on the wire, indistinguishable from a data or cover
cell to anyone but the two ends.

The monitor knows paths, not peers: a path is a random per-run id for each
peer, so nothing the mixing layer counts or traces names a peer.
"""

from __future__ import annotations

import secrets
from random import Random

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..events import EventBus
from ..mixing import LOOP_ID_BYTES, LoopMonitor, LostLoop
from ..peers import Behaviour, PeerStore
from ._channels import Channel, FrameError, decode_frame, send_frame
from ._control import ControlError, ControlKind
from ._metrics import Metrics
from ._pool import ConnectionPool

#: Bytes of a loop frame at most (channel, kind, id: about 21 bytes encoded).
_LOOP_FRAME_MAX = 64


def loop_trace_kind(message: bytes) -> str:
    """The kind a session message has in the local cell trace: ``"loop"`` for a loop
    or a loop return (one cell each, on both the sending and the returning node),
    ``"real"`` for anything else. For ``SessionFactory(trace_kind=...)``: only
    asked when the trace is on."""
    if len(message) > _LOOP_FRAME_MAX:
        return "real"
    try:
        channel, payload = decode_frame(message)
    except FrameError:
        return "real"
    if (channel == Channel.CONTROL and len(payload) == 1 + LOOP_ID_BYTES
            and payload[0] in (ControlKind.LOOP, ControlKind.LOOP_RETURN)):
        return "loop"
    return "real"


class PeerLoops:
    """Sends loops through connected peers, returns theirs, and blames the ones that drop."""

    log = Logger()

    def __init__(self, pool: ConnectionPool, store: PeerStore, events: EventBus,
                 metrics: Metrics, *, rng: Random | None = None) -> None:
        self._pool = pool
        self._store = store
        self._events = events
        self._metrics = metrics
        self._rng = rng if rng is not None else secrets.SystemRandom()
        self._path_of: dict[str, str] = {}
        self._peer_of: dict[str, str] = {}
        self.monitor: LoopMonitor | None = None
        pool.on_disconnected(self._disconnected)

    def attach(self, monitor: LoopMonitor) -> None:
        """Send loops for ``monitor`` (the mixing layer's; λ_L > 0)."""
        self.monitor = monitor
        monitor.add_lost_listener(self._lost)

    # -- the loop cover's callbacks -----------------------------------------------
    def choose_path(self) -> str | None:
        """A connected peer at random (as its path id), or None when there is none."""
        peers = sorted(self._pool.peers())
        if not peers:
            return None
        return self._path(peers[self._rng.randrange(len(peers))])

    def send(self, path: str, loop_id: bytes) -> None:
        peer = self._peer_of.get(path)
        link = self._pool.link(peer) if peer is not None else None
        if link is None:  # gone between the choice and the send: not the peer's fault
            if self.monitor is not None:
                self.monitor.cancel_path(path)
            return
        try:
            send_frame(link, Channel.CONTROL, bytes([ControlKind.LOOP]) + loop_id)
        except Exception as e:  # noqa: BLE001 - a closed session: the loop never left
            self.log.debug("loop to {peer} not sent: {error}", peer=peer, error=str(e))
            if self.monitor is not None:
                self.monitor.cancel_path(path)

    # -- the control channel ------------------------------------------------------
    def on_control(self, peer: str, kind: int, body: bytes) -> None:
        """A loop (answer it) or a loop return (tell the monitor) from ``peer``."""
        if len(body) != LOOP_ID_BYTES:
            raise ControlError(f"loop id of {len(body)} bytes, not {LOOP_ID_BYTES}")
        if kind == ControlKind.LOOP:
            link = self._pool.link(peer)
            if link is None:
                return
            try:
                send_frame(link, Channel.CONTROL, bytes([ControlKind.LOOP_RETURN]) + body)
            except Exception as e:  # noqa: BLE001 - a closed session: nothing to answer on
                self.log.debug("loop of {peer} not returned: {error}", peer=peer, error=str(e))
                return
            self._metrics.inc("loops_answered")
        elif kind == ControlKind.LOOP_RETURN and self.monitor is not None:
            path = self._path_of.get(peer)
            if path is None:
                self.monitor.unknown += 1
            else:
                self.monitor.returned(body, path)

    # -- internals ----------------------------------------------------------------
    def _path(self, peer: str) -> str:
        path = self._path_of.get(peer)
        if path is None:
            path = f"{self._rng.getrandbits(64):016x}"
            self._path_of[peer] = path
            self._peer_of[path] = peer
        return path

    def _disconnected(self, peer: str) -> None:
        path = self._path_of.get(peer)
        if path is not None and self.monitor is not None:
            self.monitor.cancel_path(path)

    def _lost(self, lost: LostLoop) -> None:
        peer = self._peer_of.get(lost.path)
        if peer is None or self.monitor is None:
            return
        self._events.emit("network_error", peer=peer, error="loop lost",
                          detail=f"no loop return within {self.monitor.timeout:g}s")
        Deferred.fromCoroutine(self._store.observe(peer, Behaviour.LOOP_LOST)).addErrback(
            lambda f: self.log.failure("reputation of {peer} not updated", f, peer=peer))
