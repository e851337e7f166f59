"""``I2PProvider``: the node's I2P destination, its SAM sessions, dialing by ``.b32.i2p``.

A ``MultiService`` child of the node, the sibling of the Tor provider.
``startService`` starts a background loop that:

1. loads the node's persistent destination key from ``<data dir>/i2p/`` (or has
   the router generate one with ``DEST GENERATE SIGNATURE_TYPE=7`` and stores
   it 0600 with an atomic write), and binds that destination into the node's
   signed identity record;
2. creates a STREAM session with that key (PRIMARY + SESSION ADD when the
   bridge speaks SAM 3.3) and, beside it, a DATAGRAM session with a second
   persistent key (SAM 3.0/3.1 refuse a destination used by two sessions);
3. reports ``ready`` (i2pd answers SESSION CREATE only once the tunnels are
   built) and waits; when a control socket closes (i2pd restarted, killed...)
   it goes back to 1 with backoff and the same keys, so the same destination
   comes back;
4. re-creates the sessions (same keys, new session ids) when outgoing streams
   to one destination keep being silent or failing (:mod:`._health`): a peer
   whose router restarted has a new LeaseSet, which the router fetches only
   with an empty cache, i.e. for a new session (counted in ``state()`` as
   ``session_recreations``).

Sessions the provider closes itself (a re-creation, or the rest of a set
whose other socket the router closed) are created again with the same keys
no sooner than ``reuse_pause`` seconds later: i2pd 2.45.1 keeps a closed
session's destination for 5 seconds, hands that same destination (and its
LeaseSet cache) to a ``SESSION CREATE`` with the same key in that time, and
then stops it under the new session, whose streams all get ``INVALID_ID``
from then on. Should a session end up like that anyway (``INVALID_ID`` twice
on a session whose control socket is open), it is re-created
(``invalid_sessions`` in ``state()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from twisted.application.service import IService, MultiService
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, FirstError, gatherResults, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .._backoff import Backoff
from .._listen import LocalListener
from ..addresses import strip_port
from ..config import Config, PrivacyError, split_host_port
from ..identity import NodeIdentity, atomic_write, bind_i2p_destination
from ..interfaces import IEventSink, IIdentityService, ITransportProvider
from . import _sam
from ._destination import PrivateKey, is_i2p_name
from ._endpoints import SAMStreamClientEndpoint, SAMStreamServerEndpoint, check_i2p_target
from ._errors import DestinationError, SAMError
from ._health import HealthPolicy, StreamHealth
from ._launch import I2pdLaunchError, I2pdProcess
from ._protocol import SAMSocketProtocol, open_sam_socket
from ._sam import DatagramReceived, RawReceived
from ._session import SAMSession, create_session, generate_destination, new_session_id

STREAM_KEY_FILE = "destination.key"
DATAGRAM_KEY_FILE = "datagram.key"

DatagramHandler = Callable[[DatagramReceived | RawReceived], None]


class I2PKeyFileError(SAMError):
    """The stored destination key is unreadable or corrupt (it is never overwritten)."""


def load_or_generate_key_file(path: Path, key: PrivateKey | None) -> PrivateKey | None:
    """Read the key stored at ``path``; if there is none and ``key`` is given, store it.

    Returns the stored key, or None when there is none and ``key`` is None.
    """
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        if key is None:
            return None
        atomic_write(path, key.base64.encode("ascii") + b"\n", mode=0o600)
        return key
    except (OSError, UnicodeDecodeError) as e:
        raise I2PKeyFileError(f"{path}: cannot read the I2P key ({e})") from None
    try:
        return PrivateKey.from_base64(text)
    except DestinationError as e:
        raise I2PKeyFileError(f"{path}: not an I2P private key ({e}); move it away to make "
                              "a new destination") from None


#: The way to a ready SAM session, by provider state: (step, what it is doing).
#: i2pd reports no bootstrap percentage (tor does); ``bootstrap.progress`` in
#: :meth:`I2PProvider.state` is the step reached out of :data:`BOOTSTRAP_STEPS`.
BOOTSTRAP_STEPS = 4
_BOOTSTRAP = {
    "stopped": (0, "not started"),
    "launching": (1, "starting our own i2pd"),
    "connecting": (2, "connecting to the SAM bridge"),
    "reconnecting": (2, "reconnecting to the SAM bridge"),
    "creating-session": (3, "creating the SAM sessions (i2pd builds their tunnels)"),
    "recreating": (3, "recreating the SAM sessions"),
    "ready": (4, "SAM sessions ready"),
}


def bootstrap_state(state: str) -> dict[str, Any]:
    """``{"step", "steps", "progress" (0-100), "tag", "summary"}`` for a provider state."""
    step, summary = _BOOTSTRAP.get(state, (0, state))
    return {"step": step, "steps": BOOTSTRAP_STEPS, "progress": 100 * step // BOOTSTRAP_STEPS,
            "tag": state, "summary": summary}


@implementer(ITransportProvider)
class I2PProvider(MultiService):
    """I2P for one node (see the module docstring)."""

    name = "i2p"
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: Config,
        identity: NodeIdentity | IIdentityService,
        data_dir: Path,
        events: IEventSink | None = None,
        *,
        clock: IReactorTime | None = None,
        sam: IStreamClientEndpoint | None = None,
        retry_base: float = 2.0,
        retry_cap: float = 60.0,
        on_identity: Callable[[NodeIdentity], None] | None = None,
        forward_to: str | None = None,
        launcher: I2pdProcess | None = None,
        launch_timeout: float = 60.0,
        health: HealthPolicy | None = None,
        reuse_pause: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__()
        self.setName("i2p")
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self.config = config
        # The node's identity service (the provider asks it to bind the destination),
        # or a bare identity the provider re-signs itself (standalone use, tests).
        self._identity = identity
        self.data_dir = Path(data_dir)
        self.events = events
        host, port = split_host_port("i2p.sam_address", config.i2p.sam_address)
        if sam is None:
            sam = TCP4ClientEndpoint(reactor, host, port, timeout=10)
        if launcher is None and config.i2p.launch:
            launcher = I2pdProcess(reactor, self._clock, self.data_dir / "i2pd", host, port,
                                   config.i2p.i2pd_binary)
        self._launcher = launcher
        self._launch_timeout = launch_timeout
        self._sam = sam
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        # jittered retries (full jitter, never under half of retry_base): a fixed
        # schedule of SAM reconnects would be a fingerprint
        self._backoff = backoff or Backoff(base=retry_base, cap=retry_cap, mode="full",
                                           floor=retry_base / 2)
        self._on_identity = on_identity
        self._forward_to = (split_host_port("network.listen_address", forward_to)
                            if forward_to else None)
        self._forward: SAMSocketProtocol | None = None
        self._listener: LocalListener | None = None  # serve(): our own forward target
        self._stream: SAMSession | None = None
        self._datagram: SAMSession | None = None
        self._waiters: list[Deferred[None]] = []
        self._handlers: list[DatagramHandler] = []
        self._loop: Deferred[None] | None = None
        self._sleep: Deferred[None] | None = None
        self._running = False
        self._state = "stopped"
        self._error = ""
        self._sam_version = ""
        self._stream_key: PrivateKey | None = None
        self._datagram_key: PrivateKey | None = None
        self.sessions_created = 0
        self.health = StreamHealth(self._clock, self._request_recreate, health)
        self._recreate: Deferred[None] | None = None  # fires _first_closed to re-create
        self._recreating = ""  # why, while a re-creation is under way
        self._reuse_pause = reuse_pause
        self._closed_live_at: float | None = None  # when we last closed sessions i2pd had
        self.invalid_sessions = 0

    # ---------------------------------------------------------------- files

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "i2p"

    async def _key(self, filename: str) -> PrivateKey:
        path = self.key_dir / filename
        key = load_or_generate_key_file(path, None)
        if key is None:
            generated = await generate_destination(self._sam)
            key = load_or_generate_key_file(path, generated)
            assert key is not None
            self.log.info("new I2P destination {b32} stored in {path}",
                          b32=key.destination.b32, path=str(path))
        return key

    # ---------------------------------------------------------------- service

    def startService(self) -> None:
        super().startService()
        self._running = True
        self._set_state("connecting")
        self._loop = Deferred.fromCoroutine(self._run())

    def stopService(self) -> Deferred[None]:
        self._running = False
        self._set_state("stopped")
        loop, self._loop = self._loop, None
        parent = super().stopService()
        if loop is None:
            return parent if parent is not None else succeed(None)
        # Cancels whatever the loop awaits (a SAM reply, the backoff sleep, a closed
        # session); its finally-blocks close every control socket it opened.
        loop.addErrback(lambda f: f.trap(CancelledError))
        loop.cancel()
        if self._launcher is not None:
            launcher = self._launcher
            loop.addCallback(lambda _: launcher.stop()).addCallback(lambda _: None)
        return loop

    def _stopping(self) -> bool:
        return not self._running

    async def _run(self) -> None:
        retry = self._backoff.retrier()
        while self._running:
            router_closed = False  # the router closed a control socket (restarted?)
            try:
                await self._establish()
                if self._stopping():
                    return
                retry.reset()
                await self._first_closed()
                router_closed = not self._recreating
            except (SAMError, ConnectError, OSError) as e:
                if self._stopping():
                    return
                self._error = str(e)
                self.log.warn("I2P: {error}", error=str(e))
            finally:
                self._recreate = None
                self._close_all(deliberate=not router_closed)
            if self._stopping():
                return
            pause = self._reuse_wait()
            if self._recreating:
                # deliberate: no backoff step, no i2p_session_lost; the pause lets the
                # router drop the old session before the same key comes back
                reason, self._recreating = self._recreating, ""
                self._set_state("recreating")
                self._emit("i2p_session_recreated", reason=reason,
                           count=self.health.recreations)
                self._sleep = deferLater(self._clock, max(self._retry_base, pause),
                                         lambda: None)
                try:
                    await self._sleep
                except CancelledError:
                    return
                finally:
                    self._sleep = None
                continue
            delay = max(pause, retry.next())
            self._set_state("reconnecting")
            self._emit("i2p_session_lost", retry_in=delay, error=self._error)
            self._sleep = deferLater(self._clock, delay, lambda: None)
            try:
                await self._sleep
            except CancelledError:
                return
            finally:
                self._sleep = None

    def _reuse_wait(self) -> float:
        """Seconds until the router has surely dropped the sessions we closed last."""
        if self._closed_live_at is None:
            return 0.0
        return max(0.0, self._closed_live_at + self._reuse_pause - self._clock.seconds())

    def _close_all(self, deliberate: bool = True) -> None:
        """Close every SAM socket; ``deliberate``: the router may still have the sessions.

        (When the router closed one of them it is restarting, as a rule: its other
        sockets close in the same moment, and nothing of them lingers.)
        """
        live = [s for s in (self._stream, self._datagram) if s is not None and not s.closed]
        if deliberate and (live or (self._forward is not None and not self._forward.closed)):
            self._closed_live_at = self._clock.seconds()
        for session in (self._stream, self._datagram):
            if session is not None:
                session.close()
        if self._forward is not None:
            self._forward.close()
        self._stream = self._datagram = None
        self._forward = None

    async def _first_closed(self) -> None:
        """Until the router closes any of our control sockets."""
        done: Deferred[None] = Deferred()

        def fire(_: object) -> None:
            if not done.called:
                done.callback(None)

        for session in (self._stream, self._datagram):
            if session is not None:
                session.when_closed().addCallback(fire)
        if self._forward is not None:
            self._forward.when_lost().addCallback(fire)
        self._recreate = done
        await done
        if not self._stopping() and not self._recreating:
            self._error = "the router closed a SAM session (restarted?)"

    def _request_recreate(self, destination: str, strikes: int) -> bool:
        """StreamHealth: ``strikes`` silent/failed streams in a row to ``destination``."""
        done = self._recreate
        if done is None or done.called or self._state != "ready" or self._stopping():
            return False
        self._recreating = (f"{strikes} silent or failed streams in a row to {destination}: "
                            "new SAM session for a fresh LeaseSet")
        self.log.warn("I2P: re-creating the SAM session ({reason})", reason=self._recreating)
        done.callback(None)
        return True

    def _session_invalid(self, session: SAMSession) -> None:
        """The router answered ``INVALID_ID`` twice for ``session``, still open on our side."""
        done = self._recreate
        if (session is not self._stream or done is None or done.called
                or self._state != "ready" or self._stopping()):
            return
        self.invalid_sessions += 1
        self._recreating = (f"the router no longer knows our open session {session.id} "
                            "(INVALID_ID): new SAM session")
        self.log.warn("I2P: re-creating the SAM session ({reason})", reason=self._recreating)
        done.callback(None)

    async def _sam_answers(self) -> bool:
        try:
            probe = await open_sam_socket(self._sam)
        except ConnectError:
            return False
        probe.close()
        return True

    async def _ensure_router(self) -> None:
        """``i2p.launch``: start our own i2pd when nothing answers at the SAM address."""
        launcher = self._launcher
        if launcher is None or launcher.is_running() or await self._sam_answers():
            return
        self._set_state("launching")
        launcher.start()
        waited = 0.0
        while not await self._sam_answers():
            if not launcher.is_running():
                raise I2pdLaunchError(f"our i2pd exited at once; see {launcher.data_dir}/i2pd.log")
            if waited >= self._launch_timeout:
                raise I2pdLaunchError(f"our i2pd did not open SAM in {self._launch_timeout:.0f}s; "
                                      f"see {launcher.data_dir}/i2pd.log")
            await deferLater(self._clock, 1.0, lambda: None)
            waited += 1.0

    async def _establish(self) -> None:
        await self._ensure_router()
        self._set_state("connecting")
        self._stream_key = await self._key(STREAM_KEY_FILE)
        self._datagram_key = await self._key(DATAGRAM_KEY_FILE)
        self._bind(self._stream_key)
        self._set_state("creating-session")
        options = self._tunnel_options()
        prefix = f"aegis-{self._stream_key.destination.b32[:8]}"
        results = await gatherResults([
            Deferred.fromCoroutine(create_session(
                self._sam, "STREAM", self._stream_key, session_id=new_session_id(prefix),
                options=options)),
            Deferred.fromCoroutine(create_session(
                self._sam, "DATAGRAM", self._datagram_key,
                session_id=new_session_id(prefix + "-d"), options=options)),
        ], consumeErrors=True).addErrback(self._first_error)
        self._stream, self._datagram = results
        self._datagram.on_datagram(self._deliver)
        forward_to = self._forward_to
        if forward_to is None and self._listener is not None:
            bound = cast(IPv4Address, (await self._listener.when_listening()).getHost())
            forward_to = ("127.0.0.1", bound.port)  # the interface serve() listens on
        if forward_to is not None:
            self._forward = await self._open_forward(self._stream, *forward_to)
        if self._stopping():
            return
        self.sessions_created += 1
        self._sam_version = self._stream.version
        self._error = ""
        self._set_state("ready")
        self.log.info("I2P ready: {b32} (SAM {version})", b32=self._stream.destination.b32,
                      version=self._sam_version)
        self._emit("i2p_ready", address=self._stream.destination.b32,
                   datagram_address=self._datagram.destination.b32)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    async def _open_forward(self, stream: SAMSession, host: str, port: int) -> SAMSocketProtocol:
        """``STREAM FORWARD ... SILENT=true``: the router connects to host:port per stream."""
        sock = await open_sam_socket(self._sam)
        try:
            await sock.command(_sam.stream_forward(stream.stream_id, port, host, silent=True))
        except BaseException:
            sock.close()
            raise
        self.log.info("I2P streams to {b32} are forwarded to {host}:{port}",
                      b32=stream.destination.b32, host=host, port=port)
        return sock

    @staticmethod
    def _first_error(failure: Failure) -> Failure:
        # gatherResults wraps the first failure in a FirstError; unwrap it.
        if failure.check(FirstError):
            inner: Failure = cast(FirstError, failure.value).subFailure
            return inner
        return failure

    @property
    def identity(self) -> NodeIdentity:
        """The node's current identity (the identity service's, when given one)."""
        held = self._identity
        return held if isinstance(held, NodeIdentity) else cast(NodeIdentity, held.identity)

    def _bind(self, key: PrivateKey) -> None:
        dest = key.destination.base64
        held = self._identity
        if not isinstance(held, NodeIdentity):
            # a binding request: the identity service re-signs and tells every layer
            bound_now = cast(NodeIdentity, held.bind_i2p_destination(dest))
            self.log.info("I2P destination {b32} bound into identity record {sequence}",
                          b32=key.destination.b32, sequence=bound_now.record.sequence)
            return
        bound = held.i2p_binding
        if bound is not None and bound.destination == dest:
            return
        self._identity = bind_i2p_destination(held, dest, self._clock.seconds())
        self.log.info("I2P destination {b32} bound into identity record {sequence}",
                      b32=key.destination.b32, sequence=self.identity.record.sequence)
        if self._on_identity is not None:
            self._on_identity(self.identity)

    def _tunnel_options(self) -> Mapping[str, str | int]:
        c = self.config.i2p
        return {
            "inbound.length": c.tunnel_length, "outbound.length": c.tunnel_length,
            "inbound.quantity": c.tunnel_quantity, "outbound.quantity": c.tunnel_quantity,
        }

    def _set_state(self, state: str) -> None:
        self._state = state

    def _emit(self, event: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(event, **fields)

    # ---------------------------------------------------------------- ITransportProvider

    def handles(self, address: str) -> bool:
        return is_i2p_name(strip_port(address))

    def when_ready(self) -> Deferred[None]:
        if self._state == "ready":
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    async def stream_session(self) -> SAMSession:
        """The live STREAM session (waits until there is one)."""
        while self._stream is None or self._state != "ready":
            await self.when_ready()
        return self._stream

    async def datagram_session(self) -> SAMSession:
        while self._datagram is None or self._state != "ready":
            await self.when_ready()
        return self._datagram

    def client_endpoint(self, address: str, port: int) -> SAMStreamClientEndpoint:
        if not self.handles(address):
            raise PrivacyError(
                "i2p", address, "is not an I2P address: the I2P provider dials only inside I2P",
                "name I2P peers by their .b32.i2p (or .i2p) address")
        return SAMStreamClientEndpoint(self._sam, self.stream_session, address, port,
                                       health=self.health, clock=self._clock,
                                       on_invalid_session=self._session_invalid)

    def server_endpoint(self) -> SAMStreamServerEndpoint:
        """Accepts streams to the node's destination (survives session re-creation).

        Not together with ``forward_to``: a SAM 3.1 session has one acceptor.
        """
        return SAMStreamServerEndpoint(self._clock, self._sam, self.stream_session)

    def serve(self, factory: IProtocolFactory) -> IService:
        """Serve ``factory`` on a loopback port of our own that the router forwards
        every incoming stream to (``STREAM FORWARD``, on every session it creates).

        The listener (127.0.0.1, a port the system picks) is this provider's child:
        it listens while the provider runs, and only I2P streams arrive there.
        Not together with ``forward_to``.
        """
        if self._forward_to is not None or self._listener is not None:
            raise ValueError("the I2P provider already forwards its streams elsewhere")
        listener = LocalListener(TCP4ServerEndpoint(self._reactor, 0, interface="127.0.0.1"),
                                 factory, name="listener")
        listener.setServiceParent(self)
        self._listener = listener
        return listener

    async def send_datagram(self, destination: str, payload: bytes) -> None:
        """Send a repliable datagram to a ``.b32.i2p`` name or base64 destination."""
        check_i2p_target(destination, "i2p datagram")
        session = await self.datagram_session()
        await session.send_datagram(destination, payload)

    def on_datagram(self, handler: DatagramHandler) -> None:
        """Call ``handler`` with every datagram received, across session re-creations."""
        self._handlers.append(handler)

    def _deliver(self, event: DatagramReceived | RawReceived) -> None:
        for handler in list(self._handlers):
            handler(event)

    @property
    def address(self) -> str:
        key = self._stream_key
        return key.destination.b32 if key is not None else ""

    def state(self) -> Mapping[str, Any]:
        return {
            "name": "i2p",
            "state": self._state,
            "ready": self._state == "ready",
            "bootstrap": bootstrap_state(self._state),
            "sam_address": self.config.i2p.sam_address,
            "sam_version": self._sam_version,
            "address": self.address,
            "datagram_address": (self._datagram_key.destination.b32
                                 if self._datagram_key is not None else ""),
            "error": self._error,
            "sessions_created": self.sessions_created,
            "session_recreations": self.health.recreations,
            "silent_streams": self.health.silent_streams,
            "failed_streams": self.health.failed_streams,
            "unreachable_streams": self.health.unreachable_streams,
            "invalid_sessions": self.invalid_sessions,
            "launched_i2pd": self._launcher is not None and self._launcher.is_running(),
        }
